//! A simulated device that runs AWS's OTA agent (the `aws-iot-ota` profile), sans IO: it asks
//! `$next/get`, takes its job from `notify-next`, pulls the file by bitmap 8 blocks at a time
//! (asking again after 10 s without a block, as the agent does), checks `sig-sha256-ecdsa` with
//! the keys it trusts (its code-signing certificate), says `self_test: ready`, "reboots", asks
//! again, and passes its self test (SUCCEEDED) or fails it (FAILED "rejected: …", back on the
//! image before). What it says follows the agent's own wording, so Rocky's handling of a real
//! device is what a simulated fleet exercises.
//!
//! Misbehaviours map onto the agent's world: `nack` rejects the job (REJECTED), `fail` and
//! `corrupt` end with a failed signature check (0xe3), `silent` says nothing, `garbage` sends a
//! message that is not JSON before each update, `slow` waits before each message.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{AfterUpdate, Behavior, DeviceReport, Verdict};
use crate::protocol::DeviceId;
use crate::protocol::aws::{
    BlockRequest, ReceivedBlock, data_topic, decode_block, encode_block_request, notify_next_topic,
};
use crate::signing::TrustedKeys;

/// The block size the agent asks for (its `OTA_FILE_BLOCK_SIZE`).
pub const AGENT_BLOCK: usize = 4096;
/// Blocks asked for at a time.
const BLOCKS_PER_ASK: usize = 8;
/// The agent asks again for blocks still missing after this long without one.
const ASK_AGAIN: Duration = Duration::from_secs(10);
/// A progress update every this many blocks.
const PROGRESS_EVERY: usize = 64;
/// The largest file a simulated device takes (its "flash"); a larger one fails with 0xe5.
const MAX_FILE: u64 = 256 * 1024 * 1024;
/// The version the simulated firmware runs at first: 1.0.0, as the agent writes it.
const FIRST_VERSION: u32 = 0x0100_0000;

/// What the device sends: a message, or a subscription it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOut {
    Publish { topic: String, payload: Vec<u8> },
    Subscribe(String),
    Unsubscribe(String),
}

struct Download {
    job: String,
    stream: String,
    size: u64,
    signature: String,
    blocks: BTreeMap<u32, bytes::Bytes>,
    /// Blocks asked for and not yet here, of the last request.
    awaited: usize,
}

impl Download {
    fn total(&self) -> u32 {
        u32::try_from(self.size.div_ceil(AGENT_BLOCK as u64)).unwrap_or(u32::MAX)
    }
}

