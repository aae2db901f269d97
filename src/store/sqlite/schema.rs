//! The database's schema and its migrations. `PRAGMA application_id` marks the file as Rocky's;
//! `PRAGMA user_version` is the schema version. Each migration runs in its own transaction.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// "ROCK" in ASCII: identifies Rocky's database files.
pub const APPLICATION_ID: i64 = 0x524f_434b;

/// Migrations in order; the schema version is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, their timeline, and the id high-water mark.
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        image_name TEXT NOT NULL,
        image_size INTEGER NOT NULL,
        image_sha256 TEXT NOT NULL,
        chunk_size INTEGER NOT NULL,
        chunk_interval_ms INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        chunks_sent INTEGER NOT NULL DEFAULT 0,
        chunks_total INTEGER NOT NULL,
        bytes_sent INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER
     );
     CREATE TABLE job_events (
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        state TEXT NOT NULL,
        detail TEXT
     );
     CREATE INDEX job_events_by_job ON job_events(job_id, at);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO meta (key, value) VALUES ('last_job_id', 0);",
    // 2: filters by state and device without a scan; the attempt number in the timeline.
    "CREATE INDEX jobs_by_state ON jobs(state, id);
     CREATE INDEX jobs_by_device ON jobs(device, id);
     ALTER TABLE job_events ADD COLUMN attempt INTEGER;",
    // 3: flow control — what the device confirmed, and its window (NULL for a pushed job).
    "ALTER TABLE jobs ADD COLUMN chunks_confirmed INTEGER;
     ALTER TABLE jobs ADD COLUMN window INTEGER;",
    // 4: the device inventory; rollouts, and which rollout made a job.
    "CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        labels TEXT NOT NULL DEFAULT '{}',
        registered INTEGER NOT NULL DEFAULT 0,
        first_seen INTEGER,
        last_seen INTEGER,
        last_image_name TEXT,
        last_image_size INTEGER,
        last_image_sha256 TEXT,
        last_job INTEGER
     );
     CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        state TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL
     );
     ALTER TABLE jobs ADD COLUMN rollout_id INTEGER;
     CREATE INDEX jobs_by_rollout ON jobs(rollout_id, device, id) WHERE rollout_id IS NOT NULL;",
    // 5: a rollout's devices in rows of their own, so a change writes only what changed; the
    // devices of rollouts stored whole move out of their JSON.
    "CREATE TABLE rollout_devices (
        rollout_id INTEGER NOT NULL,
        position INTEGER NOT NULL,
        device TEXT NOT NULL,
        outcome TEXT NOT NULL,
        job_id INTEGER,
        attempts INTEGER NOT NULL,
        retry_at INTEGER,
        detail TEXT,
        PRIMARY KEY (rollout_id, position)
     ) WITHOUT ROWID;
     INSERT INTO rollout_devices (rollout_id, position, device, outcome, job_id, attempts, retry_at, detail)
        SELECT r.id, s.key, json_extract(s.value, '$.device_id'), json_extract(s.value, '$.outcome'),
               json_extract(s.value, '$.job_id'), json_extract(s.value, '$.attempts'),
               json_extract(s.value, '$.retry_at'), json_extract(s.value, '$.detail')
        FROM rollouts r, json_each(r.body, '$.slots') s;
     UPDATE rollouts SET body = json_set(json_remove(body, '$.slots'), '$.slots', json('[]'),
                                         '$.plan.devices', json('[]'));",
    // 6: the reason code a device gave, so a rollout knows "busy" by its code after a restart.
    "ALTER TABLE jobs ADD COLUMN reason_code INTEGER;",
    // 7: a store that never gave an id starts its ids at a random point below 2^31, so two
    // Rockys with stores of their own on one broker do not number their jobs alike (a device's
    // answer to one's job 1 must not complete the other's).
    "UPDATE meta SET value = abs(random() % 2147483646)
        WHERE key = 'last_job_id' AND value = 0 AND NOT EXISTS (SELECT 1 FROM jobs);",
    // 8: what each device last said it runs (the status extension), as JSON; a job sent even
    // so (`force`), the boot counter a confirming job waits past, and when it was confirmed.
    "ALTER TABLE devices ADD COLUMN running TEXT;
     ALTER TABLE jobs ADD COLUMN force INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE jobs ADD COLUMN confirm_boot INTEGER;
     ALTER TABLE jobs ADD COLUMN confirmed_at INTEGER;",
    // 9: the manifest a job sends (the manifest extension): the COSE_Sign1 bytes, or NULL.
    "ALTER TABLE jobs ADD COLUMN manifest BLOB;",
    // 10: the patch a job offers instead of its image (the delta extension), as JSON, or NULL.
    "ALTER TABLE jobs ADD COLUMN delta TEXT;",
    // 11: the audit trail (`audit/`): who changed what and how it went. AUTOINCREMENT: an id
    // is never given again after retention removed its row, so a reader's cursor stays good.
    "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
        actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL);
     CREATE INDEX audit_by_time ON audit(at);
     CREATE INDEX audit_by_actor ON audit(actor, id);
     CREATE INDEX audit_by_target ON audit(target, id);",
    // 12: a job for a device that runs AWS's OTA agent: its certfile, filepath and signature,
    // as JSON, or NULL (Rocky's own protocol).
    "ALTER TABLE jobs ADD COLUMN aws TEXT;",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sql { path: path.to_path_buf(), source }
}

/// Opens the file and makes sure it is either new or Rocky's, before anything is written.
pub fn open_checked(path: &Path) -> Result<Connection, StoreError> {
    let existed = path.exists() && std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    if existed {
        check(&conn, path)?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql(path))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql(path))?;
    // WAL with synchronous=NORMAL: a commit survives a process crash; only an OS crash or power
    // loss can take back the last few commits.
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql(path))?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sql(path))?;
    Ok(conn)
}

/// Refuses files that are not SQLite, belong to another program, are damaged or are newer.
pub fn check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let foreign = |reason: String| StoreError::Foreign { path: path.to_path_buf(), reason };
    let app: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| foreign(format!("not a readable SQLite database: {e}")))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| foreign(format!("not a readable SQLite database: {e}")))?;
    if app != APPLICATION_ID && !(app == 0 && tables == 0) {
        return Err(foreign(format!("it belongs to another program (application_id {app:#x})")));
    }
    let integrity: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| foreign(format!("damaged: {e}")))?;
    if integrity != "ok" {
        return Err(foreign(format!("damaged: {integrity}")));
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql(path))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found: version });
    }
    Ok(())
}

/// Brings the schema to the current version.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    migrate_to(conn, SCHEMA_VERSION).map_err(sql(path))
}

/// Runs the migrations up to `target` (tests use this to build an older database).
pub fn migrate_to(conn: &mut Connection, target: i64) -> rusqlite::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, migration) in
        MIGRATIONS.iter().enumerate().take(target as usize).skip(current.max(0) as usize)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
