//! The console's copy of every job: the runtime's snapshots, plus what the console saw happen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Cursor, PaneState};
use crate::engine::{JobId, JobState};
use crate::snapshot::JobSnapshot;

/// Timeline entries kept per job (state changes, retries, ignored answers).
pub const MAX_TIMELINE: usize = 200;

/// A job as the console holds it: the runtime's latest snapshot (every field the engine knows,
/// replaced whole on each change) and the timeline the console saw happen.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub job: Arc<JobSnapshot>,
    pub timeline: Vec<(SystemTime, String)>,
}

/// A row reads as its snapshot: `row.state`, `row.chunks_done`, `row.image.name`.
impl std::ops::Deref for JobRow {
    type Target = JobSnapshot;
    fn deref(&self) -> &JobSnapshot {
        &self.job
    }
}

fn wall(unix_ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms)
}

impl JobRow {
    pub fn new(job: Arc<JobSnapshot>) -> Self {
        Self { job, timeline: Vec::new() }
    }

    pub fn created(&self) -> SystemTime {
        wall(self.job.created_at)
    }

    pub fn started(&self) -> Option<SystemTime> {
        self.job.started_at.map(wall)
    }

    pub fn finished(&self) -> Option<SystemTime> {
        self.job.finished_at.map(wall)
    }

    /// When a status after the device's reboot confirmed that it runs the image.
    pub fn confirmed(&self) -> Option<SystemTime> {
        self.job.confirmed_at.map(wall)
    }

    /// Time since the job was created, up to its end.
    pub fn elapsed(&self, now: SystemTime) -> Duration {
        self.finished().unwrap_or(now).duration_since(self.created()).unwrap_or_default()
    }

    /// Bytes per second since the transfer started.
    pub fn rate(&self, now: SystemTime) -> Option<f64> {
        let started = self.started()?;
        let secs = self.finished().unwrap_or(now).duration_since(started).ok()?.as_secs_f64();
        (secs > 0.05 && self.bytes_sent > 0).then(|| self.bytes_sent as f64 / secs)
    }

    /// Time left at the current rate, while transferring.
    pub fn eta(&self, now: SystemTime) -> Option<Duration> {
        if self.state != JobState::Transferring {
            return None;
        }
        let rate = self.rate(now)?;
        // From what the device confirmed when it sets the pace, else from what was sent.
        let done = self.chunks_confirmed.unwrap_or(self.chunks_done);
        let left = u64::from(self.chunks_total.saturating_sub(done)) * u64::from(self.chunk_size);
        Some(Duration::from_secs_f64(left.min(self.image.size) as f64 / rate))
    }

    pub fn note(&mut self, at: SystemTime, text: String) {
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline.remove(1); // keep the first entry (creation) for context
        }
        self.timeline.push((at, text));
    }
}

/// The jobs pane: all jobs by id, oldest first, and how the pane shows them.
#[derive(Debug)]
pub struct Jobs {
    pub rows: BTreeMap<JobId, JobRow>,
    /// Timeline entries for jobs whose snapshot has not arrived yet.
    pub orphan_notes: BTreeMap<JobId, Vec<(SystemTime, String)>>,
    /// On the newest job unless the operator moved off it.
    pub cursor: Cursor,
    pub filter: String,
    /// Only finished jobs, newest first.
    pub history: bool,
    /// Rows per state, kept as [`Jobs::put`] and [`Jobs::remove`] change them: the status bar
    /// reads them every frame, and a fleet's 100,000 rows are not counted 30 times a second.
    state_counts: BTreeMap<JobState, usize>,
    /// The rows whose jobs are active (requesting to finishing), for the pane's "N active ↑".
    active: std::collections::BTreeSet<JobId>,
    /// The rows' ids in order, so the pane finds its window by position without walking the
    /// map (a fleet's 100,000 rows; the pane follows the newest). New ids are pushed (they only
    /// grow); a removal or an id out of order marks it stale until [`Jobs::settle`].
    order: Vec<JobId>,
    order_stale: bool,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
            orphan_notes: BTreeMap::new(),
            cursor: Cursor::following(),
            filter: String::new(),
            history: false,
            state_counts: BTreeMap::new(),
            active: std::collections::BTreeSet::new(),
            order: Vec::new(),
            order_stale: false,
        }
    }
}

impl PaneState for Jobs {
    fn filter(&self) -> &str {
        &self.filter
    }

    fn filter_mut(&mut self) -> &mut String {
        &mut self.filter
    }

    /// The newest job, followed; the oldest finished one's place in the history view.
    fn reset_cursor(&mut self) {
        self.cursor = if self.history { Cursor::default() } else { Cursor::following() };
    }
}

impl Jobs {
    /// Rows per state (states with none left out).
    pub fn counts(&self) -> BTreeMap<JobState, usize> {
        self.state_counts.iter().filter(|(_, n)| **n > 0).map(|(s, n)| (*s, *n)).collect()
    }

    /// Rows of jobs not finished.
    pub fn active(&self) -> usize {
        self.state_counts.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum()
    }

    /// Takes in a job's snapshot: its row is made or brought up to date, and counted.
    pub fn put(&mut self, snapshot: &std::sync::Arc<crate::snapshot::JobSnapshot>) {
        let state = snapshot.state;
        match self.rows.get_mut(&snapshot.id) {
            Some(row) => {
                let was = row.state;
                row.job = snapshot.clone();
                self.count(Some(was), Some(state));
            }
            None => {
                self.rows.insert(snapshot.id, JobRow::new(snapshot.clone()));
                self.count(None, Some(state));
                if self.order.last().is_none_or(|last| *last < snapshot.id) {
                    self.order.push(snapshot.id);
                } else {
                    self.order_stale = true;
                }
            }
        }
        if state.is_active() {
            self.active.insert(snapshot.id);
        } else {
            self.active.remove(&snapshot.id);
        }
    }

    /// Forgets a job's row (retention removed the job).
    pub fn remove(&mut self, id: JobId) {
        if let Some(row) = self.rows.remove(&id) {
            self.count(Some(row.state), None);
            self.order_stale = true;
        }
        self.active.remove(&id);
    }

    /// Forgets every row (the table is sent again whole).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.state_counts.clear();
        self.active.clear();
        self.order.clear();
        self.order_stale = false;
    }

    /// Brings the order of rows up to date after removals (once per batch, not per row).
    pub fn settle(&mut self) {
        if self.order_stale {
            self.order = self.rows.keys().copied().collect();
            self.order_stale = false;
        }
    }

    /// Rows `offset..offset + n` in id order.
    pub fn window(&self, offset: usize, n: usize) -> Vec<&JobRow> {
        if self.order_stale {
            return self.rows.values().skip(offset).take(n).collect();
        }
        let end = offset.saturating_add(n).min(self.order.len());
        let ids = self.order.get(offset.min(end)..end).unwrap_or_default();
        ids.iter().filter_map(|id| self.rows.get(id)).collect()
    }

    /// Active jobs with ids before `first` and after `last`.
    pub fn active_around(&self, first: JobId, last: JobId) -> (usize, usize) {
        use std::ops::Bound::{Excluded, Unbounded};
        (self.active.range(..first).count(), self.active.range((Excluded(last), Unbounded)).count())
    }

    fn count(&mut self, from: Option<JobState>, to: Option<JobState>) {
        if let Some(n) = from.and_then(|from| self.state_counts.get_mut(&from)) {
            *n = n.saturating_sub(1);
        }
        if let Some(to) = to {
            *self.state_counts.entry(to).or_default() += 1;
        }
    }
}
