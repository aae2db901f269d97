//! Jobs for devices that run AWS's OTA agent (the `aws-iot-ota` profile, `protocol::aws`): the
//! same job model as Rocky's own protocol (requested, transferred, verified, confirmed; the same
//! slots, deadlines, fairness, send budget and cancel), spoken as AWS IoT Jobs and an MQTT
//! file stream.
//!
//! - Requesting: the execution goes out on `notify-next` (QUEUED) and again after each request
//!   timeout, within the job's attempts; a device's `$next/get` gets it at once.
//! - Transferring: from the device's first request for blocks of the job's stream; it pulls,
//!   Rocky sends what each request asks for (at most its count), in turn with every other job.
//!   A device that asks for no block within the progress timeout times the job out.
//! - Confirming: the device verified the image and reboots into self test (`self_test:
//!   ready`); a `$next/get` then gets the job IN_PROGRESS with the details it sent last, which
//!   is how the agent knows it is testing the new image.
//! - SUCCEEDED ends it succeeded (confirmed); FAILED ends it failed and REJECTED rejected, with
//!   the agent's codes in words; FAILED "rejected: …" in self test ends it rolled back.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::Engine;
use crate::engine::{Event, JobId, JobState, Publish, PublishKind};
use crate::protocol::DeviceId;
use crate::protocol::aws::{
    Block, BlockRequest, ExecutionStatus, ExecutionUpdate, JobDocument, Progress, data_topic, encode_block,
    encode_execution, failure_words, notify_next_topic,
};

/// What a job for an AWS device needs beyond the image: where the device finds the
/// certificate that checks the signature, where it writes the image, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwsJob {
    pub cert_file: String,
    pub file_path: String,
    /// `sig-sha256-ecdsa`: base64 of the DER P-256 signature over the image.
    pub signature: String,
    /// The self-test words the device sent last (`self_test`, `updatedBy`), stored with the
    /// job so that a device confirming across a restart of Rocky gets them back: without them
    /// the agent takes its self test as failed and rolls back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// The execution's version (one more at each update the device sent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// When the job was first queued (Unix seconds; 0: not yet): the execution says the same
    /// `queuedAt` after a restart of Rocky.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queued_at: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AwsJob {
    /// How the job is signed, for a job's detail: the signature (its start) and where the
    /// device finds the certificate that checks it and writes the image.
    pub fn signing_words(&self) -> String {
        let start = crate::text::prefix_within(&self.signature, 16);
        format!(
            "sig-sha256-ecdsa {start}… (ES256), checked with {} on the device, written to {}",
            self.cert_file, self.file_path
        )
    }

    /// The job document's fields alone (no execution yet).
    pub fn new(cert_file: String, file_path: String, signature: String) -> Self {
        Self { cert_file, file_path, signature, details: BTreeMap::new(), version: 0, queued_at: 0 }
    }
}

/// An AWS job's transfer, as the engine holds it.
#[derive(Debug, Clone)]
pub(crate) struct AwsState {
    pub job: AwsJob,
    /// The execution's version: one more at each update the device sends.
    pub version: u64,
    /// The `statusDetails` the device sent last: given back with the job after it reboots.
    pub details: BTreeMap<String, String>,
    /// When the job was queued (Unix seconds, for the execution).
    pub queued_at_s: u64,
    /// The block size the device asked for (0 until it asks).
    pub block_size: u32,
    /// Blocks asked for and not sent yet, in the order asked (at most one request's worth).
    pub pending: VecDeque<u32>,
    /// One bit per block the device holds by its last request's bitmap or was sent since
    /// (progress counts each block once, and starts again with a download that does).
    pub sent: Vec<u64>,
    /// How many blocks `sent` has.
    pub sent_count: u32,
    /// Its offers went unanswered and it waits (up to `aws_device_wait`, holding no request
    /// slot) for the device to ask for it.
    pub parked: bool,
    /// Restored from a transfer, or transferring when the broker came back: the device may
    /// still be downloading it, and an offer on `notify-next` would make the agent drop what it
    /// holds and start again, so the first offer waits (see `aws_resume_wait`) for the device
    /// to ask for blocks.
    pub quiet_start: bool,
}

