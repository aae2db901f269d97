//! The store against real databases: what both backends must do alike runs on each (SQLite in a
//! temporary directory, PostgreSQL in a scratch database on the local server); refusals and
//! migrations of each backend's own format follow.

use rusqlite::Connection;

use super::test_support::{LEASE, new_job, open_postgres, open_sqlite, scratch};
use super::*;

/// Runs `$test(store)` once on each backend, as `$name::sqlite` and `$name::postgres`.
macro_rules! on_both_backends {
    ($name:ident, $test:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$test(&super::open_sqlite().store).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(opened) = super::open_postgres().await {
                    super::$test(&opened.store).await;
                }
            }
        }
    };
}

on_both_backends!(jobs_round_trip, jobs_round_trip_and_ids_are_never_reused);
on_both_backends!(rollout_rows, a_rollout_change_writes_its_head_and_only_the_devices_that_changed);
on_both_backends!(device_columns, devices_round_trip_and_the_operator_and_the_wire_keep_to_their_columns);
on_both_backends!(flush_batches, a_big_flush_lands_whole_and_timelines_keep_their_order);
on_both_backends!(random_start, a_new_store_numbers_its_jobs_from_a_random_point);
on_both_backends!(audit_trail, the_audit_keeps_its_bound_filters_pages_and_ages_out);
on_both_backends!(aws_jobs, an_aws_devices_job_keeps_its_document_through_the_store);

/// A job for a device that runs AWS's OTA agent (migration 12): its certfile, filepath and
/// signature come back as written; a job of Rocky's own protocol has none.
async fn an_aws_devices_job_keeps_its_document_through_the_store(store: &Store) {
    let start = store.load().await.unwrap().1;
    let mut aws =
        crate::engine::AwsJob::new("certs/codesign.crt".into(), "/ota/firmware.bin".into(), "MEUCIQ…".into());
    let mut job = new_job(start.next(), "aws-thing");
    job.aws = Some(aws.clone());
    let plain = new_job(start.next().next(), "plain");
    let ids = store.create(vec![job, plain]).await.unwrap();
    let (jobs, _) = store.load().await.unwrap();
    let read = |id| jobs.iter().find(|j| j.id == id).unwrap().aws.clone();
    assert_eq!(read(ids[0]), Some(Box::new(aws.clone())));
    assert_eq!(read(ids[1]), None);
    // The self-test words the device sent are written with the job's changes.
    aws.details.insert("self_test".into(), "ready".into());
    aws.version = 3;
    let mut changed = jobs.iter().find(|j| j.id == ids[0]).unwrap().clone();
    changed.aws = Some(Box::new(aws.clone()));
    store.flush_and_wait(vec![changed], Vec::new()).await;
    let (jobs, _) = store.load().await.unwrap();
    assert_eq!(jobs.iter().find(|j| j.id == ids[0]).unwrap().aws, Some(Box::new(aws)));
}

