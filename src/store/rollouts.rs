//! Rollouts on disk. A rollout's head (its plan without the device list, state, reason and
//! history of changes) is one JSON row in `rollouts`; each device's outcome is a row of its own
//! in `rollout_devices`, so a change writes the head and the devices that changed, not all of a
//! 100,000-device rollout. The jobs a rollout created name it in their own rows
//! (`jobs.rollout_id`), written in the job's creation transaction.

use std::hash::{Hash, Hasher};

use rusqlite::{Connection, params};

use crate::engine::JobId;
use crate::protocol::DeviceId;
use crate::rollout::{Outcome, Rollout, Slot};

/// What one write of a rollout holds.
#[derive(Debug, Clone)]
pub struct RolloutRow {
    pub id: u64,
    pub state: &'static str,
    /// The head as JSON.
    pub body: String,
    pub updated_at: u64,
    /// Devices to write, by position: all of them the first time, then those that changed.
    pub devices: Vec<(usize, Slot)>,
}

impl RolloutRow {
    /// The head and the devices whose fingerprint differs from `saved` (all when `saved` is
    /// shorter, as for a rollout never written); also the fingerprints as of this write.
    pub fn of(rollout: &Rollout, saved: &[u64]) -> (Self, Vec<u64>) {
        let fingerprints: Vec<u64> = rollout.slots.iter().map(fingerprint).collect();
        let devices = rollout
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| saved.get(*i) != fingerprints.get(*i))
            .map(|(i, slot)| (i, slot.clone()))
            .collect();
        let row = Self {
            id: rollout.id,
            state: rollout.state.as_str(),
            // A rollout's head is plain data: serialising it cannot fail.
            body: serde_json::to_string(&head(rollout)).unwrap_or_default(),
            updated_at: rollout.updated_at,
            devices,
        };
        (row, fingerprints)
    }
}

/// A rollout without its devices (kept in rows of their own), with its history.
fn head(rollout: &Rollout) -> Rollout {
    let mut head = rollout.head();
    head.changes = rollout.changes.clone();
    head
}

/// Tells whether a device's row must be written again.
fn fingerprint(slot: &Slot) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    slot.device_id.as_str().hash(&mut hasher);
    outcome_name(slot.outcome).hash(&mut hasher);
    slot.job_id.hash(&mut hasher);
    slot.attempts.hash(&mut hasher);
    slot.retry_at.hash(&mut hasher);
    slot.detail.hash(&mut hasher);
    hasher.finish()
}

fn outcome_name(outcome: Outcome) -> String {
    serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

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
            upsert.execute(params![row.id as i64, row.state, row.body, row.updated_at as i64])?;
            for (position, slot) in &row.devices {
                device.execute(params![
                    row.id as i64,
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

pub fn forget(conn: &mut Connection, ids: &[u64]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut delete = tx.prepare("DELETE FROM rollouts WHERE id = ?1")?;
        let mut devices = tx.prepare("DELETE FROM rollout_devices WHERE rollout_id = ?1")?;
        for id in ids {
            delete.execute([*id as i64])?;
            devices.execute([*id as i64])?;
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
        let mut rollout: Rollout = match serde_json::from_str(&body) {
            Ok(rollout) => rollout,
            Err(e) => {
                tracing::warn!(rollout = id, error = %e, "a stored rollout could not be read; it was skipped");
                continue;
            }
        };
        match devices(conn, id) {
            Ok(Ok(slots)) => {
                rollout.plan.devices = slots.iter().map(|s| s.device_id.clone()).collect();
                rollout.slots = slots;
            }
            Ok(Err(reason)) => {
                tracing::warn!(rollout = id, %reason, "a stored rollout could not be read; it was skipped");
                continue;
            }
            Err(e) => return Err(e),
        }
        rollouts.push(rollout);
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
        let device: String = row.get("device")?;
        let outcome: String = row.get("outcome")?;
        let slot = (|| {
            Ok::<_, String>(Slot {
                device_id: DeviceId::parse(&device).map_err(|e| e.to_string())?,
                outcome: serde_json::from_value(serde_json::Value::String(outcome.clone()))
                    .map_err(|_| format!("{outcome:?} is not an outcome"))?,
                job_id: row.get("job_id").map_err(|e| e.to_string())?,
                attempts: row.get("attempts").map_err(|e| e.to_string())?,
                retry_at: row
                    .get::<_, Option<i64>>("retry_at")
                    .map_err(|e| e.to_string())?
                    .map(|at| at as u64),
                detail: row.get("detail").map_err(|e| e.to_string())?,
            })
        })();
        match slot {
            Ok(slot) => slots.push(slot),
            Err(reason) => return Ok(Err(reason)),
        }
    }
    Ok(Ok(slots))
}

pub fn jobs(conn: &Connection, rollout: u64) -> rusqlite::Result<Vec<(JobId, String)>> {
    let mut stmt = conn.prepare("SELECT id, device FROM jobs WHERE rollout_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([rollout as i64], |row| Ok((row.get("id")?, row.get("device")?)))?;
    rows.collect()
}
