//! The engine driven by random interleavings of submissions, cancels, device answers (right,
//! wrong and late; pushed and flow-controlled, with resumes, windows, progress and rewinds), time
//! and broker outages, checking after every step what must always hold: one active job per
//! device, the slot bounds, nothing sent for a finished job, no chunk beyond a device's window,
//! counts that agree with the jobs' states, and an event for every job whose view changed (what
//! the driver relies on to bring the job table up to date).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::{Engine, JobId, JobSpec, JobState, PublishKind, Settings};
use crate::firmware::{ChunkSize, Image};
use crate::protocol::{CommandType, DeviceId, HashEncoding, Response, ResponseBody, Topics};

#[derive(Debug, Clone)]
enum Step {
    Submit {
        device: u8,
        chunks: u8,
    },
    Cancel {
        job: u8,
    },
    Ack {
        device: u8,
        resume: Option<u8>,
        /// A window: the device paces the transfer (flow control).
        window: Option<u8>,
    },
    /// FOTA_PROGRESS naming the next chunk it wants (a repeat, an advance, a rewind, or beyond
    /// what was sent), with a new window or not.
    Progress {
        device: u8,
        next: u8,
        window: Option<u8>,
    },
    Nack {
        device: u8,
    },
    DoneSuccess {
        device: u8,
    },
    DoneFailed {
        device: u8,
    },
    /// An answer naming some job id, right or not.
    Stray {
        device: u8,
        job: u8,
    },
    Advance {
        ms: u32,
    },
    Disconnect,
    Reconnect,
    Send {
        count: u8,
    },
    /// Forget finished jobs beyond the newest `keep`.
    Prune {
        keep: usize,
    },
    /// The runtime has read the events: finished jobs leave the engine whole and stay as a
    /// line each.
    ForgetFinished,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6, 1u8..6).prop_map(|(device, chunks)| Step::Submit { device, chunks }),
        (0u8..20).prop_map(|job| Step::Cancel { job }),
        (0u8..6, proptest::option::of(0u8..8), proptest::option::of(0u8..4))
            .prop_map(|(device, resume, window)| Step::Ack { device, resume, window }),
        (0u8..6, 0u8..8, proptest::option::of(0u8..4)).prop_map(|(device, next, window)| Step::Progress {
            device,
            next,
            window
        }),
        (0u8..6).prop_map(|device| Step::Nack { device }),
        (0u8..6).prop_map(|device| Step::DoneSuccess { device }),
        (0u8..6).prop_map(|device| Step::DoneFailed { device }),
        (0u8..6, 0u8..20).prop_map(|(device, job)| Step::Stray { device, job }),
        (0u32..40_000).prop_map(|ms| Step::Advance { ms }),
        Just(Step::Disconnect),
        Just(Step::Reconnect),
        (0u8..20).prop_map(|count| Step::Send { count }),
        (0usize..3).prop_map(|keep| Step::Prune { keep }),
        Just(Step::ForgetFinished),
    ]
}

fn device(n: u8) -> DeviceId {
    DeviceId::parse(&format!("dev-{n}")).unwrap_or_else(|_| unreachable!("a valid id"))
}

struct Model {
    engine: Engine,
    now: Instant,
    connected: bool,
    /// Jobs that reached a final state: nothing may be sent for them afterwards.
    finished: BTreeSet<JobId>,
    /// Every job as last seen, to tell which changed in a step.
    views: BTreeMap<JobId, super::JobView>,
    /// Finished jobs the engine let go of whole: their device and final state.
    forgotten: BTreeMap<JobId, (DeviceId, JobState)>,
    settings: Settings,
}

