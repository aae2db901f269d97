//! Rollouts in SQLite: heads in `rollouts`, devices in `rollout_devices` (see
//! [`crate::store::RolloutRow`] for why they are apart).

use rusqlite::{Connection, params};

use crate::engine::{JobId, RolloutId};
use crate::rollout::{Rollout, Slot};
use crate::store::rollout_rows::{RolloutRow, assemble, outcome_name, slot};

pub fn save(conn: &mut Connection, rows: &[RolloutRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut upsert = tx.prepare(
            "INSERT INTO rollouts (id, state, body, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body, updated_at = excluded.updated_at",
        )?;
        let mut device = tx.prepare(
            "INSERT INTO rollout_devices (rollout_id, position, device, outcome, job_id, attempts, retry_at, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(rollout_id, position) DO UPDATE SET device = excluded.device, outcome = excluded.outcome,
               job_id = excluded.job_id, attempts = excluded.attempts, retry_at = excluded.retry_at,
               detail = excluded.detail",
        )?;
        for row in rows {
            upsert.execute(params![row.id.get() as i64, row.state, row.body, row.updated_at as i64])?;
            for (position, slot) in &row.devices {
                device.execute(params![
                    row.id.get() as i64,
                    *position as i64,
                    slot.device_id.as_str(),
                    outcome_name(slot.outcome),
                    slot.job_id,
                    slot.attempts,
                    slot.retry_at.map(|at| at as i64),
                    slot.detail,
                ])?;
            }
        }
    }
    tx.commit()
}

pub fn forget(conn: &mut Connection, ids: &[RolloutId]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut delete = tx.prepare("DELETE FROM rollouts WHERE id = ?1")?;
        let mut devices = tx.prepare("DELETE FROM rollout_devices WHERE rollout_id = ?1")?;
        for id in ids {
            delete.execute([id.get() as i64])?;
            devices.execute([id.get() as i64])?;
        }
    }
    tx.commit()
}

/// Every rollout, by id, with its devices; one that cannot be read is skipped with a warning.
pub fn load(conn: &Connection) -> rusqlite::Result<Vec<Rollout>> {
    let mut stmt = conn.prepare("SELECT id, body FROM rollouts ORDER BY id")?;
    let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>("id")?, row.get::<_, String>("body")?)))?;
    let mut rollouts = Vec::new();
    for row in rows {
        let (id, body) = row?;
        match devices(conn, id)?.and_then(|slots| assemble(&body, slots)) {
            Ok(rollout) => rollouts.push(rollout),
            Err(reason) => {
                tracing::warn!(rollout = id, %reason, "a stored rollout could not be read; it was skipped")
            }
        }
    }
    Ok(rollouts)
}

/// A rollout's devices in its order; a row that is not a valid device says why.
fn devices(conn: &Connection, rollout: i64) -> rusqlite::Result<Result<Vec<Slot>, String>> {
    let mut stmt = conn.prepare(
        "SELECT position, device, outcome, job_id, attempts, retry_at, detail
         FROM rollout_devices WHERE rollout_id = ?1 ORDER BY position",
    )?;
    let mut rows = stmt.query([rollout])?;
    let mut slots = Vec::new();
    while let Some(row) = rows.next()? {
        let position: i64 = row.get("position")?;
        if position != slots.len() as i64 {
            return Ok(Err(format!("device {} of the rollout is missing", slots.len() + 1)));
        }
        let read = slot(
            &row.get::<_, String>("device")?,
            &row.get::<_, String>("outcome")?,
            row.get("job_id")?,
            row.get("attempts")?,
            row.get("retry_at")?,
            row.get("detail")?,
        );
        match read {
            Ok(slot) => slots.push(slot),
            Err(reason) => return Ok(Err(reason)),
        }
    }
    Ok(Ok(slots))
}

pub fn jobs(conn: &Connection, rollout: RolloutId) -> rusqlite::Result<Vec<(JobId, String)>> {
    let mut stmt = conn.prepare("SELECT id, device FROM jobs WHERE rollout_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([rollout.get() as i64], |row| Ok((row.get("id")?, row.get("device")?)))?;
    rows.collect()
}
