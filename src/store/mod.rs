//! Durable jobs: an embedded SQLite database (WAL) in the data directory, the images behind the
//! jobs kept content-addressed beside it, and a lock so that one Rocky owns the directory.
//!
//! Writes never stall the engine. Job creation is committed before the API answers (so a `201`
//! means the job survives a crash), and everything after that (state changes, progress) is
//! written by a writer thread in batches: the runtime hands it what changed at most every
//! [`FLUSH_INTERVAL`], coalescing while a write is in progress. A crash therefore loses at most
//! the changes of the last interval plus one write; jobs that were active go back to `queued`
//! on restart and run again from FOTA_REQUEST (devices that kept their chunks resume).

mod backend;
mod device_rows;
mod lock;
pub mod postgres;
mod rollout_rows;
pub mod sqlite;
mod write_error;
mod writer;

impl crate::inventory::DeviceRecords for Store {
    fn register(&self, rows: Vec<(DeviceId, Labels)>) -> crate::inventory::Recording<'_> {
        Box::pin(self.register_devices(rows))
    }

    fn forget(&self, id: DeviceId) -> crate::inventory::Recording<'_> {
        Box::pin(self.forget_device(id))
    }
}

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod test_support;

/// A place in the writer's queue for one flush ([`Store::flush_permit`]).
pub(crate) struct FlushPermit<'a>(mpsc::Permit<'a, Write>);

impl FlushPermit<'_> {
    /// Hands the changes to the writer, without waiting.
    pub(crate) fn send(self, jobs: Vec<JobSnapshot>, history: Vec<HistoryRecord>, devices: Vec<Device>) {
        self.0.send(Write::Flush { jobs, history, devices, done: None });
    }
}

#[cfg(test)]
mod tests;

pub use crate::snapshot::JobSnapshot;
pub use lock::DataDirLock;
pub use postgres::{Membership, PgError, PgSettings, ScratchDatabase, Seen, lease};
pub use records::{HistoryRecord, NewJob};
pub use rollout_rows::{RolloutRow, StoredRollouts};
pub use sqlite::schema::{SCHEMA_VERSION, migrate_to};
pub use sqlite::{DB_FILE, open_read_only};
pub use write_error::{WriteError, is_disk_full};

mod records;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::engine::{JobId, RolloutId};
use crate::firmware::ImageStore;
use crate::inventory::{Device, Labels};
use crate::protocol::DeviceId;
use backend::{Backend, Reads};

/// How often the runtime hands changes to the writer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    #[error("{path} is not a Rocky database ({reason}); it was left untouched")]
    Foreign { path: PathBuf, reason: String },
    #[error("{path} was written by a newer Rocky (schema {found}, this one knows up to {SCHEMA_VERSION})")]
    TooNew { path: PathBuf, found: i64 },
    #[error("database {path}: {source}")]
    Sql { path: PathBuf, source: rusqlite::Error },
    #[error("image store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the store's writer has stopped")]
    Stopped,
    #[error("the job store {0} does not exist yet")]
    NoDatabase(PathBuf),
    #[error(transparent)]
    Postgres(#[from] PgError),
}

