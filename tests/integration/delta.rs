//! Delta updates (issue 24) through a real mosquitto, against devices of the tests' own that
//! apply BSDIFF40 patches with their own bspatch (`support/delta_device.rs`): a device running
//! base B gets target T (B with 2 KiB changed and 4 KiB appended, 1 MiB) as a patch of at most
//! 10 % of T and verifies T; a device whose status says B but that was reflashed with another
//! image refuses the patch with code 13 and gets T whole in the same job.

use std::time::Duration;

use crate::support::delta_device::DeltaDevice;
use crate::support::{Mosquitto, Serve, healthy, statuses_heard, test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::free_port;
use serde_json::{Value, json};
use sha2::Digest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_the_base_gets_a_small_patch_and_a_reflashed_one_refuses_it_and_gets_the_image_whole() {
    let Some(mosquitto) = Mosquitto::start("delta") else { return };
    let base = test_image(1024 * 1024, 31).to_vec();
    let mut target = base.clone();
    // 2 KiB changed in the middle, 4 KiB appended: a recompiled module and a new one.
    for (i, byte) in target[400_000..402_048].iter_mut().enumerate() {
        *byte = byte.wrapping_add(1 + (i % 7) as u8);
    }
    target.extend(test_image(4096, 32).iter());
    let other = test_image(1024 * 1024, 33).to_vec();
    let on_base = DeltaDevice::start(mosquitto.port, "on-base", base.clone(), base.clone()).await;
    let reflashed = DeltaDevice::start(mosquitto.port, "reflashed", base.clone(), other).await;

    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let base_url = format!("http://127.0.0.1:{port}");
    let _serve = Serve::start(&mosquitto.url().to_string(), port, data.path());
    let client = reqwest::Client::new();
    healthy(&client, &base_url).await;
    statuses_heard(&client, &base_url, 2).await;
    // Rocky holds the base (an earlier upload) and the target.
    for (name, bytes) in [("base.bin", &base), ("target.bin", &target)] {
        let upload =
            client.post(format!("{base_url}/firmware?name={name}")).body(bytes.clone()).send().await.unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
    }
    let sha = hex::encode(sha2::Sha256::digest(&target));
    let created = client
        .post(format!("{base_url}/jobs"))
        .json(
            &json!({"device_ids": ["on-base", "reflashed"], "firmware": {"sha256": sha}, "chunk_size": 4096}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let ids: Vec<u64> =
        created["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()).collect();
    let patch_size = created["jobs"][0]["delta"]["patch_size"].as_u64().expect("a patch for on-base");
    assert!(patch_size * 10 <= target.len() as u64, "the patch is {patch_size} bytes of {}", target.len());
    let ended = wait_for(Duration::from_secs(60), "both jobs to succeed", || async {
        let mut jobs = Vec::new();
        for id in &ids {
            let job: Value =
                client.get(format!("{base_url}/jobs/{id}")).send().await.ok()?.json().await.ok()?;
            if job["state"] != "succeeded" {
                return None;
            }
            jobs.push(job);
        }
        Some(jobs)
    })
    .await;
    // On the base: the patch went on the wire, and nothing else.
    assert_eq!(ended[0]["bytes_sent"].as_u64(), Some(patch_size), "{}", ended[0]);
    assert_eq!(ended[0]["delta"]["base_sha256"].as_str(), Some(&*hex::encode(sha2::Sha256::digest(&base))));
    assert_eq!(on_base.seen().patched, vec![(ids[0], patch_size as usize)]);
    assert_eq!(on_base.seen().requests, vec![(ids[0], 5)], "a five-item request");
    // Reflashed: code 13, then the whole image in the same job.
    let seen = reflashed.seen();
    assert_eq!(seen.refusals, vec![(ids[1], 13)]);
    assert_eq!(seen.requests, vec![(ids[1], 5), (ids[1], 3)]);
    assert_eq!(seen.verdicts, vec![(ids[1], true)]);
    assert!(ended[1]["delta"].is_null(), "{}", ended[1]);
    assert!(ended[1]["bytes_sent"].as_u64() >= Some(target.len() as u64), "{}", ended[1]);
    let timeline: Value =
        client.get(format!("{base_url}/jobs/{}/events", ids[1])).send().await.unwrap().json().await.unwrap();
    assert!(timeline.to_string().contains("code 13"), "{timeline}");
    // Rollouts too: on-base now runs T, so a rollout of T2 sends it a patch from T; a rollout
    // that says "delta": false sends T3 whole.
    let mut t2 = target.clone();
    t2[10..20].fill(0x55);
    let mut t3 = t2.clone();
    t3[30..40].fill(0x66);
    let mut rollout_jobs = Vec::new();
    for (name, image, delta) in [("t2", &t2, true), ("t3", &t3, false)] {
        let upload = client
            .post(format!("{base_url}/firmware?name={name}.bin"))
            .body(image.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
        let sha = hex::encode(sha2::Sha256::digest(image));
        let created = client
            .post(format!("{base_url}/rollouts"))
            .json(&json!({"name": name, "firmware": {"sha256": sha}, "targets": {"devices": ["on-base"]}, "delta": delta}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let rollout: Value = created.json().await.unwrap();
        let job = wait_for(Duration::from_secs(30), "the rollout's job to succeed", || async {
            let page: Value =
                client.get(format!("{base_url}/jobs?device=on-base")).send().await.ok()?.json().await.ok()?;
            let job =
                page["jobs"].as_array()?.iter().rev().find(|j| j["image"]["sha256"] == sha.as_str())?.clone();
            (job["state"] == "succeeded").then_some(job)
        })
        .await;
        // The rollout counts what its job sent against what the whole image would have.
        let url = format!("{base_url}/rollouts/{}", rollout["id"]);
        let bytes = wait_for(Duration::from_secs(10), "the rollout to count its job's bytes", || async {
            let view: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            (view["bytes"]["sent"].as_u64()? > 0).then(|| view["bytes"].clone())
        })
        .await;
        assert_eq!(bytes["sent"], job["bytes_sent"], "{bytes}");
        let whole = if delta { image.len() as u64 } else { job["bytes_sent"].as_u64().unwrap() };
        assert_eq!(bytes["whole_image"].as_u64(), Some(whole), "{bytes}");
        rollout_jobs.push(job);
    }
    let from_t = hex::encode(sha2::Sha256::digest(&target));
    assert_eq!(
        rollout_jobs[0]["delta"]["base_sha256"].as_str(),
        Some(from_t.as_str()),
        "{}",
        rollout_jobs[0]
    );
    assert!(rollout_jobs[1]["delta"].is_null(), "{}", rollout_jobs[1]);
    let id = rollout_jobs[1]["id"].as_u64().unwrap();
    let timeline: Value =
        client.get(format!("{base_url}/jobs/{id}/events")).send().await.unwrap().json().await.unwrap();
    assert!(timeline.to_string().contains("delta\\\": false"), "{timeline}");
    // What it saved, and the one build of the pair.
    let metrics = client.get(format!("{base_url}/metrics")).send().await.unwrap().text().await.unwrap();
    let saved = target.len() as u64 - patch_size;
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rocky_delta_bytes_saved_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(counted > saved, "the first job's saving and the rollout's: {counted}");
    assert!(metrics.contains("rocky_delta_builds_total{outcome=\"built\"} 2"), "{metrics}");
    assert!(metrics.contains("rocky_delta_build_seconds_total "), "{metrics}");
}
