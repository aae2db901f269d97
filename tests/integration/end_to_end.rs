//! Rocky and a simulated fleet over real brokers: the embedded rumqttd and a mosquitto started
//! on a free loopback port.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{Mosquitto, test_image, wait_for};
use rocky::broker::EmbeddedBroker;
use rocky::engine::{JobId, JobSpec, JobState};
use rocky::firmware::{ChunkSize, Image, Library};
use rocky::runtime::{BrokerUrl, JobFilter, Runtime, RuntimeConfig};
use rocky::sim::{Behavior, BehaviorPlan, Fleet, FleetConfig, Selection, Verdict};
use rocky::snapshot::JobSnapshot;

fn start_runtime(broker: BrokerUrl, tweak: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig::new(broker);
    tweak(&mut config);
    Runtime::start(config, Arc::new(Library::new()))
}

fn one_job_per_device(
    fleet: &Fleet,
    image: &Image,
    chunk: Option<u64>,
    interval: Option<Duration>,
) -> Vec<JobSpec> {
    let chunk_size = chunk.map(|c| ChunkSize::new(c).unwrap());
    fleet
        .ids()
        .into_iter()
        .map(|device| JobSpec { chunk_size, chunk_interval: interval, ..JobSpec::new(device, image.clone()) })
        .collect()
}

async fn wait_all_final(runtime: &Runtime, timeout: Duration) -> Vec<std::sync::Arc<JobSnapshot>> {
    wait_for(timeout, "every job to end", || async {
        let jobs = runtime.handle.jobs(&JobFilter::default());
        jobs.iter().all(|j| j.state.is_final()).then_some(jobs)
    })
    .await
}

