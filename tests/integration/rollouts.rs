//! Rollouts with real processes: `rocky serve` on a real broker and a simulated fleet; waves,
//! label and pattern targets, manual gates, devices already up to date, an abort, and a
//! SIGKILL mid-wave after which the rollout resumes without creating any job twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::served_fleet::ServedFleet;
use crate::support::{Serve, metric, test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::sim::{Behavior, BehaviorPlan, Fleet, FleetConfig, Selection};
use serde_json::{Value, json};

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn healthy(&self) {
        wait_for(Duration::from_secs(30), "rocky serve to be healthy", || async {
            let response = self.client.get(format!("{}/healthz", self.base)).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        })
        .await;
    }

    async fn get(&self, path: &str) -> Value {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self.client.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or_default())
    }

    /// Waits until the rollout is in `state`; returns it.
    async fn rollout_in(&self, id: u64, state: &str, within: Duration) -> Value {
        wait_for(within, &format!("rollout {id} to be {state}"), || async {
            let rollout = self.get(&format!("/rollouts/{id}")).await;
            (rollout["state"] == state).then_some(rollout)
        })
        .await
    }

    /// How many jobs each device has.
    async fn jobs_per_device(&self) -> BTreeMap<String, usize> {
        let body = self.get("/jobs?limit=10000").await;
        let mut count = BTreeMap::new();
        for job in body["jobs"].as_array().unwrap() {
            *count.entry(job["device_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
        count
    }
}

/// `rocky serve` on `broker`, keeping its data in `data`, healthy and holding `image` as `name`;
/// with its API and port.
async fn serve_with_image(
    broker: &EmbeddedBroker,
    data: &Path,
    name: &str,
    image: &[u8],
) -> (Serve, Api, u16) {
    let port = free_port().unwrap();
    let api = Api { client: reqwest::Client::new(), base: format!("http://127.0.0.1:{port}") };
    let serve = Serve::start(&broker.url().to_string(), port, data);
    api.healthy().await;
    let upload = api.client.post(format!("{}/firmware?name={name}", api.base)).body(image.to_vec());
    assert_eq!(upload.send().await.unwrap().status(), StatusCode::CREATED);
    (serve, api, port)
}

fn outcomes(rollout: &Value) -> Vec<String> {
    rollout["devices"].as_array().unwrap().iter().map(|d| d["outcome"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_run_in_waves_with_gates_skip_the_up_to_date_and_abort_on_failures() {
    let broker = EmbeddedBroker::start(None).unwrap();
    // dev-09 and dev-10 fail verification (DONE_FAILED); the rest update.
    let mut fleet_config = FleetConfig::new(broker.url(), 10);
    fleet_config.plan =
        BehaviorPlan::default().with(Behavior::Fail, Selection::List(vec!["9".into(), "10".into()]));
    let fleet = Fleet::start(&fleet_config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let data = tempfile::tempdir().unwrap();
    let (_serve, api, _) = serve_with_image(&broker, data.path(), "fw-2.bin", &test_image(4096, 3)).await;
    let csv =
        "dev-01,model=a\ndev-02,model=a\ndev-03,model=a\ndev-04,model=a\ndev-05,model=b\ndev-06,model=b\n";
    let imported = api.client.post(format!("{}/devices/import", api.base)).body(csv).send().await.unwrap();
    assert_eq!(imported.status(), StatusCode::OK);

    // Bad requests name what is wrong.
    let (status, body) = api
        .post(
            "/rollouts",
            json!({"name": "x", "firmware": {"path": "fw-2.bin"}, "targets": {"labels": {"model": "z"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "targets.labels model=z match no device in the inventory");
    let (status, body) = api
        .post(
            "/rollouts",
            json!({"name": "x", "firmware": {"path": "fw-2.bin"}, "targets": {"glob": "nope-*"}}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "targets.glob \"nope-*\" matches no device in the inventory")
    );
    let (status, body) = api
        .post("/rollouts", json!({"name": "x", "firmware": {"path": "fw-2.bin"}, "targets": {"devices": ["dev-01"]}, "waves": [1, "ten%"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "waves: wave 2: \"ten%\" is not a share like \"10%\"");
    // Waves that do not grow as written are refused by name, not dropped (issue 20, C20).
    let (status, body) = api
        .post("/rollouts", json!({"name": "x", "firmware": {"path": "fw-2.bin"}, "targets": {"devices": ["dev-01", "dev-02"]}, "waves": [5, 3]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("wave 2 ends at 3 devices, not after wave 1 at 5"),
        "{body}"
    );

    // Labels, two waves: the first device, then the rest.
    let (status, created) = api
        .post(
            "/rollouts",
            json!({"name": "model a", "firmware": {"path": "fw-2.bin"}, "targets": {"labels": {"model": "a"}},
                   "waves": [1, "100%"], "max_concurrent": 2, "chunk_size": 1024}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let done = api.rollout_in(id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(done["reason"], "all 4 devices are up to date");
    assert_eq!(done["waves"][0]["succeeded"], 1);
    assert_eq!(done["waves"][1]["succeeded"], 3);
    let devices: Vec<&str> =
        done["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(devices, ["dev-01", "dev-02", "dev-03", "dev-04"], "in the inventory's order");
    assert!(done["devices"].as_array().unwrap().iter().all(|d| d["job_id"].is_u64()));
    let states: Vec<&str> =
        done["changes"].as_array().unwrap().iter().map(|c| c["to"].as_str().unwrap()).collect();
    assert_eq!(states, ["running", "succeeded"]);

    // The same image again, skipping devices already on it: nothing is sent.
    let before = api.jobs_per_device().await;
    let (_, again) = api
        .post("/rollouts", json!({"name": "again", "firmware": {"path": "fw-2.bin"}, "targets": {"glob": "dev-0*"}, "skip_up_to_date": true, "waves": ["50%"]}))
        .await;
    let again_id = again["id"].as_u64().unwrap();
    // dev-05 and dev-06 are not on it yet: the first wave (dev-01..03) is all up to date.
    let ended = api.rollout_in(again_id, "succeeded", Duration::from_secs(30)).await;
    let outcome = outcomes(&ended);
    assert_eq!(&outcome[..4], ["up_to_date"; 4]);
    // The simulated devices confirm their updates after a reboot (their status says so).
    assert_eq!(&outcome[4..], ["confirmed"; 2]);
    assert_eq!(ended["waves"][1]["confirmed"], 2, "{ended}");
    let after = api.jobs_per_device().await;
    assert_eq!(after.get("dev-01"), before.get("dev-01"), "no job for a device already up to date");

    // Manual gates: paused before each wave until resumed.
    let (_, gated) = api
        .post("/rollouts", json!({"name": "gated", "firmware": {"path": "fw-2.bin"}, "targets": {"devices": ["dev-07", "dev-08"]}, "waves": [1], "gates": "manual"}))
        .await;
    let gated_id = gated["id"].as_u64().unwrap();
    let paused = api.rollout_in(gated_id, "paused", Duration::from_secs(10)).await;
    assert_eq!(paused["reason"], "manual gates: resume to start wave 1 of 2");
    let (status, _) = api.post(&format!("/rollouts/{gated_id}/resume"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let between = wait_for(Duration::from_secs(30), "wave 1 to finish", || async {
        let r = api.get(&format!("/rollouts/{gated_id}")).await;
        (r["state"] == "paused" && r["waves"][0]["succeeded"] == 1).then_some(r)
    })
    .await;
    assert!(
        between["reason"].as_str().unwrap().contains("manual gates: resume to start wave 2"),
        "{between}"
    );
    assert_eq!(outcomes(&between)[1], "pending");
    api.post(&format!("/rollouts/{gated_id}/resume"), json!({})).await;
    api.rollout_in(gated_id, "succeeded", Duration::from_secs(30)).await;
    let (status, body) = api.post(&format!("/rollouts/{gated_id}/pause"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("has ended (succeeded)"));

    // Failures over the share abort the rollout: what had not started never gets a job.
    let (_, risky) = api
        .post(
            "/rollouts",
            json!({"name": "risky", "firmware": {"path": "fw-2.bin"},
                   "targets": {"devices": ["dev-09", "dev-10", "dev-05", "dev-06"]}, "max_concurrent": 1,
                   "abort": {"failure_share": 0.5, "min_finished": 2}}),
        )
        .await;
    let risky_id = risky["id"].as_u64().unwrap();
    let aborted = api.rollout_in(risky_id, "aborted", Duration::from_secs(30)).await;
    assert_eq!(aborted["reason"], "2 of 2 finished devices failed (100%), at or over the abort share of 50%");
    assert_eq!(outcomes(&aborted), ["failed", "failed", "cancelled", "cancelled"]);
    assert!(aborted["devices"][2]["job_id"].is_null());
    let listed = api.get("/rollouts").await;
    assert_eq!(listed["rollouts"].as_array().unwrap().len(), 4);
    assert!(listed["rollouts"][0].get("devices").is_none(), "a listing leaves out the devices");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_killed_mid_wave_resumes_after_a_restart_without_duplicating_jobs() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 8)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let api = Api { client: reqwest::Client::new(), base: format!("http://127.0.0.1:{port}") };
    let mut serve = Serve::start(&broker.url().to_string(), port, data.path());
    api.healthy().await;
    let upload =
        api.client.post(format!("{}/firmware?name=fw.bin", api.base)).body(test_image(8192, 4).to_vec());
    assert_eq!(upload.send().await.unwrap().status(), StatusCode::CREATED);
    // 8 chunks of 1 KiB at 8 KiB/s: about a second a job, two at a time.
    let devices: Vec<String> = (1..=8).map(|n| format!("dev-{n:02}")).collect();
    let (status, created) = api
        .post(
            "/rollouts",
            json!({"name": "durable", "firmware": {"path": "fw.bin"}, "targets": {"devices": devices},
                   "chunk_size": 1024, "max_rate": "8KiB/s", "max_concurrent": 2, "waves": [2, "100%"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    wait_for(Duration::from_secs(30), "the second wave to be under way", || async {
        let r = api.get(&format!("/rollouts/{id}")).await;
        (r["waves"][1]["active"].as_u64() > Some(0)).then_some(())
    })
    .await;
    serve.kill9();
    drop(serve);
    let _serve = Serve::start(&broker.url().to_string(), port, data.path());
    api.healthy().await;
    let done = api.rollout_in(id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(done["reason"], "all 8 devices are up to date");
    let jobs = api.jobs_per_device().await;
    for device in &devices {
        assert_eq!(jobs.get(device), Some(&1), "{device} got exactly one job: {jobs:?}");
    }
    fleet.stop().await;
}

fn rollout_cli(base: &str, data: &Path, args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = crate::support::served_fleet::rollout_cli(base, data, args);
    (code == Some(0), out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_shows_and_controls_rollouts() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 3)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let api = Api { client: reqwest::Client::new(), base: base.clone() };
    let _serve = Serve::start(&broker.url().to_string(), port, data.path());
    api.healthy().await;
    // Every change of state is an event on /events.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stream = api.client.get(format!("{base}/events")).send().await.unwrap();
    let reader = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(bytes)) = stream.chunk().await {
            reader.lock().unwrap().push_str(&String::from_utf8_lossy(&bytes));
        }
    });
    // A local file: the CLI uploads it, then names it by hash.
    let file = data.path().join("fw-3.0.bin");
    std::fs::write(&file, test_image(2048, 9)).unwrap();
    let fw = file.to_str().unwrap();
    let (ok, _, err) = rollout_cli(&base, data.path(), &["create", "--name", "cli", "--firmware", fw]);
    assert!(!ok && err.contains("name the devices"), "{err}");
    let (ok, _, err) = rollout_cli(
        &base,
        data.path(),
        &["create", "--name", "cli", "--firmware", "/no/such.bin", "--devices", "a"],
    );
    assert!(!ok && err.contains("cannot read /no/such.bin: no such file here"), "{err}");
    let (ok, out, err) = rollout_cli(
        &base,
        data.path(),
        &[
            "create",
            "--name",
            // Longer than the NAME column's 24 characters: the listing widens it.
            "cli rollout to the first three devices",
            "--firmware",
            fw,
            "--devices",
            "dev-01,dev-02,dev-03",
            "--waves",
            "1",
            "--manual-gates",
            "--success-threshold",
            "95%",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "rollout 1 created: 3 devices, 2 waves, scheduled\n");
    api.rollout_in(1, "paused", Duration::from_secs(10)).await;
    // A window of its devices, as the console pages them (issue 21).
    let window = api.get("/rollouts/1?from=1&limit=1").await;
    assert_eq!((window["device_count"].as_u64(), window["devices_from"].as_u64()), (Some(3), Some(1)));
    assert_eq!(window["devices"].as_array().map(Vec::len), Some(1), "{window}");
    assert_eq!(window["devices"][0]["device_id"], api.get("/rollouts/1").await["devices"][1]["device_id"]);
    for bad in ["limit=0", "limit=10001", "from=x"] {
        let response = api.client.get(format!("{}/rollouts/1?{bad}", api.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("limit") || e.contains("from")),
            "{bad}: {body}"
        );
    }
    let (_, shown, _) = rollout_cli(&base, data.path(), &["show", "1"]);
    assert!(shown.contains("\n    1        1        1       0          0       0          0\n"), "{shown}");
    assert!(shown.contains("\ndev-02  pending          -      0\n"), "{shown}");
    assert!(shown.contains("state    paused: manual gates: resume to start wave 1 of 2"), "{shown}");
    assert!(shown.contains("image    fw-3.0.bin (2048 bytes"), "{shown}");
    let (ok, out, _) = rollout_cli(&base, data.path(), &["resume", "1"]);
    assert!(ok);
    assert_eq!(out, "rollout 1: running (resumed by the operator at wave 1 of 2)\n");
    wait_for(Duration::from_secs(30), "wave 1 to finish at the second gate", || async {
        let r = api.get("/rollouts/1").await;
        (r["waves"][0]["succeeded"] == 1 && r["state"] == "paused").then_some(())
    })
    .await;
    // Paused before wave 2, which has started nothing: the listing says so (issue 20, C23).
    let (_, listed, _) = rollout_cli(&base, data.path(), &["list"]);
    assert!(listed.contains(" before 2/2 "), "{listed}");
    let lines: Vec<&str> = listed.lines().collect();
    let state_at = |line: &str, word: &str| line.find(word).map(|at| line[..at].chars().count());
    assert!(lines[1].contains("cli rollout to the first three devices "), "the name whole: {listed}");
    assert_eq!(state_at(lines[0], "STATE"), state_at(lines[1], "paused"), "columns line up: {listed}");
    // `show` has the rules and the history the console shows.
    let (_, shown, _) = rollout_cli(&base, data.path(), &["show", "1"]);
    assert!(shown.contains("rules    a wave goes on at ≥95% succeeded · manual gates"), "{shown}");
    assert!(
        shown.contains("\nhistory\n") && shown.contains("paused → running: resumed by the operator"),
        "{shown}"
    );
    let (_, out, _) = rollout_cli(&base, data.path(), &["cancel", "1"]);
    assert_eq!(out, "rollout 1: cancelled (cancelled by the operator)\n");
    let (_, listed, _) = rollout_cli(&base, data.path(), &["list"]);
    assert!(
        listed.contains("cli") && listed.contains("cancelled") && listed.ends_with("1 rollout\n"),
        "{listed}"
    );
    let (ok, _, err) = rollout_cli(&base, data.path(), &["pause", "1"]);
    assert!(!ok && err.contains("rollout 1 has ended (cancelled) (HTTP 409)"), "{err}");
    let (ok, _, err) = rollout_cli(&base, data.path(), &["show", "7"]);
    assert!(!ok && err.contains("no rollout 7 (HTTP 404)"), "{err}");
    let events = wait_for(Duration::from_secs(10), "the rollout's events on /events", || async {
        let text = seen.lock().unwrap().clone();
        text.contains("\"to\":\"cancelled\"").then_some(text)
    })
    .await;
    let states: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("data:") && l.contains("\"rollout\":1"))
        .filter_map(|l| l.split("\"to\":\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(states, ["paused", "running", "paused", "cancelled"]);
    assert!(events.contains("event: rollout"), "{events}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_cancel_survives_a_sigkill_right_after_its_answer() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (mut serve, api, port) = serve_with_image(&broker, data.path(), "fw.bin", &test_image(1024, 6)).await;
    let body = json!({"name": "held", "firmware": {"path": "fw.bin"}, "targets": {"devices": ["d1"]}, "gates": "manual"});
    let (status, created) = api.post("/rollouts", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let (status, _) = api.post(&format!("/rollouts/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    serve.kill9();
    drop(serve);
    let _serve = Serve::start(&broker.url().to_string(), port, data.path());
    api.healthy().await;
    assert_eq!(api.get(&format!("/rollouts/{id}")).await["state"], "cancelled");
}

/// Cancelling a rollout ends its jobs together: a few store commits for the lot, where each job
/// used to be a commit of its own, waited for in turn by the rollouts' planner (400 commits here;
/// a wave of 4,096 active jobs, 4,096).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_cancel_ends_its_jobs_in_a_few_store_commits() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (_serve, api, _) = serve_with_image(&broker, data.path(), "fw.bin", &test_image(1024, 7)).await;
    // Devices that never answer: their jobs stay under way until cancelled.
    let devices: Vec<String> = (1..=400).map(|n| format!("silent-{n:03}")).collect();
    let body = json!({"name": "mass", "firmware": {"path": "fw.bin"}, "targets": {"devices": devices}});
    let (status, created) = api.post("/rollouts", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let open =
        |jobs: &Value| jobs["jobs"].as_array().unwrap().iter().filter(|j| j["state"] != "cancelled").count();
    wait_for(Duration::from_secs(30), "the rollout's 400 jobs", || async {
        let jobs = api.get(&format!("/jobs?rollout={id}&limit=10000")).await;
        (jobs["jobs"].as_array().unwrap().len() == 400 && open(&jobs) == 400).then_some(())
    })
    .await;
    let commits = || async {
        let text =
            api.client.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
        metric(&text, "rocky_store_write_seconds_count")
    };
    let before = commits().await;
    let (status, _) = api.post(&format!("/rollouts/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    wait_for(Duration::from_secs(60), "every job of the rollout to be cancelled", || async {
        let jobs = api.get(&format!("/jobs?rollout={id}&limit=10000")).await;
        (open(&jobs) == 0).then_some(())
    })
    .await;
    let spent = commits().await - before;
    assert!(spent < 40, "cancelling 400 jobs took {spent} store commits");
}

/// `(created_at, finished_at)` of each of a rollout's jobs, by device, in creation order.
async fn rollout_jobs(api: &Api, rollout: u64) -> BTreeMap<String, Vec<(u64, u64)>> {
    let body = api.get(&format!("/jobs?rollout={rollout}&limit=10000")).await;
    let mut jobs: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for job in body["jobs"].as_array().unwrap() {
        assert_eq!(job["rollout_id"], rollout, "the filter keeps this rollout's jobs only");
        let device = job["device_id"].as_str().unwrap().to_owned();
        let times = (job["created_at"].as_u64().unwrap(), job["finished_at"].as_u64().unwrap_or(u64::MAX));
        jobs.entry(device).or_default().push(times);
    }
    jobs
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_device_rollout_keeps_its_start_cap_and_wave_order_pauses_and_retries() {
    let broker = EmbeddedBroker::start(None).unwrap();
    // Device 150 fails verification every time: tried once more, then counted failed.
    let mut fleet_config = FleetConfig::new(broker.url(), 200);
    fleet_config.plan = BehaviorPlan::default().with(Behavior::Fail, Selection::List(vec!["150".into()]));
    let fleet = Fleet::start(&fleet_config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(60)).await);
    let ids: Vec<String> = fleet.ids().iter().map(|d| d.to_string()).collect();
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let api = Api { client: reqwest::Client::new(), base: format!("http://127.0.0.1:{port}") };
    let _serve = Serve::start(&broker.url().to_string(), port, data.path());
    api.healthy().await;
    let upload =
        api.client.post(format!("{}/firmware?name=fw-3.bin", api.base)).body(test_image(4096, 9).to_vec());
    assert_eq!(upload.send().await.unwrap().status(), StatusCode::CREATED);

    // 3000 starts a minute: one every 20 ms. A canary, then 10%, then the rest.
    let (status, created) = api
        .post(
            "/rollouts",
            json!({"name": "fleet", "firmware": {"path": "fw-3.bin"}, "targets": {"devices": ids},
                   "waves": [1, "10%", "100%"], "max_per_minute": 3000, "success_threshold": 0.9,
                   "retries": 1, "retry_backoff_s": 1, "chunk_size": 1024}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();

    // Paused once wave 3 is under way: nothing starts until it is resumed.
    wait_for(Duration::from_secs(60), "wave 3 to start", || async {
        let rollout = api.get(&format!("/rollouts/{id}")).await;
        (rollout["waves"][2]["active"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    let (status, paused) = api.post(&format!("/rollouts/{id}/pause"), json!({})).await;
    assert_eq!((status, paused["state"].as_str()), (StatusCode::OK, Some("paused")));
    let paused_at = unix_ms();
    // The jobs already started finish; then the pause has lasted a while with none started.
    wait_for(Duration::from_secs(30), "the started jobs to finish", || async {
        let rollout = api.get(&format!("/rollouts/{id}")).await;
        let active: u64 =
            rollout["waves"].as_array().unwrap().iter().map(|w| w["active"].as_u64().unwrap()).sum();
        (active == 0).then_some(())
    })
    .await;
    let resumed_at = unix_ms();
    let (status, _) = api.post(&format!("/rollouts/{id}/resume"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let ended = api.rollout_in(id, "completed", Duration::from_secs(120)).await;
    assert_eq!(ended["reason"], "1 of 200 devices did not update");
    let jobs = rollout_jobs(&api, id).await;

    // One job per device, two for the failing one (its retry), none created twice.
    assert_eq!(jobs.len(), 200);
    let failing = &ids[149];
    for (device, its) in &jobs {
        assert_eq!(its.len(), if device == failing { 2 } else { 1 }, "{device}");
    }
    // The retry waited its backoff after the first try ended.
    let tries = &jobs[failing];
    assert!(tries[1].0 >= tries[0].1 + 1000 - 5, "retried {} ms after the failure", tries[1].0 - tries[0].1);

    // The start cap: any 50 consecutive starts span at least 49 × 20 ms (less a little jitter
    // between deciding a start and recording the job).
    let mut starts: Vec<u64> = jobs.values().flatten().map(|(created, _)| *created).collect();
    starts.sort_unstable();
    for window in starts.windows(50) {
        assert!(window[49] - window[0] >= 49 * 20 - 60, "50 starts within {} ms", window[49] - window[0]);
    }
    // Nothing started while paused (a start already decided at the pause may land just after it).
    let during: Vec<&u64> = starts.iter().filter(|t| **t > paused_at + 200 && **t < resumed_at).collect();
    assert!(during.is_empty(), "{} jobs started while paused", during.len());

    // Waves in order: the canary ended before wave 2 started, wave 2 before wave 3.
    let first =
        |range: std::ops::Range<usize>| ids[range].iter().map(|d| jobs[d][0]).collect::<Vec<(u64, u64)>>();
    let (canary, wave2, wave3) = (first(0..1), first(1..20), first(20..200));
    assert!(canary[0].1 <= wave2.iter().map(|j| j.0).min().unwrap(), "the canary finished first");
    let wave2_end = wave2.iter().map(|j| j.1).max().unwrap();
    assert!(wave2_end <= wave3.iter().map(|j| j.0).min().unwrap(), "wave 2 finished before wave 3");
    fleet.stop().await;
}

/// A wave larger than one pass of the rollouts task starts (64 jobs), with no cap: every device
/// gets its job (the starts past the first pass once went unstarted, their devices "active"
/// for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_wave_rollout_without_caps_starts_every_device_of_a_wave_larger_than_a_pass() {
    let served = ServedFleet::start(150, |_| {}, "fw-wide.bin", &test_image(2048, 5)).await;
    let (ids, api) = (served.ids(), Api { client: served.client.clone(), base: served.base.clone() });
    let (status, created) = api
        .post(
            "/rollouts",
            json!({"name": "wide", "firmware": {"path": "fw-wide.bin"}, "targets": {"devices": ids}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let ended = api.rollout_in(id, "succeeded", Duration::from_secs(90)).await;
    assert_eq!(ended["reason"], "all 150 devices are up to date");
    let jobs = rollout_jobs(&api, id).await;
    assert_eq!(jobs.len(), 150);
    assert!(jobs.values().all(|tries| tries.len() == 1), "one job each");
    served.fleet.stop().await;
}

/// A rollout with `start_at` 2 s ahead is `scheduled` and says until when; no job of it is
/// created before its time (each job's creation time is at or after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_with_start_at_creates_no_job_before_its_time() {
    let served = ServedFleet::start(2, |_| {}, "fw-later.bin", &test_image(2048, 8)).await;
    let (ids, api) = (served.ids(), Api { client: served.client.clone(), base: served.base.clone() });
    let start_at = unix_ms() + 2000;
    let (status, created) = api
        .post(
            "/rollouts",
            json!({"name": "later", "firmware": {"path": "fw-later.bin"}, "targets": {"devices": ids},
                   "start_at": start_at}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["settings"]["start_at"].as_u64(), Some(start_at));
    let view = api.get(&format!("/rollouts/{id}")).await;
    if unix_ms() < start_at {
        assert_eq!(view["state"], "scheduled", "{view}");
        assert!(view["reason"].as_str().unwrap_or_default().starts_with("scheduled: starts at "), "{view}");
    }
    let (status, bad) = api
        .post("/rollouts", json!({"name": "bad", "firmware": {"path": "fw-later.bin"}, "targets": {"devices": ids}, "start_at": "soon"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.to_string().contains("start_at \\\"soon\\\" is not an RFC 3339 time"), "{bad}");
    api.rollout_in(id, "succeeded", Duration::from_secs(30)).await;
    let jobs = api.get("/jobs").await;
    let created_at: Vec<u64> =
        jobs["jobs"].as_array().unwrap().iter().map(|j| j["created_at"].as_u64().unwrap()).collect();
    assert_eq!(created_at.len(), 2);
    assert!(created_at.iter().all(|at| *at >= start_at), "{created_at:?} against {start_at}");
    served.fleet.stop().await;
}

/// A rollout whose only window is closed now starts nothing: it says which window it waits for
/// (which shows the rollouts task judged it), and no job exists; a bad window is a 400 by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_window_holds_every_start_and_says_when_it_opens() {
    let served = ServedFleet::start(2, |_| {}, "fw-window.bin", &test_image(2048, 6)).await;
    let (ids, api) = (served.ids(), Api { client: served.client.clone(), base: served.base.clone() });
    // A one-minute window that opened an hour ago (UTC): closed now, whatever the day.
    let minute = (unix_ms() / 60_000 + 24 * 60 - 60) % (24 * 60);
    let (start, end) = (format!("{:02}:{:02}", minute / 60, minute % 60), {
        let next = (minute + 1) % (24 * 60);
        format!("{:02}:{:02}", next / 60, next % 60)
    });
    let every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let window = json!([{"days": every_day, "start": start, "end": end, "tz": "UTC"}]);
    let (status, created) = api
        .post(
            "/rollouts",
            json!({"name": "night", "firmware": {"path": "fw-window.bin"}, "targets": {"devices": ids}, "windows": window}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let waiting = wait_for(Duration::from_secs(10), "the rollout to wait for its window", || async {
        let view = api.get(&format!("/rollouts/{id}")).await;
        let reason = view["reason"].as_str()?.to_owned();
        reason.starts_with("waiting for the window that opens ").then_some(view)
    })
    .await;
    assert_eq!(waiting["state"], "running", "{waiting}");
    assert!(waiting["reason"].as_str().unwrap().contains(&format!("{start}:00 UTC)")), "{waiting}");
    assert_eq!(api.get("/jobs").await["jobs"], json!([]), "no job while the window is closed");
    let (status, bad) = api
        .post(
            "/rollouts",
            json!({"name": "bad", "firmware": {"path": "fw-window.bin"}, "targets": {"devices": ids},
                   "windows": [{"days": ["mon"], "start": "02:00", "end": "05:00", "tz": "Mars/Olympus"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.to_string().contains("windows[0].tz"), "{bad}");
    served.fleet.stop().await;
}

/// A schedule and a window are kept through a SIGKILL and a restart: the rollout due in an hour
/// is still `scheduled` for the same time, the one whose window is closed still waits for it,
/// and neither has made a job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_and_a_window_survive_a_sigkill_and_a_restart() {
    let mut served = ServedFleet::start(2, |_| {}, "fw-kept.bin", &test_image(2048, 9)).await;
    let (ids, api) = (served.ids(), Api { client: served.client.clone(), base: served.base.clone() });
    let start_at = unix_ms() + 3_600_000;
    let firmware = json!({"path": "fw-kept.bin"});
    let (status, later) = api
        .post(
            "/rollouts",
            json!({"name": "later", "firmware": firmware, "targets": {"devices": ids}, "start_at": start_at}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{later}");
    // A one-minute window that opened an hour ago (UTC): closed now, whatever the day.
    let minute = (unix_ms() / 60_000 + 24 * 60 - 60) % (24 * 60);
    let hhmm = |m: u64| format!("{:02}:{:02}", m / 60, m % 60);
    let every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let window = json!([{"days": every_day, "start": hhmm(minute), "end": hhmm((minute + 1) % (24 * 60)), "tz": "UTC"}]);
    let (status, night) = api
        .post(
            "/rollouts",
            json!({"name": "night", "firmware": firmware, "targets": {"devices": ids}, "windows": window}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{night}");
    let (later, night) = (later["id"].as_u64().unwrap(), night["id"].as_u64().unwrap());
    let waiting = |id: u64| {
        let api = &api;
        async move {
            let view = api.get(&format!("/rollouts/{id}")).await;
            view["reason"].as_str()?.starts_with("waiting for the window that opens ").then_some(view)
        }
    };
    let before = wait_for(Duration::from_secs(10), "the window to be judged", || waiting(night)).await;

    served.serve.kill9();
    let port: u16 = served.base.rsplit(':').next().unwrap().parse().unwrap();
    served.serve = Serve::start(&served.broker.url().to_string(), port, served.data.path());
    api.healthy().await;
    let view = api.get(&format!("/rollouts/{later}")).await;
    assert_eq!(view["state"], "scheduled", "{view}");
    assert_eq!(view["settings"]["start_at"].as_u64(), Some(start_at), "{view}");
    assert!(view["reason"].as_str().unwrap_or_default().starts_with("scheduled: starts at "), "{view}");
    let after = wait_for(Duration::from_secs(10), "the window judged again", || waiting(night)).await;
    assert_eq!(after["reason"], before["reason"], "the same window, the same opening");
    assert!(after["settings"]["windows"].is_array(), "{after}");
    assert_eq!(after["settings"]["windows"], before["settings"]["windows"]);
    assert_eq!(api.get("/jobs").await["jobs"], json!([]), "no job before its time or window");
    served.fleet.stop().await;
}
