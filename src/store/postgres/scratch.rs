//! A throwaway PostgreSQL database for tests and `rocky bench`: created fresh under a unique
//! name on a server Rocky may administer, and dropped (with whatever is still connected) when
//! this goes away, so no run sees another's rows.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

use super::{PgError, PgSettings};

/// The server tests use unless `ROCKY_TEST_POSTGRES` names another (an administrator's URL).
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct ScratchDatabase {
    name: String,
    admin: tokio_postgres::Config,
    settings: PgSettings,
}

impl ScratchDatabase {
    /// The administrator's URL: `ROCKY_TEST_POSTGRES`, else [`DEFAULT_ADMIN_URL`].
    pub fn admin_url() -> String {
        std::env::var("ROCKY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
    }

    /// Creates `rocky_<tag>_<pid>_<n>` on the server `admin_url` names.
    pub async fn create(admin_url: &str, tag: &str) -> Result<Self, PgError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin = PgSettings::parse(admin_url, None)?;
        let name = format!(
            "rocky_{}_{}_{}",
            tag.chars().filter(char::is_ascii_alphanumeric).collect::<String>(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = admin.connect().await?;
        let created = client.batch_execute(&format!("CREATE DATABASE {name}")).await;
        drop(client);
        created.map_err(|e| PgError::new(admin_url, &e))?;
        let mut config = admin.config.clone();
        config.dbname(&name);
        let settings = PgSettings { url: describe(&config), config };
        Ok(Self { name, admin: admin.config, settings })
    }

    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `postgres://USER@HOST:PORT/DB` for a configuration (it never holds the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => String::new(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    format!("postgres://{user}@{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // Drop runs in async code too: do the work on a thread with a runtime of its own.
        let admin = self.admin.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let done = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((client, connection)) = admin.connect(NoTls).await {
                    let driver = tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    let _ = client.batch_execute(&statement).await;
                    drop(client);
                    let _ = driver.await;
                }
            });
        });
        let _ = done.join();
    }
}
