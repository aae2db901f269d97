//! The command line as a user meets it: `rocky config`, `rocky broker`, `rocky sim` and `rocky devices`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rocky");

#[test]
fn config_prints_each_value_with_its_source_and_a_bad_file_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rocky.toml");
    std::fs::write(&file, "[jobs]\nchunk_size = 2048\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "--broker", "mqtt://127.0.0.1:2883"])
        .arg("--config")
        .arg(&file)
        .env("ROCKY_JOBS_MAX_ACTIVE", "7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        |key: &str| text.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_default().to_owned();
    assert!(line("chunk_size").contains("2048") && line("chunk_size").contains("line 2"), "{text}");
    assert!(
        line("max_active").contains('7') && line("max_active").contains("ROCKY_JOBS_MAX_ACTIVE"),
        "{text}"
    );
    assert!(line("url").contains("2883") && line("url").contains("--broker"), "{text}");
    assert!(line("done_timeout_s").contains("default"), "{text}");

    std::fs::write(&file, "[jobs]\nchunk_size = 2048\nmax_active = -3\n").unwrap();
    let out = Command::new(BIN).arg("config").arg("--config").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 3") && err.contains("max_active"), "{err}");
}

#[test]
fn devices_on_the_broker_command_print_a_summary_when_they_stop() {
    let port = rocky::broker::free_port().unwrap();
    let mut broker = Command::new(BIN)
        .args(["broker", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rocky broker listens");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(BIN)
        .args(["sim", "--broker", &format!("mqtt://127.0.0.1:{port}"), "--count", "3", "--nack", "2"])
        .args(["--duration", "0.5", "--config", "/dev/null"])
        .output()
        .unwrap();
    let _ = broker.kill();
    let _ = broker.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("dev-02: nack"), "{text}");
    assert!(text.contains("all 3 devices connected"), "{text}");
    assert!(text.contains("3 simulated devices,") && text.contains("nack"), "the summary:\n{text}");
}

#[test]
fn bad_flags_are_errors_not_panics() {
    for args in [
        vec!["sim", "--nack", "1.5", "--count", "1", "--duration", "0"],
        vec!["serve", "--broker", "http://x"],
        vec!["jobs", "--state", "bogus"],
    ] {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(&args)
            .arg("--config")
            .arg("/dev/null")
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?} says why");
    }
}

#[test]
fn sim_refuses_values_it_cannot_honour_naming_the_flag() {
    // A port nothing listens on: each refusal below must come before any connection.
    let closed = format!("mqtt://127.0.0.1:{}", rocky::broker::free_port().unwrap());
    for (args, says) in [
        (&["--duration", "1e30"][..], "--duration"),
        (&["--duration", "-1"][..], "--duration"),
        (&["--count", "0"][..], "--count"),
        (&["--ports", "0"][..], "--ports"),
        (&["--lossy", "-0.1"][..], "--lossy"),
        (&["--window", "-1"][..], "--window"),
        (&["--slow", "abc"][..], "--slow: \"abc\" names no device"),
        (&["--nack", "dev-99"][..], "--nack: \"dev-99\" names no device"),
        (&["--rollback", "11"][..], "--rollback: \"11\" names no device"),
    ] {
        let out = Command::new(BIN)
            .args(["sim", "--broker", &closed, "--config", "/dev/null", "--count", "10"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{args:?}: nothing started");
    }
}

#[test]
fn sim_that_cannot_connect_says_why_and_stops_on_time_even_unread() {
    let closed = format!("mqtt://127.0.0.1:{}", rocky::broker::free_port().unwrap());
    let sim = |duration: &str| {
        let mut command = Command::new(BIN);
        command.args(["sim", "--broker", &closed, "--config", "/dev/null", "--count", "2"]);
        command.args(["--duration", duration]);
        command
    };
    let started = Instant::now();
    let out = sim("6").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A fleet that cannot connect stops after --duration, not after the connect wait (30 s).
    assert!(started.elapsed() < Duration::from_secs(20), "it stopped after {:?}", started.elapsed());
    assert!(
        text.contains("0 of 2 devices connected; the last failure: ") && text.contains("refused"),
        "{text}"
    );
    assert!(text.contains("2 simulated devices, 0 chunks"), "the summary:\n{text}");
    // Its reader goes after the lines before the summary (`| head -2`): it still ends quietly
    // at its summary, without a panic.
    let mut child = sim("0.5").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = String::new();
    for _ in 0..2 {
        std::io::BufRead::read_line(&mut reader, &mut lines).unwrap();
    }
    drop(reader);
    assert!(lines.starts_with("2 simulated devices on ") && lines.contains("--duration is over"), "{lines}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{:?}: {err}", out.status);
}

#[test]
fn the_cli_checks_device_ids_and_rates_before_asking_a_server() {
    // No server runs on this address: each refusal comes before any request.
    let server = format!("http://127.0.0.1:{}", rocky::broker::free_port().unwrap());
    for (args, says) in [
        (&["devices", "label", "", "k=v"][..], "device id is empty"),
        (&["devices", "show", "a/b"][..], "contains '/'"),
        (
            &["job", "create", "--devices", "d1", "--firmware", "fw.bin", "--max-rate", "abc"][..],
            "--max-rate",
        ),
        (&["job", "create", "--devices", "d1", "--firmware", "tests"][..], "tests is a directory here"),
        (&["job", "create", "--devices", "d1", "--firmware", ""][..], "--firmware is empty"),
    ] {
        let out = Command::new(BIN).args(args).args(["--server", &server]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("no Rocky answers"), "{args:?}: refused before asking: {err}");
    }
    // A server URL with a path would make every request miss.
    let out = Command::new(BIN).args(["jobs", "--server", &format!("{server}/some/path")]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("has a path"), "{err}");
}

#[test]
fn the_cli_answers_a_newcomer_plainly() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg("/dev/null")
            .arg("--data-dir")
            .arg(data.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // No jobs yet is an answer, not an error.
    let out = run(&["jobs"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no jobs yet"));
    assert_eq!(String::from_utf8_lossy(&run(&["jobs", "--json"]).stdout), "[]\n");
    // The console says it needs a terminal, before starting anything.
    for args in [&["demo"][..], &["console"][..]] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("the console needs a terminal"), "{args:?}: {err}");
    }
    // A taken port stops `rocky broker` at once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN).args(["broker", "--port", &port]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("port {port} on 127.0.0.1 is taken")), "{err}");
    // A command's help lists only the flags it uses.
    let help = |args: &[&str]| {
        String::from_utf8_lossy(&Command::new(BIN).args(args).arg("--help").output().unwrap().stdout)
            .into_owned()
    };
    let broker = help(&["broker"]);
    assert!(
        !broker.contains("--broker") && !broker.contains("--http") && broker.contains("--port"),
        "{broker}"
    );
    let jobs = help(&["jobs"]);
    assert!(!jobs.contains("--broker") && !jobs.contains("--http") && jobs.contains("--data-dir"), "{jobs}");
    let serve = help(&["serve"]);
    assert!(
        ["--broker", "--http", "--data-dir", "--config", "--insecure-tls"].iter().all(|f| serve.contains(f))
    );
    let refused = Command::new(BIN).args(["jobs", "--broker", "mqtt://127.0.0.1:1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unexpected argument '--broker'"));
    // A cause is said once.
    let out = Command::new(BIN).args(["jobs", "--config", "/nonexistent/rocky.toml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config file /nonexistent/rocky.toml: No such file or directory"),
        "{err}"
    );
    let first = err.find("No such file or directory").unwrap_or(0);
    assert!(!err[first + 1..].contains("No such file or directory"), "{err}");
}

/// A device's reason is the job's error word for word, in `rocky jobs` as everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocky_jobs_shows_the_devices_reasons_word_for_word() {
    let data = tempfile::tempdir().unwrap();
    {
        let store = rocky::store::Store::open(data.path()).unwrap();
        let image = rocky::firmware::Image::new("fw.bin", rocky::sim::sample_image(100, 1));
        let new = |id: u32, device: &str| rocky::store::NewJob {
            id: Some(rocky::engine::JobId::new(id)),
            device: device.into(),
            image: image.clone(),
            chunk_size: 64,
            chunk_interval_ms: 0,
            chunks_total: 2,
            created_at: 1_700_000_000_000,
            rollout: None,
            force: false,
            manifest: None,
            delta: None,
            aws: None,
        };
        store.create(vec![new(1, "dev-02"), new(2, "dev-03")]).await.unwrap();
        let (mut jobs, _) = store.load().await.unwrap();
        jobs[0].state = rocky::engine::JobState::Rejected;
        jobs[0].error = Some("battery below 20%".into());
        jobs[1].state = rocky::engine::JobState::Failed;
        jobs[1].error = Some("writing to flash failed".into());
        store.flush_and_wait(jobs, Vec::new()).await;
    }
    for json in [false, true] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rocky"));
        command.arg("jobs").arg("--data-dir").arg(data.path());
        if json {
            command.arg("--json");
        }
        let out = command.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("battery below 20%") && text.contains("writing to flash failed"), "{text}");
    }
}

