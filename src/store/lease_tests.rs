//! Several instances on one PostgreSQL database: ids never collide, a live instance's jobs are
//! never claimed, a dead one's are claimed after its lease and only then, by exactly one
//! instance each, with every job of one device going to one instance.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::test_support::{LEASE, new_job, scratch};
use super::*;

async fn instance(db: &ScratchDatabase, name: &str, lease: Duration) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Store::open_postgres(db.settings(), dir.path(), name, lease).await.unwrap(), dir)
}

/// Makes `name`'s lease run out now, as if it had stopped renewing long ago.
async fn expire(db: &ScratchDatabase, name: &str) {
    let client = db.settings().connect().await.unwrap();
    client.execute("UPDATE instances SET lease_until = 0 WHERE id = $1", &[&name]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_creating_at_once_never_share_an_id() {
    let Some(db) = scratch("ids").await else { return };
    let (a, _da) = instance(&db, "a", LEASE).await;
    let (b, _db) = instance(&db, "b", LEASE).await;
    let batch = |prefix: &'static str| {
        (0..50).map(move |n| new_job(JobId::new(1), &format!("{prefix}-{n}"))).collect::<Vec<_>>()
    };
    let (mut ids, mut more) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (x, y) = tokio::join!(a.create(batch("a")), b.create(batch("b")));
        ids.extend(x.unwrap());
        more.extend(y.unwrap());
    }
    ids.extend(more);
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (1000, 1000), "every id once");
    assert_eq!(a.load().await.unwrap().0.len(), 1000, "both instances' jobs in one table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_jobs_are_divided_once_and_each_device_goes_to_one_instance() {
    let Some(db) = scratch("divide").await else { return };
    let (dead, _dd) = instance(&db, "dead", LEASE).await;
    // 100 devices with three jobs each, one finished.
    let jobs: Vec<NewJob> = (0..300).map(|n| new_job(JobId::new(1), &format!("dev-{}", n % 100))).collect();
    let ids = dead.create(jobs).await.unwrap();
    let mut finished = dead.load().await.unwrap().0.remove(0);
    finished.state = crate::engine::JobState::Succeeded;
    dead.flush_and_wait(vec![finished.clone()], Vec::new()).await;
    let (b, _db) = instance(&db, "b", LEASE).await;
    let (c, _dc) = instance(&db, "c", LEASE).await;
    let b_claims = b.membership().unwrap().claim(1000).await.unwrap();
    assert!(b_claims.is_empty(), "nothing is claimed while its owner's lease holds");

    expire(&db, "dead").await;
    let (mut by_b, mut by_c) = (Vec::new(), Vec::new());
    // Both claim at once, in small bites, until nothing is left.
    loop {
        let (x, y) = tokio::join!(b.membership().unwrap().claim(7), c.membership().unwrap().claim(7));
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        by_b.extend(x);
        by_c.extend(y);
    }
    let mut owner_of_device: BTreeMap<String, &str> = BTreeMap::new();
    let mut claimed = BTreeSet::new();
    for (who, jobs) in [("b", &by_b), ("c", &by_c)] {
        for job in jobs.iter() {
            assert!(claimed.insert(job.id), "job {} claimed twice", job.id);
            let first = owner_of_device.entry(job.device_id.to_string()).or_insert(who);
            assert_eq!(*first, who, "{} has jobs with two instances", job.device_id);
        }
    }
    let unfinished: BTreeSet<_> = ids.iter().copied().filter(|id| *id != finished.id).collect();
    assert_eq!(claimed, unfinished, "every unfinished job claimed, the finished one left alone");
    assert!(!by_b.is_empty() && !by_c.is_empty(), "both took a share: {} and {}", by_b.len(), by_c.len());
    let mine: BTreeSet<_> = b.membership().unwrap().mine().await.unwrap().iter().map(|j| j.id).collect();
    assert_eq!(mine, by_b.iter().map(|j| j.id).collect(), "b drives what it claimed");
}

