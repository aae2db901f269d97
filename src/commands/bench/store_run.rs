//! `rocky bench-store`: N jobs created through the HTTP API and run against the embedded broker
//! with a small image, with the job store on: how fast jobs are created (each request commits
//! before it answers), how many timeline events per second reach the disk, and how big the
//! store grows.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::commands::output::say;
use rocky::broker::EmbeddedBroker;
use rocky::firmware::Library;
use rocky::http::{ApiState, serve};
use rocky::runtime::{Runtime, RuntimeConfig};
use rocky::store::Store;

#[derive(Args, Debug, Clone)]
pub struct StoreBenchArgs {
    /// Jobs to create.
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Simulated devices the jobs are spread over.
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// Jobs per POST /jobs request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Image size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
}

pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    if args.jobs == 0 || args.devices == 0 || args.batch == 0 || args.size == 0 {
        bail!("--jobs, --devices, --batch and --size must be at least 1");
    }
    if args.batch > args.devices {
        bail!("--batch must be at most --devices: one request names each device once");
    }
    let data = std::env::temp_dir().join(format!("rocky-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let broker = tokio::task::spawn_blocking(|| EmbeddedBroker::start(None)).await??;
    let mut fleet = super::start_fleet_named(&broker.url(), args.devices, "dev-", &[]).await?;

    let store = Store::open(&data)?;
    let mut config = RuntimeConfig::new(broker.url());
    config.engine.max_active = args.devices;
    let runtime = Runtime::start_with_store(config, std::sync::Arc::new(Library::new()), store).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = ApiState::new(runtime.handle.clone(), data.join("uploads"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !runtime.handle.status().await?.connection.is_connected() {
        if Instant::now() > deadline {
            bail!("Rocky did not connect to the embedded broker");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let client = reqwest::Client::new();
    // Job i goes to device i mod D as that device's generation i / D, each generation an image
    // of its own: a device asked for the image it already runs answers at once (up to date,
    // nothing sent), which would time nothing but the store.
    let generations = args.jobs.div_ceil(args.devices);
    for generation in 0..generations {
        let image: Vec<u8> = (0..args.size).map(|i| ((i * 31 + generation) % 251) as u8).collect();
        let upload =
            client.post(format!("{base}/firmware?name=bench-{generation}.bin")).body(image).send().await?;
        if !upload.status().is_success() {
            bail!("upload failed: {}", upload.text().await.unwrap_or_default());
        }
    }
    let width = args.devices.to_string().len().max(2);
    let started = Instant::now();
    let mut created = 0usize;
    while created < args.jobs {
        // A request stays within one generation (it names one image).
        let generation = created / args.devices;
        let n = args.batch.min(args.jobs - created).min(args.devices - created % args.devices);
        let devices: Vec<String> =
            (created..created + n).map(|i| format!("dev-{:0width$}", i % args.devices + 1)).collect();
        let path = format!("bench-{generation}.bin");
        let response = client
            .post(format!("{base}/jobs"))
            .header("content-type", "application/json")
            .body(json!({"device_ids": devices, "firmware": {"path": path}}).to_string())
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("POST /jobs failed: {}", response.text().await.unwrap_or_default());
        }
        created += n;
    }
    let create_time = started.elapsed();
    let limit = Duration::from_secs(1200);
    loop {
        let counts = runtime.handle.status().await?.counts;
        if counts.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum::<usize>() == 0 {
            break;
        }
        if started.elapsed() > limit {
            bail!("the jobs did not finish within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    runtime.shutdown().await; // flushes everything left and waits for the commit
    let total_time = started.elapsed();
    let _ = fleet.start_kill();
    let _ = fleet.wait().await;

    let conn = rocky::store::open_read_only(&data)?;
    let events: i64 =
        conn.query_row("SELECT count(*) FROM job_events", [], |r| r.get(0)).context("count events")?;
    let succeeded: i64 = conn
        .query_row("SELECT count(*) FROM jobs WHERE state = 'succeeded'", [], |r| r.get(0))
        .context("count jobs")?;
    drop(conn);
    let size: u64 = ["rocky.db", "rocky.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let summary: Value = json!({
        "jobs": args.jobs,
        "succeeded": succeeded,
        "create_seconds": create_time.as_secs_f64(),
        "jobs_created_per_s": args.jobs as f64 / create_time.as_secs_f64(),
        "run_seconds": total_time.as_secs_f64(),
        "events_persisted": events,
        "events_persisted_per_s": events as f64 / total_time.as_secs_f64(),
        "store_bytes": size,
    });
    say!(
        "rocky bench-store: {} jobs (up to {} per request, {} devices, {} B images) through the API, store on\n  \
         created in {:.2} s = {:.0} jobs/s (each request committed before its 201)\n  \
         all ended in {:.2} s: {} of {} succeeded; {} timeline events persisted = {:.0} events/s\n  \
         store size {:.1} MiB ({:.0} bytes per job)",
        args.jobs,
        args.batch,
        args.devices,
        args.size,
        create_time.as_secs_f64(),
        args.jobs as f64 / create_time.as_secs_f64(),
        total_time.as_secs_f64(),
        succeeded,
        args.jobs,
        events,
        events as f64 / total_time.as_secs_f64(),
        size as f64 / (1024.0 * 1024.0),
        size as f64 / args.jobs as f64
    );
    say!("{summary}");
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
