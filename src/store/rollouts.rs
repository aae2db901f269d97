//! Rollouts on disk: one row each, the whole rollout as JSON (its plan, its devices' outcomes
//! and job ids, its history of changes), written when it changes. The jobs a rollout created
//! name it in their own rows (`jobs.rollout_id`), written in the job's creation transaction.

use rusqlite::{Connection, params};

use crate::engine::JobId;
use crate::rollout::Rollout;

/// A rollout as the writer stores it.
#[derive(Debug, Clone)]
pub struct RolloutRow {
    pub id: u64,
    pub state: &'static str,
    pub body: String,
    pub updated_at: u64,
}

impl RolloutRow {
    pub fn of(rollout: &Rollout) -> Self {
        Self {
            id: rollout.id,
            state: rollout.state.as_str(),
            // A rollout is plain data: serialising it cannot fail.
            body: serde_json::to_string(rollout).unwrap_or_default(),
            updated_at: rollout.updated_at,
        }
    }
}

pub fn save(conn: &mut Connection, rows: &[RolloutRow]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut upsert = tx.prepare(
            "INSERT INTO rollouts (id, state, body, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body, updated_at = excluded.updated_at",
        )?;
        for row in rows {
            upsert.execute(params![row.id as i64, row.state, row.body, row.updated_at as i64])?;
        }
    }
    tx.commit()
}

pub fn forget(conn: &mut Connection, ids: &[u64]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut delete = tx.prepare("DELETE FROM rollouts WHERE id = ?1")?;
        for id in ids {
            delete.execute([*id as i64])?;
        }
    }
    tx.commit()
}

/// Every rollout, by id; one that cannot be read is skipped with a warning.
pub fn load(conn: &Connection) -> rusqlite::Result<Vec<Rollout>> {
    let mut stmt = conn.prepare("SELECT id, body FROM rollouts ORDER BY id")?;
    let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>("id")?, row.get::<_, String>("body")?)))?;
    let mut rollouts = Vec::new();
    for row in rows {
        let (id, body) = row?;
        match serde_json::from_str(&body) {
            Ok(rollout) => rollouts.push(rollout),
            Err(e) => {
                tracing::warn!(rollout = id, error = %e, "a stored rollout could not be read; it was skipped")
            }
        }
    }
    Ok(rollouts)
}

pub fn jobs(conn: &Connection, rollout: u64) -> rusqlite::Result<Vec<(JobId, String)>> {
    let mut stmt = conn.prepare("SELECT id, device FROM jobs WHERE rollout_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([rollout as i64], |row| Ok((row.get("id")?, row.get("device")?)))?;
    rows.collect()
}
