//! `rocky bench --fleet N`: one box updating a whole fleet, each device on its own connection
//! (or K to a connection, `--per-connection K`, where the open-files limit is short), end to
//! end and measured as an operator would: a private mosquitto (with as many listeners as
//! the loopback port range needs), `rocky serve` in a child process, `rocky sim` with N devices
//! in another, the devices registered through the API, one rollout of the image to all of them.
//! It reports the rollout's wall time, devices a minute, chunks a second, Rocky's peak RSS and
//! CPU seconds, the broker's CPU seconds, and the raw ceiling measured in the same run: a bare
//! publisher sending the same chunks to the same devices' connections.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::proc_stats::{ProcessStats, raise_open_files};
use crate::commands::output::say;
use rocky::broker::free_port;
use rocky::runtime::BrokerUrl;

/// Connections one listener takes: below the 28,231 ephemeral ports of one source address towards
/// one listener (Linux's default 32768–60999), with room for Rocky's and the bench's own.
const CONNECTIONS_PER_LISTENER: usize = 25_000;
/// Devices registered by one `POST /devices/import` (within its body limit).
const IMPORT_BATCH: usize = 10_000;
/// Open files beyond one a connection that each of the bench's processes may need: the fleet
/// and the broker each hold one socket a connection (in processes of their own, each with this limit),
/// and Rocky, the listeners and the store a few more.
const FDS_SPARE: u64 = 1024;

/// What one run of the fleet bench asks for.
pub struct FleetRun {
    pub devices: usize,
    pub size: usize,
    pub chunk: u32,
    pub connect_rate: u32,
    /// Devices that share one connection (1: each its own).
    pub per_connection: usize,
    /// `rocky serve`'s store in a scratch database on this PostgreSQL server (an
    /// administrator's URL) instead of SQLite.
    pub postgres: Option<String>,
}

/// What one run measured.
struct Measured {
    wall: Duration,
    succeeded: u64,
    rocky: ProcessStats,
    broker: ProcessStats,
    raw_wall: Duration,
}

