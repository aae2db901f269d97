//! Every job's latest snapshot, outside the engine's task: listings read it without asking the
//! engine, and subscribers follow it without ever losing a state.
//!
//! Each change gets a sequence number and replaces the job's previous entry (latest wins). A
//! subscriber keeps a cursor and asks for everything that changed after it, so however far it
//! falls behind it skips intermediate states but always ends with every job's current one. Jobs
//! that retention removed leave a tombstone; tombstones are bounded, and a subscriber whose
//! cursor is older than the oldest one kept starts over from a full snapshot (`reset`).
//!
//! Only the driver writes. Readers hold the lock for one bounded batch at a time, so a large
//! listing never holds up the engine's task for more than a batch.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::engine::{JobId, JobState, RolloutId};
use crate::protocol::DeviceId;
use crate::snapshot::JobSnapshot;

/// Tombstones of removed jobs kept for subscribers that are behind.
const MAX_TOMBSTONES: usize = 100_000;
/// Entries a reader visits per hold of the lock.
const READ_BATCH: usize = 512;

/// Which jobs a listing wants.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub device: Option<DeviceId>,
    /// Only jobs with a larger id (the page cursor).
    pub after: Option<JobId>,
    /// Only jobs created at or after this time (Unix ms).
    pub since: Option<u64>,
    /// Only the jobs this rollout created.
    pub rollout: Option<RolloutId>,
    /// At most this many jobs.
    pub limit: Option<usize>,
}

impl JobFilter {
    pub fn matches(&self, job: &JobSnapshot) -> bool {
        self.state.is_none_or(|s| s == job.state)
            && self.device.as_ref().is_none_or(|d| d == &job.device_id)
            && self.after.is_none_or(|after| job.id > after)
            && self.since.is_none_or(|since| job.created_at >= since)
            && self.rollout.is_none_or(|rollout| job.rollout_id == Some(rollout))
    }
}

/// One change a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    /// The job's current snapshot (new or changed).
    Job(Arc<JobSnapshot>),
    /// Retention removed the job.
    Removed(JobId),
}

/// What changed after a cursor, in order, and the cursor to ask from next.
#[derive(Debug, Clone)]
pub struct JobChanges {
    /// The subscriber must forget every job it holds first: what follows (with the next
    /// batches) is the whole table.
    pub reset: bool,
    pub changes: Vec<JobChange>,
    pub cursor: u64,
    /// Every change up to the table's latest is in this batch or an earlier one.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Job(JobId),
    Removed(JobId),
}

#[derive(Default)]
struct Table {
    jobs: BTreeMap<JobId, (u64, Arc<JobSnapshot>)>,
    /// Each job's latest change and each tombstone, by sequence number.
    by_seq: BTreeMap<u64, Slot>,
    /// The tombstones' sequence numbers, oldest first (so forgetting one costs no scan).
    tombstones: VecDeque<u64>,
    /// Changes up to here may have lost their tombstones: older cursors start over.
    forgotten_up_to: u64,
    seq: u64,
}

pub struct JobTable {
    table: RwLock<Table>,
    latest: watch::Sender<u64>,
}

impl Default for JobTable {
    fn default() -> Self {
        Self { table: RwLock::default(), latest: watch::channel(0).0 }
    }
}

