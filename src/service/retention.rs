//! Retention: finished jobs beyond `store.keep` or older than `store.keep_days` are forgotten
//! (from memory and the store) now and every hour after, and uploads no kept job names go with
//! them, and audit entries older than `store.keep_days` (their count is bounded as each is
//! written, by `store.keep_audit`). Whatever face runs the runtime (`rocky serve`, `rocky console`, `rocky demo`) starts it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{JobFilter, Service};

/// How often retention runs after the first time.
const EVERY: Duration = Duration::from_secs(3600);

impl Service {
    /// Runs retention now and every hour while the runtime lives; nothing when neither bound is
    /// set. `uploads` is the directory uploaded images are kept in.
    pub fn start_retention(&self, keep: Option<usize>, max_age: Option<Duration>, uploads: PathBuf) {
        if keep.is_none() && max_age.is_none() {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(EVERY);
            loop {
                every.tick().await;
                if service.handle.prune(keep, max_age).await.is_err() {
                    break;
                }
                if let Some(age) = max_age {
                    service.sweep_uploads(&uploads, age).await;
                    let now = service.clock().unix_ms(service.clock().now());
                    let cutoff = now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
                    service.handle.audit().prune(i64::try_from(cutoff).unwrap_or(i64::MAX)).await;
                }
            }
        });
    }

    /// Uploads older than `age` that no kept job names go the way of their jobs.
    async fn sweep_uploads(&self, dir: &Path, age: Duration) {
        let needed: HashSet<String> =
            self.jobs(&JobFilter::default()).iter().map(|job| job.image.name.to_string()).collect();
        let Some(cutoff) = SystemTime::now().checked_sub(age) else { return };
        let dir = dir.to_path_buf();
        let removed =
            tokio::task::spawn_blocking(move || crate::firmware::remove_stale_uploads(&dir, cutoff, &needed))
                .await;
        if let Ok(removed) = removed
            && !removed.is_empty()
        {
            tracing::info!(count = removed.len(), files = ?removed, "uploads no kept job names were removed");
        }
    }
}
