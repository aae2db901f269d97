//! Reading jobs, timelines, devices and rollouts back from PostgreSQL, on pooled connections.
//! A row Rocky would refuse (a bad device id, a number out of range) is skipped with a warning,
//! as the SQLite reader does.

use std::collections::HashMap;

use tokio_postgres::Row;

use super::changed_rows::Seen;
use super::{PgError, Reader};
use crate::engine::{JobId, JobState, RolloutId};
use crate::inventory::{Device, Labels};
use crate::protocol::DeviceId;
use crate::rollout::Slot;
use crate::snapshot::ImageInfo;
use crate::store::rollout_rows::{StoredRollouts, assemble, slot};
use crate::store::{HistoryRecord, JobSnapshot, StoreError};

/// A column as the unsigned type Rocky uses, or why not.
fn num<T: TryFrom<i64>>(row: &Row, column: &str) -> Result<T, String> {
    let value: i64 = row.try_get(column).map_err(|e| format!("{column}: {e}"))?;
    T::try_from(value).map_err(|_| format!("{column} {value} is out of range"))
}

fn opt<T: TryFrom<i64>>(row: &Row, column: &str) -> Result<Option<T>, String> {
    let value: Option<i64> = row.try_get(column).map_err(|e| format!("{column}: {e}"))?;
    value.map(|v| T::try_from(v).map_err(|_| format!("{column} {v} is out of range"))).transpose()
}

fn text(row: &Row, column: &str) -> Result<String, String> {
    row.try_get(column).map_err(|e| format!("{column}: {e}"))
}

fn opt_text(row: &Row, column: &str) -> Result<Option<String>, String> {
    row.try_get(column).map_err(|e| format!("{column}: {e}"))
}

/// The columns a job is read from, named once for every query that reads jobs.
const JOB_COLUMNS: &str = "id, device, image_name, image_size, image_sha256, chunk_size, chunk_interval_ms, state, \
                           chunks_sent, chunks_confirmed, flow_window, chunks_total, bytes_sent, attempts, error, \
                           created_at, started_at, finished_at, rollout_id, reason_code, force, confirm_boot, \
                           confirmed_at, manifest, delta, aws";

fn job(row: &Row) -> Result<JobSnapshot, String> {
    let id = JobId::new(num(row, "id")?);
    let device_id = DeviceId::parse(&text(row, "device")?).map_err(|e| format!("job {id}: {e}"))?;
    Ok(JobSnapshot {
        id,
        device_id,
        image: ImageInfo {
            name: text(row, "image_name")?.into(),
            size: num(row, "image_size")?,
            sha256: text(row, "image_sha256")?.into(),
        },
        chunk_size: num(row, "chunk_size")?,
        chunk_interval_ms: num(row, "chunk_interval_ms")?,
        state: JobState::parse(&text(row, "state")?).map_err(|e| format!("job {id}: {e}"))?,
        chunks_done: num(row, "chunks_sent")?,
        chunks_confirmed: opt(row, "chunks_confirmed")?,
        window: opt(row, "flow_window")?,
        chunks_total: num(row, "chunks_total")?,
        bytes_sent: num(row, "bytes_sent")?,
        rollout_id: opt(row, "rollout_id")?.map(RolloutId::new),
        attempts: num(row, "attempts")?,
        error: opt_text(row, "error")?,
        reason_code: opt(row, "reason_code")?,
        created_at: num(row, "created_at")?,
        started_at: opt(row, "started_at")?,
        finished_at: opt(row, "finished_at")?,
        force: row.try_get("force").map_err(|e| format!("force: {e}"))?,
        confirm_boot: opt(row, "confirm_boot")?,
        confirmed_at: opt(row, "confirmed_at")?,
        manifest: crate::store::backend::stored_manifest(
            row.try_get::<_, Option<Vec<u8>>>("manifest").map_err(|e| format!("manifest: {e}"))?.as_deref(),
        ),
        delta: crate::store::backend::stored_delta(opt_text(row, "delta")?.as_deref()),
        aws: crate::store::backend::stored_aws(opt_text(row, "aws")?.as_deref()),
    })
}

