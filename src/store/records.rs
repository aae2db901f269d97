//! Rows as Rocky reads and writes them. Times are milliseconds since the Unix epoch.

use crate::engine::{JobId, JobState};
use crate::firmware::Image;

/// One entry of a job's timeline: a state it entered (or a retry), when, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryRecord {
    pub job: JobId,
    pub at: u64,
    pub state: JobState,
    pub detail: Option<String>,
    pub attempt: Option<u32>,
}

/// A job about to be created: what the writer needs to store it and its image.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Reserved by the engine; the row is written under it.
    pub id: JobId,
    pub device: String,
    pub image: Image,
    pub chunk_size: u32,
    pub chunk_interval_ms: u64,
    pub chunks_total: u32,
    pub created_at: u64,
    /// The rollout that asked for it: written in the job's own row, so a rollout resumed after
    /// a crash finds every job it created, even one it had not yet recorded itself.
    pub rollout: Option<u64>,
}
