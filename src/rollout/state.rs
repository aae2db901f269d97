//! A rollout's life: which devices get a job when, what their jobs ended as, and when the whole
//! moves between `scheduled → running ⇄ paused → succeeded | completed | aborted | cancelled`.

use serde::{Deserialize, Serialize};

use super::devices::Devices;
use super::plan::{Gates, RolloutPlan};
use crate::engine::{JobId, JobState};
use std::collections::HashMap;

/// A rollout's id. Defined in `engine/` (where jobs carry the id of the rollout that asked for
/// them; the engine does not import `rollout/`) and named here, as every reader of rollouts
/// knows it.
pub use crate::engine::RolloutId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    Scheduled,
    Running,
    Paused,
    /// Every device updated (or was already up to date).
    Succeeded,
    /// Every wave ran, but some devices did not update.
    Completed,
    Aborted,
    Cancelled,
}

impl RolloutState {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Completed | Self::Aborted | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What became of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not started yet.
    Pending,
    /// A job is running (or being created).
    Active,
    /// Its job is waiting for the device to confirm the update after its reboot (still in
    /// progress: it counts as active).
    Confirming,
    /// Waiting to be tried again.
    Retrying,
    Succeeded,
    /// Succeeded, and after its reboot the device said it runs the image (confirm extension).
    Confirmed,
    /// Its last succeeded image is this one: not updated.
    UpToDate,
    Rejected,
    Failed,
    /// The device booted the update and came back on another image (a failure).
    RolledBack,
    TimedOut,
    /// Never started (the rollout was aborted or cancelled), or its job was cancelled.
    Cancelled,
}

impl Outcome {
    /// A device whose job is under way (running, or waiting for its confirmation).
    pub fn in_progress(self) -> bool {
        matches!(self, Self::Active | Self::Confirming)
    }

    /// In words, as the console and the CLI show it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Confirming => "confirming",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Confirmed => "confirmed",
            Self::UpToDate => "up to date",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::RolledBack => "rolled back",
            Self::TimedOut => "timed out",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Active | Self::Confirming | Self::Retrying)
    }

    fn is_success(self) -> bool {
        matches!(self, Self::Succeeded | Self::Confirmed | Self::UpToDate)
    }
}

/// What the rollout asks of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a job for the device at this position (then call [`Rollout::job_started`]).
    Start(usize),
    Cancel(JobId),
    /// Cancel this job if it is still waiting in the queue (it has sent nothing yet).
    CancelIfQueued(JobId),
}

/// A change of the rollout's state, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutChange {
    pub at: u64,
    pub from: RolloutState,
    pub to: RolloutState,
    pub reason: String,
}

/// One wave's devices by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveCounts {
    pub devices: usize,
    pub pending: usize,
    pub active: usize,
    /// Succeeded, up-to-date devices included.
    pub succeeded: usize,
    /// Rejected, failed, timed out or rolled back.
    pub failed: usize,
    pub cancelled: usize,
    /// Of `succeeded`: devices that already ran the image (nothing sent).
    #[serde(default)]
    pub up_to_date: usize,
    /// Of `failed`: devices that booted the update and came back on another image.
    #[serde(default)]
    pub rolled_back: usize,
    /// Of `active`: devices whose update waits for their confirmation after a reboot.
    #[serde(default)]
    pub confirming: usize,
    /// Of `succeeded`: devices that said after their reboot that they run the image.
    #[serde(default)]
    pub confirmed: usize,
}

/// The reason code a device gives for "busy: try again later" (PROTOCOL.md).
const BUSY_CODE: u64 = 6;
/// Tries again a device that answered busy, however few `retries` the rollout allows.
pub const BUSY_RETRIES: u32 = 3;

/// The most state changes kept in a rollout's history (the newest).
const MAX_CHANGES: usize = 200;
/// Unfinished jobs a rollout without `max_concurrent` holds at once. The engine runs 64
/// transfers and 1,024 requests at a time; jobs made far ahead of that only wait, each held in
/// memory, and a pause or cancel must undo them all. A job's end makes room for the next.
pub const UNCAPPED_AT_ONCE: usize = 4096;

