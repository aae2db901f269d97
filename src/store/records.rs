//! Rows as Rocky reads and writes them. Times are milliseconds since the Unix epoch.

use crate::engine::{JobId, RolloutId};
use crate::firmware::Image;
pub use crate::snapshot::HistoryRecord;

/// A job about to be created: what the writer needs to store it and its image.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Who numbers a job is decided once per store, never twice: for a store of one's own
    /// (SQLite) the engine, which alone creates jobs there, reserves the id and the row is
    /// written under it; a shared store (PostgreSQL) draws every instance's ids from one
    /// sequence, and this is `None`.
    pub id: Option<JobId>,
    pub device: String,
    pub image: Image,
    pub chunk_size: u32,
    pub chunk_interval_ms: u64,
    pub chunks_total: u32,
    pub created_at: u64,
    /// The rollout that asked for it: written in the job's own row, so a rollout resumed after
    /// a crash finds every job it created, even one it had not yet recorded itself.
    pub rollout: Option<RolloutId>,
    /// Sent even to a device whose status says it runs the image already.
    pub force: bool,
    /// The image's manifest the job sends to devices that declared `manifest`: kept in the
    /// job's row, so a restarted or claiming instance sends the same bytes.
    pub manifest: Option<crate::protocol::Manifest>,
    /// The patch it offers instead of the image, if any.
    pub delta: Option<crate::firmware::DeltaInfo>,
    /// For a device that runs AWS's OTA agent: what its job document names.
    pub aws: Option<crate::engine::AwsJob>,
}