async fn run_fleet_of_50(broker: BrokerUrl) {
    let fleet = Fleet::start(&FleetConfig::new(broker.clone(), 50)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await, "fleet connected");
    let runtime = start_runtime(broker, |_| {});
    let image = Image::new("fw-256k.bin", test_image(256 * 1024, 7));
    let specs = one_job_per_device(&fleet, &image, None, None);
    let created = runtime.handle.submit(specs).await.unwrap();
    assert_eq!(created.len(), 50);
    let jobs = wait_all_final(&runtime, Duration::from_secs(90)).await;
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "job {} on {}: {:?}", job.id, job.device_id, job.error);
        assert_eq!((job.chunks_done, job.chunks_total), (64, 64));
        let report = fleet.report(&job.device_id).unwrap();
        assert_eq!(report.last_verdict(), Some(&Verdict::Verified), "{}", job.device_id);
        assert!(report.bytes >= 256 * 1024);
    }
    runtime.shutdown().await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_devices_update_256_kib_through_the_embedded_broker() {
    let broker = EmbeddedBroker::start(None).unwrap();
    run_fleet_of_50(broker.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_devices_update_256_kib_through_mosquitto() {
    let Some(mosquitto) = Mosquitto::start("fifty_devices_update_256_kib_through_mosquitto") else { return };
    run_fleet_of_50(mosquitto.url()).await;
}

async fn run_mixed_fleet(broker: BrokerUrl) {
    let plan = BehaviorPlan::default()
        .with(Behavior::Nack, Selection::parse("dev-02").unwrap())
        .with(Behavior::Fail, Selection::parse("dev-03").unwrap())
        .with(Behavior::Silent, Selection::parse("dev-04").unwrap())
        .with(Behavior::Corrupt, Selection::parse("dev-05").unwrap())
        .with(Behavior::Garbage, Selection::parse("dev-06").unwrap())
        .with(Behavior::Slow, Selection::parse("dev-07").unwrap());
    let mut fleet_config = FleetConfig::new(broker.clone(), 10);
    fleet_config.plan = plan;
    // Real brokers run on real time, so the deadlines here are twenty times the slow device's
    // delay and only outcomes are checked; the timing rules themselves are tested on the
    // engine's explicit clock (engine::tests, a_slow_device_within_the_deadline_…).
    fleet_config.slow_delay = Duration::from_millis(100);
    let fleet = Fleet::start(&fleet_config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let runtime = start_runtime(broker, |c| {
        c.engine.request_timeout = Duration::from_secs(2);
        c.engine.request_attempts = 2;
        c.engine.done_timeout = Duration::from_secs(5);
    });
    let image = Image::new("fw.bin", test_image(40_000, 3));
    let specs = one_job_per_device(&fleet, &image, Some(1024), None);
    runtime.handle.submit(specs).await.unwrap();
    let jobs = wait_all_final(&runtime, Duration::from_secs(60)).await;
    let states: BTreeMap<String, JobState> =
        jobs.iter().map(|j| (j.device_id.to_string(), j.state)).collect();
    for (device, state) in &states {
        let expected = match device.as_str() {
            "dev-02" => JobState::Rejected,
            "dev-03" | "dev-05" => JobState::Failed,
            "dev-04" => JobState::TimedOut,
            _ => JobState::Succeeded,
        };
        assert_eq!(*state, expected, "{device}");
    }
    // The devices' own reasons are the jobs' errors, word for word (a text, and codes read
    // through the table).
    let error =
        |device: &str| jobs.iter().find(|j| j.device_id.as_str() == device).and_then(|j| j.error.clone());
    assert_eq!(error("dev-02").as_deref(), Some("battery below 20%"));
    assert_eq!(error("dev-03").as_deref(), Some("writing to flash failed"));
    assert_eq!(error("dev-05").as_deref(), Some("integrity check failed (hash mismatch)"));
    let silent = jobs.iter().find(|j| j.device_id.as_str() == "dev-04").unwrap();
    assert_eq!(silent.attempts, 2, "the silent device was asked twice");
    assert!(silent.error.as_deref().unwrap_or("").contains("FOTA_REQUEST"));
    // The garbage device's undecodable frames changed nothing and it still updated.
    assert_eq!(fleet.report(&"dev-06".parse().unwrap()).unwrap().last_verdict(), Some(&Verdict::Verified));
    runtime.shutdown().await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_ends_in_the_expected_states_through_the_embedded_broker() {
    let broker = EmbeddedBroker::start(None).unwrap();
    run_mixed_fleet(broker.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_ends_in_the_expected_states_through_mosquitto() {
    let Some(mosquitto) = Mosquitto::start("a_mixed_fleet_ends_in_the_expected_states_through_mosquitto")
    else {
        return;
    };
    run_mixed_fleet(mosquitto.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_transfer_leaves_no_job_stuck() {
    let Some(mut mosquitto) =
        Mosquitto::start("a_broker_killed_and_restarted_mid_transfer_leaves_no_job_stuck")
    else {
        return;
    };
    let fleet = Fleet::start(&FleetConfig::new(mosquitto.url(), 12)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let runtime = start_runtime(mosquitto.url(), |c| {
        c.engine.request_timeout = Duration::from_secs(2);
        c.engine.done_timeout = Duration::from_secs(5);
    });
    let mut events = runtime.handle.subscribe();
    // 64 chunks of 1 KiB every 25 ms: about 1.6 s per job, so the kill lands mid-transfer.
    let image = Image::new("fw.bin", test_image(64 * 1024, 11));
    let specs = one_job_per_device(&fleet, &image, Some(1024), Some(Duration::from_millis(25)));
    runtime.handle.submit(specs).await.unwrap();
    // Wait until transfers are under way (a tenth chunk has gone out), then kill the broker.
    wait_for(Duration::from_secs(20), "transfers under way", || {
        let mut seen = None;
        while let Some(rocky::runtime::Received::Event(e)) = events.try_recv() {
            if let rocky::runtime::RuntimeEvent::Engine(rocky::engine::Event::ChunkSent {
                chunk: 10, ..
            }) = e.event
            {
                seen = Some(());
            }
        }
        std::future::ready(seen)
    })
    .await;
    mosquitto.kill();
    wait_for(Duration::from_secs(10), "Rocky to notice the broker is gone", || async {
        let status = runtime.handle.status().await.ok()?;
        (!status.connection.is_connected()).then_some(())
    })
    .await;
    mosquitto.restart();
    let jobs = wait_all_final(&runtime, Duration::from_secs(60)).await;
    for job in &jobs {
        assert!(
            job.state == JobState::Succeeded || job.error.is_some(),
            "job {} ended {} with no reason",
            job.id,
            job.state
        );
    }
    // The devices keep what they received and Rocky resumes, so every update completes.
    let succeeded = jobs.iter().filter(|j| j.state == JobState::Succeeded).count();
    assert_eq!(succeeded, jobs.len(), "{jobs:#?}");
    runtime.shutdown().await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_silent_devices_do_not_hold_up_a_healthy_one() {
    let broker = EmbeddedBroker::start(None).unwrap();
    // dev-01 … dev-64 never answer; dev-65 does.
    let mut fleet_config = FleetConfig::new(broker.url(), 65);
    let silent: Vec<String> = (1..=64).map(|i| format!("dev-{i:02}")).collect();
    fleet_config.plan =
        BehaviorPlan::default().with(Behavior::Silent, Selection::parse(&silent.join(",")).unwrap());
    let fleet = Fleet::start(&fleet_config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(30)).await);
    // The defaults: 64 transfer slots, a 30 s request timeout. While requests and transfers
    // shared one bound, the 64 silent jobs held every slot for 90 s (with max_requests = 64
    // this test times out).
    let runtime = start_runtime(broker.url(), |_| {});
    let image = Image::new("fw.bin", test_image(8_000, 5));
    let specs = one_job_per_device(&fleet, &image, Some(1024), None);
    runtime.handle.submit(specs).await.unwrap();
    let healthy = wait_for(Duration::from_secs(20), "the healthy device's job to succeed", || async {
        let jobs = runtime.handle.jobs(&JobFilter::default());
        jobs.into_iter().find(|j| j.device_id.as_str() == "dev-65" && j.state == JobState::Succeeded)
    })
    .await;
    assert_eq!(healthy.chunks_done, 8);
    runtime.shutdown().await;
    fleet.stop().await;
}

/// After a broker restart Rocky is back before the devices have resubscribed, so the
/// FOTA_REQUEST it repeats at once is lost; it goes again 5 s later, not a whole request timeout
/// (30 s) later (issue 20, B9). Devices written from PROTOCOL.md, back a second after Rocky.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_jobs_go_on_within_seconds_not_a_request_timeout() {
    use crate::support::wire_device::{Mode, WireDevice};
    let Some(mut mosquitto) = Mosquitto::start("after_a_broker_restart_jobs_go_on") else { return };
    let mut devices = Vec::new();
    for i in 0..4 {
        devices.push(WireDevice::start(mosquitto.port, &format!("dev-{i}"), Mode::Honest).await);
    }
    let runtime = start_runtime(mosquitto.url(), |_| {}); // the default 30 s request timeout
    wait_for(Duration::from_secs(20), "Rocky to connect", || async {
        runtime.handle.status().await.ok().filter(|s| s.connection.is_connected()).map(|_| ())
    })
    .await;
    // 64 chunks of 1 KiB every 50 ms: about 3 s a job, so the restart lands mid-transfer.
    let image = Image::new("fw.bin", test_image(64 * 1024, 4));
    let chunk_size = Some(ChunkSize::new(1024).unwrap());
    let specs = (0..4)
        .map(|i| JobSpec {
            chunk_size,
            chunk_interval: Some(Duration::from_millis(50)),
            ..JobSpec::new(format!("dev-{i}").parse().unwrap(), image.clone())
        })
        .collect();
    runtime.handle.submit(specs).await.unwrap();
    wait_for(Duration::from_secs(20), "transfers under way", || async {
        let jobs = runtime.handle.jobs(&JobFilter::default());
        jobs.iter().all(|j| j.chunks_done >= 5).then_some(())
    })
    .await;
    mosquitto.restart();
    let restarted = std::time::Instant::now();
    let jobs = wait_all_final(&runtime, Duration::from_secs(20)).await;
    let took = restarted.elapsed();
    eprintln!("every job ended {took:?} after the broker restarted");
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "job {}: {:?}", job.id, job.error);
    }
    assert!(took < Duration::from_secs(15), "{took:?}: a whole request timeout was waited");
    runtime.shutdown().await;
}

/// The embedded broker delivers a connection's messages in the order they were published,
/// across topics: 100 devices (written from PROTOCOL.md) on one connection each get every
/// chunk before FOTA_DONE, three runs in a row (issue 20, B7). Through rumqttd 7 to 20 of 100
/// failed the hash check this way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_devices_on_one_connection_get_every_chunk_before_fota_done_through_the_embedded_broker() {
    use crate::support::wire_device::{Mode, WireDevice};
    let broker = EmbeddedBroker::start(None).unwrap();
    let runtime = start_runtime(broker.url(), |_| {});
    wait_for(Duration::from_secs(20), "Rocky to connect", || async {
        runtime.handle.status().await.ok().filter(|s| s.connection.is_connected()).map(|_| ())
    })
    .await;
    let ids: Vec<String> = (0..100).map(|i| format!("gw-{i:03}")).collect();
    let devices = WireDevice::fleet(broker.url().port, &ids, Mode::Honest, "one-gateway").await;
    for run in 0..3u64 {
        let image = Image::new(format!("fw-{run}.bin"), test_image(48 * 1024, 20 + run));
        let chunk_size = Some(ChunkSize::new(1024).unwrap());
        let specs = ids
            .iter()
            .map(|id| JobSpec { chunk_size, ..JobSpec::new(id.parse().unwrap(), image.clone()) })
            .collect();
        let created = runtime.handle.submit(specs).await.unwrap();
        let wanted: std::collections::BTreeSet<JobId> = created.iter().map(|j| j.id).collect();
        let jobs = wait_for(Duration::from_secs(90), "the run's jobs to end", || async {
            let jobs = runtime.handle.jobs(&JobFilter::default());
            let mine: Vec<_> = jobs.into_iter().filter(|j| wanted.contains(&j.id)).collect();
            mine.iter().all(|j| j.state.is_final()).then_some(mine)
        })
        .await;
        let succeeded = jobs.iter().filter(|j| j.state == JobState::Succeeded).count();
        assert_eq!(succeeded, 100, "run {run}: {:?}", jobs.iter().find(|j| j.state != JobState::Succeeded));
        for (device, id) in devices.iter().zip(&ids) {
            let verdicts = device.seen().verdicts;
            assert_eq!(verdicts.last().map(|(_, ok)| *ok), Some(true), "run {run}: {id} {verdicts:?}");
        }
    }
    runtime.shutdown().await;
}

/// Established TCP connections whose far end is `port` on this host's loopback (the client
/// ends of connections to a broker listening there).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    rocky::broker::tcp_sockets(&table).filter(|s| s.remote_port == port && s.state == "01").count()
}

/// `rocky sim --per-connection`: ten devices on three connections (4, 4 and 2) each get their
/// own commands and chunks and answer on their own topics, pushed or paced, well or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_sharing_connections_each_update_as_their_own() {
    let Some(mosquitto) = Mosquitto::start("devices_sharing_connections_each_update_as_their_own") else {
        return;
    };
    let broker = mosquitto.url();
    let mut config = FleetConfig::new(broker.clone(), 10);
    config.per_connection = 4;
    config.plan = BehaviorPlan::default()
        .with(Behavior::Nack, Selection::parse("dev-02").unwrap())
        .with(Behavior::Corrupt, Selection::parse("dev-07").unwrap());
    config.model.window = Some(8);
    config.model.paced = Some(Selection::parse("dev-03,dev-04,dev-09").unwrap());
    let fleet = Fleet::start(&config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await, "fleet connected");
    assert_eq!(connections_to(broker.port), 3, "ten devices, four to a connection");
    let runtime = start_runtime(broker, |_| {});
    let image = Image::new("fw.bin", test_image(40_000, 9));
    runtime.handle.submit(one_job_per_device(&fleet, &image, Some(1024), None)).await.unwrap();
    let jobs = wait_all_final(&runtime, Duration::from_secs(60)).await;
    for job in &jobs {
        let expected = match job.device_id.as_str() {
            "dev-02" => JobState::Rejected,
            "dev-07" => JobState::Failed,
            _ => JobState::Succeeded,
        };
        assert_eq!(job.state, expected, "{}: {:?}", job.device_id, job.error);
        let paced = ["dev-03", "dev-04", "dev-09"].contains(&job.device_id.as_str());
        assert_eq!(job.window.is_some(), paced, "{} asked for the window it was given", job.device_id);
        let report = fleet.report(&job.device_id).unwrap();
        if expected == JobState::Succeeded {
            assert_eq!(report.last_verdict(), Some(&Verdict::Verified), "{}", job.device_id);
            assert_eq!((job.chunks_done, job.chunks_total), (40, 40));
        }
    }
    runtime.shutdown().await;
    fleet.stop().await;
}

/// A broker that refuses the subscriptions (an ACL) leaves every device deaf: devices on a
/// shared connection and on their own say so and none counts as connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_whose_subscriptions_the_broker_refuses_are_not_connected() {
    let Some((mosquitto, _rules)) = Mosquitto::start_refusing_subscriptions("sim_refused_subscriptions")
    else {
        return;
    };
    let mut shared = FleetConfig::new(mosquitto.url(), 4);
    shared.per_connection = 2;
    let mut alone = FleetConfig::new(mosquitto.url(), 2);
    alone.prefix = "aws-".into();
    alone.model.profile = rocky::inventory::Profile::AwsIotOta;
    for config in [shared, alone] {
        let fleet = Fleet::start(&config).unwrap();
        let count = config.count;
        wait_for(Duration::from_secs(20), "every device to be refused", || async {
            (fleet.refused() == count).then_some(())
        })
        .await;
        assert_eq!(fleet.connected(), 0, "a deaf device is not connected");
        assert!(fleet.reports().iter().all(|(_, r)| r.refused_subscription && !r.connected));
        fleet.stop().await;
    }
}

/// A connection of thousands of devices subscribes in more packets (64 filters each) than the
/// client's request queue holds (64): they all go out while the connection is polled, and the
/// devices count as connected only once every packet was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_devices_on_one_connection_all_subscribe() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let mut config = FleetConfig::new(broker.url(), 3000);
    config.per_connection = 3000;
    let fleet = Fleet::start(&config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(30)).await, "{} of 3000 connected", fleet.connected());
    fleet.stop().await;
}

