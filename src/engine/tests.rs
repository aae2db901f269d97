//! The engine driven with explicit time: every timeout, retry and ordering rule in microseconds.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::firmware::{ChunkSize, Image};
use crate::protocol::{
    CommandType, DeviceId, HashEncoding, Reason, Response, ResponseBody, Topics, decode_command,
};

pub(super) struct Harness {
    pub engine: Engine,
    pub now: Instant,
    pub events: Vec<Event>,
}

pub(super) fn dev(name: &str) -> DeviceId {
    DeviceId::parse(name).unwrap()
}

pub(super) fn image(len: usize) -> Image {
    Image::new("fw.bin", Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<_>>()))
}

pub(super) fn settings() -> Settings {
    Settings {
        max_active: 64,
        max_requests: 1024,
        request_timeout: Duration::from_secs(30),
        request_attempts: 3,
        done_timeout: Duration::from_secs(60),
        chunk_size: ChunkSize::new(64).unwrap(),
        chunk_interval: Duration::ZERO,
        max_rate: 0,
        hash_encoding: HashEncoding::Array,
        progress_timeout: Duration::from_secs(10),
        progress_stalls: 5,
        max_send_factor: 3,
        max_rewinds: 16,
        confirm_timeout: Duration::from_secs(600),
        aws_device_wait: Duration::from_secs(86_400),
    }
}

impl Harness {
    pub(super) fn new(settings: Settings) -> Self {
        let now = Instant::now();
        let mut engine = Engine::new(settings, Topics::default());
        engine.set_connected(true, now);
        Self { engine, now, events: Vec::new() }
    }

    pub(super) fn submit(&mut self, device: &str, len: usize) -> JobId {
        let spec = JobSpec::new(dev(device), image(len));
        self.engine.submit(spec, self.now).unwrap()
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.engine.tick(self.now);
    }

    /// Everything the engine would send right now, each chunk acknowledged by the broker at
    /// once (see `drain_unacked` for a broker that has not answered yet).
    pub(super) fn drain(&mut self) -> Vec<Publish> {
        let mut out = Vec::new();
        while let Some(p) = self.engine.poll_publish(self.now) {
            if let PublishKind::Chunk { .. } = p.kind {
                self.engine.chunk_acked(p.job, self.now);
            }
            out.push(p);
        }
        while let Some((_, e)) = self.engine.poll_event() {
            self.events.push(e);
        }
        out
    }

    /// Everything the engine would send right now, with no acknowledgement from the broker.
    pub(super) fn drain_unacked(&mut self) -> Vec<Publish> {
        let mut out = Vec::new();
        while let Some(p) = self.engine.poll_publish(self.now) {
            out.push(p);
        }
        while let Some((_, e)) = self.engine.poll_event() {
            self.events.push(e);
        }
        out
    }

    pub(super) fn respond(&mut self, device: &str, job: JobId, body: ResponseBody) {
        self.engine.handle_response(&dev(device), Response { job_id: job.get(), body }, self.now);
    }

    pub(super) fn state(&self, job: JobId) -> JobState {
        self.engine.job(job).unwrap().state
    }

