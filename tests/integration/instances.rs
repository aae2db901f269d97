//! Several `rocky serve` instances on one PostgreSQL database (a scratch database each test) and
//! one mosquitto: a killed instance's jobs are taken over after its lease and finish with every
//! image verified by the simulated devices, and the broker's own log shows that no device got
//! chunks from the dead instance after the survivor had started sending to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::support::tmux::{Tmux, job_states};
use crate::support::{Instance, Mosquitto, test_image, wait_for};
use reqwest::StatusCode;
use rocky::sim::{Fleet, FleetConfig, Verdict};
use rocky::store::ScratchDatabase;
use serde_json::{Value, json};

/// A scratch database, or `None` (said) when no PostgreSQL answers, which CI forbids.
async fn scratch(tag: &str) -> Option<ScratchDatabase> {
    match ScratchDatabase::create(&ScratchDatabase::admin_url(), tag).await {
        Ok(db) => Some(db),
        Err(e) => {
            assert!(std::env::var_os("ROCKY_REQUIRE_POSTGRES").is_none(), "PostgreSQL is required: {e}");
            eprintln!("SKIPPED: no PostgreSQL ({e})");
            None
        }
    }
}

async fn jobs(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let Ok(response) = client.get(format!("{base}/jobs?limit=10000")).send().await else { return Vec::new() };
    let body: Value = response.json().await.unwrap_or_default();
    body["jobs"].as_array().cloned().unwrap_or_default()
}

/// Who sent chunks to each device, in the order the broker received them, from mosquitto's
/// debug log (`Received PUBLISH from CLIENT (…, '/fota/data/DEVICE/N', …)`).
fn chunk_senders(log: &Path) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut senders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.split("Received PUBLISH from ").nth(1) else { continue };
        let Some((client, rest)) = rest.split_once(' ') else { continue };
        let Some(topic) = rest.split('\'').nth(1) else { continue };
        if let Some(device) = topic.strip_prefix("/fota/data/").and_then(|t| t.split('/').next()) {
            senders.entry(device.to_owned()).or_default().push(client.to_owned());
        }
    }
    senders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_jobs_are_taken_over_after_its_lease_and_no_device_hears_from_both() {
    let Some(mut w) = Watched::start("failover", 12).await else { return };
    let (client, broker_log) = (w.client.clone(), w.broker_log.clone());
    // 12 devices, 32 chunks of 1 KiB paced at 100 ms: about 3 s each, all at once.
    let ids = w.jobs_on_a(7, 100).await;
    assert_eq!(ids.len(), 12);

    wait_for(Duration::from_secs(30), "a to be mid-transfer on most devices", || async {
        let moving = jobs(&client, &w.a.base)
            .await
            .iter()
            .filter(|j| j["state"] == "transferring" && j["chunks_done"].as_u64() >= Some(4))
            .count();
        (moving >= 8).then_some(())
    })
    .await;
    // b leaves a's live jobs alone: until a dies, every chunk the broker received came from a.
    // (b may list them meanwhile: it reads the other instances' jobs from the store.)
    let before_kill = chunk_senders(&broker_log);
    assert!(
        before_kill.values().flatten().all(|client| client == "rocky-a"),
        "b leaves a's live jobs alone: {before_kill:?}"
    );
    w.a.kill9();

    let listed = wait_for(Duration::from_secs(60), "b to finish every job a started", || async {
        let jobs = jobs(&client, &w.b.base).await;
        let done =
            jobs.iter().filter(|j| ids.contains(&j["id"].as_u64().unwrap_or(0)) && j["state"] == "succeeded");
        (done.count() == 12).then_some(jobs)
    })
    .await;
    assert_eq!(listed.len(), 12, "b lists the jobs it took over, under their ids");
    for (device, report) in w.fleet.reports() {
        assert_eq!(report.last_verdict(), Some(&Verdict::Verified), "{device}: {report:?}");
    }
    let resumed = listed.iter().filter(|j| j["attempts"].as_u64() > Some(1)).count();
    assert!(resumed >= 8, "the jobs a was sending ran again from b ({resumed})");

    let senders = chunk_senders(&broker_log);
    assert_eq!(senders.len(), 12, "chunks reached every device: {senders:?}");
    for (device, from) in &senders {
        let first_b = from.iter().position(|c| c == "rocky-b").unwrap_or(from.len());
        assert!(
            from[first_b..].iter().all(|c| c == "rocky-b"),
            "{device} got chunks from rocky-a after rocky-b had started: {from:?}"
        );
        assert!(from.iter().all(|c| c == "rocky-a" || c == "rocky-b"), "{device}: {from:?}");
    }
    assert!(senders.values().filter(|from| from.contains(&"rocky-b".to_owned())).count() >= 8);
    w.fleet.stop().await;
}

