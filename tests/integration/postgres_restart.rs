//! PostgreSQL restarted under two running instances, mid-rollout: while it is down each says
//! so in `/healthz` and goes on with the jobs it holds (its lease outlasts the outage); once it
//! is back the changes kept meanwhile are written, the rollout ends and is stored as ended, and
//! `/healthz` is clean again. The test runs a
//! PostgreSQL server of its own (initdb in a temporary directory, a free loopback port), so
//! stopping it disturbs nothing else on the machine.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Instance, Mosquitto, test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::free_port;
use rocky::sim::{Fleet, FleetConfig, Verdict};
use rocky::store::ScratchDatabase;
use serde_json::{Value, json};

/// The PostgreSQL binaries of the newest version installed.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path()).collect();
    versions.sort();
    versions.into_iter().rev().map(|v| v.join("bin")).find(|bin| bin.join("initdb").exists())
}

/// A PostgreSQL server of the test's own, stopped (immediately, as in a crash) on drop.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            assert!(std::env::var_os("ROCKY_REQUIRE_POSTGRES").is_none(), "PostgreSQL's initdb is required");
            eprintln!("SKIPPED postgres_restart: no PostgreSQL binaries");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let server = Self { bin, dir, port: free_port().unwrap() };
        // PostgreSQL refuses to run as root: as root, it runs as the postgres user.
        if server.as_root() {
            Command::new("chown").args(["-R", "postgres:postgres"]).arg(server.dir.path()).status().unwrap();
        }
        let data = server.data();
        let made = server
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "-D"])
            .arg(&data)
            .status()
            .unwrap();
        assert!(made.success(), "initdb");
        server.up();
        Some(server)
    }

    fn as_root(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let log = self.dir.path().join("postgres.log");
        let started = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "start"])
            .status()
            .unwrap();
        assert!(started.success(), "pg_ctl start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    /// Stops at once, as a crash would: no checkpoint, every connection cut.
    fn down(&self) {
        let stopped = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .status()
            .unwrap();
        assert!(stopped.success(), "pg_ctl stop");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", "immediate", "stop"]).status();
    }
}

async fn health(client: &reqwest::Client, base: &str) -> Option<(StatusCode, Value)> {
    let response = client.get(format!("{base}/healthz")).send().await.ok()?;
    let status = response.status();
    Some((status, response.json().await.ok()?))
}

