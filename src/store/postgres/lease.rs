//! Dividing the jobs between instances that share one database. Each instance has a row in
//! `instances` with a lease it renews on a heartbeat; a job names the instance that drives it
//! (`jobs.owner`), and that instance's lease is the job's. An instance that stops renewing (it
//! died, or lost the database) loses every job at once when its lease runs out, and the others
//! claim them. Times are the database server's, so the instances' clocks need not agree.

use std::time::Duration;

use tokio_postgres::Client;

use crate::engine::JobId;

/// The server's clock in milliseconds since the Unix epoch, as SQL.
pub(crate) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// States a job can still be driven in (as stored).
/// The states of a job still to be driven, as an SQL list: every state that is not final (a
/// `confirming` job too: it holds its device until the device's status decides it).
pub(crate) fn unfinished() -> String {
    let states: Vec<String> = crate::engine::JobState::ALL
        .into_iter()
        .filter(|state| !state.is_final())
        .map(|state| format!("'{}'", state.as_str()))
        .collect();
    format!("({})", states.join(", "))
}

/// Serialises claims and creations between instances, so two instances never take two jobs of
/// one device at the same moment. "ROCL" in ASCII.
pub(crate) const CLAIM_LOCK: i64 = 0x524f_434c;

fn millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// Adds this instance with a fresh lease held by `token` (this process); `false` when another
/// process holds a live lease under the same id.
pub async fn join(
    client: &Client,
    instance: &str,
    token: &str,
    lease: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let joined = client
        .execute(
            &format!(
                "INSERT INTO instances AS i (id, started_at, lease_until, token)
                    VALUES ($1, {NOW_MS}, {NOW_MS} + $2, $3)
                 ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until, token = excluded.token,
                                                started_at = excluded.started_at
                    WHERE i.token = excluded.token OR i.lease_until <= {NOW_MS}"
            ),
            &[&instance, &millis(lease), &token],
        )
        .await?;
    Ok(joined == 1)
}

/// Extends this process's lease; `false` when its row is gone, another process holds it, or
/// its lease had already run out (its jobs may be someone else's now, so it must not renew
/// silently).
pub async fn renew(
    client: &Client,
    instance: &str,
    token: &str,
    lease: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let renewed = client
        .execute(
            &format!(
                "UPDATE instances SET lease_until = {NOW_MS} + $2
                 WHERE id = $1 AND token = $3 AND lease_until > {NOW_MS}"
            ),
            &[&instance, &millis(lease), &token],
        )
        .await?;
    Ok(renewed == 1)
}

/// Gives claimed jobs back (their images could not be fetched): another instance, or this one
/// later, claims them again.
pub async fn unclaim(client: &Client, instance: &str, jobs: &[JobId]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<i64> = jobs.iter().map(|id| i64::from(id.get())).collect();
    client
        .execute("UPDATE jobs SET owner = NULL WHERE id = ANY($1) AND owner = $2", &[&ids, &instance])
        .await
        .map(|_| ())
}

/// Ends this instance's lease at once and lets go of its unfinished jobs, so the others claim
/// them without waiting (a graceful stop).
pub async fn leave(client: &mut Client, instance: &str, token: &str) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // Only while this process holds the row: another process with the same id keeps its jobs.
    let held = tx.execute("DELETE FROM instances WHERE id = $1 AND token = $2", &[&instance, &token]).await?;
    if held == 0 {
        return tx.commit().await;
    }
    tx.execute(
        &format!("UPDATE jobs SET owner = NULL WHERE owner = $1 AND state IN {}", unfinished()),
        &[&instance],
    )
    .await?;
    tx.execute("DELETE FROM leaders WHERE instance = $1", &[&instance]).await?;
    tx.commit().await
}

/// Takes up to `limit` unfinished jobs that no live instance drives, oldest first, and returns
/// their ids. A job is left alone while another live instance drives an unfinished job of the
/// same device, so one device's jobs are driven by one instance at a time.
pub async fn claim(
    client: &mut Client,
    instance: &str,
    limit: usize,
) -> Result<Vec<JobId>, tokio_postgres::Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK]).await?;
    let rows = tx
        .query(
            &format!(
                "WITH live AS (SELECT id FROM instances WHERE lease_until > {NOW_MS}),
                 free AS (
                    SELECT j.id FROM jobs j
                    WHERE j.state IN {unfinished}
                      AND (j.owner IS NULL OR j.owner NOT IN (SELECT id FROM live))
                      AND NOT EXISTS (
                          SELECT 1 FROM jobs o
                          WHERE o.device = j.device AND o.state IN {unfinished}
                            AND o.owner <> $1 AND o.owner IN (SELECT id FROM live))
                    ORDER BY j.id
                    LIMIT $2
                    FOR UPDATE OF j SKIP LOCKED)
                 UPDATE jobs SET owner = $1 FROM free WHERE jobs.id = free.id RETURNING jobs.id",
                unfinished = unfinished()
            ),
            &[&instance, &limit],
        )
        .await?;
    tx.commit().await?;
    let mut ids: Vec<JobId> =
        rows.iter().filter_map(|row| u32::try_from(row.get::<_, i64>(0)).ok().map(JobId::new)).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Whether this instance still drives `job` (a cancel from another instance checks this).
