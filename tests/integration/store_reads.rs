//! An instance on PostgreSQL whose periodic reads of the store fail while its lease still renews
//! (here the jobs table is renamed away under it: claiming, taking cancels and mirroring the
//! other instances' jobs all read it; the lease does not) says so once per read as a warning,
//! stays quiet while the reason stays, keeps running, and says once when the reads work again.
//! These failures used to be logged at debug only, so an instance could go stale unheard.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Serve, healthy, serve_command, wait_for};
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::store::ScratchDatabase;

const MIRROR: &str = "could not read other instances' changes";
const CLAIM: &str = "could not claim jobs no live instance drives";
const CANCELS: &str = "could not take the cancels other instances asked of this one";

/// The log lines so far that hold `text` at `level` ("WARN", "DEBUG", "INFO").
fn count(lines: &Mutex<Vec<String>>, level: &str, text: &str) -> usize {
    let lines = lines.lock().unwrap();
    lines.iter().filter(|line| line.contains(level) && line.contains(text)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_store_reads_are_warned_of_once_and_their_recovery_said() {
    let db = match ScratchDatabase::create(&ScratchDatabase::admin_url(), "store-reads").await {
        Ok(db) => db,
        Err(e) => {
            assert!(std::env::var_os("ROCKY_REQUIRE_POSTGRES").is_none(), "PostgreSQL is required: {e}");
            eprintln!("SKIPPED: no PostgreSQL ({e})");
            return;
        }
    };
    let broker = EmbeddedBroker::start(None).unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("config.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{}\"\nlease_s = 3\n", db.settings().url())).unwrap();
    let port = free_port().unwrap();
    let mut command = serve_command(&broker.url().to_string(), port, &config, data.path());
    command.env("RUST_LOG", "rocky=debug").stdout(Stdio::piped());
    let mut serve = Serve(command.spawn().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = serve.0.stdout.take().unwrap();
    let reading = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            reading.lock().unwrap().push(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    healthy(&client, &base).await;

    let admin = db.settings().connect().await.unwrap();
    admin.batch_execute("ALTER TABLE jobs RENAME TO jobs_away").await.unwrap();
    // Each read runs every second: three quiet repeats after the warning show it is said once.
    wait_for(Duration::from_secs(30), "the failing reads to be warned of and then repeated quietly", || {
        let repeated = [MIRROR, CLAIM, CANCELS].iter().all(|text| count(&lines, "DEBUG", text) >= 3);
        std::future::ready(repeated.then_some(()))
    })
    .await;
    for text in [MIRROR, CLAIM, CANCELS] {
        assert_eq!(count(&lines, "WARN", text), 1, "one warning for {text:?}: {:#?}", lines.lock().unwrap());
    }
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK, "the lease renews: the instance is healthy");

    admin.batch_execute("ALTER TABLE jobs_away RENAME TO jobs").await.unwrap();
    wait_for(Duration::from_secs(30), "the reads' recovery to be said", || {
        // "could not X" is said again as "could X again".
        let said = [MIRROR, CLAIM, CANCELS].iter().all(|text| {
            count(&lines, "INFO", &format!("{} again", text.replacen("could not", "could", 1))) == 1
        });
        std::future::ready(said.then_some(()))
    })
    .await;
    for text in [MIRROR, CLAIM, CANCELS] {
        assert_eq!(count(&lines, "WARN", text), 1, "nothing more was warned of: {text:?}");
    }
    serve.kill9();
}
