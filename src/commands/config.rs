//! `rocky config`: the effective configuration, value by value, with its source.

use super::GlobalArgs;
use super::setup::load_config;

pub fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    let loaded = load_config(global)?;
    print!("{}", loaded.render());
    Ok(())
}