    pub(super) fn ignored(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Ignored { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn kinds(publishes: &[Publish]) -> Vec<PublishKind> {
    publishes.iter().map(|p| p.kind).collect()
}

pub(super) const ACK: ResponseBody = ResponseBody::RequestAck { next_chunk: None, window: None };

#[test]
fn a_job_runs_request_chunks_done_and_succeeds() {
    let mut h = Harness::new(settings());
    let id = h.submit("dev-07", 150); // 64 + 64 + 22
    let out = h.drain();
    assert_eq!(kinds(&out), vec![PublishKind::Command(CommandType::Request)]);
    assert_eq!(out[0].topic, "/fota/cmd/dev-07");
    let cmd = decode_command(&out[0].payload).unwrap();
    assert_eq!(cmd.job_id, id.get());
    assert_eq!(h.state(id), JobState::Requesting);

    h.respond("dev-07", id, ACK);
    let out = h.drain();
    assert_eq!(
        kinds(&out),
        vec![
            PublishKind::Chunk { id: 1, total: 3 },
            PublishKind::Chunk { id: 2, total: 3 },
            PublishKind::Chunk { id: 3, total: 3 },
            PublishKind::Command(CommandType::Done),
        ]
    );
    assert_eq!(out[0].topic, "/fota/data/dev-07/1");
    assert_eq!(out[2].payload.len(), 22);
    let reassembled: Vec<u8> = out[..3].iter().flat_map(|p| p.payload.to_vec()).collect();
    assert_eq!(reassembled, image(150).bytes().to_vec());
    assert_eq!(h.state(id), JobState::Finishing);

    h.respond("dev-07", id, ResponseBody::DoneSuccess);
    h.drain();
    let view = h.engine.job(id).unwrap();
    assert_eq!(
        (view.state, view.chunks_done, view.chunks_total, view.bytes_sent),
        (JobState::Succeeded, 3, 3, 150)
    );
    assert!(view.finished_at.is_some() && view.error.is_none());
    // A finished job keeps its image's description, not its bytes.
    assert_eq!(
        (view.image.size(), view.image.has_bytes(), view.image.sha256()),
        (150, false, image(150).sha256())
    );
    let states: Vec<JobState> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StateChanged { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    use JobState::*;
    assert_eq!(states, vec![Requesting, Transferring, Finishing, Succeeded]);
    assert_eq!(h.events.iter().filter(|e| matches!(e, Event::ChunkSent { .. })).count(), 3);
    assert!(h.engine.is_idle());
}

#[test]
fn nack_rejects_and_done_failed_fails_with_the_devices_word() {
    let mut h = Harness::new(settings());
    let a = h.submit("a", 10);
    let b = h.submit("b", 10);
    h.drain();
    h.respond("a", a, ResponseBody::RequestNack { reason: None });
    assert_eq!(h.state(a), JobState::Rejected);
    h.respond("b", b, ACK);
    h.drain();
    h.respond("b", b, ResponseBody::DoneFailed { reason: Some(Reason::text("hash mismatch")) });
    let view = h.engine.job(b).unwrap();
    assert_eq!(view.state, JobState::Failed);
    assert!(view.error.unwrap().contains("hash mismatch"));
    assert_eq!(view.reason_code, None, "a text reason has no code");
    // A coded reason keeps its code beside its meaning.
    let c = h.submit("c", 10);
    h.drain();
    h.respond("c", c, ResponseBody::RequestNack { reason: Some(Reason::Code(6)) });
    let view = h.engine.job(c).unwrap();
    assert_eq!((view.reason_code, view.error.as_deref()), (Some(6), Some("busy: try again later")));
}

#[test]
fn request_is_resent_then_times_out_after_the_attempts() {
    let mut h = Harness::new(settings());
    let id = h.submit("silent", 10);
    assert_eq!(h.drain().len(), 1);
    h.advance(Duration::from_secs(29));
    assert!(h.drain().is_empty(), "nothing before the timeout");
    h.advance(Duration::from_secs(1));
    assert_eq!(kinds(&h.drain()), vec![PublishKind::Command(CommandType::Request)]);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.drain().len(), 1);
    assert_eq!(h.engine.job(id).unwrap().attempts, 3);
    assert_eq!(h.state(id), JobState::Requesting);
    h.advance(Duration::from_secs(30));
    assert!(h.drain().is_empty());
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.state, JobState::TimedOut);
    assert!(view.error.unwrap().contains("FOTA_REQUEST"));
}

/// The mixed fleet's timing on the engine's own clock (the end-to-end test runs on real time,
/// so it keeps wide margins and checks outcomes only): with a 700 ms answer deadline and two
/// attempts, a device that answers every frame after 300 ms succeeds, and a silent one times
/// out at exactly 1.4 s, having been asked twice.
#[test]
fn a_slow_device_within_the_deadline_succeeds_and_a_silent_one_times_out_on_time() {
    let mut h = Harness::new(Settings {
        request_timeout: Duration::from_millis(700),
        request_attempts: 2,
        done_timeout: Duration::from_secs(3),
        ..settings()
    });
    let slow = h.submit("slow", 100);
    let silent = h.submit("silent", 100);
    h.drain();
    h.advance(Duration::from_millis(300));
    h.respond("slow", slow, ACK);
    let out = h.drain();
    assert!(out.iter().any(|p| p.kind == PublishKind::Command(CommandType::Done)), "chunks and FOTA_DONE");
    h.advance(Duration::from_millis(300));
    h.respond("slow", slow, ResponseBody::DoneSuccess);
    h.drain();
    assert_eq!(h.state(slow), JobState::Succeeded);
    h.advance(Duration::from_millis(99)); // 699 ms: the first deadline has not passed
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1)); // 700 ms: asked again
    assert_eq!(kinds(&h.drain()), vec![PublishKind::Command(CommandType::Request)]);
    h.advance(Duration::from_millis(699));
    assert_eq!(h.state(silent), JobState::Requesting, "1399 ms: still waiting");
    h.advance(Duration::from_millis(1));
    h.drain();
    let view = h.engine.job(silent).unwrap();
    assert_eq!((view.state, view.attempts), (JobState::TimedOut, 2));
}

