//! The PostgreSQL writes, each one transaction. Batches travel as arrays and are spread with
//! `unnest`, so a flush of 10,000 job changes is a few statements, not 10,000 round trips.

use std::collections::HashSet;

use tokio_postgres::Client;

use crate::engine::{JobId, RolloutId};
use crate::inventory::Labels;
use crate::protocol::DeviceId;
use crate::store::backend::Changes;
use crate::store::rollout_rows::outcome_name;
use crate::store::{NewJob, RolloutRow, WriteError};

/// The server's clock in milliseconds since the Unix epoch, as SQL.
const NOW_MS: &str = super::lease::NOW_MS;

fn big(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// Inserts the jobs, owned by `owner`, and their first timeline entry, under ids drawn from the
/// sequence every instance shares; returns those ids in the order of `jobs`. Refused (the
/// reason in `Err`, nothing written) when `owner`'s lease has run out, or another live
/// instance drives an unfinished job of one of the devices: one instance drives a device at a
/// time.
pub async fn create(
    client: &mut Client,
    jobs: &[NewJob],
    owner: &str,
) -> Result<Result<Vec<JobId>, WriteError>, tokio_postgres::Error> {
    if jobs.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::lease::CLAIM_LOCK]).await?;
    let live: bool = tx
        .query_one(
            &format!("SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1 AND lease_until > {NOW_MS})"),
            &[&owner],
        )
        .await?
        .get(0);
    if !live {
        // Rolled back here and now: a transaction left to its drop would hold the claim lock
        // until this connection is next driven.
        tx.rollback().await?;
        return Ok(Err(WriteError::Elsewhere(format!(
            "this instance's lease on the shared store has run out (instance {owner}); try again shortly or on another instance"
        ))));
    }
    let devices: Vec<&str> = jobs.iter().map(|job| job.device.as_str()).collect();
    let busy = tx
        .query_opt(
            &format!(
                "SELECT j.device, j.owner FROM jobs j
                 WHERE j.device = ANY($1) AND j.state IN {unfinished} AND j.owner <> $2
                   AND EXISTS (SELECT 1 FROM instances i WHERE i.id = j.owner AND i.lease_until > {NOW_MS})
                 LIMIT 1",
                unfinished = super::lease::unfinished()
            ),
            &[&devices, &owner],
        )
        .await?;
    if let Some(row) = busy {
        let (device, other): (String, String) = (row.get(0), row.get(1));
        tx.rollback().await?;
        return Ok(Err(WriteError::Elsewhere(format!(
            "device {device} has an unfinished job driven by instance {other}: one instance drives a device at a \
             time, so make this job there or when that one has ended"
        ))));
    }
    let count = i64::try_from(jobs.len()).unwrap_or(i64::MAX);
    let ids: Vec<i64> = tx
        .query("SELECT nextval('job_ids') FROM generate_series(1, $1::bigint)", &[&count])
        .await?
        .iter()
        .map(|row| row.get::<_, i64>(0))
        .collect();
    let highest = ids.iter().copied().max().unwrap_or(0);
    // The last id, JobId::MAX, is never given (as the engine's own allocator never gives it).
    let Some(ids32) = ids
        .iter()
        .map(|&id| u32::try_from(id).ok().map(JobId::new).filter(|&id| id < JobId::MAX))
        .collect::<Option<Vec<_>>>()
    else {
        tx.rollback().await?;
        return Ok(Err(WriteError::IdsExhausted));
    };
    keep_images(&tx, jobs).await?;
    let names: Vec<&str> = jobs.iter().map(|job| job.image.name()).collect();
    let sizes: Vec<i64> = jobs.iter().map(|job| big(job.image.size())).collect();
    let hashes: Vec<String> =
        jobs.iter().map(|job| crate::protocol::sha256_hex(job.image.sha256())).collect();
    let chunk_sizes: Vec<i64> = jobs.iter().map(|job| i64::from(job.chunk_size)).collect();
    let intervals: Vec<i64> = jobs.iter().map(|job| big(job.chunk_interval_ms)).collect();
    let totals: Vec<i64> = jobs.iter().map(|job| i64::from(job.chunks_total)).collect();
    let created: Vec<i64> = jobs.iter().map(|job| big(job.created_at)).collect();
    let rollouts: Vec<Option<i64>> = jobs.iter().map(|job| job.rollout.map(|r| big(r.get()))).collect();
    let forced: Vec<bool> = jobs.iter().map(|job| job.force).collect();
    let deltas: Vec<Option<String>> =
        jobs.iter().map(|job| crate::store::backend::delta_column(job.delta.as_ref())).collect();
    let manifests: Vec<Option<&[u8]>> =
        jobs.iter().map(|job| job.manifest.as_ref().map(|m| m.bytes().as_ref())).collect();
    let aws: Vec<Option<String>> =
        jobs.iter().map(|job| crate::store::backend::aws_column(job.aws.as_ref())).collect();
    tx.execute(
        "INSERT INTO jobs (id, device, image_name, image_size, image_sha256, chunk_size, chunk_interval_ms,
                           state, chunks_total, created_at, rollout_id, owner, force, manifest, delta, aws)
         SELECT id, device, name, size, sha, chunk, every, 'queued', total, created, rollout, $11, forced, signed,
                patch, agent
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[],
                     $8::bigint[], $9::bigint[], $10::bigint[], $12::boolean[], $13::bytea[], $14::text[],
                     $15::text[])
              AS j(id, device, name, size, sha, chunk, every, total, created, rollout, forced, signed, patch, agent)",
        &[
            &ids, &devices, &names, &sizes, &hashes, &chunk_sizes, &intervals, &totals, &created, &rollouts, &owner,
            &forced, &manifests, &deltas, &aws,
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO job_events (job_id, at, state, detail)
         SELECT id, at, 'queued', 'created' FROM unnest($1::bigint[], $2::bigint[]) AS e(id, at)",
        &[&ids, &created],
    )
    .await?;
    tx.execute("UPDATE rocky_meta SET value = greatest(value, $1) WHERE key = 'last_job_id'", &[&highest])
        .await?;
    tx.commit().await?;
    Ok(Ok(ids32))
}

