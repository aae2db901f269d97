//! The one interface both databases offer the store: SQLite in the data directory (the embedded
//! default) and PostgreSQL (`store.url`, shared by several Rocky instances). The writer thread
//! owns one [`Backend`] and calls it in order, each call one transaction; reads go through
//! [`Reads`], which each backend serves from its own connections.

use std::collections::{BTreeSet, HashSet};

use super::{HistoryRecord, JobSnapshot, NewJob, RolloutRow, StoreError, WriteError};
use crate::engine::{JobId, RolloutId};
use crate::inventory::{Device, Labels};
use crate::protocol::DeviceId;

/// Everything one flush writes, in one transaction.
pub(crate) struct Changes<'a> {
    pub jobs: &'a [JobSnapshot],
    pub history: &'a [HistoryRecord],
    pub deletes: &'a BTreeSet<JobId>,
    /// What the wire told of devices.
    pub devices: &'a [Device],
}

/// The writes, each one transaction: all of it or none. Called from the writer thread only.
pub(crate) trait Backend: Send + 'static {
    /// Inserts new jobs (their images already saved) with their first timeline entry, durably
    /// before it returns: the API's `201` promises them. A backend shared by several instances
    /// gives each job an id of its own in place of the one asked for; an id already stored
    /// refuses the whole submission with [`WriteError::Duplicate`].
    fn create(&mut self, jobs: &mut [NewJob]) -> Result<(), WriteError>;
    /// Job changes, timeline entries, deletions and the wire's device news.
    fn flush(&mut self, changes: &Changes<'_>) -> Result<(), WriteError>;
    /// Registers devices with their labels (the operator's columns only), durably.
    fn register_devices(&mut self, rows: &[(DeviceId, Labels)]) -> Result<(), WriteError>;
    fn forget_device(&mut self, id: &DeviceId) -> Result<(), WriteError>;
    /// Rollout heads and the devices that changed, durably.
    fn save_rollouts(&mut self, rows: &[RolloutRow]) -> Result<(), WriteError>;
    fn forget_rollouts(&mut self, ids: &[RolloutId]) -> Result<(), WriteError>;
    /// The SHA-256 (hex) of every image a stored job or an open rollout still needs.
    fn images_needed(&mut self) -> Result<HashSet<String>, WriteError>;
    /// One audit entry, durably before it returns, keeping at most `keep` (the newest).
    fn audit(&mut self, entry: &crate::audit::NewEntry, keep: u64) -> Result<(), WriteError>;
    /// Removes audit entries older than `before` (Unix ms).
    fn prune_audit(&mut self, before: i64) -> Result<(), WriteError>;
}

/// The reads, served without waiting for the writer.
#[derive(Clone)]
pub(crate) enum Reads {
    Sqlite(super::sqlite::Reader),
    Postgres(super::postgres::Reader),
}

impl Reads {
    /// Every job, oldest first, and the highest id ever given.
    pub async fn jobs(&self) -> Result<(Vec<JobSnapshot>, JobId), StoreError> {
        match self {
            Self::Sqlite(r) => r.run(super::sqlite::reader::load).await,
            Self::Postgres(r) => r.jobs().await,
        }
    }

    /// A job's stored timeline, oldest first.
    pub async fn history(&self, id: JobId) -> Result<Vec<HistoryRecord>, StoreError> {
        match self {
            Self::Sqlite(r) => r.run(move |conn| super::sqlite::reader::history(conn, id)).await,
            Self::Postgres(r) => r.history(id).await,
        }
    }

    /// Every device in the inventory, by id.
    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        match self {
            Self::Sqlite(r) => r.run(super::sqlite::devices::load).await,
            Self::Postgres(r) => r.devices().await,
        }
    }

    /// Hands the devices to `batch` a few thousand at a time, by id: with `whole` every one,
    /// else those changed since the last read of them. SQLite, which one instance alone uses,
    /// does not say what changed: every device is read, in one batch.
    pub async fn devices_in_batches(
        &self,
        whole: bool,
        mut batch: impl FnMut(Vec<Device>) + Send,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(_) => {
                batch(self.devices().await?);
                Ok(())
            }
            Self::Postgres(r) => r.devices_in_batches(whole, batch).await,
        }
    }

    /// The rollouts saved since `known`, and every stored rollout's save number. SQLite, which
    /// one instance alone uses, numbers no saves: every rollout is read.
    pub async fn rollouts_saved_since(
        &self,
        known: &std::collections::HashMap<RolloutId, i64>,
    ) -> Result<super::StoredRollouts, StoreError> {
        match self {
            Self::Sqlite(r) => {
                let read = r.run(super::sqlite::rollouts::load).await?;
                let saves = read.iter().map(|rollout| (rollout.id, None)).collect();
                Ok(super::StoredRollouts { saves, read, unreadable: Vec::new() })
            }
            Self::Postgres(r) => r.rollouts_saved_since(known).await,
        }
    }

    /// The audit entries `query` matches, by id, at most `query.limit`.
    pub async fn audit(&self, query: crate::audit::Query) -> Result<Vec<crate::audit::Entry>, StoreError> {
        match self {
            Self::Sqlite(r) => r.run(move |conn| super::sqlite::audit::read(conn, &query)).await,
            Self::Postgres(r) => r.audit(&query).await,
        }
    }

    /// Every job a rollout created, as (job, device), by job id.
    pub async fn rollout_jobs(&self, rollout: RolloutId) -> Result<Vec<(JobId, String)>, StoreError> {
        match self {
            Self::Sqlite(r) => r.run(move |conn| super::sqlite::rollouts::jobs(conn, rollout)).await,
            Self::Postgres(r) => r.rollout_jobs(rollout).await,
        }
    }
}

/// A job row's manifest column read back. Rocky wrote and verified these bytes; a row whose
/// bytes no longer decode (edited by hand) is read as unsigned and said once in the log, and the
/// manifest rule then refuses to send it to a device that asks for manifests.
pub(crate) fn stored_manifest(bytes: Option<&[u8]>) -> Option<crate::protocol::Manifest> {
    let bytes = bytes?;
    match crate::protocol::Manifest::decode(bytes) {
        Ok(manifest) => Some(manifest),
        Err(error) => {
            tracing::warn!(%error, "a stored job's manifest does not decode; the job is taken as unsigned");
            None
        }
    }
}

/// A job's aws column: JSON written by Rocky. Unreadable JSON reads as none and is said: the
/// job then speaks Rocky's protocol, which its AWS device ignores, so it times out.
pub(crate) fn stored_aws(text: Option<&str>) -> Option<Box<crate::engine::AwsJob>> {
    let text = text?;
    match serde_json::from_str(text) {
        Ok(aws) => Some(aws),
        Err(error) => {
            tracing::warn!(%error, "a stored job's AWS document does not read; the job speaks Rocky's protocol");
            None
        }
    }
}

/// The aws column's text for a job.
pub(crate) fn aws_column(aws: Option<&crate::engine::AwsJob>) -> Option<String> {
    aws.and_then(|a| serde_json::to_string(a).ok())
}

/// A job's delta column: JSON written by Rocky; unreadable JSON reads as none.
pub(crate) fn stored_delta(text: Option<&str>) -> Option<Box<crate::firmware::DeltaInfo>> {
    serde_json::from_str(text?).ok()
}

/// The delta column's text for a job.
pub(crate) fn delta_column(delta: Option<&crate::firmware::DeltaInfo>) -> Option<String> {
    delta.and_then(|d| serde_json::to_string(d).ok())
}
