//! The console's copy of every job, kept current from engine events.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::engine::{JobId, JobState, JobView};
use crate::firmware::Image;
use crate::runtime::Clock;

/// Timeline entries kept per job (state changes, retries, ignored answers).
const MAX_TIMELINE: usize = 200;

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: JobId,
    pub device: String,
    pub image: Image,
    pub chunk_size: u32,
    pub state: JobState,
    pub chunks_done: u32,
    pub chunks_total: u32,
    pub bytes_sent: u64,
    pub attempts: u32,
    pub error: Option<String>,
    pub created: SystemTime,
    pub started: Option<SystemTime>,
    pub finished: Option<SystemTime>,
    pub timeline: Vec<(SystemTime, String)>,
}

impl JobRow {
    pub fn from_view(view: &JobView, clock: &Clock) -> Self {
        Self {
            id: view.id,
            device: view.device.to_string(),
            // The description only: the console keeps rows for good, and must not keep bytes.
            image: view.image.released(),
            chunk_size: view.chunk_size.get(),
            state: view.state,
            chunks_done: view.chunks_done,
            chunks_total: view.chunks_total,
            bytes_sent: view.bytes_sent,
            attempts: view.attempts,
            error: view.error.clone(),
            created: clock.wall(view.created_at),
            started: view.started_at.map(|t| clock.wall(t)),
            finished: view.finished_at.map(|t| clock.wall(t)),
            timeline: Vec::new(),
        }
    }

    /// Fraction of chunks delivered, 0.0 ..= 1.0.
    pub fn progress(&self) -> f64 {
        if self.chunks_total == 0 { 0.0 } else { f64::from(self.chunks_done) / f64::from(self.chunks_total) }
    }

    /// Time since the job was created, up to its end.
    pub fn elapsed(&self, now: SystemTime) -> Duration {
        self.finished.unwrap_or(now).duration_since(self.created).unwrap_or_default()
    }

    /// Bytes per second since the transfer started.
    pub fn rate(&self, now: SystemTime) -> Option<f64> {
        let started = self.started?;
        let secs = self.finished.unwrap_or(now).duration_since(started).ok()?.as_secs_f64();
        (secs > 0.05 && self.bytes_sent > 0).then(|| self.bytes_sent as f64 / secs)
    }

    /// Time left at the current rate, while transferring.
    pub fn eta(&self, now: SystemTime) -> Option<Duration> {
        if self.state != JobState::Transferring {
            return None;
        }
        let rate = self.rate(now)?;
        let left = u64::from(self.chunks_total.saturating_sub(self.chunks_done)) * u64::from(self.chunk_size);
        Some(Duration::from_secs_f64(left.min(self.image.size()) as f64 / rate))
    }

    pub fn note(&mut self, at: SystemTime, text: String) {
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline.remove(1); // keep the first entry (creation) for context
        }
        self.timeline.push((at, text));
    }
}

/// All jobs by id, oldest first.
#[derive(Debug, Default)]
pub struct Jobs {
    pub rows: BTreeMap<JobId, JobRow>,
}

impl Jobs {
    pub fn counts(&self) -> BTreeMap<JobState, usize> {
        let mut counts = BTreeMap::new();
        for row in self.rows.values() {
            *counts.entry(row.state).or_default() += 1;
        }
        counts
    }

    pub fn active(&self) -> usize {
        self.rows.values().filter(|r| !r.state.is_final()).count()
    }
}