/// The audit (migration 11): entries come back in order with every filter, the count bound
/// drops the oldest as each is written, and retention removes entries older than its cutoff.
async fn the_audit_keeps_its_bound_filters_pages_and_ages_out(store: &Store) {
    use crate::audit::{Action, NewEntry, Query};
    let store = store.clone().with_audit_keep(4);
    let entries = [
        (1_000, "ci", Action::RolloutCreate, "rollout:1"),
        (2_000, "ana", Action::RolloutPause, "rollout:1"),
        (3_000, "ci", Action::JobCancel, "job:7"),
        (4_000, "ana", Action::RolloutCancel, "rollout:1"),
        (5_000, "ci", Action::DeviceForget, "device:d-1"),
    ];
    for (at, actor, action, target) in entries {
        store.audit(NewEntry::new(at, actor, action, target, "ok")).await.unwrap();
    }
    let read = |query: Query| {
        let store = store.clone();
        async move { store.read_audit(query).await.unwrap() }
    };
    let all = read(Query::default()).await;
    // At most 4 kept: the first is gone.
    assert_eq!(all.iter().map(|e| e.at).collect::<Vec<_>>(), [2_000, 3_000, 4_000, 5_000]);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(all[0].action, "rollout.pause");
    let ana = read(Query { actor: Some("ana".into()), ..Query::default() }).await;
    assert_eq!(ana.iter().map(|e| e.at).collect::<Vec<_>>(), [2_000, 4_000]);
    let rollout =
        read(Query { target: Some("rollout:1".into()), since: Some(3_000), ..Query::default() }).await;
    assert_eq!(rollout.iter().map(|e| e.at).collect::<Vec<_>>(), [4_000]);
    let page = read(Query { after: Some(all[1].id), limit: 1, ..Query::default() }).await;
    assert_eq!(page.iter().map(|e| e.at).collect::<Vec<_>>(), [4_000]);
    let newest =
        read(Query { newest_first: true, before: Some(all[3].id), limit: 2, ..Query::default() }).await;
    assert_eq!(newest.iter().map(|e| e.at).collect::<Vec<_>>(), [4_000, 3_000]);
    store.prune_audit(4_000).await;
    // The prune is queued on the writer; an entry written after it is committed after it.
    store.audit(NewEntry::new(6_000, "ci", Action::JobCreate, "job:8", "ok")).await.unwrap();
    let left = read(Query::default()).await;
    assert_eq!(left.iter().map(|e| e.at).collect::<Vec<_>>(), [4_000, 5_000, 6_000]);
}

/// Two Rockys with stores of their own on one broker must not number their jobs alike (issue
/// 20, A4): a new store's ids start at a random point below 2^31, and 2^31 ids remain after it.
async fn a_new_store_numbers_its_jobs_from_a_random_point(store: &Store) {
    let (jobs, start) = store.load().await.unwrap();
    assert!(jobs.is_empty());
    assert!(start < JobId::new(1 << 31), "{start}");
    let other = open_sqlite();
    let other_start = other.store.load().await.unwrap().1;
    assert_ne!(start, other_start, "two new stores drew the same start (a 1 in 2^31 chance)");
    let ids = store.create(vec![new_job(start.next(), "a")]).await.unwrap();
    assert_eq!(store.load().await.unwrap().1, ids[0], "ids go on from the start");
}
use crate::engine::JobState;

async fn jobs_round_trip_and_ids_are_never_reused(store: &Store) {
    let start = store.load().await.unwrap().1;
    // Job "b" sends a manifest: its bytes come back whole (migration 9).
    let mut signed = new_job(start.next().next(), "b");
    let key = crate::signing::SigningKey::generate(crate::signing::Alg::Ed25519).unwrap();
    let payload = crate::protocol::ManifestPayload {
        image_sha256: *signed.image.sha256(),
        size: signed.image.size(),
        version: Some("2.1.0".into()),
        seq: 3,
    };
    let manifest = crate::protocol::Manifest::sign(payload, &key);
    signed.manifest = Some(manifest.clone());
    let ids = store.create(vec![new_job(start.next(), "a"), signed]).await.unwrap();
    let loaded = store.load().await.unwrap().0;
    assert_eq!((loaded[0].manifest.as_ref(), loaded[1].manifest.as_ref()), (None, Some(&manifest)));
    let (first, second) = (ids[0], ids[1]);
    assert!(first < second, "ids in the order given: {ids:?}");
    assert!(
        store.images().path(new_job(start.next(), "a").image.sha256()).is_file(),
        "image kept by content"
    );
    let mut record = store.load().await.unwrap().0.remove(0);
    assert_eq!((record.id, record.device_id.as_str()), (first, "a"));
    record.state = JobState::Succeeded;
    record.finished_at = Some(1_700_000_001_000);
    let history = HistoryRecord {
        job: first,
        at: 1_700_000_001_000,
        state: JobState::Succeeded,
        detail: None,
        attempt: None,
    };
    store.flush_and_wait(vec![record.clone()], vec![history]).await;
    let (jobs, last) = store.load().await.unwrap();
    assert_eq!((jobs[0].state, last), (JobState::Succeeded, second));
    let timeline: Vec<JobState> = store.history(first).await.unwrap().iter().map(|h| h.state).collect();
    assert_eq!(timeline, vec![JobState::Queued, JobState::Succeeded]);
    // Deleting keeps the high-water mark: the next id is still new.
    // (The engine decides what retention removes; the store deletes those rows by id, even
    // when their last change has not been written yet.)
    store.delete(vec![first]).await;
    store.flush_and_wait(Vec::new(), Vec::new()).await;
    let (jobs, last) = store.load().await.unwrap();
    assert_eq!(
        (jobs.len(), jobs[0].id, last),
        (1, second, second),
        "the first job and its timeline are gone"
    );
    assert!(store.history(first).await.unwrap().is_empty());
    let third = store.create(vec![new_job(second.next(), "c")]).await.unwrap()[0];
    assert!(third > second, "a new id after every id given");
}

