//! `rocky serve` runs its async work on one worker thread unless `TOKIO_WORKER_THREADS` asks
//! for more (main.rs says why), and says which in `/metrics`.

use std::time::Duration;

use rocky::broker::free_port;

use crate::support::{Serve, serve_command, wait_for};

/// The `rocky_async_workers` gauge of a `rocky serve` started with `workers` in its environment
/// (or nothing), read once its API answers.
async fn async_workers_of_serve(workers: Option<&str>) -> String {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("test-config.toml");
    std::fs::write(&config, "").unwrap();
    let port = free_port().unwrap();
    // Port 9 on loopback: no broker answers, which this test does not need.
    let mut command = serve_command("mqtt://127.0.0.1:9", port, &config, data.path());
    command.env_remove("TOKIO_WORKER_THREADS");
    if let Some(workers) = workers {
        command.env("TOKIO_WORKER_THREADS", workers);
    }
    let _serve = Serve(command.spawn().expect("rocky serve starts"));
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for(Duration::from_secs(20), "rocky_async_workers in /metrics", || async {
        let text = client.get(&url).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|line| line.strip_prefix("rocky_async_workers ")).map(str::to_owned)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_on_one_async_worker_unless_told_otherwise() {
    assert_eq!(async_workers_of_serve(None).await, "1");
    assert_eq!(async_workers_of_serve(Some("3")).await, "3");
}

/// A count that is not a whole number of at least 1 is refused by name before anything starts
/// (tokio itself would panic on it).
#[test]
fn a_bad_worker_count_is_refused_by_name() {
    for bad in ["abc", "0", ""] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocky"))
            .arg("config")
            .env("TOKIO_WORKER_THREADS", bad)
            .env("HOME", tempfile::tempdir().unwrap().path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} was taken");
        assert!(err.contains("TOKIO_WORKER_THREADS must be a whole number of at least 1"), "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
