//! The rollout task: it owns every rollout, steps them on time and as their jobs end, creates
//! and cancels their jobs through the handle like any client, and keeps them in the store.
//!
//! The API reads and changes rollouts through [`Rollouts`] (a lock held only for plain data);
//! an operator's change is on disk before it is answered, and every job a change asks for is
//! carried out by the task. A rollout resumed after a crash finds the jobs it created in their
//! own rows (`jobs.rollout_id`), so none is created twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::cluster::Leadership;
use super::{Clock, Handle, JobChange, RolloutNotice, RuntimeError, RuntimeEvent};
use crate::engine::{JobId, JobSpec};
use crate::firmware::{ChunkSize, parse_sha256};
use crate::rollout::{Action, DeviceWindow, Rollout, RolloutId, RolloutPlan, RolloutView};
use crate::store::{RolloutRow, Store, WriteError};

/// Rollouts under way at once; a new one past this is refused.
pub const MAX_OPEN: usize = 64;
/// Ended rollouts kept (the newest); older ones are forgotten when a new one is created.
pub const KEEP_ENDED: usize = 1000;
/// Devices all kept rollouts may name together; past it the oldest ended ones are forgotten
/// (a rollout names at most 100,000).
pub const KEEP_SLOTS: usize = 1_000_000;
/// How often changed rollouts are written at most (and at a graceful stop).
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// The task looks at its rollouts at least this often, and at most this often when woken.
const IDLE_WAKE: Duration = Duration::from_secs(1);
const LEAST_WAIT: Duration = Duration::from_millis(10);
/// Jobs created in one pass of the task: between passes it hears of jobs that ended and of
/// the operator's pauses and cancels.
const STARTS_PER_PASS: usize = 64;
/// How long a device waits when its job could not be created for a passing reason.
const DEFER_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("no rollout {0}")]
    NotFound(RolloutId),
    #[error("{0}")]
    Ended(String),
    #[error("{MAX_OPEN} rollouts are under way; the limit is {MAX_OPEN}: cancel one or wait for one to end")]
    TooMany,
    #[error(transparent)]
    Store(#[from] WriteError),
    /// Instances sharing a store plan rollouts in one of them at a time.
    #[error("{}", elsewhere(.0))]
    Elsewhere(String),
}

fn elsewhere(leader: &str) -> String {
    if leader.is_empty() {
        "no instance plans rollouts right now (this one cannot reach the shared store); try again shortly"
            .to_owned()
    } else {
        format!("rollouts are planned by instance {leader}: send this to its API")
    }
}

/// The role in a shared store whose holder plans every rollout.
const ROLE: &str = "rollouts";
/// How often an instance that does not plan rollouts reads them again from the store.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// The rollouts, shared by the task and the API.
#[derive(Clone)]
pub struct Rollouts {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
    store: Option<Store>,
    clock: Clock,
    /// Held from working out what to write until it is written, so two writes of one rollout
    /// never land in the other order.
    writing: Arc<tokio::sync::Mutex<()>>,
    /// With a store shared by several instances, which one plans rollouts (only that one steps
    /// them and takes changes; the others show them as stored).
    leadership: Leadership,
    /// Every change of state, as announced, for whoever listens beside the event stream
    /// (notifications): never waits, and a listener that falls behind is told how far.
    notices: tokio::sync::broadcast::Sender<RolloutNotice>,
    /// A listener made with the channel, so the first to ask hears the changes since the start
    /// (the task's first pass runs before anyone could subscribe).
    first_listener: Arc<Mutex<Option<tokio::sync::broadcast::Receiver<RolloutNotice>>>>,
}

/// Changes of state kept for a listener that has not read them yet.
const NOTICES_KEPT: usize = 1024;

/// A job the task is to cancel; `only_if_queued` when it may go on if it already started.
type CancelOrder = (JobId, bool);

#[derive(Default)]
struct Inner {
    rollouts: BTreeMap<RolloutId, Rollout>,
    /// The last id given (`None`: none yet).
    last_id: Option<RolloutId>,
    /// Which rollout each of their unfinished jobs belongs to.
    jobs: HashMap<JobId, RolloutId>,
    cancels: Vec<CancelOrder>,
    dirty: BTreeSet<RolloutId>,
    /// While another instance plans rollouts: the save number of each rollout as read, so only
    /// those saved since are read again.
    saves: HashMap<RolloutId, i64>,
}

impl Inner {
    /// Refuses one more rollout while [`MAX_OPEN`] are under way.
    fn room_for_one(&self) -> Result<(), RolloutError> {
        if self.rollouts.values().filter(|r| !r.state.is_final()).count() >= MAX_OPEN {
            Err(RolloutError::TooMany)
        } else {
            Ok(())
        }
    }

