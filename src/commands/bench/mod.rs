//! `rocky bench`: Rocky's throughput beside the broker's raw QoS 1 throughput, through the same
//! broker, so the figure says how much of the broker's capacity Rocky uses.
//!
//! The simulated fleet runs in a child process (`rocky sim`), so the peak RSS reported is
//! Rocky's own (plus the embedded broker's when no external broker is used).

mod delta;
mod delta_rollout;
mod fleet;
mod instances;
mod proc_stats;
mod raw;
mod rocky_run;
mod stats;
pub mod store_run;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::GlobalArgs;
use crate::commands::output::say;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::runtime::BrokerUrl;
use stats::{Paired, median, peak_rss_bytes, range};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub broker: crate::commands::BrokerFlags,
    /// Devices (one job each).
    #[arg(long, short = 'd', default_value_t = 100)]
    pub devices: usize,
    /// Image size in bytes.
    #[arg(long, short = 's', default_value_t = 1024 * 1024)]
    pub size: usize,
    /// Chunk size in bytes.
    #[arg(long, short = 'c', default_value_t = 4096)]
    pub chunk: u32,
    /// Rounds to run; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Start a private mosquitto on a free loopback port and use it.
    #[arg(long, conflicts_with = "broker")]
    pub mosquitto: bool,
    /// Also run the rounds with flow control (devices opt in with this window) and compare
    /// them with push mode measured in the same run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub window: Option<u32>,
    /// Connections the raw baseline's publishes are spread over (default: one per device, the
    /// fan-out Rocky's rounds have; 1 measures a single subscriber).
    #[arg(long, value_name = "N")]
    pub raw_subscribers: Option<usize>,
    /// Instead: the same round run by this many instances sharing a PostgreSQL store, e.g.
    /// `1,2,3` (a scratch database each round, on --postgres).
    #[arg(long, value_name = "LIST", value_delimiter = ',', conflicts_with_all = ["window", "ignored"])]
    pub instances: Option<Vec<usize>>,
    /// The PostgreSQL server for --instances, as an administrator's URL (default
    /// postgres://postgres@127.0.0.1:5432/postgres, or ROCKY_TEST_POSTGRES). With --fleet:
    /// `rocky serve` keeps its store in a scratch database there instead of SQLite.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Instead: what one instance spends ignoring this many responses a second for jobs it
    /// does not drive (needs --mosquitto, so the broker's share is measured apart).
    #[arg(long, value_name = "PER_S", requires = "mosquitto")]
    pub ignored: Option<u32>,
    /// Instead: patch sizes and build times for 1 MiB and 16 MiB images (or --size) with a byte,
    /// 1 % and 10 % changed and a recompiled image, and the wire bytes and wall time of a
    /// rollout to --devices devices with patches against one with whole images.
    #[arg(long, conflicts_with_all = ["instances", "ignored", "window"])]
    pub delta: bool,
    /// With --delta: each rollout job capped to this rate (bytes a second, e.g. 64KiB), as a
    /// cellular or LPWAN link would be.
    #[arg(long, value_name = "RATE", requires = "delta", value_parser = rocky::units::parse_rate)]
    pub link_rate: Option<u64>,
    /// How long --ignored publishes in each of its two phases.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub seconds: f64,
    /// Instead: one rollout of a --size image (16 KiB unless given) to this many `rocky sim`
    /// devices, each on its own connection, through a private mosquitto, with `rocky serve` in a
    /// child process: wall time, devices a minute, Rocky's peak RSS and CPU, the broker's CPU,
    /// and the raw ceiling of the same bytes to the same connections.
    #[arg(long, value_name = "N", conflicts_with_all = ["instances", "ignored", "window", "delta", "broker", "mosquitto"])]
    pub fleet: Option<usize>,
    /// With --fleet: devices that start connecting each second.
    #[arg(long, value_name = "PER_S", default_value_t = 2000, requires = "fleet")]
    pub connect_rate: u32,
    /// With --fleet: devices that share one connection (`rocky sim --per-connection`), for a
    /// fleet larger than the open-files limit allows on connections of their own.
    #[arg(long, value_name = "K", default_value_t = 1, requires = "fleet",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub per_connection: u32,
}

