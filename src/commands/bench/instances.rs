//! `rocky bench --instances 1,2,3`: the same round run by one, two and three Rocky instances
//! sharing a PostgreSQL store (a scratch database each round), the devices divided between
//! them. All instances run in this process, on its async worker (one unless
//! `TOKIO_WORKER_THREADS` says otherwise), so the figure says what sharing costs (every
//! instance hears every response and ignores the others'), not what more machines would add.
//!
//! `rocky bench --ignored RATE`: what it costs one instance to ignore RATE responses a second
//! for jobs it does not drive, which is what each instance pays for the others' devices.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::BenchArgs;
use super::proc_stats::{cpu_seconds_of, own_cpu_seconds};
use super::stats::median;
use crate::commands::output::say;
use rocky::engine::{JobSpec, JobState};
use rocky::firmware::{ChunkSize, Image, Library};
use rocky::protocol::{DeviceId, Response, ResponseBody, Topics, encode_response};
use rocky::runtime::{BrokerUrl, Runtime, RuntimeConfig};
use rocky::store::{ScratchDatabase, Store};

/// One round: `instances` instances on one fresh database, `args.devices` jobs divided between
/// them round-robin, timed from the first submission to the last verdict.
/// `image` numbers the round's image: a new one for every round of every count.
async fn round(
    broker: &BrokerUrl,
    args: &BenchArgs,
    instances: usize,
    round: usize,
    image: u64,
) -> anyhow::Result<Duration> {
    let admin = args.postgres.clone().unwrap_or_else(ScratchDatabase::admin_url);
    let db = ScratchDatabase::create(&admin, "bench").await.context("cannot create a scratch database")?;
    let dirs: Vec<std::path::PathBuf> = (0..instances)
        .map(|at| {
            std::env::temp_dir().join(format!("rocky-bench-instance-{}-{round}-{at}", std::process::id()))
        })
        .collect();
    let library = Arc::new(Library::new());
    let mut runtimes = Vec::new();
    for (at, dir) in dirs.iter().enumerate() {
        let mut config = RuntimeConfig::new(broker.clone());
        config.engine.max_active = args.devices.max(1);
        config.engine.done_timeout = Duration::from_secs(120);
        let instance = format!("bench-{round}-{at}");
        config.connection.client_id = instance.clone();
        let _ = std::fs::remove_dir_all(dir);
        let store = Store::open_postgres(db.settings(), dir, &instance, Duration::from_secs(15)).await?;
        runtimes.push(Runtime::start_with_store(config, library.clone(), store).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for runtime in &runtimes {
        while !runtime.handle.status().await?.connection.is_connected() {
            if Instant::now() > deadline {
                bail!("an instance did not connect to {broker}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // An image of this round and count alone: the fleet keeps what each round installed, and a
    // device asked for the image it already runs answers at once (up to date, nothing sent).
    let image = Image::new(format!("bench-{image}.bin"), rocky::sim::sample_image(args.size, image));
    let chunk_size = ChunkSize::new(u64::from(args.chunk)).map_err(anyhow::Error::msg)?;
    let width = args.devices.to_string().len().max(2);
    let mut shares: Vec<Vec<JobSpec>> = vec![Vec::new(); instances];
    for n in 1..=args.devices {
        let device = DeviceId::parse(&format!("bench-{n:0width$}")).context("device id")?;
        let spec = JobSpec { chunk_size: Some(chunk_size), ..JobSpec::new(device, image.clone()) };
        shares[n % instances].push(spec);
    }
    let started = Instant::now();
    let submits = runtimes.iter().zip(shares).map(|(runtime, specs)| runtime.handle.submit(specs));
    for submitted in futures_util::future::join_all(submits).await {
        submitted?;
    }
    let limit = Duration::from_secs(600);
    loop {
        let mut open = 0;
        let mut failed = 0;
        let mut up_to_date = 0;
        for runtime in &runtimes {
            let counts = runtime.handle.status().await?.counts;
            open += counts.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum::<usize>();
            failed += counts.iter().filter(|(s, _)| s.is_failure()).map(|(_, n)| n).sum::<usize>();
            up_to_date += counts.get(&JobState::UpToDate).copied().unwrap_or(0);
        }
        if open == 0 {
            if failed > 0 {
                bail!("{failed} jobs did not succeed with {instances} instances");
            }
            if up_to_date > 0 {
                bail!("{up_to_date} devices already ran the round's image: nothing was sent to them");
            }
            break;
        }
        if started.elapsed() > limit {
            bail!("the round did not finish within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed();
    for runtime in runtimes {
        runtime.shutdown().await;
    }
    for dir in &dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(wall)
}

/// Rounds for each count of instances, medians, and each count's rate against one instance's.
pub async fn compare(broker: &BrokerUrl, args: &BenchArgs, counts: &[usize]) -> anyhow::Result<()> {
    let chunks = (args.devices * args.size.div_ceil(args.chunk as usize)) as f64;
    let mut medians = Vec::new();
    // Rounds alternate between the counts, so each sees the same machine.
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    let mut images = 0u64;
    for r in 1..=args.rounds {
        for (at, &n) in counts.iter().enumerate() {
            images += 1;
            let wall = round(broker, args, n, r, images).await?;
            say!(
                "  {n} instance(s), round {r}: {:.2} s = {:.0} chunks/s",
                wall.as_secs_f64(),
                chunks / wall.as_secs_f64()
            );
            walls[at].push(wall.as_secs_f64());
        }
    }
    for (at, &n) in counts.iter().enumerate() {
        let wall = median(walls[at].clone());
        medians.push(chunks / wall);
        say!("median {n} instance(s): {:.2} s, {:.0} chunks/s", wall, chunks / wall);
    }
    if let Some(one) = counts.iter().position(|&n| n == 1) {
        for (at, &n) in counts.iter().enumerate().filter(|(_, n)| **n != 1) {
            say!("ratio {n} instances / 1 instance: {:.2}", medians[at] / medians[one]);
        }
    }
    Ok(())
}

/// Publishes `rate` FOTA_REQUEST_ACKs a second for a job nobody has, spread over 1,000
/// devices, for `seconds`; returns how many were sent.
async fn publish_strays(broker: &BrokerUrl, rate: u32, seconds: f64) -> anyhow::Result<u64> {
    let mut options =
        rumqttc::MqttOptions::new(format!("bench-strays-{}", std::process::id()), &broker.host, broker.port);
    options.set_keep_alive(Duration::from_secs(30)).set_inflight(1000);
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10_000);
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let topics = Topics::default();
    let frame = encode_response(&Response {
        job_id: 3_999_999_999,
        body: ResponseBody::RequestAck { next_chunk: None, window: None },
    });
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..per_tick {
            let device = DeviceId::parse(&format!("stray-{:03}", sent % 1000)).context("device id")?;
            client.publish(topics.cmd_resp(&device), rumqttc::QoS::AtLeastOnce, false, frame.clone()).await?;
            sent += 1;
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
    Ok(sent)
}

/// The cost of ignoring `rate` responses a second: this process's CPU and the broker's, with
/// and without an instance subscribed, measured in one run.
pub async fn ignored(
    broker: &BrokerUrl,
    broker_pid: Option<u32>,
    rate: u32,
    seconds: f64,
) -> anyhow::Result<()> {
    let measure = |label: &'static str| async move {
        let broker_cpu = || broker_pid.and_then(cpu_seconds_of).unwrap_or(f64::NAN);
        let (own, theirs) = (own_cpu_seconds(), broker_cpu());
        let sent = publish_strays(broker, rate, seconds).await?;
        let own = (own_cpu_seconds() - own) / seconds;
        let theirs = (broker_cpu() - theirs) / seconds;
        say!(
            "  {label}: {sent} responses in {seconds:.0} s; this process {:.1}% of a core, broker {:.1}%",
            own * 100.0,
            theirs * 100.0
        );
        anyhow::Ok((own, theirs))
    };
    let (alone, broker_alone) = measure("publisher alone").await?;
    let runtime = Runtime::start(RuntimeConfig::new(broker.clone()), Arc::new(Library::new()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runtime.handle.status().await?.connection.is_connected() {
        if Instant::now() > deadline {
            bail!("Rocky did not connect to {broker}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = runtime.handle.metrics().clone();
    let (with, broker_with) = measure("with one instance subscribed").await?;
    // The last responses may still be on their way: wait a moment for the count to settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counted = metrics.ignored_total();
    runtime.shutdown().await;
    say!(
        "ignoring {rate} responses/s costs the instance {:.1}% of one core and the broker {:.1}% more ({counted} \
         responses ignored by the instance)",
        (with - alone) * 100.0,
        (broker_with - broker_alone) * 100.0,
    );
    Ok(())
}