fn device(row: &Row) -> Result<Device, String> {
    let device_id = DeviceId::parse(&text(row, "id")?).map_err(|e| e.to_string())?;
    let running = crate::store::device_rows::running_from(&device_id, opt_text(row, "running")?.as_deref());
    let labels: Labels = match serde_json::from_str(&text(row, "labels")?) {
        Ok(labels) => labels,
        Err(e) => {
            tracing::warn!(device = %device_id, reason = %e, "a stored device's labels were unreadable; it has none");
            Labels::new()
        }
    };
    let last_image = match (
        opt_text(row, "last_image_name")?,
        opt(row, "last_image_size")?,
        opt_text(row, "last_image_sha256")?,
    ) {
        (Some(name), Some(size), Some(sha256)) => {
            Some(ImageInfo { name: name.into(), size, sha256: sha256.into() })
        }
        _ => None,
    };
    Ok(Device {
        device_id,
        labels,
        registered: row.try_get("registered").map_err(|e| e.to_string())?,
        first_seen: opt(row, "first_seen")?,
        // 0 is the "never" a merge writes.
        last_seen: opt::<u64>(row, "last_seen")?.filter(|t| *t > 0),
        last_image,
        last_job: opt::<u32>(row, "last_job")?.filter(|j| *j > 0).map(JobId::new),
        running,
        // Worked out when shown (its label, or heard on AWS topics).
        profile: crate::inventory::Profile::Rocky,
    })
}

fn rollout_slot(row: &Row) -> Result<Slot, String> {
    slot(
        &text(row, "device")?,
        &text(row, "outcome")?,
        opt(row, "job_id")?.map(JobId::new),
        num(row, "attempts")?,
        row.try_get("retry_at").map_err(|e| e.to_string())?,
        opt_text(row, "detail")?,
    )
}

/// Keeps the rows that read, warning once per row that does not.
fn readable<T>(rows: &[Row], read: impl Fn(&Row) -> Result<T, String>, what: &str) -> Vec<T> {
    rows.iter().filter_map(|row| read_or_warn(row, &read, what)).collect()
}

/// What `read` makes of a row, or `None` with a warning naming `what` was skipped and why.
fn read_or_warn<T>(row: &Row, read: impl Fn(&Row) -> Result<T, String>, what: &str) -> Option<T> {
    read(row).map_err(|reason| tracing::warn!(%reason, "a stored {what} was skipped")).ok()
}

/// Rows handed on at a time by a read of what changed (devices for the inventory, others'
/// jobs for the job table): what is held beside what takes them in.
pub const CHANGED_BATCH: usize = 5_000;

/// A read-only transaction that reads one snapshot throughout (REPEATABLE READ): what its
/// queries read belongs together.
async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// Hands `query`'s rows to `each` one at a time, as they arrive. A table of 100,000 rows is then
/// never held whole as rows (about 240 B a device row) beside what they are read into.
async fn each_row<C: tokio_postgres::GenericClient>(
    client: &C,
    query: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    mut each: impl FnMut(&Row),
) -> Result<(), tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let rows = client.query_raw(query, params.iter().copied()).await?;
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        each(&row);
    }
    Ok(())
}

/// What `read` makes of each of `query`'s rows, read one at a time ([`each_row`]); a row it
/// cannot read is skipped with a warning, as [`readable`] does.
async fn readable_each<C: tokio_postgres::GenericClient, T>(
    client: &C,
    query: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    read: impl Fn(&Row) -> Result<T, String>,
    what: &str,
) -> Result<Vec<T>, tokio_postgres::Error> {
    let mut out = Vec::new();
    each_row(client, query, params, |row| out.extend(read_or_warn(row, &read, what))).await?;
    Ok(out)
}