#[test]
fn a_late_ack_after_a_resend_is_still_accepted_once() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 10);
    h.drain();
    h.advance(Duration::from_secs(30)); // second FOTA_REQUEST
    h.drain();
    h.respond("d", id, ACK); // answer to the first
    h.drain(); // the one chunk and FOTA_DONE
    assert_eq!(h.state(id), JobState::Finishing);
    h.respond("d", id, ACK); // answer to the second: wrong phase now
    assert_eq!(h.state(id), JobState::Finishing);
    assert_eq!(h.ignored().len(), 1);
}

#[test]
fn done_timeout_times_out_the_finishing_phase() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 10);
    h.drain();
    h.respond("d", id, ACK);
    h.drain();
    h.advance(Duration::from_secs(59));
    assert_eq!(h.state(id), JobState::Finishing);
    h.advance(Duration::from_secs(1));
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.state, JobState::TimedOut);
    assert!(view.error.unwrap().contains("FOTA_DONE"));
}

#[test]
fn a_silent_device_does_not_block_other_jobs() {
    let mut h = Harness::new(settings());
    let silent = h.submit("silent", 10);
    let ok = h.submit("ok", 10);
    h.drain();
    h.respond("ok", ok, ACK);
    h.drain();
    h.respond("ok", ok, ResponseBody::DoneSuccess);
    assert_eq!(h.state(ok), JobState::Succeeded);
    assert_eq!(h.state(silent), JobState::Requesting);
}

#[test]
fn cancel_works_in_every_non_final_state_and_nothing_is_sent_after() {
    let mut h = Harness::new(settings());
    // queued: behind another job for the same device
    let first = h.submit("d", 1000);
    let queued = h.submit("d", 10);
    h.drain();
    assert_eq!(h.state(queued), JobState::Queued);
    h.engine.cancel(queued, h.now).unwrap();
    assert_eq!(h.state(queued), JobState::Cancelled);
    // requesting
    h.engine.cancel(first, h.now).unwrap();
    assert!(h.drain().is_empty());
    // a late ACK for the cancelled job changes nothing
    h.respond("d", first, ACK);
    assert_eq!(h.state(first), JobState::Cancelled);

    // transferring: paced so that it is mid-transfer
    let mut s = settings();
    s.chunk_interval = Duration::from_millis(10);
    let mut h = Harness::new(s);
    let id = h.submit("d", 1000);
    h.drain();
    h.respond("d", id, ACK);
    assert_eq!(h.drain().len(), 1);
    assert_eq!(h.state(id), JobState::Transferring);
    h.engine.cancel(id, h.now).unwrap();
    h.advance(Duration::from_secs(1));
    assert!(h.drain().is_empty(), "no chunk after cancel");

    // finishing
    let mut h = Harness::new(settings());
    let id = h.submit("d", 10);
    h.drain();
    h.respond("d", id, ACK);
    h.drain();
    assert_eq!(h.state(id), JobState::Finishing);
    h.engine.cancel(id, h.now).unwrap();
    assert_eq!(h.state(id), JobState::Cancelled);
    h.respond("d", id, ResponseBody::DoneSuccess);
    assert_eq!(h.state(id), JobState::Cancelled);
    assert!(matches!(h.engine.cancel(id, h.now), Err(CancelError::AlreadyFinal { .. })));
    assert!(
        matches!(h.engine.cancel(JobId::new(999), h.now), Err(CancelError::NotFound(id)) if id == JobId::new(999))
    );
}

#[test]
fn cancel_between_polls_drops_the_queued_command() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 10);
    h.engine.cancel(id, h.now).unwrap();
    assert!(h.drain().is_empty(), "the FOTA_REQUEST queued before cancel is not sent");
}

