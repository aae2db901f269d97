//! The status and confirm extensions in the engine, on explicit time: a device that confirms
//! holds its job `confirming` (and its device, not a transfer slot) until a status after its
//! next boot says what it runs; a device that runs the image already gets nothing.

use std::time::Duration;

use super::tests::{ACK, Harness, dev, image, kinds, settings};
use super::*;
use crate::protocol::{CommandType, Reason, ResponseBody};

fn reported(image: &crate::firmware::Image, version: &str, boot: u64, confirm: bool) -> Reported {
    Reported {
        image: *image.sha256(),
        version: Some(version.to_owned()),
        boot: Some(boot),
        confirm,
        manifest: false,
        seq: None,
        kids: Vec::new(),
        delta: false,
    }
}

/// What a device that confirms said before its update: it runs some other image, boot 17.
fn old_image() -> crate::firmware::Image {
    image(7)
}

impl Harness {
    fn submit_reported(
        &mut self,
        device: &str,
        len: usize,
        reported: Option<Reported>,
        force: bool,
    ) -> JobId {
        let spec = JobSpec { force, reported, ..JobSpec::new(dev(device), image(len)) };
        self.engine.submit(spec, self.now).unwrap()
    }

    /// Takes job `id` of `device` through request, chunks, DONE and DONE_SUCCESS.
    fn transfer(&mut self, device: &str, id: JobId) {
        self.drain();
        self.respond(device, id, ACK);
        let sent = self.drain();
        assert_eq!(sent.last().map(|p| p.kind), Some(PublishKind::Command(CommandType::Done)));
        self.respond(device, id, ResponseBody::DoneSuccess);
        self.drain();
    }

    fn notes(&self, job: JobId) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Note { job: j, text, .. } if *j == job => Some(text.clone()),
                Event::StateChanged { job: j, detail: Some(text), .. } if *j == job => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_confirming_device_succeeds_only_once_a_later_boot_names_the_image() {
    let mut h = Harness::new(settings());
    let id = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 17, true)), false);
    h.transfer("d", id);
    assert_eq!(h.state(id), JobState::Confirming);
    let view = h.engine.job(id).unwrap();
    assert_eq!((view.confirm_boot, view.confirmed_at), (Some(17), None));
    // The same boot again (a repeated retained status) and the old image: nothing yet.
    h.engine.device_reported(&dev("d"), Some(reported(&old_image(), "1.0", 17, true)), h.now);
    assert_eq!(h.state(id), JobState::Confirming);
    h.advance(Duration::from_secs(30));
    h.engine.device_reported(&dev("d"), Some(reported(&image(100), "2.0", 18, true)), h.now);
    h.drain();
    assert_eq!(h.state(id), JobState::Succeeded);
    let view = h.engine.job(id).unwrap();
    assert_eq!((view.confirmed_at, view.error), (Some(h.now), None));
    assert!(h.notes(id).iter().any(|n| n.contains("after boot 18")), "{:?}", h.notes(id));
}

#[test]
fn a_device_that_boots_another_image_rolled_back_and_one_that_never_reports_times_out() {
    let mut h = Harness::new(settings());
    let back = h.submit_reported("a", 100, Some(reported(&old_image(), "1.0", 3, true)), false);
    let silent = h.submit_reported("b", 100, Some(reported(&old_image(), "1.0", 3, true)), false);
    h.transfer("a", back);
    h.transfer("b", silent);
    h.engine.device_reported(&dev("a"), Some(reported(&old_image(), "1.0", 4, true)), h.now);
    h.drain();
    assert_eq!(h.state(back), JobState::RolledBack);
    assert_eq!(h.engine.job(back).unwrap().error.as_deref(), Some("rolled back to 1.0"));
    assert!(JobState::RolledBack.is_failure() && JobState::RolledBack.is_final());
    // Without a version the hash is named.
    h.advance(Duration::from_secs(599));
    assert_eq!(h.state(silent), JobState::Confirming);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.state(silent), JobState::TimedOut);
    assert_eq!(
        h.engine.job(silent).unwrap().error.as_deref(),
        Some("no confirmation that the device runs the new image within 600 s")
    );
}

