//! `rocky broker`: the embedded MQTT broker on its own, for trying Rocky against real devices.

use clap::Args;

use super::setup::{log_to_stdout, shutdown_signal};
use rocky::broker::EmbeddedBroker;

#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// Port on 127.0.0.1 (default 1883).
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
}

pub async fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let _log_guard = log_to_stdout(super::setup::LogFormat::Text);
    let broker = tokio::task::spawn_blocking(move || EmbeddedBroker::start(Some(args.port))).await??;
    println!("embedded MQTT broker listening on {} (Ctrl-C to stop)", broker.url());
    shutdown_signal().await;
    Ok(())
}