#[tokio::test]
async fn a_submission_with_an_id_sqlite_holds_is_refused_whole() {
    let opened = open_sqlite();
    let store = &opened.store;
    store.create(vec![new_job(JobId::new(1), "a"), new_job(JobId::new(2), "b")]).await.unwrap();
    let refused = store.create(vec![new_job(JobId::new(4), "d"), new_job(JobId::new(2), "again")]).await;
    assert_eq!(refused, Err(WriteError::Duplicate(JobId::new(2))));
    let (jobs, _) = store.load().await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![JobId::new(1), JobId::new(2)],
        "nothing of the refused submission"
    );
}

#[tokio::test]
async fn a_second_store_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("another Rocky"), "{err}");
}

#[test]
fn garbage_and_foreign_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("not a Rocky database"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "untouched");

    std::fs::remove_file(&path).unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine');").unwrap();
    drop(other);
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("another program"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_truncated_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        // A real Rocky database with some rows, closed (so everything is in the main file).
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, SCHEMA_VERSION).unwrap();
        for id in 1..=500 {
            conn.execute(
                "INSERT INTO jobs (id, device, image_name, image_size, image_sha256, chunk_size, state, chunks_total, created_at)
                 VALUES (?1, 'dev', 'fw.bin', 10, 'ab', 64, 'succeeded', 1, 0)",
                [id],
            )
            .unwrap();
        }
    }
    let full = std::fs::read(&path).unwrap();
    assert!(full.len() > 8192, "{} bytes", full.len());
    let truncated = &full[..full.len() / 2];
    std::fs::write(&path, truncated).unwrap();
    let err = Store::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains("not a Rocky database"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), truncated);
}

#[tokio::test]
async fn migrates_from_an_empty_dir_and_from_the_previous_version() {
    let fresh = tempfile::tempdir().unwrap();
    let store = Store::open(fresh.path()).unwrap();
    drop(store);
    let conn = Connection::open(fresh.path().join(DB_FILE)).unwrap();
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);

    let old = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(old.path().join(DB_FILE)).unwrap();
    migrate_to(&mut conn, SCHEMA_VERSION - 1).unwrap();
    conn.execute_batch(
        "INSERT INTO jobs (id, device, image_name, image_size, image_sha256, chunk_size, state, chunks_total, created_at)
         VALUES (7, 'dev-01', 'old.bin', 10, '00', 64, 'succeeded', 1, 1700000000000);
         INSERT INTO job_events (job_id, at, state, detail) VALUES (7, 1700000000000, 'succeeded', NULL);
         UPDATE meta SET value = 7 WHERE key = 'last_job_id';",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(old.path()).unwrap();
    let (jobs, last) = store.load().await.unwrap();
    assert_eq!((jobs.len(), &*jobs[0].image.name, last), (1, "old.bin", JobId::new(7)));
    assert_eq!(store.history(JobId::new(7)).await.unwrap()[0].attempt, None, "the new column reads as empty");
    store.create(vec![new_job(JobId::new(8), "x")]).await.unwrap();
    assert_eq!(store.load().await.unwrap().1, JobId::new(8));
}

