//! The command line: one subcommand per file, sharing the set-up in `setup.rs`.

mod api;
mod api_client;
mod behavior_flags;
mod bench;
mod broker;
mod config;
mod console;
mod demo;
mod devices;
mod jobs;
mod rollout;
mod serve;
mod setup;
mod sim;
mod store;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "rocky", version, about = "Over-the-air firmware updates for IoT devices through MQTT")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every command understands; each overrides the config file and `ROCKY_*`.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Config file (default: the platform config dir's rocky.toml, if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// MQTT broker, e.g. mqtt://127.0.0.1:1883 (overrides mqtt.url).
    #[arg(long, global = true, value_name = "URL")]
    pub broker: Option<String>,
    /// HTTP API address, e.g. 127.0.0.1:7878 (overrides http.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    pub http: Option<String>,
    /// Where Rocky keeps its data (default: the platform data dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Do not verify the mqtts:// broker's certificate (encrypted but not authenticated; for
    /// a lab broker only). The console shows it in red and the log warns.
    #[arg(long, global = true)]
    pub insecure_tls: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Embedded broker, simulated fleet and the console, with a rollout started at once.
    Demo(demo::DemoArgs),
    /// The operator console on the configured broker (the default command), or attached to a
    /// running `rocky serve` with --server.
    Console(console::ConsoleArgs),
    /// Run the engine and the HTTP API headless, logging to stdout.
    Serve(serve::ServeArgs),
    /// Run simulated devices that speak the protocol and verify what they receive.
    Sim(sim::SimArgs),
    /// The device inventory of a running Rocky: list, show, label, import.
    Devices(devices::DevicesArgs),
    /// Staged rollouts on a running Rocky: create, list, show, pause, resume, cancel.
    Rollout(rollout::RolloutArgs),
    /// Run the embedded MQTT broker alone.
    Broker(broker::BrokerArgs),
    /// Print the effective configuration and where each value came from.
    Config,
    /// List the stored jobs (table or --json).
    Jobs(jobs::JobsArgs),
    /// Measure Rocky's throughput against the broker's raw QoS 1 throughput.
    Bench(bench::BenchArgs),
    /// Measure job creation and persistence with the job store on.
    BenchStore(bench::store_run::StoreBenchArgs),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Demo(args)) => demo::run(&cli.global, args).await,
        Some(Command::Console(args)) => console::run(&cli.global, args).await,
        None => console::run(&cli.global, console::ConsoleArgs::default()).await,
        Some(Command::Serve(args)) => serve::run(&cli.global, args).await,
        Some(Command::Sim(args)) => sim::run(&cli.global, args).await,
        Some(Command::Devices(args)) => devices::run(&cli.global, args).await,
        Some(Command::Rollout(args)) => rollout::run(&cli.global, args).await,
        Some(Command::Broker(args)) => broker::run(args).await,
        Some(Command::Config) => config::run(&cli.global),
        Some(Command::Jobs(args)) => jobs::run(&cli.global, args),
        Some(Command::Bench(args)) => bench::run(&cli.global, args).await,
        Some(Command::BenchStore(args)) => bench::store_run::run(args).await,
    }
}
