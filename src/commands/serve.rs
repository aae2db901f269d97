//! `rocky serve`: engine and HTTP API, headless, logging to stdout.

use anyhow::Context;

use super::GlobalArgs;
use super::setup::{data_dir, load_config, log_to_stdout, shutdown_signal};
use rocky::engine::Event;
use rocky::firmware::LoadLimits;
use rocky::http::{ApiState, serve};
use rocky::runtime::{Received, RuntimeEvent};

pub async fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    log_to_stdout();
    let loaded = load_config(global)?;
    let config = loaded.config;
    let data_dir = data_dir(&config)?;
    let firmware_dir = config.firmware_dir(&data_dir);
    std::fs::create_dir_all(&firmware_dir)
        .with_context(|| format!("cannot create firmware directory {}", firmware_dir.display()))?;
    let runtime_config = config.runtime_config().map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.reason))?;
    let listen = config.listen().map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.reason))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen / --http)"))?;
    let broker = runtime_config.broker.clone();
    let runtime = super::store::start_runtime(&config, runtime_config, &data_dir).await?;
    tokio::spawn(log_events(runtime.handle.subscribe()));
    let state = ApiState {
        handle: runtime.handle.clone(),
        firmware_dir: firmware_dir.clone(),
        limits: LoadLimits { max_bytes: config.http.max_image_bytes, ..LoadLimits::default() },
    };
    tracing::info!(
        http = %listener.local_addr().unwrap_or(listen),
        %broker,
        firmware_dir = %firmware_dir.display(),
        "rocky serving"
    );
    serve(listener, state, shutdown_signal()).await.context("HTTP server failed")?;
    tracing::info!("shutting down");
    runtime.shutdown().await;
    Ok(())
}

/// Job transitions and connection changes at info; traffic at debug (`RUST_LOG=debug`).
async fn log_events(mut events: rocky::runtime::EventStream) {
    while let Some(received) = events.recv().await {
        let envelope = match received {
            Received::Missed(n) => {
                tracing::warn!(missed = n, "log fell behind the event stream");
                continue;
            }
            Received::Event(envelope) => envelope,
        };
        match &envelope.event {
            RuntimeEvent::Connection(state) => tracing::info!(state = %state.label(), "broker"),
            RuntimeEvent::Engine(Event::Created(job)) => {
                tracing::info!(job = job.id, device = %job.device, image = job.image.name(), "job created")
            }
            RuntimeEvent::Engine(Event::StateChanged { job, device, to, detail, .. }) => match detail {
                Some(detail) => tracing::info!(job, %device, state = %to, %detail, "job"),
                None => tracing::info!(job, %device, state = %to, "job"),
            },
            RuntimeEvent::Engine(Event::RequestRetried { job, device, attempt }) => {
                tracing::info!(job, %device, attempt, "FOTA_REQUEST re-sent")
            }
            RuntimeEvent::Engine(Event::Ignored { device, job, command, reason }) => {
                tracing::info!(job, %device, %command, %reason, "response ignored")
            }
            RuntimeEvent::Engine(Event::ChunkSent { .. }) => {}
            RuntimeEvent::Traffic(t) => tracing::debug!(text = %t.text, "traffic"),
        }
    }
}