/// A rollout of `devices` devices, none started.
fn rollout(id: RolloutId, devices: usize) -> crate::rollout::Rollout {
    let plan = crate::rollout::RolloutPlan::example_of(devices, |n| format!("d{n}"));
    crate::rollout::Rollout::new(id, plan, 1_700_000_000_000)
}

async fn a_rollout_change_writes_its_head_and_only_the_devices_that_changed(store: &Store) {
    use crate::rollout::Outcome;
    let mut r = rollout(RolloutId::new(1), 1000);
    let first = RolloutRow::of(&mut r);
    assert_eq!(first.devices.len(), 1000, "the first write holds every device");
    assert!(first.body.len() < 1000, "the head leaves the devices out: {} bytes", first.body.len());
    store.save_rollouts(vec![first]).await.unwrap();
    r.devices.set_outcome(500, Outcome::Failed);
    r.devices.set_detail(500, Some("writing to flash failed"));
    r.devices.set_job(500, Some(JobId::new(77)));
    let second = RolloutRow::of(&mut r);
    assert_eq!(second.devices.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [500]);
    store.save_rollouts(vec![second]).await.unwrap();
    let loaded = store.load_rollouts().await.unwrap();
    assert_eq!(loaded, vec![r], "head and device rows make the whole rollout again");
    store.forget_rollouts(vec![RolloutId::new(1)]).await;
    store.flush_and_wait(Vec::new(), Vec::new()).await;
    assert!(store.load_rollouts().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rollout_stored_whole_by_schema_4_moves_its_devices_into_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    migrate_to(&mut conn, 4).unwrap();
    let mut r = rollout(RolloutId::new(3), 4);
    r.devices.set_outcome(1, crate::rollout::Outcome::Succeeded);
    r.devices.set_job(1, Some(JobId::new(9)));
    r.devices.set_attempts(1, 1);
    // Schema 4 kept the devices in the rollout's JSON: as `slots`, and their ids in the plan.
    let mut body = serde_json::to_value(&r).unwrap();
    body["slots"] = serde_json::to_value(r.devices.slots()).unwrap();
    body["plan"]["devices"] =
        serde_json::to_value(r.devices.slots().iter().map(|s| &s.device_id).collect::<Vec<_>>()).unwrap();
    conn.execute(
        "INSERT INTO rollouts (id, state, body, updated_at) VALUES (3, 'scheduled', ?1, 0)",
        [body.to_string()],
    )
    .unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load_rollouts().await.unwrap(), vec![r]);
}

#[tokio::test]
async fn ids_are_never_reused_even_when_the_database_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .create(vec![new_job(JobId::new(1), "a"), new_job(JobId::new(2), "b"), new_job(JobId::new(3), "c")])
        .await
        .unwrap();
    drop(store);
    // What a damaged or lost write-ahead log does: the last rows and the counter roll back.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("DELETE FROM jobs WHERE id > 1; UPDATE meta SET value = 1 WHERE key = 'last_job_id';")
        .unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    let (jobs, last) = store.load().await.unwrap();
    assert_eq!((jobs.len(), last), (1, JobId::new(3)), "the mark beside the database remembers 3");
    store.create(vec![new_job(JobId::new(4), "d")]).await.unwrap();
}

