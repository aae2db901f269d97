//! `rocky bench` as a user runs it: its own mosquitto, its fleet in child processes, and the
//! figures it prints (whose commands the README and docs/scale.md quote).

use std::process::Command;

/// Runs `rocky bench` with `args`; its standard output, or `None` when mosquitto is missing.
fn bench(test: &str, args: &[&str]) -> Option<String> {
    crate::support::find_mosquitto(test)?;
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rocky"))
        .arg("bench")
        .args(args)
        .env("HOME", home.path())
        .output()
        .expect("rocky bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Some(stdout)
}

/// The number after `label` on the line that has it.
fn figure(out: &str, label: &str) -> f64 {
    let line = out.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("no {label:?} in\n{out}"));
    let rest = &line[line.find(label).unwrap() + label.len()..];
    let number: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    number.parse().unwrap_or_else(|_| panic!("no number after {label:?} in {line:?}"))
}

#[test]
fn a_fleet_bench_updates_every_device_and_says_what_it_cost() {
    let Some(out) = bench(
        "a_fleet_bench_updates_every_device_and_says_what_it_cost",
        &["--fleet", "24", "--per-connection", "4", "--size", "16384"],
    ) else {
        return;
    };
    assert!(out.contains("24 devices 4 to a connection (6 connections)"), "{out}");
    assert!(out.contains("rollout: 24 of 24 devices succeeded"), "{out}");
    assert!(figure(&out, "rocky serve: peak RSS") > 1.0, "{out}");
    assert!(out.contains("raw ceiling: the same 96 chunks"), "{out}");
}

/// `--fleet --postgres`: the fleet's `rocky serve` keeps its store in a scratch database there.
#[test]
fn a_fleet_bench_on_postgresql_updates_every_device() {
    let admin = rocky::store::ScratchDatabase::admin_url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Whether a server answers (CI requires one); the probe database goes again at once.
    if let Err(e) = runtime.block_on(rocky::store::ScratchDatabase::create(&admin, "probe")) {
        assert!(std::env::var_os("ROCKY_REQUIRE_POSTGRES").is_none(), "PostgreSQL is required: {e}");
        eprintln!("SKIPPED: no PostgreSQL ({e})");
        return;
    }
    let Some(out) = bench(
        "a_fleet_bench_on_postgresql_updates_every_device",
        &["--fleet", "24", "--per-connection", "4", "--size", "16384", "--postgres", &admin],
    ) else {
        return;
    };
    assert!(out.contains("store PostgreSQL (a scratch database)"), "{out}");
    assert!(out.contains("rollout: 24 of 24 devices succeeded"), "{out}");
}

#[test]
fn a_throughput_bench_reports_each_partys_cpu_and_the_ratios_with_their_spread() {
    let Some(out) = bench(
        "a_throughput_bench_reports_each_partys_cpu_and_the_ratios_with_their_spread",
        &["--mosquitto", "--devices", "4", "--size", "65536", "--rounds", "2", "--window", "8"],
    ) else {
        return;
    };
    for round in ["rocky round 1:", "rocky round 2:", "paced round 2 (window 8):", "raw   round 2:"] {
        assert!(out.contains(round), "no {round:?} in\n{out}");
    }
    let rocky_round = out.lines().find(|l| l.contains("rocky round 1:")).unwrap();
    assert!(
        rocky_round.contains("4/4 succeeded")
            && rocky_round.contains("devices")
            && rocky_round.contains("broker")
    );
    let raw_round = out.lines().find(|l| l.contains("raw   round 1:")).unwrap();
    assert!(raw_round.contains("CPU: publisher") && raw_round.contains("subscribers"), "{raw_round}");
    // Present and numbers (a round this small may take less CPU than one clock reading shows).
    assert!(figure(&out, "CPU per GB of chunks: Rocky") >= 0.0, "{out}");
    assert!(figure(&out, "bare publisher") >= 0.0, "{out}");
    assert!(out.contains("ratio rocky/raw:") && out.contains("paced/push "), "{out}");
    // Each ratio is the median of the rounds' own: Rocky's and the raw rounds take turns.
    let at = |text: &str| out.find(text).unwrap_or_else(|| panic!("no {text:?} in\n{out}"));
    assert!(
        at("rocky round 1:") < at("raw   round 1:") && at("raw   round 1:") < at("rocky round 2:"),
        "{out}"
    );
    assert_eq!(out.matches("the median of each round's own").count(), 3, "{out}");
}