/// Two instances, `rocky-a` and `rocky-b` (lease 2 s), on a fresh database and a mosquitto
/// that logs every PUBLISH with its client id, with `devices` simulated devices connected.
struct Watched {
    a: Instance,
    b: Instance,
    client: reqwest::Client,
    fleet: Fleet,
    broker_log: PathBuf,
    _broker: Mosquitto,
    _logs: tempfile::TempDir,
    _db: ScratchDatabase,
}

impl Watched {
    async fn start(tag: &str, devices: usize) -> Option<Self> {
        let db = scratch(tag).await?;
        let logs = tempfile::tempdir().unwrap();
        let broker_log = logs.path().join("mosquitto.log");
        let extra = format!("log_dest file {}\nlog_type debug\n", broker_log.display());
        let broker = Mosquitto::start_with("instances", &extra)?;
        let fleet = Fleet::start(&FleetConfig::new(broker.url(), devices)).unwrap();
        assert!(fleet.wait_connected(Duration::from_secs(20)).await);
        let client = reqwest::Client::new();
        let url = broker.url().to_string();
        let a = Instance::start("rocky-a", &url, &db, 2);
        let b = Instance::start("rocky-b", &url, &db, 2);
        a.wait_healthy(&client).await;
        b.wait_healthy(&client).await;
        Some(Self { a, b, client, fleet, broker_log, _broker: broker, _logs: logs, _db: db })
    }

