//! `rocky rollout watch` as a CI pipeline uses it: it follows a rollout through `rocky serve`
//! until it ends and exits 0 when it succeeded, 1 when it completed with a device not updated,
//! 2 when it was cancelled; `rocky rollout show --csv` lists every device's outcome.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::sim::{Behavior, BehaviorPlan, Fleet, FleetConfig, Selection};
use serde_json::{Value, json};

use crate::support::{Serve, healthy, test_image};

/// `rocky rollout ARGS` against `base`: its exit code and its output.
fn rollout_cli(base: &str, data: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocky"))
        .args(["rollout", "--server", base])
        .args(args)
        .arg("--config")
        .arg(data.join("test-config.toml"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("rocky rollout runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn create(client: &reqwest::Client, base: &str, body: Value) -> String {
    let created = client.post(format!("{base}/rollouts")).json(&body).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let view: Value = created.json().await.unwrap();
    view["id"].as_u64().unwrap().to_string()
}

/// Watches rollout `id` in a process of its own until it ends.
fn watch(base: &str, data: &Path, id: &str) -> tokio::task::JoinHandle<(Option<i32>, String, String)> {
    let (base, data, id) = (base.to_owned(), data.to_owned(), id.to_owned());
    tokio::task::spawn_blocking(move || rollout_cli(&base, &data, &["watch", &id]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_watch_exits_0_1_and_2_and_show_csv_lists_every_device() {
    let broker = EmbeddedBroker::start(None).unwrap();
    // dev-02 fails verification every time.
    let mut config = FleetConfig::new(broker.url(), 2);
    config.plan = BehaviorPlan::default().with(Behavior::Fail, Selection::List(vec!["2".into()]));
    let fleet = Fleet::start(&config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let _serve = Serve::start(&broker.url().to_string(), port, data.path());
    healthy(&client, &base).await;
    let upload = client.post(format!("{base}/firmware?name=fw-w.bin")).body(test_image(4096, 31).to_vec());
    assert_eq!(upload.send().await.unwrap().status(), StatusCode::CREATED);
    let firmware = json!({"path": "fw-w.bin"});

    let good = create(
        &client,
        &base,
        json!({"name": "good", "firmware": firmware, "targets": {"devices": ["dev-01"]}}),
    )
    .await;
    let (code, out, err) = watch(&base, data.path(), &good).await.unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("succeeded") && out.contains("wave 1") && out.contains("1/1"), "{out}");
    assert!(!out.contains('\x1b'), "piped: no terminal codes\n{out}");

    let failing = create(
        &client,
        &base,
        json!({"name": "failing", "firmware": firmware, "targets": {"devices": ["dev-02"]}}),
    )
    .await;
    let (code, out, err) = watch(&base, data.path(), &failing).await.unwrap();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("completed"), "{out}");

    // Held at its manual gate; cancelled while the watch follows it.
    let held = create(
        &client,
        &base,
        json!({"name": "held", "firmware": firmware, "targets": {"devices": ["dev-01", "dev-02"]}, "gates": "manual"}),
    )
    .await;
    let watching = watch(&base, data.path(), &held);
    let cancelled = client.post(format!("{base}/rollouts/{held}/cancel")).send().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    let (code, out, err) = watching.await.unwrap();
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("cancelled"), "{out}");
    // A rollout that is not there is an error in words (exit 3, apart from "completed"), not a wait.
    let (code, _, err) = rollout_cli(&base, data.path(), &["watch", "999"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("no rollout 999"), "{err}");

    let (code, out, err) = rollout_cli(&base, data.path(), &["show", &failing, "--csv"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "device_id,outcome,job_id,attempts,detail");
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[1].starts_with("dev-02,failed,") && lines[1].contains("writing to flash failed"), "{out}");
    fleet.stop().await;
}
