//! Opening the job store for the commands that run the engine, with retention applied.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use rocky::config::Config;
use rocky::runtime::{Runtime, RuntimeConfig};
use rocky::store::Store;

/// Opens the store in `data_dir` (locking it), brings back its jobs and starts the runtime.
pub async fn start_runtime(
    config: &Config,
    runtime_config: RuntimeConfig,
    data_dir: &Path,
) -> anyhow::Result<Runtime> {
    let store = Store::open(data_dir)?;
    tracing::info!(db = %store.path().display(), "job store open");
    let runtime = Runtime::start_with_store(runtime_config, Arc::new(config.library()), store)
        .await
        .context("cannot read the job store")?;
    let (keep, max_age) = (config.store.keep(), config.store.max_age());
    if keep.is_some() || max_age.is_some() {
        // Retention now and then every hour.
        let handle = runtime.handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                every.tick().await;
                if handle.prune(keep, max_age).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(runtime)
}