/// `rocky config | head -1` and the like: a closed stdout ends the command quietly, as Unix
/// tools end, never with a panic (exit 101) on the failed write (issue 20, C13).
#[test]
fn a_closed_stdout_ends_a_printing_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    // One command stands for all that print and end (devices, rollout, jobs, config).
    let out = crate::support::run_with_stdout_closed(Command::new(BIN).arg("config").env("HOME", dir.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?} {err}", out.status);
}

/// Single jobs need no curl: `rocky job create|show|cancel` and `rocky jobs --server` against a
/// running Rocky's API, `--server` before or after the subcommand (issue 20, C17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_jobs_are_created_shown_listed_and_cancelled_from_the_shell() {
    let broker = rocky::broker::EmbeddedBroker::start(None).unwrap();
    let runtime = rocky::runtime::Runtime::start(
        rocky::runtime::RuntimeConfig::new(broker.url()),
        std::sync::Arc::new(rocky::firmware::Library::new()),
    );
    let dir = tempfile::tempdir().unwrap();
    let state = rocky::http::ApiState::new(runtime.handle.clone(), dir.path().to_path_buf());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(rocky::http::serve(listener, state, std::future::pending()));
    let fw = dir.path().join("local-fw.bin");
    std::fs::write(&fw, vec![7u8; 5000]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let rocky = |args: &[&str]| {
        let out =
            Command::new(BIN).args(args).env("HOME", home.path()).stdin(Stdio::null()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (text, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (out, err) = rocky(&[
        "job",
        "create",
        "--devices",
        "dev-1,dev-2",
        "--firmware",
        fw.to_str().unwrap(),
        "--server",
        &base,
    ]);
    let ids: Vec<u32> =
        out.lines().filter_map(|l| l.strip_prefix("job ")?.split(' ').next()?.parse().ok()).collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert!(out.contains("local-fw.bin to dev-1"), "{out}");
    assert!(err.contains("2 devices Rocky has never seen"), "{err}");
    let (listed, _) = rocky(&["jobs", "--server", &base, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let id = ids[0].to_string();
    let (shown, _) = rocky(&["job", "--server", &base, "show", &id]);
    assert!(shown.contains(&format!("job {id}: local-fw.bin to dev-1")), "{shown}");
    assert!(shown.contains("timeline: not available (this Rocky keeps no job history"), "{shown}");
    let (cancelled, _) = rocky(&["job", "cancel", &id, "--server", &base]);
    assert_eq!(cancelled.trim(), format!("job {id} cancelled"));
    let (shown, _) = rocky(&["job", "show", &id, "--json", "--server", &base]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["job"]["state"], "cancelled");
    runtime.shutdown().await;
}