    /// The task's view of these rollouts, with each one's unfinished jobs known.
    fn of(rollouts: Vec<Rollout>) -> Self {
        let mut inner = Inner::default();
        for rollout in rollouts {
            inner.last_id = inner.last_id.max(Some(rollout.id));
            let devices = &rollout.devices;
            for index in (0..devices.len()).filter(|&i| devices.outcome(i).is_some_and(|o| !o.is_final())) {
                if let Some(job) = devices.job_id(index) {
                    inner.jobs.insert(job, rollout.id);
                }
            }
            inner.rollouts.insert(rollout.id, rollout);
        }
        inner
    }

    fn follow(&mut self, id: RolloutId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Cancel(job) => self.cancels.push((job, false)),
                Action::CancelIfQueued(job) => self.cancels.push((job, true)),
                Action::Start(_) => {}
            }
        }
        self.dirty.insert(id);
    }

    /// Forgets the oldest ended rollouts past [`KEEP_ENDED`] or [`KEEP_SLOTS`]; returns them.
    fn retain(&mut self) -> Vec<RolloutId> {
        let ended: Vec<RolloutId> =
            self.rollouts.values().filter(|r| r.state.is_final()).map(|r| r.id).collect();
        let mut slots: usize = self.rollouts.values().map(|r| r.devices.len()).sum();
        let mut count = ended.len();
        let mut forgotten = Vec::new();
        for id in ended {
            if count <= KEEP_ENDED && slots <= KEEP_SLOTS {
                break;
            }
            if let Some(rollout) = self.rollouts.remove(&id) {
                slots -= rollout.devices.len();
            }
            self.dirty.remove(&id);
            count -= 1;
            forgotten.push(id);
        }
        forgotten
    }
}

impl Rollouts {
    pub fn new(rollouts: Vec<Rollout>, store: Option<Store>, clock: Clock) -> Self {
        let shared = store.as_ref().and_then(|store| store.membership().cloned());
        let inner = Inner::of(rollouts);
        let (notices, first_listener) = tokio::sync::broadcast::channel(NOTICES_KEPT);
        Self {
            leadership: Leadership::new(ROLE, shared),
            inner: Arc::new(Mutex::new(inner)),
            wake: Arc::new(Notify::new()),
            store,
            clock,
            writing: Arc::new(tokio::sync::Mutex::new(())),
            notices,
            first_listener: Arc::new(Mutex::new(Some(first_listener))),
        }
    }

    /// Every change of a rollout's state as the task announces it: the first caller from the
    /// start (up to [`NOTICES_KEPT`] back), later ones from now on.
    pub fn notices(&self) -> tokio::sync::broadcast::Receiver<RolloutNotice> {
        let first = self.first_listener.lock().unwrap_or_else(|p| p.into_inner()).take();
        first.unwrap_or_else(|| self.notices.subscribe())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.clock.unix_ms(self.clock.now())
    }

    /// Whether this instance plans rollouts: always, unless it shares its store with others
    /// and another one does (or none can be sure it does).
    fn plans(&self) -> bool {
        self.leadership.holds()
    }

    /// Refuses a change this instance may not make: another instance plans rollouts.
    fn may_change(&self) -> Result<(), RolloutError> {
        if self.plans() { Ok(()) } else { Err(RolloutError::Elsewhere(self.leadership.holder())) }
    }

    /// Asks the shared store who plans rollouts, taking the role when no live instance has it.
    async fn elect(&self) {
        self.leadership.elect().await;
    }

    /// Replaces what this instance holds with the rollouts as stored, on beginning to plan
    /// them (while another instance plans them, [`Self::catch_up`] reads what changed).
    async fn reload(&self) -> Result<(), crate::store::StoreError> {
        let Some(store) = &self.store else { return Ok(()) };
        let loaded = store.load_rollouts().await?;
        *self.lock() = Inner::of(loaded);
        Ok(())
    }

    /// Brings the rollouts shown up to those stored, while another instance plans them:
    /// reads only those saved since the last time, and drops those gone from the store.
    async fn catch_up(&self) -> Result<(), crate::store::StoreError> {
        let Some(store) = &self.store else { return Ok(()) };
        let known = self.lock().saves.clone();
        let stored = store.rollouts_saved_since(&known).await?;
        let mut inner = self.lock();
        // Every number as known, none added or gone (an added one is read or unreadable), and
        // every rollout shown was read under a number (not, say, while it planned them).
        let unchanged = stored.read.is_empty()
            && stored.unreadable.is_empty()
            && stored.saves.len() == known.len()
            && inner.rollouts.keys().all(|id| known.contains_key(id));
        if unchanged {
            return Ok(());
        }
        let mut rollouts = std::mem::take(&mut inner.rollouts);
        rollouts.retain(|id, _| stored.saves.contains_key(id) && !stored.unreadable.contains(id));
        rollouts.extend(stored.read.into_iter().map(|rollout| (rollout.id, rollout)));
        *inner = Inner::of(rollouts.into_values().collect());
        inner.saves = stored.saves.into_iter().filter_map(|(id, saved)| Some((id, saved?))).collect();
        Ok(())
    }

