//! The writer thread: the only one that writes, whatever the backend. Each request is one
//! transaction; changes that could not be written are kept and retried, so a full disk or a
//! database restart degrades the store instead of losing its news.

use std::path::PathBuf;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc;

use super::backend::{Backend, Changes};
use super::{Health, HistoryRecord, JobSnapshot, NewJob, StoreError, Write, WriteError};
use crate::engine::JobId;
use crate::firmware::ImageStore;

pub fn spawn(
    backend: impl Backend,
    rx: mpsc::Receiver<Write>,
    images: ImageStore,
    path: PathBuf,
    latency: Histogram,
    health: Health,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("rocky-store".into())
        .spawn(move || run(backend, rx, images, latency, health))
        .map(|_| ())
        .map_err(|source| StoreError::Io { path, source })
}

/// How often writes that failed are tried again while nothing new arrives.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Timeline entries kept for a retry at most; beyond it the oldest are dropped (and counted).
const MAX_PENDING_HISTORY: usize = 200_000;

/// Changes that could not be written yet (a full disk, say), merged with every later flush
/// and written, in order, as soon as a write succeeds.
#[derive(Default)]
struct Pending {
    jobs: BTreeMap<JobId, JobSnapshot>,
    history: Vec<HistoryRecord>,
    dropped_history: u64,
    /// Finished jobs retention removed from the engine: deleted by id, whatever the row says
    /// (its last change may not have been written yet).
    deletes: BTreeSet<JobId>,
    /// The wire's news of devices, by id (a later record replaces an earlier one).
    devices: BTreeMap<crate::protocol::DeviceId, crate::inventory::Device>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.history.is_empty() && self.deletes.is_empty() && self.devices.is_empty()
    }

    /// Adds a newer batch: a job's later record replaces its earlier one.
    fn merge(&mut self, jobs: Vec<JobSnapshot>, mut history: Vec<HistoryRecord>) {
        for job in jobs {
            self.jobs.insert(job.id, job);
        }
        self.history.append(&mut history);
        if self.history.len() > MAX_PENDING_HISTORY {
            let excess = self.history.len() - MAX_PENDING_HISTORY;
            self.history.drain(..excess);
            self.dropped_history += excess as u64;
        }
    }
}