#[test]
fn a_confirming_job_holds_its_device_not_a_transfer_slot() {
    let mut h = Harness::new(Settings { max_active: 1, ..settings() });
    let first = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 1, true)), false);
    let second = h.submit("d", 100);
    let other = h.submit("e", 100);
    h.transfer("d", first);
    assert_eq!(h.state(first), JobState::Confirming);
    // The only slot went to the other device; the same device's next job waits.
    h.respond("e", other, ACK);
    let sent = h.drain();
    assert!(sent.iter().any(|p| p.device == dev("e") && matches!(p.kind, PublishKind::Chunk { .. })));
    assert_eq!(h.state(second), JobState::Queued);
    // Cancelled while confirming: the device is free for its next job.
    h.engine.cancel(first, h.now).unwrap();
    let sent = h.drain();
    assert_eq!(h.state(second), JobState::Requesting);
    assert!(sent.iter().any(|p| p.job == second && p.kind == PublishKind::Command(CommandType::Request)));
}

#[test]
fn a_device_without_confirm_succeeds_on_done_success_as_in_version_1() {
    let mut h = Harness::new(settings());
    let plain = h.submit("a", 100);
    let no_confirm = h.submit_reported("b", 100, Some(reported(&old_image(), "1.0", 5, false)), false);
    h.transfer("a", plain);
    h.transfer("b", no_confirm);
    assert_eq!((h.state(plain), h.state(no_confirm)), (JobState::Succeeded, JobState::Succeeded));
}

#[test]
fn a_device_that_runs_the_image_already_gets_nothing_unless_forced() {
    let mut h = Harness::new(settings());
    let current = reported(&image(100), "2.0", 5, true);
    let id = h.submit_reported("d", 100, Some(current.clone()), false);
    let sent = h.drain();
    assert!(sent.is_empty(), "nothing sent: {:?}", kinds(&sent));
    assert_eq!(h.state(id), JobState::UpToDate);
    assert!(!JobState::UpToDate.is_failure() && JobState::UpToDate.is_final());
    assert!(h.notes(id).iter().any(|n| n.contains("runs this image already")), "{:?}", h.notes(id));
    let forced = h.submit_reported("d", 100, Some(current), true);
    assert_eq!(kinds(&h.drain()), [PublishKind::Command(CommandType::Request)]);
    assert_eq!(h.state(forced), JobState::Requesting);
    // NACK code 9: "already installed" is up to date, not rejected.
    h.respond("d", forced, ResponseBody::RequestNack { reason: Some(Reason::Code(9)) });
    h.drain();
    assert_eq!(h.state(forced), JobState::UpToDate);
    assert_eq!(h.engine.job(forced).unwrap().reason_code, Some(9));
    // Any other code is still a rejection.
    let other = h.submit("d", 100);
    h.drain();
    h.respond("d", other, ResponseBody::RequestNack { reason: Some(Reason::Code(7)) });
    assert_eq!(h.state(other), JobState::Rejected);
}

#[test]
fn ten_thousand_up_to_date_jobs_end_without_recursion_or_slots() {
    let mut h = Harness::new(Settings { max_requests: 2, ..settings() });
    let current = reported(&image(100), "2.0", 5, false);
    let ids: Vec<JobId> =
        (0..10_000).map(|n| h.submit_reported(&format!("d{n}"), 100, Some(current.clone()), false)).collect();
    assert!(h.drain().is_empty());
    assert!(ids.iter().all(|id| h.state(*id) == JobState::UpToDate));
    assert!(h.engine.is_idle());
}

#[test]
fn a_restored_confirming_job_waits_again_and_the_status_that_arrives_decides_it() {
    let mut h = Harness::new(settings());
    let id = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 17, true)), false);
    h.transfer("d", id);
    let mut view = h.engine.job(id).unwrap();
    view.image = view.image.released();
    // A new engine, as after a restart: the job comes back confirming, holding its device.
    let mut again = Harness::new(settings());
    again.engine.restore(view, again.now);
    assert_eq!(again.state(id), JobState::Confirming);
    let queued = again.submit("d", 120); // another image (the same one would be up to date)
    assert!(again.drain().is_empty(), "the device is held");
    again.engine.device_reported(&dev("d"), Some(reported(&image(100), "2.0", 18, true)), again.now);
    again.drain();
    assert_eq!(again.state(id), JobState::Succeeded);
    assert_eq!(again.state(queued), JobState::Requesting);
}

