//! `rocky serve`: engine and HTTP API, headless, logging to stdout.

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::GlobalArgs;
use super::api::{self, ApiSecurity};
use super::setup::{LogFormat, data_dir, load_config, log_to_stdout, runtime_config, shutdown_signal};
use rocky::engine::Event;
use rocky::service::{Received, RuntimeEvent, Service};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub flags: super::AllFlags,

    /// Serve the API without a token on a non-loopback address (it is then open to anyone who
    /// can reach it).
    #[arg(long)]
    pub no_auth: bool,
    /// Log lines as text or as one JSON object per line (for log collectors).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormatArg {
    Text,
    Json,
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let _log_guard = log_to_stdout(match args.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    });
    let loaded = load_config(global)?;
    let config = loaded.config;
    super::heap_trim::start();
    let data_dir = data_dir(&config)?;
    let firmware_dir = config.firmware_dir(&data_dir);
    std::fs::create_dir_all(&firmware_dir)
        .with_context(|| format!("cannot create firmware directory {}", firmware_dir.display()))?;

    let runtime_config = runtime_config(&config, global).await?;
    let listen = config.listen().map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.reason))?;
    let security = ApiSecurity::load(&config, listen, args.no_auth)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen / --http)"))?;
    let broker = runtime_config.connection.url.clone();
    let client_id = runtime_config.connection.client_id.clone();
    let runtime = super::store::start_runtime(&config, runtime_config, &data_dir).await?;
    // Only now, holding the data directory's lock, is no other Rocky uploading here.
    let left = rocky::firmware::remove_partials(&firmware_dir);
    if left > 0 {
        tracing::info!(files = left, "removed unfinished uploads left by an earlier run");
    }
    let service = Service::new(runtime.handle.clone());
    // Traffic is logged at debug only: below it the log takes no chatter, and the driver
    // makes none while no console or /events client listens.
    let events = if tracing::enabled!(tracing::Level::DEBUG) {
        service.subscribe()
    } else {
        service.subscribe_quiet()
    };
    tokio::spawn(log_events(events));
    let state = api::api_state(&config, service, firmware_dir.clone(), listen);
    tracing::info!(
        api = %security.url(listener.local_addr().unwrap_or(listen)),
        token = security.token.is_some(),
        %broker,
        %client_id,
        firmware_dir = %firmware_dir.display(),
        "rocky serving"
    );
    api::serve(listener, state, security, shutdown_signal()).await?;
    tracing::info!("shutting down");
    runtime.shutdown().await;
    Ok(())
}

/// Job transitions at info; traffic at debug (`RUST_LOG=debug`). Connection changes are logged
/// by the runtime itself, once per new reason.
async fn log_events(mut events: rocky::service::EventStream) {
    // Ignored responses come from devices (or anyone posing as one): one line per device a minute.
    let mut ignored = rocky::runtime::LogLimiter::new(std::time::Duration::from_secs(60));
    while let Some(received) = events.recv().await {
        let envelope = match received {
            Received::Missed(n) => {
                tracing::warn!(missed = n, "log fell behind the event stream");
                continue;
            }
            Received::Event(envelope) => envelope,
        };
        match &envelope.event {
            // The rollout task logs its own changes, the driver its alerts.
            RuntimeEvent::Connection(_) | RuntimeEvent::Rollout(_) | RuntimeEvent::Alert(_) => {}
            RuntimeEvent::Engine(Event::Created(job)) => {
                tracing::info!(job = job.id.get(), device = %job.device, image = job.image.name(), "job created")
            }
            RuntimeEvent::Engine(Event::StateChanged { job, device, to, detail, .. }) => match detail {
                Some(detail) => tracing::info!(job = job.get(), %device, state = %to, %detail, "job"),
                None => tracing::info!(job = job.get(), %device, state = %to, "job"),
            },
            RuntimeEvent::Engine(Event::RequestRetried { job, device, attempt }) => {
                tracing::info!(job = job.get(), %device, attempt, "no answer: job offered again")
            }
            RuntimeEvent::Engine(Event::Ignored { device, job, command, reason }) => {
                if let Some(left_out) = ignored.allow(device.as_str(), std::time::Instant::now()) {
                    tracing::info!(job = job.get(), %device, %command, %reason, left_out, "response ignored");
                }
            }
            RuntimeEvent::Engine(Event::Note { job, device, text, .. }) => {
                tracing::info!(job = job.get(), %device, %text, "job")
            }
            RuntimeEvent::Engine(Event::ChunkSent { .. } | Event::Progress { .. }) => {}
            RuntimeEvent::Traffic(t) => tracing::debug!(text = %t.text, "traffic"),
        }
    }
}
