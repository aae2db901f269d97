//! The console in a real terminal: `rocky demo` runs inside tmux, the test reads the screen with
//! `capture-pane` and types with `send-keys`, and waits on what the screen says (with deadlines).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::tmux::{Tmux, job_states};

const BIN: &str = env!("CARGO_BIN_EXE_rocky");

/// The pid of the rocky process (not the shell around it) running on `data_dir`, from /proc.
fn rocky_pid(data_dir: &Path) -> Option<u32> {
    let wanted = data_dir.display().to_string();
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        (args.first().map(String::as_str) == Some(BIN) && args.contains(&wanted)).then_some(pid)
    })
}

fn demo_command(data_dir: &Path, extra: &str) -> String {
    format!(
        "{BIN} demo --data-dir {} --http 127.0.0.1:0 {extra}; echo ROCKY-EXITED-$?; sleep 600",
        data_dir.display()
    )
}

/// The state word of each rollout line on screen, by rollout name.
fn rollout_states(screen: &str) -> Vec<(String, String)> {
    const STATES: [&str; 7] =
        ["scheduled", "running", "paused", "succeeded", "completed", "aborted", "cancelled"];
    screen
        .lines()
        .filter(|l| l.trim_start_matches(['│', '┃']).starts_with('#'))
        .filter_map(|line| {
            let state = STATES.iter().find(|s| line.contains(&format!(" {s} ")))?;
            let name = ["release", "beta", "hotfix"].into_iter().find(|n| line.contains(n))?;
            Some((name.to_owned(), state.to_string()))
        })
        .collect()
}