    /// Uploads a 32 KiB image to a and makes one job there for each device, in 1 KiB chunks
    /// paced at `interval_ms`; returns the jobs' ids.
    async fn jobs_on_a(&self, seed: u64, interval_ms: u64) -> Vec<u64> {
        let image = test_image(32 * 1024, seed);
        let upload = self
            .client
            .post(format!("{}/firmware?name=fw.bin", self.a.base))
            .body(image.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
        let devices: Vec<String> = self.fleet.ids().iter().map(|id| id.to_string()).collect();
        let body = json!({"device_ids": devices, "firmware": {"path": "fw.bin"}, "chunk_size": 1024, "chunk_interval_ms": interval_ms});
        let created = self.client.post(format!("{}/jobs", self.a.base)).json(&body).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.unwrap();
        created["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()).collect()
    }
}

/// The ids and states an instance's API lists.
async fn states(client: &reqwest::Client, base: &str) -> BTreeMap<u64, String> {
    jobs(client, base)
        .await
        .iter()
        .map(|j| (j["id"].as_u64().unwrap_or(0), j["state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_each_show_every_job_and_cancel_one_another_s() {
    let Some(db) = scratch("three").await else { return };
    let Some(broker) = Mosquitto::start("instances") else { return };
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 5)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let client = reqwest::Client::new();
    let url = broker.url().to_string();
    let all: Vec<Instance> =
        ["rocky-a", "rocky-b", "rocky-c"].iter().map(|n| Instance::start(n, &url, &db, 5)).collect();
    for instance in &all {
        instance.wait_healthy(&client).await;
    }
    let image = test_image(8 * 1024, 3);
    let mut ids = Vec::new();
    // Each instance makes two jobs for devices that answer; b also one for a device that never
    // does (no such device is connected), which stays requesting until it is cancelled.
    for (instance, devices) in
        all.iter().zip([["dev-01", "dev-02"], ["dev-03", "ghost-1"], ["dev-04", "dev-05"]])
    {
        let upload = client
            .post(format!("{}/firmware?name=fw.bin", instance.base))
            .body(image.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
        let body = json!({"device_ids": devices, "firmware": {"path": "fw.bin"}, "chunk_size": 1024});
        let created: Value = client
            .post(format!("{}/jobs", instance.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.extend(created["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()));
    }
    assert_eq!(ids.len(), 6);
    let ghost = ids[3];
    for instance in &all {
        wait_for(Duration::from_secs(30), "every instance to list every job as it stands", || async {
            let states = states(&client, &instance.base).await;
            let settled = ids.iter().all(|id| match states.get(id).map(String::as_str) {
                Some("succeeded") => *id != ghost,
                Some("requesting") => *id == ghost,
                _ => false,
            });
            settled.then_some(())
        })
        .await;
    }

    // A console attached to c shows the jobs a and b made, as they ended.
    let console_dir = tempfile::tempdir().unwrap();
    std::fs::write(console_dir.path().join("c.toml"), "").unwrap();
    let command = format!(
        "{} console --server {} --config {}/c.toml --data-dir {}; sleep 600",
        env!("CARGO_BIN_EXE_rocky"),
        all[2].base,
        console_dir.path().display(),
        console_dir.path().display()
    );
    if let Some(tmux) = Tmux::start("instances-console", &command) {
        tmux.wait_for(
            Duration::from_secs(30),
            "the attached console to list every instance's jobs",
            |screen| {
                let states = job_states(screen);
                let succeeded = |device: &str| states.iter().any(|(d, s)| d == device && s == "succeeded");
                ["dev-01", "dev-02", "dev-03", "dev-04", "dev-05"].iter().all(|d| succeeded(d)).then_some(())
            },
        );
    }

    // b drives ghost-1's job: a job for it made through a is refused, naming b.
    let body = json!({"device_ids": ["ghost-1"], "firmware": {"path": "fw.bin"}});
    let refused = client.post(format!("{}/jobs", all[0].base)).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let refused: Value = refused.json().await.unwrap();
    assert!(refused["error"].as_str().unwrap_or_default().contains("rocky-b"), "{refused}");

    // a cancels b's job: b drives it, so b is asked through the database and cancels it.
    let cancelled = client.delete(format!("{}/jobs/{ghost}", all[0].base)).send().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    for instance in &all {
        wait_for(Duration::from_secs(10), "the cancel to show everywhere", || async {
            (states(&client, &instance.base).await.get(&ghost).map(String::as_str) == Some("cancelled"))
                .then_some(())
        })
        .await;
    }
    // A device registered through a shows in c's inventory (read again every 10 s).
    let registered = client
        .put(format!("{}/devices/shelf-9", all[0].base))
        .json(&json!({"labels": {"site": "attic"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    wait_for(Duration::from_secs(30), "c to know the device a registered", || async {
        let response = client.get(format!("{}/devices/shelf-9", all[2].base)).send().await.ok()?;
        let device: Value = response.json().await.ok()?;
        (device["labels"]["site"] == "attic").then_some(())
    })
    .await;
    // Ended jobs cannot be cancelled from anywhere; unknown ones are not found.
    let again = client.delete(format!("{}/jobs/{}", all[2].base, ids[0])).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let unknown = client.delete(format!("{}/jobs/999999", all[1].base)).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    for (device, report) in fleet.reports() {
        assert_eq!(report.last_verdict(), Some(&Verdict::Verified), "{device}: {report:?}");
    }
    fleet.stop().await;
}

/// How many of a rollout's devices succeeded, from its whole view.
/// Devices the rollout updated: succeeded, or up to date (a device updated by a job of the
/// instance that was killed, whose status then said it ran the image).
fn succeeded(view: &Value) -> usize {
    view["devices"].as_array().map_or(0, |devices| {
        let updated = ["succeeded", "confirmed", "up_to_date"];
        devices.iter().filter(|d| updated.iter().any(|u| d["outcome"] == *u)).count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_goes_on_when_the_instance_planning_it_is_killed() {
    let Some(db) = scratch("rollout").await else { return };
    let Some(broker) = Mosquitto::start("instances") else { return };
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 10)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let client = reqwest::Client::new();
    let url = broker.url().to_string();
    let mut all: Vec<(&str, Instance)> =
        ["rocky-a", "rocky-b"].iter().map(|n| (*n, Instance::start(n, &url, &db, 2))).collect();
    let image = test_image(16 * 1024, 9);
    for (_, instance) in &all {
        instance.wait_healthy(&client).await;
        let upload = client
            .post(format!("{}/firmware?name=fw.bin", instance.base))
            .body(image.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
    }
    let devices: Vec<String> = (1..=10).map(|d| format!("dev-{d:02}")).collect();
    let plan = json!({"name": "fleet", "firmware": {"path": "fw.bin"}, "targets": {"devices": devices},
                      "waves": [2, "100%"], "max_concurrent": 3, "chunk_size": 1024, "max_rate": "8KiB/s"});
    // One instance plans rollouts; the other refuses and names it.
    let (planner, id) = wait_for(Duration::from_secs(20), "one instance to take the rollout", || async {
        for (at, (_, instance)) in all.iter().enumerate() {
            let response =
                client.post(format!("{}/rollouts", instance.base)).json(&plan).send().await.ok()?;
            if response.status() == StatusCode::CREATED {
                let body: Value = response.json().await.ok()?;
                return Some((at, body["id"].as_u64()?));
            }
        }
        None
    })
    .await;
    let other = 1 - planner;
    let refused = client.post(format!("{}/rollouts", all[other].1.base)).json(&plan).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let refused: Value = refused.json().await.unwrap();
    let said = refused["error"].as_str().unwrap_or_default();
    assert!(said.contains(all[planner].0), "the refusal names the planner: {said}");
    // Its dry run is refused alike: it plans what this instance could not start.
    let dry =
        client.post(format!("{}/rollouts?dry_run=true", all[other].1.base)).json(&plan).send().await.unwrap();
    assert_eq!(dry.status(), StatusCode::CONFLICT);
    let dry: Value = dry.json().await.unwrap();
    assert!(dry["error"].as_str().unwrap_or_default().contains(all[planner].0), "{dry}");

    let rollout = |base: String| {
        let client = client.clone();
        async move {
            let response = client.get(format!("{base}/rollouts/{id}")).send().await.ok()?;
            response.json::<Value>().await.ok()
        }
    };
    wait_for(Duration::from_secs(60), "the first wave to pass and the second to be under way", || async {
        let view = rollout(all[planner].1.base.clone()).await?;
        (succeeded(&view) >= 3).then_some(())
    })
    .await;
    // The other instance shows the planner's progress: it reads the rollout again when it was
    // saved again, not only once.
    wait_for(Duration::from_secs(20), "the other instance to show the progress", || async {
        let view = rollout(all[other].1.base.clone()).await?;
        (succeeded(&view) >= 3).then_some(())
    })
    .await;
    all[planner].1.kill9();

    let survivor = all[other].1.base.clone();
    let done = wait_for(Duration::from_secs(90), "the survivor to finish the rollout", || async {
        let view = rollout(survivor.clone()).await?;
        (view["state"] == "succeeded").then_some(view)
    })
    .await;
    assert_eq!(succeeded(&done), 10, "{done}");
    for (device, report) in fleet.reports() {
        assert_eq!(report.last_verdict(), Some(&Verdict::Verified), "{device}: {report:?}");
        let verified = report.verdicts.iter().filter(|(_, v)| *v == Verdict::Verified).count();
        assert_eq!(verified, 1, "{device} was updated once: {:?}", report.verdicts);
    }
    all.clear();
    fleet.stop().await;
}

/// Sends a signal to a child process (SIGSTOP, SIGCONT).
fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill only sends a signal to the test's own child.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_past_its_lease_sends_nothing_more_when_it_wakes() {
    let Some(w) = Watched::start("fence", 6).await else { return };
    let (client, broker_log) = (w.client.clone(), w.broker_log.clone());
    let (a, b, fleet) = (&w.a, &w.b, &w.fleet);
    // 32 chunks paced at 200 ms: about 6 s each, all six at once.
    w.jobs_on_a(11, 200).await;
    wait_for(Duration::from_secs(30), "a to be mid-transfer everywhere", || async {
        let moving = jobs(&client, &a.base)
            .await
            .iter()
            .filter(|j| j["state"] == "transferring" && j["chunks_done"].as_u64() >= Some(3))
            .count();
        (moving == 6).then_some(())
    })
    .await;

    // a stops (a long GC pause, a frozen VM) past its lease: b takes the jobs over.
    signal(&a.serve.0, libc::SIGSTOP);
    wait_for(Duration::from_secs(30), "b to be sending to every device", || async {
        let senders = chunk_senders(&broker_log);
        let sending = senders.values().filter(|from| from.iter().any(|c| c == "rocky-b")).count();
        (sending == 6).then_some(())
    })
    .await;
    // a wakes with six transfers in memory: it must see its lease has run out before it
    // sends another chunk.
    signal(&a.serve.0, libc::SIGCONT);
    wait_for(Duration::from_secs(60), "b to finish every job", || async {
        let done = jobs(&client, &b.base).await.iter().filter(|j| j["state"] == "succeeded").count();
        (done == 6).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(20), "a to be healthy again, with its lease taken anew", || async {
        let response = client.get(format!("{}/healthz", a.base)).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    for (device, from) in chunk_senders(&broker_log) {
        let first_b = from.iter().position(|c| c == "rocky-b").unwrap();
        assert!(from[..first_b].iter().all(|c| c == "rocky-a") && first_b > 0, "{device}: {from:?}");
        assert!(
            from[first_b..].iter().all(|c| c == "rocky-b"),
            "{device} got chunks from rocky-a after rocky-b had taken its job over: {from:?}"
        );
    }
    for (device, report) in fleet.reports() {
        assert_eq!(report.last_verdict(), Some(&Verdict::Verified), "{device}: {report:?}");
    }
    w.fleet.stop().await;
}