#[test]
fn duplicates_unknown_jobs_and_wrong_devices_are_ignored() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 10);
    h.drain();
    h.respond("d", JobId::new(4242), ACK);
    h.respond("other", id, ACK);
    h.respond("d", id, ResponseBody::DoneSuccess); // wrong phase
    assert_eq!(h.state(id), JobState::Requesting);
    h.respond("d", id, ACK);
    h.drain();
    h.respond("d", id, ResponseBody::DoneSuccess);
    h.respond("d", id, ResponseBody::DoneSuccess); // QoS 1 duplicate
    assert_eq!(h.state(id), JobState::Succeeded);
    let reasons = h.ignored();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("unknown job"));
    assert!(reasons[1].contains("belongs to device d"));
    assert!(reasons[2].contains("does not fit"));
    assert!(reasons[3].contains("already succeeded"));
}

#[test]
fn jobs_for_one_device_run_in_order_one_at_a_time() {
    let mut h = Harness::new(settings());
    let jobs: Vec<JobId> = (0..3).map(|_| h.submit("d", 10)).collect();
    let out = h.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(decode_command(&out[0].payload).unwrap().job_id, jobs[0].get());
    for (i, id) in jobs.iter().enumerate() {
        assert_eq!(h.state(*id), JobState::Requesting, "job {i}");
        h.respond("d", *id, ResponseBody::RequestNack { reason: None });
        if let Some(next) = jobs.get(i + 1) {
            let out = h.drain();
            assert_eq!(decode_command(&out[0].payload).unwrap().job_id, next.get());
        }
    }
}

#[test]
fn max_requests_bounds_jobs_waiting_for_an_answer() {
    let mut s = settings();
    s.max_requests = 2;
    let mut h = Harness::new(s);
    let ids: Vec<JobId> = ["a", "b", "c"].iter().map(|d| h.submit(d, 10)).collect();
    assert_eq!(h.drain().len(), 2);
    assert_eq!(h.state(ids[2]), JobState::Queued);
    h.respond("a", ids[0], ResponseBody::RequestNack { reason: None });
    assert_eq!(h.state(ids[2]), JobState::Requesting);
}

#[test]
fn max_active_bounds_transfers_and_accepted_jobs_wait_for_a_slot() {
    let mut s = settings();
    s.max_active = 1;
    let mut h = Harness::new(s);
    let a = h.submit("a", 64 * 2);
    let b = h.submit("b", 64 * 2);
    assert_eq!(h.drain().len(), 2, "both are asked at once");
    h.respond("a", a, ACK);
    h.respond("b", b, ResponseBody::RequestAck { next_chunk: Some(2), window: None });
    assert_eq!((h.state(a), h.state(b)), (JobState::Transferring, JobState::Requesting));
    // b waits with no deadline: an hour later it has not timed out.
    h.advance(Duration::from_secs(3600));
    let out = h.drain();
    assert!(out.iter().all(|p| p.job == a), "only a sends: {:?}", kinds(&out));
    assert_eq!(h.state(b), JobState::Requesting);
    h.respond("a", a, ResponseBody::DoneSuccess);
    assert_eq!(h.state(b), JobState::Transferring, "the freed slot goes to b");
    let out = h.drain();
    assert_eq!(kinds(&out)[0], PublishKind::Chunk { id: 2, total: 2 }, "b resumes where its ACK said");
}

#[test]
fn silent_devices_never_delay_a_responsive_one() {
    let mut s = settings();
    s.max_active = 4;
    s.request_timeout = Duration::from_secs(30);
    let mut h = Harness::new(s);
    for i in 0..64 {
        h.submit(&format!("silent-{i}"), 64);
    }
    let healthy = h.submit("healthy", 64);
    h.drain();
    assert_eq!(h.state(healthy), JobState::Requesting, "asked at once, beside 64 silent devices");
    h.respond("healthy", healthy, ACK);
    assert_eq!(h.state(healthy), JobState::Transferring, "and a transfer slot is free for it");
}

#[test]
fn transfers_take_turns_chunk_by_chunk() {
    let mut h = Harness::new(settings());
    let a = h.submit("a", 64 * 4);
    let b = h.submit("b", 64 * 2);
    h.drain();
    h.respond("a", a, ACK);
    h.respond("b", b, ACK);
    let order: Vec<(JobId, PublishKind)> = h.drain().iter().map(|p| (p.job, p.kind)).collect();
    let chunk = |id, total| PublishKind::Chunk { id, total };
    assert_eq!(
        order,
        vec![
            (a, chunk(1, 4)),
            (b, chunk(1, 2)),
            (a, chunk(2, 4)),
            (b, chunk(2, 2)),
            (b, PublishKind::Command(CommandType::Done)),
            (a, chunk(3, 4)),
            (a, chunk(4, 4)),
            (a, PublishKind::Command(CommandType::Done)),
        ]
    );
}