#[test]
fn a_broker_outage_stops_the_confirmation_clock() {
    let mut h = Harness::new(settings());
    let id = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 1, true)), false);
    h.transfer("d", id);
    h.advance(Duration::from_secs(500));
    h.engine.set_connected(false, h.now);
    h.advance(Duration::from_secs(2000));
    assert_eq!(h.state(id), JobState::Confirming, "no status can arrive without the broker");
    h.engine.set_connected(true, h.now);
    h.advance(Duration::from_secs(99));
    assert_eq!(h.state(id), JobState::Confirming, "100 s were left");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.state(id), JobState::TimedOut);
}

/// Flapping connections do not make the wait endless: each outage only stops the clock.
#[test]
fn a_flapping_broker_does_not_keep_a_confirmation_waiting_for_ever() {
    let mut h = Harness::new(settings());
    let id = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 1, true)), false);
    h.transfer("d", id);
    for _ in 0..7 {
        h.advance(Duration::from_secs(100));
        h.engine.set_connected(false, h.now);
        h.engine.set_connected(true, h.now);
    }
    assert_eq!(h.state(id), JobState::TimedOut, "600 s of connected time passed");
}

/// The DONE_SUCCESS came late (lost with a broker session and sent again) and the device has
/// already said, after a reboot, that it runs the image: confirmed at once.
#[test]
fn a_late_done_success_after_the_reboot_status_confirms_at_once() {
    let mut h = Harness::new(settings());
    let id = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 7, true)), false);
    h.drain();
    h.respond("d", id, ACK);
    h.drain();
    h.engine.device_reported(&dev("d"), Some(reported(&image(100), "2.0", 8, true)), h.now);
    assert_eq!(h.state(id), JobState::Finishing, "a status decides nothing before the answer");
    h.respond("d", id, ResponseBody::DoneSuccess);
    h.drain();
    assert_eq!(h.state(id), JobState::Succeeded);
    assert!(h.engine.job(id).unwrap().confirmed_at.is_some());
}

#[test]
fn a_confirming_job_restored_while_the_broker_is_away_waits_for_it() {
    let mut h = Harness::new(settings());
    let id = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 1, true)), false);
    h.transfer("d", id);
    let view = h.engine.job(id).unwrap();
    let mut again = Harness::new(settings());
    again.engine.set_connected(false, again.now);
    again.engine.restore(view, again.now);
    again.advance(Duration::from_secs(3600));
    assert_eq!(again.state(id), JobState::Confirming);
    again.engine.set_connected(true, again.now);
    again.advance(Duration::from_secs(600));
    assert_eq!(again.state(id), JobState::TimedOut);
}

/// A confirming job claimed from a shared store, whose device has rebooted into the image
/// meanwhile: decided as soon as it is restored.
#[test]
fn a_claimed_confirming_job_whose_device_already_reported_is_decided_at_once() {
    let mut h = Harness::new(settings());
    let id = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 3, true)), false);
    h.transfer("d", id);
    let view = h.engine.job(id).unwrap();
    let mut other = Harness::new(settings());
    other.engine.restore_reported(view, None, Some(reported(&image(100), "2.0", 4, true)), other.now);
    other.drain();
    assert_eq!(other.state(id), JobState::Succeeded);
}

/// A confirming job claimed while another job already drives its device (a hand-over): the
/// other keeps the device, the claimed one is still decided by the status, and ending it frees
/// nothing that is not its own.
#[test]
fn a_confirming_job_restored_beside_a_running_one_is_decided_and_leaves_it_alone() {
    let mut h = Harness::new(settings());
    h.submit("x", 10); // ids are one store's: the claimed job's is not the running one's
    let first = h.submit_reported("d", 100, Some(reported(&old_image(), "1.0", 3, true)), false);
    h.transfer("d", first);
    let confirming = h.engine.job(first).unwrap();
    let mut other = Harness::new(settings());
    let running = other.submit("d", 120);
    other.drain();
    assert_eq!(other.state(running), JobState::Requesting);
    other.engine.restore_reported(confirming, None, Some(reported(&old_image(), "1.0", 3, true)), other.now);
    assert_eq!(other.state(first), JobState::Confirming);
    other.engine.device_reported(&dev("d"), Some(reported(&image(100), "2.0", 4, true)), other.now);
    other.drain();
    assert_eq!(other.state(first), JobState::Succeeded);
    // The running job still holds the device: its ACK is its own, not ignored.
    other.respond("d", running, ACK);
    let sent = other.drain();
    assert!(
        sent.iter().any(|p| p.job == running && matches!(p.kind, PublishKind::Chunk { .. })),
        "{:?} {:?}",
        kinds(&sent),
        other.ignored()
    );
}

