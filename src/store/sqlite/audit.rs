//! The audit table in SQLite: an entry written durably with the oldest beyond the count bound
//! removed in the same transaction, entries read by filter and cursor, old ones aged out.

use rusqlite::{Connection, params};

use crate::audit::{Entry, NewEntry, Query};

/// Inserts `entry` and keeps at most `keep` entries (the newest).
pub fn record(conn: &mut Connection, entry: &NewEntry, keep: u64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO audit (at, actor, action, target, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![entry.at, entry.actor, entry.action, entry.target, entry.outcome],
    )?;
    let id = tx.last_insert_rowid();
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    tx.execute("DELETE FROM audit WHERE id <= ?1", params![id.saturating_sub(keep)])?;
    tx.commit()
}

/// Removes entries older than `before` (Unix ms).
pub fn prune(conn: &mut Connection, before: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM audit WHERE at < ?1", params![before]).map(|_| ())
}

/// The entries `query` matches, by id, at most `query.limit`. Only the filters given are in
/// the statement, so an actor's or a target's entries are read through their index.
pub fn read(conn: &Connection, query: &Query) -> rusqlite::Result<Vec<Entry>> {
    let mut conditions = vec!["id > ?".to_owned(), "id < ?".to_owned()];
    let mut values: Vec<rusqlite::types::Value> =
        vec![query.after.unwrap_or(0).into(), query.before.unwrap_or(i64::MAX).into()];
    if let Some(since) = query.since {
        conditions.push("at >= ?".into());
        values.push(since.into());
    }
    for (column, value) in [("actor", &query.actor), ("target", &query.target)] {
        if let Some(value) = value {
            conditions.push(format!("{column} = ?"));
            values.push(value.clone().into());
        }
    }
    let order = if query.newest_first { "DESC" } else { "ASC" };
    values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
    let mut statement = conn.prepare_cached(&format!(
        "SELECT id, at, actor, action, target, outcome FROM audit WHERE {} ORDER BY id {order} LIMIT ?",
        conditions.join(" AND ")
    ))?;
    let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
        Ok(Entry {
            id: row.get(0)?,
            at: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            target: row.get(4)?,
            outcome: row.get(5)?,
        })
    })?;
    rows.collect()
}
