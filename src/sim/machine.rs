//! The protocol side of a simulated device, sans-IO: frames in, answers out, time passed in.
//!
//! `SimDevice` (`device.rs`) drives it from an MQTT connection on the wall clock; `Pair`
//! (`pair.rs`) drives it beside the engine on virtual time, so the flow-control, loss, resume and
//! timeout cases run in milliseconds. One machine, so both speak exactly the same protocol.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::Digest;

use super::transfer::Transfer;
use super::{Behavior, DeviceModel, DeviceReport, Verdict};
use crate::protocol::{
    Command, CommandBody, Reason, Response, ResponseBody, decode_command, encode_response,
};

/// A flow-controlled device confirms what it holds once nothing more has arrived for this long
/// (so the last chunks of an image are confirmed at once).
pub const IDLE_CONFIRM: Duration = Duration::from_millis(100);

/// How long a `slow` device waits before each answer, unless told otherwise.
pub const SLOW_DELAY: Duration = Duration::from_millis(1500);

/// The frame a garbage device sends before each real answer.
pub const GARBAGE_FRAME: [u8; 3] = [0xff, 0x00, 0x13];

/// One device's protocol state.
pub struct DeviceMachine {
    behavior: Behavior,
    slow_delay: Duration,
    model: DeviceModel,
    report: Arc<Mutex<DeviceReport>>,
    transfer: Option<Transfer>,
    /// When the held chunks are confirmed if nothing else arrives.
    idle_confirm: Option<Instant>,
    /// Answers in the order the device gave them, each with the earliest time it goes out: a
    /// FOTA_PROGRESS never overtakes an earlier one (Rocky would read the older, lower one as a
    /// rewind), and a slow device's delay holds back what follows it too.
    outbox: VecDeque<(Instant, Vec<u8>)>,
    /// What it runs and says about it; `None` for a version 1 device, which reports nothing.
    boot: Option<super::boot::Boot>,
    /// The bytes of the image it runs, when it knows them (a patch's base): a device that speaks
    /// deltas keeps the image it installed.
    running_bytes: Option<Bytes>,
}

impl DeviceMachine {
    pub fn new(
        behavior: Behavior,
        slow_delay: Duration,
        model: DeviceModel,
        report: Arc<Mutex<DeviceReport>>,
    ) -> Self {
        let boot = (!model.legacy).then(|| {
            super::boot::Boot::new(
                model.window.is_some(),
                !model.no_confirm,
                model.trust.is_some(),
                model.delta,
                model.after_update,
                model.reboot_delay,
            )
        });
        let mut boot = boot;
        let running_bytes = match (&model.factory, boot.as_mut()) {
            (Some(image), Some(boot)) => {
                boot.set_factory(sha2::Digest::finalize(sha2::Sha256::new_with_prefix(image)).into());
                Some(image.clone())
            }
            _ => None,
        };
        Self {
            behavior,
            slow_delay,
            running_bytes,
            model,
            report,
            transfer: None,
            idle_confirm: None,
            outbox: VecDeque::new(),
            boot,
        }
    }

    /// Connected (again): its status goes out at once.
    pub fn on_connect(&mut self, now: Instant) {
        if let Some(boot) = self.boot.as_mut() {
            boot.connected(now);
        }
    }

    /// The status (for `{prefix}/status/{id}`, retained) due by `now`, if any.
    pub fn poll_status(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.boot.as_mut()?.poll_status(now)
    }

    /// The image it runs now (the factory's until an update boots).
    pub fn running(&self) -> Option<crate::protocol::Sha256> {
        self.boot.as_ref().map(|boot| *boot.running())
    }

    /// How long storing a chunk of `bytes` takes; the device reads nothing meanwhile, so a
    /// broker's queue for it fills as it would for a real device behind slow flash.
    pub fn store_time(&self, bytes: usize) -> Duration {
        self.model.store_time(bytes)
    }