/// Stores the images of `jobs` the database does not hold yet (their bytes cross the wire only
/// then), so any instance can drive the jobs.
async fn keep_images(
    tx: &tokio_postgres::Transaction<'_>,
    jobs: &[NewJob],
) -> Result<(), tokio_postgres::Error> {
    let mut distinct: std::collections::BTreeMap<String, &crate::firmware::Image> =
        std::collections::BTreeMap::new();
    for job in jobs {
        distinct.entry(crate::protocol::sha256_hex(job.image.sha256())).or_insert(&job.image);
    }
    let hashes: Vec<&str> = distinct.keys().map(String::as_str).collect();
    // Marked as just used, so a sweep (which spares images used in the last hour) leaves them.
    let held: HashSet<String> = tx
        .query(
            &format!("UPDATE images SET kept_at = {NOW_MS} WHERE sha256 = ANY($1) RETURNING sha256"),
            &[&hashes],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (sha256, image) in distinct.iter().filter(|(sha256, _)| !held.contains(*sha256)) {
        tx.execute(
            &format!(
                "INSERT INTO images (sha256, bytes, kept_at) VALUES ($1, $2, {NOW_MS})
                 ON CONFLICT (sha256) DO UPDATE SET kept_at = excluded.kept_at"
            ),
            &[sha256, &image.bytes().as_ref()],
        )
        .await?;
    }
    Ok(())
}

/// Job changes, timeline entries, deletions and the wire's device news, in one transaction.
/// A job's row and timeline are written only while `owner` drives it: an instance whose lease
/// ran out cannot overwrite what the instance that took the job over has written since.
pub async fn flush(
    client: &mut Client,
    changes: &Changes<'_>,
    owner: &str,
) -> Result<(), tokio_postgres::Error> {
    let Changes { jobs, history, deletes, devices } = changes;
    let tx = client.transaction().await?;
    if !devices.is_empty() {
        let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        let first: Vec<Option<i64>> = devices.iter().map(|d| d.first_seen.map(big)).collect();
        let last: Vec<Option<i64>> = devices.iter().map(|d| d.last_seen.map(big)).collect();
        let names: Vec<Option<&str>> =
            devices.iter().map(|d| d.last_image.as_ref().map(|i| &*i.name)).collect();
        let sizes: Vec<Option<i64>> =
            devices.iter().map(|d| d.last_image.as_ref().map(|i| big(i.size))).collect();
        let hashes: Vec<Option<&str>> =
            devices.iter().map(|d| d.last_image.as_ref().map(|i| &*i.sha256)).collect();
        let jobs_of: Vec<Option<i64>> =
            devices.iter().map(|d| d.last_job.map(|j| i64::from(j.get()))).collect();
        let running: Vec<Option<String>> =
            devices.iter().map(crate::store::device_rows::running_json).collect();
        let running_at: Vec<Option<i64>> =
            devices.iter().map(|d| d.running.as_ref().map(|r| big(r.reported_at))).collect();
        tx.execute(
            "INSERT INTO devices AS d (id, first_seen, last_seen, last_image_name, last_image_size, last_image_sha256, last_job,
                                       running, running_at)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::bigint[],
                                  $8::text[], $9::bigint[])
             ON CONFLICT (id) DO UPDATE SET
                first_seen = coalesce(d.first_seen, excluded.first_seen),
                last_seen = greatest(coalesce(d.last_seen, 0), coalesce(excluded.last_seen, 0)),
                last_image_name = coalesce(excluded.last_image_name, d.last_image_name),
                last_image_size = coalesce(excluded.last_image_size, d.last_image_size),
                last_image_sha256 = coalesce(excluded.last_image_sha256, d.last_image_sha256),
                last_job = greatest(coalesce(d.last_job, 0), coalesce(excluded.last_job, 0)),
                running = excluded.running,
                running_at = excluded.running_at",
            &[&ids, &first, &last, &names, &sizes, &hashes, &jobs_of, &running, &running_at],
        )
        .await?;
    }
    if !jobs.is_empty() {
        let ids: Vec<i64> = jobs.iter().map(|j| i64::from(j.id.get())).collect();
        let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
        let sent: Vec<i64> = jobs.iter().map(|j| i64::from(j.chunks_done)).collect();
        let bytes: Vec<i64> = jobs.iter().map(|j| big(j.bytes_sent)).collect();
        let attempts: Vec<i64> = jobs.iter().map(|j| i64::from(j.attempts)).collect();
        let errors: Vec<Option<&str>> = jobs.iter().map(|j| j.error.as_deref()).collect();
        let started: Vec<Option<i64>> = jobs.iter().map(|j| j.started_at.map(big)).collect();
        let finished: Vec<Option<i64>> = jobs.iter().map(|j| j.finished_at.map(big)).collect();
        let confirmed: Vec<Option<i64>> = jobs.iter().map(|j| j.chunks_confirmed.map(i64::from)).collect();
        let windows: Vec<Option<i64>> = jobs.iter().map(|j| j.window.map(i64::from)).collect();
        let codes: Vec<Option<i64>> = jobs.iter().map(|j| j.reason_code.map(big)).collect();
        let boots: Vec<Option<i64>> = jobs.iter().map(|j| j.confirm_boot.map(big)).collect();
        let confirmed_at: Vec<Option<i64>> = jobs.iter().map(|j| j.confirmed_at.map(big)).collect();
        let totals: Vec<i64> = jobs.iter().map(|j| i64::from(j.chunks_total)).collect();
        let deltas: Vec<Option<String>> =
            jobs.iter().map(|j| crate::store::backend::delta_column(j.delta.as_deref())).collect();
        let agents: Vec<Option<String>> =
            jobs.iter().map(|j| crate::store::backend::aws_column(j.aws.as_deref())).collect();
        tx.execute(
            "UPDATE jobs SET state = u.state, chunks_sent = u.sent, bytes_sent = u.bytes, attempts = u.attempts,
                             error = u.error, started_at = u.started, finished_at = u.finished,
                             chunks_confirmed = u.confirmed, flow_window = u.win, reason_code = u.code,
                             confirm_boot = u.boot, confirmed_at = u.confirmed_at, chunks_total = u.total,
                             delta = u.patch, aws = u.agent
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[],
                         $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $13::bigint[],
                         $14::bigint[], $15::bigint[], $16::text[], $17::text[])
                  AS u(id, state, sent, bytes, attempts, error, started, finished, confirmed, win, code, boot,
                       confirmed_at, total, patch, agent)
             WHERE jobs.id = u.id AND jobs.owner = $12",
            &[
                &ids, &states, &sent, &bytes, &attempts, &errors, &started, &finished, &confirmed, &windows, &codes,
                &owner, &boots, &confirmed_at, &totals, &deltas, &agents,
            ],
        )
        .await?;
    }
    if !history.is_empty() {
        let ids: Vec<i64> = history.iter().map(|h| i64::from(h.job.get())).collect();
        let at: Vec<i64> = history.iter().map(|h| big(h.at)).collect();
        let states: Vec<&str> = history.iter().map(|h| h.state.as_str()).collect();
        let details: Vec<Option<&str>> = history.iter().map(|h| h.detail.as_deref()).collect();
        let attempts: Vec<Option<i64>> = history.iter().map(|h| h.attempt.map(i64::from)).collect();
        // In the order given (WITH ORDINALITY), and only for jobs that still exist.
        tx.execute(
            "INSERT INTO job_events (job_id, at, state, detail, attempt)
             SELECT e.id, e.at, e.state, e.detail, e.attempt
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])
                  WITH ORDINALITY AS e(id, at, state, detail, attempt, n)
             WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.id = e.id AND jobs.owner = $6)
             ORDER BY e.n",
            &[&ids, &at, &states, &details, &attempts, &owner],
        )
        .await?;
    }
    if !deletes.is_empty() {
        let ids: Vec<i64> = deletes.iter().map(|id| i64::from(id.get())).collect();
        // Retention's deletions (of jobs that ended here, their last change perhaps not yet
        // written) never touch a job another live instance drives.
        tx.execute(
            &format!(
                "DELETE FROM jobs WHERE id = ANY($1)
                   AND (owner IS NULL OR owner = $2
                        OR NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = jobs.owner AND i.lease_until > {NOW_MS}))"
            ),
            &[&ids, &owner],
        )
        .await?;
    }
    tx.commit().await
}