pub async fn run(run: &FleetRun) -> anyhow::Result<()> {
    if run.devices == 0 || run.size == 0 {
        bail!("--fleet and --size must be at least 1");
    }
    let connections = run.devices.div_ceil(run.per_connection.max(1));
    let fds = raise_open_files(connections as u64 + FDS_SPARE)?;
    let listeners = connections.div_ceil(CONNECTIONS_PER_LISTENER);
    let chunks_per_device = run.size.div_ceil(run.chunk as usize);
    let on = match run.per_connection {
        0 | 1 => "on their own connections".to_owned(),
        k => format!("{k} to a connection ({connections} connections)"),
    };
    say!(
        "rocky bench --fleet: {} devices {on}, one {} B image ({} chunks of {} B each), \
         mosquitto with {listeners} listener(s), open files limit {fds}, store {}",
        run.devices,
        run.size,
        chunks_per_device,
        run.chunk,
        if run.postgres.is_some() { "PostgreSQL (a scratch database)" } else { "SQLite" }
    );
    let scratch = std::env::temp_dir().join(format!("rocky-bench-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).context("cannot make the bench's scratch directory")?;
    let result = measure(run, listeners, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let m = result?;
    let chunks = (run.devices * chunks_per_device) as f64;
    let wall = m.wall.as_secs_f64();
    let raw = m.raw_wall.as_secs_f64();
    let gb = (run.devices * run.size) as f64 / 1e9;
    say!(
        "rollout: {} of {} devices succeeded in {wall:.1} s = {:.0} devices/min, {:.0} chunks/s",
        m.succeeded,
        run.devices,
        m.succeeded as f64 * 60.0 / wall,
        chunks / wall
    );
    say!(
        "rocky serve: peak RSS {:.1} MiB, {:.2} CPU s in the rollout ({:.1} CPU s per GB of image bytes)",
        m.rocky.peak_rss as f64 / (1024.0 * 1024.0),
        m.rocky.cpu_s,
        m.rocky.cpu_s / gb
    );
    say!(
        "mosquitto: {:.2} CPU s in the rollout, peak RSS {:.1} MiB",
        m.broker.cpu_s,
        m.broker.peak_rss as f64 / (1024.0 * 1024.0)
    );
    say!(
        "raw ceiling: the same {chunks:.0} chunks from a bare QoS 1 publisher to the same connections in {raw:.1} s \
         = {:.0} chunks/s; rollout/raw time {:.1}×",
        chunks / raw,
        wall / raw
    );
    if m.succeeded < run.devices as u64 {
        bail!("{} devices did not succeed", run.devices as u64 - m.succeeded);
    }
    Ok(())
}

async fn measure(run: &FleetRun, listeners: usize, scratch: &std::path::Path) -> anyhow::Result<Measured> {
    let (mut mosquitto, ports) = super::start_mosquitto_listeners(listeners).await?;
    let broker = BrokerUrl::local(ports[0]);
    let http = free_port()?;
    let base = format!("http://127.0.0.1:{http}");
    let config = scratch.join("rocky.toml");
    let db = match &run.postgres {
        Some(admin) => Some(rocky::store::ScratchDatabase::create(admin, "fleet").await?),
        None => None,
    };
    let url = db.as_ref().map_or(String::new(), |db| format!("url = \"{}\"\n", db.settings().url()));
    std::fs::write(&config, format!("[store]\nmax_devices = {}\n{url}", run.devices + 1000))?;
    let exe = std::env::current_exe().context("cannot find the rocky executable")?;
    let mut serve = tokio::process::Command::new(&exe)
        .args(["serve", "--broker", &broker.to_string(), "--http", &format!("127.0.0.1:{http}")])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(scratch.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start rocky serve")?;
    let client = reqwest::Client::new();
    healthy(&client, &base).await?;
    let extra: Vec<String> = ports[1..].iter().map(u16::to_string).collect();
    let mut flags = vec![
        "--connect-rate".to_owned(),
        run.connect_rate.to_string(),
        "--per-connection".to_owned(),
        run.per_connection.to_string(),
    ];
    if !extra.is_empty() {
        flags.extend(["--ports".to_owned(), extra.join(",")]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let started = Instant::now();
    let ramp = Duration::from_secs_f64(run.devices as f64 / f64::from(run.connect_rate.max(1)));
    let mut fleet =
        super::start_fleet_waiting(&broker, run.devices, "fleet-", &flags, ramp + Duration::from_secs(60))
            .await?;
    say!("  {} devices connected in {:.1} s", run.devices, started.elapsed().as_secs_f64());
    register(&client, &base, run.devices).await?;
    let image = rocky::sim::sample_image(run.size, 7);
    let uploaded = client.post(format!("{base}/firmware?name=fleet.bin")).body(image.to_vec()).send().await?;
    if !uploaded.status().is_success() {
        bail!("the upload was refused: {}", uploaded.text().await.unwrap_or_default());
    }

    let serve_pid = serve.id().context("rocky serve exited")?;
    let broker_pid = mosquitto.id().context("mosquitto exited")?;
    let (rocky_before, broker_before) = (ProcessStats::read(serve_pid)?, ProcessStats::read(broker_pid)?);
    let body = json!({
        "name": "fleet bench",
        "firmware": {"path": "fleet.bin"},
        "targets": {"glob": "fleet-*"},
        "waves": ["100%"],
        "chunk_size": run.chunk,
    });
    let started = Instant::now();
    let created = client.post(format!("{base}/rollouts")).json(&body).send().await?;
    if !created.status().is_success() {
        bail!("the rollout was refused: {}", created.text().await.unwrap_or_default());
    }
    let id = created.json::<Value>().await?["id"].as_u64().context("no rollout id")?;
    let limit = Duration::from_secs(1800);
    let mut last_report = Instant::now();
    let done = loop {
        let rollout: Value =
            client.get(format!("{base}/rollouts/{id}?from=0&limit=1")).send().await?.json().await?;
        if rollout["state"].as_str().is_some_and(|s| s != "running" && s != "scheduled" && s != "paused") {
            break rollout;
        }
        if started.elapsed() > limit {
            bail!("the rollout did not end within {} s", limit.as_secs());
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            say!("  {:.0} s: {}", started.elapsed().as_secs_f64(), counts_line(&rollout));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed();
    let rocky = ProcessStats::read(serve_pid)?.since(&rocky_before);
    let broker_stats = ProcessStats::read(broker_pid)?.since(&broker_before);
    say!("  rollout {}: {}", done["state"].as_str().unwrap_or("?"), counts_line(&done));
    let succeeded = count(&done, "succeeded");
    let _ = serve.start_kill();
    let _ = serve.wait().await;

    let chunks_per_device = run.size.div_ceil(run.chunk as usize);
    let raw_wall = raw_to_fleet(&broker, run.devices, chunks_per_device, run.chunk as usize).await?;
    let _ = fleet.start_kill();
    let _ = fleet.wait().await;
    let _ = mosquitto.start_kill();
    Ok(Measured { wall, succeeded, rocky, broker: broker_stats, raw_wall })
}

/// A rollout's count of `field` over its waves.
fn count(rollout: &Value, field: &str) -> u64 {
    rollout["waves"].as_array().map_or(0, |waves| waves.iter().filter_map(|w| w[field].as_u64()).sum())
}

/// `pending 0, active 64, succeeded 812, failed 0` from a rollout's waves.
fn counts_line(rollout: &Value) -> String {
    ["pending", "active", "succeeded", "failed", "cancelled"]
        .iter()
        .map(|field| format!("{field} {}", count(rollout, field)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn healthy(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(answer) = client.get(format!("{base}/healthz")).send().await
            && answer.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("rocky serve did not answer on {base} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers `fleet-…` devices through the API, a batch of lines at a time.
async fn register(client: &reqwest::Client, base: &str, devices: usize) -> anyhow::Result<()> {
    let width = devices.to_string().len().max(2);
    let mut added = 0u64;
    for start in (1..=devices).step_by(IMPORT_BATCH) {
        let end = (start + IMPORT_BATCH - 1).min(devices);
        let lines: String = (start..=end).map(|n| format!("fleet-{n:0width$},bench=fleet\n")).collect();
        let answer = client.post(format!("{base}/devices/import")).body(lines).send().await?;
        if !answer.status().is_success() {
            bail!("the import was refused: {}", answer.text().await.unwrap_or_default());
        }
        added += answer.json::<Value>().await?["added"].as_u64().unwrap_or(0);
    }
    if added != devices as u64 {
        bail!("{added} of {devices} devices were registered");
    }
    Ok(())
}

/// The raw ceiling: every chunk of every device's job, published at QoS 1 by one bare client to
/// the devices' own data topics (so the broker fans them out over the same connections), timed
/// from the first publish until a probe published after the last comes back to the publisher
/// (mosquitto handles a client's messages in order, so by then it has handed every chunk to its
/// device's connection).
async fn raw_to_fleet(
    broker: &BrokerUrl,
    devices: usize,
    chunks_per_device: usize,
    chunk: usize,
) -> anyhow::Result<Duration> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut options =
        MqttOptions::new(format!("fleet-raw-{}", std::process::id()), &broker.host, broker.port);
    options
        .set_max_packet_size(rocky::runtime::MAX_PACKET_BYTES, rocky::runtime::MAX_PACKET_BYTES)
        .set_inflight(128)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let probe = format!("rocky-bench/probe/{}", std::process::id());
    client.subscribe(&probe, QoS::AtLeastOnce).await?;
    let topics = rocky::protocol::Topics::default();
    let width = devices.to_string().len().max(2);
    let ids: Vec<rocky::protocol::DeviceId> = (1..=devices)
        .map(|n| rocky::protocol::DeviceId::parse(&format!("fleet-{n:0width$}")))
        .collect::<Result<_, _>>()?;
    let payload = bytes::Bytes::from(vec![0xA5u8; chunk]);
    let publisher = {
        let client = client.clone();
        let probe = probe.clone();
        tokio::spawn(async move {
            for index in 1..=chunks_per_device as u32 {
                for id in &ids {
                    client
                        .publish_bytes(topics.data(id, index), QoS::AtLeastOnce, false, payload.clone())
                        .await?;
                }
            }
            client.publish(probe, QoS::AtLeastOnce, false, b"done".to_vec()).await?;
            Ok::<(), rumqttc::ClientError>(())
        })
    };
    let started = Instant::now();
    let limit = Duration::from_secs(1800);
    loop {
        let event = tokio::time::timeout(limit.saturating_sub(started.elapsed()), eventloop.poll())
            .await
            .context("the raw publisher's run did not end within 30 minutes")?
            .context("the raw publisher lost the broker")?;
        if let Event::Incoming(Packet::Publish(p)) = event
            && p.topic == probe
        {
            break;
        }
    }
    let wall = started.elapsed();
    publisher.await.context("the raw publisher stopped")?.context("the raw publisher could not publish")?;
    let _ = client.disconnect().await;
    Ok(wall)
}
