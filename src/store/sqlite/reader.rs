//! Reading jobs and timelines back.

use rusqlite::{Connection, Row};

use crate::engine::{JobId, JobState, RolloutId};
use crate::protocol::DeviceId;
use crate::snapshot::ImageInfo;
use crate::store::{HistoryRecord, JobSnapshot};

fn state(text: String) -> rusqlite::Result<JobState> {
    JobState::parse(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

/// The columns a job is read from, named once for the query and the row mapping below.
const JOB_COLUMNS: &str = "id, device, image_name, image_size, image_sha256, chunk_size, chunk_interval_ms, state, \
                           chunks_sent, chunks_confirmed, window, chunks_total, bytes_sent, attempts, error, \
                           created_at, started_at, finished_at, rollout_id, reason_code, force, confirm_boot, \
                           confirmed_at, manifest, delta, aws";

fn job(row: &Row) -> rusqlite::Result<Result<JobSnapshot, String>> {
    let device: String = row.get("device")?;
    let device_id = match DeviceId::parse(&device) {
        Ok(id) => id,
        Err(e) => return Ok(Err(format!("job {}: {e}", row.get::<_, JobId>("id")?))),
    };
    Ok(Ok(JobSnapshot {
        id: row.get("id")?,
        device_id,
        image: ImageInfo {
            name: row.get("image_name")?,
            size: row.get("image_size")?,
            sha256: row.get("image_sha256")?,
        },
        chunk_size: row.get("chunk_size")?,
        chunk_interval_ms: row.get("chunk_interval_ms")?,
        state: state(row.get("state")?)?,
        chunks_done: row.get("chunks_sent")?,
        chunks_confirmed: row.get("chunks_confirmed")?,
        window: row.get("window")?,
        chunks_total: row.get("chunks_total")?,
        bytes_sent: row.get("bytes_sent")?,
        rollout_id: row.get::<_, Option<u64>>("rollout_id")?.map(RolloutId::new),
        attempts: row.get("attempts")?,
        error: row.get("error")?,
        reason_code: row.get::<_, Option<i64>>("reason_code")?.map(|code| code as u64),
        created_at: row.get("created_at")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        force: row.get("force")?,
        confirm_boot: row.get::<_, Option<i64>>("confirm_boot")?.map(|boot| boot as u64),
        confirmed_at: row.get("confirmed_at")?,
        manifest: crate::store::backend::stored_manifest(
            row.get::<_, Option<Vec<u8>>>("manifest")?.as_deref(),
        ),
        delta: crate::store::backend::stored_delta(row.get::<_, Option<String>>("delta")?.as_deref()),
        aws: crate::store::backend::stored_aws(row.get::<_, Option<String>>("aws")?.as_deref()),
    }))
}

/// Every job, oldest first, and the highest id ever given. A row that is not a valid job (a
/// device id Rocky would refuse) is skipped with a warning.
pub fn load(conn: &Connection) -> rusqlite::Result<(Vec<JobSnapshot>, JobId)> {
    let mut stmt = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))?;
    let mut jobs = Vec::new();
    for row in stmt.query_map([], job)? {
        match row? {
            Ok(job) => jobs.push(job),
            Err(reason) => tracing::warn!(%reason, "a stored job was skipped"),
        }
    }
    let last: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'last_job_id'", [], |r| r.get(0))?;
    let last =
        u32::try_from(last).map_or(JobId::MAX, JobId::new).max(jobs.last().map_or(JobId::new(0), |j| j.id));
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
