//! `rocky config`: the effective configuration, value by value, with its source. Secrets are
//! described (`(set, from ROCKY_MQTT_PASSWORD)`), never shown.

use super::GlobalArgs;
use super::setup::load_config;
use rocky::config::describe_secrets;

pub fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    let loaded = load_config(global)?;
    print!("{}", loaded.render());
    println!("\n# secrets (never printed)");
    for (name, shown) in describe_secrets(&loaded.config, |var| std::env::var(var).ok()) {
        println!("# {name}: {shown}");
    }
    if loaded.config.mqtt.client_id.is_empty() {
        println!("# mqtt.client_id is empty: each process connects as rocky-<host>-<random>");
    }
    Ok(())
}