/// A device that takes signed images only (its status lists `manifest`) at security counter
/// `seq`.
fn signed_only(seq: Option<u64>) -> Reported {
    Reported { manifest: true, seq, ..reported(&old_image(), "1.0", 1, false) }
}

fn manifest_for(image: &crate::firmware::Image, seq: u64) -> crate::protocol::Manifest {
    let key = crate::signing::SigningKey::generate(crate::signing::Alg::Ed25519).unwrap();
    let payload = crate::protocol::ManifestPayload {
        image_sha256: *image.sha256(),
        size: image.size(),
        version: None,
        seq,
    };
    crate::protocol::Manifest::sign(payload, &key)
}

#[test]
fn a_signed_only_device_gets_the_four_item_request_and_a_version_1_device_three() {
    let mut h = Harness::new(settings());
    let signed = manifest_for(&image(100), 2);
    let spec = |device: &str, reported: Option<Reported>| JobSpec {
        reported,
        manifest: Some(signed.clone()),
        ..JobSpec::new(dev(device), image(100))
    };
    let to_signed = h.engine.submit(spec("s", Some(signed_only(Some(1)))), h.now).unwrap();
    let to_plain = h.engine.submit(spec("p", None), h.now).unwrap();
    let sent = h.drain();
    let request = |job: JobId| {
        let publish =
            sent.iter().find(|p| p.job == job && p.kind == PublishKind::Command(CommandType::Request));
        crate::protocol::decode_command(&publish.expect("a request").payload).unwrap().body
    };
    let crate::protocol::CommandBody::Request { manifest: Some(bytes), .. } = request(to_signed) else {
        panic!("the signed-only device's request carries the manifest")
    };
    assert_eq!(&bytes, signed.bytes());
    assert!(matches!(request(to_plain), crate::protocol::CommandBody::Request { manifest: None, .. }));
    // A resend after the request timeout is the same four items.
    h.advance(settings().request_timeout);
    let again = h.drain();
    let resent = again.iter().find(|p| p.job == to_signed).expect("sent again");
    assert!(matches!(
        crate::protocol::decode_command(&resent.payload).unwrap().body,
        crate::protocol::CommandBody::Request { manifest: Some(_), .. }
    ));
}

#[test]
fn a_job_the_manifest_rule_stops_by_the_time_it_starts_fails_in_words_and_sends_nothing() {
    let mut h = Harness::new(settings());
    // Made when the device had said nothing; by the time it starts it takes signed images only.
    let busy = h.submit("d", 100);
    let unsigned = h.submit("d", 100);
    let older = h.engine.submit(
        JobSpec { manifest: Some(manifest_for(&image(100), 3)), ..JobSpec::new(dev("d"), image(100)) },
        h.now,
    );
    let older = older.unwrap();
    h.drain();
    h.engine.device_reported(&dev("d"), Some(signed_only(Some(5))), h.now);
    h.respond("d", busy, ACK);
    h.drain();
    h.respond("d", busy, ResponseBody::DoneSuccess);
    let sent = h.drain();
    assert!(sent.iter().all(|p| p.job != unsigned && p.job != older), "nothing of either was sent");
    assert_eq!(h.state(unsigned), JobState::Failed);
    let error = h.engine.job(unsigned).unwrap().error.unwrap();
    assert!(error.starts_with("not sent: device d takes signed images only"), "{error}");
    assert_eq!(h.state(older), JobState::Failed);
    assert_eq!(
        h.engine.job(older).unwrap().error.as_deref(),
        Some("not sent: device d runs seq 5; image fw.bin is seq 3 (anti-rollback)")
    );
}