    /// Creates a rollout; it is on disk (with a store) before this returns, and starts at once.
    pub async fn create(&self, plan: RolloutPlan) -> Result<Rollout, RolloutError> {
        self.may_change()?;
        let rollout = {
            let mut inner = self.lock();
            inner.room_for_one()?;
            let id = inner.last_id.map_or(RolloutId::FIRST, RolloutId::next);
            inner.last_id = Some(id);
            let rollout = Rollout::new(id, plan, self.now());
            // Held from now on (it counts as open), so racing creations cannot pass the cap.
            inner.rollouts.insert(rollout.id, rollout.clone());
            rollout
        };
        if let Err(e) = self.write(&[rollout.id]).await {
            let mut inner = self.lock();
            inner.rollouts.remove(&rollout.id);
            inner.dirty.remove(&rollout.id);
            return Err(e.into());
        }
        let forgotten = self.lock().retain();
        if let (Some(store), false) = (&self.store, forgotten.is_empty()) {
            store.forget_rollouts(forgotten).await;
        }
        self.wake.notify_one();
        Ok(rollout)
    }

    /// Whether a rollout could be created here now (a dry run asks): this instance plans
    /// rollouts and fewer than [`MAX_OPEN`] are under way.
    pub fn may_create(&self) -> Result<(), RolloutError> {
        self.may_change()?;
        self.lock().room_for_one()
    }

    pub fn get(&self, id: RolloutId) -> Option<Rollout> {
        self.lock().rollouts.get(&id).cloned()
    }

    /// The rollouts at a glance (no devices, no history), newest first, at most `limit`.
    pub fn list(&self, limit: usize) -> Vec<RolloutView> {
        let now = self.now();
        self.lock()
            .rollouts
            .values()
            .rev()
            .take(limit)
            .map(|r| RolloutView::summary(&r.head(), r.wave_counts(), r.plan.device_count(), now))
            .collect()
    }

    /// One rollout with its history and its devices: all of them, or those in `window`.
    pub fn view(&self, id: RolloutId, window: Option<DeviceWindow>) -> Option<RolloutView> {
        let now = self.now();
        self.lock().rollouts.get(&id).map(|r| RolloutView::windowed(r, now, window))
    }

    /// Applies an operator's change and writes it before answering.
    async fn change(
        &self,
        id: RolloutId,
        change: impl FnOnce(&mut Rollout, u64) -> Result<Vec<Action>, String>,
    ) -> Result<Rollout, RolloutError> {
        self.may_change()?;
        let now = self.now();
        let snapshot = {
            let mut inner = self.lock();
            let rollout = inner.rollouts.get_mut(&id).ok_or(RolloutError::NotFound(id))?;
            let actions = change(rollout, now).map_err(RolloutError::Ended)?;
            let snapshot = rollout.clone();
            inner.follow(id, actions);
            snapshot
        };
        if let Err(e) = self.write(&[id]).await {
            // Changed here but not on disk: written with the next save.
            self.wake.notify_one();
            return Err(e.into());
        }
        self.wake.notify_one();
        Ok(snapshot)
    }

    pub async fn pause(&self, id: RolloutId) -> Result<Rollout, RolloutError> {
        self.change(id, |r, now| r.pause(now).map(|()| Vec::new())).await
    }

    pub async fn resume(&self, id: RolloutId) -> Result<Rollout, RolloutError> {
        self.change(id, |r, now| r.resume(now).map(|()| Vec::new())).await
    }

    pub async fn cancel(&self, id: RolloutId) -> Result<Rollout, RolloutError> {
        self.change(id, |r, now| r.cancel(now)).await
    }

    /// Adopts the jobs a crash kept the rollouts from recording: for every device not yet
    /// finished, the newest job its rollout created for it (read from the jobs' own rows).
    pub async fn reconcile(&self) -> Result<(), crate::store::StoreError> {
        let Some(store) = &self.store else { return Ok(()) };
        let open: Vec<RolloutId> =
            self.lock().rollouts.values().filter(|r| !r.state.is_final()).map(|r| r.id).collect();
        for id in open {
            let jobs = store.rollout_jobs(id).await?;
            let mut newest: HashMap<String, JobId> = HashMap::new();
            for (job, device) in jobs {
                newest.insert(device, job);
            }
            let mut inner = self.lock();
            let Some(rollout) = inner.rollouts.get_mut(&id) else { continue };
            let adopted = rollout.adopt(&newest);
            if !adopted.is_empty() {
                tracing::info!(
                    rollout = id.get(),
                    jobs = adopted.len(),
                    "jobs created before the stop were adopted"
                );
            }
            for job in adopted {
                inner.jobs.insert(job, id);
            }
            inner.dirty.insert(id);
        }
        Ok(())
    }