#[test]
fn resume_starts_where_the_device_says() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 64 * 5);
    h.drain();
    h.respond("d", id, ResponseBody::RequestAck { next_chunk: Some(4), window: None });
    assert_eq!(
        kinds(&h.drain()),
        vec![
            PublishKind::Chunk { id: 4, total: 5 },
            PublishKind::Chunk { id: 5, total: 5 },
            PublishKind::Command(CommandType::Done)
        ]
    );

    // The device holds everything: straight to FOTA_DONE.
    let id = h.submit("e", 64 * 5);
    h.drain();
    h.respond("e", id, ResponseBody::RequestAck { next_chunk: Some(6), window: None });
    assert_eq!(kinds(&h.drain()), vec![PublishKind::Command(CommandType::Done)]);

    // A resume point past the end is nonsense: start from chunk 1.
    let id = h.submit("f", 64 * 2);
    h.drain();
    h.respond("f", id, ResponseBody::RequestAck { next_chunk: Some(99), window: None });
    assert_eq!(h.drain()[0].kind, PublishKind::Chunk { id: 1, total: 2 });
}

#[test]
fn chunk_interval_paces_one_job() {
    let mut s = settings();
    s.chunk_interval = Duration::from_millis(10);
    let mut h = Harness::new(s);
    let id = h.submit("d", 64 * 3);
    h.drain();
    h.respond("d", id, ACK);
    assert_eq!(h.drain().len(), 1);
    h.advance(Duration::from_millis(9));
    assert!(h.drain().is_empty());
    assert_eq!(h.engine.next_wakeup(), Some(h.now + Duration::from_millis(1)));
    h.advance(Duration::from_millis(1));
    assert_eq!(kinds(&h.drain()), vec![PublishKind::Chunk { id: 2, total: 3 }]);
    h.advance(Duration::from_millis(10));
    assert_eq!(
        kinds(&h.drain()),
        vec![PublishKind::Chunk { id: 3, total: 3 }, PublishKind::Command(CommandType::Done)]
    );
}

#[test]
fn nothing_is_sent_while_disconnected_and_reconnect_repeats_the_last_command() {
    let mut s = settings();
    s.chunk_interval = Duration::from_millis(10);
    let mut h = Harness::new(s);
    let requesting = h.submit("r", 64 * 3);
    let transferring = h.submit("t", 64 * 3);
    let finishing = h.submit("f", 10);
    h.drain();
    h.respond("t", transferring, ACK);
    h.respond("f", finishing, ACK);
    h.drain();
    h.engine.set_connected(false, h.now);
    let queued = h.submit("q", 10);
    // Deadlines do not run while the broker is unreachable.
    h.advance(Duration::from_secs(600));
    assert!(h.drain().is_empty());
    assert_eq!(h.state(requesting), JobState::Requesting);
    assert_eq!(h.state(finishing), JobState::Finishing);
    assert_eq!(h.state(queued), JobState::Queued);

    h.engine.set_connected(true, h.now);
    let mut sent: Vec<(JobId, PublishKind)> = h.drain().iter().map(|p| (p.job, p.kind)).collect();
    sent.sort_by_key(|(id, _)| *id);
    let req = PublishKind::Command(CommandType::Request);
    assert_eq!(
        sent,
        vec![
            (requesting, req),
            (transferring, req),
            (finishing, PublishKind::Command(CommandType::Done)),
            (queued, req)
        ]
    );
    assert_eq!(h.state(transferring), JobState::Requesting);
    // Each resend is on its job's timeline.
    let notes: Vec<(JobId, String)> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Note { job, text, .. } => Some((*job, text.clone())),
            _ => None,
        })
        .collect();
    for (job, says) in [
        (requesting, "FOTA_REQUEST sent again"),
        (transferring, "where to resume"),
        (finishing, "FOTA_DONE sent again"),
    ] {
        assert!(notes.iter().any(|(j, t)| *j == job && t.contains(says)), "{job}: {notes:?}");
    }
    // The resent request round has its full retry budget again.
    h.advance(Duration::from_secs(30));
    assert_eq!(h.drain().len(), 3, "requesting, transferring and queued resend");
    assert_eq!(h.state(requesting), JobState::Requesting);
}