fn run(
    mut backend: impl Backend,
    mut rx: mpsc::Receiver<Write>,
    images: ImageStore,
    latency: Histogram,
    health: Health,
) {
    let mut pending = Pending::default();
    loop {
        let write = if pending.is_empty() {
            match rx.blocking_recv() {
                Some(write) => write,
                None => break,
            }
        } else {
            // Something waits for a retry: look for new work, else retry after a pause.
            match rx.try_recv() {
                Ok(write) => write,
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(RETRY_EVERY);
                    Write::Flush { jobs: Vec::new(), history: Vec::new(), devices: Vec::new(), done: None }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    // Shutting down: one last try, then what is left is lost with a word.
                    write_pending(&mut backend, &mut pending, &health);
                    if !pending.is_empty() {
                        tracing::error!(
                            jobs = pending.jobs.len(),
                            "job changes could not be stored before the stop"
                        );
                    }
                    break;
                }
            }
        };
        let started = std::time::Instant::now();
        match write {
            Write::Create { jobs, reply } => {
                // A 201 promises the jobs exist: the backend makes them durable before it returns.
                let result = create(&mut backend, &images, jobs);
                if let Err(e) = &result {
                    tracing::error!(error = %e, "could not store new jobs");
                }
                let _ = reply.send(result);
            }
            Write::Flush { jobs, history, devices, done } => {
                pending.merge(jobs, history);
                pending.devices.extend(devices.into_iter().map(|d| (d.device_id.clone(), d)));
                write_pending(&mut backend, &mut pending, &health);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Write::Register { rows, reply } => {
                let _ = reply.send(backend.register_devices(&rows));
            }
            Write::Forget { id, reply } => {
                let _ = reply.send(backend.forget_device(&id));
            }
            Write::Rollouts { rollouts, reply } => {
                let result = backend.save_rollouts(&rollouts);
                if let Err(e) = &result {
                    tracing::error!(error = %e, "could not store rollouts");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Write::ForgetRollouts { ids } => {
                if let Err(e) = backend.forget_rollouts(&ids) {
                    tracing::warn!(error = %e, "ended rollouts could not be removed from the store");
                }
            }
            Write::Audit { entry, keep, reply } => {
                let _ = reply.send(backend.audit(&entry, keep));
            }
            Write::PruneAudit { before } => {
                if let Err(e) = backend.prune_audit(before) {
                    tracing::warn!(error = %e, "old audit entries could not be removed");
                }
            }
            Write::Delete { ids } => {
                pending.deletes.extend(ids);
                write_pending(&mut backend, &mut pending, &health);
                if pending.deletes.is_empty() {
                    sweep_images(&mut backend, &images);
                }
            }
        }
        latency.observe(started.elapsed().as_secs_f64());
    }
}

/// Removes the image store's files that no remaining job names: retention deleted the last job
/// that needed them. A failure is logged and tried again after the next deletion.
fn sweep_images(backend: &mut impl Backend, images: &ImageStore) {
    match backend.images_needed().map(|needed| images.remove_unneeded(&needed)) {
        Ok(Ok(0)) => {}
        Ok(Ok(removed)) => tracing::info!(removed, "images no job needs any more were removed"),
        Ok(Err(error)) => tracing::warn!(%error, "could not remove images no job needs"),
        Err(error) => tracing::warn!(%error, "could not list the images jobs need"),
    }
}

/// Saves the images (content-addressed, so a saved one is not written again), then the jobs;
/// returns the ids they were stored under.
fn create(
    backend: &mut impl Backend,
    images: &ImageStore,
    mut jobs: Vec<NewJob>,
) -> Result<Vec<JobId>, WriteError> {
    for job in &jobs {
        images.save(&job.image)?;
    }
    backend.create(&mut jobs)?;
    // Every backend has numbered every job by now (its own or the engine's ids).
    jobs.iter()
        .map(|job| job.id.ok_or_else(|| WriteError::Failed("a job was stored without an id".into())))
        .collect()
}

/// Writes everything pending in one transaction; on failure keeps it and marks the store
/// degraded (saying so once), on success clears both.
fn write_pending(backend: &mut impl Backend, pending: &mut Pending, health: &Health) {
    let jobs: Vec<JobSnapshot> =
        pending.jobs.values().filter(|j| !pending.deletes.contains(&j.id)).cloned().collect();
    let devices: Vec<crate::inventory::Device> = pending.devices.values().cloned().collect();
    let changes =
        Changes { jobs: &jobs, history: &pending.history, deletes: &pending.deletes, devices: &devices };
    match backend.flush(&changes) {
        Ok(()) => {
            if health.problem().is_some() {
                tracing::info!(jobs = jobs.len(), lost = pending.dropped_history, "the job store caught up");
            }
            *pending = Pending::default();
            health.set(None);
        }
        Err(e) => {
            let kept = jobs.len() + pending.deletes.len();
            // The error's own words say what a request would be told ("nothing was recorded",
            // "try again"); here the changes are kept, so the cause is said once, in these.
            let cause = match e {
                WriteError::Unavailable(why) => format!("the job store's database cannot be reached ({why})"),
                WriteError::Full => "the job store cannot write (its disk is full)".to_owned(),
                WriteError::Busy(why) => format!("the job store cannot write (busy: {why})"),
                WriteError::Corrupt(why) => {
                    format!("the job store cannot write (its database is damaged: {why})")
                }
                WriteError::Failed(why) => format!("the job store cannot write ({why})"),
                other => format!("the job store cannot write ({other})"),
            };
            let problem = format!("{cause}; {kept} job changes are kept and retried every second");
            if health.problem().is_none() {
                tracing::error!(%problem, "job store degraded");
            }
            health.set(Some(problem));
        }
    }
}