    /// Writes the rollouts that changed.
    async fn save(&self) {
        let ids: Vec<RolloutId> = self.lock().dirty.iter().copied().collect();
        if let Err(e) = self.write(&ids).await {
            tracing::warn!(error = %e, "rollout changes could not be stored; trying again");
        }
    }

    /// Writes these rollouts: each one's head and the devices that changed since its last
    /// write (all of them the first time). On failure they stay dirty, to be written again.
    async fn write(&self, ids: &[RolloutId]) -> Result<(), WriteError> {
        let Some(store) = &self.store else {
            let mut inner = self.lock();
            for id in ids {
                inner.dirty.remove(id);
            }
            return Ok(());
        };
        let _writing = self.writing.lock().await;
        let rows: Vec<RolloutRow> = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            for id in ids {
                inner.dirty.remove(id);
            }
            ids.iter().filter_map(|id| Some(RolloutRow::of(inner.rollouts.get_mut(id)?))).collect()
        };
        if rows.is_empty() {
            return Ok(());
        }
        let mut taken = Taken {
            rollouts: self,
            written: rows.iter().map(|row| (row.id, row.devices.iter().map(|(i, _)| *i).collect())).collect(),
        };
        let result = store.save_rollouts(rows).await;
        if result.is_ok() {
            taken.written.clear();
        }
        result
    }
}

/// Rows taken for a write that has not succeeded: a failed write, or one whose caller stopped
/// waiting (an HTTP client that hung up), puts their devices back as unsaved and their rollouts
/// back on the list to write, so no change is lost.
struct Taken<'a> {
    rollouts: &'a Rollouts,
    written: Vec<(RolloutId, Vec<usize>)>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.written.is_empty() {
            return;
        }
        let mut inner = self.rollouts.lock();
        for (id, positions) in self.written.drain(..) {
            if let Some(rollout) = inner.rollouts.get_mut(&id) {
                rollout.devices.unsaved_again(positions);
            }
            inner.dirty.insert(id);
        }
    }
}

