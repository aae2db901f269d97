//! The job-state stream cannot lose a state. With an event buffer of 16, a rollout's chunk traffic
//! overflows the lossy event stream many times over; afterwards a console fed slowly and an
//! `/events` client that reads slowly both hold exactly the engine's final snapshot of every job.
//! And a job has one JSON shape: `GET /jobs/{id}`, the SSE `job` event and `rocky jobs --json`
//! carry the same fields.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{serve_command, test_image, wait_for};
use futures_util::StreamExt;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::engine::{JobId, JobSpec};
use rocky::firmware::{ChunkSize, Image, Library};
use rocky::http::ApiState;
use rocky::runtime::{JobFilter, Runtime, RuntimeConfig};
use rocky::sim::{Behavior, BehaviorPlan, Fleet, FleetConfig, Selection};
use rocky::snapshot::JobSnapshot;
use rocky::tui::app::App;
use rocky::tui::theme::Theme;
use serde_json::Value;

type Jobs = BTreeMap<JobId, JobSnapshot>;

/// An `/events` client that reads slowly: it keeps the jobs its `job` events describe and
/// counts the events the server said it missed.
async fn slow_sse_reader(url: String, jobs: Arc<Mutex<Jobs>>, missed: Arc<Mutex<u64>>) {
    let response = reqwest::get(url).await.expect("/events answers");
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(Ok(piece)) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&piece));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let name = message.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default().to_owned();
            let data = message.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_default().to_owned();
            match name.as_str() {
                "jobs_reset" => jobs.lock().unwrap().clear(),
                "job" => {
                    let job: JobSnapshot =
                        serde_json::from_str(&data).expect("a job event is a job snapshot");
                    jobs.lock().unwrap().insert(job.id, job);
                }
                "missed" => *missed.lock().unwrap() += 1,
                _ => {}
            }
        }
        // A slow reader: the server's buffers fill and the event stream overflows.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_end_with_every_jobs_true_state_after_the_event_stream_overflows() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let mut fleet_config = FleetConfig::new(broker.url(), 20);
    // Some jobs fail in each way, so errors and attempts differ between jobs.
    fleet_config.plan = BehaviorPlan::default()
        .with(Behavior::Nack, Selection::List(vec!["3".into()]))
        .with(Behavior::Fail, Selection::List(vec!["5".into()]))
        .with(Behavior::Corrupt, Selection::List(vec!["7".into()]));
    let fleet = Fleet::start(&fleet_config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await, "fleet connected");
    let mut config = RuntimeConfig::new(broker.url());
    config.event_capacity = 16;
    let runtime = Runtime::start(config, Arc::new(Library::new()));
    let handle = runtime.handle.clone();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = ApiState::new(handle.clone(), dir.path().to_path_buf());
    tokio::spawn(rocky::http::serve(listener, state, std::future::pending()));
    let (sse_jobs, sse_missed) = (Arc::new(Mutex::new(Jobs::new())), Arc::new(Mutex::new(0u64)));
    tokio::spawn(slow_sse_reader(format!("http://{addr}/events"), sse_jobs.clone(), sse_missed.clone()));

    // A console whose loop is slow: it takes an event, then dawdles.
    let app = Arc::new(Mutex::new(App::new(*handle.clock(), "test".into(), 100, Theme::color())));
    let (console_app, console_handle) = (app.clone(), handle.clone());
    tokio::spawn(async move {
        let mut events = console_handle.subscribe();
        let mut jobs = console_handle.follow_jobs();
        loop {
            tokio::select! {
                changes = jobs.next(64) => match changes {
                    Some(changes) => console_app.lock().unwrap().apply_jobs(&changes),
                    None => break,
                },
                received = events.recv() => match received {
                    Some(received) => console_app.lock().unwrap().apply(&received),
                    None => break,
                },
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    // Both readers are subscribed before the rollout starts.
    wait_for(Duration::from_secs(10), "the readers to subscribe", || async {
        (handle.metrics().render(&Default::default(), Default::default()).contains("rocky_event_clients 1"))
            .then_some(())
    })
    .await;

    // 20 jobs × 64 chunks of 1 KiB: far more events than the buffer of 16 holds.
    let image = Image::new("burst.bin", test_image(64 * 1024, 3));
    let chunk_size = Some(ChunkSize::new(1024).unwrap());
    let specs = fleet
        .ids()
        .into_iter()
        .map(|device| JobSpec { chunk_size, ..JobSpec::new(device, image.clone()) })
        .collect();
    let created = handle.submit(specs).await.unwrap();
    assert_eq!(handle.jobs(&JobFilter::default()).len(), created.len(), "listed as soon as submit answers");
    let engine: Jobs = wait_for(Duration::from_secs(60), "every job to end", || async {
        let jobs = handle.jobs(&JobFilter::default());
        (jobs.len() == 20 && jobs.iter().all(|j| j.state.is_final()))
            .then(|| jobs.iter().map(|j| (j.id, JobSnapshot::clone(j))).collect())
    })
    .await;
    let outcomes: BTreeSet<String> = engine.values().map(|j| j.state.to_string()).collect();
    assert!(outcomes.len() >= 3, "succeeded, rejected and failed jobs: {outcomes:?}");

    wait_for(Duration::from_secs(30), "the slow console to hold the engine's final state", || async {
        let app = app.lock().unwrap();
        let held: Jobs = app.jobs.rows.iter().map(|(id, row)| (*id, JobSnapshot::clone(&row.job))).collect();
        (held == engine).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "the slow /events client to hold the engine's final state", || async {
        (*sse_jobs.lock().unwrap() == engine).then_some(())
    })
    .await;
    assert!(app.lock().unwrap().counters.missed_events > 0, "the console's event stream overflowed");
    assert!(*sse_missed.lock().unwrap() > 0, "the /events client's event stream overflowed");
    runtime.shutdown().await;
    fleet.stop().await;
}

/// The keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_has_the_same_fields_in_the_api_the_event_stream_and_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("test-config.toml");
    std::fs::write(&config, "").unwrap();
    let port = free_port().unwrap();
    let mut serve = serve_command("mqtt://127.0.0.1:1", port, &config, data.path()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "rocky serve to answer", || async {
        client.get(format!("{base}/healthz")).send().await.ok().map(|_| ())
    })
    .await;
    let upload =
        client.post(format!("{base}/firmware?name=a.bin")).body(test_image(4096, 1)).send().await.unwrap();
    assert_eq!(upload.status(), 201);
    let created = client
        .post(format!("{base}/jobs"))
        .json(&serde_json::json!({"device_id": "dev-1", "firmware": {"path": "a.bin"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // A new store numbers its jobs from a random point.
    let created: Value = created.json().await.unwrap();
    let id = created["jobs"][0]["id"].as_u64().unwrap();

    let api: Value = client.get(format!("{base}/jobs/{id}")).send().await.unwrap().json().await.unwrap();
    let events = client.get(format!("{base}/events")).send().await.unwrap();
    let mut body = events.bytes_stream();
    let mut text = String::new();
    let sse: Value = loop {
        let piece =
            tokio::time::timeout(Duration::from_secs(10), body.next()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&piece));
        let job = text
            .split("\n\n")
            .filter(|m| m.contains("event: job\n"))
            .find_map(|m| m.lines().find_map(|l| l.strip_prefix("data: ")));
        if let Some(data) = job {
            break serde_json::from_str(data).unwrap();
        }
    };
    let cli = wait_for(Duration::from_secs(10), "the store to hold the job", || async {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocky"))
            .args(["jobs", "--json", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .ok()?;
        let listed: Value = serde_json::from_slice(&out.stdout).ok()?;
        listed.as_array()?.first().cloned()
    })
    .await;
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(keys(&api).contains("device_id") && keys(&api).contains("chunks_done"), "{api}");
    assert_eq!(keys(&api), keys(&sse), "GET /jobs/1 and the SSE job event");
    assert_eq!(keys(&api), keys(&cli), "GET /jobs/1 and rocky jobs --json");
    assert_eq!(keys(&api["image"]), keys(&cli["image"]));
    assert_eq!(api["device_id"], cli["device_id"]);
}