#[tokio::test]
async fn a_lease_that_is_not_renewed_runs_out_and_one_that_is_never_does() {
    let Some(db) = scratch("lapse").await else { return };
    let short = Duration::from_secs(1);
    let (keeper, _dk) = instance(&db, "keeper", short).await;
    let (quitter, dq) = instance(&db, "quitter", short).await;
    keeper.create(vec![new_job(JobId::new(1), "kept")]).await.unwrap();
    quitter.create(vec![new_job(JobId::new(1), "orphan")]).await.unwrap();
    let (c, _dc) = instance(&db, "c", LEASE).await;
    assert!(c.membership().unwrap().claim(10).await.unwrap().is_empty(), "both leases hold at first");
    // The quitter stops renewing (its heartbeat ends with the store); the keeper goes on.
    drop(quitter);
    drop(dq);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let taken = loop {
        let jobs = c.membership().unwrap().claim(10).await.unwrap();
        if !jobs.is_empty() {
            break jobs;
        }
        assert!(tokio::time::Instant::now() < deadline, "the orphan was never claimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(taken.iter().map(|j| j.device_id.as_str()).collect::<Vec<_>>(), ["orphan"]);
    assert!(keeper.membership().unwrap().holds(), "the keeper renewed all along");
    assert!(c.membership().unwrap().claim(10).await.unwrap().is_empty(), "the keeper's job stays its own");
}

#[tokio::test]
async fn a_graceful_leave_hands_the_jobs_over_at_once() {
    let Some(db) = scratch("leave").await else { return };
    let (a, _da) = instance(&db, "a", LEASE).await;
    a.create(vec![new_job(JobId::new(1), "d1"), new_job(JobId::new(1), "d2")]).await.unwrap();
    let (b, _db) = instance(&db, "b", LEASE).await;
    assert!(b.membership().unwrap().claim(10).await.unwrap().is_empty());
    a.membership().unwrap().leave().await.unwrap();
    assert_eq!(b.membership().unwrap().claim(10).await.unwrap().len(), 2, "no lease to wait for");
}

#[tokio::test]
async fn a_lease_held_again_after_it_ran_out_is_a_new_term() {
    let Some(db) = scratch("term").await else { return };
    let (a, _da) = instance(&db, "a", Duration::from_secs(1)).await;
    let membership = a.membership().unwrap();
    assert_eq!(membership.term(), 1);
    expire(&db, "a").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while membership.holds() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease ran out in the store but still holds here"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(membership.term(), 1, "running out is not a new term; holding again is");
    membership.rejoin().await.unwrap();
    assert!(membership.holds());
    assert_eq!(membership.term(), 2);
}

#[tokio::test]
async fn a_second_process_with_a_live_instance_id_is_refused_and_one_after_it_lapsed_joins() {
    let Some(db) = scratch("sameid").await else { return };
    let short = Duration::from_secs(1);
    let (first, _d1) = instance(&db, "same", short).await;
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open_postgres(db.settings(), dir.path(), "same", short).await.err().expect("refused");
    assert!(err.to_string().contains("another live Rocky holds the instance id \"same\""), "{err}");
    assert!(first.membership().unwrap().holds(), "the first keeps its lease");
    drop(first);
    // Once the first one's lease has run out, the id is free.
    let dir = tempfile::tempdir().unwrap();
    let second = Store::open_postgres(db.settings(), dir.path(), "same", short).await.unwrap();
    assert!(second.membership().unwrap().holds());
}

#[tokio::test]
async fn an_instance_following_the_planner_reads_again_only_the_rollouts_saved_since() {
    use crate::rollout::Outcome;
    let Some(db) = scratch("follow").await else { return };
    let (a, _da) = instance(&db, "a", LEASE).await;
    let (b, _db) = instance(&db, "b", LEASE).await;
    assert_eq!(a.membership().unwrap().lead("rollouts").await.unwrap(), "a");
    let new = |id, devices| {
        let plan = crate::rollout::RolloutPlan::example_of(devices, |n| format!("d{n}"));
        crate::rollout::Rollout::new(RolloutId::new(id), plan, 1_700_000_000_000)
    };
    let (mut one, mut two) = (new(1, 300), new(2, 5));
    a.save_rollouts(vec![RolloutRow::of(&mut one), RolloutRow::of(&mut two)]).await.unwrap();

    let first = b.rollouts_saved_since(&HashMap::new()).await.unwrap();
    assert_eq!(first.read, vec![one.clone(), two.clone()], "knowing nothing, it reads everything");
    let known: HashMap<RolloutId, i64> =
        first.saves.iter().map(|(id, saved)| (*id, saved.unwrap())).collect();
    assert_eq!(known.len(), 2);
    let again = b.rollouts_saved_since(&known).await.unwrap();
    assert!(again.read.is_empty(), "nothing saved since: nothing read");
    assert_eq!(again.saves, first.saves);

    one.devices.set_outcome(7, Outcome::Failed);
    a.save_rollouts(vec![RolloutRow::of(&mut one)]).await.unwrap();
    let changed = b.rollouts_saved_since(&known).await.unwrap();
    assert_eq!(changed.read, vec![one.clone()], "only the rollout saved since is read");
    assert_ne!(changed.saves[&RolloutId::new(1)], first.saves[&RolloutId::new(1)]);
    assert_eq!(changed.saves[&RolloutId::new(2)], first.saves[&RolloutId::new(2)]);

    a.forget_rollouts(vec![RolloutId::new(2)]).await;
    a.flush_and_wait(Vec::new(), Vec::new()).await;
    let gone = b.rollouts_saved_since(&known).await.unwrap();
    assert_eq!(
        gone.saves.keys().copied().collect::<Vec<_>>(),
        [RolloutId::new(1)],
        "a forgotten one is gone"
    );
    // The save numbers come from one sequence: a rollout stored again under a forgotten id is
    // never taken for the one it replaces.
    let mut reused = new(2, 5);
    a.save_rollouts(vec![RolloutRow::of(&mut reused)]).await.unwrap();
    let back = b.rollouts_saved_since(&known).await.unwrap();
    assert_eq!(back.read.iter().map(|r| r.id).collect::<Vec<_>>(), [RolloutId::new(1), RolloutId::new(2)]);

    // A rollout missing one of its device rows is skipped, and said to be unreadable; the others
    // are read.
    let client = db.settings().connect().await.unwrap();
    client.execute("DELETE FROM rollout_devices WHERE rollout_id = 1 AND position = 150", &[]).await.unwrap();
    let damaged = b.rollouts_saved_since(&HashMap::new()).await.unwrap();
    assert_eq!(damaged.read.iter().map(|r| r.id).collect::<Vec<_>>(), [RolloutId::new(2)]);
    assert_eq!(damaged.unreadable, [RolloutId::new(1)]);
    // Its number is known now: it is not read (and warned about) again until saved again.
    let known: HashMap<RolloutId, i64> =
        damaged.saves.iter().map(|(id, saved)| (*id, saved.unwrap())).collect();
    assert_eq!(known.len(), 2);
    let quiet = b.rollouts_saved_since(&known).await.unwrap();
    assert!(quiet.read.is_empty() && quiet.unreadable.is_empty());
}

/// The devices a refresh of `store` hands on: (id, `site` label, `last_seen`).
async fn refreshed(store: &Store, whole: bool) -> Vec<(String, Option<String>, Option<u64>)> {
    let mut got = Vec::new();
    store
        .refresh_devices(whole, |batch| {
            got.extend(
                batch
                    .into_iter()
                    .map(|d| (d.device_id.to_string(), d.labels.get("site").cloned(), d.last_seen)),
            )
        })
        .await
        .unwrap();
    got
}

#[tokio::test]
async fn the_inventory_refresh_reads_the_devices_changed_since_its_last_read_and_misses_none() {
    let Some(db) = scratch("devices").await else { return };
    let (a, _da) = instance(&db, "a", LEASE).await;
    let (b, _db) = instance(&db, "b", LEASE).await;
    let labels = |site: &str| crate::inventory::Labels::from_iter([("site".to_owned(), site.to_owned())]);
    let rows = (1..=3).map(|n| (DeviceId::parse(&format!("d{n}")).unwrap(), labels("lab"))).collect();
    a.register_devices(rows).await.unwrap();
    let ids = |read: Vec<(String, Option<String>, Option<u64>)>| {
        read.into_iter().map(|(id, ..)| id).collect::<Vec<_>>()
    };

    assert_eq!(ids(refreshed(&b, false).await), ["d1", "d2", "d3"], "the first read is whole");
    // A transaction left open on the server (here on the same database) does not make the
    // reads take again what they read while it runs.
    let mut idle = db.settings().connect().await.unwrap();
    let open = idle.transaction().await.unwrap();
    open.query_one("SELECT txid_current()", &[]).await.unwrap();
    assert!(refreshed(&b, false).await.is_empty(), "nothing changed");
    a.register_devices(vec![(DeviceId::parse("d2").unwrap(), labels("field"))]).await.unwrap();
    let changed = refreshed(&b, false).await;
    assert!(changed.contains(&("d2".into(), Some("field".into()), None)), "{changed:?}");
    assert!(!changed.iter().any(|(id, ..)| id != "d2"), "only what changed: {changed:?}");
    assert!(refreshed(&b, false).await.is_empty(), "a change is read once");

    // A change that commits after a read began, however long after it was made, is read the
    // next time.
    let mut other = db.settings().connect().await.unwrap();
    let late = other.transaction().await.unwrap();
    late.execute("UPDATE devices SET last_seen = 4242 WHERE id = 'd3'", &[]).await.unwrap();
    let before_commit = refreshed(&b, false).await;
    assert!(!before_commit.iter().any(|(_, _, seen)| *seen == Some(4242)), "{before_commit:?}");
    late.commit().await.unwrap();
    let after_commit = refreshed(&b, false).await;
    assert_eq!(after_commit, [("d3".into(), Some("lab".into()), Some(4242))], "only the late change");
    assert!(refreshed(&b, false).await.is_empty(), "and once");

    assert_eq!(ids(refreshed(&b, true).await), ["d1", "d2", "d3"], "a whole read takes every device");
    // A whole read counts as a read: a store that loaded every device at its start reads only
    // what changed after.
    let (c, _dc) = instance(&db, "c", LEASE).await;
    assert_eq!(c.load_devices().await.unwrap().len(), 3);
    assert!(refreshed(&c, false).await.is_empty(), "a whole read counts as a read");
    open.rollback().await.unwrap();
}

/// What `store`'s instance reads of others' jobs changed since `seen`: (device, bytes sent),
/// and where the next read starts.
async fn others(store: &Store, seen: Option<&Seen>) -> (Vec<(String, u64)>, Seen) {
    let mut got = Vec::new();
    let next = store
        .membership()
        .unwrap()
        .others_changed(seen, |jobs| {
            got.extend(jobs.into_iter().map(|j| (j.device_id.to_string(), j.bytes_sent)))
        })
        .await
        .unwrap();
    (got, next)
}

/// An instance copying others' jobs reads each change once: its own jobs never, a change that
/// commits after a read began at the next read, and nothing again for a transaction left open.
#[tokio::test]
async fn an_instance_reads_each_change_of_others_jobs_once_however_late_it_commits() {
    let Some(db) = scratch("mirror").await else { return };
    let (a, _da) = instance(&db, "a", LEASE).await;
    let (b, _db) = instance(&db, "b", LEASE).await;
    a.create(vec![new_job(JobId::new(1), "a1"), new_job(JobId::new(1), "a2")]).await.unwrap();
    b.create(vec![new_job(JobId::new(1), "b1")]).await.unwrap();
    let (all, seen) = others(&b, None).await;
    assert_eq!(all, [("a1".into(), 0), ("a2".into(), 0)], "a's jobs, not b's own");
    let mut idle = db.settings().connect().await.unwrap();
    let open = idle.transaction().await.unwrap();
    open.query_one("SELECT txid_current()", &[]).await.unwrap();
    let (none, seen) = others(&b, Some(&seen)).await;
    assert!(none.is_empty(), "nothing changed, a transaction open or not: {none:?}");

    // What a Rocky before schema 15 reads of others' jobs (a change number, a time) is still
    // written, so it goes on showing them while a rolling upgrade runs.
    let older_reads = "SELECT changed, changed_at FROM jobs WHERE device = 'a2'";
    let plain = db.settings().connect().await.unwrap();
    let before = plain.query_one(older_reads, &[]).await.unwrap();
    let (number, at): (i64, i64) = (before.get(0), before.get(1));
    let mut a2 = a.load().await.unwrap().0.into_iter().find(|j| j.device_id.as_str() == "a2").unwrap();
    a2.bytes_sent = 4096;
    a.flush_and_wait(vec![a2], Vec::new()).await;
    let after = plain.query_one(older_reads, &[]).await.unwrap();
    assert!(after.get::<_, i64>(0) > number && after.get::<_, i64>(1) >= at, "the change number moved");
    let mut writer = db.settings().connect().await.unwrap();
    let late = writer.transaction().await.unwrap();
    late.execute("UPDATE jobs SET bytes_sent = 777 WHERE device = 'a1'", &[]).await.unwrap();
    let (changed, seen) = others(&b, Some(&seen)).await;
    assert_eq!(changed, [("a2".into(), 4096)], "what committed, once");
    late.commit().await.unwrap();
    let (late_read, seen) = others(&b, Some(&seen)).await;
    assert_eq!(late_read, [("a1".into(), 777)], "a change committed after the last read began");
    let (after, _) = others(&b, Some(&seen)).await;
    assert!(after.is_empty(), "each change once: {after:?}");
    open.rollback().await.unwrap();
    // A server whose transaction numbers went back (a promoted replica behind the same
    // address) is read whole, not trusted to have changed nothing.
    let (whole, _) = others(&b, Some(&Seen::ahead_of_any_server())).await;
    assert_eq!(whole.len(), 2, "every other instance's job: {whole:?}");
}

#[tokio::test]
async fn only_the_instance_that_plans_rollouts_writes_them() {
    let Some(db) = scratch("planner").await else { return };
    let (a, _da) = instance(&db, "a", LEASE).await;
    let (b, _db) = instance(&db, "b", LEASE).await;
    let plan = crate::rollout::RolloutPlan::example_of(3, |n| format!("d{n}"));
    let mut rollout = crate::rollout::Rollout::new(RolloutId::new(1), plan, 1_700_000_000_000);
    let row = RolloutRow::of(&mut rollout);
    assert_eq!(a.membership().unwrap().lead("rollouts").await.unwrap(), "a");
    assert_eq!(
        b.membership().unwrap().lead("rollouts").await.unwrap(),
        "a",
        "a holds the role while it lives"
    );
    a.save_rollouts(vec![row.clone()]).await.unwrap();
    // Once b holds the role (a's lease ran out), a's writes are refused and nothing changes.
    expire(&db, "a").await;
    assert_eq!(b.membership().unwrap().lead("rollouts").await.unwrap(), "b");
    let mut changed = row.clone();
    changed.state = "cancelled";
    let refused = a.save_rollouts(vec![changed]).await;
    assert!(matches!(&refused, Err(WriteError::Elsewhere(why)) if why.contains("instance b")), "{refused:?}");
    assert_eq!(b.load_rollouts().await.unwrap()[0].state, rollout.state, "the stored rollout is unchanged");
    b.save_rollouts(vec![row]).await.unwrap();
}