/// What the writer thread is asked to do.
pub(crate) enum Write {
    Create {
        jobs: Vec<NewJob>,
        reply: oneshot::Sender<Result<Vec<JobId>, WriteError>>,
    },
    /// Job changes, timeline entries and what the wire told of devices, in one transaction.
    Flush {
        jobs: Vec<JobSnapshot>,
        history: Vec<HistoryRecord>,
        devices: Vec<Device>,
        done: Option<oneshot::Sender<()>>,
    },
    Delete {
        ids: Vec<JobId>,
    },
    /// Devices registered by an operator, with their labels: committed before the answer.
    Register {
        rows: Vec<(DeviceId, Labels)>,
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    Forget {
        id: DeviceId,
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    /// Rollouts as they are now (id, state, the whole as JSON); `reply` for one that must be on
    /// disk before an answer.
    Rollouts {
        rollouts: Vec<RolloutRow>,
        reply: Option<oneshot::Sender<Result<(), WriteError>>>,
    },
    /// Ended rollouts that retention removed.
    ForgetRollouts {
        ids: Vec<RolloutId>,
    },
    /// One audit entry, committed before the action's answer.
    Audit {
        entry: crate::audit::NewEntry,
        /// The most entries kept: the oldest past it go in the same transaction.
        keep: u64,
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    /// Audit entries older than `before` (Unix ms), removed by retention.
    PruneAudit {
        before: i64,
    },
}

/// A cheap handle to the open store: writes go to the writer thread, reads use their own
/// connections (SQLite's WAL, PostgreSQL's pool), so they never wait for a write.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::Sender<Write>,
    reads: Reads,
    images: ImageStore,
    /// The database file or URL, for messages (never with a password).
    location: String,
    /// How long each write transaction takes (exported as a metric).
    write_latency: prometheus_client::metrics::histogram::Histogram,
    health: Health,
    /// The id mark `rocky.ids` held when the store opened.
    ids_mark: JobId,
    /// This instance's lease on a database shared with others (PostgreSQL only).
    membership: Option<Arc<Membership>>,
    /// The most audit entries kept (`store.keep_audit`).
    audit_keep: u64,
    _lock: Arc<DataDirLock>,
}

/// Whether the writer's last write failed, and why; shared with `/healthz`.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<Option<String>>>);

impl Health {
    pub fn problem(&self) -> Option<String> {
        self.0.lock().ok().and_then(|p| p.clone())
    }

    fn set(&self, problem: Option<String>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = problem;
        }
    }
}

impl Store {
    /// Why the store cannot write right now, or this instance's lease cannot be renewed, if
    /// so (changes are kept and retried).
    pub fn problem(&self) -> Option<String> {
        self.health.problem().or_else(|| self.membership.as_ref().and_then(|m| m.problem()))
    }

    /// Whether the store numbers new jobs itself (a shared database's one sequence) rather than
    /// recording the ids the engine reserved.
    pub fn draws_ids(&self) -> bool {
        self.membership.is_some()
    }

    /// This instance's membership of a shared database: its lease and its claims.
    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.membership.as_ref()
    }

    /// The write-latency histogram the writer thread fills.
    pub fn write_latency(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.write_latency.clone()
    }

