//! Device-paced transfers on virtual time: the engine and simulated devices through a modelled
//! broker (`Pair`). These were wall-clock tests through the embedded broker; here each takes
//! milliseconds and repeats exactly. `tests/integration/flow_control.rs` keeps what needs a real
//! broker.

use std::time::Duration;

use bytes::Bytes;

use super::{Behavior, DeviceModel, Pair, PairDevice, Verdict};
use crate::engine::{JobId, JobSpec, JobState, Settings};
use crate::firmware::{ChunkSize, Image};
use crate::protocol::DeviceId;

fn image(name: &str, len: usize, seed: u8) -> Image {
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    Image::new(name, Bytes::from(bytes))
}

fn spec(device: &DeviceId, image: &Image, chunk: u64, interval: Option<Duration>) -> JobSpec {
    JobSpec {
        chunk_size: Some(ChunkSize::new(chunk).unwrap()),
        chunk_interval: interval,
        ..JobSpec::new(device.clone(), image.clone())
    }
}

fn devices(pair: &mut Pair, prefix: &str, count: usize, device: &PairDevice) -> Vec<DeviceId> {
    (1..=count).map(|n| pair.add(&format!("{prefix}{n:02}"), device.clone()).unwrap()).collect()
}

fn verdict(pair: &Pair, device: &DeviceId) -> Option<Verdict> {
    pair.report(device).and_then(|r| r.last_verdict().cloned())
}

#[test]
fn flow_controlled_devices_receive_every_chunk_and_confirm_it() {
    let mut pair = Pair::new(Settings::default());
    let model = DeviceModel { window: Some(8), ..Default::default() };
    let fleet = devices(&mut pair, "dev-", 6, &PairDevice::new(model));
    let image = image("paced.bin", 96 * 1024, 5);
    let jobs: Vec<JobId> = fleet.iter().map(|d| pair.submit(spec(d, &image, 1024, None)).unwrap()).collect();
    assert!(pair.run_to_end(Duration::from_secs(60)), "every job ends");
    for (id, device) in jobs.into_iter().zip(&fleet) {
        let job = pair.job(id).unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!((job.chunks_confirmed, job.window), (Some(96), Some(8)), "device-paced: {job:?}");
        assert_eq!(verdict(&pair, device), Some(Verdict::Verified));
        // Never more than the window beyond what was confirmed: nothing was sent twice.
        assert_eq!(pair.report(device).unwrap().duplicate_chunks, 0);
    }
}

#[test]
fn a_device_losing_five_percent_of_chunks_succeeds_through_go_back_n() {
    let settings = Settings { progress_timeout: Duration::from_millis(200), ..Settings::default() };
    let mut pair = Pair::new(settings);
    let model = DeviceModel { window: Some(8), lossy: 0.05, ..Default::default() };
    let fleet = devices(&mut pair, "dev-", 3, &PairDevice::new(model));
    let image = image("lossy.bin", 128 * 1024, 6);
    for device in &fleet {
        pair.submit(spec(device, &image, 1024, None)).unwrap();
    }
    assert!(pair.run_to_end(Duration::from_secs(120)), "every job ends");
    for job in pair.engine.jobs() {
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let report = pair.report(&job.device).unwrap();
        assert_eq!(report.last_verdict(), Some(&Verdict::Verified));
        assert!(report.duplicate_chunks > 0 || report.chunks > 128, "chunks were sent again: {report:?}");
    }
}

#[test]
fn a_device_holding_chunks_of_another_size_ends_with_the_right_image() {
    let mut pair = Pair::new(Settings::default());
    let device =
        pair.add("dev-01", PairDevice::new(DeviceModel { window: Some(4), ..Default::default() })).unwrap();
    let image = image("resized.bin", 64 * 1024, 7);
    // A first job at 2 KiB chunks, paced so it can be cancelled half way: the device keeps the
    // chunks it got, keyed by the image's hash.
    let first = pair.submit(spec(&device, &image, 2048, Some(Duration::from_millis(20)))).unwrap();
    let part = pair.run_until(Duration::from_secs(20), |p| p.report(&device).is_some_and(|r| r.chunks >= 8));
    assert!(part, "part of the image arrived");
    pair.engine.cancel(first, pair.now).unwrap();
    // The same image at 1 KiB chunks: the device would resume, sees the size changed, rewinds.
    let second = pair.submit(spec(&device, &image, 1024, None)).unwrap();
    assert!(pair.run_to_end(Duration::from_secs(30)), "the second job ends");
    let job = pair.job(second).unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(verdict(&pair, &device), Some(Verdict::Verified), "the right image");
}

