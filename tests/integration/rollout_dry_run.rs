//! A rollout's dry run through `rocky serve`: it answers the waves a real run then makes, the
//! devices up to date and never heard from, the bytes and time under its caps, and creates
//! nothing: no rollout, no job, no FOTA_REQUEST on the broker (a spy client of the test's own
//! counts every command published).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::served_fleet::ServedFleet;
use crate::support::{test_image, wait_for};

/// Counts what is published on the command topics from now on.
async fn command_spy(port: u16) -> Arc<AtomicUsize> {
    let options = rumqttc::MqttOptions::new("dry-run-spy", "127.0.0.1", port);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    client.subscribe("/fota/cmd/#", rumqttc::QoS::AtMostOnce).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let subscribed = Arc::new(tokio::sync::Notify::new());
    let (told, seen) = (subscribed.clone(), count.clone());
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => told.notify_one(),
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed.notified()).await.unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_creates_nothing_and_lists_the_waves_the_real_run_makes() {
    let image = test_image(8192, 21);
    let served = ServedFleet::start(5, |config| config.prefix = "dry-".into(), "fw-dry.bin", &image).await;
    let (client, base) = (&served.client, served.base.as_str());
    // dry-01 runs the image already (a job made it so).
    let job: Value = client
        .post(format!("{base}/jobs"))
        .json(&json!({"device_ids": ["dry-01"], "firmware": {"path": "fw-dry.bin"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["jobs"][0]["id"].as_u64().unwrap_or_else(|| panic!("{job}"));
    wait_for(Duration::from_secs(30), "dry-01 to run the image", || async {
        let job: Value = client.get(format!("{base}/jobs/{id}")).send().await.ok()?.json().await.ok()?;
        (job["state"] == "succeeded").then_some(())
    })
    .await;
    // quiet-1 is registered and has never been heard from: no warning, but not seen lately.
    let imported = client.post(format!("{base}/devices/import")).body("quiet-1\n").send().await.unwrap();
    assert_eq!(imported.status(), StatusCode::OK);
    let devices = ["dry-01", "dry-02", "dry-03", "dry-04", "dry-05", "ghost-1", "quiet-1"];
    let request = json!({"name": "plan", "firmware": {"path": "fw-dry.bin"}, "targets": {"devices": devices},
                         "waves": [1, "50%", "100%"], "max_per_minute": 60});
    let spy = command_spy(served.broker.url().port).await;
    let answer = client.post(format!("{base}/rollouts?dry_run=true")).json(&request).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let run: Value = answer.json().await.unwrap();
    assert_eq!(run["dry_run"], true);
    let waves: Vec<Vec<String>> = run["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["devices"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect())
        .collect();
    assert_eq!(
        waves,
        vec![vec!["dry-01"], vec!["dry-02", "dry-03", "dry-04"], vec!["dry-05", "ghost-1", "quiet-1"]]
    );
    assert_eq!(run["up_to_date"], json!({"count": 1, "devices": ["dry-01"]}));
    assert_eq!(run["never_seen"], json!({"count": 1, "devices": ["ghost-1"]}));
    assert_eq!(run["not_seen_lately"], json!({"count": 1, "devices": ["quiet-1"]}));
    assert_eq!(run["refused_count"], 0);
    let estimate = &run["estimate"];
    assert_eq!(estimate["bytes_whole"].as_u64(), Some(6 * image.len() as u64), "{run}");
    // Six devices to send to at 60 starts a minute: six seconds.
    assert_eq!(estimate["duration_s"].as_f64(), Some(6.0), "{run}");
    // Nothing was created: no rollout, no other job, nothing on the command topics.
    let rollouts: Value = client.get(format!("{base}/rollouts")).send().await.unwrap().json().await.unwrap();
    assert_eq!(rollouts["rollouts"], json!([]));
    let jobs: Value = client.get(format!("{base}/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1));
    assert_eq!(spy.load(Ordering::SeqCst), 0, "no command was published");
    // A bad flag is refused by name.
    let bad = client.post(format!("{base}/rollouts?dry_run=maybe")).json(&request).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("dry_run"));
    // The real run makes exactly those waves.
    let created = client.post(format!("{base}/rollouts")).json(&request).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let text = created.text().await.unwrap();
    // The warning about ghost-1 comes first, where a reader of a long answer sees it.
    assert!(text.starts_with(r#"{"never_seen":1,"warning":"#), "{}", &text[..text.len().min(200)]);
    let view: Value = serde_json::from_str(&text).unwrap();
    let order: Vec<String> = view["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["device_id"].as_str().unwrap().to_owned())
        .collect();
    let sizes: Vec<usize> =
        view["waves"].as_array().unwrap().iter().map(|w| w["devices"].as_u64().unwrap() as usize).collect();
    let mut real = Vec::new();
    let mut at = 0;
    for size in sizes {
        real.push(order[at..at + size].to_vec());
        at += size;
    }
    assert_eq!(real, waves);
    served.fleet.stop().await;
}