/// Steps every open rollout and carries out what they ask, until `stop`.
pub async fn run(rollouts: Rollouts, handle: Handle, mut stop: watch::Receiver<bool>) {
    let mut follower = handle.follow_jobs();
    let mut last_save = tokio::time::Instant::now();
    let mut announced: HashMap<RolloutId, u64> =
        rollouts.lock().rollouts.values().map(|r| (r.id, r.changes_total)).collect();
    if rollouts.leadership.shared().is_none() {
        // Jobs that ended while Rocky was down, or before their rollout heard of them.
        settle_known_jobs(&rollouts, &handle);
    }
    let mut followed_at = tokio::time::Instant::now();
    let mut follow_trouble = super::cluster::Trouble::new("read the rollouts another instance plans");
    // The lease term of the last pass in which it planned; `None` when it did not plan then.
    // Planning begins anew from the store whenever this instance plans and did not at the last
    // pass, or its lease ran out since (it may have run the follower branch meanwhile, or been
    // stuck in a pass through the lapse): job ends it did not apply are reconciled then, or
    // its rollouts would wait on them.
    let mut planned_in: Option<u64> = None;
    // Devices whose rollout asked for their job, not yet started: a step asks for every device
    // it may start (a wave of 100,000 at once), and a pass starts STARTS_PER_PASS of them.
    let mut to_start: std::collections::VecDeque<(RolloutId, usize)> = std::collections::VecDeque::new();
    loop {
        if rollouts.leadership.shared().is_some() {
            rollouts.elect().await;
            let term = rollouts.leadership.term();
            if rollouts.plans() && planned_in != Some(term) {
                // Planning from now on: from the rollouts as stored, with the jobs their
                // previous planner created and those that ended meanwhile.
                tracing::info!("this instance plans the rollouts now");
                match rollouts.reload().await.and(rollouts.reconcile().await) {
                    Ok(()) => planned_in = Some(term),
                    Err(error) => {
                        tracing::warn!(%error, "could not read the rollouts; trying again");
                        rollouts.leadership.forget();
                    }
                }
                announced = rollouts.lock().rollouts.values().map(|r| (r.id, r.changes_total)).collect();
                settle_from_store(&rollouts, &handle).await;
                to_start.clear();
            }
            if rollouts.plans() {
                // What it read while following is not what it plans from: should it follow
                // again, it reads every rollout anew, not only those saved since.
                rollouts.lock().saves.clear();
            } else {
                planned_in = None;
                to_start.clear();
                // Another instance plans them: show them as stored, and take no part.
                if followed_at.elapsed() >= FOLLOW_EVERY {
                    followed_at = tokio::time::Instant::now();
                    match rollouts.catch_up().await {
                        Ok(()) => {
                            follow_trouble.succeeded();
                        }
                        Err(error) => {
                            let lease_failing =
                                rollouts.leadership.shared().is_some_and(|m| m.problem().is_some());
                            follow_trouble.failed(&error, lease_failing, std::time::Instant::now());
                        }
                    }
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(IDLE_WAKE) => {}
                    changes = follower.next(1024) => if changes.is_none() { break },
                }
                continue;
            }
        }
        to_start.extend(step_all(&rollouts, &handle));
        let starts: Vec<_> = to_start.drain(..to_start.len().min(STARTS_PER_PASS)).collect();
        let more_waiting = !to_start.is_empty();
        start_jobs(&rollouts, &handle, starts).await;
        let cancels = std::mem::take(&mut rollouts.lock().cancels);
        // Together, in one commit. A job that already ended is fine: the rollout hears its end
        // anyway.
        if !cancels.is_empty() {
            let _ = handle.cancel_many(cancels).await;
        }
        announce(&rollouts, &handle, &mut announced);
        if !rollouts.lock().dirty.is_empty() && last_save.elapsed() >= SAVE_EVERY {
            rollouts.save().await;
            last_save = tokio::time::Instant::now();
        }
        let now = rollouts.now();
        let next = rollouts.lock().rollouts.values().filter_map(Rollout::next_wakeup).min();
        let mut wait =
            next.map_or(IDLE_WAKE, |at| Duration::from_millis(at.saturating_sub(now))).min(IDLE_WAKE);
        if !rollouts.lock().dirty.is_empty() {
            wait = wait.min(SAVE_EVERY);
        }
        // Never a busy loop; but starts left over from this pass go on at once.
        let wait = if more_waiting { Duration::ZERO } else { wait.max(LEAST_WAIT) };
        tokio::select! {
            _ = stop.changed() => break,
            _ = rollouts.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            changes = follower.next(1024) => match changes {
                Some(changes) => {
                    for change in &changes.changes {
                        match change {
                            JobChange::Job(job) if job.state.is_final() => {
                                finished(&rollouts, job);
                            }
                            JobChange::Job(job) if job.state == crate::engine::JobState::Confirming => {
                                confirming(&rollouts, job.id);
                            }
                            JobChange::Removed(id) => lost(&rollouts, *id),
                            _ => {}
                        }
                    }
                }
                None => break,
            },
        }
    }
    if rollouts.plans() {
        rollouts.save().await;
    }
}

/// Like [`settle_known_jobs`], for a planner that has just taken over: this instance's job
/// table may not hold the jobs other instances drive yet, so each rollout job is looked up in
/// the store (a job still under way there is heard of later, through the table).
async fn settle_from_store(rollouts: &Rollouts, handle: &Handle) {
    let Some(shared) = rollouts.leadership.shared().cloned() else { return };
    let jobs: Vec<JobId> = rollouts.lock().jobs.keys().copied().collect();
    for job in jobs {
        match shared.job(job).await {
            Ok(Some(snapshot)) if snapshot.state.is_final() => finished(rollouts, &snapshot),
            // This instance may have ended it already (a claimed job whose device is up to
            // date ends at once), before its end is written: the job table says so, and its
            // change went by while another instance planned.
            Ok(Some(_)) => {
                if let Some(local) = handle.job(job).filter(|local| local.state.is_final()) {
                    finished(rollouts, &local);
                }
            }
            Ok(None) => lost(rollouts, job),
            Err(error) => {
                tracing::debug!(%error, job = job.get(), "could not look a rollout's job up; it is heard of later");
            }
        }
    }
}