    /// Locks `data_dir`, opens (or creates) its SQLite database, checks it is Rocky's, migrates
    /// it and starts the writer. A foreign or damaged file is an error and is never written to.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let lock = Self::lock(data_dir)?;
        let (backend, reader, mark) = sqlite::Sqlite::open(data_dir)?;
        let location = data_dir.join(DB_FILE).display().to_string();
        Self::start(backend, Reads::Sqlite(reader), location, data_dir, mark, lock)
    }

    /// Locks `data_dir` (the images and uploads stay there) and opens the PostgreSQL database
    /// `settings` names: checked to be Rocky's (or empty), migrated, with the writer started.
    /// This process joins as `instance` with a lease of `lease`, renewed until the store is
    /// dropped.
    pub async fn open_postgres(
        settings: &PgSettings,
        data_dir: &Path,
        instance: &str,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        let lock = Self::lock(data_dir)?;
        let (backend, reader) = postgres::open(settings, instance).await?;
        let membership = Membership::join(reader.clone(), instance, lease).await?;
        let mut store =
            Self::start(backend, Reads::Postgres(reader), settings.url().to_owned(), data_dir, 0, lock)?;
        store.membership = Some(membership);
        Ok(store)
    }

    fn lock(data_dir: &Path) -> Result<DataDirLock, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.to_path_buf(), source })?;
        Ok(DataDirLock::acquire(data_dir)?)
    }

    fn start(
        backend: impl Backend,
        reads: Reads,
        location: String,
        data_dir: &Path,
        ids_mark: i64,
        lock: DataDirLock,
    ) -> Result<Self, StoreError> {
        let images = ImageStore::new(data_dir.join("firmware"));
        let (writes, rx) = mpsc::channel(1);
        let write_latency = crate::metrics::Metrics::store_write_histogram();
        let health = Health::default();
        writer::spawn(
            backend,
            rx,
            images.clone(),
            data_dir.to_path_buf(),
            write_latency.clone(),
            health.clone(),
        )?;
        Ok(Self {
            writes,
            reads,
            images,
            location,
            write_latency,
            health,
            ids_mark: u32::try_from(ids_mark).map_or(JobId::MAX, JobId::new),
            membership: None,
            audit_keep: crate::audit::DEFAULT_KEEP,
            _lock: Arc::new(lock),
        })
    }

    /// Keeps at most `keep` audit entries (at least 1), the oldest going first.
    pub fn with_audit_keep(mut self, keep: u64) -> Self {
        self.audit_keep = keep.max(1);
        self
    }

    /// Writes an audit entry and waits until it is committed (dropping the oldest past the
    /// bound).
    pub async fn audit(&self, entry: crate::audit::NewEntry) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Write::Audit { entry, keep: self.audit_keep, reply })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Removes audit entries older than `before` (Unix ms), without waiting.
    pub async fn prune_audit(&self, before: i64) {
        let _ = self.writes.send(Write::PruneAudit { before }).await;
    }

    /// The audit entries `query` matches, by id, at most `query.limit`.
    pub async fn read_audit(
        &self,
        query: crate::audit::Query,
    ) -> Result<Vec<crate::audit::Entry>, StoreError> {
        self.reads.audit(query).await
    }

    /// The database file or URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// Saves the images and inserts the jobs in one transaction synced to disk: all of them or
    /// none. SQLite writes them under the ids the engine reserved, recording the highest first
    /// so no id is ever given twice, even after a lost write-ahead log; PostgreSQL draws them
    /// from the sequence every instance shares (see [`Store::draws_ids`]).
    ///
    /// Returns the ids the jobs were stored under, in the order given.
    pub async fn create(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.writes.send(Write::Create { jobs, reply }).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Room for one flush in the writer's queue, unless it is still busy with the last ones.
    /// Taken before the flush is built: building snapshots of every changed job to hand them
    /// back when the queue is full was done every 100 ms while a rollout kept the writer busy.
    pub(crate) fn flush_permit(&self) -> Option<FlushPermit<'_>> {
        self.writes.try_reserve().ok().map(FlushPermit)
    }

    /// Writes everything given and waits until it is committed (a stop, a cancel).
    pub async fn flush_and_wait(&self, jobs: Vec<JobSnapshot>, history: Vec<HistoryRecord>) {
        self.flush_everything_and_wait(jobs, history, Vec::new()).await;
    }

    /// Like [`Store::flush_and_wait`], with what the wire told of devices.
    pub async fn flush_everything_and_wait(
        &self,
        jobs: Vec<JobSnapshot>,
        history: Vec<HistoryRecord>,
        devices: Vec<Device>,
    ) {
        let (done, committed) = oneshot::channel();
        if self.writes.send(Write::Flush { jobs, history, devices, done: Some(done) }).await.is_ok() {
            let _ = committed.await;
        }
    }

    pub async fn delete(&self, ids: Vec<JobId>) {
        let _ = self.writes.send(Write::Delete { ids }).await;
    }

    /// Every job, oldest first, and the highest id ever given.
    pub async fn load(&self) -> Result<(Vec<JobSnapshot>, JobId), StoreError> {
        let (jobs, last) = self.reads.jobs().await?;
        if self.ids_mark > last {
            tracing::warn!(
                lost_from = last.next().get(),
                lost_to = self.ids_mark.get(),
                "ids up to lost_to were handed out but the database ends at lost_from - 1: those jobs \
                 were lost (a damaged or lost write-ahead log) or their creation failed; ids continue \
                 after the highest ever given"
            );
        }
        Ok((jobs, last.max(self.ids_mark)))
    }

    /// Registers devices (all or none), synced to disk before this returns.
    pub async fn register_devices(&self, rows: Vec<(DeviceId, Labels)>) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.writes.send(Write::Register { rows, reply }).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    pub async fn forget_device(&self, id: DeviceId) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.writes.send(Write::Forget { id, reply }).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Writes rollouts and waits until they are on disk.
    pub async fn save_rollouts(&self, rollouts: Vec<RolloutRow>) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        let write = Write::Rollouts { rollouts, reply: Some(reply) };
        self.writes.send(write).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Removes ended rollouts (retention), without waiting.
    pub async fn forget_rollouts(&self, ids: Vec<RolloutId>) {
        let _ = self.writes.send(Write::ForgetRollouts { ids }).await;
    }

    /// Brings the images `jobs` need into this instance's image store from the shared database
    /// (the instance that created the jobs put them there); nothing to do with SQLite. An image
    /// the database does not hold either is left for the restore to report.
    pub async fn fetch_images(&self, jobs: &[JobSnapshot]) -> Result<(), StoreError> {
        let Reads::Postgres(reader) = &self.reads else { return Ok(()) };
        let mut wanted: Vec<&crate::snapshot::ImageInfo> = Vec::new();
        for job in jobs {
            if !wanted.iter().any(|image| image.sha256 == job.image.sha256) {
                wanted.push(&job.image);
            }
        }
        for image in wanted {
            let Ok(sha) = crate::firmware::parse_sha256(&image.sha256) else { continue };
            if self.images.path(&sha).is_file() {
                continue;
            }
            if let Some(bytes) = reader.image(&image.sha256).await? {
                let image = crate::firmware::Image::new(&*image.name, bytes::Bytes::from(bytes));
                let images = self.images.clone();
                tokio::task::spawn_blocking(move || images.save(&image))
                    .await
                    .map_err(|_| StoreError::Stopped)?
                    .map_err(|source| StoreError::Io { path: self.images.dir().to_path_buf(), source })?;
            }
        }
        Ok(())
    }

    /// Every stored rollout, by id.
    pub async fn load_rollouts(&self) -> Result<Vec<crate::rollout::Rollout>, StoreError> {
        Ok(self.reads.rollouts_saved_since(&std::collections::HashMap::new()).await?.read)
    }

    /// The rollouts saved since `known` (each one's save number as last read), and every
    /// stored rollout's save number.
    pub async fn rollouts_saved_since(
        &self,
        known: &std::collections::HashMap<RolloutId, i64>,
    ) -> Result<StoredRollouts, StoreError> {
        self.reads.rollouts_saved_since(known).await
    }

    /// Every job a rollout created, as (job, device), by job id.
    pub async fn rollout_jobs(&self, rollout: RolloutId) -> Result<Vec<(JobId, String)>, StoreError> {
        self.reads.rollout_jobs(rollout).await
    }

    /// Every device in the inventory, by id. On PostgreSQL it counts as a read of the devices:
    /// [`Store::refresh_devices`] then reads what changed after it.
    pub async fn load_devices(&self) -> Result<Vec<Device>, StoreError> {
        self.reads.devices().await
    }

    /// Hands the devices to `batch` a few thousand at a time on PostgreSQL (so a whole read of
    /// 100,000 is never held at once beside the inventory): with `whole` every one, else those whose rows
    /// changed since this store's last read of the devices, [`Store::load_devices`] included
    /// (every device the first time, and always with SQLite): what other instances wrote.
    pub async fn refresh_devices(
        &self,
        whole: bool,
        batch: impl FnMut(Vec<Device>) + Send,
    ) -> Result<(), StoreError> {
        self.reads.devices_in_batches(whole, batch).await
    }

    /// A job's stored timeline, oldest first.
    pub async fn history(&self, id: JobId) -> Result<Vec<HistoryRecord>, StoreError> {
        self.reads.history(id).await
    }
}

pub use sqlite::devices::load as read_devices;
pub use sqlite::reader::{history as read_history, load as read_jobs};
