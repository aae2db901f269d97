//! Image bytes are held only while a job needs them plus a bounded cache: uploads do not pile up
//! in memory, a restart loads no finished job's image, retention removes images no job needs,
//! and the firmware directory has a size cap. Checked on a real `rocky serve` through `/metrics`.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use crate::support::{serve_command, test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::free_port;

const MIB: u64 = 1024 * 1024;

/// `rocky serve` killed on drop, with `config` as its file.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    async fn start(data: &Path, config: &str) -> Self {
        let config_path = data.join("test-config.toml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port().unwrap();
        let child = serve_command("mqtt://127.0.0.1:1", port, &config_path, data)
            .spawn()
            .expect("rocky serve starts");
        let serve = Self { child, base: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        wait_for(Duration::from_secs(30), "rocky serve to answer", || async {
            client.get(format!("{}/healthz", serve.base)).send().await.ok().map(|_| ())
        })
        .await;
        serve
    }

    /// One gauge from `/metrics`.
    async fn gauge(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn upload(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    bytes: bytes::Bytes,
) -> (StatusCode, String) {
    let response = client.post(format!("{base}/firmware?name={name}")).body(bytes).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_held_only_up_to_the_cache_and_the_directory_has_a_cap() {
    let data = tempfile::tempdir().unwrap();
    let config = format!("[firmware]\ncache_bytes = {}\nmax_store_bytes = {}\n", 3 * MIB, 11 * MIB);
    let serve = Serve::start(data.path(), &config).await;
    let client = reqwest::Client::new();
    let mut hashes = Vec::new();
    for i in 0..4u8 {
        let (status, body) =
            upload(&client, &serve.base, &format!("fw-{i}.bin"), test_image(2 * MIB as usize, u64::from(i)))
                .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        hashes.push(body["sha256"].as_str().unwrap().to_owned());
    }
    // Four 2 MiB uploads: only the most recent fits the 3 MiB cache; no job holds the others.
    assert_eq!(serve.gauge("rocky_image_bytes_held").await, 2 * MIB);
    assert_eq!(serve.gauge("rocky_image_bytes_cached").await, 2 * MIB);

    // The first upload, long evicted, can still be named by its hash: it is read back from its
    // file (a job for a device nobody answers for, so it stays queued and holds the image).
    let response = client
        .post(format!("{}/jobs", serve.base))
        .json(&serde_json::json!({"device_ids": ["dev-1"], "firmware": {"sha256": hashes[0]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
    // A fifth upload takes the cache; the queued job still holds the first image.
    let (status, body) = upload(&client, &serve.base, "fw-4.bin", test_image(2 * MIB as usize, 4)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(serve.gauge("rocky_image_bytes_cached").await, 2 * MIB);
    assert_eq!(serve.gauge("rocky_image_bytes_held").await, 4 * MIB, "the queued job holds its image");

    // 10 MiB are in the directory: another 2 MiB would pass the 11 MiB cap.
    let (status, body) = upload(&client, &serve.base, "fw-5.bin", test_image(2 * MIB as usize, 5)).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(body.contains("firmware.max_store_bytes") && body.contains(&(11 * MIB).to_string()), "{body}");
    assert!(!body.contains(&data.path().display().to_string()), "a server path in {body}");
    let left: Vec<String> = std::fs::read_dir(data.path().join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 5, "the refused upload left nothing behind: {left:?}");
}

/// Five finished jobs in a store: three of an old image, two of a new one.
async fn store_with_finished_jobs(data: &Path) -> (String, String) {
    let old = rocky::firmware::Image::new("old.bin", test_image(MIB as usize, 1));
    let new = rocky::firmware::Image::new("new.bin", test_image(MIB as usize, 2));
    crate::support::store_finished_jobs(data, |i| if i < 3 { old.clone() } else { new.clone() }, 4096, 256)
        .await;
    (rocky::protocol::sha256_hex(old.sha256()), rocky::protocol::sha256_hex(new.sha256()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_no_finished_jobs_image_and_retention_removes_unneeded_images() {
    let data = tempfile::tempdir().unwrap();
    let (old, new) = store_with_finished_jobs(data.path()).await;
    let images = data.path().join("firmware");
    assert!(images.join(&old).is_file() && images.join(&new).is_file());

    let serve = Serve::start(data.path(), "[store]\nkeep_jobs = 2\n").await;
    let client = reqwest::Client::new();
    // Retention keeps the two newest jobs (the new image's): the old image's file goes.
    wait_for(Duration::from_secs(30), "retention to remove the old image", || async {
        (!images.join(&old).exists()).then_some(())
    })
    .await;
    assert!(images.join(&new).is_file(), "an image a kept job names stays");
    assert_eq!(serve.gauge("rocky_image_bytes_held").await, 0, "finished jobs' images were loaded");

    // The finished jobs still show their image's name and size.
    let body: serde_json::Value =
        client.get(format!("{}/jobs", serve.base)).send().await.unwrap().json().await.unwrap();
    let jobs = body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        assert_eq!(job["image"]["name"], "new.bin", "{job}");
        assert_eq!(job["image"]["size"], MIB, "{job}");
        assert_eq!(job["image"]["sha256"], new.as_str(), "{job}");
    }
}
