//! Confirmed updates (issue 22) through a real mosquitto: simulated devices and two of the
//! tests' own (written from `PROTOCOL.md` alone) that report what they run after their reboot.
//! Twenty devices that confirm, two of which roll back and one of which never comes back, end
//! 17 succeeded, 2 rolled back, 1 timed out, with a SIGKILL of Rocky while jobs are confirming;
//! a version 1 device succeeds at DONE_SUCCESS; a second job for an updated device is up to
//! date and sends nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::wire_device::{Mode, WireDevice};
use crate::support::{Mosquitto, Serve, healthy, statuses_heard, test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::free_port;
use rocky::sim::{Fleet, FleetConfig, Selection};
use serde_json::{Value, json};

async fn jobs(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let Ok(response) = client.get(format!("{base}/jobs?limit=10000")).send().await else { return Vec::new() };
    let body: Value = response.json().await.unwrap_or_default();
    body["jobs"].as_array().cloned().unwrap_or_default()
}

/// Rows of `jobs` in the store per state, read as another process reads it.
fn stored_states(db: &std::path::Path) -> Option<BTreeMap<String, usize>> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let mut query = conn.prepare("SELECT state, count(*) FROM jobs GROUP BY state").ok()?;
    let rows = query.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, usize>(1)?))).ok()?;
    rows.collect::<Result<_, _>>().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_updates_roll_backs_and_timeouts_survive_a_sigkill_and_updated_devices_are_up_to_date() {
    let Some(mosquitto) = Mosquitto::start("confirm") else { return };
    let broker = mosquitto.url();
    // 18 simulated devices that confirm after a 5 s reboot: dev-03 rolls back, dev-09 never
    // comes back.
    let mut sims = FleetConfig::new(broker.clone(), 18);
    sims.model.reboot_delay = Duration::from_secs(5);
    sims.rollback = Some(Selection::List(vec!["dev-03".into()]));
    sims.never_back = Some(Selection::List(vec!["dev-09".into()]));
    let fleet = Fleet::start(&sims).unwrap();
    // A version 1 device: no status, no confirm.
    let mut old = FleetConfig::new(broker.clone(), 1);
    old.prefix = "old-".into();
    old.model.legacy = true;
    let legacy = Fleet::start(&old).unwrap();
    assert!(
        fleet.wait_connected(Duration::from_secs(30)).await
            && legacy.wait_connected(Duration::from_secs(30)).await
    );
    // Two of the tests' own: one confirms, one rolls back.
    let good = WireDevice::start(mosquitto.port, "wire-ok", Mode::Confirms).await;
    let _back = WireDevice::start(mosquitto.port, "wire-back", Mode::RollsBack).await;

    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("test-config.toml"), "[jobs]\nconfirm_timeout_s = 20\n").unwrap();
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut serve = Serve::start(&broker.to_string(), port, data.path());
    healthy(&client, &base).await;
    statuses_heard(&client, &base, 20).await;
    let image = test_image(24 * 1024, 22);
    let upload =
        client.post(format!("{base}/firmware?name=fw-2.bin")).body(image.to_vec()).send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let mut devices: Vec<String> = (1..=18).map(|n| format!("dev-{n:02}")).collect();
    devices.extend(["old-01", "wire-ok", "wire-back"].map(String::from));
    let body = json!({"device_ids": devices, "firmware": {"path": "fw-2.bin"}, "chunk_size": 1024});
    let created = client.post(format!("{base}/jobs")).json(&body).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // Killed once every job is, on disk, either over or confirming, and several confirm.
    let db = data.path().join("rocky.db");
    let at_kill = wait_for(Duration::from_secs(30), "jobs confirming on disk", || async {
        let states = stored_states(&db)?;
        let settled = ["confirming", "succeeded", "rolled_back"]
            .iter()
            .map(|s| states.get(*s).unwrap_or(&0))
            .sum::<usize>();
        (settled == devices.len() && states.get("confirming").copied().unwrap_or(0) >= 5).then_some(states)
    })
    .await;
    serve.kill9();
    let _serve = Serve::start(&broker.to_string(), port, data.path());
    healthy(&client, &base).await;

    let ended = wait_for(Duration::from_secs(60), "every job to end", || async {
        let jobs = jobs(&client, &base).await;
        (jobs.len() == devices.len() && jobs.iter().all(|j| j["state"] != "confirming")).then_some(jobs)
    })
    .await;
    let state_of = |device: &str| ended.iter().find(|j| j["device_id"] == device).unwrap().clone();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for job in &ended {
        *counts.entry(job["state"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> =
        [("succeeded", 18), ("rolled_back", 2), ("timed_out", 1)].map(|(s, n)| (s.to_owned(), n)).into();
    assert_eq!(counts, expected, "17 confirmed and the version 1 device; at the kill: {at_kill:?}");
    assert_eq!(state_of("dev-03")["error"], "rolled back to factory-1.0");
    assert_eq!(state_of("wire-back")["error"], "rolled back to factory");
    assert_eq!(state_of("dev-09")["error"], "no confirmation that the device runs the new image within 20 s");
    assert!(state_of("wire-ok")["confirmed_at"].as_u64().is_some(), "{}", state_of("wire-ok"));
    assert!(state_of("dev-01")["confirmed_at"].as_u64().is_some());
    assert!(state_of("old-01")["confirmed_at"].is_null(), "a version 1 device succeeds at DONE_SUCCESS");

    // wire-ok runs the image now, as its status said: the same image again sends nothing.
    let requests = good.seen().requests.len();
    let again = json!({"device_id": "wire-ok", "firmware": {"path": "fw-2.bin"}});
    let created: Value =
        client.post(format!("{base}/jobs")).json(&again).send().await.unwrap().json().await.unwrap();
    let id = created["jobs"][0]["id"].as_u64().unwrap();
    let job = wait_for(Duration::from_secs(10), "the second job to end", || async {
        let job: Value = client.get(format!("{base}/jobs/{id}")).send().await.ok()?.json().await.ok()?;
        (job["state"] != "queued" && job["state"] != "requesting").then_some(job)
    })
    .await;
    assert_eq!(job["state"], "up_to_date", "{job}");
    assert_eq!(good.seen().requests.len(), requests, "no FOTA_REQUEST sent");
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("rocky_jobs{state=\"rolled_back\"} 2"), "{metrics}");
    assert!(metrics.contains("rocky_jobs{state=\"up_to_date\"} 1"), "{metrics}");
    fleet.stop().await;
    legacy.stop().await;
}
