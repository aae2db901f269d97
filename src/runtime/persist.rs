//! The driver's side of durability: it remembers which jobs changed and what happened to them,
//! and hands that to the store's writer at most every `FLUSH_INTERVAL`, never waiting for it.
//! While the writer is busy, changes coalesce here: memory grows with the number of jobs that
//! changed, not with the number of events.

use std::collections::BTreeSet;

use tokio::sync::{mpsc, oneshot};

use super::Clock;
use super::RuntimeError;
use super::handle::Request;
use crate::engine::{Engine, Event, JobId, JobSpec, JobState, JobView};
use crate::inventory::Inventory;
use crate::store::{HistoryRecord, JobSnapshot, NewJob, Store, WriteError};

/// Submissions waiting for the store to record them; beyond this, new ones are refused as busy.
const CREATIONS_WAITING: usize = 1024;
/// Rows one group commit gathers at most from the submissions waiting (a single submission
/// larger than this is written alone).
const GROUP_COMMIT_ROWS: usize = 10_000;

/// A submission on its way through the store: the rows to write, and what to start after.
pub struct Creation {
    pub jobs: Vec<NewJob>,
    pub specs: Vec<JobSpec>,
    pub reply: oneshot::Sender<Result<Vec<JobView>, RuntimeError>>,
}

pub struct Persistence {
    pub store: Store,
    /// Where a finished job's last snapshot is once the engine has let go of it.
    table: std::sync::Arc<super::job_table::JobTable>,
    dirty: BTreeSet<JobId>,
    history: Vec<HistoryRecord>,
    creations: mpsc::Sender<Creation>,
}