/// `rocky bench | head -1`: the closed pipe stops the bench (and the mosquitto and fleet it
/// started) and it ends quietly, never with a panic on the failed write.
#[test]
fn a_bench_piped_into_head_ends_quietly() {
    if crate::support::find_mosquitto("a_bench_piped_into_head_ends_quietly").is_none() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = crate::support::run_with_stdout_closed(
        Command::new(env!("CARGO_BIN_EXE_rocky"))
            .args(["bench", "--mosquitto", "--devices", "2", "--size", "8192", "--rounds", "1"])
            .env("HOME", home.path()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?} {err}", out.status);
}

/// With the embedded broker in its process, the bench does not pass the broker's CPU off as
/// Rocky's: the round says whose it is, and no CPU per GB is compared.
#[test]
fn with_the_embedded_broker_cpu_is_not_told_apart() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rocky"))
        .args(["bench", "--devices", "2", "--size", "8192", "--rounds", "1"])
        .env("HOME", home.path())
        .output()
        .expect("rocky bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("CPU: Rocky and the embedded broker"), "{stdout}");
    assert!(stdout.contains("CPU per GB of chunks: not told apart"), "{stdout}");
    assert!(!stdout.contains("Rocky/publisher"), "{stdout}");
}

/// Every job of `rocky bench-store` sends its device an image: each device's next job is a new
/// one (a device asked for the image it runs answers "up to date" at once, and the bench timed
/// 100 transfers and 9,900 of those before).
#[test]
fn the_store_bench_sends_every_job_its_image() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rocky"))
        .args(["bench-store", "--jobs", "30", "--devices", "4", "--batch", "3", "--size", "64"])
        .env("HOME", home.path())
        .output()
        .expect("rocky bench-store runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("30 of 30 succeeded"), "{stdout}");
}

/// `--instances 1,2`: each count's round sends its own image (the fleet keeps what the round
/// before installed, and the round with two instances used to end at once, every device up to
/// date); a round where a device already ran the image is an error, not a figure.
#[tokio::test]
async fn the_instances_bench_gives_each_round_an_image_of_its_own() {
    if rocky::store::ScratchDatabase::create(&rocky::store::ScratchDatabase::admin_url(), "probe")
        .await
        .is_err()
    {
        assert!(std::env::var_os("ROCKY_REQUIRE_POSTGRES").is_none(), "PostgreSQL is required");
        eprintln!("SKIPPED: no PostgreSQL");
        return;
    }
    let Some(out) = bench(
        "the_instances_bench_gives_each_round_an_image_of_its_own",
        &["--mosquitto", "--instances", "1,2", "--devices", "4", "--size", "16384", "--rounds", "1"],
    ) else {
        return;
    };
    assert!(out.contains("1 instance(s), round 1:"), "{out}");
    assert!(out.contains("2 instance(s), round 1:"), "{out}");
}

/// `--instances 1,1` would run the same count twice and print its median twice: refused by name.
#[test]
fn the_instances_bench_refuses_a_count_given_twice() {
    if crate::support::find_mosquitto("the_instances_bench_refuses_a_count_given_twice").is_none() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rocky"))
        .args(["bench", "--mosquitto", "--instances", "1,2,1", "--devices", "2", "--rounds", "1"])
        .env("HOME", home.path())
        .output()
        .expect("rocky bench runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--instances names each count once (it was given [1, 2, 1])"), "{err}");
}
