//! `rocky` / `rocky console`: the operator console on the configured broker, with the engine and
//! the HTTP API in the same process (jobs created over HTTP appear live).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::GlobalArgs;
use super::setup::{data_dir, load_config};
use rocky::config::Config;
use rocky::firmware::{Image, LoadLimits};

use super::api::{self, ApiSecurity};
use rocky::runtime::{Runtime, RuntimeConfig};
use rocky::service::Service;
use rocky::tui::console::{self, ConsoleOptions};
use rocky::tui::source::{Local, Remote};

#[derive(clap::Args, Debug, Default)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub flags: super::AllFlags,

    /// Attach to a running `rocky serve` (http://HOST:PORT) instead of running an engine here:
    /// its jobs, traffic and devices, live; jobs made here are created there.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The server's API token, read from this file (else http.token_file or ROCKY_HTTP_TOKEN).
    #[arg(long, value_name = "FILE", requires = "server")]
    pub token_file: Option<std::path::PathBuf>,
}

pub async fn run(global: &GlobalArgs, args: ConsoleArgs) -> anyhow::Result<()> {
    let config = load_config(global)?.config;
    let data_dir = data_dir(&config)?;
    if let Some(server) = args.server {
        return run_attached(&config, &data_dir, &server, args.token_file.as_deref()).await;
    }
    let runtime_config = super::setup::runtime_config(&config, global).await?;
    run_console(&config, runtime_config, &data_dir, Startup::default(), true).await
}

/// The console draws on a terminal and reads its keys: without one, say so before anything
/// starts (not "No such device or address" from deep inside).
pub fn require_terminal() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        Ok(())
    } else {
        anyhow::bail!(
            "the console needs a terminal (standard input and output are not one): run it in a terminal, \
             or use `rocky serve` to run headless"
        )
    }
}

/// The console attached to a server through its API: nothing runs here but the console.
async fn run_attached(
    config: &Config,
    data_dir: &Path,
    server: &str,
    token_file: Option<&Path>,
) -> anyhow::Result<()> {
    require_terminal()?;
    let token = match token_file {
        Some(path) => Some(rocky::mqtt::Secret::from_file("--token-file", path)?),
        None => rocky::config::http_token(config, |var| std::env::var(var).ok())?,
    };
    let remote = Remote::connect(server, token.as_ref()).map_err(anyhow::Error::msg)?;
    let (log_path, _log_guard) = super::setup::log_to_file(data_dir)?;
    let options = ConsoleOptions {
        broker_label: format!("server {}", remote.base()),
        insecure_tls: false,
        http: None,
        traffic_lines: config.console.traffic_lines,
        palette: config.console.palette,
        default_chunk: config.jobs.chunk_size,
        log_path: Some(log_path),
        // The operator's own files and URLs, read here and uploaded.
        limits: LoadLimits { url_allow: Vec::new(), say_why: true, ..config.load_limits() },
        startup: Vec::new(),
        on_quit: "They keep running on the server.".into(),
    };
    console::run(Arc::new(remote), options).await.context("console failed")
}

/// What the demo gives the console's runtime before the console opens.
#[derive(Default)]
pub struct Startup {
    /// Devices to register in the inventory, with their labels.
    pub register: Vec<(rocky::protocol::DeviceId, rocky::inventory::Labels)>,
    /// Images the rollouts name by hash, held in memory while the console runs.
    pub images: Vec<Image>,
    /// Rollouts to start once the console is up.
    pub rollouts: Vec<rocky::rollout::RolloutPlan>,
    /// A key Rocky signs `images` with (the demo's, made for the run and never written), and
    /// each image's version and security counter, in the order of `images`.
    pub signer: Option<(rocky::signing::SigningKey, Vec<(String, u64)>)>,
    /// A rollout started once the first of `rollouts` has ended.
    pub follow_up: Option<FollowUp>,
}

/// A rollout the demo starts once its first rollout has ended, to the devices whose status
/// then says they run `on` (SHA-256 hex): they receive it as patches from that image.
pub struct FollowUp {
    pub on: String,
    pub plan: Box<dyn FnOnce(Vec<rocky::protocol::DeviceId>) -> rocky::rollout::RolloutPlan + Send>,
}

/// How often the follow-up looks whether the rollout it waits for has ended.
const FOLLOW_UP_POLL: std::time::Duration = std::time::Duration::from_millis(500);

impl FollowUp {
    /// Waits for the rollout named `after` to end, then starts the follow-up's rollout.
    async fn run(self, service: Service, after: String) -> Result<(), String> {
        loop {
            let ended = service.rollouts(100).iter().any(|r| r.name == after && r.state.is_final());
            if ended {
                break;
            }
            tokio::time::sleep(FOLLOW_UP_POLL).await;
        }
        let query =
            rocky::inventory::DeviceQuery { running: Some(self.on), limit: usize::MAX, ..Default::default() };
        let devices = service.inventory().ids(&query);
        if devices.is_empty() {
            return Ok(());
        }
        let plan = (self.plan)(devices);
        service
            .start_planned_rollout(plan)
            .await
            .map(|_| ())
            .map_err(|e| format!("the demo's rollout did not start: {e}"))
    }
}