/// Puts every change of state not yet announced on the event stream.
fn announce(rollouts: &Rollouts, handle: &Handle, announced: &mut HashMap<RolloutId, u64>) {
    let mut notices = Vec::new();
    {
        let inner = rollouts.lock();
        announced.retain(|id, _| inner.rollouts.contains_key(id));
        for rollout in inner.rollouts.values() {
            let seen = announced.entry(rollout.id).or_insert(0);
            // The newest `new` changes are news (the history keeps only the newest).
            let new = usize::try_from(rollout.changes_total.saturating_sub(*seen)).unwrap_or(usize::MAX);
            let start = rollout.changes.len().saturating_sub(new);
            // The last change kept is number `changes_total`.
            let first = (rollout.changes_total + 1).saturating_sub(rollout.changes.len() as u64);
            for (index, change) in rollout.changes.iter().enumerate().skip(start) {
                notices.push(RolloutNotice {
                    rollout: rollout.id,
                    name: rollout.plan.name.clone(),
                    from: change.from,
                    to: change.to,
                    reason: change.reason.clone(),
                    change: first + index as u64,
                });
            }
            *seen = rollout.changes_total;
        }
    }
    for notice in notices {
        tracing::info!(rollout = notice.rollout.get(), name = %notice.name, state = notice.to.as_str(), reason = %notice.reason, "rollout changed");
        let _ = rollouts.notices.send(notice.clone());
        handle.announce(RuntimeEvent::Rollout(notice));
    }
}

/// A job waits for its device's confirmation: its rollout shows it.
fn confirming(rollouts: &Rollouts, job: JobId) {
    let now = rollouts.now();
    let mut inner = rollouts.lock();
    let Some(&id) = inner.jobs.get(&job) else { return };
    if let Some(rollout) = inner.rollouts.get_mut(&id) {
        rollout.job_confirming(job, now);
        inner.dirty.insert(id);
    }
}

/// A job ended: its rollout hears of it.
fn finished(rollouts: &Rollouts, job: &crate::snapshot::JobSnapshot) {
    let (state, error, reason_code) = (job.state, job.error.as_deref(), job.reason_code);
    let confirmed = job.confirmed_at.is_some();
    let (bytes_sent, image_size, patched) = (job.bytes_sent, job.image.size, job.delta.is_some());
    let job = job.id;
    let now = rollouts.now();
    let mut inner = rollouts.lock();
    let Some(id) = inner.jobs.remove(&job) else { return };
    let Some(rollout) = inner.rollouts.get_mut(&id) else { return };
    rollout.bytes.add(bytes_sent, image_size, patched);
    let actions = rollout.job_finished(job, state, error, reason_code, now);
    if confirmed {
        rollout.job_confirmed(job);
    }
    inner.follow(id, actions);
}

/// A job was removed (retention) before its end was seen.
fn lost(rollouts: &Rollouts, job: JobId) {
    let now = rollouts.now();
    let mut inner = rollouts.lock();
    let Some(id) = inner.jobs.remove(&job) else { return };
    let Some(rollout) = inner.rollouts.get_mut(&id) else { return };
    let actions = rollout.job_lost(job, now);
    inner.follow(id, actions);
}

fn settle_known_jobs(rollouts: &Rollouts, handle: &Handle) {
    let jobs: Vec<JobId> = rollouts.lock().jobs.keys().copied().collect();
    for job in jobs {
        match handle.job(job) {
            Some(snapshot) if snapshot.state.is_final() => finished(rollouts, &snapshot),
            Some(_) => {}
            None => lost(rollouts, job),
        }
    }
}

/// Steps every open rollout; returns the devices to start, as (rollout, position).
fn step_all(rollouts: &Rollouts, handle: &Handle) -> Vec<(RolloutId, usize)> {
    let now = rollouts.now();
    let inventory = handle.inventory().clone();
    let mut inner = rollouts.lock();
    let mut starts = Vec::new();
    let mut changed = Vec::new();
    for rollout in inner.rollouts.values_mut().filter(|r| !r.state.is_final()) {
        let before = rollout.updated_at;
        let sha = rollout.plan.image.sha256.clone();
        let up_to_date = |device: &str| inventory.runs(device, &sha);
        for action in rollout.step(now, &up_to_date) {
            if let Action::Start(index) = action {
                starts.push((rollout.id, index));
            }
        }
        if rollout.updated_at != before {
            changed.push(rollout.id);
        }
    }
    inner.dirty.extend(changed);
    starts
}

/// Why a rollout's device got no job this time.
enum Failed {
    /// Rocky is stopping: the device starts again later.
    Stopping,
    /// The job store is busy or full: the device waits and is tried again.
    Passing(String),
    Final(String),
}

/// Creates the jobs for devices of rollouts, or fails or defers each with the reason. Their
/// specs are made together, then submitted together in the order asked, so the rows go to the
/// store in one commit (persist's group commit), not one sync to disk each, and a wave's jobs
/// are numbered in its devices' order.
async fn start_jobs(rollouts: &Rollouts, handle: &Handle, starts: Vec<(RolloutId, usize)>) {
    use futures_util::future::join_all;
    let specs = join_all(starts.iter().map(|&(id, index)| job_spec(rollouts, handle, id, index))).await;
    let submitted = starts.into_iter().zip(specs).filter_map(|((id, index), spec)| {
        let spec = spec?;
        Some(async move {
            let result = match spec {
                Ok(spec) => submit(handle, spec, id).await,
                Err(failed) => Err(failed),
            };
            job_started(rollouts, handle, id, index, result);
        })
    });
    join_all(submitted).await;
}