/// How a rollout's reason begins while it waits for a window.
const WINDOW_WAIT: &str = "waiting for the window that";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: RolloutId,
    pub plan: RolloutPlan,
    pub state: RolloutState,
    /// Why it is in its state (a pause, an abort, how it ended).
    pub reason: Option<String>,
    /// The wave whose devices are being started (from 0; `wave_count` once all have been).
    pub wave: usize,
    pub created_at: u64,
    pub updated_at: u64,
    /// Its devices in order (the plan's list, taken over when the rollout is made). The store
    /// writes them in rows of their own, so the rollout's JSON leaves them out.
    #[serde(skip)]
    pub devices: Devices,
    /// When the last job started, for `max_per_minute`.
    pub last_start: Option<u64>,
    pub changes: Vec<RolloutChange>,
    /// Changes ever made, including those the history no longer keeps.
    #[serde(default)]
    pub changes_total: u64,
    /// What its finished jobs sent, against what whole images would have (the delta extension).
    #[serde(default)]
    pub bytes: RolloutBytes,
    /// While its windows are all closed: when the next one opens (Unix ms), for the task to
    /// wake then. Worked out again at every step.
    #[serde(skip)]
    pub window_opens: Option<u64>,
}

/// A rollout's bytes on the wire: `sent` is what its finished jobs sent (chunks, resends
/// included); `whole_image` is what they would have sent without patches (a job that sent a
/// patch counts its image's size instead).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutBytes {
    pub sent: u64,
    pub whole_image: u64,
}

impl RolloutBytes {
    /// A finished job's share: `bytes_sent` of an image of `image_size`, as a patch or not.
    pub fn add(&mut self, bytes_sent: u64, image_size: u64, patched: bool) {
        self.sent = self.sent.saturating_add(bytes_sent);
        let whole = if patched { image_size.max(bytes_sent) } else { bytes_sent };
        self.whole_image = self.whole_image.saturating_add(whole);
    }

    /// The share of the bytes patches saved, in percent (none before anything was sent).
    pub fn saved_percent(&self) -> Option<f64> {
        (self.whole_image > 0 && self.sent < self.whole_image)
            .then(|| (self.whole_image - self.sent) as f64 * 100.0 / self.whole_image as f64)
    }
}

impl Rollout {
    /// A rollout of `plan`, which gives it its device list (the plan keeps its settings).
    pub fn new(id: RolloutId, mut plan: RolloutPlan, now: u64) -> Self {
        let devices = Devices::new(&std::mem::take(&mut plan.devices));
        Self {
            id,
            plan,
            state: RolloutState::Scheduled,
            reason: None,
            wave: 0,
            created_at: now,
            updated_at: now,
            devices,
            last_start: None,
            changes: Vec::new(),
            changes_total: 0,
            bytes: RolloutBytes::default(),
            window_opens: None,
        }
    }

    /// A copy without what grows with the fleet (devices, outcomes, history), for listings.
    pub fn head(&self) -> Rollout {
        let plan = self.plan.clone_settings();
        Rollout {
            id: self.id,
            plan,
            state: self.state,
            reason: self.reason.clone(),
            wave: self.wave,
            created_at: self.created_at,
            updated_at: self.updated_at,
            devices: Devices::default(),
            last_start: self.last_start,
            changes: Vec::new(),
            changes_total: self.changes_total,
            bytes: self.bytes,
            window_opens: self.window_opens,
        }
    }

    fn set_state(&mut self, to: RolloutState, reason: String, now: u64) {
        if self.state == to && self.reason.as_deref() == Some(reason.as_str()) {
            return;
        }
        self.changes.push(RolloutChange { at: now, from: self.state, to, reason: reason.clone() });
        self.changes_total += 1;
        if self.changes.len() > MAX_CHANGES {
            self.changes.remove(0);
        }
        self.state = to;
        self.reason = Some(reason);
        self.updated_at = now;
    }

    fn active(&self) -> usize {
        self.devices.count(Outcome::Active) + self.devices.count(Outcome::Confirming)
    }