fn patch_of(base: &crate::firmware::Image, target: &crate::firmware::Image) -> crate::firmware::Patch {
    let bytes = crate::firmware::build_patch(base.bytes(), target.bytes()).unwrap();
    crate::firmware::Patch {
        base: *base.sha256(),
        target: *target.sha256(),
        bytes: crate::firmware::Image::new("patch", bytes.into()),
    }
}

#[test]
fn a_patch_goes_in_chunks_behind_a_five_item_request_and_code_13_brings_the_whole_image_in_the_same_job() {
    let mut h =
        Harness::new(Settings { chunk_size: crate::firmware::ChunkSize::new(64).unwrap(), ..settings() });
    let (base, target) = (image(4000), image(4100));
    let patch = patch_of(&base, &target);
    assert!(patch.size() < 1000, "a small change makes a small patch: {}", patch.size());
    let on_base = Reported { image: *base.sha256(), delta: true, ..reported(&base, "1.0", 1, false) };
    let spec = JobSpec {
        delta: Some(patch.clone()),
        reported: Some(on_base.clone()),
        ..JobSpec::new(dev("d"), target.clone())
    };
    let id = h.engine.submit(spec, h.now).unwrap();
    let sent = h.drain();
    let request = sent.iter().find(|p| p.kind == PublishKind::Command(CommandType::Request)).unwrap();
    let crate::protocol::CommandBody::Request { hash, manifest: None, delta: Some(item) } =
        crate::protocol::decode_command(&request.payload).unwrap().body
    else {
        panic!("a five-item request with null in the manifest's place")
    };
    assert_eq!((hash, item.base, item.size), (*target.sha256(), *base.sha256(), patch.size()));
    assert_eq!(request.payload[0], 0x85, "five items");
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.chunks_total, patch.size().div_ceil(64) as u32);
    assert_eq!(view.delta.map(|d| d.patch_size), Some(patch.size()));
    assert!(h.notes(id).iter().any(|n| n.contains("a patch of")), "{:?}", h.notes(id));
    // The device does not run the base: the whole image, same job, a new three-item request.
    h.respond("d", id, ResponseBody::RequestNack { reason: Some(Reason::Code(13)) });
    let sent = h.drain();
    let again = sent.iter().find(|p| p.kind == PublishKind::Command(CommandType::Request)).unwrap();
    assert!(matches!(
        crate::protocol::decode_command(&again.payload).unwrap().body,
        crate::protocol::CommandBody::Request { delta: None, manifest: None, .. }
    ));
    assert_eq!(h.state(id), JobState::Requesting);
    let view = h.engine.job(id).unwrap();
    assert_eq!((view.chunks_total, view.delta), (target.size().div_ceil(64) as u32, None));
    assert!(h.notes(id).iter().any(|n| n.contains("code 13")), "{:?}", h.notes(id));
    // The same refusal again (QoS 1 delivers twice) changes nothing: the whole image is offered.
    h.respond("d", id, ResponseBody::RequestNack { reason: Some(Reason::Code(13)) });
    assert_eq!(h.state(id), JobState::Requesting);
    h.drain();
    h.respond("d", id, ACK);
    let chunks: u64 = h
        .drain()
        .iter()
        .filter(|p| matches!(p.kind, PublishKind::Chunk { .. }))
        .map(|p| p.payload.len() as u64)
        .sum();
    assert_eq!(chunks, target.size(), "the whole image went out");
    // A NACK 13 to a whole image is an ordinary refusal.
    let other = h.submit("e", 100);
    h.drain();
    h.respond("e", other, ResponseBody::RequestNack { reason: Some(Reason::Code(13)) });
    assert_eq!(h.state(other), JobState::Rejected);
}