/// Chunk progress reaches the job table in batches (at most one update per
/// `PROGRESS_REFRESH`, besides the job's other changes), not once per chunk: one update per chunk
/// woke every follower of the table per chunk. Followers still see the job move while it runs,
/// and its last snapshot has the exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_progress_reaches_the_job_table_in_batches() {
    use rocky::runtime::{JobChange, PROGRESS_REFRESH};
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 2)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await, "fleet connected");
    let runtime = start_runtime(broker.url(), |_| {});
    let mut follower = runtime.handle.follow_jobs();
    let start = follower.try_next(1024).map_or(0, |c| c.cursor);
    // A fast job (2,048 chunks as quickly as they go) and a slow one (40 chunks 10 ms apart).
    let ids = fleet.ids();
    let chunk = Some(ChunkSize::new(1024).unwrap());
    let fast = JobSpec {
        chunk_size: chunk,
        ..JobSpec::new(ids[0].clone(), Image::new("fast.bin", test_image(2 << 20, 5)))
    };
    let slow = JobSpec {
        chunk_size: chunk,
        chunk_interval: Some(Duration::from_millis(10)),
        ..JobSpec::new(ids[1].clone(), Image::new("slow.bin", test_image(40 * 1024, 6)))
    };
    let seen = tokio::spawn(async move {
        // Every chunks_done value the slow job showed a follower.
        let mut values = Vec::new();
        while let Some(batch) = follower.next(1024).await {
            for change in batch.changes {
                if let JobChange::Job(job) = change
                    && job.device_id == ids[1]
                {
                    values.push(job.chunks_done);
                    if job.state.is_final() {
                        return (values, batch.cursor);
                    }
                }
            }
        }
        (values, 0)
    });
    let started = std::time::Instant::now();
    runtime.handle.submit(vec![fast, slow]).await.unwrap();
    let jobs = wait_all_final(&runtime, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let (values, _) = tokio::time::timeout(Duration::from_secs(10), seen).await.unwrap().unwrap();
    for job in &jobs {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.chunks_done, job.chunks_total, "exact counts at the end");
    }
    assert!(
        values.iter().any(|&done| done > 0 && done < 40),
        "a follower sees the slow job move while it runs: {values:?}"
    );
    // Each job's own changes (created, requested, transferring, finishing, succeeded, notes)
    // are a handful; progress adds at most one update per PROGRESS_REFRESH for both jobs.
    let end = runtime.handle.follow_jobs().try_next(4096).map_or(0, |c| c.cursor);
    let updates = end.saturating_sub(start) as u128;
    let allowed = 2 * (16 + elapsed.as_millis() / PROGRESS_REFRESH.as_millis() + 1);
    assert!(
        updates <= allowed,
        "{updates} table updates for 2,088 chunks in {elapsed:?}: progress came once per chunk (at most {allowed})"
    );
    runtime.shutdown().await;
    fleet.stop().await;
}
