//! What the store tests share: stores on each backend, and a job to create.

use std::time::Duration;

use bytes::Bytes;

use super::{NewJob, ScratchDatabase, Store};
use crate::engine::JobId;
use crate::firmware::Image;

pub const LEASE: Duration = Duration::from_secs(15);

/// A store with what it lives in, removed when the test ends.
pub struct Opened {
    pub store: Store,
    _dir: tempfile::TempDir,
    _db: Option<ScratchDatabase>,
}

impl Opened {
    /// The PostgreSQL database the store is on, if it is on one.
    pub fn db(&self) -> Option<&ScratchDatabase> {
        self._db.as_ref()
    }
}

pub fn open_sqlite() -> Opened {
    let dir = tempfile::tempdir().unwrap();
    Opened { store: Store::open(dir.path()).unwrap(), _dir: dir, _db: None }
}

/// A store on a fresh PostgreSQL database; `None` (with a word) when no server answers, which
/// CI forbids (`ROCKY_REQUIRE_POSTGRES`).
pub async fn open_postgres() -> Option<Opened> {
    let db = scratch("store").await?;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_postgres(db.settings(), dir.path(), "test-instance", LEASE).await.unwrap();
    Some(Opened { store, _dir: dir, _db: Some(db) })
}

/// A scratch PostgreSQL database; `None` (with a word) when no server answers, which CI forbids.
pub async fn scratch(tag: &str) -> Option<ScratchDatabase> {
    match ScratchDatabase::create(&ScratchDatabase::admin_url(), tag).await {
        Ok(db) => Some(db),
        Err(e) => {
            assert!(std::env::var_os("ROCKY_REQUIRE_POSTGRES").is_none(), "PostgreSQL is required: {e}");
            eprintln!("SKIPPED: no PostgreSQL ({e})");
            None
        }
    }
}

pub fn new_job(id: JobId, device: &str) -> NewJob {
    NewJob {
        id: Some(id),
        device: device.to_owned(),
        image: Image::new("fw.bin", Bytes::from_static(b"firmware bytes")),
        chunk_size: 64,
        chunk_interval_ms: 0,
        chunks_total: 1,
        created_at: 1_700_000_000_000,
        rollout: None,
        force: false,
        manifest: None,
        delta: None,
        aws: None,
    }
}
