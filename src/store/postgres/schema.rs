//! The PostgreSQL schema and its migrations, versioned on their own (the SQLite file has its
//! own list). `rocky_meta` marks the database as Rocky's and holds the version; migrations run
//! in one transaction under an advisory lock, so instances starting together migrate once.

use tokio_postgres::Client;

use super::{PgError, reason};

/// "ROCK" in ASCII: the advisory lock migrations hold, and the mark in `rocky_meta`.
pub const APPLICATION_ID: i64 = 0x524f_434b;

/// Migrations in order; the schema version is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and their timeline, the inventory, rollouts and their devices.
    "CREATE TABLE jobs (
        id BIGINT PRIMARY KEY,
        device TEXT NOT NULL,
        image_name TEXT NOT NULL,
        image_size BIGINT NOT NULL,
        image_sha256 TEXT NOT NULL,
        chunk_size BIGINT NOT NULL,
        chunk_interval_ms BIGINT NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        chunks_sent BIGINT NOT NULL DEFAULT 0,
        chunks_confirmed BIGINT,
        flow_window BIGINT,
        chunks_total BIGINT NOT NULL,
        bytes_sent BIGINT NOT NULL DEFAULT 0,
        attempts BIGINT NOT NULL DEFAULT 0,
        error TEXT,
        reason_code BIGINT,
        created_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        rollout_id BIGINT
     );
     CREATE INDEX jobs_by_state ON jobs(state, id);
     CREATE INDEX jobs_by_device ON jobs(device, id);
     CREATE INDEX jobs_by_rollout ON jobs(rollout_id, device, id) WHERE rollout_id IS NOT NULL;
     CREATE TABLE job_events (
        seq BIGSERIAL PRIMARY KEY,
        job_id BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        at BIGINT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT,
        attempt BIGINT
     );
     CREATE INDEX job_events_by_job ON job_events(job_id, at, seq);
     CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        labels TEXT NOT NULL DEFAULT '{}',
        registered BOOLEAN NOT NULL DEFAULT false,
        first_seen BIGINT,
        last_seen BIGINT,
        last_image_name TEXT,
        last_image_size BIGINT,
        last_image_sha256 TEXT,
        last_job BIGINT
     );
     CREATE TABLE rollouts (
        id BIGINT PRIMARY KEY,
        state TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at BIGINT NOT NULL
     );
     CREATE TABLE rollout_devices (
        rollout_id BIGINT NOT NULL,
        position BIGINT NOT NULL,
        device TEXT NOT NULL,
        outcome TEXT NOT NULL,
        job_id BIGINT,
        attempts BIGINT NOT NULL,
        retry_at BIGINT,
        detail TEXT,
        PRIMARY KEY (rollout_id, position)
     );
     INSERT INTO rocky_meta (key, value) VALUES ('last_job_id', 0);",
    // 2: several instances on one database. Job ids come from a sequence all of them share; each
    // instance has a row whose lease it renews; a job names the instance that drives it, whose
    // lease is the job's (one heartbeat renews them all).
    "CREATE SEQUENCE job_ids;
     SELECT setval('job_ids', greatest(value, 1), value > 0) FROM rocky_meta WHERE key = 'last_job_id';
     CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        started_at BIGINT NOT NULL,
        lease_until BIGINT NOT NULL
     );
     ALTER TABLE jobs ADD COLUMN owner TEXT;
     CREATE INDEX jobs_unfinished ON jobs(device, id)
        WHERE state IN ('queued', 'requesting', 'transferring', 'finishing');",
    // 3: the images jobs need, by content, where every instance can read them: an instance
    // that takes over another's job takes its image from here.
    "CREATE TABLE images (
        sha256 TEXT PRIMARY KEY,
        bytes BYTEA NOT NULL
     );",
    // 4: every instance shows every job: each change of a job's row takes the next number of
    // one sequence, so an instance reads only what changed since it last looked; a cancel for
    // a job another instance drives waits in cancel_requests until that instance takes it.
    "CREATE SEQUENCE job_changes;
     ALTER TABLE jobs ADD COLUMN changed BIGINT NOT NULL DEFAULT 0;
     UPDATE jobs SET changed = nextval('job_changes');
     ALTER TABLE jobs ALTER COLUMN changed SET DEFAULT nextval('job_changes');
     CREATE FUNCTION rocky_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.changed := nextval('job_changes'); RETURN NEW; END $$;
     CREATE TRIGGER jobs_changed BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION rocky_job_changed();
     CREATE INDEX jobs_by_change ON jobs(changed);
     CREATE TABLE cancel_requests (
        job_id BIGINT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
        asked_at BIGINT NOT NULL
     );",
    // 5: work one instance does for all (planning rollouts): the instance doing it, which keeps
    // it while its lease holds.
    "CREATE TABLE leaders (
        role TEXT PRIMARY KEY,
        instance TEXT NOT NULL
     );",
    // 6: an instance's row carries the token of the process that holds it, so a second process
    // with the same id (a fixed mqtt.client_id) cannot renew the first one's lease; an image
    // row says when a job last named it, so a sweep never removes one a creation is using.
    // A job's row also says when it last changed (the server's clock), so an instance reading
    // others' changes re-reads the last two seconds' and misses no transaction that took its
    // change number before another but committed after it.
    "ALTER TABLE instances ADD COLUMN token TEXT NOT NULL DEFAULT '';
     ALTER TABLE images ADD COLUMN kept_at BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE jobs ADD COLUMN changed_at BIGINT NOT NULL
        DEFAULT (extract(epoch from clock_timestamp()) * 1000)::bigint;
     CREATE OR REPLACE FUNCTION rocky_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.changed := nextval('job_changes');
            NEW.changed_at := (extract(epoch from clock_timestamp()) * 1000)::bigint;
            RETURN NEW;
        END $$;
     CREATE INDEX jobs_by_change_time ON jobs(changed_at);",
    // 7: a store that never gave an id starts its ids at a random point below 2^31, so two
    // Rockys with stores of their own on one broker do not number their jobs alike (a device's
    // answer to one's job 1 must not complete the other's).
    "UPDATE rocky_meta SET value = floor(random() * 2147483646)::bigint
        WHERE key = 'last_job_id' AND value = 0 AND NOT EXISTS (SELECT 1 FROM jobs);
     SELECT setval('job_ids', value + 1, false) FROM rocky_meta
        WHERE key = 'last_job_id' AND value > 0 AND NOT EXISTS (SELECT 1 FROM jobs);",
    // 8: what each device last said it runs (the status extension), as JSON, and when it said
    // so (every instance hears the statuses and writes what it heard last); a job sent even so
    // (`force`), the boot counter a confirming job waits past, when it was confirmed; and a
    // confirming job is unfinished (it holds its device).
    "ALTER TABLE devices ADD COLUMN running TEXT;
     ALTER TABLE devices ADD COLUMN running_at BIGINT;
     ALTER TABLE jobs ADD COLUMN force BOOLEAN NOT NULL DEFAULT false;
     ALTER TABLE jobs ADD COLUMN confirm_boot BIGINT;
     ALTER TABLE jobs ADD COLUMN confirmed_at BIGINT;
     DROP INDEX jobs_unfinished;
     CREATE INDEX jobs_unfinished ON jobs(device, id)
        WHERE state IN ('queued', 'requesting', 'transferring', 'finishing', 'confirming');",
    // 9: the manifest a job sends (the manifest extension): the COSE_Sign1 bytes, or NULL.
    "ALTER TABLE jobs ADD COLUMN manifest BYTEA;",
    // 10: the patch a job offers instead of its image (the delta extension), as JSON, or NULL.
    "ALTER TABLE jobs ADD COLUMN delta TEXT;",
    // 11: the audit trail (`audit/`), one for every instance sharing the database.
    "CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL);
     CREATE INDEX audit_by_time ON audit(at);
     CREATE INDEX audit_by_actor ON audit(actor, id);
     CREATE INDEX audit_by_target ON audit(target, id);",
    // 12: a job for a device that runs AWS's OTA agent: its certfile, filepath and signature,
    // as JSON, or NULL (Rocky's own protocol).
    "ALTER TABLE jobs ADD COLUMN aws TEXT;",
    // 13: each save of a rollout gives its row a new number, so an instance that does not plan
    // rollouts reads again only those saved since it last read them (it read every rollout,
    // and every device of each, every two seconds).
    "CREATE SEQUENCE rollout_saves;
     ALTER TABLE rollouts ADD COLUMN saved BIGINT NOT NULL DEFAULT 0;",
    // 14: a device's row names the transaction that last changed it, so the inventory's refresh
    // every 10 s reads the rows of transactions not yet committed at its last read, and later
    // ones, not all. Not indexed: an index on a column every write changes would make every
    // device update a non-HOT one, and scanning the table's rows is the server's cheap part.
    "ALTER TABLE devices ADD COLUMN changed_xid BIGINT NOT NULL DEFAULT 0;
     CREATE FUNCTION rocky_device_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.changed_xid := txid_current(); RETURN NEW; END $$;
     CREATE TRIGGER devices_changed BEFORE INSERT OR UPDATE ON devices
        FOR EACH ROW EXECUTE FUNCTION rocky_device_changed();",
    // 15: a job's row names the transaction that last changed it, as a device's does (14), so
    // an instance copying others' jobs reads the rows of transactions running at its last read
    // and later ones: a change number taken before another's and committed after it is no
    // longer guessed at with a two-second window of the server's clock. Indexed (the jobs
    // table keeps every job until retention removes it). The change number and time stay
    // written, unindexed, so an instance of an older Rocky still shows others' jobs while a
    // rolling upgrade runs; a later migration drops them.
    "ALTER TABLE jobs ADD COLUMN changed_xid BIGINT NOT NULL DEFAULT 0;
     CREATE OR REPLACE FUNCTION rocky_job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.changed_xid := txid_current();
            IF TG_OP = 'UPDATE' THEN
                NEW.changed := nextval('job_changes');
                NEW.changed_at := (extract(epoch from clock_timestamp()) * 1000)::bigint;
            END IF;
            RETURN NEW;
        END $$;
     DROP TRIGGER jobs_changed ON jobs;
     CREATE TRIGGER jobs_changed BEFORE INSERT OR UPDATE ON jobs
        FOR EACH ROW EXECUTE FUNCTION rocky_job_changed();
     DROP INDEX jobs_by_change, jobs_by_change_time;
     CREATE INDEX jobs_by_change ON jobs(changed_xid);",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Refuses a database that holds tables but is not Rocky's, or was written by a newer Rocky,
