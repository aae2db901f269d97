//! The command line: one subcommand per file, sharing the set-up in `setup.rs`.

mod api;
mod api_client;
mod audit;
mod behavior_flags;
mod bench;
mod broker;
mod config;
mod console;
mod demo;
mod devices;
mod heap_trim;
mod job;
mod jobs;
mod keys;
mod log_lines;
pub(crate) mod output;
mod rollout;
mod rollout_watch;
mod serve;
mod setup;
mod sign;
mod sim;
mod store;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "rocky", version, about = "Over-the-air firmware updates for IoT devices through MQTT")]
pub struct Cli {
    /// For `rocky` alone (the console); each command takes the ones it uses too.
    #[command(flatten)]
    pub flags: AllFlags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The flags a command was given that override the config file and `ROCKY_*`. Each command
/// takes only the groups it uses (below), so its `--help` lists no flag it would ignore.
#[derive(Debug, Clone, Default)]
pub struct GlobalArgs {
    pub config: Option<PathBuf>,
    pub broker: Option<String>,
    pub http: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub insecure_tls: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ConfigFlag {
    /// Config file (default: the platform config dir's rocky.toml, if present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `--config` for a command with subcommands of its own: it may come after them too.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigFlagAnywhere {
    /// Config file (default: the platform config dir's rocky.toml, if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DataDirFlag {
    /// Where Rocky keeps its data (default: the platform data dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct BrokerFlags {
    /// MQTT broker, e.g. mqtt://127.0.0.1:1883 (overrides mqtt.url).
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Do not verify the mqtts:// broker's certificate (encrypted but not authenticated; for
    /// a lab broker only). The console shows it in red and the log warns.
    #[arg(long)]
    pub insecure_tls: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct HttpFlag {
    /// HTTP API address, e.g. 127.0.0.1:7878 (overrides http.listen).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
}

impl GlobalArgs {
    fn config(mut self, flag: &Option<PathBuf>) -> Self {
        if flag.is_some() {
            self.config.clone_from(flag);
        }
        self
    }

    fn data_dir(mut self, flag: &DataDirFlag) -> Self {
        if flag.data_dir.is_some() {
            self.data_dir.clone_from(&flag.data_dir);
        }
        self
    }

    fn broker(mut self, flags: &BrokerFlags) -> Self {
        if flags.broker.is_some() {
            self.broker.clone_from(&flags.broker);
        }
        self.insecure_tls |= flags.insecure_tls;
        self
    }

    fn http(mut self, flag: &HttpFlag) -> Self {
        if flag.http.is_some() {
            self.http.clone_from(&flag.http);
        }
        self
    }
}

/// Every group: for the commands that run an engine (console, serve) and `rocky config`,
/// which shows their effect.
#[derive(Args, Debug, Clone, Default)]
pub struct AllFlags {
    #[command(flatten)]
    pub config: ConfigFlag,
    #[command(flatten)]
    pub data_dir: DataDirFlag,
    #[command(flatten)]
    pub broker: BrokerFlags,
    #[command(flatten)]
    pub http: HttpFlag,
}

impl AllFlags {
    /// `global` with these flags over it.
    fn over(&self, global: GlobalArgs) -> GlobalArgs {
        global.config(&self.config.config).data_dir(&self.data_dir).broker(&self.broker).http(&self.http)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Embedded broker, simulated fleet and the console, with two rollouts started at once.
    Demo(demo::DemoArgs),
    /// The operator console on the configured broker (the default command), or attached to a
    /// running `rocky serve` with --server.
    Console(console::ConsoleArgs),
    /// Run the engine and the HTTP API headless, logging to stdout.
    Serve(serve::ServeArgs),
    /// Run simulated devices that speak the protocol and verify what they receive.
    Sim(Box<sim::SimArgs>),
    /// The device inventory of a running Rocky: list, show, label, import.
    Devices(devices::DevicesArgs),
    /// Staged rollouts on a running Rocky: create, list, show, pause, resume, cancel.
    Rollout(rollout::RolloutArgs),
    /// Who changed what on a running Rocky, oldest first (filters: --since, --actor, --target).
    Audit(audit::AuditArgs),
    /// Run the embedded MQTT broker alone.
    Broker(broker::BrokerArgs),
    /// Print the effective configuration and where each value came from.
    Config(AllFlags),
    /// List the jobs (table or --json): stored here, or on a running Rocky with --server.
    Jobs(jobs::JobsArgs),
    /// Single jobs on a running Rocky, through its API: create, show, cancel.
    Job(job::JobArgs),
    /// Signing keys for manifests: generate one, show a key's public half.
    Keys(keys::KeysArgs),
    /// Sign an image offline: writes IMAGE.cose (--format aws: IMAGE.sig-sha256-ecdsa), which uploads attach.
    Sign(sign::SignArgs),
    /// Measure Rocky's throughput against the broker's raw QoS 1 throughput.
    Bench(bench::BenchArgs),
    /// Measure job creation and persistence with the job store on.
    BenchStore(bench::store_run::StoreBenchArgs),
}

impl Command {
    /// Commands that print a result and end: when their output is piped into `head` and the
    /// pipe closes, they end quietly as Unix tools do (SIGPIPE), instead of panicking on the
    /// failed write. The long-running commands keep ignoring SIGPIPE, so a closed socket is an
    /// error they handle.
    pub fn prints_and_ends(command: Option<&Self>) -> bool {
        matches!(
            command,
            Some(
                Self::Devices(_)
                    | Self::Rollout(_)
                    | Self::Audit(_)
                    | Self::Config(_)
                    | Self::Jobs(_)
                    | Self::Job(_)
                    | Self::BenchStore(_)
                    | Self::Keys(_)
                    | Self::Sign(_)
            )
        )
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // The flags before the command, then the command's own (which win).
    let top = cli.flags.over(GlobalArgs::default());
    match cli.command {
        Some(Command::Demo(args)) => {
            let global = top.config(&args.config.config).data_dir(&args.data_dir).http(&args.http);
            demo::run(&global, args).await
        }
        Some(Command::Console(args)) => console::run(&args.flags.over(top), args).await,
        None => console::run(&top, console::ConsoleArgs::default()).await,
        Some(Command::Serve(args)) => serve::run(&args.flags.over(top), args).await,
        Some(Command::Sim(args)) => {
            let global = top.config(&args.config.config).broker(&args.broker);
            sim::run(&global, *args).await
        }
        Some(Command::Devices(args)) => devices::run(&top.config(&args.config.config), args).await,
        Some(Command::Rollout(args)) => rollout::run(&top.config(&args.config.config), args).await,
        Some(Command::Audit(args)) => audit::run(&top.config(&args.config.config), args).await,
        Some(Command::Broker(args)) => broker::run(args).await,
        Some(Command::Config(flags)) => config::run(&flags.over(top)),
        Some(Command::Job(args)) => job::run(&top.config(&args.config.config), args).await,
        Some(Command::Jobs(args)) => {
            let global = top.config(&args.config.config).data_dir(&args.data_dir);
            jobs::run(&global, args).await
        }
        Some(Command::Bench(args)) => {
            let global = top.broker(&args.broker);
            bench::run(&global, args).await
        }
        Some(Command::BenchStore(args)) => bench::store_run::run(args).await,
        Some(Command::Keys(args)) => keys::run(args),
        Some(Command::Sign(args)) => sign::run(args),
    }
}
