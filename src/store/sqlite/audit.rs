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

/// The entries `query` matches, by id, at most `query.limit`.
pub fn read(conn: &Connection, query: &Query) -> rusqlite::Result<Vec<Entry>> {
    let order = if query.newest_first { "DESC" } else { "ASC" };
    let mut statement = conn.prepare_cached(&format!(
        "SELECT id, at, actor, action, target, outcome FROM audit
         WHERE id > ?1 AND id < ?2 AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR actor = ?4)
           AND (?5 IS NULL OR target = ?5)
         ORDER BY id {order} LIMIT ?6"
    ))?;
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let (after, before) = (query.after.unwrap_or(0), query.before.unwrap_or(i64::MAX));
    let rows = statement.query_map(
        params![after, before, query.since, query.actor, query.target, limit],
        |row| {
            Ok(Entry {
                id: row.get(0)?,
                at: row.get(1)?,
                actor: row.get(2)?,
                action: row.get(3)?,
                target: row.get(4)?,
                outcome: row.get(5)?,
            })
        },
    )?;
    rows.collect()
}