#[test]
fn a_device_that_stops_confirming_times_out_with_where_it_stopped() {
    let settings =
        Settings { progress_timeout: Duration::from_millis(300), progress_stalls: 3, ..Settings::default() };
    let mut pair = Pair::new(settings);
    let model = DeviceModel { window: Some(8), stop_confirming_at: Some(20), ..Default::default() };
    let device = pair.add("dev-01", PairDevice::new(model)).unwrap();
    let id = pair.submit(spec(&device, &image("quiet.bin", 64 * 1024, 9), 1024, None)).unwrap();
    assert!(pair.run_to_end(Duration::from_secs(30)));
    let job = pair.job(id).unwrap();
    assert_eq!(job.state, JobState::TimedOut, "{job:?}");
    // The device confirms every 4 chunks (half its window): 20 is its last confirmation.
    assert_eq!(job.chunks_confirmed, Some(20), "{job:?}");
    assert_eq!(job.error.as_deref(), Some("the device stopped confirming chunks at 20 of 64"));
    // Three stalls of 300 ms after the last confirmation, and no more.
    let took = job.finished_at.unwrap() - job.created_at;
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(2), "{took:?}");
}

/// The mechanism behind `tests/integration/flow_control.rs`'s mosquitto case, in full on virtual
/// time: a broker holding at most 1,000 messages a device has not read, and devices storing 50 KiB/s.
/// A 4 MiB image at 1 KiB chunks reaches a flow-controlled device intact, a version 1 device
/// pushed to loses chunks and fails, and one with a rate cap under its speed succeeds.
#[test]
fn a_slow_device_behind_a_dropping_broker_needs_flow_control_or_a_rate_cap() {
    let settings = Settings { done_timeout: Duration::from_secs(20), ..Settings::default() };
    let mut pair = Pair::new(settings);
    pair.queue_limit = Some(1000);
    let rate = 50 * 1024;
    let paced = DeviceModel { window: Some(32), flash_rate: Some(rate), ..Default::default() };
    let legacy = DeviceModel { flash_rate: Some(rate), legacy: true, ..Default::default() };
    let paced = pair.add("paced-01", PairDevice::new(paced)).unwrap();
    let pushed = pair.add("legacy-01", PairDevice::new(legacy.clone())).unwrap();
    let capped = pair.add("capped-01", PairDevice::new(legacy)).unwrap();
    let image = image("big.bin", 4 * 1024 * 1024, 8);
    let pause = crate::units::Rate(40 * 1024).interval(1024);
    let paced_job = pair.submit(spec(&paced, &image, 1024, None)).unwrap();
    let pushed_job = pair.submit(spec(&pushed, &image, 1024, None)).unwrap();
    let capped_job = pair.submit(spec(&capped, &image, 1024, pause)).unwrap();
    assert!(pair.run_to_end(Duration::from_secs(300)), "every job ends");

    let job = pair.job(paced_job).unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(verdict(&pair, &paced), Some(Verdict::Verified));
    assert_eq!(pair.dropped(&paced), 0, "the window kept the queue short");
    let took = job.finished_at.unwrap() - job.created_at;
    assert!(took >= Duration::from_secs(80), "no faster than the device stores: {took:?}");

    let job = pair.job(capped_job).unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(verdict(&pair, &capped), Some(Verdict::Verified));

    let job = pair.job(pushed_job).unwrap();
    assert_ne!(job.state, JobState::Succeeded, "{job:?}");
    let report = pair.report(&pushed).unwrap();
    assert!(report.chunks < 4096 && pair.dropped(&pushed) > 0, "the broker dropped chunks: {report:?}");
}