async fn jobs(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let Ok(response) = client.get(format!("{base}/jobs?limit=10000")).send().await else { return Vec::new() };
    let body: Value = response.json().await.unwrap_or_default();
    body["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_ride_out_a_postgres_restart_and_catch_up() {
    let Some(postgres) = PrivatePostgres::start() else { return };
    let db = ScratchDatabase::create(&postgres.admin_url(), "restart").await.unwrap();
    let Some(broker) = Mosquitto::start("postgres_restart") else { return };
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 12)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let client = reqwest::Client::new();
    let url = broker.url().to_string();
    let (a, b) = (Instance::start("rocky-a", &url, &db, 30), Instance::start("rocky-b", &url, &db, 30));
    a.wait_healthy(&client).await;
    b.wait_healthy(&client).await;
    let (a_base, b_base) = (a.base.clone(), b.base.clone());
    let image = test_image(24 * 1024, 5);
    let mut ids = Vec::new();
    // Four devices each, 24 chunks paced at 250 ms: about 6 s of sending, across the outage.
    for (base, devices) in [
        (&a_base, ["dev-01", "dev-02", "dev-03", "dev-04"]),
        (&b_base, ["dev-05", "dev-06", "dev-07", "dev-08"]),
    ] {
        let upload =
            client.post(format!("{base}/firmware?name=fw.bin")).body(image.to_vec()).send().await.unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
        let body = json!({"device_ids": devices, "firmware": {"path": "fw.bin"}, "chunk_size": 1024, "chunk_interval_ms": 250});
        let created = client.post(format!("{base}/jobs")).json(&body).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.unwrap();
        ids.extend(created["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()));
    }
    // A rollout to four more devices, on whichever instance plans rollouts.
    let plan = json!({"name": "across the outage", "firmware": {"path": "fw.bin"},
                      "targets": {"devices": ["dev-09", "dev-10", "dev-11", "dev-12"]},
                      "waves": [1, "100%"], "chunk_size": 1024, "max_rate": "4KiB/s"});
    let (planner, rollout) =
        wait_for(Duration::from_secs(20), "one instance to take the rollout", || async {
            for base in [&a_base, &b_base] {
                let response = client.post(format!("{base}/rollouts")).json(&plan).send().await.ok()?;
                if response.status() == StatusCode::CREATED {
                    let body: Value = response.json().await.ok()?;
                    return Some((base.clone(), body["id"].as_u64()?));
                }
            }
            None
        })
        .await;
    wait_for(Duration::from_secs(20), "the rollout to be under way", || async {
        let view: Value =
            client.get(format!("{planner}/rollouts/{rollout}")).send().await.ok()?.json().await.ok()?;
        (view["state"] == "running").then_some(())
    })
    .await;

    postgres.down();
    for base in [&a_base, &b_base] {
        let said = wait_for(Duration::from_secs(20), "/healthz to report the store", || async {
            let (status, body) = health(&client, base).await?;
            // While PostgreSQL shuts down a write may fail with the server's own words ("the
            // database system is shutting down"); the next retry's says where it could not go.
            let named = body["store"]["problem"].as_str().is_some_and(|p| p.contains("127.0.0.1"));
            (status == StatusCode::SERVICE_UNAVAILABLE && body["store"]["ok"] == false && named)
                .then_some(body)
        })
        .await;
        let problem = said["store"]["problem"].as_str().unwrap_or_default().to_owned();
        assert!(problem.contains("127.0.0.1"), "the problem names the database: {problem}");
        assert!(!problem.contains("password"), "{problem}");
    }
    // The jobs go on in memory meanwhile, listed as before.
    let during = jobs(&client, &a_base).await;
    assert!(during.len() >= 4, "a still lists its jobs: {during:?}");
    postgres.up();

    for base in [&a_base, &b_base] {
        wait_for(Duration::from_secs(30), "/healthz to be clean again", || async {
            (health(&client, base).await?.0 == StatusCode::OK).then_some(())
        })
        .await;
    }
    // Every job ended, and the database caught up with what happened while it was down.
    let pg = db.settings().connect().await.unwrap();
    let asked: Vec<i64> = ids.iter().map(|id| *id as i64).collect();
    wait_for(Duration::from_secs(60), "every job to be stored as succeeded", || async {
        let rows = pg
            .query("SELECT id FROM jobs WHERE id = ANY($1) AND state = 'succeeded'", &[&asked])
            .await
            .ok()?;
        (rows.len() == ids.len()).then_some(())
    })
    .await;
    // The rollout ran on through the outage and its end is stored, one job per device.
    wait_for(Duration::from_secs(90), "the rollout to be stored as succeeded", || async {
        let row =
            pg.query_opt("SELECT state FROM rollouts WHERE id = $1", &[&(rollout as i64)]).await.ok()??;
        (row.get::<_, String>(0) == "succeeded").then_some(())
    })
    .await;
    // The rollout's row and its jobs' rows are written by different tasks: the last job rows may
    // land a moment after the rollout's end.
    wait_for(Duration::from_secs(30), "one job per device, each stored as succeeded", || async {
        let row = pg
            .query_one(
                "SELECT count(*) FROM jobs WHERE rollout_id = $1 AND state = 'succeeded'",
                &[&(rollout as i64)],
            )
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 4).then_some(())
    })
    .await;
    let events: i64 =
        pg.query_one("SELECT count(*) FROM job_events WHERE state = 'succeeded'", &[]).await.unwrap().get(0);
    assert_eq!(events as usize, ids.len() + 4, "each job's timeline ends in its success");
    for (device, report) in fleet.reports() {
        assert_eq!(report.last_verdict(), Some(&Verdict::Verified), "{device}: {report:?}");
    }
    fleet.stop().await;
}
