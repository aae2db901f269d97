//! Opening the job store for the commands that run the engine, with retention and the
//! notifications (`[[notify]]`) started.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use rocky::config::Config;
use rocky::runtime::{Runtime, RuntimeConfig};
use rocky::store::Store;

/// Opens the store (PostgreSQL when `store.url` is set, else SQLite in `data_dir`), locking the
/// data directory, brings back its jobs and starts the runtime.
pub async fn start_runtime(
    config: &Config,
    runtime_config: RuntimeConfig,
    data_dir: &Path,
) -> anyhow::Result<Runtime> {
    let store = match rocky::config::postgres_settings(config, |var| std::env::var(var).ok())? {
        Some(settings) => {
            let instance = runtime_config.connection.client_id.clone();
            Store::open_postgres(&settings, data_dir, &instance, config.store.lease()).await?
        }
        None => Store::open(data_dir)?,
    }
    .with_audit_keep(config.store.keep_audit);
    tracing::info!(db = %store.location(), "job store open");
    let runtime = Runtime::start_with_store(runtime_config, Arc::new(config.library()?), store)
        .await
        .context("cannot read the job store")?;
    let service = rocky::service::Service::new(runtime.handle.clone());
    service.start_retention(config.store.keep(), config.store.max_age(), config.firmware_dir(data_dir));
    if let Err(e) = rocky::notify::start(&service, &config.notify, rocky::notify::RetryPolicy::default()) {
        runtime.shutdown().await;
        anyhow::bail!("{e}");
    }
    Ok(runtime)
}
