//! The engine proper: many jobs at once, one active job per device, bounded waits, fair sending.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

mod aws;
mod confirm;
pub(crate) use aws::AwsState;
pub use aws::{AwsJob, aws_job_name};
use confirm::ALREADY_INSTALLED;

/// The NACK reason code for "the device does not run the patch's base image" (delta).
const WRONG_BASE: u64 = 13;
mod flow;

use super::job::Job;
use super::timers::{TimerKind, Timers};
use super::{Event, JobId, JobState, JobView, Publish, PublishKind, Reported, RolloutId, Settings};
use crate::firmware::{ChunkSize, Image};
use crate::protocol::{
    Command, CommandBody, CommandType, DeviceId, Reason, Response, ResponseBody, Topics, encode_command,
};

/// After a broker reconnect, FOTA_REQUEST is sent at once and again this soon (devices
/// resubscribe after the broker comes back, and may have missed the first).
pub const RECONNECT_RETRY: Duration = Duration::from_secs(5);

/// What to update, on which device, and how.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub device: DeviceId,
    pub image: Image,
    /// `None` takes the engine's default.
    pub chunk_size: Option<ChunkSize>,
    pub chunk_interval: Option<Duration>,
    /// Sent even when the device's status says it runs the image already.
    pub force: bool,
    /// What the device said it runs when the job was made (its last status), if it reports:
    /// how the engine knows a device is up to date, or confirms, before any new status.
    pub reported: Option<Reported>,
    /// The image's manifest from a trusted key, sent to devices that declared `manifest`.
    pub manifest: Option<crate::protocol::Manifest>,
    /// A patch to send instead of the image (the device declared `delta-bsdiff4` and runs its
    /// base), or why the image goes whole (said on the job's timeline).
    pub delta: Option<crate::firmware::Patch>,
    pub delta_note: Option<String>,
    /// The device runs AWS's OTA agent (the `aws-iot-ota` profile): what its job document
    /// needs. `None`: Rocky's own protocol.
    pub aws: Option<AwsJob>,
}

impl JobSpec {
    /// A job for `device` to run `image`, with the defaults for the rest.
    pub fn new(device: DeviceId, image: Image) -> Self {
        Self {
            device,
            image,
            chunk_size: None,
            chunk_interval: None,
            force: false,
            reported: None,
            manifest: None,
            delta: None,
            delta_note: None,
            aws: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("image {0:?} is empty")]
    EmptyImage(String),
    /// A description of an image (a finished job's) was submitted instead of the image.
    #[error("image {0:?} is not loaded (only its description is held)")]
    NoBytes(String),
    #[error("image {name:?} needs more than 2^32-1 chunks at {chunk_size} bytes per chunk")]
    TooManyChunks { name: String, chunk_size: u32 },
    #[error("job ids are exhausted (the 32-bit id space is used up)")]
    IdsExhausted,
    /// A chunk with its topic and header would be larger than the broker takes (MQTT 5 says).
    #[error(
        "a chunk of {chunk_size} bytes for device {device} makes a {packet}-byte MQTT packet, over the broker's \
         maximum packet size of {max} bytes: use a chunk size of at most {fits}"
    )]
    ChunkTooLarge { device: String, chunk_size: u32, packet: u64, max: u32, fits: u64 },
    /// An id that is not free: only a reservation gives ids, so this is a bug.
    #[error("job id {0} is already in use")]
    IdInUse(JobId),
    /// An AWS device's job without what its agent needs, or too large for its buffer.
    #[error("a job for AWS device {device}: {reason}")]
    Aws { device: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error("no job {0}")]
    NotFound(JobId),
    #[error("job {id} already ended as {state}")]
    AlreadyFinal { id: JobId, state: JobState },
}

/// The single owner of job state.
/// What the device's FOTA_REQUEST_ACK said: where to resume, and its window (flow control).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ack {
    pub next_chunk: Option<u32>,
    pub window: Option<u32>,
}

pub struct Engine {
    settings: Settings,
    topics: Topics,
    jobs: BTreeMap<JobId, Job>,
    /// Finished jobs the runtime has taken the last word of ([`Engine::forget_finished`]): only
    /// what tells a late answer from a stranger's and what retention needs. Their snapshots
    /// live in the runtime's job table and the store, so a fleet's finished jobs cost this
    /// engine tens of bytes each, not a whole job.
    ended: BTreeMap<JobId, Ended>,
    /// Jobs that became final since the last `forget_finished`.
    newly_final: Vec<JobId>,
    next_id: JobId,
    /// Queued jobs per device, oldest first: a device's jobs run in the order they were made.
    device_queues: HashMap<DeviceId, VecDeque<JobId>>,
    /// Devices with queued jobs and no active one, in the order they became ready.
    ready_devices: VecDeque<DeviceId>,
    /// The active job holding each device.
    busy: HashMap<DeviceId, JobId>,
    /// Jobs waiting for a device's answer to FOTA_REQUEST (or accepted and waiting for a
    /// transfer slot): at most `max_requests`. A silent device holds one of these, never a
    /// transfer slot.
    requesting: usize,
    /// Jobs from ACK to verdict: at most `max_active`.
    transferring: usize,
    /// AWS jobs whose offers went unanswered, waiting for their devices to ask for them
    /// (requesting, in no slot).
    parked: usize,
    /// Accepted jobs (with the device's resume point and window) waiting for a transfer slot,
    /// oldest first.
    awaiting_slot: VecDeque<(JobId, Ack)>,
    /// Transferring jobs that may send now; `poll_publish` takes one chunk from the front and
    /// puts the job at the back, which is the round-robin that keeps big jobs from starving
    /// small ones.
    sending: VecDeque<JobId>,
    /// Commands go before chunks so that a new job's FOTA_REQUEST never waits behind a
    /// megabyte of someone else's data.
    commands: VecDeque<(JobId, CommandType)>,
    timers: Timers,
    events: VecDeque<(Instant, Event)>,
    connected: bool,
    /// Jobs per state, kept as states change, so `/healthz` and `/metrics` never scan every job.
    state_counts: BTreeMap<JobState, usize>,
    /// The largest packet the broker takes from Rocky, when it said (MQTT 5 CONNACK).
    broker_max_packet: Option<u32>,
    /// What each device with a job here last said it runs (the status extension); a device
    /// leaves it with its last job, so it is bounded by the jobs held.
    reported: HashMap<DeviceId, Reported>,
    /// Confirming jobs restored while another job held their device (a claim during a
    /// hand-over): a status still decides them.
    unheld_confirming: HashMap<DeviceId, JobId>,
    /// AWS jobs whose execution is to go out on `notify-next` (at most once each).
    aws_out: VecDeque<JobId>,
    /// The next publish is an AWS job's offer, if one waits (they alternate with chunks).
    aws_turn: bool,
    /// Wall time for the times an AWS job's execution carries (`None`: 0, in tests).
    clock: Option<crate::clock::Clock>,
}

/// What the engine keeps of a finished job once the runtime has its snapshot.
struct Ended {
    device: DeviceId,
    state: JobState,
    finished_at: Option<Instant>,
    /// An AWS device's job (its late messages are told apart by it).
    aws: bool,
}