impl AwsState {
    pub fn new(mut job: AwsJob, queued_at_s: u64) -> Self {
        // What a stored job brings back, within the bounds a device's update is kept to.
        let details: BTreeMap<String, String> = std::mem::take(&mut job.details)
            .into_iter()
            .filter(|(key, _)| KEPT_DETAILS.contains(&key.as_str()))
            .map(|(key, value)| (key, crate::text::prefix_within(&value, MAX_KEPT_DETAIL).to_owned()))
            .collect();
        let version = std::mem::take(&mut job.version).max(1);
        let queued_at_s = match std::mem::take(&mut job.queued_at) {
            0 => queued_at_s,
            stored => stored,
        };
        Self {
            job,
            version,
            details,
            queued_at_s,
            block_size: 0,
            pending: VecDeque::new(),
            sent: Vec::new(),
            sent_count: 0,
            parked: false,
            quiet_start: false,
        }
    }

    /// Marks `block` sent; whether it is the first time.
    fn mark_sent(&mut self, block: u32) -> bool {
        let (word, bit) = ((block / 64) as usize, block % 64);
        if self.sent.len() <= word {
            self.sent.resize(word + 1, 0);
        }
        let first = self.sent[word] & (1 << bit) == 0;
        self.sent[word] |= 1 << bit;
        if first {
            self.sent_count += 1;
        }
        first
    }
}

/// The `statusDetails` kept and given back: what the agent needs to know it is in self test.
const KEPT_DETAILS: [&str; 2] = ["self_test", "updatedBy"];
/// The longest kept detail value.
const MAX_KEPT_DETAIL: usize = 64;
/// The least time an AWS transfer may be silent (the agent asks again for missing blocks 10 s
/// after the last one it got, and a block on QoS 0 may be lost).
const MIN_SILENCE: std::time::Duration = std::time::Duration::from_secs(30);
/// The least time a device that may still be downloading is given to ask for blocks before
/// its job is offered again: the agent asks again 10 s after its last block
/// (`otaconfigFILE_REQUEST_WAIT_MS`), and an offer before that drops its download.
const MIN_RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The job's id and stream name on the wire: `rocky-<id>`.
pub fn aws_job_name(id: JobId) -> String {
    format!("rocky-{id}")
}

fn job_of_name(name: &str) -> Option<JobId> {
    name.strip_prefix("rocky-")?.parse().ok()
}

impl Engine {
    /// Unix seconds at `at`, on the runtime's clock (0 when none was given: tests).
    pub(super) fn unix_s(&self, at: Instant) -> u64 {
        self.clock.as_ref().map_or(0, |clock| clock.unix_ms(at) / 1000)
    }

    /// The AWS device `device` asks for its next job. Its current job's execution goes out on
    /// `notify-next`; `false` when it has none here (the runtime answers "no job").
    pub fn aws_next_get(&mut self, device: &DeviceId, now: Instant) -> bool {
        let Some(&id) = self.busy.get(device) else { return false };
        let wanted = self.jobs.get(&id).is_some_and(|job| job.aws.is_some() && !job.state.is_final());
        if let Some(job) = self.jobs.get_mut(&id).filter(|job| job.aws.is_none() && !job.aws_hinted) {
            // A device that runs AWS's OTA agent was given a job in Rocky's protocol (it was
            // not registered as one): it will never answer it. Said once, on the job.
            job.aws_hinted = true;
            let text = format!(
                "the device asked for its job as AWS's OTA agent does ($next/get), but this job speaks Rocky's \
                 protocol: if it runs that agent, cancel the job, register the device with profile=aws-iot-ota \
                 (rocky devices label {device} profile=aws-iot-ota) and make the job again"
            );
            self.note(id, text, now);
        }
        if wanted {
            if self.aws_unpark(id, now) {
                let text = "the device asked for its job: offered".to_owned();
                self.note(id, text, now);
            }
            if !self.aws_out.contains(&id) {
                self.aws_out.push_back(id);
            }
        }
        wanted
    }

