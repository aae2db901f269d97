//! Opening the job store for the commands that run the engine, with retention applied.

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
    };
    tracing::info!(db = %store.location(), "job store open");
    let runtime = Runtime::start_with_store(runtime_config, Arc::new(config.library()), store)
        .await
        .context("cannot read the job store")?;
    let (keep, max_age) = (config.store.keep(), config.store.max_age());
    if keep.is_some() || max_age.is_some() {
        // Retention now and then every hour.
        let handle = runtime.handle.clone();
        let uploads = config.firmware_dir(data_dir);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                every.tick().await;
                if handle.prune(keep, max_age).await.is_err() {
                    break;
                }
                if let Some(age) = max_age {
                    sweep_uploads(&handle, &uploads, age).await;
                }
            }
        });
    }
    Ok(runtime)
}

/// Uploads older than `store.keep_days` that no kept job names go the way of their jobs.
async fn sweep_uploads(handle: &rocky::runtime::Handle, dir: &Path, age: std::time::Duration) {
    let needed: std::collections::HashSet<String> =
        handle.jobs(&rocky::runtime::JobFilter::default()).iter().map(|job| job.image.name.clone()).collect();
    let Some(cutoff) = std::time::SystemTime::now().checked_sub(age) else { return };
    let dir = dir.to_path_buf();
    let removed =
        tokio::task::spawn_blocking(move || rocky::firmware::remove_stale_uploads(&dir, cutoff, &needed))
            .await;
    if let Ok(removed) = removed
        && !removed.is_empty()
    {
        tracing::info!(count = removed.len(), files = ?removed, "uploads no kept job names were removed");
    }
}