/// then brings the schema to the current version.
pub async fn migrate(client: &mut Client, url: &str) -> Result<(), PgError> {
    let tx = client.transaction().await.map_err(|e| PgError::new(url, &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLICATION_ID])
        .await
        .map_err(|e| PgError::new(url, &e))?;
    let tables: i64 = tx
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .map_err(|e| PgError::new(url, &e))?
        .get(0);
    let has_meta: bool = tx
        .query_one("SELECT to_regclass('rocky_meta') IS NOT NULL", &[])
        .await
        .map_err(|e| PgError::new(url, &e))?
        .get(0);
    if tables > 0 && !has_meta {
        return Err(PgError::Foreign {
            url: url.to_owned(),
            reason: format!("it holds {tables} tables but no rocky_meta"),
        });
    }
    if !has_meta {
        tx.batch_execute("CREATE TABLE rocky_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)")
            .await
            .map_err(|e| PgError::new(url, &e))?;
        tx.execute(
            "INSERT INTO rocky_meta (key, value) VALUES ('application_id', $1), ('schema_version', 0)",
            &[&APPLICATION_ID],
        )
        .await
        .map_err(|e| PgError::new(url, &e))?;
    }
    let meta = |key: &'static str| {
        let tx = &tx;
        async move {
            tx.query_opt("SELECT value FROM rocky_meta WHERE key = $1", &[&key])
                .await
                .map(|row| row.map(|row| row.get::<_, i64>(0)))
        }
    };
    let application = meta("application_id").await.map_err(|e| PgError::new(url, &e))?;
    if application != Some(APPLICATION_ID) {
        return Err(PgError::Foreign {
            url: url.to_owned(),
            reason: format!("rocky_meta has application_id {application:?}, not Rocky's"),
        });
    }
    let version = meta("schema_version").await.map_err(|e| PgError::new(url, &e))?.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(PgError::TooNew { url: url.to_owned(), found: version });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(migration).await.map_err(|e| PgError::Migration {
            url: url.to_owned(),
            version: index as i64 + 1,
            reason: reason(&e),
        })?;
    }
    tx.execute("UPDATE rocky_meta SET value = $1 WHERE key = 'schema_version'", &[&SCHEMA_VERSION])
        .await
        .map_err(|e| PgError::new(url, &e))?;
    tx.commit().await.map_err(|e| PgError::new(url, &e))
}