/// The job one device of a rollout is to get; `None` when it is not to start now after all.
async fn job_spec(
    rollouts: &Rollouts,
    handle: &Handle,
    id: RolloutId,
    index: usize,
) -> Option<Result<JobSpec, Failed>> {
    // Asked for in this pass; a pause, an abort or a cancel since then means not now.
    let (plan, device) = {
        let inner = rollouts.lock();
        let rollout = inner.rollouts.get(&id)?;
        if !rollout.still_starting(index) || rollout.state != crate::rollout::RolloutState::Running {
            drop(inner);
            let mut inner = rollouts.lock();
            if let Some(rollout) = inner.rollouts.get_mut(&id) {
                rollout.start_abandoned(index, rollouts.now());
            }
            inner.dirty.insert(id);
            return None;
        }
        let device = rollout.devices.device_id(index)?;
        (rollout.plan.clone(), device)
    };
    let spec: Result<JobSpec, Failed> = async {
        let sha = parse_sha256(&plan.image.sha256).map_err(|e| Failed::Final(e.to_string()))?;
        let image = handle.library().find(&sha).await.map_err(Failed::Final)?.ok_or_else(|| {
            Failed::Final(format!(
                "image {} ({}) is no longer stored",
                plan.image.name,
                plan.image.short_hash()
            ))
        })?;
        let chunk_size =
            plan.chunk_size.map(|c| ChunkSize::new(u64::from(c))).transpose().map_err(Failed::Final)?;
        // The manifest rule again: the device may have said something new since the rollout
        // was created. It fails this device, in words, not the rollout.
        let manifests = handle.library().manifests();
        let manifest = manifests.get(&sha);
        if manifest.is_none() && manifests.require_signed() {
            return Err(Failed::Final(format!(
                "image {} has no manifest from a trusted key, and firmware.require_signed is set",
                plan.image.name
            )));
        }
        let reported = handle.inventory().running_of(&device).and_then(|running| running.reported());
        crate::engine::manifest_to_send(&device, reported.as_ref(), manifest.as_ref(), &plan.image.name)
            .map_err(Failed::Final)?;
        let image = image.renamed(&plan.image.name);
        // A patch from the image the device runs, where it speaks deltas (built once a pair).
        let (running, speaks) = reported.as_ref().map_or((None, false), |r| (Some(r.image), r.delta));
        let (delta, delta_note) = match crate::firmware::delta_for(
            handle.library(),
            running.as_ref(),
            speaks && plan.delta,
            &image,
        )
        .await
        {
            Some(crate::firmware::Choice::Patch(patch)) => (Some(patch), None),
            Some(crate::firmware::Choice::Whole(why)) => (None, Some(why)),
            None if speaks && !plan.delta => {
                (None, Some("the rollout said \"delta\": false: sent whole".into()))
            }
            None => (None, None),
        };
        let aws = handle.aws_job_for(&device, &image, plan.aws_ota.as_ref()).map_err(Failed::Final)?;
        Ok(JobSpec {
            chunk_size,
            chunk_interval: plan.chunk_interval_ms.map(Duration::from_millis),
            manifest,
            delta,
            delta_note,
            aws,
            ..JobSpec::new(device, image)
        })
    }
    .await;
    Some(spec)
}

/// Submits one rollout device's job.
async fn submit(handle: &Handle, spec: JobSpec, id: RolloutId) -> Result<JobId, Failed> {
    let jobs = handle.submit_for(vec![spec], Some(id)).await.map_err(|e| match e {
        RuntimeError::Stopped => Failed::Stopping,
        RuntimeError::Store(
            e @ (WriteError::Busy(_)
            | WriteError::Full
            | WriteError::Unavailable(_)
            | WriteError::Elsewhere(_)),
        ) => Failed::Passing(e.to_string()),
        e => Failed::Final(e.to_string()),
    })?;
    jobs.first().map(|j| j.id).ok_or_else(|| Failed::Final("no job was created".to_owned()))
}