#[test]
fn ids_are_unique_and_continue_after_a_floor() {
    let mut h = Harness::new(settings());
    let a = h.submit("a", 10);
    h.engine.set_last_job_id(JobId::new(1000));
    let b = h.submit("a", 10);
    assert_eq!((a, b), (JobId::new(1), JobId::new(1001)));
    h.engine.set_last_job_id(JobId::new(5)); // never goes backwards
    assert_eq!(h.submit("a", 10), JobId::new(1002));
}

#[test]
fn more_than_65535_chunks_are_counted_in_32_bits() {
    let mut h = Harness::new(settings());
    let id = h.submit("big", 64 * 70_000);
    h.drain();
    h.respond("big", id, ACK);
    let out = h.drain();
    assert_eq!(out.len(), 70_001);
    assert_eq!(out[69_999].kind, PublishKind::Chunk { id: 70_000, total: 70_000 });
    assert_eq!(out[69_999].topic, "/fota/data/big/70000");
}

#[test]
fn an_empty_image_is_refused() {
    let mut h = Harness::new(settings());
    let spec = JobSpec::new(dev("d"), image(0));
    assert!(matches!(h.engine.submit(spec, h.now), Err(SubmitError::EmptyImage(_))));
}

pub(super) fn restored(id: JobId, device: &str, state: JobState, now: Instant) -> JobView {
    JobView {
        rollout: None,
        id,
        device: dev(device),
        image: image(200),
        chunk_size: ChunkSize::new(64).unwrap(),
        chunk_interval: Duration::ZERO,
        state,
        chunks_done: 2,
        chunks_confirmed: None,
        window: None,
        chunks_total: 4,
        bytes_sent: 128,
        attempts: 1,
        error: None,
        reason_code: None,
        created_at: now,
        started_at: Some(now),
        finished_at: state.is_final().then_some(now),
        force: false,
        confirm_boot: None,
        confirmed_at: None,
        manifest: None,
        delta: None,
        aws: None,
    }
}

#[test]
fn restored_active_jobs_run_again_from_the_request_and_finished_ones_keep_their_outcome() {
    let mut h = Harness::new(settings());
    let now = h.now;
    h.engine.restore(restored(JobId::new(7), "a", JobState::Succeeded, now), now);
    h.engine.restore(restored(JobId::new(8), "b", JobState::Transferring, now), now);
    h.engine.restore(restored(JobId::new(9), "b", JobState::Queued, now), now);
    assert_eq!(h.state(JobId::new(7)), JobState::Succeeded);
    assert_eq!(h.state(JobId::new(8)), JobState::Requesting);
    assert_eq!(h.state(JobId::new(9)), JobState::Queued, "waits behind job 8 on the same device");
    let out = h.drain();
    assert_eq!(kinds(&out), vec![PublishKind::Command(CommandType::Request)]);
    assert_eq!(h.engine.job(JobId::new(8)).unwrap().attempts, 2, "the restart counts as an attempt");
    assert!(h.events.iter().any(|e| matches!(e, Event::StateChanged { job, to: JobState::Queued, detail: Some(d), .. } if *job == JobId::new(8) && d.contains("recovered"))));
    // The device resumes where it was.
    h.respond("b", JobId::new(8), ResponseBody::RequestAck { next_chunk: Some(3), window: None });
    assert_eq!(h.drain()[0].kind, PublishKind::Chunk { id: 3, total: 4 });
    // New ids continue after the restored ones.
    assert_eq!(h.submit("c", 10), JobId::new(10));
    assert!(matches!(
        h.engine.submit_as(JobId::new(9), JobSpec::new(dev("c"), image(10)), None, now),
        Err(SubmitError::IdInUse(id)) if id == JobId::new(9)
    ));
}

#[test]
fn prune_forgets_only_finished_jobs_by_count_or_age() {
    let mut h = Harness::new(settings());
    let now = h.now;
    for id in 1..=4 {
        h.engine.restore(
            restored(
                JobId::new(id),
                &format!("d{id}"),
                JobState::Failed,
                now + Duration::from_secs(u64::from(id)),
            ),
            now,
        );
    }
    h.engine.restore(restored(JobId::new(5), "d5", JobState::Queued, now), now);
    assert_eq!(h.engine.prune(Some(2), None), vec![JobId::new(1), JobId::new(2)]);
    assert_eq!(h.engine.prune(None, Some(now + Duration::from_secs(4))), vec![JobId::new(3)]);
    assert!(h.engine.job(JobId::new(4)).is_some() && h.engine.job(JobId::new(5)).is_some());
}

