//! Device-paced transfers through real brokers: simulated devices that opt into flow control
//! receive their image intact through the whole runtime, and behind a mosquitto that drops what
//! it cannot queue a slow device needs flow control or a rate cap. The protocol cases (losses
//! and go-back-N, a changed chunk size, a device that stops confirming) run on virtual time in
//! `src/sim/pair_tests.rs`, where they take milliseconds.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{Mosquitto, test_image, wait_for};
use rocky::broker::EmbeddedBroker;
use rocky::engine::{JobSpec, JobState};
use rocky::firmware::{ChunkSize, Image, Library};
use rocky::runtime::{BrokerUrl, JobFilter, Runtime, RuntimeConfig};
use rocky::sim::{DeviceModel, Fleet, FleetConfig, Verdict};
use rocky::snapshot::JobSnapshot;

fn runtime(broker: BrokerUrl, tweak: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig::new(broker);
    tweak(&mut config);
    Runtime::start(config, Arc::new(Library::new()))
}

async fn fleet(broker: BrokerUrl, count: usize, model: DeviceModel) -> Fleet {
    let mut config = FleetConfig::new(broker, count);
    config.model = model;
    let fleet = Fleet::start(&config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await, "fleet connected");
    fleet
}

fn specs(fleet: &Fleet, image: &Image, chunk: u64) -> Vec<JobSpec> {
    let chunk_size = Some(ChunkSize::new(chunk).unwrap());
    fleet
        .ids()
        .into_iter()
        .map(|device| JobSpec { chunk_size, ..JobSpec::new(device, image.clone()) })
        .collect()
}

async fn all_final(runtime: &Runtime, count: usize, timeout: Duration) -> Vec<Arc<JobSnapshot>> {
    wait_for(timeout, "every job to end", || async {
        let jobs = runtime.handle.jobs(&JobFilter::default());
        (jobs.len() == count && jobs.iter().all(|j| j.state.is_final())).then_some(jobs)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_controlled_devices_receive_every_chunk_and_confirm_it() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = fleet(broker.url(), 6, DeviceModel { window: Some(8), ..Default::default() }).await;
    let runtime = runtime(broker.url(), |_| {});
    let image = Image::new("paced.bin", test_image(96 * 1024, 5));
    runtime.handle.submit(specs(&fleet, &image, 1024)).await.unwrap();
    for job in all_final(&runtime, 6, Duration::from_secs(60)).await {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!((job.chunks_confirmed, job.window), (Some(96), Some(8)), "device-paced: {job:?}");
        let report = fleet.report(&job.device_id).unwrap();
        assert_eq!(report.last_verdict(), Some(&Verdict::Verified));
    }
    runtime.shutdown().await;
    fleet.stop().await;
}

/// An image whose last chunks fill no whole confirmation step (99 chunks, confirmed every 4):
/// the device confirms the tail once nothing more arrives, through the broker, on its timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_chunks_are_confirmed_when_nothing_more_arrives() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = fleet(broker.url(), 1, DeviceModel { window: Some(8), ..Default::default() }).await;
    // One stall ends the job: the tail must be confirmed without Rocky sending it again.
    let runtime = runtime(broker.url(), |c| {
        c.engine.progress_timeout = Duration::from_secs(5);
        c.engine.progress_stalls = 1;
    });
    let image = Image::new("tail.bin", test_image(99 * 1024, 6));
    runtime.handle.submit(specs(&fleet, &image, 1024)).await.unwrap();
    let job = all_final(&runtime, 1, Duration::from_secs(60)).await.remove(0);
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.chunks_confirmed, Some(99), "{job:?}");
    assert_eq!(fleet.report(&job.device_id).unwrap().last_verdict(), Some(&Verdict::Verified));
    runtime.shutdown().await;
    fleet.stop().await;
}

/// Through a mosquitto with its default queue limit (1,000 messages queued per client, then it
/// drops; the tests' other brokers raise it), a device storing 400 KiB/s receives a 4 MiB image
/// at 1 KiB chunks intact under flow control, while a version 1 device of the same speed, pushed
/// to, loses chunks and fails, and one with a rate cap under its speed succeeds. (The same at
/// 50 KiB/s, as slow as real flash, runs on virtual time in `src/sim/pair_tests.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_device_behind_a_default_mosquitto_needs_flow_control() {
    // Mosquitto's own default, set again over the tests' 100,000.
    let name = "a_slow_device_behind_a_default_mosquitto_needs_flow_control";
    let Some(mosquitto) = Mosquitto::start_with(name, "max_queued_messages 1000\n") else {
        return;
    };
    let rate = 400 * 1024;
    let paced = {
        let mut config = FleetConfig::new(mosquitto.url(), 1);
        config.prefix = "paced-".into();
        config.model = DeviceModel { window: Some(32), flash_rate: Some(rate), ..Default::default() };
        Fleet::start(&config).unwrap()
    };
    let pushed = {
        let mut config = FleetConfig::new(mosquitto.url(), 1);
        config.prefix = "legacy-".into();
        config.model = DeviceModel { flash_rate: Some(rate), legacy: true, ..Default::default() };
        Fleet::start(&config).unwrap()
    };
    let capped = {
        let mut config = FleetConfig::new(mosquitto.url(), 1);
        config.prefix = "capped-".into();
        config.model = DeviceModel { flash_rate: Some(rate), legacy: true, ..Default::default() };
        Fleet::start(&config).unwrap()
    };
    for fleet in [&paced, &pushed, &capped] {
        assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    }
    let runtime = runtime(mosquitto.url(), |c| c.engine.done_timeout = Duration::from_secs(20));
    let image = Image::new("big.bin", test_image(4 * 1024 * 1024, 8));
    let mut jobs = specs(&paced, &image, 1024);
    jobs.extend(specs(&pushed, &image, 1024));
    // A version 1 device of the same speed with a rate cap at half its speed (200 KiB/s): 1 KiB
    // every 5 ms, the same as max_rate = "200KiB/s" in the API.
    let pause = rocky::units::Rate(200 * 1024).interval(1024);
    jobs.extend(
        specs(&capped, &image, 1024).into_iter().map(|spec| JobSpec { chunk_interval: pause, ..spec }),
    );
    runtime.handle.submit(jobs).await.unwrap();
    let done = all_final(&runtime, 3, Duration::from_secs(300)).await;
    let capped_job = done.iter().find(|j| j.device_id.as_str().starts_with("capped-")).unwrap();
    assert_eq!(capped_job.state, JobState::Succeeded, "{capped_job:?}");
    let paced_job = done.iter().find(|j| j.device_id.as_str().starts_with("paced-")).unwrap();
    let pushed_job = done.iter().find(|j| j.device_id.as_str().starts_with("legacy-")).unwrap();
    assert_eq!(paced_job.state, JobState::Succeeded, "{paced_job:?}");
    assert_eq!(paced.report(&paced_job.device_id).unwrap().last_verdict(), Some(&Verdict::Verified));
    // The failure is real: the pushed device did not get every chunk.
    let report = pushed.report(&pushed_job.device_id).unwrap();
    // The figure the README quotes (`cargo test --test integration flow_control:: -- --nocapture`).
    eprintln!(
        "pushed version 1 device: {} of 4096 chunks arrived; job {} ({:?})",
        report.chunks, pushed_job.state, pushed_job.error
    );
    assert_ne!(pushed_job.state, JobState::Succeeded, "{pushed_job:?}");
    assert!(report.chunks < 4096, "the broker dropped chunks for the slow device: {report:?}");
    runtime.shutdown().await;
    paced.stop().await;
    pushed.stop().await;
    capped.stop().await;
}
