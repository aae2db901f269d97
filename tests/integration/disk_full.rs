//! A full disk under a running `rocky serve`: the data directory lives on a small tmpfs the test
//! mounts (it needs root, as CI has). While the disk is full, `/healthz` says the store is
//! degraded, an upload is a 507 that leaves nothing behind, and job changes are kept; once space
//! returns, the store catches up without a restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{test_image, wait_for};
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::sim::{Fleet, FleetConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_rocky");

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root and must be able to mount a tmpfs");
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIPPED disk_full: mounting a tmpfs needs root\n",
            );
            return None;
        }
        Some(Self { path, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fills the disk with one file until writing fails.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
}

async fn health(client: &reqwest::Client, base: &str) -> Option<(u16, Value)> {
    let response = client.get(format!("{base}/healthz")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_the_store_and_it_catches_up_when_space_returns() {
    let Some(disk) = SmallDisk::mount("8m") else { return };
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 4)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let port = free_port().unwrap();
    let data = disk.path.join("data");
    let _serve = Serve(
        crate::support::serve_command(&broker.url().to_string(), port, Path::new("/dev/null"), &data)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_for(Duration::from_secs(20), "rocky serve healthy", || async {
        health(&client, &base).await.filter(|(s, _)| *s == 200).map(|_| ())
    })
    .await;
    let upload = client.post(format!("{base}/firmware?name=fw.bin")).body(test_image(64 * 1024, 9).to_vec());
    assert_eq!(upload.send().await.unwrap().status(), 201);
    // Four jobs paced to take about 3 s each, so they change while the disk is full.
    let devices: Vec<String> = (1..=4).map(|d| format!("dev-{d:02}")).collect();
    let body = json!({"device_ids": devices, "firmware": {"path": "fw.bin"}, "chunk_size": 1024, "chunk_interval_ms": 45});
    let created = client.post(format!("{base}/jobs")).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    // A new store numbers its jobs from a random point: the first of these four is its first.
    let created: Value = created.json().await.unwrap();
    let first = created["jobs"][0]["id"].as_u64().unwrap();

    fill(&disk.path.join("filler"));
    let (_, degraded) = wait_for(Duration::from_secs(20), "/healthz to report the store", || async {
        health(&client, &base).await.filter(|(s, body)| *s == 503 && body["store"]["ok"] == false)
    })
    .await;
    let reason = degraded["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("job store cannot write") && reason.contains("kept and retried"), "{degraded}");
    // Its cause said once, in the writer's words (a request's "nothing was recorded" is not).
    assert!(
        !reason.contains("nothing was recorded") && !reason.contains("cannot write (the job store"),
        "{reason}"
    );
    let upload = client.post(format!("{base}/firmware?name=late.bin")).body(vec![7u8; 200_000]);
    let response = upload.send().await.unwrap();
    assert_eq!(response.status(), 507, "{}", response.text().await.unwrap_or_default());
    let hidden: Vec<_> = std::fs::read_dir(data.join("uploads"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty() && !data.join("uploads/late.bin").exists(), "nothing half-written is left");
    // A submission the store cannot record is a 507 that creates no job and no row.
    let late = json!({"device_id": "dev-09", "firmware": {"path": "fw.bin"}});
    // (A new connection: the server closed the last one after refusing the upload mid-body.)
    let refused = reqwest::Client::new().post(format!("{base}/jobs")).json(&late).send().await.unwrap();
    let status = refused.status();
    let text = refused.text().await.unwrap_or_default();
    assert_eq!(status, 507, "{text}");
    assert!(text.contains("disk is full"), "{text}");
    let listed: Value = client.get(format!("{base}/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        listed["jobs"].as_array().map(Vec::len),
        Some(4),
        "no job of the refused submission: {listed}"
    );

    // Jobs keep running in memory; space comes back; the store catches up by itself.
    wait_for(Duration::from_secs(30), "every job to finish in the engine", || async {
        let jobs: Value = client.get(format!("{base}/jobs")).send().await.ok()?.json().await.ok()?;
        let jobs = jobs["jobs"].as_array()?.clone();
        jobs.iter().all(|j| j["state"] == "succeeded").then_some(())
    })
    .await;
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    wait_for(Duration::from_secs(20), "/healthz healthy again", || async {
        health(&client, &base).await.filter(|(s, _)| *s == 200).map(|_| ())
    })
    .await;
    let stored_states = || {
        let out = Command::new(BIN).args(["jobs", "--json", "--data-dir"]).arg(&data).output().unwrap();
        let stored: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        stored
            .as_array()
            .map(|a| a.iter().filter_map(|j| j["state"].as_str().map(str::to_owned)).collect::<Vec<_>>())
    };
    wait_for(Duration::from_secs(20), "the store to catch up with every job's end", || {
        let states = stored_states();
        async move { (states? == vec!["succeeded"; 4]).then_some(()) }
    })
    .await;
    // With space back, a new submission gets a new id: the refused one's id is never reused.
    let accepted = client.post(format!("{base}/jobs")).json(&late).send().await.unwrap();
    assert_eq!(accepted.status(), 201);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(
        accepted["jobs"][0]["id"].as_u64(),
        Some(first + 5),
        "ids first to first + 3 ran, first + 4 went to the refused submission: {accepted}"
    );
    fleet.stop().await;
}