#[test]
fn a_device_whose_queue_was_emptied_and_refilled_still_runs_one_job_at_a_time() {
    // Found by the property test: the device was listed as ready twice.
    let mut s = settings();
    s.max_requests = 2;
    let mut h = Harness::new(s);
    let a = h.submit("a", 64);
    let x = h.submit("x", 64);
    let b = h.submit("b", 64);
    h.engine.cancel(b, h.now).unwrap();
    let c = h.submit("b", 64);
    let d = h.submit("b", 64);
    h.respond("a", a, ResponseBody::RequestNack { reason: None });
    h.respond("x", x, ResponseBody::RequestNack { reason: None });
    assert_eq!((h.state(c), h.state(d)), (JobState::Requesting, JobState::Queued));
}

#[test]
fn released_jobs_leave_without_a_trace_and_free_their_device_and_slot() {
    let mut s = settings();
    s.max_active = 1;
    s.chunk_interval = Duration::from_millis(10);
    let mut h = Harness::new(s);
    // Transferring on "a" (holding the only transfer slot), one queued behind it on "a",
    // requesting on "b" (accepted, waiting for the slot), one finished on "c".
    let moving = h.submit("a", 1000);
    let behind = h.submit("a", 10);
    let asking = h.submit("b", 10);
    let done = h.submit("c", 10);
    h.drain();
    h.respond("a", moving, ACK);
    h.respond("c", done, ResponseBody::RequestNack { reason: None });
    h.drain();
    h.respond("b", asking, ACK);
    h.drain();
    assert_eq!(h.state(moving), JobState::Transferring);
    assert_eq!(h.state(asking), JobState::Requesting, "accepted, waiting for the slot");
    let events_before = h.events.len();

    let released = h.engine.release(&[moving, behind, done, JobId::new(999)], h.now);
    assert_eq!(released, [moving, behind], "finished and unknown jobs stay");
    assert!(h.engine.job(moving).is_none() && h.engine.job(behind).is_none());
    assert_eq!(h.state(done), JobState::Rejected);
    // The freed slot goes to the accepted job at once; nothing goes to device "a" again.
    assert_eq!(h.state(asking), JobState::Transferring);
    let counts = h.engine.counts();
    assert_eq!(counts.get(&JobState::Transferring).copied(), Some(1), "only the promoted job");
    assert_eq!(counts.get(&JobState::Queued).copied().unwrap_or(0), 0);
    h.advance(Duration::from_secs(1));
    let out = h.drain();
    assert!(out.iter().all(|p| decode_command(&p.payload).map_or(true, |c| c.job_id == asking.get())));
    assert!(
        h.events[events_before..]
            .iter()
            .all(|e| !matches!(e, Event::StateChanged { job, .. } if *job == moving || *job == behind)),
        "no state change is told for a released job"
    );
    // A new job for "a" starts at once: the device is free.
    let next = h.submit("a", 10);
    h.drain();
    assert_eq!(h.state(next), JobState::Requesting);
}

#[test]
fn after_a_reconnect_fota_request_goes_again_soon_without_costing_an_attempt() {
    let mut h = Harness::new(settings()); // 30 s request timeout, 3 attempts
    let silent = h.submit("s", 64 * 3);
    let moving = h.submit("m", 64 * 3);
    h.drain();
    h.respond("m", moving, ACK);
    h.engine.set_connected(false, h.now);
    h.engine.set_connected(true, h.now);
    let first: Vec<JobId> = h.drain().iter().map(|p| p.job).collect();
    assert_eq!(first, vec![silent, moving], "both asked at once");
    // Devices resubscribe after the broker is back, and may have missed that: again in 5 s,
    // not 30 s.
    h.advance(RECONNECT_RETRY - Duration::from_millis(1));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    let again: Vec<JobId> = h.drain().iter().map(|p| p.job).collect();
    assert_eq!(again, vec![silent, moving]);
    // The early send is free: three more full request timeouts before a silent job times out.
    h.advance(Duration::from_secs(30));
    h.advance(Duration::from_secs(30));
    assert_eq!(h.state(silent), JobState::Requesting);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.state(silent), JobState::TimedOut);
}