#[test]
fn misbehaving_devices_end_their_jobs_as_the_protocol_says() {
    let settings = Settings {
        request_timeout: Duration::from_secs(2),
        request_attempts: 3,
        done_timeout: Duration::from_secs(5),
        ..Settings::default()
    };
    let mut pair = Pair::new(settings);
    let image = image("fw.bin", 8 * 1024, 3);
    let kinds = [
        (Behavior::Good, JobState::Succeeded),
        (Behavior::Nack, JobState::Rejected),
        (Behavior::Fail, JobState::Failed),
        (Behavior::Silent, JobState::TimedOut),
        (Behavior::Corrupt, JobState::Failed),
        (Behavior::Garbage, JobState::Succeeded),
        (Behavior::Slow, JobState::Succeeded),
    ];
    let mut jobs = Vec::new();
    for (behavior, expected) in kinds {
        let device = PairDevice { behavior, ..PairDevice::new(DeviceModel::default()) };
        let id = pair.add(&format!("dev-{behavior}"), device).unwrap();
        jobs.push((pair.submit(spec(&id, &image, 1024, None)).unwrap(), behavior, expected));
    }
    assert!(pair.run_to_end(Duration::from_secs(60)));
    for (id, behavior, expected) in jobs {
        let job = pair.job(id).unwrap();
        assert_eq!(job.state, expected, "{behavior}: {job:?}");
    }
    // A silent device was asked three times, two seconds apart, then given up on.
    let silent = pair.engine.jobs().find(|j| j.device.as_str() == "dev-silent").unwrap();
    assert_eq!(silent.attempts, 3, "{silent:?}");
    assert_eq!(silent.finished_at.unwrap() - silent.created_at, Duration::from_secs(6));
    // The garbage device's frames before each answer were refused by the decoder (as the
    // runtime refuses them) and changed nothing.
    assert_eq!(pair.undecodable, 2, "one before its ACK, one before its verdict");
    let nack = pair.engine.jobs().find(|j| j.device.as_str() == "dev-nack").unwrap();
    assert_eq!(nack.error.as_deref(), Some("battery below 20%"));
}

/// The confirm extension end to end on virtual time, with the simulated device's own statuses:
/// devices that boot the update succeed once their status after the reboot names it, one that
/// rolls back ends rolled back, one that never comes back times out, one without `confirm` and a
/// version 1 device succeed at DONE_SUCCESS; a second job of the same image is up to date with
/// no FOTA_REQUEST sent.
#[test]
fn devices_confirm_roll_back_or_never_come_back_after_their_reboot() {
    use super::AfterUpdate;
    let settings = Settings { confirm_timeout: Duration::from_secs(20), ..Settings::default() };
    let mut pair = Pair::new(settings);
    let image = image("fw-2.bin", 16 * 1024, 9);
    let reboots = |after_update| DeviceModel {
        after_update,
        reboot_delay: Duration::from_secs(3),
        ..Default::default()
    };
    let cases = [
        ("boots", reboots(AfterUpdate::Boots), JobState::Succeeded),
        ("rolls-back", reboots(AfterUpdate::RollsBack), JobState::RolledBack),
        ("never-back", reboots(AfterUpdate::NeverBack), JobState::TimedOut),
        (
            "no-confirm",
            DeviceModel { no_confirm: true, ..reboots(AfterUpdate::NeverBack) },
            JobState::Succeeded,
        ),
        ("legacy", DeviceModel { legacy: true, ..Default::default() }, JobState::Succeeded),
    ];
    let mut jobs = Vec::new();
    for (name, model, expected) in cases {
        let device = pair.add(name, PairDevice::new(model)).unwrap();
        // What the runtime passes along: the device's status as the inventory holds it, which
        // the pair has delivered once the devices connected.
        jobs.push((device.clone(), expected));
    }
    pair.run_until(Duration::from_millis(10), |_| false);
    let mut ids = Vec::new();
    for (device, expected) in &jobs {
        ids.push((pair.submit(spec(device, &image, 1024, None)).unwrap(), device.clone(), *expected));
    }
    assert!(pair.run_to_end(Duration::from_secs(120)));
    for (id, device, expected) in &ids {
        let job = pair.job(*id).unwrap();
        assert_eq!(job.state, *expected, "{device}: {job:?}");
        assert_eq!(job.confirmed_at.is_some(), device.as_str() == "boots", "{device}: {job:?}");
    }
    let rolled = pair.job(ids[1].0).unwrap();
    assert_eq!(rolled.error.as_deref(), Some(format!("rolled back to {}", super::FACTORY_VERSION).as_str()));
    let never = pair.job(ids[2].0).unwrap();
    assert!(never.finished_at.unwrap() - never.started_at.unwrap() > Duration::from_secs(20), "{never:?}");
    // The device that booted the update runs it: the same image again sends nothing.
    let requests = pair.report(&ids[0].1).unwrap().requests;
    let again = pair.submit(spec(&ids[0].1, &image, 1024, None)).unwrap();
    assert!(pair.run_to_end(Duration::from_secs(10)));
    assert_eq!(pair.job(again).unwrap().state, JobState::UpToDate);
    assert_eq!(pair.report(&ids[0].1).unwrap().requests, requests, "no FOTA_REQUEST sent");
}