impl Reader {
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            StoreError::Postgres(PgError::Connect { url: self.url.clone(), reason: pool_reason(&e) })
        })
    }

    fn failed(&self, error: &tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(PgError::new(&self.url, error))
    }

    pub async fn jobs(&self) -> Result<(Vec<JobSnapshot>, JobId), StoreError> {
        let client = self.client().await?;
        let jobs =
            readable_each(&**client, &format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"), &[], job, "job")
                .await
                .map_err(|e| self.failed(&e))?;
        let last: i64 = client
            .query_one("SELECT value FROM rocky_meta WHERE key = 'last_job_id'", &[])
            .await
            .map_err(|e| self.failed(&e))?
            .get(0);
        let last = u32::try_from(last)
            .map_or(JobId::MAX, JobId::new)
            .max(jobs.last().map_or(JobId::new(0), |j| j.id));
        Ok((jobs, last))
    }

    /// The jobs with these ids, by id.
    pub async fn jobs_by_id(&self, ids: &[JobId]) -> Result<Vec<JobSnapshot>, StoreError> {
        let ids: Vec<i64> = ids.iter().map(|id| i64::from(id.get())).collect();
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ANY($1) ORDER BY id"), &[&ids])
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(readable(&rows, job, "job"))
    }

    /// Jobs of `owner` that are not finished, by id: what this instance drives.
    pub async fn unfinished_of(&self, owner: &str) -> Result<Vec<JobSnapshot>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs
                     WHERE owner = $1 AND state IN {}
                     ORDER BY id",
                    super::lease::unfinished()
                ),
                &[&owner],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(readable(&rows, job, "job"))
    }

    /// Hands the jobs other instances drive (or none does) to `batch`, [`CHANGED_BATCH`] at a
    /// time: those whose rows changed since `since` ([`Seen`]), every one without it. Returns
    /// what the next read starts from.
    pub async fn others_changed(
        &self,
        since: Option<&Seen>,
        instance: &str,
        batch: impl FnMut(Vec<JobSnapshot>),
    ) -> Result<Seen, StoreError> {
        let query = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE {} AND owner IS DISTINCT FROM $3 ORDER BY id",
            Seen::rows_since(1)
        );
        self.changed_rows(since, &query, &[&instance], job, "job", batch).await
    }

    /// Reads `query`'s rows in one snapshot, handing what `read` makes of them to `batch`
    /// [`CHANGED_BATCH`] at a time (a row it cannot read is skipped with a warning). `query`
    /// names the rows changed since `since` with [`Seen::rows_since`]`(1)`, its own parameters
    /// `more` from `$3`. Returns the snapshot read in, for the next read.
    async fn changed_rows<T>(
        &self,
        since: Option<&Seen>,
        query: &str,
        more: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        read: impl Fn(&Row) -> Result<T, String>,
        what: &str,
        mut batch: impl FnMut(Vec<T>),
    ) -> Result<Seen, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await.map_err(|e| self.failed(&e))?;
        let seen = Seen::now(&*tx).await.map_err(|e| self.failed(&e))?;
        let since = since.filter(|since| {
            let trusted = since.precedes(&seen);
            if !trusted {
                tracing::warn!(
                    url = %self.url,
                    "PostgreSQL's transaction numbers went back since the last read (another server at this \
                     address?): every stored {what} is read again"
                );
            }
            trusted
        });
        let (after, running) = Seen::params(since);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&after, &running];
        params.extend_from_slice(more);
        let mut pending = Vec::new();
        each_row(&*tx, query, &params, |row| {
            pending.extend(read_or_warn(row, &read, what));
            if pending.len() >= CHANGED_BATCH {
                batch(std::mem::take(&mut pending));
            }
        })
        .await
        .map_err(|e| self.failed(&e))?;
        tx.commit().await.map_err(|e| self.failed(&e))?;
        if !pending.is_empty() {
            batch(pending);
        }
        Ok(seen)
    }

    /// An image's bytes by its SHA-256 (hex), if the database holds it.
    pub async fn image(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT bytes FROM images WHERE sha256 = $1", &[&sha256])
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(row.map(|row| row.get(0)))
    }

    pub async fn history(&self, id: JobId) -> Result<Vec<HistoryRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT job_id, at, state, detail, attempt FROM job_events WHERE job_id = $1 ORDER BY at, seq",
                &[&i64::from(id.get())],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(readable(
            &rows,
            |row| {
                Ok(HistoryRecord {
                    job: JobId::new(num(row, "job_id")?),
                    at: num(row, "at")?,
                    state: JobState::parse(&text(row, "state")?).map_err(|e| e.to_string())?,
                    detail: opt_text(row, "detail")?,
                    attempt: opt(row, "attempt")?,
                })
            },
            "timeline entry",
        ))
    }

    /// The audit entries `query` matches, by id.
    pub async fn audit(&self, query: &crate::audit::Query) -> Result<Vec<crate::audit::Entry>, StoreError> {
        let client = self.client().await?;
        super::audit::read(&client, query).await.map_err(|e| self.failed(&e))
    }

    /// Every device.
    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut all = Vec::new();
        self.devices_in_batches(true, |batch| all.extend(batch)).await?;
        Ok(all)
    }

    /// Hands the devices to `batch`, [`CHANGED_BATCH`] at a time: with `whole` every one, else
    /// those whose rows changed since this reader's last read of the devices (every one the
    /// first time).
    ///
    /// A row names the transaction that last changed it, and each read remembers the snapshot
    /// it read in ([`Seen`]), so the next one reads only what changed since, missing none.
    pub async fn devices_in_batches(
        &self,
        whole: bool,
        batch: impl FnMut(Vec<Device>),
    ) -> Result<(), StoreError> {
        let since =
            if whole { None } else { self.devices_seen.lock().unwrap_or_else(|p| p.into_inner()).clone() };
        let query = format!(
            "SELECT id, labels, registered, first_seen, last_seen, last_image_name, last_image_size,
                    last_image_sha256, last_job, running FROM devices
             WHERE {} ORDER BY id",
            Seen::rows_since(1)
        );
        let seen = self.changed_rows(since.as_ref(), &query, &[], device, "device", batch).await?;
        *self.devices_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
        Ok(())
    }

    /// The rollouts saved since `known` (each rollout's save number as last read; all of them
    /// when it is empty), and the save number of every rollout stored.
    ///
    /// Read in one snapshot, so a rollout's head and devices are those of one save. An
    /// instance that does not plan rollouts asks every two seconds: a 100,000-device rollout is
    /// 100,000 rows, read again only when it was saved again.
    pub async fn rollouts_saved_since(
        &self,
        known: &HashMap<RolloutId, i64>,
    ) -> Result<StoredRollouts, StoreError> {
        let mut client = self.client().await?;
        let tx = snapshot(&mut client).await.map_err(|e| self.failed(&e))?;
        let heads =
            tx.query("SELECT id, saved FROM rollouts ORDER BY id", &[]).await.map_err(|e| self.failed(&e))?;
        let mut stored = StoredRollouts::default();
        for head in heads {
            let (id, saved): (i64, i64) = (head.get("id"), head.get("saved"));
            let Ok(rollout) = u64::try_from(id).map(RolloutId::new) else { continue };
            if known.get(&rollout) == Some(&saved) {
                stored.saves.insert(rollout, Some(saved));
                continue;
            }
            let Some(head) = tx
                .query_opt("SELECT body FROM rollouts WHERE id = $1", &[&id])
                .await
                .map_err(|e| self.failed(&e))?
            else {
                continue;
            };
            let body: String = head.get("body");
            let mut slots: Result<Vec<Slot>, String> = Ok(Vec::new());
            each_row(
                &*tx,
                "SELECT position, device, outcome, job_id, attempts, retry_at, detail
                 FROM rollout_devices WHERE rollout_id = $1 ORDER BY position",
                &[&id],
                |row| {
                    let Ok(read) = &mut slots else { return };
                    let at = read.len();
                    match num::<usize>(row, "position") {
                        Ok(position) if position == at => match rollout_slot(row) {
                            Ok(slot) => read.push(slot),
                            Err(reason) => slots = Err(reason),
                        },
                        _ => slots = Err(format!("device {} of the rollout is missing", at + 1)),
                    }
                },
            )
            .await
            .map_err(|e| self.failed(&e))?;
            let read = slots.and_then(|slots| assemble(&body, slots));
            match read {
                Ok(read) => {
                    stored.saves.insert(rollout, Some(saved));
                    stored.read.push(read);
                }
                // Its save number is kept, so it is not read (and warned about) again every two
                // seconds until it is saved again.
                Err(reason) => {
                    tracing::warn!(rollout = id, %reason, "a stored rollout could not be read; it was skipped");
                    stored.saves.insert(rollout, Some(saved));
                    stored.unreadable.push(rollout);
                }
            }
        }
        tx.commit().await.map_err(|e| self.failed(&e))?;
        Ok(stored)
    }

    pub async fn rollout_jobs(&self, rollout: RolloutId) -> Result<Vec<(JobId, String)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, device FROM jobs WHERE rollout_id = $1 ORDER BY id",
                &[&i64::try_from(rollout.get()).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(readable(&rows, |row| Ok((JobId::new(num(row, "id")?), text(row, "device")?)), "rollout job"))
    }
}

/// Why the pool could not hand out a connection.
fn pool_reason(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(e) => super::reason(e),
        other => other.to_string(),
    }
}