#[test]
fn demo_rollouts_settle_with_each_device_in_its_expected_state() {
    let data = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start_sized("demo", &demo_command(data.path(), ""), (200, 80)) else { return };
    // The staged release runs every wave and ends "completed" (its misbehaving devices did not
    // update); the beta to the misbehaving lot aborts on its threshold; then the hotfix goes to
    // the devices running the release, as patches.
    tmux.wait_for(Duration::from_secs(150), "the three rollouts to end", |screen| {
        let rollouts = rollout_states(screen);
        let ended = rollouts.contains(&("release".into(), "completed".into()))
            && rollouts.contains(&("beta".into(), "aborted".into()))
            && rollouts.contains(&("hotfix".into(), "succeeded".into()));
        ended.then_some(())
    });
    let screen = tmux.screen();
    assert!(screen.contains("■ ■ ■ 3/3"), "three waves ran:\n{screen}");
    assert!(screen.contains("at or over the abort share of 50%"), "the abort's reason:\n{screen}");
    assert!(screen.contains("Δ 2.6 KiB of 194 KiB"), "the hotfix's patches in the job rows:\n{screen}");
    // Every job, from the demo's API (the jobs pane shows the newest that fit).
    let api = screen
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("the API's address in the header:\n{screen}"))
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let states = api_states(&runtime, &api);
    assert!(states.len() >= 24 + 3, "every device had its job, the beta's lot too:\n{screen}");
    assert!(
        states
            .iter()
            .all(|(_, s)| ["succeeded", "rejected", "failed", "timed out", "rolled back"]
                .contains(&s.as_str())),
        "nothing left running once both ended:\n{screen}"
    );
    for (device, state) in &states {
        let expected = match device.as_str() {
            "dev-05" => "rejected",
            // It trusts another key than the one the demo signs with: it refuses (code 11).
            "dev-12" => "rejected",
            "dev-11" => "failed",
            "dev-17" => "timed out",
            // The demo's devices confirm their updates after a reboot: dev-07 comes back on its
            // old image, dev-14 never comes back.
            "dev-07" => "rolled back",
            "dev-14" => "timed out",
            // Of the devices that run AWS's OTA agent, the second fails its self test.
            "thing-02" => "rolled back",
            _ => "succeeded",
        };
        assert_eq!(state, expected, "{device}");
    }
    // The failed and the silent device were each tried once more by the release.
    for device in ["dev-11", "dev-17"] {
        assert_eq!(states.iter().filter(|(d, _)| d == device).count(), 3, "{device}: release, retry, beta");
    }
    // So were the one that rolled back and the one that never came back (not in the beta's lot).
    for device in ["dev-07", "dev-14", "thing-02"] {
        assert_eq!(states.iter().filter(|(d, _)| d == device).count(), 2, "{device}: release, retry");
    }
    // The garbage device's frame is in the history as a decode error; it may have scrolled out
    // of view, so ask the traffic pane's filter for it (Tab: the rollouts, then the traffic).
    tmux.keys(&["Tab", "Tab", "/"]);
    tmux.type_text("decode");
    tmux.keys(&["Enter"]);
    tmux.wait_for(Duration::from_secs(10), "the decode error in the filtered traffic", |s| {
        s.lines().any(|l| l.contains("resp ← dev-20 decode error")).then_some(())
    });
    // w writes what the filter shows, beside the log, as JSON lines.
    tmux.keys(&["w"]);
    let written = tmux.wait_for(Duration::from_secs(10), "the traffic to be written", |s| {
        let line = s.lines().find(|l| l.trim_start().starts_with("wrote "))?;
        let path = line.split(" to ").nth(1)?.split_whitespace().next()?;
        Some(path.to_owned())
    });
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&written)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!records.is_empty());
    for record in &records {
        assert_eq!(
            (record["device"].as_str(), record["decode_error"].as_bool()),
            (Some("dev-20"), Some(true))
        );
    }
    assert!(written.starts_with(&data.path().display().to_string()), "{written} is beside the log");
    // The hotfix went to the devices running the release (those the release updated; the one
    // that rolled back runs its old image), each as a patch, and its rollout counts the saving.
    let (jobs, rollouts) = runtime.block_on(async {
        let get = |path: &str| reqwest::get(format!("{api}{path}"));
        let jobs: serde_json::Value = get("/jobs?limit=1000").await.unwrap().json().await.unwrap();
        let rollouts: serde_json::Value = get("/rollouts").await.unwrap().json().await.unwrap();
        (jobs, rollouts)
    });
    let hotfix_jobs: Vec<&serde_json::Value> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["image"]["name"] == "demo-firmware-2.1.1.bin")
        .collect();
    assert!(hotfix_jobs.len() >= 15, "{hotfix_jobs:?}");
    // The release went to the devices of AWS's OTA agent too, as jobs of that profile.
    let aws_jobs: Vec<&serde_json::Value> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["device_id"].as_str().unwrap().starts_with("thing-"))
        .collect();
    assert_eq!(aws_jobs.len(), 4, "three things, one retried: {aws_jobs:?}");
    assert!(aws_jobs.iter().all(|j| j["aws"]["cert_file"] == "certs/demo-codesign.crt"), "{aws_jobs:?}");
    assert!(
        hotfix_jobs.iter().all(|j| !j["delta"].is_null() && j["state"] == "succeeded"),
        "{hotfix_jobs:?}"
    );
    let hotfix = rollouts["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with("hotfix")))
        .unwrap();
    let (sent, whole) =
        (hotfix["bytes"]["sent"].as_u64().unwrap(), hotfix["bytes"]["whole_image"].as_u64().unwrap());
    assert!(sent > 0 && sent * 20 < whole, "patches of a few KiB against 194 KiB images: {hotfix}");
    let screen = tmux.screen();
    let succeeded = states.iter().filter(|(_, state)| state == "succeeded").count();
    assert!(screen.contains(&format!("{succeeded} succeeded")), "status bar counts {succeeded}:\n{screen}");
    // The refusing and failing devices' own reasons, word for word (the refusal's row has
    // scrolled out of the jobs pane by now: the API has it).
    assert!(screen.contains("writing to flash failed"), "{screen}");
    assert!(jobs.to_string().contains("battery below 20%"), "{jobs}");
    // Nothing is active, so q quits at once and the shell gets the terminal back.
    tmux.keys(&["q"]);
    tmux.wait_for(Duration::from_secs(10), "rocky to exit", |s| s.contains("ROCKY-EXITED-0").then_some(()));
    assert!(Path::new(&data.path().join("rocky.log")).exists(), "the log went to the data dir");
}

