//! Reading only the rows that changed since the last read, missing none, whatever order their
//! transactions committed in and whatever the clocks say.
//!
//! A trigger stamps each row with the transaction that last changed it (`txid_current()`, the
//! top-level one even inside a savepoint). A read runs in one REPEATABLE READ snapshot and
//! remembers that snapshot's horizon ([`Seen`]): every transaction below its `xmax` had ended
//! when it was taken, except those it lists as running. What they committed was in the
//! snapshot, so it was read. The next read takes the rows of the transactions still running
//! then and of every later one, and nothing else: a transaction left open for an hour (on any
//! database of the server) makes the reads take its own rows again once it ends, not every row
//! changed while it was open.
//!
//! Reads go to the primary, where writes go: a hot standby lists no running transactions in
//! its snapshots. A server whose transaction numbers went back (another server behind the same
//! address: a promoted replica that had not received the last transactions, a restored dump) is
//! read whole once, with a warning, rather than trusted.

use tokio_postgres::GenericClient;

/// The snapshot a read of changed rows was taken in, as the next read needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The first transaction the snapshot did not know of: it and every later one is read next.
    xmax: i64,
    /// The transactions running when it was taken: their rows were not in it.
    running: Vec<i64>,
}

impl Seen {
    /// The snapshot `client`'s transaction reads in. It must be the transaction's first
    /// statement: a REPEATABLE READ transaction takes its snapshot there.
    pub async fn now(client: &impl GenericClient) -> Result<Self, tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT txid_snapshot_xmax(s)::bigint, ARRAY(SELECT txid_snapshot_xip(s)::bigint)
                 FROM txid_current_snapshot() AS s",
                &[],
            )
            .await?;
        Ok(Self { xmax: row.get(0), running: row.get(1) })
    }

    /// Whether a read in `now` may take only what changed since `self`: not when the server's
    /// transaction numbers went back meanwhile.
    pub fn precedes(&self, now: &Seen) -> bool {
        self.xmax <= now.xmax
    }

    /// A snapshot ahead of any server's: what a read remembered from a server whose
    /// transaction numbers then went back.
    #[cfg(test)]
    pub fn ahead_of_any_server() -> Self {
        Self { xmax: i64::MAX, running: Vec::new() }
    }

    /// The condition naming the rows changed since `seen` (every row without one), for a
    /// table whose `changed_xid` column the trigger keeps; `first` is the number of its first
    /// parameter, and [`Seen::params`] gives both.
    pub fn rows_since(first: usize) -> String {
        let next = first + 1;
        format!(
            "(${first}::bigint IS NULL OR changed_xid >= ${first}::bigint OR changed_xid = ANY(${next}::bigint[]))"
        )
    }

    /// The two parameters [`Seen::rows_since`] takes.
    pub fn params(seen: Option<&Seen>) -> (Option<i64>, Vec<i64>) {
        seen.map_or((None, Vec::new()), |seen| (Some(seen.xmax), seen.running.clone()))
    }
}