    /// Moves the rollout on at `now`: starts what its rules allow, finishes waves and the
    /// whole. `up_to_date` says whether a device's last succeeded image is this one.
    pub fn step(&mut self, now: u64, up_to_date: &dyn Fn(&str) -> bool) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state == RolloutState::Scheduled
            && let Some(at) = self.plan.start_at.filter(|at| now < *at)
        {
            // Nothing starts before its time; it says when that is.
            let reason = format!("scheduled: starts at {}", crate::units::utc(at));
            if self.reason.as_deref() != Some(reason.as_str()) {
                self.reason = Some(reason);
                self.updated_at = now;
            }
            return actions;
        }
        if self.state == RolloutState::Scheduled {
            let waves = self.plan.wave_count();
            match self.plan.gates {
                Gates::Auto => {
                    let waves = if waves == 1 { "1 wave".to_owned() } else { format!("{waves} waves") };
                    self.set_state(RolloutState::Running, format!("started: {waves}"), now)
                }
                Gates::Manual => self.set_state(
                    RolloutState::Paused,
                    format!("manual gates: resume to start wave 1 of {waves}"),
                    now,
                ),
            }
        }
        // Retries come due whatever the state, so a paused rollout shows them as pending.
        for index in self.devices.retries_due(now) {
            if self.devices.outcome(index) == Some(Outcome::Retrying) {
                self.devices.set_outcome(index, Outcome::Pending);
                self.updated_at = now;
            }
            self.devices.set_retry_at(index, None);
        }
        // Outside its windows it starts nothing (jobs under way finish, waves still end).
        let open = self.state != RolloutState::Running || self.judge_window(now);
        while self.state == RolloutState::Running {
            if open {
                self.start_due(now, up_to_date, &mut actions);
            }
            if !self.finish_wave(now) {
                break;
            }
        }
        actions
    }

    /// Whether a window is open at `now`; while none is, the reason says when one opens
    /// (without a change of state: waiting is part of running).
    fn judge_window(&mut self, now: u64) -> bool {
        // Known closed until then: nothing to work out again.
        if self.window_opens.is_some_and(|at| now < at) {
            return false;
        }
        if let Some(problem) = super::window::problem(&self.plan.windows) {
            // A zone this instance does not know (its zoneinfo lacks it): nothing starts, and
            // the reason says why; looked at again in a minute.
            let reason = format!("its windows cannot be judged on this instance ({problem}): nothing starts");
            if self.reason.as_deref() != Some(reason.as_str()) {
                self.reason = Some(reason);
                self.updated_at = now;
            }
            self.window_opens = Some(now.saturating_add(60_000));
            return false;
        }
        if super::window::open_at(&self.plan.windows, now) {
            self.window_opens = None;
            if self.reason.as_deref().is_some_and(|r| r.starts_with(WINDOW_WAIT)) {
                self.reason = Some("its window is open".into());
                self.updated_at = now;
            }
            return true;
        }
        let next = super::window::next_opening(&self.plan.windows, now);
        self.window_opens = next.as_ref().map(|(at, _)| *at);
        let reason = match next {
            Some((at, local)) => format!("{WINDOW_WAIT} opens {local} ({})", crate::units::utc(at)),
            None => format!("{WINDOW_WAIT} opens (none in the next 8 days)"),
        };
        if self.reason.as_deref() != Some(reason.as_str()) {
            self.reason = Some(reason);
            self.updated_at = now;
        }
        false
    }

    /// Starts the pending devices of waves up to the current one, within the pace and
    /// concurrency caps. Retried devices of earlier waves go first.
    fn start_due(&mut self, now: u64, up_to_date: &dyn Fn(&str) -> bool, actions: &mut Vec<Action>) {
        let end = self.plan.wave_range(self.wave).end;
        let max_active = self.plan.max_concurrent.map_or(UNCAPPED_AT_ONCE, |n| n as usize);
        let spacing = self.plan.start_spacing_ms();
        let mut active = self.active();
        // Every device before the first open one has finished: none of them is pending.
        for index in self.devices.first_open()..end {
            if self.devices.outcome(index) != Some(Outcome::Pending) {
                continue;
            }
            if self.plan.skip_up_to_date
                && self.devices.attempts(index) == 0
                && up_to_date(self.devices.id(index))
            {
                self.devices.set_outcome(index, Outcome::UpToDate);
                self.devices.set_detail(index, Some("already up to date"));
                self.updated_at = now;
                continue;
            }
            if active >= max_active {
                break;
            }
            if let (Some(spacing), Some(last)) = (spacing, self.last_start)
                && now < last.saturating_add(spacing)
            {
                break;
            }
            self.devices.set_outcome(index, Outcome::Active);
            self.devices.set_attempts(index, self.devices.attempts(index) + 1);
            self.devices.set_detail(index, None);
            // A retry's earlier job is over: the device waits for its new one.
            self.devices.set_job(index, None);
            self.last_start = Some(now);
            self.updated_at = now;
            active += 1;
            actions.push(Action::Start(index));
        }
    }

    /// When every device of the current wave has finished: judges it and moves to the next
    /// wave, a pause, or the end. True when the next wave may start at once.
    fn finish_wave(&mut self, now: u64) -> bool {
        let range = self.plan.wave_range(self.wave);
        if self.devices.first_open() < range.end {
            return false;
        }
        let waves = self.plan.wave_count();
        let size = range.len().max(1);
        let succeeded =
            self.devices.outcomes().skip(range.start).take(range.len()).filter(|o| o.is_success()).count();
        let share = succeeded as f64 / size as f64;
        let number = self.wave + 1;
        self.wave += 1;
        if self.wave >= waves {
            let updated = self.devices.outcomes().filter(|o| o.is_success()).count();
            let total = self.devices.len();
            if updated == total {
                self.set_state(RolloutState::Succeeded, format!("all {total} devices are up to date"), now);
            } else {
                self.set_state(
                    RolloutState::Completed,
                    format!("{} of {total} devices did not update", total - updated),
                    now,
                );
            }
            return false;
        }
        if share < self.plan.success_threshold {
            let reason = format!(
                "wave {number} of {waves}: {succeeded} of {size} devices succeeded ({:.0}%), under the success threshold of {:.0}%; resume to start wave {} anyway",
                share * 100.0,
                self.plan.success_threshold * 100.0,
                number + 1
            );
            self.set_state(RolloutState::Paused, reason, now);
            return false;
        }
        if self.plan.gates == Gates::Manual {
            let reason = format!(
                "wave {number} of {waves} finished ({succeeded} of {size} succeeded); manual gates: resume to start wave {}",
                number + 1
            );
            self.set_state(RolloutState::Paused, reason, now);
            return false;
        }
        true
    }

    /// The job for the device at `index` was created.
    /// The job for the device at `index` was created. When the rollout ended meanwhile (an abort
    /// or a cancel while the job was being created), it asks for the job to be cancelled.
    pub fn job_started(&mut self, index: usize, job: JobId, now: u64) -> Vec<Action> {
        if index >= self.devices.len() {
            return Vec::new();
        }
        self.devices.set_job(index, Some(job));
        self.updated_at = now;
        match self.state {
            RolloutState::Cancelled => vec![Action::Cancel(job)],
            RolloutState::Aborted => vec![Action::CancelIfQueued(job)],
            _ => Vec::new(),
        }
    }

    /// Whether the device at `index` still waits for its job to be created (the rollout may
    /// have been paused, aborted or cancelled since it was asked for).
    pub fn still_starting(&self, index: usize) -> bool {
        matches!(self.state, RolloutState::Running | RolloutState::Paused) && self.waits_for_job(index)
    }

    /// The job for the device at `index` could not be created for a passing reason (the job
    /// store is busy or its disk full): the device is tried again after `wait_ms`, without
    /// counting it as a try.
    pub fn start_deferred(&mut self, index: usize, why: String, wait_ms: u64, now: u64) {
        if self.waits_for_job(index) {
            self.devices.set_outcome(index, Outcome::Retrying);
            self.devices.set_attempts(index, self.devices.attempts(index).saturating_sub(1));
            self.devices.set_retry_at(index, Some(now.saturating_add(wait_ms)));
            self.devices
                .set_detail(index, Some(&format!("no job could be created yet ({why}); trying again")));
            self.updated_at = now;
        }
    }

    /// A job of this rollout disappeared before its end was seen (retention removed it).
    pub fn job_lost(&mut self, job: JobId, now: u64) -> Vec<Action> {
        let Some(index) =
            self.slot_of(job).filter(|&i| self.devices.outcome(i).is_some_and(Outcome::in_progress))
        else {
            return Vec::new();
        };
        self.devices.set_outcome(index, Outcome::Failed);
        self.devices.set_detail(index, Some(&format!("job {job} was removed before its end was seen")));
        self.updated_at = now;
        self.judge_abort(now)
    }

    /// Adopts the jobs a crash kept the rollout from recording: `newest` is, by device, the
    /// newest job the rollout created for it. A device asked to start whose job was never
    /// created starts again. Returns the jobs adopted.
    pub fn adopt(&mut self, newest: &HashMap<String, JobId>) -> Vec<JobId> {
        let mut adopted = Vec::new();
        for index in 0..self.devices.len() {
            let Some(outcome) = self.devices.outcome(index).filter(|o| !o.is_final()) else { continue };
            let known = self.devices.job_id(index);
            match newest.get(self.devices.id(index)) {
                Some(&job) if known.is_none_or(|known| known < job) => {
                    self.devices.set_job(index, Some(job));
                    self.devices.set_outcome(index, Outcome::Active);
                    self.devices.set_retry_at(index, None);
                    self.devices.set_attempts(index, self.devices.attempts(index).max(1));
                    adopted.push(job);
                }
                None if outcome == Outcome::Active && known.is_none() => {
                    self.devices.set_outcome(index, Outcome::Pending);
                    self.devices.set_attempts(index, self.devices.attempts(index).saturating_sub(1));
                }
                _ => {}
            }
        }
        adopted
    }

    /// The job for the device at `index` was not created because Rocky is stopping: it starts
    /// again later, as if never asked for.
    pub fn start_abandoned(&mut self, index: usize, now: u64) {
        if self.waits_for_job(index) {
            // An ended rollout starts nothing more: the device is cancelled, as `stop` does
            // with those not started.
            let outcome = if self.state.is_final() { Outcome::Cancelled } else { Outcome::Pending };
            self.devices.set_outcome(index, outcome);
            if outcome == Outcome::Cancelled {
                let why = format!("not started: the rollout was {}", self.state.as_str());
                self.devices.set_detail(index, Some(&why));
            }
            self.devices.set_attempts(index, self.devices.attempts(index).saturating_sub(1));
            self.updated_at = now;
        }
    }

    /// The job for the device at `index` could not be created (the message says why): the
    /// device counts as failed, and is not retried.
    pub fn start_failed(&mut self, index: usize, error: String, now: u64) -> Vec<Action> {
        if index < self.devices.len() {
            self.devices.set_outcome(index, Outcome::Failed);
            self.devices.set_detail(index, Some(&format!("no job could be created: {error}")));
            self.updated_at = now;
        }
        self.judge_abort(now)
    }

    /// Which device's job this is, if it is this rollout's latest job for it.
    pub fn slot_of(&self, job: JobId) -> Option<usize> {
        self.devices.position_of_job(job)
    }

    /// Whether the device at `index` was asked to start and its job is not yet created.
    fn waits_for_job(&self, index: usize) -> bool {
        self.devices.outcome(index) == Some(Outcome::Active) && self.devices.job_id(index).is_none()
    }

    /// A job of this rollout is waiting for its device's confirmation after a reboot.
    pub fn job_confirming(&mut self, job: JobId, now: u64) {
        let Some(index) = self.slot_of(job) else { return };
        if self.devices.outcome(index) == Some(Outcome::Active) {
            self.devices.set_outcome(index, Outcome::Confirming);
            self.updated_at = now;
        }
    }

    /// A job of this rollout that succeeded was confirmed by its device's status.
    pub fn job_confirmed(&mut self, job: JobId) {
        if let Some(index) = self.slot_of(job)
            && self.devices.outcome(index) == Some(Outcome::Succeeded)
        {
            self.devices.set_outcome(index, Outcome::Confirmed);
        }
    }

    /// A job of this rollout ended in `state` with `error`.
    pub fn job_finished(
        &mut self,
        job: JobId,
        state: JobState,
        error: Option<&str>,
        reason_code: Option<u64>,
        now: u64,
    ) -> Vec<Action> {
        let Some(index) = self.slot_of(job) else { return Vec::new() };
        let retries = self.plan.retries;
        let stopped = matches!(self.state, RolloutState::Aborted | RolloutState::Cancelled);
        if !self.devices.outcome(index).is_some_and(Outcome::in_progress) {
            return Vec::new();
        }
        let was_busy = state == JobState::Rejected && reason_code == Some(BUSY_CODE);
        let (outcome, retry) = match state {
            JobState::Succeeded => (Outcome::Succeeded, false),
            JobState::UpToDate => (Outcome::UpToDate, false),
            JobState::Failed => (Outcome::Failed, true),
            JobState::RolledBack => (Outcome::RolledBack, true),
            JobState::TimedOut => (Outcome::TimedOut, true),
            JobState::Rejected => (Outcome::Rejected, was_busy),
            JobState::Cancelled => (Outcome::Cancelled, false),
            _ => return Vec::new(),
        };
        self.devices.set_outcome(index, outcome);
        self.devices.set_detail(index, error);
        // A busy device asked to be tried later: it gets at least BUSY_RETRIES more tries.
        let budget = if was_busy { retries.max(BUSY_RETRIES) } else { retries };
        let attempts = self.devices.attempts(index);
        if retry && !stopped && attempts <= budget {
            let wait = self.plan.backoff_ms(attempts + 1);
            let detail = format!(
                "{}; try {} of {} in {} s",
                error.unwrap_or("no reason given"),
                attempts + 1,
                budget + 1,
                wait / 1000
            );
            self.devices.set_detail(index, Some(&detail));
            self.devices.set_outcome(index, Outcome::Retrying);
            self.devices.set_retry_at(index, Some(now.saturating_add(wait)));
        }
        self.updated_at = now;
        self.judge_abort(now)
    }

    /// Aborts when enough devices have finished and too large a share of them failed.
    fn judge_abort(&mut self, now: u64) -> Vec<Action> {
        let Some(rule) = self.plan.abort.clone() else { return Vec::new() };
        if !matches!(self.state, RolloutState::Running | RolloutState::Paused | RolloutState::Scheduled) {
            return Vec::new();
        }
        let count = |outcomes: &[Outcome]| outcomes.iter().map(|&o| self.devices.count(o)).sum::<usize>();
        let failed = count(&[Outcome::Failed, Outcome::TimedOut, Outcome::RolledBack])
            + if rule.count_rejected { count(&[Outcome::Rejected]) } else { 0 };
        let finished = count(&[
            Outcome::Succeeded,
            Outcome::Confirmed,
            Outcome::Failed,
            Outcome::TimedOut,
            Outcome::Rejected,
            Outcome::RolledBack,
        ]);
        if finished == 0 || finished < rule.min_finished as usize {
            return Vec::new();
        }
        let share = failed as f64 / finished as f64;
        if share < rule.failure_share {
            return Vec::new();
        }
        let reason = format!(
            "{failed} of {finished} finished devices failed ({:.0}%), at or over the abort share of {:.0}%",
            share * 100.0,
            rule.failure_share * 100.0
        );
        self.stop(RolloutState::Aborted, reason, rule.cancel_active, now)
    }

    /// Ends the rollout: devices not started are cancelled, active jobs too when asked.
    fn stop(&mut self, to: RolloutState, reason: String, cancel_active: bool, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let why = format!("not started: the rollout was {}", to.as_str());
        for index in 0..self.devices.len() {
            match self.devices.outcome(index) {
                Some(Outcome::Pending | Outcome::Retrying) => {
                    self.devices.set_outcome(index, Outcome::Cancelled);
                    self.devices.set_retry_at(index, None);
                    self.devices.set_detail(index, Some(&why));
                }
                Some(Outcome::Active | Outcome::Confirming) if cancel_active => {
                    actions.extend(self.devices.job_id(index).map(Action::Cancel))
                }
                // Created but not yet sent anything: nothing more is sent for it.
                Some(Outcome::Active | Outcome::Confirming) => {
                    actions.extend(self.devices.job_id(index).map(Action::CancelIfQueued))
                }
                _ => {}
            }
        }
        self.set_state(to, reason, now);
        actions
    }

    /// Stops starting jobs (active ones finish). Err when the rollout has ended.
    pub fn pause(&mut self, now: u64) -> Result<(), String> {
        match self.state {
            s if s.is_final() => Err(format!("rollout {} has ended ({})", self.id, s.as_str())),
            RolloutState::Paused => Ok(()),
            _ => {
                self.set_state(RolloutState::Paused, "paused by the operator".into(), now);
                Ok(())
            }
        }
    }

    /// Goes on: through a manual gate or past a wave under the success threshold.
    pub fn resume(&mut self, now: u64) -> Result<(), String> {
        match self.state {
            s if s.is_final() => Err(format!("rollout {} has ended ({})", self.id, s.as_str())),
            RolloutState::Running => Ok(()),
            // Before its start time, a resume keeps the schedule (it starts nothing sooner).
            _ if self.plan.start_at.is_some_and(|at| now < at) => {
                if self.state != RolloutState::Scheduled {
                    let at = self.plan.start_at.map(crate::units::utc).unwrap_or_default();
                    self.set_state(
                        RolloutState::Scheduled,
                        format!("resumed by the operator; scheduled: starts at {at}"),
                        now,
                    );
                }
                Ok(())
            }
            _ => {
                let reason = format!(
                    "resumed by the operator at wave {} of {}",
                    self.wave + 1,
                    self.plan.wave_count()
                );
                self.set_state(RolloutState::Running, reason, now);
                Ok(())
            }
        }
    }

    /// Cancels the rollout and its active jobs.
    pub fn cancel(&mut self, now: u64) -> Result<Vec<Action>, String> {
        if self.state.is_final() {
            return Err(format!("rollout {} has ended ({})", self.id, self.state.as_str()));
        }
        Ok(self.stop(RolloutState::Cancelled, "cancelled by the operator".into(), true, now))
    }

    /// When [`Rollout::step`] next has something to do, if ever (a retry or a paced start).
    pub fn next_wakeup(&self) -> Option<u64> {
        if self.state == RolloutState::Scheduled
            && let Some(at) = self.plan.start_at
        {
            return Some(at);
        }
        if self.state == RolloutState::Running
            && let Some(at) = self.window_opens
        {
            return Some(at);
        }
        let retry = self.devices.next_retry();
        let room = self.active() < self.plan.max_concurrent.map_or(UNCAPPED_AT_ONCE, |max| max as usize);
        let paced = match (self.state, self.plan.start_spacing_ms(), self.last_start) {
            // With the concurrency cap full, a job's end (not the clock) is what frees a start.
            (RolloutState::Running, Some(spacing), Some(last)) if room => {
                let end = self.plan.wave_range(self.wave).end;
                let from = self.devices.open_at_least();
                self.devices
                    .outcomes()
                    .skip(from)
                    .take(end.saturating_sub(from))
                    .any(|o| o == Outcome::Pending)
                    .then(|| last.saturating_add(spacing))
            }
            _ => None,
        };
        retry.into_iter().chain(paced).min()
    }

    /// Every wave's devices by outcome.
    pub fn wave_counts(&self) -> Vec<WaveCounts> {
        (0..self.plan.wave_count())
            .map(|wave| {
                let mut counts = WaveCounts::default();
                let range = self.plan.wave_range(wave);
                for outcome in self.devices.outcomes().skip(range.start).take(range.len()) {
                    counts.devices += 1;
                    match outcome {
                        Outcome::Pending | Outcome::Retrying => counts.pending += 1,
                        Outcome::Active => counts.active += 1,
                        Outcome::Confirming => {
                            counts.active += 1;
                            counts.confirming += 1;
                        }
                        Outcome::Succeeded => counts.succeeded += 1,
                        Outcome::Confirmed => {
                            counts.succeeded += 1;
                            counts.confirmed += 1;
                        }
                        Outcome::UpToDate => {
                            counts.succeeded += 1;
                            counts.up_to_date += 1;
                        }
                        Outcome::Rejected | Outcome::Failed | Outcome::TimedOut => counts.failed += 1,
                        Outcome::RolledBack => {
                            counts.failed += 1;
                            counts.rolled_back += 1;
                        }
                        Outcome::Cancelled => counts.cancelled += 1,
                    }
                }
                counts
            })
            .collect()
    }
}