    /// When `tick` or `poll_answer` has something to do.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let answer = self.outbox.front().map(|(at, _)| *at);
        let boot = self.boot.as_ref().and_then(super::boot::Boot::next_wakeup);
        [self.idle_confirm, answer, boot].into_iter().flatten().min()
    }

    /// Confirms what is held once the device has been idle for `IDLE_CONFIRM`.
    pub fn tick(&mut self, now: Instant) {
        if let Some(boot) = self.boot.as_mut() {
            boot.tick(now);
        }
        if self.idle_confirm.is_some_and(|at| at <= now) {
            self.idle_confirm = None;
            self.confirm(now);
        }
    }

    /// The next answer (a frame for the device's `cmd_resp` topic) due by `now`.
    pub fn poll_answer(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.outbox.front().is_some_and(|(at, _)| *at <= now) {
            return self.outbox.pop_front().map(|(_, frame)| frame);
        }
        None
    }

    fn update(&self, f: impl FnOnce(&mut DeviceReport)) {
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut report);
    }

    fn flow_controlled(&self) -> bool {
        self.model.window.is_some() && !self.model.legacy
    }

    /// A chunk arrived on the device's data topic.
    pub fn on_chunk(&mut self, chunk: u32, payload: Bytes, now: Instant) {
        if self.store(chunk, payload, now) {
            self.idle_confirm = Some(now + IDLE_CONFIRM);
        }
    }

    /// Stores a chunk; true when a flow-controlled device now holds chunks it has not
    /// confirmed (the idle confirmation is due).
    fn store(&mut self, chunk: u32, payload: Bytes, now: Instant) -> bool {
        let flow_controlled = self.flow_controlled();
        let confirm_every = self.model.confirm_every();
        let Some(t) = self.transfer.as_mut() else { return false };
        let earlier = if self.model.counts_deliveries() {
            let delivery = t.deliveries.entry(chunk).or_insert(0);
            *delivery += 1;
            *delivery - 1
        } else {
            0
        };
        if self.model.loses(t.job, chunk, earlier) {
            return false; // lost on the way
        }
        if let Some(held) = t.resumed_len.take()
            && payload.len() != held
            && !(payload.len() < held && t.completes_with(chunk, &payload))
        {
            // The chunk size changed since the chunks held arrived: they are worthless.
            t.clear();
            if flow_controlled {
                t.confirmed = 1;
                t.unconfirmed = 0;
                let job = t.job;
                self.reply(job, ResponseBody::Progress { next_chunk: 1, window: None }, false, now);
                return false;
            }
            t.size_changed = true;
        }
        let len = payload.len() as u64;
        let duplicate = t.insert(chunk, payload);
        if flow_controlled {
            t.unconfirmed += 1;
        }
        let confirm_now = flow_controlled && (duplicate || t.unconfirmed >= confirm_every);
        self.update(|r| {
            r.chunks += 1;
            r.bytes += len;
            r.duplicate_chunks += u64::from(duplicate);
        });
        if !flow_controlled {
            return false;
        }
        // A chunk it already holds means a FOTA_PROGRESS was lost: repeat it at once.
        if confirm_now {
            self.confirm(now);
        }
        self.transfer.as_ref().is_some_and(|t| t.next_missing() > t.confirmed || t.unconfirmed > 0)
    }

    /// Sends FOTA_PROGRESS with what the device holds without a gap.
    fn confirm(&mut self, now: Instant) {
        let stop_at = self.model.stop_confirming_at;
        let Some(t) = self.transfer.as_mut() else { return };
        let next = t.next_missing();
        if stop_at.is_some_and(|at| next > at + 1) {
            return; // it went quiet
        }
        t.unconfirmed = 0;
        t.confirmed = next;
        let job = t.job;
        self.reply(job, ResponseBody::Progress { next_chunk: next, window: None }, false, now);
    }

    /// A frame arrived on the device's command topic.
    pub fn on_command(&mut self, payload: &[u8], now: Instant) {
        if self.boot.as_ref().is_some_and(super::boot::Boot::gone) {
            return; // it never came back from its reboot
        }
        let Ok(Command { job_id, body }) = decode_command(payload) else {
            self.update(|r| r.bad_frames += 1);
            return;
        };
        let reply = match body {
            CommandBody::Request { hash, manifest, delta } => {
                match self.check_manifest(hash, manifest.as_deref()) {
                    // The delta extension: a patch for a base it does not run is refused (13).
                    Ok(_) if delta.is_some_and(|d| !self.runs_base(&d)) => {
                        self.update(|r| r.verdicts.push((job_id, Verdict::Refused)));
                        Some(ResponseBody::RequestNack { reason: Some(Reason::Code(13)) })
                    }
                    Ok(accepted) => self.on_request(job_id, hash, accepted, delta),
                    Err(code) => {
                        self.update(|r| r.verdicts.push((job_id, Verdict::Refused)));
                        Some(ResponseBody::RequestNack { reason: Some(Reason::Code(code)) })
                    }
                }
            }
            CommandBody::Done => self.on_done(job_id),
        };
        if let Some(body) = reply {
            let verified = body == ResponseBody::DoneSuccess;
            self.reply(job_id, body, true, now);
            // It reboots into what it verified once its answer is out, not before.
            let answered_at = self.outbox.back().map_or(now, |(at, _)| *at);
            let hash = self.transfer.as_ref().map(|t| (t.hash, t.manifest.clone()));
            if let (true, Some(boot), Some((hash, manifest))) = (verified, self.boot.as_mut(), hash) {
                boot.verified(hash, manifest, answered_at);
            }
        }
    }

    /// The manifest extension's checks, in `PROTOCOL.md`'s order, for a device that trusts
    /// keys: a manifest at all, a trusted key and a valid signature (11), the request's hash
    /// (14), a security counter not below the running image's (12). The NACK code on refusal.
    fn check_manifest(
        &self,
        hash: crate::protocol::Sha256,
        manifest: Option<&[u8]>,
    ) -> Result<Option<crate::protocol::ManifestPayload>, u64> {
        let Some(trust) = self.model.trust.as_ref().filter(|_| !self.model.legacy) else { return Ok(None) };
        let manifest =
            manifest.and_then(|bytes| crate::protocol::Manifest::decode(bytes).ok()).ok_or(11u64)?;
        manifest.verify(trust).map_err(|_| 11u64)?;
        if manifest.payload().image_sha256 != hash {
            return Err(14);
        }
        let running = self.boot.as_ref().map_or(0, super::boot::Boot::seq);
        if manifest.payload().seq < running {
            return Err(12);
        }
        Ok(Some(manifest.payload().clone()))
    }

    /// Whether it runs the patch's base and holds its bytes.
    fn runs_base(&self, delta: &crate::protocol::DeltaItem) -> bool {
        self.model.delta && self.running() == Some(delta.base) && self.running_bytes.is_some()
    }

    fn on_request(
        &mut self,
        job_id: u32,
        hash: crate::protocol::Sha256,
        manifest: Option<crate::protocol::ManifestPayload>,
        delta: Option<crate::protocol::DeltaItem>,
    ) -> Option<ResponseBody> {
        let legacy = self.model.legacy;
        self.update(|r| r.requests += 1);
        match self.behavior {
            Behavior::Silent => None,
            Behavior::Nack => {
                self.update(|r| r.verdicts.push((job_id, Verdict::Refused)));
                // The reasons extension, as a text of the device's own.
                let reason = (!legacy).then(|| Reason::text("battery below 20%"));
                Some(ResponseBody::RequestNack { reason })
            }
            _ if self.running() == Some(hash) => {
                // It runs this image already (the reasons extension's code 9): no verdict on an
                // update, since there is none to make.
                Some(ResponseBody::RequestNack { reason: Some(Reason::Code(9)) })
            }
            _ => {
                // The same image again (Rocky re-sent the request after a broker restart, or
                // another job of the same image): keep what arrived and say where to resume.
                // Kept by hash, whatever the job id.
                match self.transfer.as_mut() {
                    // Kept by (target, base): a whole image and a patch for it are not the same.
                    Some(t) if !legacy && t.hash == hash && t.delta == delta && !t.answered => {
                        t.job = job_id;
                        t.resumed_len = t.first_len();
                        t.resumes();
                        t.unconfirmed = 0;
                        t.confirmed = t.next_missing();
                    }
                    // Bytes are kept only to be patched, or patched later.
                    _ => {
                        let keeps_bytes = self.model.delta || delta.is_some();
                        self.transfer = Some(Transfer::new(job_id, hash, keeps_bytes));
                    }
                }
                if let Some(t) = self.transfer.as_mut() {
                    t.manifest = manifest;
                    t.delta = delta;
                }
                let next = self.transfer.as_ref().map_or(1, Transfer::next_missing);
                Some(match (legacy, self.model.window) {
                    (true, _) => ResponseBody::RequestAck { next_chunk: None, window: None },
                    (false, Some(window)) => {
                        ResponseBody::RequestAck { next_chunk: Some(next), window: Some(window) }
                    }
                    (false, None) => {
                        ResponseBody::RequestAck { next_chunk: (next > 1).then_some(next), window: None }
                    }
                })
            }
        }
    }

    fn on_done(&mut self, job_id: u32) -> Option<ResponseBody> {
        let legacy = self.model.legacy;
        let behavior = self.behavior;
        if behavior == Behavior::Silent {
            return None;
        }
        // Not the job this device is receiving: a real device ignores it.
        let t = self.transfer.as_mut().filter(|t| t.job == job_id)?;
        t.answered = true;
        // A patch is checked, applied to the running image, and the result checked as an image.
        let patched = match (t.delta, self.running_bytes.as_ref()) {
            (Some(delta), Some(base)) => Some(patch_result(t, &delta, base)),
            _ => None,
        };
        // The manifest's size is checked once the image is whole (code 14).
        let whole_len = match &patched {
            Some(Ok(image)) => image.len() as u64,
            _ => t.len(),
        };
        let wrong_size = t.manifest.as_ref().is_some_and(|m| m.size != whole_len);
        let verified = match &patched {
            Some(Ok(image)) => {
                <[u8; 32]>::from(sha2::Sha256::digest(image)) == t.hash && behavior != Behavior::Corrupt
            }
            Some(Err(_)) => false,
            None => t.verify(behavior == Behavior::Corrupt),
        };
        let ok = behavior != Behavior::Fail && !t.size_changed && !wrong_size && verified;
        let installed = match patched {
            Some(Ok(image)) => Some(Bytes::from(image)),
            _ if ok && self.model.delta => t.assembled().map(Bytes::from),
            _ => None,
        };
        let size_changed = t.size_changed;
        let verdict = if ok { Verdict::Verified } else { Verdict::Failed };
        self.update(|r| {
            // A repeated FOTA_DONE (after a reconnect) repeats the verdict once.
            if r.verdicts.last().map(|(j, _)| *j) != Some(job_id) {
                r.verdicts.push((job_id, verdict));
            }
        });
        // The reasons extension: a device told to fail says its flash write failed (code 10),
        // one whose chunk size changed says so, and one whose image did not verify says that
        // (code 4). A version 1 device gives no reason.
        let reason = match (behavior, size_changed) {
            _ if legacy => None,
            _ if wrong_size => Some(Reason::Code(14)),
            (Behavior::Fail, _) => Some(Reason::Code(10)),
            (_, true) => Some(Reason::text("chunk size changed")),
            _ => Some(Reason::Code(4)),
        };
        if ok && installed.is_some() {
            // It keeps the bytes of what it installs: the base of the next patch.
            self.running_bytes = installed;
        }
        Some(if ok { ResponseBody::DoneSuccess } else { ResponseBody::DoneFailed { reason } })
    }

    /// Queues an answer. `answer`: a reply to a command (slow and garbage devices act on those),
    /// not a FOTA_PROGRESS.
    fn reply(&mut self, job_id: u32, body: ResponseBody, answer: bool, now: Instant) {
        let frame = encode_response(&Response { job_id, body });
        let delay = if answer && self.behavior == Behavior::Slow { self.slow_delay } else { Duration::ZERO };
        let after = self.outbox.back().map_or(now, |(at, _)| (*at).max(now));
        let at = after + delay;
        if answer && self.behavior == Behavior::Garbage {
            self.outbox.push_back((at, GARBAGE_FRAME.to_vec()));
        }
        self.outbox.push_back((at, frame));
    }
}

/// The image a patch makes of `base`, after the patch's own checks (size and SHA-256).
fn patch_result(t: &Transfer, delta: &crate::protocol::DeltaItem, base: &[u8]) -> Result<Vec<u8>, String> {
    let patch = t.assembled().ok_or("the patch has a gap")?;
    if patch.len() as u64 != delta.size || <[u8; 32]>::from(sha2::Sha256::digest(&patch)) != delta.sha256 {
        return Err("the patch is not the one announced".into());
    }
    crate::firmware::apply_patch(base, &patch, crate::firmware::DEFAULT_MAX_IMAGE_BYTES)
}