#[test]
fn a_job_typed_into_the_form_succeeds() {
    let data = tempfile::tempdir().unwrap();
    let firmware = data.path().join("typed-fw.bin");
    std::fs::write(&firmware, vec![0x5au8; 50_000]).unwrap();
    let Some(tmux) = Tmux::start("form", &demo_command(data.path(), "--no-rollout --devices 4")) else {
        return;
    };
    tmux.wait_for(Duration::from_secs(30), "the console", |s| s.contains("no jobs yet").then_some(()));
    tmux.keys(&["n"]);
    tmux.wait_for(Duration::from_secs(10), "the form", |s| s.contains("New update job").then_some(()));
    tmux.type_text("dev-03");
    tmux.keys(&["Down"]);
    tmux.type_text(&firmware.display().to_string());
    // The form shows the image's size and hash before anything is submitted.
    tmux.wait_for(Duration::from_secs(10), "the image preview", |s| {
        s.contains("typed-fw.bin · 48.8 KiB").then_some(())
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for(Duration::from_secs(30), "the typed job to succeed", |s| {
        job_states(s).iter().any(|(d, st)| d == "dev-03" && st == "succeeded").then_some(())
    });
    let screen = tmux.screen();
    assert!(screen.contains("created 1 job") || screen.contains("1 succeeded"), "{screen}");
    // q asks nothing now; Ctrl-C quits too.
    tmux.keys(&["C-c"]);
    tmux.wait_for(Duration::from_secs(10), "rocky to exit", |s| s.contains("ROCKY-EXITED-0").then_some(()));
}

#[test]
fn a_rollout_typed_into_the_form_runs_in_its_waves() {
    let data = tempfile::tempdir().unwrap();
    let firmware = data.path().join("wave-fw.bin");
    std::fs::write(&firmware, vec![0x3cu8; 40_000]).unwrap();
    // Six well-behaved devices; the demo labels every other one site=lab (dev-01, -03, -05).
    let Some(tmux) = Tmux::start("rollout-form", &demo_command(data.path(), "--no-rollout --devices 6"))
    else {
        return;
    };
    tmux.wait_for(Duration::from_secs(30), "the console", |s| s.contains("no jobs yet").then_some(()));
    tmux.keys(&["n"]);
    tmux.wait_for(Duration::from_secs(10), "the form", |s| s.contains("New update job").then_some(()));
    tmux.type_text("site=lab");
    tmux.wait_for(Duration::from_secs(10), "the labelled devices counted", |s| {
        (s.contains("New rollout") && s.contains("→ 3 devices")).then_some(())
    });
    tmux.keys(&["Down"]);
    tmux.type_text(&firmware.display().to_string());
    tmux.wait_for(Duration::from_secs(10), "the image preview", |s| {
        s.contains("wave-fw.bin · 39.1 KiB").then_some(())
    });
    // Down past the chunk size, the rate and the name, to the waves.
    tmux.keys(&["Down", "Down", "Down", "Down"]);
    tmux.type_text("1, 100%");
    tmux.keys(&["Enter"]);
    tmux.wait_for(Duration::from_secs(10), "the rollout shown whole", |s| {
        (s.contains("3 devices in waves 1 → 3") && s.contains("Enter again to start this rollout"))
            .then_some(())
    });
    // With its dry run: the waves as a real run makes them, nothing created yet.
    tmux.wait_for(Duration::from_secs(10), "the review's dry run", |s| {
        (s.contains("nothing was created") && s.contains("wave 2  2 devices")).then_some(())
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for(Duration::from_secs(60), "the rollout to succeed", |s| {
        s.lines().any(|l| l.contains("wave-fw.bin to site=lab") && l.contains(" succeeded ")).then_some(())
    });
    // The audit says who started it: this console's user at this host.
    tmux.keys(&["a"]);
    tmux.wait_for(Duration::from_secs(10), "the audit view", |s| {
        s.lines()
            .any(|l| l.contains("console:") && l.contains("rollout.create") && l.contains("rollout:1"))
            .then_some(())
    });
    tmux.keys(&["Escape"]);
    // The rollouts pane has focus now; back to the jobs (S-Tab), whose rows are read by their
    // thick border: the labelled devices' jobs, and no other.
    tmux.keys(&["BTab"]);
    let states = tmux.wait_for(Duration::from_secs(10), "the jobs pane", |s| {
        let states = job_states(s);
        (!states.is_empty()).then_some(states)
    });
    let expected: Vec<(String, String)> =
        ["dev-01", "dev-03", "dev-05"].iter().map(|d| (d.to_string(), "succeeded".to_owned())).collect();
    assert_eq!(states, expected);
    tmux.keys(&["q"]);
    tmux.wait_for(Duration::from_secs(10), "rocky to exit", |s| s.contains("ROCKY-EXITED-0").then_some(()));
}

#[test]
fn after_jobs_are_made_the_first_keys_move_from_the_newest_at_80_by_24() {
    let data = tempfile::tempdir().unwrap();
    let firmware = data.path().join("keys-fw.bin");
    std::fs::write(&firmware, vec![0x11u8; 4_000]).unwrap();
    let command = demo_command(data.path(), "--no-rollout --devices 5");
    let Some(tmux) = Tmux::start_sized("keys", &command, (80, 24)) else { return };
    tmux.wait_for(Duration::from_secs(30), "the console", |s| s.contains("no jobs yet").then_some(()));
    tmux.keys(&["n"]);
    tmux.wait_for(Duration::from_secs(10), "the form", |s| s.contains("New update job").then_some(()));
    // dev-* matches the five registered devices: five jobs, the newest selected.
    tmux.type_text("dev-*");
    tmux.keys(&["Down"]);
    tmux.type_text(&firmware.display().to_string());
    tmux.wait_for(Duration::from_secs(10), "the preview", |s| s.contains("keys-fw.bin ·").then_some(()));
    tmux.keys(&["Enter"]);
    // Ended, so q later quits without asking.
    tmux.wait_for(Duration::from_secs(30), "the five jobs to succeed", |s| {
        let states = job_states(s);
        (states.len() == 5 && states.iter().all(|(_, st)| st == "succeeded")).then_some(())
    });
    // g goes to the top at once, two j down, Enter: the third job, not the last.
    tmux.keys(&["g", "j", "j", "Enter"]);
    tmux.wait_for(Duration::from_secs(10), "job 3's detail", |s| s.contains("Job 3").then_some(()));
    // The footer keeps the way out in view at 80 columns.
    tmux.keys(&["Escape"]);
    tmux.wait_for(Duration::from_secs(10), "the footer", |s| {
        s.lines().last().is_some_and(|l| l.trim_end().ends_with("? help  q quit")).then_some(())
    });
    tmux.keys(&["q"]);
    tmux.wait_for(Duration::from_secs(10), "rocky to exit", |s| s.contains("ROCKY-EXITED-0").then_some(()));
}

#[test]
fn sigterm_quits_and_restores_the_terminal() {
    let data = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start("sigterm", &demo_command(data.path(), "--no-rollout --devices 2")) else {
        return;
    };
    tmux.wait_for(Duration::from_secs(30), "the console", |s| s.contains("no jobs yet").then_some(()));
    let alternate = |tmux: &Tmux| {
        let out = Command::new("tmux")
            .args(["-L", &tmux.socket, "display", "-p", "-t", "rocky", "#{alternate_on}"])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
    };
    assert_eq!(alternate(&tmux), "1", "the console runs on the alternate screen");
    let pid = rocky_pid(data.path()).expect("the rocky process is running");
    // The shell's builtin kill: no dependency on procps.
    let status = Command::new("sh").args(["-c", &format!("kill -TERM {pid}")]).status().expect("sh runs");
    assert!(status.success(), "rocky was signalled");
    tmux.wait_for(Duration::from_secs(10), "rocky to exit on SIGTERM", |s| {
        s.contains("ROCKY-EXITED-0").then_some(())
    });
    assert_eq!(alternate(&tmux), "0", "the alternate screen was left");
    let screen = tmux.screen();
    assert!(!screen.contains("ROCKY mqtt://"), "the console is gone from the screen:\n{screen}");
}

/// `rocky console` on an existing broker, with the HTTP API in the same process: a job created
/// over HTTP appears in the console and runs to the end.
#[test]
fn jobs_created_over_http_appear_live_in_the_console() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let broker = rocky::broker::EmbeddedBroker::start(None).unwrap();
    let fleet = runtime.block_on(async {
        let fleet = rocky::sim::Fleet::start(&rocky::sim::FleetConfig::new(broker.url(), 2)).unwrap();
        assert!(fleet.wait_connected(Duration::from_secs(20)).await);
        fleet
    });
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("uploads")).unwrap();
    std::fs::write(data.path().join("uploads/live.bin"), vec![3u8; 30_000]).unwrap();
    let port = rocky::broker::free_port().unwrap();
    let command = format!(
        "{BIN} console --broker {} --http 127.0.0.1:{port} --data-dir {}; echo ROCKY-EXITED-$?; sleep 600",
        broker.url(),
        data.path().display()
    );
    let Some(tmux) = Tmux::start("console", &command) else { return };
    tmux.wait_for(Duration::from_secs(30), "the console to connect", |s| {
        s.contains("● connected").then_some(())
    });
    let body = r#"{"device_ids": ["dev-01", "dev-02"], "firmware": {"path": "live.bin"}}"#;
    let created = runtime.block_on(async {
        let client = reqwest::Client::new();
        let response = client
            .post(format!("http://127.0.0.1:{port}/jobs"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        response.status()
    });
    assert_eq!(created, reqwest::StatusCode::CREATED);
    tmux.wait_for(Duration::from_secs(30), "both HTTP jobs to succeed in the console", |s| {
        let states = job_states(s);
        (states.len() == 2 && states.iter().all(|(_, st)| st == "succeeded")).then_some(())
    });
    assert!(tmux.screen().contains("live.bin"), "the image name is shown");
    tmux.keys(&["q"]);
    tmux.wait_for(Duration::from_secs(10), "rocky to exit", |s| s.contains("ROCKY-EXITED-0").then_some(()));
    runtime.block_on(fleet.stop());
}

/// `rocky serve` as a child process on `port` and `data`, killed on drop.
struct Server(std::process::Child);

impl Server {
    fn start(broker: &str, port: u16, data: &Path) -> Self {
        let config = data.join("test-config.toml");
        std::fs::write(&config, "").unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--broker", broker, "--http", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rocky serve starts");
        Self(child)
    }

    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The state the API gives each device's newest job.
fn api_states(runtime: &tokio::runtime::Runtime, base: &str) -> Vec<(String, String)> {
    runtime.block_on(async {
        let Ok(response) = reqwest::get(format!("{base}/jobs")).await else { return Vec::new() };
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        body["jobs"]
            .as_array()
            .map(|jobs| {
                jobs.iter()
                    .map(|j| {
                        let device = j["device_id"].as_str().unwrap_or_default().to_owned();
                        (device, j["state"].as_str().unwrap_or_default().replace('_', " "))
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

fn post_jobs(runtime: &tokio::runtime::Runtime, base: &str, body: &str) -> reqwest::StatusCode {
    post(runtime, &format!("{base}/jobs"), body)
}

fn post(runtime: &tokio::runtime::Runtime, url: &str, body: &str) -> reqwest::StatusCode {
    send(runtime, reqwest::Method::POST, url, body)
}

fn send(
    runtime: &tokio::runtime::Runtime,
    method: reqwest::Method,
    url: &str,
    body: &str,
) -> reqwest::StatusCode {
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let request =
            client.request(method, url).header("content-type", "application/json").body(body.to_owned());
        request.send().await.map(|r| r.status()).unwrap_or(reqwest::StatusCode::BAD_GATEWAY)
    })
}

#[test]
fn two_consoles_attached_to_a_server_follow_it_act_on_it_and_survive_its_restart() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let broker = rocky::broker::EmbeddedBroker::start(None).unwrap();
    let fleet = runtime.block_on(async {
        let mut config = rocky::sim::FleetConfig::new(broker.url(), 5);
        config.plan = rocky::sim::BehaviorPlan::default()
            .with(rocky::sim::Behavior::Silent, rocky::sim::Selection::parse("dev-05").unwrap());
        let fleet = rocky::sim::Fleet::start(&config).unwrap();
        assert!(fleet.wait_connected(Duration::from_secs(20)).await);
        fleet
    });
    let data = tempfile::tempdir().unwrap();
    let server_data = data.path().join("server");
    std::fs::create_dir_all(server_data.join("uploads")).unwrap();
    std::fs::write(server_data.join("uploads/live.bin"), vec![3u8; 30_000]).unwrap();
    // The operator's own image, on the console's side: the console uploads it.
    let local_image = data.path().join("local-fw.bin");
    std::fs::write(&local_image, vec![5u8; 20_000]).unwrap();
    let port = rocky::broker::free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server::start(&broker.url().to_string(), port, &server_data);
    let console = |name: &str| {
        let dir = data.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.toml"), "").unwrap();
        format!(
            "{BIN} console --server {base} --config {}/c.toml --data-dir {}; echo ROCKY-EXITED-$?; sleep 600",
            dir.display(),
            dir.display()
        )
    };
    let Some(first) = Tmux::start("attached-a", &console("a")) else { return };
    let Some(second) = Tmux::start("attached-b", &console("b")) else { return };
    for tmux in [&first, &second] {
        tmux.wait_for(Duration::from_secs(30), "the console to attach", |s| {
            s.contains("● connected").then_some(())
        });
    }

    // A device registered on the server, never heard from, is in the devices pane with its
    // labels (and so among the devices the form's `prefix*` matches).
    let body = r#"{"labels": {"site": "attic", "model": "m9"}}"#;
    let url = format!("{base}/devices/shelf-7");
    assert_eq!(send(&runtime, reqwest::Method::PUT, &url, body), reqwest::StatusCode::CREATED);
    first.wait_for(Duration::from_secs(30), "the registered device in the devices pane", |s| {
        s.lines().any(|l| l.contains("shelf-7") && l.contains("model=m9 site=attic")).then_some(())
    });

    // Jobs another client creates appear, and progress, in both consoles.
    let body = r#"{"device_ids": ["dev-01", "dev-02"], "firmware": {"path": "live.bin"}}"#;
    assert_eq!(post_jobs(&runtime, &base, body), reqwest::StatusCode::CREATED);
    for tmux in [&first, &second] {
        tmux.wait_for(Duration::from_secs(30), "the HTTP jobs to succeed on screen", |s| {
            let states = job_states(s);
            (states.len() == 2 && states.iter().all(|(_, st)| st == "succeeded")).then_some(())
        });
    }

    // A job made in the first console (a local file, uploaded) is created on the server.
    first.keys(&["n"]);
    first.wait_for(Duration::from_secs(10), "the form", |s| s.contains("New update job").then_some(()));
    first.type_text("dev-03");
    first.keys(&["Down"]);
    first.type_text(&local_image.display().to_string());
    first.wait_for(Duration::from_secs(10), "the preview", |s| s.contains("19.5 KiB").then_some(()));
    first.keys(&["Enter"]);
    first.wait_for(Duration::from_secs(30), "the job to be created", |s| {
        s.contains("created 1 job").then_some(())
    });
    second.wait_for(Duration::from_secs(30), "the other console to show it succeed", |s| {
        job_states(s).contains(&("dev-03".to_owned(), "succeeded".to_owned())).then_some(())
    });
    assert!(api_states(&runtime, &base).contains(&("dev-03".to_owned(), "succeeded".to_owned())));

    // Cancel from the second console: the silent device's job, found with the filter.
    let body = r#"{"device_id": "dev-05", "firmware": {"path": "live.bin"}}"#;
    assert_eq!(post_jobs(&runtime, &base, body), reqwest::StatusCode::CREATED);
    second.wait_for(Duration::from_secs(30), "the silent device's job", |s| {
        job_states(s).contains(&("dev-05".to_owned(), "requesting".to_owned())).then_some(())
    });
    second.keys(&["/"]);
    second.type_text("dev-05");
    second.keys(&["Enter"]);
    second.wait_for(Duration::from_secs(10), "the filter to leave one job", |s| {
        (job_states(s).len() == 1).then_some(())
    });
    second.keys(&["c"]);
    second.wait_for(Duration::from_secs(10), "the confirmation", |s| s.contains("Cancel job").then_some(()));
    second.keys(&["y"]);
    first.wait_for(Duration::from_secs(30), "the cancel to reach the first console", |s| {
        job_states(s).contains(&("dev-05".to_owned(), "cancelled".to_owned())).then_some(())
    });

    // A rollout made over the API waits at its manual gate; the first console resumes it and
    // both see it succeed.
    let body = r#"{"name": "gated", "firmware": {"path": "live.bin"},
                   "targets": {"devices": ["dev-01", "dev-02"]}, "gates": "manual"}"#;
    assert_eq!(post(&runtime, &format!("{base}/rollouts"), body), reqwest::StatusCode::CREATED);
    first.wait_for(Duration::from_secs(30), "the rollout at its gate", |s| {
        s.lines().any(|l| l.contains("gated") && l.contains(" paused ")).then_some(())
    });
    first.keys(&["Tab", "r"]);
    first.wait_for(Duration::from_secs(10), "the confirmation", |s| {
        s.contains("Resume rollout 1 \"gated\"?").then_some(())
    });
    // Back to the jobs pane (S-Tab), whose thick border the job rows are read by.
    first.keys(&["y", "BTab"]);
    for tmux in [&first, &second] {
        tmux.wait_for(Duration::from_secs(30), "the rollout to succeed", |s| {
            s.lines().any(|l| l.contains("gated") && l.contains(" succeeded ")).then_some(())
        });
    }

    // The server dies: both consoles say so, then re-sync when it is back.
    server.kill9();
    for tmux in [&first, &second] {
        tmux.wait_for(Duration::from_secs(30), "the console to notice", |s| {
            s.contains("reconnecting").then_some(())
        });
    }
    let _server = Server::start(&broker.url().to_string(), port, &server_data);
    let body = r#"{"device_id": "dev-04", "firmware": {"path": "live.bin"}}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while post_jobs(&runtime, &base, body) != reqwest::StatusCode::CREATED {
        assert!(std::time::Instant::now() < deadline, "the restarted server never took a job");
        std::thread::sleep(Duration::from_millis(100));
    }
    for tmux in [&first, &second] {
        // (The second console still filters on dev-05: the counts in the status line say it all.
        // The gated rollout's devices ran live.bin already, as their statuses said: up to date.)
        tmux.wait_for(Duration::from_secs(30), "the console to re-sync with the restarted server", |s| {
            (s.contains("● connected") && s.contains("4 succeeded · 2 up to date · 1 cancelled"))
                .then_some(())
        });
    }
    assert!(job_states(&first.screen()).contains(&("dev-04".to_owned(), "succeeded".to_owned())));
    first.keys(&["q"]);
    first.wait_for(Duration::from_secs(10), "the console to exit at once", |s| {
        s.contains("ROCKY-EXITED-0").then_some(())
    });
    runtime.block_on(fleet.stop());
}