async fn devices_round_trip_and_the_operator_and_the_wire_keep_to_their_columns(store: &Store) {
    use crate::inventory::{Device, Labels};
    use crate::protocol::DeviceId;
    use crate::snapshot::ImageInfo;
    let id = DeviceId::parse("d1").unwrap();
    let labels: Labels = [("model".to_owned(), "m1".to_owned())].into();
    store.register_devices(vec![(id.clone(), labels.clone())]).await.unwrap();
    let image = ImageInfo { name: "fw.bin".into(), size: 9, sha256: "cd".repeat(32).into() };
    // What the device last said it runs (the status extension) is the wire's too.
    let running = crate::inventory::Running {
        image: "ab".repeat(32).into(),
        version: Some("2.0.3".into()),
        boot: Some(17),
        seq: Some(3),
        caps: vec!["confirm".to_owned(), "resume".to_owned()].into(),
        kids: vec!["21fe31dfa154a261".into()],
        reported_at: 30,
    };
    // The wire's record carries no labels: writing it must not remove the operator's.
    let seen = Device {
        device_id: id.clone(),
        labels: Labels::new(),
        registered: false,
        first_seen: Some(10),
        last_seen: Some(20),
        last_image: Some(image.clone()),
        last_job: Some(JobId::new(4)),
        running: Some(running.clone()),
        profile: crate::inventory::Profile::Rocky,
    };
    store.flush_everything_and_wait(Vec::new(), Vec::new(), vec![seen.clone()]).await;
    // An older record arriving late moves nothing back.
    let late = Device {
        first_seen: Some(5),
        last_seen: Some(15),
        last_image: None,
        last_job: Some(JobId::new(3)),
        ..seen
    };
    store.flush_everything_and_wait(Vec::new(), Vec::new(), vec![late]).await;
    let devices = store.load_devices().await.unwrap();
    assert_eq!(
        devices,
        [Device {
            device_id: id.clone(),
            labels,
            registered: true,
            first_seen: Some(10),
            last_seen: Some(20),
            last_image: Some(image),
            last_job: Some(JobId::new(4)),
            running: Some(running),
            profile: crate::inventory::Profile::Rocky,
        }]
    );
    store.forget_device(id).await.unwrap();
    assert!(store.load_devices().await.unwrap().is_empty());
}

