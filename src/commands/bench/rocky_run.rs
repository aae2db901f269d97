//! One round of Rocky proper: D jobs to D devices, timed from submit to the last verdict.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::BenchArgs;
use super::proc_stats::{cpu_seconds_of, own_cpu_seconds};
use super::stats::percentile;
use rocky::engine::{JobSpec, JobState};
use rocky::firmware::{ChunkSize, Image, Library};
use rocky::protocol::DeviceId;
use rocky::runtime::{BrokerUrl, JobFilter, Runtime, RuntimeConfig};

pub struct RockyRound {
    pub wall: Duration,
    pub chunks: u64,
    pub bytes: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub succeeded: usize,
    pub jobs: usize,
    /// CPU seconds over the round (submit to the last verdict).
    pub cpu: RoundCpu,
}

/// The CPU seconds each party spent on a round: Rocky (this process: nothing else of the
/// bench's runs here meanwhile but its status polls), the simulated devices and the broker
/// (when the bench started them).
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundCpu {
    /// `rocky` includes the embedded broker's work.
    pub broker_in_process: bool,
    pub rocky: f64,
    pub devices: Option<f64>,
    pub broker: Option<f64>,
}

/// The processes a round's CPU is read from, besides this one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parties {
    pub devices: Option<u32>,
    pub broker: Option<u32>,
    /// The broker runs in this process (the embedded one): "Rocky" is both.
    pub broker_in_process: bool,
}

impl Parties {
    fn read(&self) -> [Option<f64>; 3] {
        [Some(own_cpu_seconds()), self.devices.and_then(cpu_seconds_of), self.broker.and_then(cpu_seconds_of)]
    }

    fn since(&self, before: [Option<f64>; 3]) -> RoundCpu {
        let [rocky, devices, broker] = self.read();
        let spent = |after: Option<f64>, before: Option<f64>| Some((after? - before?).max(0.0));
        RoundCpu {
            broker_in_process: self.broker_in_process,
            rocky: spent(rocky, before[0]).unwrap_or(0.0),
            devices: spent(devices, before[1]),
            broker: spent(broker, before[2]),
        }
    }
}

impl RockyRound {
    fn cpu_text(&self) -> String {
        let who = if self.cpu.broker_in_process { "Rocky and the embedded broker" } else { "Rocky" };
        let mut text = format!("; CPU: {who} {:.2} s", self.cpu.rocky);
        if let Some(devices) = self.cpu.devices {
            text += &format!(", devices {devices:.2} s");
        }
        if let Some(broker) = self.cpu.broker {
            text += &format!(", broker {broker:.2} s");
        }
        text
    }

    pub fn chunks_per_s(&self) -> f64 {
        self.chunks as f64 / self.wall.as_secs_f64()
    }

    pub fn line(&self) -> String {
        format!(
            "{} chunks in {:.2} s = {:.0} chunks/s, {:.1} MB/s; job p50 {:.0} ms, p99 {:.0} ms; {}/{} succeeded",
            self.chunks,
            self.wall.as_secs_f64(),
            self.chunks_per_s(),
            self.bytes as f64 / self.wall.as_secs_f64() / 1e6,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.succeeded,
            self.jobs
        ) + &self.cpu_text()
    }
}

/// One round against the fleet whose devices are named `{prefix}NN`.
pub async fn run_round(
    broker: &BrokerUrl,
    args: &BenchArgs,
    round: usize,
    prefix: &str,
    parties: Parties,
) -> anyhow::Result<RockyRound> {
    let mut config = RuntimeConfig::new(broker.clone());
    config.engine.max_active = args.devices.max(1);
    config.engine.done_timeout = Duration::from_secs(120);
    let runtime = Runtime::start(config, Arc::new(Library::new()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runtime.handle.status().await?.connection.is_connected() {
        if Instant::now() > deadline {
            bail!("Rocky did not connect to {broker}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let image = Image::new(format!("bench-{round}.bin"), rocky::sim::sample_image(args.size, round as u64));
    let chunk_size = ChunkSize::new(u64::from(args.chunk)).map_err(anyhow::Error::msg)?;
    let width = args.devices.to_string().len().max(2);
    let specs = (1..=args.devices)
        .map(|n| {
            let device = DeviceId::parse(&format!("{prefix}{n:0width$}")).context("device id")?;
            Ok(JobSpec { chunk_size: Some(chunk_size), ..JobSpec::new(device, image.clone()) })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cpu_before = parties.read();
    let started = Instant::now();
    runtime.handle.submit(specs).await?;
    let limit = Duration::from_secs(600);
    loop {
        let counts = runtime.handle.status().await?.counts;
        let open: usize = counts.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum();
        if open == 0 {
            break;
        }
        if started.elapsed() > limit {
            bail!("round {round} did not finish within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed();
    let cpu = parties.since(cpu_before);
    let jobs = runtime.handle.jobs(&JobFilter::default());
    runtime.shutdown().await;
    let mut durations: Vec<Duration> = jobs
        .iter()
        .filter_map(|j| {
            j.finished_at.map(|f| std::time::Duration::from_millis(f.saturating_sub(j.created_at)))
        })
        .collect();
    durations.sort();
    Ok(RockyRound {
        wall,
        chunks: jobs.iter().map(|j| u64::from(j.chunks_done)).sum(),
        bytes: jobs.iter().map(|j| j.bytes_sent).sum(),
        p50: percentile(&durations, 50.0),
        p99: percentile(&durations, 99.0),
        succeeded: jobs.iter().filter(|j| j.state == JobState::Succeeded).count(),
        jobs: jobs.len(),
        cpu,
    })
}
