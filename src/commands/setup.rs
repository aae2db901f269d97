//! Set-up shared by the commands: configuration with flags on top, directories, logging, and
//! waiting for Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::GlobalArgs;
use super::log_lines::CutLines;
use rocky::config::{self, Config, Loaded};

/// Loads the configuration with the global flags as the top layer.
pub fn load_config(global: &GlobalArgs) -> anyhow::Result<Loaded> {
    let mut flags = Vec::new();
    if let Some(url) = &global.broker {
        flags.push(("mqtt.url", "--broker", toml::Value::String(url.clone())));
    }
    if let Some(addr) = &global.http {
        flags.push(("http.listen", "--http", toml::Value::String(addr.clone())));
    }
    if let Some(dir) = &global.data_dir {
        flags.push(("store.data_dir", "--data-dir", toml::Value::String(dir.display().to_string())));
    }
    config::check_env_names(std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()))?;
    Ok(config::load(global.config.as_deref(), |var| std::env::var(var).ok(), &flags)?)
}

/// The runtime's settings with the broker connection's secrets and TLS files read: a missing
/// or unreadable file, or a broker host name that does not exist, stops the command here,
/// before anything connects.
pub async fn runtime_config(
    config: &Config,
    global: &GlobalArgs,
) -> anyhow::Result<rocky::runtime::RuntimeConfig> {
    let mut runtime_config =
        config.runtime_config().map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.reason))?;
    runtime_config.connection =
        config::broker_connection(config, |var| std::env::var(var).ok(), global.insecure_tls)?;
    rocky::mqtt::require_known_host(&runtime_config.connection.url).await?;
    Ok(runtime_config)
}

/// `store.data_dir` (set by `--data-dir`, `ROCKY_STORE_DATA_DIR` or the file), else the
/// platform data directory; created if missing.
pub fn data_dir(config: &Config) -> anyhow::Result<PathBuf> {
    let dir = Some(config.store.data_dir.trim())
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(config::default_data_dir)
        .context("no data directory: pass --data-dir (no home directory was found)")?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    Ok(dir)
}

/// How log lines look on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Log lines waiting for stdout at most. Every task of Rocky runs on one thread: a log line
/// written straight to a stdout nobody reads (a stopped pager, a full pipe, a stuck collector)
/// would stop every job with it. Lines are written from a thread of their own instead, and
/// past this many waiting (about 2 MB; at most about 41 MB, as each is cut to
/// [`super::log_lines::MAX_LOG_LINE_BYTES`]), new ones are dropped and counted
/// (`rocky_log_lines_dropped_total`).
pub const LOG_LINES_WAITING: usize = 10_000;

/// The stdout log's writer thread, until dropped: then what still waits is written, for at
/// most [`LOG_STOP_WAIT`]. tracing-appender's own guard would wait without end on a stdout
/// nobody reads (its fallback message goes to that same stdout), and Rocky would not stop.
pub struct StdoutLog(Option<tracing_appender::non_blocking::WorkerGuard>);

/// How long a stopping Rocky waits for its last log lines to be written.
const LOG_STOP_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

impl Drop for StdoutLog {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else { return };
        let (done, finished) = std::sync::mpsc::channel();
        let stopping = std::thread::Builder::new().name("rocky-log-stop".into()).spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
        if stopping.is_ok() {
            let _ = finished.recv_timeout(LOG_STOP_WAIT);
        }
    }
}

/// Logs to stdout from a thread of its own; `RUST_LOG` overrides the default filter. Hold what
/// it answers until the end.
pub fn log_to_stdout(format: LogFormat) -> StdoutLog {
    use std::io::IsTerminal;
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_WAITING)
        .lossy(true)
        .thread_name("rocky-log")
        .finish(std::io::stdout());
    rocky::metrics::count_dropped_log_lines(writer.error_counter());
    let writer = CutLines::new(writer, format == LogFormat::Json);
    let builder =
        tracing_subscriber::fmt().with_env_filter(log_filter()).with_target(false).with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
    };
    StdoutLog(Some(guard))
}

/// Logs to `rocky.log` in `dir` (the console's screen is not for logs); returns its path and
/// the guard that flushes it when dropped.
pub fn log_to_file(dir: &Path) -> anyhow::Result<(PathBuf, tracing_appender::non_blocking::WorkerGuard)> {
    let path = dir.join("rocky.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_ansi(false)
        .with_writer(CutLines::new(writer, false))
        .try_init();
    Ok((path, guard))
}

/// `RUST_LOG` if set, else Rocky at info and the MQTT libraries at warn.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttc=warn"))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
