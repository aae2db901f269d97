//! The SQLite writes that are more than one statement: creating jobs, a flush of changes, and
//! which images are still needed.

use std::collections::HashSet;

use rusqlite::{Connection, params};

use super::high_water::HighWater;
use crate::store::backend::Changes;
use crate::store::{NewJob, WriteError};

pub fn create(conn: &mut Connection, ids_file: &mut HighWater, jobs: &[NewJob]) -> Result<(), WriteError> {
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        let id = job
            .id
            .ok_or_else(|| WriteError::Failed("a job came without the id the engine reserved".into()))?;
        ids.push(id);
    }
    let Some(highest) = ids.iter().map(|id| i64::from(id.get())).max() else { return Ok(()) };
    // The mark first: a lost write-ahead log cannot roll it back.
    ids_file.raise(highest)?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO jobs (id, device, image_name, image_size, image_sha256, chunk_size, chunk_interval_ms,
                               state, chunks_total, created_at, rollout_id, force, manifest, delta, aws)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        let mut event = tx.prepare(
            "INSERT INTO job_events (job_id, at, state, detail) VALUES (?1, ?2, 'queued', 'created')",
        )?;
        for (job, &id) in jobs.iter().zip(&ids) {
            let inserted = insert.execute(params![
                id,
                job.device,
                job.image.name(),
                job.image.size() as i64,
                crate::protocol::sha256_hex(job.image.sha256()),
                job.chunk_size,
                job.chunk_interval_ms as i64,
                job.chunks_total,
                job.created_at as i64,
                job.rollout.map(|r| r.get() as i64),
                job.force,
                job.manifest.as_ref().map(|m| m.bytes().as_ref()),
                crate::store::backend::delta_column(job.delta.as_ref()),
                crate::store::backend::aws_column(job.aws.as_ref())
            ]);
            if let Err(rusqlite::Error::SqliteFailure(e, _)) = &inserted
                && e.code == rusqlite::ErrorCode::ConstraintViolation
            {
                return Err(WriteError::Duplicate(id));
            }
            inserted?;
            event.execute(params![id, job.created_at as i64])?;
        }
    }
    tx.execute(
        "UPDATE meta SET value = max(CAST(value AS INTEGER), ?1) WHERE key = 'last_job_id'",
        [highest],
    )?;
    tx.commit()?;
    Ok(())
}

/// The images stored jobs and open rollouts name.
pub fn images_needed(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    // Open rollouts need their image for jobs they have not created yet.
    conn.prepare(
        "SELECT DISTINCT image_sha256 FROM jobs
         UNION SELECT json_extract(body, '$.plan.image.sha256') FROM rollouts
               WHERE state IN ('scheduled', 'running', 'paused')",
    )
    .and_then(|mut query| {
        query.query_map([], |row| row.get::<_, Option<String>>(0))?.filter_map(Result::transpose).collect()
    })
}

pub fn flush(conn: &mut Connection, changes: &Changes<'_>) -> rusqlite::Result<()> {
    let Changes { jobs, history, deletes, devices } = changes;
    let tx = conn.transaction()?;
    super::devices::observe(&tx, devices)?;
    {
        let mut update = tx.prepare(
            "UPDATE jobs SET state = ?2, chunks_sent = ?3, bytes_sent = ?4, attempts = ?5, error = ?6,
                             started_at = ?7, finished_at = ?8, chunks_confirmed = ?9, window = ?10,
                             reason_code = ?11, confirm_boot = ?12, confirmed_at = ?13, chunks_total = ?14,
                             delta = ?15, aws = ?16
             WHERE id = ?1",
        )?;
        for job in *jobs {
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
                job.reason_code.map(|code| code as i64),
                job.confirm_boot.map(|boot| boot as i64),
                job.confirmed_at.map(|t| t as i64),
                job.chunks_total,
                crate::store::backend::delta_column(job.delta.as_deref()),
                crate::store::backend::aws_column(job.aws.as_deref())
            ])?;
        }
        let mut event = tx.prepare(
            "INSERT INTO job_events (job_id, at, state, detail, attempt)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)",
        )?;
        for entry in *history {
            event.execute(params![
                entry.job,
                entry.at as i64,
                entry.state.as_str(),
                entry.detail,
                entry.attempt
            ])?;
        }
        let mut delete = tx.prepare("DELETE FROM jobs WHERE id = ?1")?;
        for id in *deletes {
            delete.execute([id])?;
        }
    }
    tx.commit()
}
