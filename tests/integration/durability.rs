//! Durability with real processes: `rocky serve` killed with SIGKILL mid-transfer and started
//! again on the same data directory loses no job; a second Rocky is refused the directory; a
//! damaged database is refused and left as it was.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::sim::{Fleet, FleetConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_rocky");

/// `rocky serve` as a child process, killed on drop.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(broker: &str, data: &Path, port: u16) -> Self {
        let config = data.join("test-config.toml");
        if !config.exists() {
            std::fs::write(&config, "").unwrap();
        }
        let child = Command::new(BIN)
            .args(["serve", "--broker", broker, "--http", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rocky serve starts");
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    async fn wait_healthy(&self, client: &reqwest::Client) {
        wait_for(Duration::from_secs(30), "rocky serve to be healthy", || async {
            let response = client.get(format!("{}/healthz", self.base)).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        })
        .await;
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no flush, no goodbye
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every job the API lists (none while it is not answering yet).
async fn jobs(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let Ok(response) = client.get(format!("{base}/jobs?limit=10000")).send().await else { return Vec::new() };
    let body: Value = response.json().await.unwrap_or_default();
    body["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_transfer_loses_no_job() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 10)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let client = reqwest::Client::new();
    let mut serve = Serve::start(&broker.url().to_string(), data.path(), port);
    serve.wait_healthy(&client).await;

    // One image per round: a device that runs an image already (its status says so) is up to
    // date for it, so five rounds of one image would be one transfer per device.
    for round in 1..=5u64 {
        let image = test_image(32 * 1024, 20 + round);
        let upload = client
            .post(format!("{}/firmware?name=fw-{round}.bin", serve.base))
            .body(image.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
    }
    let image = test_image(32 * 1024, 21);
    let upload = client
        .post(format!("{}/firmware?name=fw.bin", serve.base))
        .body(image.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    // 50 jobs, 5 per device, each 32 chunks of 1 KiB paced at 15 ms: about 0.5 s per job and
    // 2.5 s per device, so a kill after a second lands with jobs in every state.
    // (One request names each device once; five requests queue five jobs per device.)
    let devices: Vec<String> = (1..=10).map(|d| format!("dev-{d:02}")).collect();
    let mut first_ids = BTreeSet::new();
    for round in 1..=5 {
        let body = json!({"device_ids": devices, "firmware": {"path": format!("fw-{round}.bin")},
                          "chunk_size": 1024, "chunk_interval_ms": 15});
        let created = client.post(format!("{}/jobs", serve.base)).json(&body).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.unwrap();
        first_ids.extend(created["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()));
    }
    assert_eq!(first_ids.len(), 50);

    wait_for(Duration::from_secs(30), "some jobs done and some mid-transfer", || async {
        let jobs = jobs(&client, &serve.base).await;
        let done = jobs.iter().filter(|j| j["state"] == "succeeded").count();
        let moving = jobs
            .iter()
            .filter(|j| j["state"] == "transferring" && j["chunks_done"].as_u64() > Some(2))
            .count();
        (done >= 5 && moving >= 3).then_some(())
    })
    .await;
    serve.kill9();

    let serve = Serve::start(&broker.url().to_string(), data.path(), port);
    serve.wait_healthy(&client).await;
    let listed = wait_for(Duration::from_secs(60), "every job to end after the restart", || async {
        let jobs = jobs(&client, &serve.base).await;
        // A job whose device had verified it when Rocky was killed is up to date when it runs
        // again (the device's status, or its NACK code 9, says it runs the image).
        let done = |j: &Value| j["state"] == "succeeded" || j["state"] == "up_to_date";
        (jobs.len() == 50 && jobs.iter().all(done)).then_some(jobs)
    })
    .await;
    let ids: BTreeSet<u64> = listed.iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, first_ids, "the same 50 jobs, no id repeated");
    let recovered = listed.iter().filter(|j| j["attempts"].as_u64() > Some(1)).count();
    assert!(recovered >= 3, "the jobs that were active ran again ({recovered})");
    // New jobs get new ids.
    let more = client
        .post(format!("{}/jobs", serve.base))
        .json(&json!({"device_id": "dev-01", "firmware": {"path": "fw.bin"}}))
        .send()
        .await
        .unwrap();
    let more: Value = more.json().await.unwrap();
    let new_id = more["jobs"][0]["id"].as_u64().unwrap();
    assert!(!ids.contains(&new_id) && new_id > *ids.last().unwrap());
    // A recovered job's stored timeline says what happened.
    let id = listed.iter().find(|j| j["attempts"].as_u64() > Some(1)).unwrap()["id"].as_u64().unwrap();
    let timeline: Value =
        client.get(format!("{}/jobs/{id}/events", serve.base)).send().await.unwrap().json().await.unwrap();
    let text = timeline.to_string();
    // It ran again: to its end, or to the device's word that it had verified it before the kill.
    let ended = text.contains("succeeded") || text.contains("up_to_date");
    assert!(text.contains("recovered after a restart") && ended, "{text}");

    // Pages of 20 cover every job exactly once.
    let mut paged = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let url = match after {
            Some(a) => format!("{}/jobs?limit=20&after={a}", serve.base),
            None => format!("{}/jobs?limit=20", serve.base),
        };
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        paged.extend(page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()));
        match page["next_after"].as_u64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged.len(), 51);
    assert_eq!(paged.iter().collect::<BTreeSet<_>>().len(), 51);
    let newest = more["jobs"][0]["created_at"].as_u64().unwrap();
    let since: Value =
        client.get(format!("{}/jobs?since={newest}", serve.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(since["jobs"].as_array().unwrap().len(), 1, "{since}");

    // `rocky jobs` reads the same store while this Rocky runs.
    let out = Command::new(BIN).args(["jobs", "--json"]).arg("--data-dir").arg(data.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 51);
    let out = Command::new(BIN)
        .args(["jobs", "--state", "succeeded"])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    // Which rounds succeeded depends on where the kill landed (a job whose device had verified
    // it before the kill, but whose end was not yet on disk, ends up_to_date when it runs
    // again), so the table is checked for succeeded jobs of some round, and nothing else.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(".bin") && table.contains("succeeded") && !table.contains("queued"), "{table}");
    assert!(!table.contains("up_to_date"), "{table}");
    let out = Command::new(BIN)
        .args(["jobs", "--state", "bogus"])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown state"));
    drop(serve);
    fleet.stop().await;
}

fn stderr_of(mut child: Child) -> (bool, String) {
    let status = child.wait().expect("exits");
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
    }
    (status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rocky_on_the_same_data_dir_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let broker = format!("mqtt://127.0.0.1:{}", free_port().unwrap()); // no broker needed for this
    let client = reqwest::Client::new();
    let first = Serve::start(&broker, data.path(), free_port().unwrap());
    wait_for(Duration::from_secs(30), "the first rocky to answer", || async {
        client.get(format!("{}/healthz", first.base)).send().await.ok().map(|_| ())
    })
    .await;
    let mut second = Serve::start(&broker, data.path(), free_port().unwrap());
    let child = std::mem::replace(&mut second.child, Command::new("true").spawn().unwrap());
    let (ok, stderr) = tokio::task::spawn_blocking(move || stderr_of(child)).await.unwrap();
    assert!(!ok, "the second rocky exits non-zero");
    assert!(stderr.contains("another Rocky is using the data directory"), "{stderr}");
}

#[test]
fn a_garbage_database_is_refused_and_left_untouched() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("rocky.db");
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let serve = Serve::start("mqtt://127.0.0.1:1", data.path(), free_port().unwrap());
    let mut serve = serve;
    let child = std::mem::replace(&mut serve.child, Command::new("true").spawn().unwrap());
    let (ok, stderr) = stderr_of(child);
    assert!(!ok);
    assert!(stderr.contains("is not a Rocky database") && stderr.contains("left untouched"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_finished_jobs() {
    let data = tempfile::tempdir().unwrap();
    let image = rocky::firmware::Image::new("old.bin", test_image(100, 1));
    crate::support::store_finished_jobs(data.path(), |_| image.clone(), 64, 2).await;
    std::fs::write(data.path().join("test-config.toml"), "[store]\nkeep_jobs = 2\n").unwrap();
    let serve = Serve::start("mqtt://127.0.0.1:1", data.path(), free_port().unwrap());
    let client = reqwest::Client::new();
    let listed = wait_for(Duration::from_secs(30), "retention to apply", || async {
        let jobs = jobs(&client, &serve.base).await;
        (jobs.len() == 2).then_some(jobs)
    })
    .await;
    let ids: Vec<u64> = listed.iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![4, 5], "the newest two are kept");
    wait_for(Duration::from_secs(10), "the store to forget the rest", || async {
        let out =
            Command::new(BIN).args(["jobs", "--json"]).arg("--data-dir").arg(data.path()).output().ok()?;
        let stored: Value = serde_json::from_slice(&out.stdout).ok()?;
        (stored.as_array()?.len() == 2).then_some(())
    })
    .await;
}

/// Overlapping submissions for one device run in the order of their ids, because the store
/// hands them to the engine in the order it recorded them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_submissions_keep_each_devices_order() {
    let data = tempfile::tempdir().unwrap();
    let store = rocky::store::Store::open(data.path()).unwrap();
    let port = free_port().unwrap(); // no broker: jobs stay queued, which is what is looked at
    let config = rocky::runtime::RuntimeConfig::new(rocky::runtime::BrokerUrl::local(port));
    let runtime = rocky::runtime::Runtime::start_with_store(
        config,
        std::sync::Arc::new(rocky::firmware::Library::new()),
        store,
    )
    .await
    .unwrap();
    let image = rocky::firmware::Image::new("fw.bin", test_image(1000, 4));
    let spec = || rocky::engine::JobSpec::new("dev-01".parse().unwrap(), image.clone());
    let submissions: Vec<_> = (0..20)
        .map(|_| {
            let handle = runtime.handle.clone();
            let specs = vec![spec()];
            tokio::spawn(async move { handle.submit(specs).await.unwrap()[0].id })
        })
        .collect();
    for submission in submissions {
        submission.await.unwrap();
    }
    let jobs = runtime.handle.jobs(&rocky::runtime::JobFilter::default());
    let ids: Vec<u32> = jobs.iter().map(|j| j.id.get()).collect();
    // A new store numbers from a random point: twenty consecutive ids from its first.
    let first = ids[0];
    assert_eq!(ids, (first..first + 20).collect::<Vec<u32>>());
    // The engine took them in id order (its creation times rise with the ids), so the device's
    // queue runs them in that order.
    let created: Vec<u64> = jobs.iter().map(|j| j.created_at).collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "created in id order: {created:?}");
    runtime.shutdown().await;
}

/// Submissions that wait together are written in one commit (a group commit): each still gets
/// its own jobs back, with ids of its own, for its own devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_written_together_each_get_their_own_jobs() {
    let data = tempfile::tempdir().unwrap();
    let store = rocky::store::Store::open(data.path()).unwrap();
    let port = free_port().unwrap(); // no broker: jobs stay queued
    let config = rocky::runtime::RuntimeConfig::new(rocky::runtime::BrokerUrl::local(port));
    let library = std::sync::Arc::new(rocky::firmware::Library::new());
    let runtime = rocky::runtime::Runtime::start_with_store(config, library, store).await.unwrap();
    let image = rocky::firmware::Image::new("fw.bin", test_image(1000, 5));
    let submissions: Vec<_> = (0..60usize)
        .map(|n| {
            let handle = runtime.handle.clone();
            // Submissions of 1 to 4 jobs, each for devices of its own.
            let devices: Vec<String> = (0..1 + n % 4).map(|k| format!("grp-{n:02}-{k}")).collect();
            let specs = devices
                .iter()
                .map(|d| rocky::engine::JobSpec::new(d.parse().unwrap(), image.clone()))
                .collect();
            tokio::spawn(async move { (devices, handle.submit(specs).await.unwrap()) })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for submission in submissions {
        let (devices, jobs) = submission.await.unwrap();
        let got: Vec<String> = jobs.iter().map(|j| j.device_id.to_string()).collect();
        assert_eq!(got, devices, "a submission's jobs are its own, in its order");
        for job in &jobs {
            assert!(ids.insert(job.id.get()), "id {} given twice", job.id);
        }
    }
    assert_eq!(ids.len(), (0..60).map(|n| 1 + n % 4).sum::<usize>());
    runtime.shutdown().await;
    let store = rocky::store::Store::open(data.path()).unwrap();
    let (stored, _) = store.load().await.unwrap();
    assert_eq!(stored.len(), ids.len(), "every row committed");
}

/// A graceful stop writes what changed since the last flush: nothing is left to the crash window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_persists_the_last_changes() {
    let data = tempfile::tempdir().unwrap();
    let config = rocky::runtime::RuntimeConfig::new(rocky::runtime::BrokerUrl::local(free_port().unwrap()));
    let library = std::sync::Arc::new(rocky::firmware::Library::new());
    let store = rocky::store::Store::open(data.path()).unwrap();
    let runtime =
        rocky::runtime::Runtime::start_with_store(config.clone(), library.clone(), store).await.unwrap();
    let spec = rocky::engine::JobSpec::new(
        "dev-01".parse().unwrap(),
        rocky::firmware::Image::new("fw.bin", test_image(500, 8)),
    );
    let submitted = runtime.handle.submit(vec![spec]).await.unwrap().remove(0);
    let id = submitted.id;
    runtime.handle.cancel(id).await.unwrap();
    runtime.shutdown().await; // at once: well inside one flush interval

    let store = rocky::store::Store::open(data.path()).unwrap();
    let (jobs, _) = store.load().await.unwrap();
    assert_eq!(jobs[0].state, rocky::engine::JobState::Cancelled);
    assert_eq!(jobs[0].created_at, submitted.created_at, "the same creation time in memory and on disk");
    let timeline: Vec<_> = store.history(id).await.unwrap().iter().map(|h| h.state).collect();
    assert_eq!(timeline.last(), Some(&rocky::engine::JobState::Cancelled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_survives_a_sigkill_right_after_its_answer() {
    // No device answers: the job waits in `requesting` until it is cancelled.
    let broker = EmbeddedBroker::start(None).unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let client = reqwest::Client::new();
    let mut serve = Serve::start(&broker.url().to_string(), data.path(), port);
    serve.wait_healthy(&client).await;
    let upload =
        client.post(format!("{}/firmware?name=fw.bin", serve.base)).body(test_image(2048, 2).to_vec()).send();
    assert_eq!(upload.await.unwrap().status(), StatusCode::CREATED);
    let body = json!({"device_id": "nobody", "firmware": {"path": "fw.bin"}});
    let created: Value =
        client.post(format!("{}/jobs", serve.base)).json(&body).send().await.unwrap().json().await.unwrap();
    let id = created["jobs"][0]["id"].as_u64().unwrap();
    let cancelled = client.delete(format!("{}/jobs/{id}", serve.base)).send().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    serve.kill9();
    let serve = Serve::start(&broker.url().to_string(), data.path(), port);
    serve.wait_healthy(&client).await;
    let job: Value =
        client.get(format!("{}/jobs/{id}", serve.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["state"], "cancelled", "{job}");
}
