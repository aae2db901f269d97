//! The writer thread: the only connection that writes. Each request is one transaction.

use std::path::PathBuf;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use rusqlite::{Connection, params};
use tokio::sync::mpsc;

use super::high_water::HighWater;
use super::{Health, HistoryRecord, JobSnapshot, NewJob, StoreError, Write, WriteError};
use crate::engine::JobId;
use crate::firmware::ImageStore;

pub fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Write>,
    images: ImageStore,
    path: PathBuf,
    ids_file: HighWater,
    latency: Histogram,
    health: Health,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("rocky-store".into())
        .spawn(move || run(conn, rx, images, ids_file, latency, health))
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
    mut conn: Connection,
    mut rx: mpsc::Receiver<Write>,
    images: ImageStore,
    mut ids_file: HighWater,
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
                    write_pending(&mut conn, &mut pending, &health);
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
                // A 201 promises the jobs exist: their transaction is synced to disk before the
                // answer (synchronous = FULL), not only written to the WAL as other changes are.
                let _ = conn.pragma_update(None, "synchronous", "FULL");
                let result = create(&mut conn, &images, &mut ids_file, &jobs);
                let _ = conn.pragma_update(None, "synchronous", "NORMAL");
                if let Err(e) = &result {
                    tracing::error!(error = %e, "could not store new jobs");
                }
                let _ = reply.send(result);
            }
            Write::Flush { jobs, history, devices, done } => {
                pending.merge(jobs, history);
                pending.devices.extend(devices.into_iter().map(|d| (d.device_id.clone(), d)));
                write_pending(&mut conn, &mut pending, &health);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Write::Register { rows, reply } => {
                let _ = conn.pragma_update(None, "synchronous", "FULL");
                let result = super::devices::register(&mut conn, &rows).map_err(WriteError::from);
                let _ = conn.pragma_update(None, "synchronous", "NORMAL");
                let _ = reply.send(result);
            }
            Write::Forget { id, reply } => {
                let _ = reply.send(super::devices::forget(&mut conn, &id).map_err(WriteError::from));
            }
            Write::Rollouts { rollouts, reply } => {
                let _ = conn.pragma_update(None, "synchronous", "FULL");
                let result = super::rollouts::save(&mut conn, &rollouts).map_err(WriteError::from);
                let _ = conn.pragma_update(None, "synchronous", "NORMAL");
                if let Err(e) = &result {
                    tracing::error!(error = %e, "could not store rollouts");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Write::ForgetRollouts { ids } => {
                if let Err(e) = super::rollouts::forget(&mut conn, &ids) {
                    tracing::warn!(error = %e, "ended rollouts could not be removed from the store");
                }
            }
            Write::Delete { ids } => {
                pending.deletes.extend(ids);
                write_pending(&mut conn, &mut pending, &health);
                if pending.deletes.is_empty() {
                    sweep_images(&conn, &images);
                }
            }
        }
        latency.observe(started.elapsed().as_secs_f64());
    }
}

fn create(
    conn: &mut Connection,
    images: &ImageStore,
    ids_file: &mut HighWater,
    jobs: &[NewJob],
) -> Result<(), WriteError> {
    for job in jobs {
        images.save(&job.image)?;
    }
    let Some(highest) = jobs.iter().map(|job| i64::from(job.id)).max() else { return Ok(()) };
    // The mark first: a lost write-ahead log cannot roll it back.
    ids_file.raise(highest)?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO jobs (id, device, image_name, image_size, image_sha256, chunk_size, chunk_interval_ms,
                               state, chunks_total, created_at, rollout_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10)",
        )?;
        let mut event = tx.prepare(
            "INSERT INTO job_events (job_id, at, state, detail) VALUES (?1, ?2, 'queued', 'created')",
        )?;
        for job in jobs {
            let inserted = insert.execute(params![
                job.id,
                job.device,
                job.image.name(),
                job.image.size() as i64,
                crate::protocol::sha256_hex(job.image.sha256()),
                job.chunk_size,
                job.chunk_interval_ms as i64,
                job.chunks_total,
                job.created_at as i64,
                job.rollout.map(|r| r as i64)
            ]);
            if let Err(rusqlite::Error::SqliteFailure(e, _)) = &inserted
                && e.code == rusqlite::ErrorCode::ConstraintViolation
            {
                return Err(WriteError::Duplicate(job.id));
            }
            inserted?;
            event.execute(params![job.id, job.created_at as i64])?;
        }
    }
    tx.execute(
        "UPDATE meta SET value = max(CAST(value AS INTEGER), ?1) WHERE key = 'last_job_id'",
        [highest],
    )?;
    tx.commit()?;
    Ok(())
}

