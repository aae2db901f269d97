//! The store against real files: creation, round trips, migrations, refusals.

use bytes::Bytes;
use rusqlite::Connection;

use super::rollouts::RolloutRow;
use super::*;
use crate::engine::{JobId, JobState};
use crate::firmware::Image;

fn new_job(id: JobId, device: &str) -> NewJob {
    NewJob {
        id,
        device: device.to_owned(),
        image: Image::new("fw.bin", Bytes::from_static(b"firmware bytes")),
        chunk_size: 64,
        chunk_interval_ms: 0,
        chunks_total: 1,
        created_at: 1_700_000_000_000,
        rollout: None,
    }
}

#[tokio::test]
async fn jobs_round_trip_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create(vec![new_job(1, "a"), new_job(2, "b")]).await.unwrap();
    assert!(store.images().path(new_job(1, "a").image.sha256()).is_file(), "image kept by content");
    let mut record = store.load().await.unwrap().0.remove(0);
    record.state = JobState::Succeeded;
    record.finished_at = Some(1_700_000_001_000);
    let history = HistoryRecord {
        job: 1,
        at: 1_700_000_001_000,
        state: JobState::Succeeded,
        detail: None,
        attempt: None,
    };
    store.flush_and_wait(vec![record.clone()], vec![history]).await;
    let (jobs, last) = store.load().await.unwrap();
    assert_eq!((jobs[0].state, last), (JobState::Succeeded, 2));
    let timeline: Vec<JobState> = store.history(1).await.unwrap().iter().map(|h| h.state).collect();
    assert_eq!(timeline, vec![JobState::Queued, JobState::Succeeded]);
    // Deleting keeps the high-water mark: the next id is still new.
    // (The engine decides what retention removes; the store deletes those rows by id, even
    // when their last change has not been written yet.)
    store.delete(vec![1]).await;
    store.flush_and_wait(Vec::new(), Vec::new()).await;
    let (jobs, last) = store.load().await.unwrap();
    assert_eq!((jobs.len(), jobs[0].id, last), (1, 2, 2), "job 1 and its timeline are gone");
    assert!(store.history(1).await.unwrap().is_empty());
    store.create(vec![new_job(3, "c")]).await.unwrap();
    // A submission with an id the store holds is refused whole: no row of it is written.
    let refused = store.create(vec![new_job(4, "d"), new_job(2, "again")]).await;
    assert_eq!(refused, Err(WriteError::Duplicate(2)));
    let (jobs, _) = store.load().await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![2, 3],
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
    assert_eq!((jobs.len(), jobs[0].image.name.as_str(), last), (1, "old.bin", 7));
    assert_eq!(store.history(7).await.unwrap()[0].attempt, None, "the new column reads as empty");
    store.create(vec![new_job(8, "x")]).await.unwrap();
    assert_eq!(store.load().await.unwrap().1, 8);
}

/// A rollout of `devices` devices, none started.
fn rollout(id: u64, devices: usize) -> crate::rollout::Rollout {
    let plan = crate::rollout::RolloutPlan::example_of(devices, |n| format!("d{n}"));
    crate::rollout::Rollout::new(id, plan, 1_700_000_000_000)
}

#[tokio::test]
async fn a_rollout_change_writes_its_head_and_only_the_devices_that_changed() {
    use crate::rollout::Outcome;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut r = rollout(1, 1000);
    let (first, saved) = RolloutRow::of(&r, &[]);
    assert_eq!(first.devices.len(), 1000, "the first write holds every device");
    assert!(first.body.len() < 1000, "the head leaves the devices out: {} bytes", first.body.len());
    store.save_rollouts(vec![first]).await.unwrap();
    r.slots[500].outcome = Outcome::Failed;
    r.slots[500].detail = Some("writing to flash failed".into());
    r.slots[500].job_id = Some(77);
    let (second, _) = RolloutRow::of(&r, &saved);
    assert_eq!(second.devices.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [500]);
    store.save_rollouts(vec![second]).await.unwrap();
    let loaded = store.load_rollouts().await.unwrap();
    assert_eq!(loaded, vec![r], "head and device rows make the whole rollout again");
    store.forget_rollouts(vec![1]).await;
    store.flush_and_wait(Vec::new(), Vec::new()).await;
    assert!(store.load_rollouts().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rollout_stored_whole_by_schema_4_moves_its_devices_into_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    migrate_to(&mut conn, 4).unwrap();
    let mut r = rollout(3, 4);
    r.slots[1].outcome = crate::rollout::Outcome::Succeeded;
    r.slots[1].job_id = Some(9);
    r.slots[1].attempts = 1;
    conn.execute(
        "INSERT INTO rollouts (id, state, body, updated_at) VALUES (3, 'scheduled', ?1, 0)",
        [serde_json::to_string(&r).unwrap()],
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
    store.create(vec![new_job(1, "a"), new_job(2, "b"), new_job(3, "c")]).await.unwrap();
    drop(store);
    // What a damaged or lost write-ahead log does: the last rows and the counter roll back.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch("DELETE FROM jobs WHERE id > 1; UPDATE meta SET value = 1 WHERE key = 'last_job_id';")
        .unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    let (jobs, last) = store.load().await.unwrap();
    assert_eq!((jobs.len(), last), (1, 3), "the mark beside the database remembers 3");
    store.create(vec![new_job(4, "d")]).await.unwrap();
}

#[tokio::test]
async fn devices_round_trip_and_the_operator_and_the_wire_keep_to_their_columns() {
    use crate::inventory::{Device, Labels};
    use crate::protocol::DeviceId;
    use crate::snapshot::ImageInfo;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = DeviceId::parse("d1").unwrap();
    let labels: Labels = [("model".to_owned(), "m1".to_owned())].into();
    store.register_devices(vec![(id.clone(), labels.clone())]).await.unwrap();
    let image = ImageInfo { name: "fw.bin".into(), size: 9, sha256: "cd".repeat(32) };
    // The wire's record carries no labels: writing it must not remove the operator's.
    let seen = Device {
        device_id: id.clone(),
        labels: Labels::new(),
        registered: false,
        first_seen: Some(10),
        last_seen: Some(20),
        last_image: Some(image.clone()),
        last_job: Some(4),
    };
    store.flush_everything_and_wait(Vec::new(), Vec::new(), vec![seen.clone()]).await;
    // An older record arriving late moves nothing back.
    let late =
        Device { first_seen: Some(5), last_seen: Some(15), last_image: None, last_job: Some(3), ..seen };
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
            last_job: Some(4),
        }]
    );
    store.forget_device(id).await.unwrap();
    assert!(store.load_devices().await.unwrap().is_empty());
}