/// Starts the runtime (with the job store when `persistent`), the HTTP API (if its address is
/// free) and the console; returns when the operator quits. Logs go to `rocky.log` in the data
/// dir, never onto the screen.
pub async fn run_console(
    config: &Config,
    runtime_config: RuntimeConfig,
    data_dir: &Path,
    startup: Startup,
    persistent: bool,
) -> anyhow::Result<()> {
    require_terminal()?;
    let (log_path, _log_guard) = super::setup::log_to_file(data_dir)?;
    let firmware_dir = config.firmware_dir(data_dir);
    std::fs::create_dir_all(&firmware_dir)
        .with_context(|| format!("cannot create firmware directory {}", firmware_dir.display()))?;
    let broker_label = runtime_config.connection.url.to_string();
    let insecure_tls = runtime_config.connection.insecure_tls;
    let default_chunk = runtime_config.engine.chunk_size.get();
    let runtime = if persistent {
        let runtime = super::store::start_runtime(config, runtime_config, data_dir).await?;
        // Holding the data directory's lock: uploads left half-done by an earlier run go.
        rocky::firmware::remove_partials(&firmware_dir);
        runtime
    } else {
        let mut policy = config.signing_policy()?;
        if let Some((key, versions)) = &startup.signer {
            policy.signer = Some(key.clone());
            // Images the operator names in the form are signed like the demo's own.
            policy.default_seq = versions.iter().map(|(_, seq)| *seq).max().unwrap_or(0);
        }
        let library = rocky::firmware::Library::with_signing(config.firmware.cache_bytes, policy)
            .with_deltas(config.delta_policy()?);
        Runtime::start(runtime_config, Arc::new(library))
    };
    let service = Service::new(runtime.handle.clone());
    if !startup.register.is_empty() {
        service.inventory().register(startup.register).await.context("cannot register the devices")?;
    }
    // Held until the console quits, so the rollouts find the images by hash in memory.
    let _images: Vec<Image> = startup.images.into_iter().map(|i| service.library().intern(i)).collect();
    if let Some((_, versions)) = &startup.signer {
        for (image, (version, seq)) in _images.iter().zip(versions) {
            service.sign_image(image, Some(version.clone()), *seq, false)?;
        }
    }
    // The operator at the console may load from any URL; the size and time limits still hold.
    let limits = LoadLimits { url_allow: Vec::new(), say_why: true, ..config.load_limits() };
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = match config.listen() {
        Ok(addr) => match ApiSecurity::load(config, addr, false) {
            Err(e) => {
                tracing::warn!(%addr, error = %e, "HTTP API not started");
                Some(format!("off ({e})"))
            }
            Ok(security) => match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let shown = security.url(listener.local_addr().unwrap_or(addr));
                    let state = api::api_state(config, service.clone(), firmware_dir, addr);
                    tokio::spawn(api::serve(listener, state, security, async move {
                        let _ = http_stopped.await;
                    }));
                    Some(shown)
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "HTTP API not started");
                    Some(format!("off ({addr}: {e})"))
                }
            },
        },
        Err(e) => Some(format!("off ({}: {})", e.key, e.reason)),
    };
    let options = ConsoleOptions {
        broker_label,
        insecure_tls,
        http,
        traffic_lines: config.console.traffic_lines,
        palette: config.console.palette,
        default_chunk,
        log_path: Some(log_path),
        limits,
        startup: {
            let first = startup.rollouts.first().map(|plan| plan.name.clone());
            let mut work: Vec<console::Startup> = Vec::new();
            let plans = startup.rollouts;
            if !plans.is_empty() {
                let service = service.clone();
                // One after another once their devices are heard from, so they are numbered in
                // the order given.
                work.push(Box::pin(async move {
                    let devices: Vec<_> =
                        plans.iter().flat_map(|plan| plan.devices.iter().cloned()).collect();
                    statuses_heard(&service, &devices).await;
                    let mut first_error = None;
                    for plan in plans {
                        if let Err(e) = service.start_planned_rollout(plan).await {
                            first_error.get_or_insert(format!("the demo's rollout did not start: {e}"));
                        }
                    }
                    first_error.map_or(Ok(()), Err)
                }));
            }
            if let (Some(follow_up), Some(first)) = (startup.follow_up, first) {
                work.push(Box::pin(follow_up.run(service.clone(), first)));
            }
            work
        },
        on_quit: if persistent {
            "They are kept and go on when Rocky starts again.".into()
        } else {
            "The demo keeps nothing: they end with it.".into()
        },
    };
    let result = console::run(Arc::new(Local::new(service.acting_as(&console_actor()))), options).await;
    let _ = stop_http.send(());
    runtime.shutdown().await;
    result.context("console failed")
}

/// Who the audit says acted at an in-process console: `console:<user>@<host>`.
fn console_actor() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("console:{}@{}", user.trim(), host)
}

/// Waits, at most [`STATUS_WAIT`], until Rocky has heard the status of each of `devices` that
/// speaks its protocol. A job made before Rocky knows its device takes signed images only goes
/// without a manifest, and the device refuses it: the demo's canary did so in 2 of 7 starts
/// here, whose logs show the rollouts starting before Rocky had even connected to the broker
/// (so before the devices' retained statuses came in), and the staged rollout paused at its
/// first wave.
async fn statuses_heard(service: &Service, devices: &[rocky::protocol::DeviceId]) {
    let deadline = tokio::time::Instant::now() + STATUS_WAIT;
    let inventory = service.inventory();
    let unheard = |device: &rocky::protocol::DeviceId| {
        inventory.profile_of(device) == rocky::inventory::Profile::Rocky
            && inventory.running_of(device).and_then(|running| running.reported()).is_none()
    };
    while devices.iter().any(unheard) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// How long the demo's rollouts wait for their devices' statuses.
const STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