impl Model {
    fn new() -> Self {
        let settings = Settings {
            max_active: 2,
            max_requests: 3,
            request_timeout: Duration::from_secs(5),
            request_attempts: 2,
            done_timeout: Duration::from_secs(10),
            chunk_size: ChunkSize::new(64).unwrap_or_else(|_| unreachable!("64 is a valid chunk size")),
            chunk_interval: Duration::ZERO,
            max_rate: 0,
            hash_encoding: HashEncoding::Array,
            progress_timeout: Duration::from_secs(3),
            progress_stalls: 3,
            max_send_factor: 3,
            max_rewinds: 16,
            confirm_timeout: std::time::Duration::from_secs(600),
            aws_device_wait: Duration::from_secs(60),
        };
        let now = Instant::now();
        let mut engine = Engine::new(settings.clone(), Topics::default());
        engine.set_connected(true, now);
        Self {
            engine,
            now,
            connected: true,
            finished: BTreeSet::new(),
            views: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            settings,
        }
    }

    /// The job currently holding `device`, if any.
    fn current(&self, n: u8) -> Option<JobId> {
        let id = device(n);
        self.engine.jobs().find(|j| j.device == id && j.state.is_active()).map(|j| j.id)
    }

    fn answer(&mut self, n: u8, job: JobId, body: ResponseBody) {
        self.engine.handle_response(&device(n), Response { job_id: job.get(), body }, self.now);
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Submit { device: n, chunks } => {
                let bytes = Bytes::from(vec![n; usize::from(chunks) * 64]);
                let spec = JobSpec::new(device(n), Image::new("p.bin", bytes));
                let _ = self.engine.submit(spec, self.now);
            }
            Step::Cancel { job } => {
                let _ = self.engine.cancel(JobId::new(u32::from(job)), self.now);
            }
            Step::Ack { device: n, resume, window } => {
                if let Some(job) = self.current(n) {
                    // A window needs a next chunk (a four-item ACK).
                    let next_chunk = resume.map(u32::from).or(window.map(|_| 1));
                    let window = window.map(u32::from);
                    self.answer(n, job, ResponseBody::RequestAck { next_chunk, window });
                }
            }
            Step::Progress { device: n, next, window } => {
                if let Some(job) = self.current(n) {
                    let body =
                        ResponseBody::Progress { next_chunk: u32::from(next), window: window.map(u32::from) };
                    self.answer(n, job, body);
                }
            }
            Step::Nack { device: n } => {
                if let Some(job) = self.current(n) {
                    self.answer(n, job, ResponseBody::RequestNack { reason: None });
                }
            }
            Step::DoneSuccess { device: n } => {
                if let Some(job) = self.current(n) {
                    self.answer(n, job, ResponseBody::DoneSuccess);
                }
            }
            Step::DoneFailed { device: n } => {
                if let Some(job) = self.current(n) {
                    self.answer(n, job, ResponseBody::DoneFailed { reason: None });
                }
            }
            Step::Stray { device: n, job } => {
                self.answer(n, JobId::new(u32::from(job)), ResponseBody::DoneSuccess)
            }
            Step::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                self.engine.tick(self.now);
            }
            Step::Disconnect => {
                self.connected = false;
                self.engine.set_connected(false, self.now);
            }
            Step::Reconnect => {
                self.connected = true;
                self.engine.set_connected(true, self.now);
            }
            Step::Prune { keep } => {
                for id in self.engine.prune(Some(keep), None) {
                    self.finished.remove(&id);
                    self.forgotten.remove(&id);
                }
            }
            Step::ForgetFinished => {
                self.engine.forget_finished();
                for (id, view) in &self.views {
                    if self.engine.job(*id).is_none() && self.engine.job_state(*id).is_some() {
                        assert!(view.state.is_final(), "job {id} forgotten while {}", view.state);
                        self.forgotten.insert(*id, (view.device.clone(), view.state));
                    }
                }
            }
            Step::Send { count } => {
                for _ in 0..count {
                    let Some(publish) = self.engine.poll_publish(self.now) else { break };
                    assert!(self.connected, "nothing is sent while the broker is away");
                    assert!(
                        !self.finished.contains(&publish.job),
                        "job {} sent to after it ended",
                        publish.job
                    );
                    // The state after the send: the last chunk moves the job on to finishing.
                    let state = self.engine.job(publish.job).map(|j| j.state);
                    let fits = match (publish.kind, state) {
                        (PublishKind::Chunk { .. }, Some(JobState::Transferring)) => true,
                        (PublishKind::Chunk { id, total }, Some(JobState::Finishing)) => id == total,
                        (PublishKind::Command(CommandType::Request), Some(JobState::Requesting)) => true,
                        (PublishKind::Command(CommandType::Done), Some(JobState::Finishing)) => true,
                        _ => false,
                    };
                    assert!(fits, "{:?} for job {} in {state:?}", publish.kind, publish.job);
                    // Under flow control, never beyond what the device confirmed plus its window.
                    if let (PublishKind::Chunk { id, .. }, Some(view)) =
                        (publish.kind, self.engine.job(publish.job))
                        && let (Some(confirmed), Some(window)) = (view.chunks_confirmed, view.window)
                    {
                        assert!(
                            id <= confirmed + window.max(1),
                            "chunk {id} beyond {confirmed} + window {window}"
                        );
                    }
                    // The broker acknowledges each chunk as it takes it.
                    if let PublishKind::Chunk { .. } = publish.kind {
                        self.engine.chunk_acked(publish.job, self.now);
                    }
                }
            }
        }
        let mut told: BTreeSet<JobId> = BTreeSet::new();
        while let Some((_, event)) = self.engine.poll_event() {
            told.extend(event.job());
        }
        // Every job whose view changed was named by an event of this step.
        let views: BTreeMap<JobId, super::JobView> = self.engine.jobs().map(|j| (j.id, j.clone())).collect();
        for (id, view) in &views {
            if self.views.get(id) != Some(view) {
                assert!(told.contains(id), "job {id} changed without an event after {step:?}: {view:?}");
            }
        }
        self.views = views;
        self.check();
    }

    fn check(&mut self) {
        let mut active_per_device: BTreeMap<DeviceId, usize> = BTreeMap::new();
        let (mut transferring, mut requesting) = (0, 0);
        for job in self.engine.jobs() {
            if job.state.is_final() {
                self.finished.insert(job.id);
            } else {
                assert!(!self.finished.contains(&job.id), "job {} came back from a final state", job.id);
            }
            if job.state.is_active() {
                *active_per_device.entry(job.device.clone()).or_default() += 1;
            }
            match job.state {
                JobState::Transferring | JobState::Finishing => transferring += 1,
                JobState::Requesting => requesting += 1,
                _ => {}
            }
            assert!(
                job.chunks_done <= job.chunks_total,
                "job {}: {} of {}",
                job.id,
                job.chunks_done,
                job.chunks_total
            );
        }
        assert!(
            active_per_device.values().all(|n| *n == 1),
            "one active job per device: {active_per_device:?}"
        );
        assert!(transferring <= self.settings.max_active, "{transferring} transferring");
        assert!(
            requesting + transferring <= self.settings.max_requests + self.settings.max_active,
            "{requesting} requesting, {transferring} transferring"
        );
        let mut scanned: BTreeMap<JobState, usize> = BTreeMap::new();
        for job in self.engine.jobs() {
            *scanned.entry(job.state).or_default() += 1;
        }
        // A forgotten job keeps its state and device, so late answers keep their words.
        for (id, (device, state)) in &self.forgotten {
            assert_eq!(self.engine.job_state(*id), Some(*state), "forgotten job {id}");
            assert!(self.engine.has_job_for(*id, device), "forgotten job {id} still {device}'s");
            *scanned.entry(*state).or_default() += 1;
        }
        assert_eq!(self.engine.counts(), scanned, "the kept counts agree with the jobs");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_keeps_its_invariants_under_any_interleaving(steps in proptest::collection::vec(step(), 1..200)) {
        let mut model = Model::new();
        for step in &steps {
            model.apply(step);
        }
    }
}