impl Persistence {
    /// `back` is the driver's own request channel: recorded jobs return through it as
    /// `SubmitAs`, one submission at a time and in the order they came, so a device's jobs keep
    /// their order even when submissions overlap.
    /// Also returns the task that feeds submissions to the store: it holds a store handle (and
    /// so the data-dir lock) until the driver drops this, and shutdown waits for it.
    pub fn new(
        store: Store,
        table: std::sync::Arc<super::job_table::JobTable>,
        back: mpsc::Sender<Request>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (creations, mut waiting) = mpsc::channel::<Creation>(CREATIONS_WAITING);
        let writer = store.clone();
        let task = tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                // Group commit: the submissions waiting now are written in one transaction (one
                // sync to disk), then started one by one in the order they came. A rollout
                // makes its jobs one device at a time; a sync each made the store's thread the
                // busiest part of a large rollout.
                let mut batch = vec![first];
                let mut rows = batch[0].jobs.len();
                while rows < GROUP_COMMIT_ROWS {
                    let Ok(next) = waiting.try_recv() else { break };
                    rows += next.jobs.len();
                    batch.push(next);
                }
                let lengths: Vec<usize> = batch.iter().map(|creation| creation.jobs.len()).collect();
                let mut all = Vec::with_capacity(rows);
                let mut starts = Vec::with_capacity(batch.len());
                for Creation { jobs, specs, reply } in batch {
                    let created_at = jobs.first().map_or(0, |job| job.created_at);
                    let rollout = jobs.first().and_then(|job| job.rollout);
                    all.extend(jobs);
                    starts.push((specs, reply, created_at, rollout));
                }
                match writer.create(all).await {
                    Ok(ids) => {
                        let mut ids = ids.into_iter();
                        for ((specs, reply, created_at, rollout), length) in starts.into_iter().zip(lengths) {
                            let ids: Vec<JobId> = ids.by_ref().take(length).collect();
                            let start =
                                Request::SubmitAs { specs, ids, created_at_ms: created_at, rollout, reply };
                            if let Err(mpsc::error::SendError(Request::SubmitAs { ids, reply, .. })) =
                                back.send(start).await
                            {
                                // The engine stopped between the commit and the start: the
                                // caller hears the submission failed, so its rows must not run
                                // later.
                                writer.delete(ids).await;
                                writer.flush_and_wait(Vec::new(), Vec::new()).await;
                                let _ = reply.send(Err(RuntimeError::Stopped));
                            }
                        }
                    }
                    Err(e) => {
                        for (_, reply, _, _) in starts {
                            let _ = reply.send(Err(RuntimeError::Store(e.clone())));
                        }
                    }
                }
            }
        });
        (Self { store, table, dirty: BTreeSet::new(), history: Vec::new(), creations }, task)
    }

    /// Queues a submission for the store without waiting; refused when too many are waiting.
    pub fn create(&self, creation: Creation) {
        if let Err(e) = self.creations.try_send(creation) {
            let creation = match e {
                mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
            };
            let busy = WriteError::Busy("too many job submissions are waiting for it".into());
            let _ = creation.reply.send(Err(RuntimeError::Store(busy)));
        }
    }

    /// Notes that a job changed without an event (its row is written with the next flush).
    pub fn touch(&mut self, job: JobId) {
        self.dirty.insert(job);
    }

    /// Notes what an engine event changed.
    /// `engine` is read for what the event leaves out: whether a re-sent offer went to an AWS
    /// device.
    pub fn record(&mut self, at_ms: u64, event: &Event, engine: &Engine) {
        match event {
            Event::Created(_) => {} // the store wrote the row when it gave the id
            Event::StateChanged { job, to, detail, .. } => {
                self.dirty.insert(*job);
                self.history.push(HistoryRecord {
                    job: *job,
                    at: at_ms,
                    state: *to,
                    detail: detail.clone(),
                    attempt: None,
                });
            }
            Event::RequestRetried { job, attempt, .. } => {
                self.dirty.insert(*job);
                self.history.push(HistoryRecord {
                    job: *job,
                    at: at_ms,
                    state: JobState::Requesting,
                    detail: Some(crate::engine::retry_words(*attempt, engine.is_aws_job(*job))),
                    attempt: Some(*attempt),
                });
            }
            Event::ChunkSent { job, .. } | Event::Progress { job, .. } => {
                self.dirty.insert(*job);
            }
            Event::Note { job, state, text, .. } => {
                self.dirty.insert(*job);
                self.history.push(HistoryRecord {
                    job: *job,
                    at: at_ms,
                    state: *state,
                    detail: Some(text.clone()),
                    attempt: None,
                });
            }
            Event::Ignored { .. } => {}
        }
    }

    fn take(&mut self, engine: &Engine, clock: &Clock) -> (Vec<JobSnapshot>, Vec<HistoryRecord>) {
        let jobs = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| match engine.job(id) {
                Some(view) => Some(JobSnapshot::new(&view, clock)),
                // A finished job the engine has let go of: the table has its last snapshot.
                None => self.table.get(id).map(|snapshot| JobSnapshot::clone(&snapshot)),
            })
            .collect();
        (jobs, std::mem::take(&mut self.history))
    }

    /// Hands over what changed (the jobs', and what the wire told the inventory), unless the
    /// writer is still busy (then it waits for next time).
    pub fn flush(&mut self, engine: &Engine, clock: &Clock, inventory: &Inventory) {
        let store = self.store.clone();
        let Some(permit) = store.flush_permit() else { return };
        let devices = inventory.take_observed();
        if self.dirty.is_empty() && self.history.is_empty() && devices.is_empty() {
            return;
        }
        let (jobs, history) = self.take(engine, clock);
        permit.send(jobs, history, devices);
    }

    /// Writes every change now and answers `reply` once it is committed, without waiting here:
    /// an operator's cancel survives a crash the moment it is answered.
    pub fn flush_then<T: Send + 'static>(
        &mut self,
        engine: &Engine,
        clock: &Clock,
        reply: oneshot::Sender<T>,
        answer: T,
    ) {
        let (jobs, history) = self.take(engine, clock);
        let store = self.store.clone();
        tokio::spawn(async move {
            store.flush_and_wait(jobs, history).await;
            // Let go of the store before answering: a caller that stops Rocky on the answer
            // must find the data directory free.
            drop(store);
            let _ = reply.send(answer);
        });
    }

    /// Writes everything left and waits for the commit (a graceful stop loses nothing).
    pub async fn flush_all(&mut self, engine: &Engine, clock: &Clock, inventory: &Inventory) {
        let (jobs, history) = self.take(engine, clock);
        self.store.flush_everything_and_wait(jobs, history, inventory.take_observed()).await;
    }
}