/// The number in a job's name on the wire (`rocky-7`), for the report; 0 for another name.
fn job_number(job: &str) -> u32 {
    job.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

pub struct AwsAgent {
    thing: DeviceId,
    behavior: Behavior,
    after_update: AfterUpdate,
    trust: Option<Arc<TrustedKeys>>,
    reboot_delay: Duration,
    slow_delay: Duration,
    report: Arc<Mutex<DeviceReport>>,
    version: u32,
    download: Option<Download>,
    /// Rebooted into the image of this job, waiting for it to come back IN_PROGRESS.
    testing: Option<String>,
    /// A verified image of this job, booted at this time.
    reboot: Option<(Instant, String)>,
    ask_again_at: Option<Instant>,
    out: VecDeque<(Instant, AgentOut)>,
}

impl AwsAgent {
    pub fn new(
        thing: DeviceId,
        behavior: Behavior,
        model: &super::DeviceModel,
        slow_delay: Duration,
        report: Arc<Mutex<DeviceReport>>,
    ) -> Self {
        Self {
            thing,
            behavior,
            after_update: model.after_update,
            trust: model.trust.clone(),
            reboot_delay: model.reboot_delay,
            slow_delay,
            report,
            version: FIRST_VERSION,
            download: None,
            testing: None,
            reboot: None,
            ask_again_at: None,
            out: VecDeque::new(),
        }
    }

    fn topic(&self, rest: &str) -> String {
        format!("$aws/things/{}/{rest}", self.thing)
    }

    /// Queues a message, after the device's delay when it is slow; a silent device says nothing.
    fn say(&mut self, now: Instant, out: AgentOut) {
        if self.behavior == Behavior::Silent && matches!(out, AgentOut::Publish { .. }) {
            return;
        }
        let at = if self.behavior == Behavior::Slow { now + self.slow_delay } else { now };
        self.out.push_back((at, out));
    }

    fn ask_for_job(&mut self, now: Instant) {
        let payload = json!({"clientToken": format!(":{}", self.thing)}).to_string().into_bytes();
        self.say(now, AgentOut::Publish { topic: self.topic("jobs/$next/get"), payload });
    }

    fn update(&mut self, now: Instant, job: &str, status: &str, details: Value) {
        let topic = self.topic(&format!("jobs/{job}/update"));
        if self.behavior == Behavior::Garbage {
            self.say(now, AgentOut::Publish { topic: topic.clone(), payload: b"{not json".to_vec() });
        }
        let payload = json!({"status": status, "statusDetails": details}).to_string().into_bytes();
        self.say(now, AgentOut::Publish { topic, payload });
    }

    fn record(&self, f: impl FnOnce(&mut DeviceReport)) {
        f(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Connected (again): subscribes to its notify-next and asks for its job.
    pub fn on_connect(&mut self, now: Instant) {
        self.say(now, AgentOut::Subscribe(notify_next_topic(&self.thing)));
        if let Some(download) = &self.download {
            let data = data_topic(&self.thing, &download.stream);
            self.say(now, AgentOut::Subscribe(data));
        }
        if self.reboot.is_none() {
            self.ask_for_job(now);
        }
    }

    /// A message on one of its topics.
    pub fn on_message(&mut self, topic: &str, payload: &[u8], now: Instant) {
        if topic.ends_with("/jobs/notify-next") {
            let Ok(message) = serde_json::from_slice::<Value>(payload) else {
                self.record(|r| r.bad_frames += 1);
                return;
            };
            self.on_execution(&message["execution"], now);
        } else if topic.ends_with("/data/cbor") {
            self.on_block(payload, now);
        }
    }

    fn on_execution(&mut self, execution: &Value, now: Instant) {
        let job = execution["jobId"].as_str().unwrap_or_default().to_owned();
        let status = execution["status"].as_str().unwrap_or_default();
        if job.is_empty() {
            // No job: one under way was cancelled; the agent drops its download.
            if let Some(dropped) = self.download.take() {
                let data = data_topic(&self.thing, &dropped.stream);
                self.say(now, AgentOut::Unsubscribe(data));
                self.ask_again_at = None;
            }
            return;
        }
        if self.testing.as_deref() == Some(job.as_str()) {
            if status == "IN_PROGRESS" && execution["statusDetails"]["self_test"] == "ready" {
                self.self_test(&job, now);
            }
            return;
        }
        if self.reboot.is_some() {
            return;
        }
        if let Some(dropped) = self.download.take() {
            // As the agent (ota.c): any job message while it downloads aborts the download,
            // and it asks for its job anew, to start again from its first block.
            let data = data_topic(&self.thing, &dropped.stream);
            self.say(now, AgentOut::Unsubscribe(data));
            self.ask_again_at = None;
            self.record(|r| r.restarted_downloads += 1);
            self.ask_for_job(now);
            return;
        }
        if status != "QUEUED" && status != "IN_PROGRESS" {
            return;
        }
        self.record(|r| r.requests += 1);
        if self.behavior == Behavior::Nack {
            self.update(now, &job, "REJECTED", json!({"reason": "the device rejected the job"}));
            self.record(|r| r.verdicts.push((job_number(&job), Verdict::Refused)));
            return;
        }
        let document = &execution["jobDocument"]["afr_ota"];
        let file = &document["files"][0];
        let stream = document["streamname"].as_str().unwrap_or_default().to_owned();
        let size = file["filesize"].as_u64().unwrap_or(0);
        let signature = file["sig-sha256-ecdsa"].as_str().unwrap_or_default().to_owned();
        if stream.is_empty() || size == 0 {
            self.update(now, &job, "FAILED", json!({"reason": "0x00000001: 0x00000000"}));
            return;
        }
        if size > MAX_FILE {
            // The platform layer's "out of space": the image does not fit.
            self.update(now, &job, "FAILED", json!({"reason": "0x000000e5: 0x00000000"}));
            self.record(|r| r.verdicts.push((job_number(&job), Verdict::Refused)));
            return;
        }
        let data = data_topic(&self.thing, &stream);
        self.say(now, AgentOut::Subscribe(data));
        self.download = Some(Download { job, stream, size, signature, blocks: BTreeMap::new(), awaited: 0 });
        self.ask_blocks(now);
    }

    /// Asks for the next blocks it lacks, 8 at a time, by bitmap from block 0.
    fn ask_blocks(&mut self, now: Instant) {
        let Some(download) = self.download.as_mut() else { return };
        let total = download.total() as usize;
        let mut bitmap = vec![0u8; total.div_ceil(8)];
        let missing: Vec<usize> =
            (0..total).filter(|b| !download.blocks.contains_key(&(*b as u32))).collect();
        for block in &missing {
            bitmap[block / 8] |= 1 << (block % 8);
        }
        download.awaited = missing.len().min(BLOCKS_PER_ASK);
        let payload = encode_block_request(&BlockRequest {
            client_token: Some("rdy".into()),
            file_id: 0,
            block_size: AGENT_BLOCK as u32,
            offset: 0,
            bitmap,
            count: BLOCKS_PER_ASK as u32,
        });
        let topic = format!("$aws/things/{}/streams/{}/get/cbor", self.thing, download.stream);
        self.say(now, AgentOut::Publish { topic, payload });
        self.ask_again_at = Some(now + ASK_AGAIN);
    }

    fn on_block(&mut self, payload: &[u8], now: Instant) {
        let Ok(ReceivedBlock { index, bytes, .. }) = decode_block(payload) else {
            self.record(|r| r.bad_frames += 1);
            return;
        };
        let Some(download) = self.download.as_mut() else { return };
        let expected = if index + 1 == download.total() {
            usize::try_from(download.size - u64::from(index) * AGENT_BLOCK as u64).unwrap_or(usize::MAX)
        } else {
            AGENT_BLOCK
        };
        if index >= download.total() || bytes.len() != expected {
            self.record(|r| r.bad_frames += 1);
            return;
        }
        let len = bytes.len() as u64;
        let fresh = download.blocks.insert(index, bytes.into()).is_none();
        download.awaited = download.awaited.saturating_sub(usize::from(fresh));
        let (have, total, awaited) = (download.blocks.len(), download.total() as usize, download.awaited);
        let job = download.job.clone();
        self.record(|r| {
            r.chunks += 1;
            r.bytes += len;
            r.duplicate_chunks += u64::from(!fresh);
        });
        self.ask_again_at = Some(now + ASK_AGAIN);
        if fresh && have % PROGRESS_EVERY == 0 && have < total {
            self.update(now, &job, "IN_PROGRESS", json!({"receive": format!("{have}/{total}")}));
        }
        if have == total {
            self.finish_download(now);
        } else if awaited == 0 {
            self.ask_blocks(now);
        }
    }

    /// The whole file is here: check its signature, then reboot into it or say why not.
    fn finish_download(&mut self, now: Instant) {
        let Some(download) = self.download.take() else { return };
        self.ask_again_at = None;
        self.say(now, AgentOut::Unsubscribe(data_topic(&self.thing, &download.stream)));
        let mut image: Vec<u8> = download.blocks.into_values().flat_map(|b| b.to_vec()).collect();
        if self.behavior == Behavior::Corrupt
            && let Some(byte) = image.get_mut(0)
        {
            *byte ^= 0xff;
        }
        let verified = self.behavior != Behavior::Fail
            && self.trust.as_ref().is_some_and(|keys| {
                keys.iter()
                    .any(|k| crate::signing::aws_signature_verifies(&k.key, &image, &download.signature))
            });
        if !verified {
            // No certificate to check with reads as the agent's 0xe7; a bad signature as 0xe3.
            let code = if self.trust.is_none() { "0x000000e7" } else { "0x000000e3" };
            self.update(now, &download.job, "FAILED", json!({"reason": format!("{code}: 0x00000000")}));
            self.record(|r| r.verdicts.push((job_number(&download.job), Verdict::Failed)));
            self.ask_for_job(now);
            return;
        }
        let updated_by = format!("0x{:08x}", self.version);
        self.update(
            now,
            &download.job,
            "IN_PROGRESS",
            json!({"self_test": "ready", "updatedBy": updated_by}),
        );
        self.record(|r| r.verdicts.push((job_number(&download.job), Verdict::Verified)));
        self.reboot = Some((now + self.reboot_delay, download.job));
    }

    /// Back from the reboot into the new image, which the job came back IN_PROGRESS for.
    fn self_test(&mut self, job: &str, now: Instant) {
        self.testing = None;
        let before = self.version;
        let after = before + 1;
        self.update(
            now,
            job,
            "IN_PROGRESS",
            json!({"self_test": "active", "updatedBy": format!("0x{before:08x}")}),
        );
        if self.after_update == AfterUpdate::RollsBack {
            self.update(now, job, "FAILED", json!({"reason": "rejected: 0x00000000"}));
            self.ask_for_job(now);
            return;
        }
        self.version = after;
        let words = |v: u32| format!("  v{}.{}.{}", v >> 24, (v >> 16) & 0xff, v & 0xffff);
        let reason = format!("accepted{}", words(after));
        self.update(now, job, "SUCCEEDED", json!({"reason": reason, "updatedBy": words(before)}));
    }

    /// Timers: the reboot, and asking again for blocks that did not come.
    pub fn tick(&mut self, now: Instant) {
        if let Some((at, _)) = &self.reboot
            && *at <= now
            && let Some((_, job)) = self.reboot.take()
        {
            if self.after_update == AfterUpdate::NeverBack {
                // Gone for good: it never asks again.
                self.behavior = Behavior::Silent;
                return;
            }
            self.testing = Some(job);
            self.ask_for_job(now);
        }
        if self.ask_again_at.is_some_and(|at| at <= now) {
            self.ask_blocks(now);
        }
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        let out = self.out.front().map(|(at, _)| *at);
        [self.reboot.as_ref().map(|(at, _)| *at), self.ask_again_at, out].into_iter().flatten().min()
    }

    /// The next message or subscription due by `now`.
    pub fn poll_out(&mut self, now: Instant) -> Option<AgentOut> {
        if self.out.front().is_some_and(|(at, _)| *at <= now) {
            return self.out.pop_front().map(|(_, out)| out);
        }
        None
    }
}