impl Engine {
    pub fn new(settings: Settings, topics: Topics) -> Self {
        Self {
            settings,
            topics,
            jobs: BTreeMap::new(),
            ended: BTreeMap::new(),
            newly_final: Vec::new(),
            next_id: JobId::FIRST,
            device_queues: HashMap::new(),
            ready_devices: VecDeque::new(),
            busy: HashMap::new(),
            requesting: 0,
            parked: 0,
            transferring: 0,
            awaiting_slot: VecDeque::new(),
            sending: VecDeque::new(),
            commands: VecDeque::new(),
            timers: Timers::default(),
            events: VecDeque::new(),
            connected: false,
            state_counts: BTreeMap::new(),
            broker_max_packet: None,
            reported: HashMap::new(),
            unheld_confirming: HashMap::new(),
            aws_out: VecDeque::new(),
            aws_turn: false,
            clock: None,
        }
    }

    /// The broker's maximum packet size (MQTT 5 says it in its CONNACK; `None`: not said).
    pub fn set_broker_max_packet(&mut self, limit: Option<u32>) {
        self.broker_max_packet = limit;
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Ids continue after `last` (a store that remembers ids across restarts calls this).
    pub fn set_last_job_id(&mut self, last: JobId) {
        self.next_id = self.next_id.max(last.next());
    }

    /// Whether `submit` would accept this spec, without changing anything (lets a batch be
    /// accepted all or nothing).
    pub fn check(&self, spec: &JobSpec) -> Result<(), SubmitError> {
        self.total_chunks(spec)?;
        if let Some(aws) = &spec.aws {
            let refused = |reason: String| SubmitError::Aws { device: spec.device.to_string(), reason };
            if aws.signature.is_empty() {
                return Err(refused(
                    "no signature (sig-sha256-ecdsa): the agent takes signed images only".into(),
                ));
            }
            // The job message must fit the agent's buffer, with the longest id and times.
            let document = crate::protocol::aws::JobDocument {
                job_id: aws_job_name(JobId::MAX),
                stream: aws_job_name(JobId::MAX),
                file_path: aws.file_path.clone(),
                file_size: spec.image.size(),
                file_id: 0,
                cert_file: aws.cert_file.clone(),
                signature: aws.signature.clone(),
            };
            let status = crate::protocol::aws::ExecutionStatus::InProgress;
            // The details kept and given back: self_test and updatedBy, 64 bytes each at most.
            let details: BTreeMap<String, String> =
                ["self_test", "updatedBy"].iter().map(|k| ((*k).to_owned(), "v".repeat(64))).collect();
            crate::protocol::aws::encode_execution(
                u64::MAX,
                &document,
                status,
                u64::MAX,
                u64::MAX,
                u64::MAX,
                Some(&details),
            )
            .map_err(|e| refused(e.to_string()))?;
        }
        Ok(())
    }

    /// The wall clock the times of AWS jobs' executions are read on.
    pub fn set_clock(&mut self, clock: crate::clock::Clock) {
        self.clock = Some(clock);
    }

    fn total_chunks(&self, spec: &JobSpec) -> Result<u32, SubmitError> {
        let chunk_size = spec.chunk_size.unwrap_or(self.settings.chunk_size);
        // What goes out in chunks: the patch, when there is one.
        let payload = spec.delta.as_ref().map_or(&spec.image, |patch| &patch.bytes);
        if payload.size() == 0 {
            return Err(SubmitError::EmptyImage(spec.image.name().to_owned()));
        }
        if !spec.image.has_bytes() {
            return Err(SubmitError::NoBytes(spec.image.name().to_owned()));
        }
        let total = payload.chunk_count(chunk_size).ok_or_else(|| SubmitError::TooManyChunks {
            name: spec.image.name().to_owned(),
            chunk_size: chunk_size.get(),
        })?;
        if let Some(max) = self.broker_max_packet {
            // A PUBLISH: fixed header (at most 5 bytes), topic (2 + its length), packet id (2),
            // properties length (1, none sent), then the chunk.
            let topic = self.topics.data(&spec.device, total);
            let overhead = 5 + 2 + topic.len() as u64 + 2 + 1;
            // The image's chunks too: a refused patch falls back to them.
            let largest = u64::from(chunk_size.get()).min(payload.size().max(spec.image.size()));
            if largest + overhead > u64::from(max) {
                return Err(SubmitError::ChunkTooLarge {
                    device: spec.device.to_string(),
                    chunk_size: chunk_size.get(),
                    packet: largest + overhead,
                    max,
                    fits: u64::from(max).saturating_sub(overhead),
                });
            }
        }
        Ok(total)
    }

    /// The chunk size, chunk count and pacing a spec gets (its own or the defaults).
    pub fn plan(&self, spec: &JobSpec) -> Result<(ChunkSize, u32, Duration), SubmitError> {
        let total = self.total_chunks(spec)?;
        let chunk_size = spec.chunk_size.unwrap_or(self.settings.chunk_size);
        Ok((chunk_size, total, self.interval(spec, chunk_size)))
    }

    /// A spec's own pacing, else the defaults: the larger of `chunk_interval` and what
    /// `max_rate` needs for this chunk size.
    fn interval(&self, spec: &JobSpec, chunk_size: ChunkSize) -> Duration {
        spec.chunk_interval.unwrap_or_else(|| {
            let by_rate =
                crate::units::Rate(self.settings.max_rate).interval(chunk_size.get()).unwrap_or_default();
            self.settings.chunk_interval.max(by_rate)
        })
    }

    /// Accepts a job; it starts as soon as its device is free and a slot is open.
    pub fn submit(&mut self, spec: JobSpec, now: Instant) -> Result<JobId, SubmitError> {
        self.total_chunks(&spec)?;
        let id = self.reserve(1)?;
        self.submit_as(id, spec, None, now)
    }

    /// Dates a job's creation as its store recorded it (the row was written before the engine
    /// saw the job), so the time shown is the same before and after a restart.
    pub fn set_created_at(&mut self, id: JobId, created: Instant) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.created_at = created;
        }
    }

    /// Reserves `count` consecutive ids and returns the first: the engine is the one place ids
    /// are given out. An id reserved and never used (its submission failed) is never reused.
    pub fn reserve(&mut self, count: usize) -> Result<JobId, SubmitError> {
        let count = u32::try_from(count).map_err(|_| SubmitError::IdsExhausted)?;
        let first = self.next_id;
        // The last id, JobId::MAX, is never given, so `next_id` cannot wrap.
        match first.after(count) {
            Some(next) => {
                self.next_id = next;
                Ok(first)
            }
            None => Err(SubmitError::IdsExhausted),
        }
    }

    /// Accepts a job under an id reserved with [`Engine::reserve`] (and, with a store, already
    /// recorded under it), for `rollout` if one asked for it.
    pub fn submit_as(
        &mut self,
        id: JobId,
        spec: JobSpec,
        rollout: Option<RolloutId>,
        now: Instant,
    ) -> Result<JobId, SubmitError> {
        let chunk_size = spec.chunk_size.unwrap_or(self.settings.chunk_size);
        self.check(&spec)?;
        let total_chunks = self.total_chunks(&spec)?;
        let chunk_interval = self.interval(&spec, chunk_size);
        // An AWS device takes the whole image, in blocks of the size it asks for.
        let mut spec = spec;
        let aws = spec.aws.take().map(|job| Box::new(aws::AwsState::new(job, self.unix_s(now))));
        if aws.is_some() {
            spec.delta = None;
            spec.manifest = None;
        }
        if self.known(id).is_some() {
            return Err(SubmitError::IdInUse(id));
        }
        self.next_id = self.next_id.max(id.next());
        let job = Job {
            id,
            device: spec.device.clone(),
            image: spec.image,
            chunk_size,
            chunk_interval,
            rollout,
            state: JobState::Queued,
            total_chunks,
            next_chunk: 1,
            bytes_sent: 0,
            attempts: 0,
            sends_left: 0,
            error: None,
            reason_code: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            deadline: None,
            paced_until: None,
            in_sending: false,
            window: None,
            confirmed: 1,
            highest_sent: 0,
            progress_due: None,
            stalls: 0,
            sent_here: 0,
            rewinds: 0,
            unacked: 0,
            done_waits: false,
            force: spec.force,
            confirm_boot: None,
            confirmed_at: None,
            boot_at_request: None,
            confirm_left: None,
            manifest: spec.manifest,
            send_manifest: false,
            patch_refused: false,
            aws_hinted: false,
            delta_info: spec.delta.as_ref().map(|patch| Box::new(patch.info())),
            delta: spec.delta.map(Box::new),
            aws,
        };
        let delta_note = match (&job.delta, spec.delta_note) {
            (Some(patch), _) => Some(format!(
                "a patch of {} bytes from {} is sent instead of the {}-byte image",
                patch.size(),
                crate::protocol::short_hash(&patch.base),
                job.image.size()
            )),
            (None, note) => note,
        };

        if let Some(reported) = spec.reported {
            self.reported.insert(spec.device.clone(), reported);
        }
        self.events.push_back((now, Event::Created(Box::new(job.view()))));
        self.jobs.insert(id, job);
        if let Some(text) = delta_note {
            self.note(id, text, now);
        }
        self.count(None, Some(JobState::Queued));
        self.enqueue(id, spec.device);
        self.activate(now);
        Ok(id)
    }

    fn enqueue(&mut self, id: JobId, device: DeviceId) {
        let queue = self.device_queues.entry(device.clone()).or_default();
        queue.push_back(id);
        if queue.len() == 1 && !self.busy.contains_key(&device) {
            self.ready_devices.push_back(device);
        }
    }

    /// Puts a stored job back. A finished job keeps its outcome; one that was queued or active
    /// when Rocky stopped goes back to `queued` and runs again from FOTA_REQUEST. Restore jobs
    /// in id order, so each device's jobs keep their order.
    pub fn restore(&mut self, restored: JobView, now: Instant) {
        self.restore_patched(restored, None, now);
    }

    /// [`Engine::restore`] for a job that was sending a patch: `patch` (read back from its
    /// file) is sent again when it is the very patch the job was offered (same base, same
    /// bytes) and the job will run again; otherwise, or without it, the whole image goes.
    pub fn restore_patched(
        &mut self,
        restored: JobView,
        patch: Option<crate::firmware::Patch>,
        now: Instant,
    ) {
        let aws_job = restored.aws.clone();
        let JobView { id, state, .. } = restored;
        let device = restored.device.clone();
        self.next_id = self.next_id.max(id.next());
        let runs_again = !state.is_final() && state != JobState::Confirming && restored.image.has_bytes();
        let patch = patch.filter(|patch| {
            runs_again
                && restored.delta == Some(patch.info())
                && patch.target == *restored.image.sha256()
                && patch.bytes.chunk_count(restored.chunk_size).is_some()
        });
        // Chunks are counted afresh for what is sent again: the patch's, or (a job stored with
        // a patch that is not sent again) the whole image's.
        let chunks_total = match (&patch, &restored.delta, restored.image.has_bytes()) {
            (Some(patch), _, _) => {
                patch.bytes.chunk_count(restored.chunk_size).unwrap_or(restored.chunks_total)
            }
            (None, Some(_), true) => {
                restored.image.chunk_count(restored.chunk_size).unwrap_or(restored.chunks_total)
            }
            _ => restored.chunks_total,
        };
        let mut job = Job {
            id,
            device: device.clone(),
            image: restored.image,
            chunk_size: restored.chunk_size,
            chunk_interval: restored.chunk_interval,
            rollout: restored.rollout,
            state,
            total_chunks: chunks_total,
            next_chunk: restored.chunks_done.saturating_add(1),
            bytes_sent: restored.bytes_sent,
            attempts: restored.attempts,
            sends_left: 0,
            error: restored.error,
            reason_code: restored.reason_code,
            created_at: restored.created_at,
            started_at: restored.started_at,
            finished_at: restored.finished_at,
            deadline: None,
            paced_until: None,
            in_sending: false,
            // A finished device-paced job keeps showing how far it was sent and confirmed.
            window: restored.window,
            confirmed: restored.chunks_confirmed.map_or(1, |held| held.saturating_add(1)),
            highest_sent: restored.chunks_done,
            progress_due: None,
            stalls: 0,
            sent_here: 0,
            rewinds: 0,
            unacked: 0,
            done_waits: false,
            force: restored.force,
            confirm_boot: restored.confirm_boot,
            confirmed_at: restored.confirmed_at,
            boot_at_request: None,
            confirm_left: None,
            manifest: restored.manifest,
            send_manifest: false,
            patch_refused: false,
            aws_hinted: false,
            // A job that ended (or waits for its device's confirmation) keeps saying it was
            // sent a patch; one that runs again says what it sends now.
            delta_info: match &patch {
                Some(patch) => Some(Box::new(patch.info())),
                None if !runs_again => restored.delta.map(Box::new),
                None => None,
            },
            delta: patch.map(Box::new),
            aws: aws_job.map(|job| Box::new(aws::AwsState::new(job, self.unix_s(now)))),
        };
        if state.is_final() {
            job.image = job.image.released();
            job.delta = None;
            self.jobs.insert(id, job);
            self.count(None, Some(state));
            self.newly_final.push(id);
            return;
        }
        if state == JobState::Confirming {
            // It waits for the status that decides it (a retained one comes at subscription),
            // holding its device as before, its timeout started afresh.
            return self.restore_confirming(job, now);
        }
        job.state = JobState::Queued;
        job.next_chunk = 1;
        let job_is_aws = job.aws.is_some();
        if let Some(aws) = job.aws.as_mut() {
            aws.quiet_start = state == JobState::Transferring;
        }
        self.jobs.insert(id, job);
        self.count(None, Some(JobState::Queued));
        if state != JobState::Queued {
            let again = if job_is_aws { "the job's offer (notify-next)" } else { "FOTA_REQUEST" };
            let detail =
                Some(format!("recovered after a restart (was {state}); starting again from {again}"));
            self.events.push_back((
                now,
                Event::StateChanged {
                    job: id,
                    device: device.clone(),
                    from: state,
                    to: JobState::Queued,
                    detail,
                },
            ));
        }
        self.enqueue(id, device);
        self.activate(now);
    }

    /// Forgets finished jobs beyond `keep` (oldest first) or finished before `cutoff`; returns
    /// their ids so the store can drop them too.
    pub fn prune(&mut self, keep: Option<usize>, cutoff: Option<Instant>) -> Vec<JobId> {
        let mut finished: Vec<(JobId, Option<Instant>)> = self
            .jobs
            .values()
            .filter(|j| j.state.is_final())
            .map(|j| (j.id, j.finished_at))
            .chain(self.ended.iter().map(|(id, ended)| (*id, ended.finished_at)))
            .collect();
        finished.sort_unstable_by_key(|(id, _)| *id);
        let over = keep.map_or(0, |keep| finished.len().saturating_sub(keep));
        let doomed: Vec<JobId> = finished
            .iter()
            .enumerate()
            .filter(|(index, (_, at))| *index < over || cutoff.is_some_and(|c| at.is_some_and(|at| at < c)))
            .map(|(_, (id, _))| *id)
            .collect();
        for id in &doomed {
            let state = match self.jobs.remove(id) {
                Some(job) => Some(job.state),
                None => self.ended.remove(id).map(|ended| ended.state),
            };
            if let Some(state) = state {
                self.count(Some(state), None);
            }
        }
        doomed
    }

    /// Lets go of the finished jobs whose last events the runtime has read (their snapshots
    /// are in its table and on their way to the store): each leaves a small [`Ended`] record
    /// behind, so late answers keep their words and retention its order. An embedding that
    /// never calls this (tests, the in-process pair) keeps every job whole.
    pub fn forget_finished(&mut self) {
        for id in std::mem::take(&mut self.newly_final) {
            let Some(job) = self.jobs.remove(&id) else { continue };
            if !job.state.is_final() {
                // Not final any more (cannot happen today: a final state is the last).
                self.jobs.insert(id, job);
                continue;
            }
            let aws = job.aws.is_some();
            let Job { device, state, finished_at, .. } = job;
            self.ended.insert(id, Ended { device, state, finished_at, aws });
        }
    }

    /// Job `id`'s device and state, whole or ended.
    fn known(&self, id: JobId) -> Option<(&DeviceId, JobState)> {
        match self.jobs.get(&id) {
            Some(job) => Some((&job.device, job.state)),
            None => self.ended.get(&id).map(|ended| (&ended.device, ended.state)),
        }
    }

    /// Lets go of unfinished jobs another Rocky drives now (its lease on a shared store ran out
    /// and another instance may have claimed them): they leave this engine without a state
    /// change, their devices and slots free, nothing more sent for them. Finished and unknown
    /// ids are left alone; returns the ids let go.
    pub fn release(&mut self, ids: &[JobId], now: Instant) -> Vec<JobId> {
        let mut released = Vec::new();
        for &id in ids {
            let Some(job) = self.jobs.get(&id) else { continue };
            if job.state.is_final() {
                continue;
            }
            let (state, device) = (job.state, job.device.clone());
            let parked = self.aws_leave_parked(id);
            if state.is_active() || state == JobState::Confirming {
                if state == JobState::Requesting && !parked {
                    self.requesting = self.requesting.saturating_sub(1);
                } else if state != JobState::Confirming {
                    self.transferring = self.transferring.saturating_sub(1);
                }
                if self.busy.get(&device) == Some(&id) {
                    self.busy.remove(&device);
                    if self.device_queues.get(&device).is_some_and(|q| !q.is_empty()) {
                        self.ready_devices.push_back(device.clone());
                    }
                }
            }
            if let Some(queue) = self.device_queues.get_mut(&device) {
                queue.retain(|queued| *queued != id);
                if queue.is_empty() {
                    self.device_queues.remove(&device);
                }
            }
            if self.unheld_confirming.get(&device) == Some(&id) {
                self.unheld_confirming.remove(&device);
            }
            self.awaiting_slot.retain(|(waiting, _)| *waiting != id);
            self.sending.retain(|sending| *sending != id);
            self.commands.retain(|(commanded, _)| *commanded != id);
            self.jobs.remove(&id);
            self.count(Some(state), None);
            released.push(id);
        }
        self.activate(now);
        released
    }

    /// Cancels a job in any non-final state. Nothing more is sent for it.
    pub fn cancel(&mut self, id: JobId, now: Instant) -> Result<(), CancelError> {
        let (_, state) = self.known(id).ok_or(CancelError::NotFound(id))?;
        if state.is_final() {
            return Err(CancelError::AlreadyFinal { id, state });
        }
        let Some(job) = self.jobs.get(&id) else { return Err(CancelError::NotFound(id)) };
        if job.state == JobState::Queued {
            let device = job.device.clone();
            if let Some(queue) = self.device_queues.get_mut(&device) {
                queue.retain(|queued| *queued != id);
            }
        }
        self.finish(id, JobState::Cancelled, Some("cancelled by the operator".into()), now);
        Ok(())
    }

    /// A decoded response from `device`. Anything that does not fit the device's current job and
    /// phase changes nothing and is reported as ignored.
    pub fn handle_response(&mut self, device: &DeviceId, response: Response, now: Instant) {
        let command = response.command_type();
        // The frame's raw job id, as the engine's.
        let id = JobId::new(response.job_id);
        let ignore = |engine: &mut Self, reason: String| {
            let event = Event::Ignored { device: device.clone(), job: id, command, reason };
            engine.events.push_back((now, event));
        };
        let current = self.busy.get(device).copied();
        if current != Some(id) {
            let reason = match self.known(id) {
                None => "unknown job".to_owned(),
                Some((owner, _)) if owner != device => format!("job belongs to device {owner}"),
                Some((_, state)) if state.is_final() => format!("job already {state} (late or duplicate)"),
                Some((_, state)) => format!("job is {state}, not the device's current job"),
            };
            return ignore(self, reason);
        }
        let Some(state) = self.jobs.get(&id).map(|j| j.state) else {
            return ignore(self, "unknown job".to_owned());
        };
        match (state, response.body) {
            (JobState::Requesting, ResponseBody::RequestAck { next_chunk, window }) => {
                self.accept(id, Ack { next_chunk, window }, now)
            }
            (JobState::Transferring, ResponseBody::Progress { next_chunk, window }) => {
                self.progress(device, id, next_chunk, window, now)
            }
            // The device's own words (or code, through the table) are the job's error.
            (
                JobState::Requesting,
                ResponseBody::RequestNack { reason: Some(Reason::Code(ALREADY_INSTALLED)) },
            ) => {
                self.set_reason_code(id, Some(&Reason::Code(ALREADY_INSTALLED)));
                self.end_up_to_date(
                    id,
                    "the device answered that this image is already installed (code 9)",
                    now,
                );
            }
            (JobState::Requesting, ResponseBody::RequestNack { reason: Some(Reason::Code(WRONG_BASE)) })
                if self.jobs.get(&id).is_some_and(|job| job.delta.is_some()) =>
            {
                self.offer_whole(id, now)
            }
            // A repeat of that refusal (QoS 1, or an answer to a resent patch offer) is news of
            // nothing: the whole image is on offer already.
            (
                JobState::Requesting | JobState::Transferring,
                ResponseBody::RequestNack { reason: Some(Reason::Code(WRONG_BASE)) },
            ) if self.jobs.get(&id).is_some_and(|job| job.patch_refused) => {
                ignore(self, "a repeated refusal of the patch offer (the whole image is on offer)".into())
            }
            (JobState::Requesting, ResponseBody::RequestNack { reason }) => {
                self.set_reason_code(id, reason.as_ref());
                let error = Reason::or_none_given(reason.as_ref());
                self.finish(id, JobState::Rejected, Some(error), now);
            }
            (JobState::Finishing, ResponseBody::DoneSuccess) => self.done_success(id, now),
            (JobState::Finishing, ResponseBody::DoneFailed { reason }) => {
                self.set_reason_code(id, reason.as_ref());
                let error = Reason::or_none_given(reason.as_ref());
                self.finish(id, JobState::Failed, Some(error), now);
            }
            (state, _) => ignore(self, format!("{command} does not fit a job that is {state}")),
        }
    }

    /// The broker connection went up or down. While it is down nothing is sent and no answer
    /// deadline runs (the device cannot answer through a broker we cannot reach); when it comes
    /// back every active job repeats its last command, because a clean session lost whatever was
    /// in flight: requests and DONEs are sent again and transfers restart from FOTA_REQUEST,
    /// which lets a device that supports resume skip what it already holds.
    pub fn set_connected(&mut self, connected: bool, now: Instant) {
        if connected == self.connected {
            return;
        }
        self.connected = connected;
        if !connected {
            self.commands.clear();
            self.sending.clear();
            // No status can arrive either: a confirmation's time stops and goes on once it can.
            for job in self.jobs.values_mut().filter(|j| j.state == JobState::Confirming) {
                if let Some(deadline) = job.deadline.take() {
                    job.confirm_left = Some(deadline.saturating_duration_since(now));
                }
            }
            for job in self.jobs.values_mut().filter(|j| j.state.is_active()) {
                job.deadline = None;
                job.paced_until = None;
                job.progress_due = None;
                job.in_sending = false;
                // A clean session drops what was in flight: nothing more will be acknowledged
                // (a job still waiting for its last chunks' acknowledgements asks the device
                // where it is once the broker is back: `done_waits` stays).
                job.unacked = 0;
            }
            return;
        }
        // Accepted jobs still waiting for a slot are asked again, like every other request.
        self.awaiting_slot.clear();
        self.rearm_confirmations(now);
        let active: Vec<(JobId, JobState, bool)> = self
            .jobs
            .values()
            .filter(|j| j.state.is_active())
            .map(|j| (j.id, j.state, j.done_waits))
            .collect();
        for (id, state, done_waits) in active {
            if self.aws_parked_after_reconnect(id, now) {
                continue;
            }
            // FOTA_DONE had not gone out: the broker may have lost chunks with the session, so
            // the device is asked where it is, like a transfer.
            let state = if done_waits { JobState::Transferring } else { state };
            // Said on the job's timeline: what the broker's return made it send again. An AWS
            // device pulls, and drops its download at a job message: its transfer waits for
            // its next block request before the job is offered again (`start_round`).
            let aws = self.is_aws_job(id);
            let again = match (state, aws) {
                (JobState::Requesting, false) => "broker reconnected: FOTA_REQUEST sent again",
                (JobState::Requesting, true) => "broker reconnected: the job offered again (notify-next)",
                (JobState::Transferring, false) => {
                    "broker reconnected: FOTA_REQUEST sent again to learn where to resume"
                }
                (JobState::Transferring, true) => {
                    "broker reconnected: waiting for the device to ask again for the blocks it misses"
                }
                _ => "broker reconnected: FOTA_DONE sent again",
            };
            self.note(id, again.to_owned(), now);
            match state {
                JobState::Requesting => self.start_round_after_reconnect(id, now),
                JobState::Transferring => {
                    let detail = if aws {
                        "broker reconnected: waiting for the device to ask for the blocks it misses"
                    } else {
                        "broker reconnected: asking the device where to resume"
                    };
                    if let Some(job) = self.jobs.get_mut(&id) {
                        job.done_waits = false;
                        // What a reconnect makes Rocky send again is not the device's doing.
                        job.sent_here = 0;
                        if let Some(aws) = job.aws.as_mut() {
                            aws.pending.clear();
                            aws.quiet_start = true;
                        }
                    }
                    self.transferring = self.transferring.saturating_sub(1);
                    self.requesting += 1;
                    self.transition(id, JobState::Requesting, Some(detail.into()), now);
                    self.start_round_after_reconnect(id, now);
                }
                _ => self.send_done(id, now),
            }
        }
        self.activate(now);
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Fires every timer that is due at `now`: answer deadlines and chunk pacing.
    pub fn tick(&mut self, now: Instant) {
        while let Some((at, id, kind)) = self.timers.pop_due(now) {
            let Some(job) = self.jobs.get_mut(&id) else { continue };
            match kind {
                TimerKind::Pace if job.paced_until == Some(at) && job.state == JobState::Transferring => {
                    job.paced_until = None;
                    self.queue_send(id);
                }
                TimerKind::Progress
                    if job.progress_due == Some(at) && job.state == JobState::Transferring =>
                {
                    job.progress_due = None;
                    self.stalled(id, now);
                }
                TimerKind::Deadline if job.deadline == Some(at) => {
                    job.deadline = None;
                    self.deadline_passed(id, now);
                }
                _ => {} // stale entry
            }
        }
    }

    /// When `tick` next has work to do, if ever.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next message to send, commands first, then one chunk from the next job in turn.
    /// `None` when there is nothing to send now (or the broker is down).
    pub fn poll_publish(&mut self, now: Instant) -> Option<Publish> {
        if !self.connected {
            return None;
        }
        // Offers of AWS jobs take turns with chunks while chunks wait: a device that asks for
        // its job over and over cannot hold up every transfer.
        let chunks_wait = !self.sending.is_empty();
        if !chunks_wait || std::mem::replace(&mut self.aws_turn, false) {
            while let Some(id) = self.aws_out.pop_front() {
                if let Some(publish) = self.aws_execution_publish(id, now) {
                    return Some(publish);
                }
            }
        } else if !self.aws_out.is_empty() {
            self.aws_turn = true;
        }
        while let Some((id, command)) = self.commands.pop_front() {
            if let Some(publish) = self.command_publish(id, command) {
                return Some(publish);
            }
        }
        while let Some(id) = self.sending.pop_front() {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.in_sending = false;
            }
            if let Some(publish) = self.next_chunk(id, now) {
                return Some(publish);
            }
        }
        None
    }

    pub fn poll_event(&mut self) -> Option<(Instant, Event)> {
        self.events.pop_front()
    }

    /// Job `id`'s state, without building its whole view (a forgotten finished job's too).
    pub fn job_state(&self, id: JobId) -> Option<JobState> {
        self.known(id).map(|(_, state)| state)
    }

    /// Job `id`'s whole view, while the engine holds it whole: a finished job's only until
    /// [`Engine::forget_finished`].
    pub fn job(&self, id: JobId) -> Option<JobView> {
        self.jobs.get(&id).map(Job::view)
    }

    /// The broker acknowledged one of job `id`'s chunks. The last acknowledgement of a pushed
    /// job whose chunks are all out sends FOTA_DONE.
    pub fn chunk_acked(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.unacked = job.unacked.saturating_sub(1);
        if job.unacked == 0 && job.done_waits && job.state == JobState::Finishing {
            job.done_waits = false;
            self.send_done(id, now);
        }
    }

    /// The broker refused a publish for job `id` (MQTT 5 PUBACK with a failure reason): the
    /// device cannot get it, so the job ends `failed`, naming the topic and the broker's words.
    pub fn publish_refused(&mut self, id: JobId, topic: &str, reason: &str, now: Instant) {
        if self.jobs.get(&id).is_some_and(|job| job.state.is_active()) {
            let error = format!("the broker refused publishing to {topic}: {reason}");
            self.finish(id, JobState::Failed, Some(error), now);
        }
    }

    /// Whether job `id` is one this engine holds for `device` (in any state): what tells a
    /// device's answer, or a command seen on its topic, from one nobody here asked for.
    pub fn has_job_for(&self, id: JobId, device: &DeviceId) -> bool {
        self.known(id).is_some_and(|(owner, _)| owner == device)
    }

    /// Every job held whole, oldest first (not those [`Engine::forget_finished`] let go).
    pub fn jobs(&self) -> impl Iterator<Item = JobView> + '_ {
        self.jobs.values().map(Job::view)
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> BTreeMap<JobState, usize> {
        self.state_counts.iter().filter(|(_, n)| **n > 0).map(|(s, n)| (*s, *n)).collect()
    }

    /// Moves one job's count from one state to another (`None`: it came or went).
    fn count(&mut self, from: Option<JobState>, to: Option<JobState>) {
        if let Some(from) = from
            && let Some(n) = self.state_counts.get_mut(&from)
        {
            *n = n.saturating_sub(1);
        }
        if let Some(to) = to {
            *self.state_counts.entry(to).or_default() += 1;
        }
    }

    /// True when no job is queued or active.
    pub fn is_idle(&self) -> bool {
        self.requesting == 0
            && self.transferring == 0
            && self.parked == 0
            && self.device_queues.values().all(VecDeque::is_empty)
    }

    // ---- internals ----

    /// Starts queued jobs while slots are open, in the order their devices became free.
    fn activate(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        self.promote(now);
        while self.requesting < self.settings.max_requests.max(1) {
            let Some(device) = self.ready_devices.pop_front() else { break };
            // A device can be listed twice (its queue emptied by cancels, then refilled) or be
            // busy by now: one active job per device, whatever the list says.
            if self.busy.contains_key(&device) {
                continue;
            }
            let Some(id) = self.device_queues.get_mut(&device).and_then(VecDeque::pop_front) else {
                continue; // its queued jobs were cancelled
            };
            let unsent = if self.is_up_to_date(id) {
                let note = "its status says the device runs this image already: nothing sent";
                Some((JobState::UpToDate, None, Some(note.to_owned())))
            } else {
                self.signed_refusal(id).map(|why| (JobState::Failed, Some(format!("not sent: {why}")), None))
            };
            if let Some((state, error, note)) = unsent {
                // Nothing to send: its device is free for its next job at once.
                self.close_unsent(id, state, error, note, now);
                match self.device_queues.get(&device) {
                    Some(queue) if !queue.is_empty() => self.ready_devices.push_back(device),
                    _ => {
                        self.device_queues.remove(&device);
                        self.forget_reported(&device);
                    }
                }
                continue;
            }
            let boot = self.reported.get(&device).and_then(|r| r.boot);
            let signed = self.reported.get(&device).is_some_and(|r| r.manifest);
            // The patch goes only to a device whose last word is that it takes patches and runs
            // the patch's base; else the whole image (the status may have changed since).
            let keeps_patch = |job: &Job| {
                job.delta.as_ref().is_none_or(|patch| {
                    self.reported.get(&device).is_some_and(|r| r.delta && r.image == patch.base)
                })
            };
            if self.jobs.get(&id).is_some_and(|job| !keeps_patch(job)) {
                self.drop_patch(
                    id,
                    "the device's status no longer names the patch's base: the whole image is sent",
                    now,
                );
            }
            self.busy.insert(device, id);
            self.requesting += 1;
            self.transition(id, JobState::Requesting, None, now);
            if let Some(job) = self.jobs.get_mut(&id) {
                job.next_chunk = 1;
                job.boot_at_request = boot;
                job.send_manifest = signed && job.manifest.is_some();
            }
            self.start_round(id, now);
        }
    }

    /// The device accepted: transfer now if a slot is free, else wait (no deadline) for one.
    fn accept(&mut self, id: JobId, ack: Ack, now: Instant) {
        if let Some(waiting) = self.awaiting_slot.iter_mut().find(|(waiting, _)| *waiting == id) {
            waiting.1 = ack; // a repeated ACK: keep the newest resume point and window
            return;
        }
        if let Some(job) = self.jobs.get_mut(&id) {
            job.deadline = None;
        }
        self.awaiting_slot.push_back((id, ack));
        self.promote(now);
    }

    /// Moves accepted jobs into free transfer slots, oldest first.
    fn promote(&mut self, now: Instant) {
        while self.transferring < self.settings.max_active.max(1) {
            let Some((id, ack)) = self.awaiting_slot.pop_front() else { break };
            if self.jobs.get(&id).is_none_or(|job| job.state != JobState::Requesting) {
                continue; // cancelled or timed out meanwhile
            }
            self.requesting = self.requesting.saturating_sub(1);
            self.transferring += 1;
            self.start_transfer(id, ack, now);
        }
    }

    /// Starts a round of FOTA_REQUEST sends with the full retry budget.
    /// Starts a round of FOTA_REQUEST sends with the full retry budget; `false` when the
    /// first send is held back instead (an AWS job whose device may still be downloading).
    fn start_round(&mut self, id: JobId, now: Instant) -> bool {
        if self.aws_quiet_start(id, now) {
            return false;
        }
        let budget = self.settings.request_attempts.max(1);
        if let Some(job) = self.jobs.get_mut(&id) {
            job.sends_left = budget;
        }
        self.send_request(id, now);
        true
    }

    /// A round of FOTA_REQUEST sends after the broker came back. The first send goes out at
    /// once, before the devices (which lost the broker too) have resubscribed, so it is sent
    /// again after [`RECONNECT_RETRY`] rather than a whole request timeout later; that early
    /// send does not count against the job's attempts.
    fn start_round_after_reconnect(&mut self, id: JobId, now: Instant) {
        if self.start_round(id, now)
            && RECONNECT_RETRY < self.settings.request_timeout
            && let Some(job) = self.jobs.get_mut(&id)
        {
            job.sends_left += 1;
            self.arm_deadline(id, now + RECONNECT_RETRY);
        }
    }

    fn send_request(&mut self, id: JobId, now: Instant) {
        let timeout = self.settings.request_timeout;
        if let Some(job) = self.jobs.get_mut(&id) {
            job.attempts += 1;
            job.sends_left = job.sends_left.saturating_sub(1);
            if job.aws.is_some() {
                if !self.aws_out.contains(&id) {
                    self.aws_out.push_back(id);
                }
            } else {
                self.commands.push_back((id, CommandType::Request));
            }
            self.arm_deadline(id, now + timeout);
        }
    }

    fn send_done(&mut self, id: JobId, now: Instant) {
        self.commands.push_back((id, CommandType::Done));
        self.arm_deadline(id, now + self.settings.done_timeout);
    }

    fn arm_deadline(&mut self, id: JobId, at: Instant) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.deadline = Some(at);
            self.timers.arm(at, id, TimerKind::Deadline);
        }
    }

    fn start_transfer(&mut self, id: JobId, ack: Ack, now: Instant) {
        let resume = ack.next_chunk;
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.deadline = None;
        job.started_at.get_or_insert(now);
        // A resume point outside 1..=total+1 is nonsense from the device: start from the top.
        let start = match resume {
            Some(next) if (1..=job.total_chunks.saturating_add(1)).contains(&next) => next,
            _ => 1,
        };
        job.next_chunk = start;
        // A window of at least 1 makes the transfer device-paced; 0 or none is a push.
        job.window = ack.window.filter(|w| *w > 0);
        job.confirmed = start;
        job.highest_sent = start - 1;
        job.stalls = 0;
        job.progress_due = None;
        let total = job.total_chunks;
        let paced = job.window.map(|w| format!("device-paced, window {w}"));
        let detail = match resume {
            Some(next) if next == start && start > 1 => {
                let resume = format!("device holds chunks 1..{}; resuming at {start}", start - 1);
                Some(paced.map_or(resume.clone(), |paced| format!("{resume}; {paced}")))
            }
            Some(next) if next != start => Some(format!(
                "protocol error from the device: resume point {next} is outside 1 to {}; starting at chunk 1",
                total + 1
            )),
            _ => paced,
        };
        self.transition(id, JobState::Transferring, detail, now);
        if self.jobs.get(&id).is_some_and(|job| job.aws.is_some()) {
            // An AWS device pulls: it must keep asking (or saying how it goes).
            let silence = self.aws_silence();
            self.arm_deadline(id, now + silence);
            return self.queue_send(id);
        }
        if start > total {
            self.transition(id, JobState::Finishing, None, now);
            self.send_done(id, now);
        } else {
            self.queue_send(id);
        }
    }

    /// Puts a job in the round-robin of senders unless it is there already.
    fn queue_send(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get_mut(&id)
            && !job.in_sending
        {
            job.in_sending = true;
            self.sending.push_back(id);
        }
    }

    fn next_chunk(&mut self, id: JobId, now: Instant) -> Option<Publish> {
        if self.jobs.get(&id).is_some_and(|job| job.aws.is_some()) {
            return self.next_block(id, now);
        }
        let job = self.jobs.get_mut(&id)?;
        if job.state != JobState::Transferring || job.paced_until.is_some() || !flow::may_send(job) {
            return None;
        }
        let chunk_id = job.next_chunk;
        let payload = job.payload().chunk(job.chunk_size, chunk_id)?;
        let len = payload.len() as u32;
        // A job made before the broker said its limit (restored, or made before the CONNACK):
        // a chunk over it would end the connection, again at every try.
        if let Some(max) = self.broker_max_packet {
            let topic = self.topics.data(&job.device, chunk_id);
            if u64::from(len) + 10 + topic.len() as u64 > u64::from(max) {
                let detail = format!(
                    "a chunk of {len} bytes does not fit the broker's maximum packet size of {max} bytes; make \
                     the job again with a smaller chunk size"
                );
                self.finish(id, JobState::Failed, Some(detail), now);
                return None;
            }
        }
        let budget = job.payload().size().saturating_mul(u64::from(self.settings.max_send_factor.max(1)));
        if job.sent_here + u64::from(len) > budget {
            self.send_budget_spent(id, now);
            return None;
        }
        job.next_chunk += 1;
        job.highest_sent = job.highest_sent.max(chunk_id);
        job.bytes_sent += u64::from(len);
        job.sent_here += u64::from(len);
        job.unacked += 1;
        let total = job.total_chunks;
        let device = job.device.clone();
        let publish = Publish {
            topic: self.topics.data(&device, chunk_id),
            payload,
            job: id,
            device: device.clone(),
            kind: PublishKind::Chunk { id: chunk_id, total },
        };
        self.events
            .push_back((now, Event::ChunkSent { job: id, device, chunk: chunk_id, total, bytes: len }));
        let device_paced = job.window.is_some();
        if device_paced {
            // FOTA_DONE waits for the device to confirm every chunk; until then a deadline
            // watches that it keeps confirming.
            if job.progress_due.is_none() {
                let at = now + self.settings.progress_timeout;
                job.progress_due = Some(at);
                self.timers.arm(at, id, TimerKind::Progress);
            }
            if chunk_id < total {
                self.pace_or_queue(id, now);
            }
        } else if chunk_id >= total {
            // Every chunk is out; FOTA_DONE follows once the broker has them all (a broker may
            // deliver the command topic ahead of the data topic otherwise).
            job.done_waits = true;
            self.transition(id, JobState::Finishing, None, now);
            self.arm_deadline(id, now + self.settings.done_timeout);
        } else {
            self.pace_or_queue(id, now);
        }
        Some(publish)
    }

    /// After a chunk: the next at once, or after the job's pacing interval.
    fn pace_or_queue(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.chunk_interval.is_zero() {
            self.queue_send(id);
        } else {
            let at = now + job.chunk_interval;
            job.paced_until = Some(at);
            self.timers.arm(at, id, TimerKind::Pace);
        }
    }

    /// Sends the whole image instead of the patch (before the job's first request), saying why.
    fn drop_patch(&mut self, id: JobId, why: &str, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let Some(total) = job.image.chunk_count(job.chunk_size) else { return };
        job.delta = None;
        job.delta_info = None;
        job.total_chunks = total;
        self.note(id, why.to_owned(), now);
    }

    /// The device does not run the patch's base (NACK 13): the whole image is offered in a new
    /// FOTA_REQUEST for the same job, from chunk 1.
    fn offer_whole(&mut self, id: JobId, now: Instant) {
        // An ACK to the patch offer still waiting for a slot must not start the whole image.
        self.awaiting_slot.retain(|(waiting, _)| *waiting != id);
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.delta = None;
        job.delta_info = None;
        job.patch_refused = true;
        match job.image.chunk_count(job.chunk_size) {
            Some(total) => job.total_chunks = total,
            None => {
                return self.finish(id, JobState::Failed, Some("the image has too many chunks".into()), now);
            }
        }
        job.next_chunk = 1;
        job.sends_left = self.settings.request_attempts.max(1);
        let size = job.image.size();
        let text = format!(
            "the device does not run the patch's base (code 13): the whole image ({size} bytes) is offered"
        );
        self.note(id, text, now);
        self.send_request(id, now);
    }

    /// Builds a queued command if its job still wants it (a cancelled or finished job does not).
    fn command_publish(&self, id: JobId, command: CommandType) -> Option<Publish> {
        let job = self.jobs.get(&id)?;
        let body = match (command, job.state) {
            (CommandType::Request, JobState::Requesting) => {
                let manifest = job.manifest.as_ref().filter(|_| job.send_manifest).map(|m| m.bytes().clone());
                let delta = job.delta.as_deref().map(crate::firmware::Patch::item);
                CommandBody::Request { hash: *job.image.sha256(), manifest, delta }
            }
            (CommandType::Done, JobState::Finishing) => CommandBody::Done,
            _ => return None,
        };
        let payload = encode_command(&Command { job_id: id.get(), body }, self.settings.hash_encoding);
        Some(Publish {
            topic: self.topics.cmd(&job.device),
            payload: Bytes::from(payload),
            job: id,
            device: job.device.clone(),
            kind: PublishKind::Command(command),
        })
    }

    fn deadline_passed(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get(&id) else { return };
        if job.state == JobState::Requesting && job.sends_left == 0 && job.aws.is_some() {
            if self.aws_is_parked(id) {
                let detail = format!(
                    "the device did not ask for its job within {} s of its last unanswered offer",
                    self.settings.aws_device_wait.as_secs_f64()
                );
                return self.finish(id, JobState::TimedOut, Some(detail), now);
            }
            if self.aws_park(id, now) {
                return;
            }
        }
        let Some(job) = self.jobs.get(&id) else { return };
        match job.state {
            JobState::Requesting if job.sends_left > 0 => {
                let device = job.device.clone();
                self.send_request(id, now);
                let attempt = self.jobs.get(&id).map_or(0, |j| j.attempts);
                self.events.push_back((now, Event::RequestRetried { job: id, device, attempt }));
            }
            JobState::Requesting => {
                let asked = if job.aws.is_some() { "job offers (notify-next)" } else { "FOTA_REQUESTs" };
                let detail = format!(
                    "no answer to the last {} {asked} ({} s each)",
                    self.settings.request_attempts.max(1),
                    self.settings.request_timeout.as_secs_f64()
                );
                self.finish(id, JobState::TimedOut, Some(detail), now);
            }
            JobState::Transferring if job.aws.is_some() => {
                let detail = format!(
                    "the device asked for no block and said nothing for {} s",
                    self.aws_silence().as_secs_f64()
                );
                self.finish(id, JobState::TimedOut, Some(detail), now);
            }
            JobState::Finishing if job.done_waits => {
                let detail = format!(
                    "the broker did not acknowledge the last {} chunks within {} s, so FOTA_DONE was not sent",
                    job.unacked,
                    self.settings.done_timeout.as_secs_f64()
                );
                self.finish(id, JobState::TimedOut, Some(detail), now);
            }
            JobState::Finishing => {
                let detail =
                    format!("no answer to FOTA_DONE within {} s", self.settings.done_timeout.as_secs_f64());
                self.finish(id, JobState::TimedOut, Some(detail), now);
            }
            JobState::Confirming => {
                let detail = format!(
                    "no confirmation that the device runs the new image within {} s",
                    self.settings.confirm_timeout.as_secs_f64()
                );
                self.finish(id, JobState::TimedOut, Some(detail), now);
            }
            _ => {}
        }
    }

    /// The job would send more than `max_send_factor` times its image: the device keeps asking
    /// for what it was sent already (rewinds, stalls, resends). It ends `failed`, said once,
    /// and its slot goes to a job that will finish.
    fn send_budget_spent(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get(&id) else { return };
        let factor = self.settings.max_send_factor.max(1);
        let detail = format!(
            "stopped after sending {} bytes, {factor}× the {}-byte {} (jobs.max_send_factor): the device \
             kept asking for chunks it had been sent ({} rewinds, confirmed {} of {} chunks)",
            job.sent_here,
            job.payload().size(),
            if job.delta.is_some() { "patch" } else { "image" },
            job.rewinds,
            job.confirmed.saturating_sub(1),
            job.total_chunks
        );
        self.finish(id, JobState::Failed, Some(detail), now);
    }

    /// Keeps the code of a device's coded reason, so what reads the job (a rollout deciding
    /// whether "busy" means try later) need not go by the words.
    fn set_reason_code(&mut self, id: JobId, reason: Option<&Reason>) {
        if let (Some(job), Some(Reason::Code(code))) = (self.jobs.get_mut(&id), reason) {
            job.reason_code = Some(*code);
        }
    }

    /// Ends a job, frees its device and slot, and starts whatever was waiting.
    fn finish(&mut self, id: JobId, state: JobState, error: Option<String>, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let was_confirming = job.state == JobState::Confirming;
        let was_active = job.state.is_active() || was_confirming;
        let was_requesting = job.state == JobState::Requesting;
        let was_parked = self.aws_leave_parked(id);
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.error = error.clone();
        job.deadline = None;
        job.paced_until = None;
        job.progress_due = None;
        job.finished_at = Some(now);
        // A finished job keeps its image's description only: the bytes stay in memory while a
        // queued or active job or the library's bounded cache holds them, and no longer.
        job.image = job.image.released();
        job.delta = None;
        if let Some(aws) = job.aws.as_mut() {
            // The self-test words were kept for the device's reboot, the bitmaps for the
            // transfer: an ended job needs neither (and its details would mix two messages).
            aws.details.clear();
            aws.pending = Default::default();
            aws.sent = Vec::new();
        }
        let device = job.device.clone();
        self.transition(id, state, error, now);
        if was_active {
            if was_requesting {
                if !was_parked {
                    self.requesting = self.requesting.saturating_sub(1);
                }
                self.awaiting_slot.retain(|(waiting, _)| *waiting != id);
            } else if !was_confirming {
                self.transferring = self.transferring.saturating_sub(1);
            }
            // Only the job that holds the device frees it (a confirming job restored while
            // another job held its device never held it).
            if self.busy.get(&device) == Some(&id) {
                self.busy.remove(&device);
                if self.device_queues.get(&device).is_some_and(|q| !q.is_empty()) {
                    self.ready_devices.push_back(device.clone());
                }
            }
            if self.unheld_confirming.get(&device) == Some(&id) {
                self.unheld_confirming.remove(&device);
            }
        }
        if self.device_queues.get(&device).is_some_and(VecDeque::is_empty) {
            self.device_queues.remove(&device);
        }
        if !self.busy.contains_key(&device) && !self.device_queues.contains_key(&device) {
            self.forget_reported(&device);
        }
        self.activate(now);
    }

    /// A line for job `id`'s timeline that is no change of state, said with the state the job
    /// is in as it is made.
    fn note(&mut self, id: JobId, text: String, now: Instant) {
        let Some(job) = self.jobs.get(&id) else { return };
        let (device, state) = (job.device.clone(), job.state);
        self.events.push_back((now, Event::Note { job: id, device, state, text }));
    }

    fn transition(&mut self, id: JobId, to: JobState, detail: Option<String>, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let from = job.state;
        job.state = to;
        let device = job.device.clone();
        self.count(Some(from), Some(to));
        if to.is_final() {
            self.newly_final.push(id);
        }
        self.events.push_back((now, Event::StateChanged { job: id, device, from, to, detail }));
    }
}