/// Removes the image store's files that no remaining job names: retention deleted the last job
/// that needed them. A failure is logged and tried again after the next deletion.
fn sweep_images(conn: &Connection, images: &ImageStore) {
    // Open rollouts need their image for jobs they have not created yet.
    let needed: rusqlite::Result<std::collections::HashSet<String>> = conn
        .prepare(
            "SELECT DISTINCT image_sha256 FROM jobs
             UNION SELECT json_extract(body, '$.plan.image.sha256') FROM rollouts
                   WHERE state IN ('scheduled', 'running', 'paused')",
        )
        .and_then(|mut query| {
            query
                .query_map([], |row| row.get::<_, Option<String>>(0))?
                .filter_map(Result::transpose)
                .collect()
        });
    match needed.map(|needed| images.remove_unneeded(&needed)) {
        Ok(Ok(0)) => {}
        Ok(Ok(removed)) => tracing::info!(removed, "images no job needs any more were removed"),
        Ok(Err(error)) => tracing::warn!(%error, "could not remove images no job needs"),
        Err(error) => tracing::warn!(%error, "could not list the images jobs need"),
    }
}

/// Writes everything pending in one transaction; on failure keeps it and marks the store
/// degraded (saying so once), on success clears both.
fn write_pending(conn: &mut Connection, pending: &mut Pending, health: &Health) {
    let jobs: Vec<JobSnapshot> =
        pending.jobs.values().filter(|j| !pending.deletes.contains(&j.id)).cloned().collect();
    let devices: Vec<crate::inventory::Device> = pending.devices.values().cloned().collect();
    match flush(conn, &jobs, &pending.history, &pending.deletes, &devices) {
        Ok(()) => {
            if health.problem().is_some() {
                tracing::info!(jobs = jobs.len(), lost = pending.dropped_history, "the job store caught up");
            }
            *pending = Pending::default();
            health.set(None);
        }
        Err(e) => {
            let problem = format!(
                "the job store cannot write ({e}); {} job changes are kept and retried every second",
                jobs.len() + pending.deletes.len()
            );
            if health.problem().is_none() {
                tracing::error!(%problem, "job store degraded");
            }
            health.set(Some(problem));
        }
    }
}

fn flush(
    conn: &mut Connection,
    jobs: &[JobSnapshot],
    history: &[HistoryRecord],
    deletes: &BTreeSet<JobId>,
    devices: &[crate::inventory::Device],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    super::devices::observe(&tx, devices)?;
    {
        let mut update = tx.prepare(
            "UPDATE jobs SET state = ?2, chunks_sent = ?3, bytes_sent = ?4, attempts = ?5, error = ?6,
                             started_at = ?7, finished_at = ?8, chunks_confirmed = ?9, window = ?10,
                             reason_code = ?11
             WHERE id = ?1",
        )?;
        for job in jobs {
            update.execute(params![
                job.id,
                job.state.as_str(),
                job.chunks_done,
                job.bytes_sent as i64,
                job.attempts,
                job.error,
                job.started_at.map(|t| t as i64),
                job.finished_at.map(|t| t as i64),
                job.chunks_confirmed,
                job.window,
                job.reason_code.map(|code| code as i64)
            ])?;
        }
        let mut event = tx.prepare(
            "INSERT INTO job_events (job_id, at, state, detail, attempt)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)",
        )?;
        for entry in history {
            event.execute(params![
                entry.job,
                entry.at as i64,
                entry.state.as_str(),
                entry.detail,
                entry.attempt
            ])?;
        }
        let mut delete = tx.prepare("DELETE FROM jobs WHERE id = ?1")?;
        for id in deletes {
            delete.execute([id])?;
        }
    }
    tx.commit()
}
