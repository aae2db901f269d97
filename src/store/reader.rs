//! Reading jobs and timelines back.

use rusqlite::{Connection, Row};

use super::{HistoryRecord, JobRecord};
use crate::engine::{JobId, JobState};

fn state(text: String) -> rusqlite::Result<JobState> {
    JobState::parse(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

fn job(row: &Row) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: row.get(0)?,
        device: row.get(1)?,
        image_name: row.get(2)?,
        image_size: row.get(3)?,
        image_sha256: row.get(4)?,
        chunk_size: row.get(5)?,
        chunk_interval_ms: row.get(6)?,
        state: state(row.get(7)?)?,
        chunks_sent: row.get(8)?,
        chunks_total: row.get(9)?,
        bytes_sent: row.get(10)?,
        attempts: row.get(11)?,
        error: row.get(12)?,
        created_at: row.get(13)?,
        started_at: row.get(14)?,
        finished_at: row.get(15)?,
    })
}

/// Every job, oldest first, and the highest id ever given.
pub fn load(conn: &Connection) -> rusqlite::Result<(Vec<JobRecord>, JobId)> {
    let mut stmt = conn.prepare(
        "SELECT id, device, image_name, image_size, image_sha256, chunk_size, chunk_interval_ms, state,
                chunks_sent, chunks_total, bytes_sent, attempts, error, created_at, started_at, finished_at
         FROM jobs ORDER BY id",
    )?;
    let jobs = stmt.query_map([], job)?.collect::<rusqlite::Result<Vec<_>>>()?;
    let last: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'last_job_id'", [], |r| r.get(0))?;
    let last = JobId::try_from(last).unwrap_or(JobId::MAX).max(jobs.last().map_or(0, |j| j.id));
    Ok((jobs, last))
}

pub fn history(conn: &Connection, id: JobId) -> rusqlite::Result<Vec<HistoryRecord>> {
    let mut stmt = conn.prepare(
        "SELECT job_id, at, state, detail, attempt FROM job_events WHERE job_id = ?1 ORDER BY at, rowid",
    )?;
    stmt.query_map([id], |row| {
        Ok(HistoryRecord {
            job: row.get(0)?,
            at: row.get(1)?,
            state: state(row.get(2)?)?,
            detail: row.get(3)?,
            attempt: row.get(4)?,
        })
    })?
    .collect()
}
