//! What devices say they run (the status and confirm extensions, `PROTOCOL.md` "Device status"
//! and "Confirm"): a job for a device that already runs its image ends `up_to_date` without a
//! byte sent; a device that confirms updates answers FOTA_DONE_SUCCESS with "stored, I will
//! boot it", so its job waits `confirming` (holding the device, not a transfer slot) for a status
//! after its next boot, which says whether it runs the new image or rolled back.

use std::time::Instant;

use super::super::job::Job;
use super::{Engine, JobId, JobState, JobView, Reported};
use crate::protocol::DeviceId;

/// The NACK reason code for "this image is already installed".
pub(super) const ALREADY_INSTALLED: u64 = 9;

impl Engine {
    /// What `device` says it runs now (`None`: it cleared its status). Kept while the device has
    /// a job here; it decides a confirming job when its boot counter has passed the job's.
    pub fn device_reported(&mut self, device: &DeviceId, reported: Option<Reported>, now: Instant) {
        let unheld = self.unheld_confirming.get(device).copied();
        if !self.busy.contains_key(device) && !self.device_queues.contains_key(device) && unheld.is_none() {
            self.reported.remove(device);
            return;
        }
        let Some(reported) = reported else {
            self.reported.remove(device);
            return;
        };
        self.reported.insert(device.clone(), reported.clone());
        let confirming = |id: &JobId| self.jobs.get(id).is_some_and(|job| job.state == JobState::Confirming);
        let Some(id) = self.busy.get(device).copied().filter(confirming).or(unheld.filter(confirming)) else {
            return;
        };
        let Some(job) = self.jobs.get(&id) else { return };
        // The same boot (or an older one, delivered late) says nothing new.
        let (Some(waits_past), Some(boot)) = (job.confirm_boot, reported.boot) else { return };
        if boot <= waits_past {
            return;
        }
        if &reported.image == job.image.sha256() {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.confirmed_at = Some(now);
            }
            let text = format!("confirmed: the device runs the new image after boot {boot}");
            self.note(id, text, now);
            self.finish(id, JobState::Succeeded, None, now);
        } else {
            let to = reported.version.clone().unwrap_or_else(|| crate::protocol::short_hash(&reported.image));
            self.finish(id, JobState::RolledBack, Some(format!("rolled back to {to}")), now);
        }
    }

    /// FOTA_DONE_SUCCESS for job `id`: succeeded, or confirming for a device that confirms
    /// updates (its transfer slot goes to the next job at once; its device stays held).
    pub(super) fn done_success(&mut self, id: JobId, now: Instant) {
        let Some((device, at_request, image)) =
            self.jobs.get(&id).map(|job| (job.device.clone(), job.boot_at_request, *job.image.sha256()))
        else {
            return;
        };
        let latest = self.reported.get(&device).filter(|r| r.confirm).cloned();
        let Some(boot) = latest.as_ref().and_then(|r| r.boot) else {
            return self.finish(id, JobState::Succeeded, None, now);
        };
        // Its answer came late (lost with a broker session and repeated): the device has booted
        // the image since the request and said so already. Confirmed; no second reboot comes.
        if latest.is_some_and(|r| r.image == image) && at_request.is_some_and(|before| boot > before) {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.confirmed_at = Some(now);
            }
            let text = format!("confirmed: the device said it runs the new image after boot {boot}");
            self.note(id, text, now);
            return self.finish(id, JobState::Succeeded, None, now);
        }
        let timeout = self.settings.confirm_timeout;
        if let Some(job) = self.jobs.get_mut(&id) {
            job.confirm_boot = Some(boot);
            job.deadline = None;
            job.progress_due = None;
            job.paced_until = None;
            job.image = job.image.released();
            job.delta = None;
        }
        self.transferring = self.transferring.saturating_sub(1);
        let detail = format!(
            "stored and verified: waiting up to {} s for the device to boot it (a status after boot {boot})",
            timeout.as_secs_f64()
        );
        self.transition(id, JobState::Confirming, Some(detail), now);
        self.arm_deadline(id, now + timeout);
        self.activate(now);
    }

    /// Whether queued job `id` would send its device the image the device says it runs.
    pub(super) fn is_up_to_date(&self, id: JobId) -> bool {
        self.jobs.get(&id).is_some_and(|job| {
            !job.force && self.reported.get(&job.device).is_some_and(|r| &r.image == job.image.sha256())
        })
    }

    /// Ends an active job `up_to_date` (the device said the image is installed already).
    pub(super) fn end_up_to_date(&mut self, id: JobId, why: &str, now: Instant) {
        self.note(id, why.to_owned(), now);
        self.finish(id, JobState::UpToDate, None, now);
    }

    /// Ends a queued job without starting it (`up_to_date`, or `failed` when it may not be
    /// sent): no slot, no device, nothing sent. Starts nothing itself (the caller is the loop
    /// that starts jobs).
    pub(super) fn close_unsent(
        &mut self,
        id: JobId,
        state: JobState,
        error: Option<String>,
        note: Option<String>,
        now: Instant,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.finished_at = Some(now);
        job.image = job.image.released();
        job.delta = None;
        job.error = error.clone();
        if let Some(text) = note {
            self.note(id, text, now);
        }
        self.transition(id, state, error, now);
    }

    /// Why queued job `id` must not be sent to its device as things stand (the manifest rule).
    pub(super) fn signed_refusal(&self, id: JobId) -> Option<String> {
        let job = self.jobs.get(&id)?;
        crate::engine::manifest_to_send(
            &job.device,
            self.reported.get(&job.device),
            job.manifest.as_ref(),
            job.image.name(),
        )
        .err()
    }

    /// A confirming job restored after a restart or a claim: it holds its device again and
    /// waits out a fresh timeout.
    pub(super) fn restore_confirming(&mut self, mut job: Job, now: Instant) {
        let (id, device) = (job.id, job.device.clone());
        job.confirm_left = Some(self.settings.confirm_timeout);
        self.jobs.insert(id, job);
        self.count(None, Some(JobState::Confirming));
        // Held by another job already (a claimed job of a dead instance, while this one drives
        // the device): that one keeps it; this one is still decided by a status, or times out.
        match self.busy.get(&device) {
            Some(_) => {
                self.unheld_confirming.insert(device, id);
            }
            None => {
                self.busy.insert(device, id);
            }
        }
        if self.connected {
            self.rearm_confirmations(now);
        }
    }

    /// Restores a stored job knowing what its device last said it runs (a job claimed from a
    /// shared store may start at once, so the engine must know before it does).
    pub fn restore_reported(
        &mut self,
        view: JobView,
        patch: Option<crate::firmware::Patch>,
        reported: Option<Reported>,
        now: Instant,
    ) {
        let (device, id) = (view.device.clone(), view.id);
        if let (false, Some(reported)) = (view.state.is_final(), reported.clone()) {
            self.reported.insert(device.clone(), reported);
        }
        self.restore_patched(view, patch, now);
        // A confirming job may have been decided meanwhile: the status it waits for is in.
        if self.jobs.get(&id).is_some_and(|job| job.state == JobState::Confirming) {
            self.device_reported(&device, reported, now);
        }
        if !self.busy.contains_key(&device) && !self.device_queues.contains_key(&device) {
            self.forget_reported(&device);
        }
    }

    /// After the broker came back: every confirming job's time goes on where it stopped (no
    /// status could arrive while it was away; retained ones come with the new subscription).
    pub(super) fn rearm_confirmations(&mut self, now: Instant) {
        let waiting: Vec<(JobId, std::time::Duration)> = self
            .jobs
            .values_mut()
            .filter(|job| job.state == JobState::Confirming)
            .filter_map(|job| job.confirm_left.take().map(|left| (job.id, left)))
            .collect();
        for (id, left) in waiting {
            self.arm_deadline(id, now + left);
        }
    }

    /// A device with no job here any more: what it said is not kept.
    pub(super) fn forget_reported(&mut self, device: &DeviceId) {
        self.reported.remove(device);
    }
}