pub async fn owner_of(client: &Client, job: JobId) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_opt("SELECT owner FROM jobs WHERE id = $1", &[&i64::from(job.get())])
        .await?
        .and_then(|row| row.get::<_, Option<String>>(0)))
}

/// What became of a cancel asked for through the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAsked {
    /// No live instance drove the job: it is cancelled now, in its row.
    Cancelled,
    /// The live instance that drives it was asked; it cancels the job when it next looks.
    Forwarded {
        owner: String,
    },
    NotFound,
    /// It had already ended, in this state (as stored).
    Finished(String),
}

/// Cancels `job` in the database when no live instance drives it, else asks its owner through
/// `cancel_requests` (and wakes it with a NOTIFY). Under the claim lock, so the job cannot be
/// claimed in between.
pub async fn ask_cancel(
    client: &mut Client,
    job: JobId,
    reason: &str,
) -> Result<CancelAsked, tokio_postgres::Error> {
    let id = i64::from(job.get());
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK]).await?;
    let row = tx
        .query_opt(
            &format!(
                "SELECT j.state, j.owner, EXISTS (SELECT 1 FROM instances i
                                                 WHERE i.id = j.owner AND i.lease_until > {NOW_MS}) AS live
                 FROM jobs j WHERE j.id = $1 FOR UPDATE"
            ),
            &[&id],
        )
        .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(CancelAsked::NotFound);
    };
    let state: String = row.get("state");
    let owner: Option<String> = row.get("owner");
    let live: bool = row.get("live");
    if crate::engine::JobState::parse(&state).is_ok_and(crate::engine::JobState::is_final) {
        tx.rollback().await?;
        return Ok(CancelAsked::Finished(state));
    }
    let asked = match owner.filter(|_| live) {
        Some(owner) => {
            tx.execute(
                &format!("INSERT INTO cancel_requests (job_id, asked_at) VALUES ($1, {NOW_MS}) ON CONFLICT DO NOTHING"),
                &[&id],
            )
            .await?;
            tx.execute("SELECT pg_notify('rocky_cancel', $1)", &[&owner]).await?;
            CancelAsked::Forwarded { owner }
        }
        None => {
            tx.execute(
                &format!(
                    "UPDATE jobs SET state = 'cancelled', error = $2, finished_at = {NOW_MS}, owner = NULL
                     WHERE id = $1"
                ),
                &[&id, &reason],
            )
            .await?;
            tx.execute(
                &format!("INSERT INTO job_events (job_id, at, state, detail) VALUES ($1, {NOW_MS}, 'cancelled', $2)"),
                &[&id, &reason],
            )
            .await?;
            CancelAsked::Cancelled
        }
    };
    tx.commit().await?;
    Ok(asked)
}

/// The cancels other instances asked of this one, taken out of the table.
pub async fn take_cancels(client: &Client, instance: &str) -> Result<Vec<JobId>, tokio_postgres::Error> {
    let rows = client
        .query(
            "DELETE FROM cancel_requests c USING jobs j WHERE c.job_id = j.id AND j.owner = $1 RETURNING c.job_id",
            &[&instance],
        )
        .await?;
    Ok(rows.iter().filter_map(|row| u32::try_from(row.get::<_, i64>(0)).ok().map(JobId::new)).collect())
}

/// Takes `role` for this instance when no live instance has it; returns the instance that has
/// it now (this one or another).
pub async fn lead(client: &Client, role: &str, instance: &str) -> Result<String, tokio_postgres::Error> {
    let taken = client
        .query_opt(
            &format!(
                "INSERT INTO leaders AS l (role, instance) VALUES ($1, $2)
                 ON CONFLICT (role) DO UPDATE SET instance = excluded.instance
                    WHERE l.instance = excluded.instance
                       OR NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = l.instance AND i.lease_until > {NOW_MS})
                 RETURNING instance"
            ),
            &[&role, &instance],
        )
        .await?;
    if let Some(row) = taken {
        return Ok(row.get(0));
    }
    let row = client.query_one("SELECT instance FROM leaders WHERE role = $1", &[&role]).await?;
    Ok(row.get(0))
}