#[test]
fn a_patch_is_sent_only_while_the_devices_status_names_its_base() {
    let mut h =
        Harness::new(Settings { chunk_size: crate::firmware::ChunkSize::new(64).unwrap(), ..settings() });
    let (base, target) = (image(4000), image(4100));
    let patch = patch_of(&base, &target);
    let on_base = Reported { image: *base.sha256(), delta: true, ..reported(&base, "1.0", 1, false) };
    // Queued behind another job; meanwhile the device says it runs something else.
    let first = h.submit("d", 100);
    let spec =
        JobSpec { delta: Some(patch), reported: Some(on_base), ..JobSpec::new(dev("d"), target.clone()) };
    let second = h.engine.submit(spec, h.now).unwrap();
    h.drain();
    let elsewhere = Reported { image: [9; 32], delta: true, ..reported(&base, "1.0", 2, false) };
    h.engine.device_reported(&dev("d"), Some(elsewhere), h.now);
    h.respond("d", first, ACK);
    h.drain();
    h.respond("d", first, ResponseBody::DoneSuccess);
    let sent = h.drain();
    let request = sent
        .iter()
        .find(|p| p.job == second && p.kind == PublishKind::Command(CommandType::Request))
        .unwrap();
    assert!(matches!(
        crate::protocol::decode_command(&request.payload).unwrap().body,
        crate::protocol::CommandBody::Request { delta: None, .. }
    ));
    let view = h.engine.job(second).unwrap();
    assert_eq!((view.delta, view.chunks_total), (None, target.size().div_ceil(64) as u32));
    assert!(
        h.notes(second).iter().any(|n| n.contains("no longer names the patch's base")),
        "{:?}",
        h.notes(second)
    );
}

#[test]
fn a_job_stored_with_a_patch_comes_back_sending_the_whole_image_in_the_images_chunks() {
    let mut h = Harness::new(settings());
    let mut view = super::tests::restored(JobId::new(5), "d", JobState::Transferring, h.now);
    // Stored while it sent a 1-chunk patch of the 200-byte image (4 chunks of 64 bytes).
    view.chunks_total = 1;
    view.delta = Some(crate::firmware::DeltaInfo { base: [1; 32], patch_size: 40, patch_sha256: [2; 32] });
    h.engine.restore(view, h.now);
    let job = h.engine.job(JobId::new(5)).unwrap();
    assert_eq!((job.chunks_total, job.delta), (4, None));
}

#[test]
fn a_job_stored_with_a_patch_sends_that_patch_again_when_it_is_read_back_and_another_goes_whole() {
    let (base, target) = (image(4000), image(4100));
    let patch = patch_of(&base, &target);
    let chunk_size = crate::firmware::ChunkSize::new(64).unwrap();
    let on_base = Reported { image: *base.sha256(), delta: true, ..reported(&base, "1.0", 1, false) };
    let stored = |h: &Harness, delta: crate::firmware::DeltaInfo| {
        let mut view = super::tests::restored(JobId::new(5), "d", JobState::Transferring, h.now);
        (view.image, view.chunk_size, view.chunks_total) = (target.clone(), chunk_size, 2);
        view.delta = Some(delta);
        view
    };
    // The very patch it was offered: sent again, five items, in the patch's chunks.
    let mut h = Harness::new(Settings { chunk_size, ..settings() });
    let view = stored(&h, patch.info());
    h.engine.restore_reported(view, Some(patch.clone()), Some(on_base.clone()), h.now);
    let sent = h.drain();
    let request = sent.iter().find(|p| p.kind == PublishKind::Command(CommandType::Request)).unwrap();
    let crate::protocol::CommandBody::Request { delta: Some(item), .. } =
        crate::protocol::decode_command(&request.payload).unwrap().body
    else {
        panic!("the patch is offered again")
    };
    assert_eq!((item.base, item.sha256), (*base.sha256(), *patch.sha256()));
    let job = h.engine.job(JobId::new(5)).unwrap();
    assert_eq!((job.chunks_total, job.delta), (patch.size().div_ceil(64) as u32, Some(patch.info())));
    // A patch whose bytes are not the ones the job was offered (a rebuilt or replaced file):
    // the whole image.
    let mut h = Harness::new(Settings { chunk_size, ..settings() });
    let other = crate::firmware::DeltaInfo { patch_sha256: [7; 32], ..patch.info() };
    h.engine.restore_reported(stored(&h, other), Some(patch.clone()), Some(on_base), h.now);
    let sent = h.drain();
    let request = sent.iter().find(|p| p.kind == PublishKind::Command(CommandType::Request)).unwrap();
    assert!(matches!(
        crate::protocol::decode_command(&request.payload).unwrap().body,
        crate::protocol::CommandBody::Request { delta: None, .. }
    ));
    let job = h.engine.job(JobId::new(5)).unwrap();
    assert_eq!((job.chunks_total, job.delta), (target.size().div_ceil(64) as u32, None));
}