/// Registers devices (the operator's columns only), all or none.
pub async fn register(client: &mut Client, rows: &[(DeviceId, Labels)]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let labels: Vec<String> = rows
        .iter()
        .map(|(_, labels)| serde_json::to_string(labels).unwrap_or_else(|_| "{}".into()))
        .collect();
    client
        .execute(
            "INSERT INTO devices AS d (id, labels, registered)
             SELECT id, labels, true FROM unnest($1::text[], $2::text[]) AS r(id, labels)
             ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, registered = true",
            &[&ids, &labels],
        )
        .await
        .map(|_| ())
}

/// Writes rollouts while `planner` plans them: `Err` with the reason (nothing written) when
/// another instance holds the role by now, so a planner that lost it cannot overwrite its
/// successor's rollouts.
pub async fn save_rollouts(
    client: &mut Client,
    rows: &[RolloutRow],
    planner: &str,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let holder = tx.query_opt("SELECT instance FROM leaders WHERE role = 'rollouts' FOR SHARE", &[]).await?;
    if let Some(holder) = holder.map(|row| row.get::<_, String>(0)).filter(|holder| holder != planner) {
        tx.rollback().await?;
        return Ok(Err(format!(
            "rollouts are planned by instance {holder} now; this instance's changes were not written"
        )));
    }
    for row in rows {
        tx.execute(
            "INSERT INTO rollouts (id, state, body, updated_at, saved)
                VALUES ($1, $2, $3, $4, nextval('rollout_saves'))
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = excluded.body,
                                            updated_at = excluded.updated_at, saved = excluded.saved",
            &[&big(row.id.get()), &row.state, &row.body, &big(row.updated_at)],
        )
        .await?;
        if row.devices.is_empty() {
            continue;
        }
        let positions: Vec<i64> = row.devices.iter().map(|(at, _)| big(*at)).collect();
        let devices: Vec<&str> = row.devices.iter().map(|(_, s)| s.device_id.as_str()).collect();
        let outcomes: Vec<String> = row.devices.iter().map(|(_, s)| outcome_name(s.outcome)).collect();
        let jobs: Vec<Option<i64>> =
            row.devices.iter().map(|(_, s)| s.job_id.map(|j| i64::from(j.get()))).collect();
        let attempts: Vec<i64> = row.devices.iter().map(|(_, s)| i64::from(s.attempts)).collect();
        let retry: Vec<Option<i64>> = row.devices.iter().map(|(_, s)| s.retry_at.map(big)).collect();
        let details: Vec<Option<&str>> = row.devices.iter().map(|(_, s)| s.detail.as_deref()).collect();
        tx.execute(
            "INSERT INTO rollout_devices (rollout_id, position, device, outcome, job_id, attempts, retry_at, detail)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                                      $7::bigint[], $8::text[])
             ON CONFLICT (rollout_id, position) DO UPDATE SET device = excluded.device,
                outcome = excluded.outcome, job_id = excluded.job_id, attempts = excluded.attempts,
                retry_at = excluded.retry_at, detail = excluded.detail",
            &[&big(row.id.get()), &positions, &devices, &outcomes, &jobs, &attempts, &retry, &details],
        )
        .await?;
    }
    tx.commit().await.map(Ok)
}