/// 2,000 jobs changed in one flush with 4,000 timeline entries: every change lands, each
/// timeline keeps the order it was given in, and entries for a job deleted in the same flush
/// are dropped with it.
async fn a_big_flush_lands_whole_and_timelines_keep_their_order(store: &Store) {
    let start = store.load().await.unwrap().1;
    let jobs: Vec<NewJob> = (start.get() + 1..=start.get() + 2000)
        .map(|id| new_job(JobId::new(id), &format!("dev-{id}")))
        .collect();
    let ids = store.create(jobs).await.unwrap();
    let (last_id, second_last) = (ids[1999], ids[1998]);
    let (mut records, _) = store.load().await.unwrap();
    let mut history = Vec::new();
    for record in records.iter_mut() {
        record.state = JobState::Failed;
        record.chunks_done = 1;
        record.bytes_sent = 14;
        record.error = Some(format!("no answer from {}", record.device_id));
        record.window = Some(4);
        record.reason_code = Some(6);
        record.started_at = Some(1_700_000_000_500);
        record.finished_at = Some(1_700_000_001_000);
        for (offset, state) in [(1, JobState::Transferring), (1, JobState::Failed)] {
            history.push(HistoryRecord {
                job: record.id,
                at: 1_700_000_000_000 + offset,
                state,
                detail: None,
                attempt: Some(1),
            });
        }
    }
    store.delete(vec![last_id]).await;
    store.flush_and_wait(records.clone(), history).await;
    let (loaded, last) = store.load().await.unwrap();
    assert_eq!(last, last_id);
    records.pop();
    assert_eq!(loaded, records, "every field of every change, the last job deleted");
    let timeline: Vec<JobState> = store.history(second_last).await.unwrap().iter().map(|h| h.state).collect();
    assert_eq!(
        timeline,
        [JobState::Queued, JobState::Transferring, JobState::Failed],
        "same instant, given order"
    );
    assert!(store.history(last_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_postgres_database_of_another_program_or_a_newer_rocky_is_refused_and_left_untouched() {
    let Some(db) = scratch("foreign").await else { return };
    let client = db.settings().connect().await.unwrap();
    client.batch_execute("CREATE TABLE invoices (id INT); INSERT INTO invoices VALUES (1);").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err =
        Store::open_postgres(db.settings(), dir.path(), "i", LEASE).await.err().expect("refused").to_string();
    assert!(err.contains("not Rocky's") && err.contains(db.name()), "{err}");
    let kept: i64 = client.query_one("SELECT count(*) FROM invoices", &[]).await.unwrap().get(0);
    assert_eq!(kept, 1);
    let tables: i64 = client
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "nothing was created beside it");

    client.batch_execute("DROP TABLE invoices").await.unwrap();
    drop(Store::open_postgres(db.settings(), dir.path(), "i", LEASE).await.unwrap());
    client.batch_execute("UPDATE rocky_meta SET value = 99 WHERE key = 'schema_version'").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err =
        Store::open_postgres(db.settings(), dir.path(), "i", LEASE).await.err().expect("refused").to_string();
    assert!(err.contains("newer Rocky (schema 99"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_a_postgres_database_once() {
    let Some(db) = scratch("together").await else { return };
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let names = ["i0", "i1", "i2", "i3"];
    let opened = futures_util::future::join_all(
        dirs.iter().zip(names).map(|(d, name)| Store::open_postgres(db.settings(), d.path(), name, LEASE)),
    )
    .await;
    let stores: Vec<Store> = opened.into_iter().map(|s| s.expect("every instance opens")).collect();
    stores[0].create(vec![new_job(JobId::new(1), "a")]).await.unwrap();
    assert_eq!(stores[3].load().await.unwrap().0.len(), 1, "one database under all of them");
}

#[tokio::test]
async fn a_password_in_store_url_is_refused_without_being_shown() {
    let err = PgSettings::parse("postgres://rocky:hunter2@127.0.0.1/rocky", None).unwrap_err().to_string();
    assert!(err.contains("store.password_file") && !err.contains("hunter2"), "{err}");
    let err = PgSettings::parse("mysql://x", None).unwrap_err().to_string();
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
}

#[tokio::test]
async fn postgres_that_does_not_answer_is_named_with_its_address() {
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = PgSettings::parse(&format!("postgres://rocky@127.0.0.1:{port}/rocky"), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err =
        Store::open_postgres(&settings, dir.path(), "i", LEASE).await.err().expect("refused").to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.to_lowercase().contains("refused"), "{err}");
}

/// A shared store numbers every instance's jobs from its one sequence (the engine reserves
/// none there), and when the sequence has passed the last id a job may have, a submission is
/// refused whole with its own error, never stored under a clamped id.
#[tokio::test]
async fn postgres_draws_ids_and_refuses_them_past_the_last() {
    let Some(opened) = open_postgres().await else { return };
    let store = &opened.store;
    assert!(store.draws_ids() && !open_sqlite().store.draws_ids());
    let mut unnumbered = new_job(JobId::new(1), "a");
    unnumbered.id = None;
    let first = store.create(vec![unnumbered.clone()]).await.unwrap()[0];
    assert_eq!(store.load().await.unwrap().1, first);
    let client = opened.db().unwrap().settings().connect().await.unwrap();
    client.batch_execute(&format!("SELECT setval('job_ids', {})", JobId::MAX.get() - 2)).await.unwrap();
    let refused = store.create(vec![unnumbered.clone(), unnumbered.clone()]).await;
    assert_eq!(refused, Err(WriteError::IdsExhausted));
    let (jobs, _) = store.load().await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first], "nothing of the refused one");
}