impl JobTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the jobs' current snapshots (the driver, after each round of engine events).
    pub fn upsert(&self, snapshots: impl IntoIterator<Item = JobSnapshot>) {
        let mut table = self.write();
        let mut changed = false;
        for snapshot in snapshots {
            if table.jobs.get(&snapshot.id).is_some_and(|(_, old)| **old == snapshot) {
                continue;
            }
            table.seq += 1;
            let seq = table.seq;
            let id = snapshot.id;
            if let Some((old, _)) = table.jobs.insert(id, (seq, Arc::new(snapshot))) {
                table.by_seq.remove(&old);
            }
            table.by_seq.insert(seq, Slot::Job(id));
            changed = true;
        }
        if changed {
            let seq = table.seq;
            drop(table);
            self.latest.send_replace(seq);
        }
    }

    /// Forgets jobs retention removed, leaving tombstones for subscribers.
    pub fn remove(&self, ids: &[JobId]) {
        let mut table = self.write();
        for id in ids {
            let Some((old, _)) = table.jobs.remove(id) else { continue };
            table.by_seq.remove(&old);
            table.seq += 1;
            let seq = table.seq;
            table.by_seq.insert(seq, Slot::Removed(*id));
            table.tombstones.push_back(seq);
        }
        while table.tombstones.len() > MAX_TOMBSTONES {
            let Some(oldest) = table.tombstones.pop_front() else { break };
            table.by_seq.remove(&oldest);
            table.forgotten_up_to = oldest;
        }
        let seq = table.seq;
        drop(table);
        self.latest.send_replace(seq);
    }

    pub fn get(&self, id: JobId) -> Option<Arc<JobSnapshot>> {
        self.read().jobs.get(&id).map(|(_, snapshot)| snapshot.clone())
    }

    pub fn len(&self) -> usize {
        self.read().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The jobs `filter` matches, by id, at most `filter.limit` of them.
    pub fn list(&self, filter: &JobFilter) -> Vec<Arc<JobSnapshot>> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut from = filter.after.map_or(JobId::new(0), JobId::next);
        loop {
            let table = self.read();
            let mut visited = 0;
            let mut last = None;
            for (id, (_, snapshot)) in table.jobs.range(from..) {
                visited += 1;
                last = Some(*id);
                if filter.matches(snapshot) {
                    out.push(snapshot.clone());
                    if out.len() >= limit {
                        return out;
                    }
                }
                if visited == READ_BATCH {
                    break;
                }
            }
            drop(table);
            match last {
                Some(id) if visited == READ_BATCH && id < JobId::MAX => from = id.next(),
                _ => return out,
            }
        }
    }

    /// Up to `max` changes after `cursor`. No cursor (a new subscriber), or one older than the
    /// tombstones kept, gets a reset and the whole table.
    pub fn changes_since(&self, cursor: Option<u64>, max: usize) -> JobChanges {
        let table = self.read();
        let reset = cursor.is_none_or(|c| c < table.forgotten_up_to);
        let from = if reset { 0 } else { cursor.unwrap_or(0) };
        let max = max.max(1);
        let mut changes = Vec::new();
        let mut next = from;
        let mut full = false;
        for (seq, slot) in table.by_seq.range(from.saturating_add(1)..) {
            if changes.len() >= max {
                full = true;
                break;
            }
            next = *seq;
            match slot {
                Slot::Job(id) => {
                    if let Some((_, snapshot)) = table.jobs.get(id) {
                        changes.push(JobChange::Job(snapshot.clone()));
                    }
                }
                Slot::Removed(id) if !reset => changes.push(JobChange::Removed(*id)),
                Slot::Removed(_) => {}
            }
        }
        if !full {
            // Everything up to the latest change has been seen.
            next = next.max(table.seq);
        }
        JobChanges { reset, changes, cursor: next, complete: !full }
    }

    /// A follower of the table from its beginning (the first batch is a reset).
    pub fn follow(self: &Arc<Self>) -> JobFollower {
        JobFollower { table: self.clone(), cursor: None, behind: false, latest: self.latest.subscribe() }
    }
}

/// One subscriber's position in the table.
pub struct JobFollower {
    table: Arc<JobTable>,
    /// `None` until the first batch: that one is a reset.
    cursor: Option<u64>,
    /// The last batch was cut at its size: the next one is returned even if empty, so the
    /// caller learns when it has caught up.
    behind: bool,
    latest: watch::Receiver<u64>,
}

impl JobFollower {
    /// The next batch of at most `max` changes, waiting for one if there is none. (The follower
    /// holds the table, so it never ends on its own.)
    pub async fn next(&mut self, max: usize) -> Option<JobChanges> {
        loop {
            if let Some(changes) = self.try_next(max) {
                return Some(changes);
            }
            self.latest.changed().await.ok()?;
        }
    }