pub async fn forget_rollouts(client: &mut Client, ids: &[RolloutId]) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<i64> = ids.iter().map(|id| big(id.get())).collect();
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM rollouts WHERE id = ANY($1)", &[&ids]).await?;
    tx.execute("DELETE FROM rollout_devices WHERE rollout_id = ANY($1)", &[&ids]).await?;
    tx.commit().await
}

/// The images stored jobs and open rollouts name.
pub async fn images_needed(client: &mut Client) -> Result<HashSet<String>, tokio_postgres::Error> {
    // Images no job or open rollout names go from the database too.
    client
        .execute(
            &format!(
                "DELETE FROM images i
             WHERE i.kept_at < {NOW_MS} - 3600000
               AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.image_sha256 = i.sha256)
               AND NOT EXISTS (SELECT 1 FROM rollouts r
                               WHERE r.state IN ('scheduled', 'running', 'paused')
                                 AND (r.body::jsonb) #>> '{{plan,image,sha256}}' = i.sha256)"
            ),
            &[],
        )
        .await?;
    let rows = client
        .query(
            "SELECT DISTINCT image_sha256 FROM jobs
             UNION SELECT (body::jsonb) #>> '{plan,image,sha256}' FROM rollouts
                   WHERE state IN ('scheduled', 'running', 'paused')",
            &[],
        )
        .await?;
    Ok(rows.iter().filter_map(|row| row.get::<_, Option<String>>(0)).collect())
}