    /// The offers of AWS job `id` went unanswered: rather than time out, it waits for its
    /// device to ask (the agent asks for its job whenever it connects), holding no request
    /// slot, up to `aws_device_wait`. `false` when it does not wait (not an AWS job, no wait
    /// set, or it waited already).
    pub(super) fn aws_park(&mut self, id: JobId, now: Instant) -> bool {
        let wait = self.settings.aws_device_wait;
        let Some(job) = self.jobs.get_mut(&id) else { return false };
        let Some(aws) = job.aws.as_mut().filter(|aws| !aws.parked && !wait.is_zero()) else { return false };
        aws.parked = true;
        self.requesting = self.requesting.saturating_sub(1);
        self.parked += 1;
        let text = format!(
            "no answer to {} job offers: the device may be offline; the job waits up to {} s for it to ask for \
             its job, as it does when it connects",
            self.settings.request_attempts.max(1),
            wait.as_secs_f64()
        );
        self.note(id, text, now);
        self.arm_deadline(id, now + wait);
        self.activate(now);
        true
    }

    /// The device of job `id` spoke: if the job waited for it, it holds a request slot again
    /// (beyond `max_requests` if need be: the device is there) with a fresh round of offers,
    /// the first of which the caller sends or makes unneeded. Whether it waited.
    fn aws_unpark(&mut self, id: JobId, now: Instant) -> bool {
        let attempts = self.settings.request_attempts.max(1);
        let Some(job) = self.jobs.get_mut(&id) else { return false };
        let Some(aws) = job.aws.as_mut().filter(|aws| aws.parked) else { return false };
        aws.parked = false;
        job.sends_left = attempts - 1;
        self.parked = self.parked.saturating_sub(1);
        self.requesting += 1;
        self.arm_deadline(id, now + self.settings.request_timeout);
        true
    }

    /// Takes job `id` out of waiting for its device (it ends or leaves this engine); whether
    /// it waited, in which case it held no request slot.
    pub(super) fn aws_leave_parked(&mut self, id: JobId) -> bool {
        let Some(aws) = self.jobs.get_mut(&id).and_then(|job| job.aws.as_mut()).filter(|aws| aws.parked)
        else {
            return false;
        };
        aws.parked = false;
        self.parked = self.parked.saturating_sub(1);
        true
    }

    /// Whether AWS job `id` waits for its device to ask for it.
    pub(super) fn aws_is_parked(&self, id: JobId) -> bool {
        self.jobs.get(&id).and_then(|job| job.aws.as_ref()).is_some_and(|aws| aws.parked)
    }

    /// The first offer of an AWS job that may still be downloading waits (see
    /// [`AwsState::quiet_start`]); whether it does.
    pub(super) fn aws_quiet_start(&mut self, id: JobId, now: Instant) -> bool {
        let attempts = self.settings.request_attempts.max(1);
        let Some(job) = self.jobs.get_mut(&id) else { return false };
        let Some(aws) = job.aws.as_mut().filter(|aws| aws.quiet_start) else { return false };
        aws.quiet_start = false;
        job.sends_left = attempts;
        let wait = self.aws_resume_wait();
        let text = format!(
            "the device may still be downloading this job: waiting up to {} s for it to ask for blocks before \
             offering the job again (an offer would make it start its download over)",
            wait.as_secs_f64()
        );
        self.note(id, text, now);
        self.arm_deadline(id, now + wait);
        true
    }

    /// How long a device that may still be downloading gets to ask for blocks before its job is
    /// offered again: a request timeout, at least [`MIN_RESUME_WAIT`].
    fn aws_resume_wait(&self) -> std::time::Duration {
        self.settings.request_timeout.max(MIN_RESUME_WAIT)
    }

    /// The broker came back: a job waiting for its device waits afresh (its deadline stopped
    /// with the broker). Whether it was such a job. (A transfer goes back to offering with its
    /// first offer held back, in `set_connected`: a device whose own connection held asks again
    /// for the blocks it misses 10 s after its last one; one whose connection dropped too asked
    /// for its job once on its return, maybe before Rocky was back, and is offered it again.)
    pub(super) fn aws_parked_after_reconnect(&mut self, id: JobId, now: Instant) -> bool {
        if !self.aws_is_parked(id) {
            return false;
        }
        let at = now + self.settings.aws_device_wait;
        self.arm_deadline(id, at);
        true
    }