/// What became of one device's start, told to its rollout.
fn job_started(
    rollouts: &Rollouts,
    handle: &Handle,
    id: RolloutId,
    index: usize,
    result: Result<JobId, Failed>,
) {
    let now = rollouts.now();
    {
        let mut inner = rollouts.lock();
        let Some(rollout) = inner.rollouts.get_mut(&id) else { return };
        let actions = match &result {
            Ok(job) => rollout.job_started(index, *job, now),
            Err(Failed::Stopping) => {
                rollout.start_abandoned(index, now);
                Vec::new()
            }
            Err(Failed::Passing(why)) => {
                rollout.start_deferred(index, why.clone(), DEFER_MS, now);
                Vec::new()
            }
            Err(Failed::Final(error)) => {
                tracing::warn!(rollout = id.get(), %error, "a rollout's job could not be created");
                rollout.start_failed(index, error.clone(), now)
            }
        };
        if let Ok(job) = result {
            inner.jobs.insert(job, id);
        }
        inner.follow(id, actions);
    }
    // A job can end before its rollout heard it was created.
    if let Ok(job) = result
        && let Some(snapshot) = handle.job(job).filter(|s| s.state.is_final())
    {
        finished(rollouts, &snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Gates, RolloutState};

    fn plan() -> RolloutPlan {
        let mut plan = RolloutPlan::example_of(1, |n| format!("d{n}"));
        plan.gates = Gates::Manual;
        plan
    }

    #[tokio::test]
    async fn ended_rollouts_past_the_bound_are_forgotten_oldest_first() {
        let rollouts = Rollouts::new(Vec::new(), None, Clock::new());
        for _ in 0..KEEP_ENDED + 3 {
            let created = rollouts.create(plan()).await.unwrap();
            rollouts.cancel(created.id).await.unwrap();
        }
        let kept = rollouts.list(usize::MAX);
        // The newest creation is counted before it could end: the bound holds at each creation.
        assert_eq!(kept.len(), KEEP_ENDED + 1);
        assert!(rollouts.get(RolloutId::new(1)).is_none() && rollouts.get(RolloutId::new(2)).is_none());
        assert!(kept.iter().all(|s| s.state == RolloutState::Cancelled));
    }

    #[tokio::test]
    async fn the_first_listener_hears_the_changes_made_before_it_asked() {
        let rollouts = Rollouts::new(Vec::new(), None, Clock::new());
        let notice = |change: u64| RolloutNotice {
            rollout: RolloutId::new(1),
            name: "r".into(),
            from: RolloutState::Scheduled,
            to: RolloutState::Running,
            reason: "started".into(),
            change,
        };
        // The task's first pass, before anyone subscribed.
        let _ = rollouts.notices.send(notice(1));
        let mut first = rollouts.notices();
        let mut later = rollouts.notices();
        let _ = rollouts.notices.send(notice(2));
        assert_eq!(first.recv().await.unwrap().change, 1);
        assert_eq!(first.recv().await.unwrap().change, 2);
        assert_eq!(later.recv().await.unwrap().change, 2, "a later listener hears from then on");
    }

    #[tokio::test]
    async fn at_most_max_open_rollouts_are_under_way_and_an_ended_one_frees_a_place() {
        let rollouts = Rollouts::new(Vec::new(), None, Clock::new());
        // Manual gates keep each one open (paused before its first wave).
        for _ in 0..MAX_OPEN {
            rollouts.create(plan()).await.unwrap();
        }
        let refused = rollouts.create(plan()).await.unwrap_err();
        assert!(matches!(refused, RolloutError::TooMany), "{refused}");
        // A dry run asks the same rule first.
        assert!(matches!(rollouts.may_create(), Err(RolloutError::TooMany)));
        assert_eq!(rollouts.list(usize::MAX).len(), MAX_OPEN, "a refused rollout is not kept");
        rollouts.cancel(RolloutId::new(1)).await.unwrap();
        assert!(rollouts.may_create().is_ok());
        rollouts.create(plan()).await.unwrap();
    }

    /// A caller that stops waiting for a write (an HTTP client that hung up) must not lose the
    /// changes the write had taken: they are marked to write again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_its_caller_stopped_waiting_for_leaves_its_changes_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let rollouts = Rollouts::new(Vec::new(), Some(store.clone()), Clock::new());
        let mut plan = RolloutPlan::example_of(50, |n| format!("d{n}"));
        plan.gates = Gates::Manual;
        let id = rollouts.create(plan).await.unwrap().id;
        {
            let mut inner = rollouts.lock();
            let rollout = inner.rollouts.get_mut(&id).unwrap();
            rollout.devices.set_outcome(7, crate::rollout::Outcome::Failed);
            rollout.devices.set_detail(7, Some("writing to flash failed"));
            inner.dirty.insert(id);
        }
        // Polled once and dropped: what a handler's future is when its client hangs up.
        let abandoned = futures_util::FutureExt::now_or_never(rollouts.write(&[id]));
        assert!(abandoned.is_none(), "the write was still waiting for the store");
        let mut inner = rollouts.lock();
        assert!(inner.dirty.contains(&id), "the rollout is to be written again");
        let unsaved = inner.rollouts.get_mut(&id).unwrap().devices.take_unsaved();
        assert_eq!(unsaved.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [7]);
    }
}
