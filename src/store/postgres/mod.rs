//! The shared backend: a PostgreSQL database (`store.url`) that several Rocky instances can use
//! at once. The writer thread has one connection of its own, on a small runtime of its own, and
//! opens it again after PostgreSQL restarts; reads take connections from a pool on the main
//! runtime. The password comes from `store.password_file` or `ROCKY_STORE_PASSWORD`, never from
//! the URL, so no log line or error can carry it.

mod audit;
mod changed_rows;
pub mod lease;
mod membership;
mod reads;
pub mod schema;
mod scratch;
mod writes;

pub use changed_rows::Seen;
pub use membership::Membership;

pub use scratch::ScratchDatabase;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::backend::{Backend, Changes};
use super::{NewJob, RolloutRow, WriteError};
use crate::inventory::Labels;
use crate::protocol::DeviceId;
use crate::secret::Secret;

/// Connections the read pool holds at most (`GET /jobs`, timelines, the console's polls).
pub const READ_POOL_SIZE: usize = 8;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgError {
    /// Said after the setting's name (`store.url: …`).
    #[error("{0}")]
    BadUrl(String),
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("PostgreSQL at {url}: {reason}")]
    Query { url: String, reason: String },
    #[error("the PostgreSQL database {url} is not Rocky's ({reason}); it was left untouched")]
    Foreign { url: String, reason: String },
    #[error(
        "the PostgreSQL database {url} was written by a newer Rocky (schema {found}, this one knows up to {})",
        schema::SCHEMA_VERSION
    )]
    TooNew { url: String, found: i64 },
    #[error("the PostgreSQL database {url} could not be migrated to schema {version}: {reason}")]
    Migration { url: String, version: i64, reason: String },
}

impl PgError {
    fn new(url: &str, error: &tokio_postgres::Error) -> Self {
        if unreachable(error) {
            Self::Connect { url: url.to_owned(), reason: reason(error) }
        } else {
            Self::Query { url: url.to_owned(), reason: reason(error) }
        }
    }
}

/// The server's message for a database error, else the client's chain of causes ("Connection
/// refused"). Neither ever holds the password.
pub(crate) fn reason(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.message().to_owned();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = cause_of(source);
    }
    text
}

fn cause_of<'a>(
    error: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    error.and_then(|e| e.source())
}

/// The connection is gone or could not be made (PostgreSQL restarting, the network), rather
/// than a statement failing.
fn unreachable(error: &tokio_postgres::Error) -> bool {
    error.is_closed()
        || std::error::Error::source(error)
            .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some())
}

impl From<&tokio_postgres::Error> for WriteError {
    fn from(error: &tokio_postgres::Error) -> Self {
        if unreachable(error) { Self::Unavailable(reason(error)) } else { Self::Failed(reason(error)) }
    }
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::from(&error)
    }
}

/// Where the database is and how to log in: `store.url` without a password, and the password
/// from its own file or variable.
#[derive(Clone)]
pub struct PgSettings {
    pub(crate) config: tokio_postgres::Config,
    /// The URL as the operator wrote it (it holds no password), for messages.
    url: String,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings").field("url", &self.url).finish_non_exhaustive()
    }
}

impl PgSettings {
    /// Reads `postgres://user@host:port/db` (or the `key=value` form). A password in the URL
    /// is refused without echoing the URL.
    pub fn parse(url: &str, password: Option<&Secret>) -> Result<Self, PgError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            // The parser's words name the bad part; the URL itself is not repeated (it could
            // hold a password).
            PgError::BadUrl(format!(
                "not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if config.get_password().is_some() {
            return Err(PgError::BadUrl(
                "the URL holds a password; put it in store.password_file or ROCKY_STORE_PASSWORD instead"
                    .into(),
            ));
        }
        if config.get_hosts().is_empty() {
            return Err(PgError::BadUrl(
                "the URL names no host; expected postgres://USER@HOST:PORT/DATABASE".into(),
            ));
        }
        if let Some(password) = password {
            config.password(password.expose());
        }
        config.connect_timeout(CONNECT_TIMEOUT).application_name("rocky");
        Ok(Self { config, url: url.to_owned() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One connection of its own, driven on the current runtime until the client is dropped
    /// (tests and tools that look at the database directly).
    pub async fn connect(&self) -> Result<Client, PgError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| PgError::Connect { url: self.url.clone(), reason: reason(&e) })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// Connects, checks the database is Rocky's and migrates it; returns the writing side (which
/// connects again on its own thread, and owns the jobs it creates for `instance`) and the read
/// pool.
pub async fn open(settings: &PgSettings, instance: &str) -> Result<(Postgres, Reader), PgError> {
    let url = settings.url.clone();
    let mut client = settings.connect().await?;
    schema::migrate(&mut client, &url).await?;
    drop(client);
    let pool = pool(settings, READ_POOL_SIZE)?;
    let writer = Postgres {
        config: settings.config.clone(),
        url: url.clone(),
        instance: instance.to_owned(),
        runtime: None,
        client: None,
    };
    Ok((writer, Reader::new(pool, url)))
}

/// Every job in the database, for `rocky jobs`, without creating or migrating anything: `None`
/// when Rocky has not set the database up yet.
pub async fn read_jobs(
    settings: &PgSettings,
) -> Result<Option<Vec<crate::store::JobSnapshot>>, crate::store::StoreError> {
    let url = settings.url.clone();
    let client = settings.connect().await?;
    let ready: Result<bool, tokio_postgres::Error> =
        client.query_one("SELECT to_regclass('rocky_meta') IS NOT NULL", &[]).await.map(|row| row.get(0));
    drop(client);
    if !ready.map_err(|e| PgError::new(&url, &e))? {
        return Ok(None);
    }
    Ok(Some(Reader::new(pool(settings, 1)?, url).jobs().await?.0))
}

/// A pool of at most `size` connections, opened as they are needed.
fn pool(settings: &PgSettings, size: usize) -> Result<deadpool_postgres::Pool, PgError> {
    let manager = deadpool_postgres::Manager::from_config(
        settings.config.clone(),
        NoTls,
        deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| PgError::Connect { url: settings.url.clone(), reason: e.to_string() })
}

/// The writing side: one connection, driven by a single-threaded runtime of the writer thread's
/// own (built there on first use, so it is never dropped inside the main runtime).
pub struct Postgres {
    config: tokio_postgres::Config,
    url: String,
    /// This instance: the owner of the jobs it creates.
    instance: String,
    runtime: Option<tokio::runtime::Runtime>,
    client: Option<Client>,
}

impl Postgres {
    /// The runtime and an open connection, opening them if need be.
    fn connected(&mut self) -> Result<(&tokio::runtime::Runtime, &mut Client), WriteError> {
        if self.runtime.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| WriteError::Failed(format!("cannot start the store's runtime: {e}")))?;
            self.runtime = Some(runtime);
        }
        let Some(runtime) = self.runtime.as_ref() else { unreachable!("set above") };
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let config = self.config.clone();
            let client = runtime.block_on(async move {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok::<_, tokio_postgres::Error>(client)
            })?;
            self.client = Some(client);
        }
        match self.client.as_mut() {
            Some(client) => Ok((runtime, client)),
            None => Err(WriteError::Unavailable(format!("no connection to {}", self.url))),
        }
    }