    /// Like `next` without waiting: `None` when nothing changed.
    pub fn try_next(&mut self, max: usize) -> Option<JobChanges> {
        // Marked seen before reading, so a change made meanwhile wakes `next` again.
        self.latest.borrow_and_update();
        let changes = self.table.changes_since(self.cursor, max);
        self.cursor = Some(changes.cursor);
        let report = changes.reset || !changes.changes.is_empty() || self.behind;
        self.behind = !changes.complete;
        report.then_some(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ImageInfo;

    fn job(id: JobId, state: JobState, chunks: u32) -> JobSnapshot {
        JobSnapshot {
            reason_code: None,
            rollout_id: None,
            id,
            device_id: DeviceId::parse(&format!("dev-{id}")).unwrap(),
            state,
            image: ImageInfo { name: "fw.bin".into(), size: 10, sha256: "00".repeat(32).into() },
            chunk_size: 64,
            chunk_interval_ms: 0,
            chunks_done: chunks,
            chunks_confirmed: None,
            window: None,
            chunks_total: 10,
            bytes_sent: 0,
            attempts: 1,
            error: None,
            created_at: u64::from(id.get()),
            started_at: None,
            finished_at: None,
            force: false,
            confirm_boot: None,
            confirmed_at: None,
            manifest: None,
            delta: None,
            aws: None,
        }
    }

    fn ids(changes: &JobChanges) -> Vec<String> {
        changes
            .changes
            .iter()
            .map(|c| match c {
                JobChange::Job(j) => format!("{}:{}:{}", j.id, j.state, j.chunks_done),
                JobChange::Removed(id) => format!("-{id}"),
            })
            .collect()
    }

    #[test]
    fn a_subscriber_far_behind_still_ends_with_every_jobs_latest_state() {
        let table = JobTable::new();
        let mut follower = table.follow();
        let first = follower.try_next(100).unwrap();
        assert!(first.reset && first.changes.is_empty());
        // A burst: many intermediate states for two jobs.
        for chunk in 0..1000 {
            table.upsert([
                job(JobId::new(1), JobState::Transferring, chunk),
                job(JobId::new(2), JobState::Transferring, chunk),
            ]);
        }
        table.upsert([job(JobId::new(1), JobState::Succeeded, 10)]);
        let caught_up = follower.try_next(100).unwrap();
        assert_eq!(ids(&caught_up), vec!["2:transferring:999", "1:succeeded:10"]);
        assert!(follower.try_next(100).is_none(), "nothing new");
        table.upsert([job(JobId::new(1), JobState::Succeeded, 10)]);
        assert!(follower.try_next(100).is_none(), "an unchanged snapshot is not a change");
    }

    #[test]
    fn batches_page_through_and_removals_are_seen() {
        let table = JobTable::new();
        table.upsert((1..=5).map(|id| job(JobId::new(id), JobState::Queued, 0)));
        let mut follower = table.follow();
        let page = follower.try_next(2).unwrap();
        assert!(page.reset);
        assert_eq!(ids(&page), vec!["1:queued:0", "2:queued:0"]);
        table.upsert([job(JobId::new(1), JobState::Requesting, 0)]);
        table.remove(&[JobId::new(3)]);
        let rest = follower.try_next(100).unwrap();
        assert!(!rest.reset);
        assert_eq!(ids(&rest), vec!["4:queued:0", "5:queued:0", "1:requesting:0", "-3"]);
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn a_cursor_older_than_the_kept_tombstones_starts_over() {
        let table = JobTable::new();
        let mut follower = table.follow();
        follower.try_next(10);
        let total = MAX_TOMBSTONES as u32 + 10;
        table.upsert((1..=total).map(|id| job(JobId::new(id), JobState::Succeeded, 10)));
        table.remove(&(1..=total - 1).map(JobId::new).collect::<Vec<_>>());
        let next = follower.try_next(10).unwrap();
        assert!(next.reset, "tombstones this follower needed were forgotten");
        assert_eq!(ids(&next), vec![format!("{total}:succeeded:10")]);
    }

    #[test]
    fn listing_filters_and_pages_by_id() {
        let table = JobTable::new();
        table.upsert(
            (1..=2000).map(|id| {
                job(JobId::new(id), if id % 2 == 0 { JobState::Failed } else { JobState::Queued }, 0)
            }),
        );
        let failed = table.list(&JobFilter {
            state: Some(JobState::Failed),
            after: Some(JobId::new(1000)),
            ..Default::default()
        });
        assert_eq!(failed.len(), 500);
        assert_eq!(failed.first().map(|j| j.id), Some(JobId::new(1002)));
        let page = table.list(&JobFilter { limit: Some(3), since: Some(10), ..Default::default() });
        assert_eq!(page.iter().map(|j| j.id.get()).collect::<Vec<_>>(), vec![10, 11, 12]);
    }
}
