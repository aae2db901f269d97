//! `rocky serve` whose stdout nobody reads: its log lines wait in a bounded queue and are then
//! dropped and counted, while jobs, the broker connection and the API carry on, and SIGTERM
//! still stops it. Before, one log line written into a full pipe stopped the process's only
//! async thread, and with it Rocky.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{Serve, ack_frame, healthy, metric, serve_command, terminate, wait_for};
use rocky::broker::{EmbeddedBroker, free_port};

/// A counter's value in `/metrics`, when Rocky answers.
async fn scraped(client: &reqwest::Client, base: &str, name: &str) -> Option<u64> {
    let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    Some(metric(&text, name))
}

/// `rocky serve` on `broker` with an empty config, logging at debug into a pipe the test holds
/// (`env` adds variables); with its API's address and its data directory.
fn serve_at_debug(broker: &EmbeddedBroker, env: &[(&str, &str)]) -> (Serve, String, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let port = free_port().unwrap();
    let mut command = serve_command(&broker.url().to_string(), port, &config, data.path());
    command.env("RUST_LOG", "debug").envs(env.iter().copied()).stdout(Stdio::piped());
    (Serve(command.spawn().unwrap()), format!("http://127.0.0.1:{port}"), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_nobody_reads_drops_log_lines_and_stops_nothing() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let (mut serve, base, _data) = serve_at_debug(&broker, &[]);
    // Held open and never read: the pipe fills (64 KiB) within a few hundred lines.
    let _unread = serve.0.stdout.take();
    // A stopped Rocky would not answer at all: each ask gives up, so the wait can end.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    healthy(&client, &base).await;

    // Each answer is a debug line of traffic (about 100 bytes) and an ignored response. The
    // traffic lines come from the event stream, which a busy log task may lag behind (it then
    // skips events), so answers go out in batches of 5,000 until lines are dropped: with the
    // pipe full, any 10,000 lines beyond what it holds are.
    const BATCH: u32 = 5_000;
    let mut options = rumqttc::MqttOptions::new("log-flood", "127.0.0.1", broker.url().port);
    options.set_inflight(100);
    let (publisher, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
    let pumping = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let mut sent = 0;
    let mut dropped = 0;
    while dropped == 0 && sent < 30 * BATCH {
        for i in sent..sent + BATCH {
            let topic = format!("/fota/cmd_resp/dev-{:02}", i % 50);
            publisher
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, ack_frame(1_000_000 + i))
                .await
                .unwrap();
        }
        sent += BATCH;
        wait_for(Duration::from_secs(60), "every answer to be heard while stdout is not read", || async {
            let ignored = scraped(&client, &base, "rocky_responses_ignored_total").await?;
            (ignored >= u64::from(sent)).then_some(())
        })
        .await;
        dropped = scraped(&client, &base, "rocky_log_lines_dropped_total").await.unwrap();
    }
    assert!(dropped > 0, "lines past the waiting ones are dropped and counted ({sent} answers sent)");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    pumping.abort();

    // Asked to stop, it stops, though its last lines cannot be written.
    terminate(serve.0.id());
    wait_for(Duration::from_secs(20), "rocky serve to exit on SIGTERM", || {
        std::future::ready(serve.0.try_wait().unwrap().map(|_| ()))
    })
    .await;
}

/// `rocky serve` on `broker` logging at debug without colours, healthy, with its stdout's
/// lines arriving on the receiver as they are written.
async fn serve_read_at_debug(
    broker: &EmbeddedBroker,
) -> (Serve, std::sync::mpsc::Receiver<String>, tempfile::TempDir) {
    let (mut serve, base, data) = serve_at_debug(broker, &[("NO_COLOR", "1")]);
    let stdout = serve.0.stdout.take().unwrap();
    let (lines, read) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    healthy(&reqwest::Client::new(), &base).await;
    (serve, read, data)
}

/// A broker client's 20 KiB topic, logged at debug, reaches stdout cut to 4 KiB and marked, so
/// the lines waiting for a slow stdout hold at most 4 KiB each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_line_with_a_huge_topic_is_cut_to_4_kib() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let (serve, read, _data) = serve_read_at_debug(&broker).await;

    let device = "d".repeat(20_000);
    let mut options = rumqttc::MqttOptions::new("long-topic", "127.0.0.1", broker.url().port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (publisher, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let pumping = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = format!("/fota/cmd_resp/{device}");
    publisher.publish(topic, rumqttc::QoS::AtLeastOnce, false, ack_frame(5)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = read.recv_timeout(left).expect("a log line naming the long topic within 30 s");
        if line.contains(&device[..1000]) {
            break line;
        }
    };
    assert!(line.len() < 4096, "a line of {} bytes", line.len());
    assert!(line.ends_with('…'), "{}", &line[line.len().saturating_sub(40)..]);
    pumping.abort();
    terminate(serve.0.id());
}

/// A broker client's topic with a line break in its device level, logged at debug, stays on its
/// line with the break escaped: nobody on the broker can write a line of Rocky's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_break_in_a_topic_cannot_forge_a_log_line() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let (serve, read, _data) = serve_read_at_debug(&broker).await;

    let options = rumqttc::MqttOptions::new("line-break", "127.0.0.1", broker.url().port);
    let (publisher, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let pumping = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = "/fota/cmd_resp/dev-1\n2026-12-05T00:00:00Z  INFO FORGED job 1 succeeded";
    publisher.publish(topic, rumqttc::QoS::AtLeastOnce, false, ack_frame(5)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = read.recv_timeout(left).unwrap_or_else(|_| panic!("a line naming the topic: {seen:#?}"));
        if line.contains("FORGED") {
            break line;
        }
        seen.push(line);
    };
    assert!(
        line.contains("dev-1\\n2026-12-05T00:00:00Z  INFO FORGED"),
        "escaped, on the line that logs it: {line}"
    );
    assert!(!line.starts_with("2026-12-05T00:00:00Z"), "no line of its own: {line}");
    pumping.abort();
    terminate(serve.0.id());
}
