//! The embedded backend: one SQLite file (`rocky.db`, WAL) in the data directory, one writing
//! connection on the writer thread and one reading connection, so reads never wait for writes.

pub mod audit;
pub mod devices;
pub mod high_water;
pub mod reader;
pub mod rollouts;
pub mod schema;
mod writes;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::backend::{Backend, Changes};
use super::{NewJob, RolloutRow, StoreError, WriteError};
use crate::inventory::Labels;
use crate::protocol::DeviceId;
use high_water::HighWater;

pub const DB_FILE: &str = "rocky.db";

/// A job id is an INTEGER column, written and read as the `u32` it holds (a stored value out of
/// range is refused as it was for a `u32`: `FromSqlError::OutOfRange`).
impl rusqlite::ToSql for crate::engine::JobId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.get()))
    }
}

impl rusqlite::types::FromSql for crate::engine::JobId {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        u32::column_result(value).map(Self::new)
    }
}

/// The writing side.
pub struct Sqlite {
    conn: Connection,
    /// The highest id ever handed out, outside the database (see [`HighWater`]).
    ids_file: HighWater,
}

impl Sqlite {
    /// Opens (or creates) `data_dir/rocky.db`, checks it is Rocky's and migrates it; also the
    /// reading connection, and the id mark kept beside it.
    pub fn open(data_dir: &Path) -> Result<(Self, Reader, i64), StoreError> {
        let path = data_dir.join(DB_FILE);
        let mut conn = schema::open_checked(&path)?;
        schema::migrate(&mut conn, &path)?;
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sql { path: path.clone(), source })?;
        let _ = reader.busy_timeout(Duration::from_secs(5));
        let ids_file = HighWater::open(data_dir)?;
        let mark = ids_file.get();
        Ok((Self { conn, ids_file }, Reader { conn: Arc::new(Mutex::new(reader)), path }, mark))
    }

    /// Runs `write` with every commit synced to disk (synchronous = FULL), not only written to
    /// the WAL as other changes are: for what an answer promises.
    fn durably<T>(
        &mut self,
        write: impl FnOnce(&mut Self) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        let _ = self.conn.pragma_update(None, "synchronous", "FULL");
        let result = write(self);
        let _ = self.conn.pragma_update(None, "synchronous", "NORMAL");
        result
    }
}

impl Backend for Sqlite {
    fn create(&mut self, jobs: &mut [NewJob]) -> Result<(), WriteError> {
        self.durably(|s| writes::create(&mut s.conn, &mut s.ids_file, jobs))
    }

    fn flush(&mut self, changes: &Changes<'_>) -> Result<(), WriteError> {
        Ok(writes::flush(&mut self.conn, changes)?)
    }

    fn register_devices(&mut self, rows: &[(DeviceId, Labels)]) -> Result<(), WriteError> {
        self.durably(|s| Ok(devices::register(&mut s.conn, rows)?))
    }

    fn forget_device(&mut self, id: &DeviceId) -> Result<(), WriteError> {
        Ok(devices::forget(&mut self.conn, id)?)
    }

    fn save_rollouts(&mut self, rows: &[RolloutRow]) -> Result<(), WriteError> {
        self.durably(|s| Ok(rollouts::save(&mut s.conn, rows)?))
    }

    fn forget_rollouts(&mut self, ids: &[crate::engine::RolloutId]) -> Result<(), WriteError> {
        Ok(rollouts::forget(&mut self.conn, ids)?)
    }

    fn images_needed(&mut self) -> Result<HashSet<String>, WriteError> {
        Ok(writes::images_needed(&self.conn)?)
    }

    fn audit(&mut self, entry: &crate::audit::NewEntry, keep: u64) -> Result<(), WriteError> {
        self.durably(|s| Ok(audit::record(&mut s.conn, entry, keep)?))
    }

    fn prune_audit(&mut self, before: i64) -> Result<(), WriteError> {
        Ok(audit::prune(&mut self.conn, before)?)
    }
}

/// The reading connection, shared by clones of the store.
#[derive(Clone)]
pub struct Reader {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Reader {
    /// Runs a read off the async threads.
    pub async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            query(&conn).map_err(|source| StoreError::Sql { path, source })
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}

/// Opens a data directory's database read-only, for `rocky jobs` (works while a Rocky runs).
pub fn open_read_only(data_dir: &Path) -> Result<Connection, StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::NoDatabase(path));
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Sql { path: path.clone(), source })?;
    schema::check(&conn, &path)?;
    Ok(conn)
}
