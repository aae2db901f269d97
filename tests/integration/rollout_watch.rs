//! `rocky rollout watch` as a CI pipeline uses it: it follows a rollout through `rocky serve`
//! until it ends and exits 0 when it succeeded, 1 when it completed with a device not updated,
//! 2 when it was cancelled; `rocky rollout show --csv` lists every device's outcome.

use std::path::Path;

use reqwest::StatusCode;
use rocky::sim::{Behavior, BehaviorPlan, FleetConfig, Selection};
use serde_json::{Value, json};

use crate::support::served_fleet::{ServedFleet, rollout_cli};
use crate::support::test_image;

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
    // dev-02 fails verification every time.
    let fail_second = |config: &mut FleetConfig| {
        config.plan = BehaviorPlan::default().with(Behavior::Fail, Selection::List(vec!["2".into()]))
    };
    let served = ServedFleet::start(2, fail_second, "fw-w.bin", &test_image(4096, 31)).await;
    let (client, base, data) = (&served.client, served.base.as_str(), served.data.path());
    let firmware = json!({"path": "fw-w.bin"});

    let good = create(
        client,
        base,
        json!({"name": "good", "firmware": firmware, "targets": {"devices": ["dev-01"]}}),
    )
    .await;
    let (code, out, err) = watch(base, data, &good).await.unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("succeeded") && out.contains("wave 1") && out.contains("1/1"), "{out}");
    assert!(!out.contains('\x1b'), "piped: no terminal codes\n{out}");

    let failing = create(
        client,
        base,
        json!({"name": "failing", "firmware": firmware, "targets": {"devices": ["dev-02"]}}),
    )
    .await;
    let (code, out, err) = watch(base, data, &failing).await.unwrap();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("completed"), "{out}");

    // Held at its manual gate; cancelled while the watch follows it.
    let held = create(
        client,
        base,
        json!({"name": "held", "firmware": firmware, "targets": {"devices": ["dev-01", "dev-02"]}, "gates": "manual"}),
    )
    .await;
    let watching = watch(base, data, &held);
    let cancelled = client.post(format!("{base}/rollouts/{held}/cancel")).send().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    let (code, out, err) = watching.await.unwrap();
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("cancelled"), "{out}");
    // A rollout that is not there is an error in words (exit 3, apart from "completed"), not a wait.
    let (code, _, err) = rollout_cli(base, data, &["watch", "999"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("no rollout 999"), "{err}");

    let (code, out, err) = rollout_cli(base, data, &["show", &failing, "--csv"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "device_id,outcome,job_id,attempts,detail");
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[1].starts_with("dev-02,failed,") && lines[1].contains("writing to flash failed"), "{out}");
    served.fleet.stop().await;
}
