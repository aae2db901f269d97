//! The audit table in PostgreSQL, shared by every instance: an entry written with the oldest
//! beyond the count bound removed in the same transaction, entries read by filter and cursor,
//! old ones aged out.

use tokio_postgres::{Client, Row};

use crate::audit::{Entry, NewEntry, Query};

/// Inserts `entry` and keeps at most `keep` entries (the newest; ids from a shared sequence may
/// leave gaps, so a few fewer may stay).
pub async fn record(client: &mut Client, entry: &NewEntry, keep: u64) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO audit (at, actor, action, target, outcome) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&entry.at, &entry.actor, &entry.action, &entry.target, &entry.outcome],
        )
        .await?
        .get(0);
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    tx.execute("DELETE FROM audit WHERE id <= $1", &[&id.saturating_sub(keep)]).await?;
    tx.commit().await
}

/// Removes entries older than `before` (Unix ms).
pub async fn prune(client: &mut Client, before: i64) -> Result<(), tokio_postgres::Error> {
    client.execute("DELETE FROM audit WHERE at < $1", &[&before]).await.map(|_| ())
}

/// The entries `query` matches, by id, at most `query.limit`. Only the filters given are in
/// the statement, so an actor's or a target's entries are read through their index.
pub async fn read(client: &Client, query: &Query) -> Result<Vec<Entry>, tokio_postgres::Error> {
    let (after, before) = (query.after.unwrap_or(0), query.before.unwrap_or(i64::MAX));
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&after, &before];
    let mut conditions = vec!["id > $1".to_owned(), "id < $2".to_owned()];
    if let Some(since) = &query.since {
        values.push(since);
        conditions.push(format!("at >= ${}", values.len()));
    }
    for (column, value) in [("actor", &query.actor), ("target", &query.target)] {
        if let Some(value) = value {
            values.push(value);
            conditions.push(format!("{column} = ${}", values.len()));
        }
    }
    values.push(&limit);
    let order = if query.newest_first { "DESC" } else { "ASC" };
    let statement = format!(
        "SELECT id, at, actor, action, target, outcome FROM audit WHERE {} ORDER BY id {order} LIMIT ${}",
        conditions.join(" AND "),
        values.len()
    );
    let rows = client.query(&statement, &values).await?;
    rows.iter().map(entry).collect()
}

fn entry(row: &Row) -> Result<Entry, tokio_postgres::Error> {
    Ok(Entry {
        id: row.try_get(0)?,
        at: row.try_get(1)?,
        actor: row.try_get(2)?,
        action: row.try_get(3)?,
        target: row.try_get(4)?,
        outcome: row.try_get(5)?,
    })
}