    /// Whether job `id` is for a device that runs AWS's OTA agent.
    pub fn is_aws_job(&self, id: JobId) -> bool {
        match self.jobs.get(&id) {
            Some(job) => job.aws.is_some(),
            None => self.ended.get(&id).is_some_and(|ended| ended.aws),
        }
    }

    /// Whether `device` holds an AWS job here that is not over.
    pub fn aws_has_job(&self, device: &DeviceId) -> bool {
        self.busy
            .get(device)
            .and_then(|id| self.jobs.get(id))
            .is_some_and(|job| job.aws.is_some() && !job.state.is_final())
    }

    /// The AWS device `device` says how job `job` (its name on the wire) goes. `Err` says why
    /// it changed nothing (an unknown job, one that is not the device's current one).
    pub fn aws_update(
        &mut self,
        device: &DeviceId,
        job: &str,
        update: ExecutionUpdate,
        now: Instant,
    ) -> Result<(), String> {
        let id = self.aws_current(device, job_of_name(job), job)?;
        self.aws_unpark(id, now);
        let state = self.jobs.get(&id).map_or(JobState::Queued, |j| j.state);
        // What is given back after a reboot: the agent's self-test words, bounded; details an
        // update leaves out stay as they were (as AWS keeps them).
        if let Some(aws) = self.jobs.get_mut(&id).and_then(|j| j.aws.as_mut()) {
            aws.version += 1;
            for key in KEPT_DETAILS {
                if let Some(value) = update.details.get(key) {
                    let value = crate::text::prefix_within(value, MAX_KEPT_DETAIL).to_owned();
                    aws.details.insert(key.to_owned(), value);
                }
            }
        }
        let reason = update
            .details
            .get("reason")
            .map(|reason| crate::text::prefix_within(reason, crate::protocol::MAX_REASON_BYTES).to_owned());
        match (update.status, update.progress(), state) {
            (
                ExecutionStatus::InProgress,
                Progress::Rebooting,
                JobState::Transferring | JobState::Requesting,
            ) => {
                self.aws_verified(id, now);
                Ok(())
            }
            (ExecutionStatus::InProgress, Progress::SelfTest, JobState::Confirming) => {
                let text = "the device runs the new image and tests it (self_test: active)".to_owned();
                self.note(id, text, now);
                Ok(())
            }
            (ExecutionStatus::InProgress, _, JobState::Requesting | JobState::Transferring) => {
                // Alive: its transfer deadline starts again.
                if state == JobState::Transferring {
                    self.aws_alive(id, now);
                }
                Ok(())
            }
            (ExecutionStatus::InProgress, _, _) => Ok(()),
            (ExecutionStatus::Succeeded, _, JobState::Confirming | JobState::Transferring) => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.confirmed_at = Some(now);
                }
                if state == JobState::Confirming {
                    let words = reason.map(|r| format!(": {}", r.trim())).unwrap_or_default();
                    let text =
                        format!("confirmed: the device accepted the new image after its self test{words}");
                    self.note(id, text, now);
                }
                self.finish(id, JobState::Succeeded, None, now);
                Ok(())
            }
            (ExecutionStatus::Failed | ExecutionStatus::Rejected, _, _) => {
                // FAILED "rejected: …" from a device in its self test: it went back to the image
                // it ran before, as a Rocky-protocol device that comes back on its old image.
                let rolled_back = state == JobState::Confirming
                    && reason.as_deref().is_some_and(crate::protocol::aws::is_self_test_rejection);
                let end = match update.status {
                    ExecutionStatus::Rejected => JobState::Rejected,
                    _ if rolled_back => JobState::RolledBack,
                    _ => JobState::Failed,
                };
                let error = match reason {
                    Some(reason) => failure_words(&reason),
                    None => format!("the device said {} and gave no reason", update.status.as_str()),
                };
                self.finish(id, end, Some(error), now);
                Ok(())
            }
            (status, _, state) => Err(format!("{} does not fit a job that is {state}", status.as_str())),
        }
    }

    /// The AWS device `device` asks for blocks of `stream`. The first request of its job's
    /// stream starts the transfer (when a transfer slot is free); blocks past the file's end
    /// are not sent and are said in the `Err`, as is a stream that is not its job's.
    pub fn aws_blocks(
        &mut self,
        device: &DeviceId,
        stream: &str,
        request: &BlockRequest,
        now: Instant,
    ) -> Result<(), String> {
        let id = self.aws_current(device, job_of_name(stream), stream)?;
        if request.file_id != 0 {
            return Err(format!("file {} is not in the job (it has file 0)", request.file_id));
        }
        self.aws_unpark(id, now);
        let Some(job) = self.jobs.get_mut(&id) else { return Err("unknown job".into()) };
        if !matches!(job.state, JobState::Requesting | JobState::Transferring) {
            return Err(format!("blocks asked for a job that is {}", job.state));
        }
        let size = job.image.size();
        // A block that does not fit one message on this broker would end the connection, again
        // at every request: the job fails, saying so.
        if let Some(max) = self.broker_max_packet
            && u64::from(request.block_size) + 64 + 2 * stream.len() as u64 + device.as_str().len() as u64
                > u64::from(max)
        {
            let detail = format!(
                "the device asked for blocks of {} bytes, which do not fit the broker's maximum packet size of \
                 {max} bytes",
                request.block_size
            );
            self.finish(id, JobState::Failed, Some(detail), now);
            return Err("a block size over the broker's limit".into());
        }
        let Some(job) = self.jobs.get_mut(&id) else { return Err("unknown job".into()) };
        let Some(aws) = job.aws.as_mut() else { return Err("not an AWS job".into()) };
        if aws.block_size != request.block_size {
            // A new block size: what was sent counts for nothing any more.
            aws.block_size = request.block_size;
            aws.sent.clear();
            aws.sent_count = 0;
        }
        let total = u32::try_from(size.div_ceil(u64::from(request.block_size))).unwrap_or(u32::MAX);
        let (wanted, past_end) = request.wanted(total);
        // The device's own word on what it holds (a download begun again holds nothing).
        aws.sent = request.held(total);
        aws.sent_count = aws.sent.iter().map(|word| word.count_ones()).sum();
        job.next_chunk = aws.sent_count + 1;
        job.highest_sent = aws.sent_count;
        // The newest request says what the device still needs: it replaces the last.
        aws.pending = wanted.into();
        job.total_chunks = total;
        if job.state == JobState::Requesting {
            // The device took the job: its transfer starts when a slot is free.
            self.accept(id, super::Ack::default(), now);
        } else {
            self.queue_send(id);
        }
        // A device that stops asking (and saying anything) times its transfer out.
        if self.jobs.get(&id).is_some_and(|job| job.state == JobState::Transferring) {
            self.aws_alive(id, now);
        }
        match past_end {
            0 => Ok(()),
            n => Err(format!("{n} blocks asked for past the end of the {total}-block file were not sent")),
        }
    }

    /// How long an AWS transfer may be silent: three progress timeouts, at least [`MIN_SILENCE`].
    pub(super) fn aws_silence(&self) -> std::time::Duration {
        (self.settings.progress_timeout * 3).max(MIN_SILENCE)
    }

    /// The device of AWS job `id` asked or said something: its silence deadline starts again
    /// (a new timer only when the deadline moves by a second or more, so a flood of requests
    /// does not pile up timers).
    fn aws_alive(&mut self, id: JobId, now: Instant) {
        let at = now + self.aws_silence();
        let current = self.jobs.get(&id).and_then(|job| job.deadline);
        if current.is_none_or(|due| at.saturating_duration_since(due) >= std::time::Duration::from_secs(1)) {
            self.arm_deadline(id, at);
        }
    }

    /// The device's current job, if it is `id` and an AWS job; else why not.
    fn aws_current(&self, device: &DeviceId, id: Option<JobId>, name: &str) -> Result<JobId, String> {
        let Some(id) = id else { return Err(format!("{name:?} is no job of Rocky's")) };
        let current = self.busy.get(device).copied();
        let Some((owner, state)) = self.known(id) else { return Err("unknown job".into()) };
        if owner != device {
            return Err(format!("job belongs to device {owner}"));
        }
        if !self.is_aws_job(id) {
            return Err("the job is not an AWS device's".into());
        }
        match state {
            state if state.is_final() => Err(format!("job already {state} (late or duplicate)")),
            state if current != Some(id) => Err(format!("job is {state}, not the device's current job")),
            _ => Ok(id),
        }
    }

    /// The device verified the image and reboots into it: the job confirms (its transfer
    /// slot is free again), within the confirm timeout.
    fn aws_verified(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let was_requesting = job.state == JobState::Requesting;
        job.deadline = None;
        job.progress_due = None;
        job.paced_until = None;
        job.image = job.image.released();
        if let Some(aws) = job.aws.as_mut() {
            aws.pending.clear();
        }
        if was_requesting {
            self.requesting = self.requesting.saturating_sub(1);
            self.awaiting_slot.retain(|(waiting, _)| *waiting != id);
        } else {
            self.transferring = self.transferring.saturating_sub(1);
        }
        let timeout = self.settings.confirm_timeout;
        let detail = format!(
            "the device verified the image's signature and reboots into it: waiting up to {} s for it to pass \
             its self test",
            timeout.as_secs_f64()
        );
        self.transition(id, JobState::Confirming, Some(detail), now);
        self.arm_deadline(id, now + timeout);
        self.activate(now);
    }

    /// The execution of job `id` as it stands, on `notify-next`; `None` when the job no longer
    /// wants it sent.
    pub(super) fn aws_execution_publish(&self, id: JobId, now: Instant) -> Option<Publish> {
        let job = self.jobs.get(&id)?;
        let aws = job.aws.as_ref()?;
        let status = match job.state {
            JobState::Requesting => ExecutionStatus::Queued,
            JobState::Transferring | JobState::Confirming => ExecutionStatus::InProgress,
            _ => return None,
        };
        let document = JobDocument {
            job_id: aws_job_name(id),
            stream: aws_job_name(id),
            file_path: aws.job.file_path.clone(),
            file_size: job.image.size(),
            file_id: 0,
            cert_file: aws.job.cert_file.clone(),
            signature: aws.job.signature.clone(),
        };
        let details = (status == ExecutionStatus::InProgress).then_some(&aws.details);
        let now_s = self.unix_s(now);
        let payload =
            encode_execution(now_s, &document, status, aws.queued_at_s, now_s, aws.version, details).ok()?;
        Some(Publish {
            topic: notify_next_topic(&job.device),
            payload: Bytes::from(payload),
            job: id,
            device: job.device.clone(),
            kind: PublishKind::AwsExecution,
        })
    }

    /// The next block job `id`'s device asked for, if any (and then the job goes back in turn
    /// while more are asked for).
    pub(super) fn next_block(&mut self, id: JobId, now: Instant) -> Option<Publish> {
        let budget_factor = u64::from(self.settings.max_send_factor.max(1));
        let job = self.jobs.get_mut(&id)?;
        if job.state != JobState::Transferring || job.paced_until.is_some() {
            return None;
        }
        let size = job.image.size();
        let total = job.total_chunks;
        let aws = job.aws.as_mut()?;
        let block = aws.pending.pop_front()?;
        let block_size = u64::from(aws.block_size);
        let start = u64::from(block) * block_size;
        let end = (start + block_size).min(size);
        let bytes = job.image.bytes().get(start as usize..end as usize)?;
        let len = bytes.len() as u64;
        if job.sent_here + len > size.saturating_mul(budget_factor) {
            self.send_budget_spent(id, now);
            return None;
        }
        let payload = encode_block(&Block { file_id: 0, index: block, bytes });
        let first_time = aws.mark_sent(block);
        let sent_count = aws.sent_count;
        let more = !aws.pending.is_empty();
        job.bytes_sent += len;
        job.sent_here += len;
        if first_time {
            job.next_chunk = sent_count + 1;
            job.highest_sent = sent_count;
        }
        let device = job.device.clone();
        let publish = Publish {
            topic: data_topic(&device, &aws_job_name(id)),
            payload: Bytes::from(payload),
            job: id,
            device: device.clone(),
            kind: PublishKind::AwsBlock { index: block, total },
        };
        self.events.push_back((
            now,
            Event::ChunkSent { job: id, device, chunk: block + 1, total, bytes: len as u32 },
        ));
        if more {
            self.pace_or_queue(id, now);
        }
        Some(publish)
    }
}