#[test]
fn fota_done_waits_until_the_broker_has_acknowledged_every_chunk() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 3 * 64);
    h.drain();
    h.respond("d", id, ACK);
    let out = h.drain_unacked();
    assert_eq!(kinds(&out).len(), 3, "three chunks and no FOTA_DONE yet: {:?}", kinds(&out));
    assert_eq!(h.state(id), JobState::Finishing);
    h.engine.chunk_acked(id, h.now);
    h.engine.chunk_acked(id, h.now);
    assert!(h.drain_unacked().is_empty(), "one chunk is not with the broker yet");
    h.engine.chunk_acked(id, h.now);
    assert_eq!(kinds(&h.drain_unacked()), vec![PublishKind::Command(CommandType::Done)]);
    h.respond("d", id, ResponseBody::DoneSuccess);
    assert_eq!(h.state(id), JobState::Succeeded);

    // Acknowledgements that never come end the job after the done timeout, saying so.
    let other = h.submit("e", 2 * 64);
    h.drain();
    h.respond("e", other, ACK);
    h.drain_unacked();
    h.advance(Duration::from_secs(60));
    assert_eq!(h.state(other), JobState::TimedOut);
    let error = h.engine.job(other).unwrap().error.unwrap();
    assert!(error.contains("did not acknowledge the last 2 chunks"), "{error}");
}

#[test]
fn a_publish_the_broker_refuses_ends_the_job_failed_naming_the_topic() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 3 * 64);
    h.drain();
    h.engine.publish_refused(id, "/fota/cmd/d", "not authorized", h.now);
    assert_eq!(h.state(id), JobState::Failed);
    assert_eq!(
        h.engine.job(id).unwrap().error.as_deref(),
        Some("the broker refused publishing to /fota/cmd/d: not authorized")
    );
}

#[test]
fn a_chunk_larger_than_the_brokers_maximum_packet_is_refused_when_the_job_is_made() {
    let mut h = Harness::new(settings()); // 64-byte chunks
    h.engine.set_broker_max_packet(Some(80));
    let spec = |len: usize| JobSpec::new(dev("d"), image(len));
    let err = h.engine.submit(spec(640), h.now).unwrap_err().to_string();
    assert!(
        err.contains("a chunk of 64 bytes for device d") && err.contains("maximum packet size of 80 bytes"),
        "{err}"
    );
    assert!(err.contains("use a chunk size of at most 55"), "{err}");
    h.engine.set_broker_max_packet(Some(200));
    assert!(h.engine.submit(spec(640), h.now).is_ok());
    h.engine.set_broker_max_packet(None);
    assert!(h.engine.submit(spec(640), h.now).is_ok(), "3.1.1 brokers say nothing");
}

#[test]
fn a_finished_job_let_go_of_keeps_its_words_its_count_and_its_place_in_retention() {
    let mut h = Harness::new(settings());
    let first = h.submit("a", 10);
    let second = h.submit("b", 10);
    h.drain();
    h.respond("a", first, ResponseBody::RequestNack { reason: None });
    h.drain();
    h.engine.forget_finished();
    // Let go of whole: no view, but its state, device and count stay.
    assert!(h.engine.job(first).is_none());
    assert_eq!(h.engine.job_state(first), Some(JobState::Rejected));
    assert!(h.engine.has_job_for(first, &dev("a")) && !h.engine.has_job_for(first, &dev("b")));
    assert_eq!(h.engine.counts().get(&JobState::Rejected), Some(&1));
    // A late answer is told as late, not as a stranger's; another device's as not its own.
    h.respond("a", first, ResponseBody::DoneSuccess);
    h.respond("b", first, ResponseBody::DoneSuccess);
    let ignored = h.ignored();
    assert_eq!(ignored[0], "job already rejected (late or duplicate)");
    assert_eq!(ignored[1], "job belongs to device a");
    assert!(matches!(
        h.engine.cancel(first, h.now),
        Err(CancelError::AlreadyFinal { state: JobState::Rejected, .. })
    ));
    // A job still running is never let go of; one that ends later is, at the next call.
    assert!(h.engine.job(second).is_some());
    h.respond("b", second, ResponseBody::RequestNack { reason: None });
    h.drain();
    assert!(h.engine.job(second).is_some(), "whole until the runtime has read its events");
    h.engine.forget_finished();
    assert!(h.engine.job(second).is_none());
    // Retention counts let-go jobs in id order, with the whole ones.
    let third = h.submit("c", 10);
    h.engine.cancel(third, h.now).unwrap();
    assert_eq!(h.engine.prune(Some(1), None), vec![first, second]);
    assert_eq!(h.engine.job_state(first), None);
    assert_eq!(h.engine.counts().get(&JobState::Rejected), None);
    assert_eq!(h.engine.counts().get(&JobState::Cancelled), Some(&1));
}