    /// Runs one write; a connection that broke is dropped, to be opened again next time.
    fn write<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, WriteError> {
        let url = self.url.clone();
        let at = |error: WriteError| match error {
            WriteError::Unavailable(why) => WriteError::Unavailable(format!("PostgreSQL at {url}: {why}")),
            other => other,
        };
        let (runtime, client) = self.connected().map_err(at)?;
        let result = runtime.block_on(work(client));
        if result.is_err() && !client.is_closed() {
            // A transaction a failed statement left behind rolls back when its ROLLBACK is
            // sent, which happens only while this connection is driven: drive it now, or the
            // transaction's locks would wait for the next write.
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), client.batch_execute("")).await
            });
        }
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        result.map_err(|e| at(WriteError::from(e)))
    }
}

impl Backend for Postgres {
    fn create(&mut self, jobs: &mut [NewJob]) -> Result<(), WriteError> {
        let owner = self.instance.clone();
        let ids = self.write(async |client| writes::create(client, jobs, &owner).await)??;
        for (job, id) in jobs.iter_mut().zip(ids) {
            job.id = Some(id);
        }
        Ok(())
    }

    fn flush(&mut self, changes: &Changes<'_>) -> Result<(), WriteError> {
        let owner = self.instance.clone();
        self.write(async |client| writes::flush(client, changes, &owner).await)
    }

    fn register_devices(&mut self, rows: &[(DeviceId, Labels)]) -> Result<(), WriteError> {
        self.write(async |client| writes::register(client, rows).await)
    }

    fn forget_device(&mut self, id: &DeviceId) -> Result<(), WriteError> {
        self.write(async |client| {
            client.execute("DELETE FROM devices WHERE id = $1", &[&id.as_str()]).await.map(|_| ())
        })
    }

    fn save_rollouts(&mut self, rows: &[RolloutRow]) -> Result<(), WriteError> {
        let planner = self.instance.clone();
        self.write(async |client| writes::save_rollouts(client, rows, &planner).await)?
            .map_err(WriteError::Elsewhere)
    }

    fn forget_rollouts(&mut self, ids: &[crate::engine::RolloutId]) -> Result<(), WriteError> {
        self.write(async |client| writes::forget_rollouts(client, ids).await)
    }

    fn images_needed(&mut self) -> Result<HashSet<String>, WriteError> {
        self.write(async |client| writes::images_needed(client).await)
    }

    fn audit(&mut self, entry: &crate::audit::NewEntry, keep: u64) -> Result<(), WriteError> {
        self.write(async |client| audit::record(client, entry, keep).await)
    }

    fn prune_audit(&mut self, before: i64) -> Result<(), WriteError> {
        self.write(async |client| audit::prune(client, before).await)
    }
}

/// The read pool, shared by clones of the store.
#[derive(Clone)]
pub struct Reader {
    pool: deadpool_postgres::Pool,
    url: String,
    /// The snapshot this reader's last read of the devices took: the next read takes the rows
    /// changed since.
    devices_seen: std::sync::Arc<std::sync::Mutex<Option<changed_rows::Seen>>>,
}

impl Reader {
    fn new(pool: deadpool_postgres::Pool, url: String) -> Self {
        Self { pool, url, devices_seen: Default::default() }
    }
}
