//! Rows as Rocky reads and writes them. Times are milliseconds since the Unix epoch.

use crate::engine::{JobId, JobState, JobView};
use crate::firmware::Image;
use crate::protocol::sha256_hex;
use crate::runtime::Clock;

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobRecord {
    pub id: JobId,
    pub device: String,
    pub image_name: String,
    pub image_size: u64,
    pub image_sha256: String,
    pub chunk_size: u32,
    pub chunk_interval_ms: u64,
    pub state: JobState,
    pub chunks_sent: u32,
    pub chunks_total: u32,
    pub bytes_sent: u64,
    pub attempts: u32,
    pub error: Option<String>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
}

impl JobRecord {
    pub fn from_view(view: &JobView, chunk_interval_ms: u64, clock: &Clock) -> Self {
        Self {
            id: view.id,
            device: view.device.to_string(),
            image_name: view.image.name().to_owned(),
            image_size: view.image.size(),
            image_sha256: sha256_hex(view.image.sha256()),
            chunk_size: view.chunk_size.get(),
            chunk_interval_ms,
            state: view.state,
            chunks_sent: view.chunks_done,
            chunks_total: view.chunks_total,
            bytes_sent: view.bytes_sent,
            attempts: view.attempts,
            error: view.error.clone(),
            created_at: clock.unix_ms(view.created_at),
            started_at: view.started_at.map(|t| clock.unix_ms(t)),
            finished_at: view.finished_at.map(|t| clock.unix_ms(t)),
        }
    }
}

/// One entry of a job's timeline: a state it entered (or a retry), when, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    pub device: String,
    pub image: Image,
    pub chunk_size: u32,
    pub chunk_interval_ms: u64,
    pub chunks_total: u32,
    pub created_at: u64,
}