pub async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<()> {
    if args.devices == 0 || args.size == 0 || args.rounds == 0 {
        bail!("--devices, --size and --rounds must be at least 1");
    }
    if let Some(devices) = args.fleet {
        if global.broker.is_some() {
            bail!("--fleet starts a mosquitto of its own: leave out --broker");
        }
        // A fleet's image is small unless asked: 16 KiB, as a sensor's firmware delta would be.
        let size = if args.size == 1024 * 1024 { 16 * 1024 } else { args.size };
        let run = fleet::FleetRun {
            devices,
            size,
            chunk: args.chunk,
            connect_rate: args.connect_rate,
            per_connection: args.per_connection as usize,
            postgres: args.postgres.clone(),
        };
        return fleet::run(&run).await;
    }
    if args.postgres.is_some() && args.instances.is_none() {
        bail!("--postgres goes with --instances or --fleet");
    }
    let mut _mosquitto = None;
    // Only the bench's own mosquitto is known to queue a whole round for a subscriber; the
    // raw publisher paces itself to any other broker (the embedded one drops what it cannot keep).
    let raw_paced = !args.mosquitto;
    let (broker, broker_name) = if let Some(url) = &global.broker {
        (BrokerUrl::parse(url)?, "external broker".to_owned())
    } else if args.mosquitto {
        let child = start_mosquitto().await?;
        let url = BrokerUrl::local(child.1);
        _mosquitto = Some(child.0);
        (url, "mosquitto (private)".to_owned())
    } else {
        let broker = tokio::task::spawn_blocking(|| EmbeddedBroker::start(None)).await??;
        // The embedded broker's threads live as long as the process.
        (broker.url(), "embedded broker (in this process)".to_owned())
    };
    if args.delta {
        let sizes = if args.size == 1024 * 1024 { vec![1 << 20, 16 << 20] } else { vec![args.size] };
        let dir = std::env::temp_dir().join(format!("rocky-bench-delta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).context("cannot make a directory for the fleet's base image")?;
        let result = match delta_rollout::Bench::new(&broker, args.devices, args.chunk, &dir, args.link_rate)
        {
            Ok(rollouts) => delta::run(&sizes, args.rounds, &rollouts).await,
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    }
    let chunks_per_job = args.size.div_ceil(args.chunk as usize);
    if let Some(rate) = args.ignored {
        say!("rocky bench: ignoring {rate} responses/s for {:.0} s, {broker} [{broker_name}]", args.seconds);
        let pid = _mosquitto.as_ref().and_then(|child: &tokio::process::Child| child.id());
        return instances::ignored(&broker, pid, rate, args.seconds).await;
    }
    if let Some(counts) = &args.instances {
        if counts.contains(&0) {
            bail!("--instances counts must be at least 1");
        }
        if counts.iter().enumerate().any(|(at, n)| counts[..at].contains(n)) {
            bail!("--instances names each count once (it was given {counts:?})");
        }
        say!(
            "rocky bench: {} devices × {} B image, {} B chunks ({} chunks/job), {} rounds, by {counts:?} instances \
             sharing PostgreSQL, {broker} [{broker_name}]",
            args.devices,
            args.size,
            args.chunk,
            chunks_per_job,
            args.rounds
        );
        let mut fleet = start_fleet_named(&broker, args.devices, "bench-", &[]).await?;
        let result = instances::compare(&broker, &args, counts).await;
        let _ = fleet.start_kill();
        let _ = fleet.wait().await;
        return result;
    }
    say!(
        "rocky bench: {} devices × {} B image, {} B chunks ({} chunks/job), {} rounds, {broker} [{broker_name}]",
        args.devices,
        args.size,
        args.chunk,
        chunks_per_job,
        args.rounds
    );

    let mut fleet = start_fleet_named(&broker, args.devices, "bench-", &[]).await?;
    let mut paced = match args.window {
        Some(window) => Some(
            start_fleet_named(&broker, args.devices, "paced-", &["--window", &window.to_string()]).await?,
        ),
        None => None,
    };
    let broker_pid = _mosquitto.as_ref().and_then(tokio::process::Child::id);
    let broker_in_process = global.broker.is_none() && !args.mosquitto;
    let push_parties = rocky_run::Parties { devices: fleet.id(), broker: broker_pid, broker_in_process };
    let paced_parties = rocky_run::Parties {
        devices: paced.as_ref().and_then(tokio::process::Child::id),
        broker: broker_pid,
        broker_in_process,
    };
    // Rocky's rounds and the raw ones take turns (Rocky, paced, raw; then again), so each ratio
    // compares rounds run a few seconds apart. On a shared machine whose speed drifts over a
    // run, all of Rocky's rounds and then all the raw ones compared one stretch with another.
    let total = args.devices * chunks_per_job;
    let subscribers = args.raw_subscribers.unwrap_or(args.devices);
    let mut rocky_rounds = Vec::new();
    let mut paced_rounds = Vec::new();
    let mut raw_rounds = Vec::new();
    for round in 1..=args.rounds {
        let result = rocky_run::run_round(&broker, &args, round, "bench-", push_parties).await?;
        say!("  rocky round {round}: {}", result.line());
        rocky_rounds.push(result);
        if let Some(window) = args.window {
            let result = rocky_run::run_round(&broker, &args, round, "paced-", paced_parties).await?;
            say!("  paced round {round} (window {window}): {}", result.line());
            paced_rounds.push(result);
        }
        let result =
            raw::run_round(&broker, total, args.chunk as usize, subscribers, raw_paced, broker_pid).await?;
        say!("  raw   round {round}: {}", result.line());
        raw_rounds.push(result);
    }
    for child in std::iter::once(&mut fleet).chain(paced.as_mut()) {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let rss = peak_rss_bytes();

    let rocky_rates: Vec<f64> = rocky_rounds.iter().map(|r| r.chunks_per_s()).collect();
    let raw_rates: Vec<f64> = raw_rounds.iter().map(|r| r.msgs_per_s()).collect();
    let rocky_rate = median(rocky_rates.clone());
    let raw_rate = median(raw_rates.clone());
    let mb = |rate: f64| rate * f64::from(args.chunk) / 1e6;
    say!(
        "median rocky: {rocky_rate:.0} chunks/s = {:.1} MB/s, wall {:.2} s, job p50 {:.0} ms, p99 {:.0} ms",
        mb(rocky_rate),
        median(rocky_rounds.iter().map(|r| r.wall.as_secs_f64()).collect()),
        median(rocky_rounds.iter().map(|r| r.p50.as_secs_f64() * 1e3).collect()),
        median(rocky_rounds.iter().map(|r| r.p99.as_secs_f64() * 1e3).collect()),
    );
    say!(
        "median raw  : {raw_rate:.0} msgs/s = {:.1} MB/s (bare rumqttc QoS 1 publisher → {subscribers} subscriber connections)",
        mb(raw_rate),
    );
    let (rocky_lo, rocky_hi) = range(&rocky_rates);
    let (raw_lo, raw_hi) = range(&raw_rates);
    let throughput = Paired::of(&rocky_rates, &raw_rates);
    say!(
        "ratio rocky/raw: {:.2}, the median of each round's own ({:.2}–{:.2}; rounds: Rocky {rocky_lo:.0}–{rocky_hi:.0} \
         chunks/s, raw {raw_lo:.0}–{raw_hi:.0} msgs/s)",
        throughput.median,
        throughput.low,
        throughput.high
    );
    let per_gb = |cpu_s: f64, bytes: f64| cpu_s / (bytes / 1e9);
    let raw_bytes = (total * args.chunk as usize) as f64;
    let rocky_per_gb: Vec<f64> = rocky_rounds.iter().map(|r| per_gb(r.cpu.rocky, r.bytes as f64)).collect();
    let raw_per_gb: Vec<f64> = raw_rounds.iter().map(|r| per_gb(r.publisher_cpu_s, raw_bytes)).collect();
    if broker_in_process {
        say!(
            "CPU per GB of chunks: not told apart (the embedded broker works in Rocky's process); use --mosquitto"
        );
    } else {
        let ((cpu_lo, cpu_hi), (pub_lo, pub_hi)) = (range(&rocky_per_gb), range(&raw_per_gb));
        let cpu = Paired::of(&rocky_per_gb, &raw_per_gb);
        say!(
            "CPU per GB of chunks: Rocky {:.2} s ({cpu_lo:.2}–{cpu_hi:.2}), bare publisher {:.2} s \
             ({pub_lo:.2}–{pub_hi:.2}); Rocky/publisher {:.2}, the median of each round's own ({:.2}–{:.2})",
            median(rocky_per_gb.clone()),
            median(raw_per_gb.clone()),
            cpu.median,
            cpu.low,
            cpu.high
        );
    }
    if let Some(window) = args.window {
        let paced_rates: Vec<f64> = paced_rounds.iter().map(|r| r.chunks_per_s()).collect();
        let (paced_lo, paced_hi) = range(&paced_rates);
        let paced = Paired::of(&paced_rates, &rocky_rates);
        say!(
            "median paced (window {window}): {:.0} chunks/s = {:.1} MB/s (rounds {paced_lo:.0}–{paced_hi:.0}); \
             paced/push {:.2}, the median of each round's own ({:.2}–{:.2})",
            median(paced_rates.clone()),
            mb(median(paced_rates.clone())),
            paced.median,
            paced.low,
            paced.high
        );
    }
    match rss {
        Some(bytes) => say!(
            "peak RSS of this process (Rocky and the raw rounds' clients): {:.1} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        ),
        None => say!("peak RSS: unavailable on this platform"),
    }
    Ok(())
}

/// `rocky sim` in a child process (with `extra` flags); returns once every device is
/// subscribed. Its devices come back from the reboot into an update at once: a round times
/// Rocky's work, and the simulator's default second of reboot was idle time in every round
/// (an eighth of an 8 MiB round's wall). `--fleet` keeps the second, as a rollout's end to end.
pub async fn start_fleet_named(
    broker: &BrokerUrl,
    count: usize,
    prefix: &str,
    extra: &[&str],
) -> anyhow::Result<tokio::process::Child> {
    let flags: Vec<&str> = ["--reboot-delay", "0"].into_iter().chain(extra.iter().copied()).collect();
    start_fleet_waiting(broker, count, prefix, &flags, Duration::from_secs(60)).await
}

/// [`start_fleet_named`], waiting up to `timeout` for every device to connect.
pub async fn start_fleet_waiting(
    broker: &BrokerUrl,
    count: usize,
    prefix: &str,
    extra: &[&str],
    timeout: Duration,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("cannot find the rocky executable")?;
    let mut child = tokio::process::Command::new(exe)
        .args(["sim", "--broker", &broker.to_string(), "--count", &count.to_string(), "--prefix", prefix])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the simulated fleet")?;
    let stdout = child.stdout.take().context("no fleet stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(timeout, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("all ") && line.ends_with("connected") {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        bail!("the simulated fleet did not connect within {} s", timeout.as_secs());
    }
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

/// A mosquitto on a free loopback port with Rocky-friendly limits, killed when dropped.
///
/// `max_inflight_messages 128` matters: mosquitto tells MQTT 5 clients its default of 20 as
/// their receive maximum, which caps Rocky (MQTT 5 by default) at 20 unacknowledged publishes
/// while the 3.1.1 baseline keeps its 128. With both at 128 the ratio compares like with like;
/// the README says what 20 costs.
async fn start_mosquitto() -> anyhow::Result<(tokio::process::Child, u16)> {
    let (child, ports) = start_mosquitto_listeners(1).await?;
    Ok((child, ports[0]))
}

/// [`start_mosquitto`] with `listeners` listeners on free loopback ports (a fleet larger than
/// one source address's ephemeral ports connects to several).
async fn start_mosquitto_listeners(listeners: usize) -> anyhow::Result<(tokio::process::Child, Vec<u16>)> {
    let ports = (0..listeners.max(1)).map(|_| free_port()).collect::<Result<Vec<u16>, _>>()?;
    let port = ports[0];
    let conf = std::env::temp_dir().join(format!("rocky-bench-mosquitto-{port}.conf"));
    let mut text: String = ports.iter().map(|p| format!("listener {p} 127.0.0.1\n")).collect();
    text.push_str(
        "allow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 128\n",
    );
    std::fs::write(&conf, text)?;
    let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("mosquitto");
    let child = tokio::process::Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start mosquitto (is it installed?)")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for &port in &ports {
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                bail!("mosquitto did not listen on {port}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Read when it started: a file per run would pile up in the temporary directory.
    let _ = std::fs::remove_file(&conf);
    Ok((child, ports))
}
