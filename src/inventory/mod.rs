//! The device inventory: the devices Rocky knows, registered by an operator (API, CLI, import)
//! or seen on the wire, each with labels to pick it by group, when it was first and last heard
//! from, the last image that succeeded on it and its last job.
//!
//! Two owners write a device, each its own columns, so neither can undo the other: the operator
//! owns `labels` and `registered` (written to the store before the answer), the driver owns
//! what happened on the wire (`first_seen`, `last_seen`, `last_image`, `last_job`), kept here
//! and handed to the store with the job changes, never waiting for it.
//!
//! Bounded: at most `store.max_devices` devices. A broker client can make up device ids, so the
//! wire adds no device: only an answer to a job Rocky sent marks a device seen (the driver
//! counts the rest in `/metrics`). Devices enter by registration, import, or a job made for
//! them; registering past the bound is refused, and a job's device past it is not added
//! (counted in the log once a minute).

pub mod glob;
pub mod import;
pub mod labels;
pub mod profile;
mod query;
pub mod running;

pub use import::{ImportError, ImportRow};
pub use labels::{LabelError, Labels};
pub use profile::Profile;
pub use query::{DeviceQuery, QueryError};
pub use running::{MAX_UNLISTED_STATUSES, Running};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::engine::JobId;
use crate::protocol::DeviceId;
use crate::snapshot::ImageInfo;
use crate::write_error::WriteError;

/// The default for `store.max_devices`.
pub const DEFAULT_MAX_DEVICES: usize = 100_000;

/// One device as the API answers and the store keeps it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub device_id: DeviceId,
    pub labels: Labels,
    /// Registered by an operator (API, CLI, import), not only seen on the wire.
    pub registered: bool,
    /// When a valid response from it first arrived.
    pub first_seen: Option<u64>,
    pub last_seen: Option<u64>,
    /// The last image that succeeded on it.
    pub last_image: Option<ImageInfo>,
    /// The last job created for it.
    pub last_job: Option<JobId>,
    /// What it last said it runs (its status), if it reports one; `reported_at` is when it first
    /// said exactly this.
    #[serde(default)]
    pub running: Option<Running>,
    /// The protocol it speaks: its `profile` label, else `aws-iot-ota` when it was heard on
    /// AWS topics, else Rocky's.
    #[serde(default)]
    pub profile: Profile,
}

impl Device {
    fn new(device_id: DeviceId) -> Self {
        Self {
            device_id,
            labels: Labels::new(),
            registered: false,
            first_seen: None,
            last_seen: None,
            last_image: None,
            last_job: None,
            running: None,
            profile: Profile::Rocky,
        }
    }

    /// Whether Rocky has reason to think the device exists: registered by an operator, heard
    /// answering a job, or holding a status. The rest are "never seen" (a typo in an id?).
    pub fn vouched(&self) -> bool {
        self.registered || self.first_seen.is_some() || self.running.is_some()
    }
}

/// What to say of devices Rocky has never seen, before jobs or a rollout start for them (the
/// API's `warning`, the CLI, the console's form): how many, and the first few by name.
pub fn never_seen_note(unseen: &[DeviceId]) -> Option<String> {
    const SHOWN: usize = 5;
    let first = unseen.first()?;
    let mut names: Vec<String> = unseen.iter().take(SHOWN).map(ToString::to_string).collect();
    if unseen.len() > SHOWN {
        names.push(format!("and {} more", unseen.len() - SHOWN));
    }
    let count = match unseen.len() {
        1 => format!("1 device Rocky has never seen ({first})"),
        n => format!("{n} devices Rocky has never seen ({})", names.join(", ")),
    };
    Some(format!(
        "{count}: not registered and never answered; their jobs go out all the same, and wait out the request \
         timeout if nobody answers (a typo in an id?)"
    ))
}

/// Why an inventory change was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("the inventory holds {held} devices and this would add {adding}; store.max_devices is {max}")]
    Full { held: usize, adding: usize, max: usize },
    #[error(transparent)]
    Store(#[from] WriteError),
}

/// A registration on its way to durable storage, answering when it is there.
pub type Recording<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), WriteError>> + Send + 'a>>;

/// Where registrations go before they count: the job store, when Rocky has one (`store/`
/// implements it). The inventory knows no storage, so the arrow points down only.
pub trait DeviceRecords: Send + Sync {
    /// Records these devices as registered with these labels, all or none.
    fn register(&self, rows: Vec<(DeviceId, Labels)>) -> Recording<'_>;
    /// Removes a device's record.
    fn forget(&self, id: DeviceId) -> Recording<'_>;
}

/// The shared inventory; cheap to clone.
#[derive(Clone)]
pub struct Inventory {
    state: Arc<Mutex<State>>,
    store: Option<Arc<dyn DeviceRecords>>,
    /// One registration at a time, so the bound is checked against what the last one added.
    registering: Arc<tokio::sync::Mutex<()>>,
}

struct State {
    /// Boxed: the map's nodes hold eleven entries each and fill about half-way when devices
    /// are registered in id order (an import), so a device inline would cost twice its size.
    devices: BTreeMap<DeviceId, Box<Device>>,
    /// Devices whose wire facts changed since they were last handed to the store.
    observed: BTreeSet<DeviceId>,
    max: usize,
    /// Devices first seen on the wire that the bound kept out, since the last log line.
    refused: u64,
    refused_logged_at: Option<std::time::Instant>,
    /// Statuses of devices not held here (bounded, never the inventory's room).
    unlisted: running::Unlisted,
    /// Devices heard on AWS topics (bounded).
    aws_heard: profile::Heard,
    /// The texts of statuses, kept once for the devices that say the same.
    shared: running::SharedTexts,
}

impl State {
    /// The device as shown: with its profile worked out.
    fn shown(&self, device: &Device) -> Device {
        let mut shown = device.clone();
        shown.profile = self.profile(device.device_id.as_str(), Some(&device.labels));
        shown
    }

    fn profile(&self, id: &str, labels: Option<&Labels>) -> Profile {
        labels.and_then(Profile::of_labels).unwrap_or(if self.aws_heard.contains(id) {
            Profile::AwsIotOta
        } else {
            Profile::Rocky
        })
    }
}

/// Where a device's status went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKept {
    /// On the device in the inventory (and to the store with the next flush).
    Inventory,
    /// Aside, for a device the inventory does not hold.
    Unlisted,
    /// Not kept: the room for devices the inventory does not hold is full.
    Refused,
}

impl Inventory {
    /// An inventory of `devices` (as loaded from the store) kept in `store`, if any.
    pub fn new(devices: Vec<Device>, max: usize, store: Option<Arc<dyn DeviceRecords>>) -> Self {
        let mut shared = running::SharedTexts::default();
        let devices = devices
            .into_iter()
            .map(|mut d| {
                shared.share_device(&mut d);
                (d.device_id.clone(), Box::new(d))
            })
            .collect();
        let state = State {
            devices,
            shared,
            observed: BTreeSet::new(),
            max,
            refused: 0,
            refused_logged_at: None,
            unlisted: running::Unlisted::default(),
            aws_heard: profile::Heard::default(),
        };
        Self { state: Arc::new(Mutex::new(state)), store, registering: Arc::default() }
    }

    /// An empty inventory kept only in memory.
    pub fn in_memory() -> Self {
        Self::new(Vec::new(), DEFAULT_MAX_DEVICES, None)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &(impl std::borrow::Borrow<str> + ?Sized)) -> Option<Device> {
        let id: &str = id.borrow();
        let state = self.lock();
        state.devices.get(id).map(|device| state.shown(device))
    }

    /// The protocol `id` speaks (a device the inventory does not hold may have been heard).
    pub fn profile_of(&self, id: &(impl std::borrow::Borrow<str> + ?Sized)) -> Profile {
        let id: &str = id.borrow();
        let state = self.lock();
        state.profile(id, state.devices.get(id).map(|device| &device.labels))
    }

    /// `id` asked for its job on an AWS topic: it speaks AWS's OTA agent's protocol. Taken
    /// only for a device an operator registered that never reported a status in Rocky's
    /// protocol: any broker client may publish on any thing's topic (the broker's ACL decides),
    /// and must not turn a device Rocky updates its own way into an AWS one, or fill the set.
    pub fn heard_aws(&self, id: &DeviceId) {
        let mut state = self.lock();
        if state.devices.get(id.as_str()).is_some_and(|device| device.registered && device.running.is_none())
        {
            state.aws_heard.insert(id);
        }
    }

    /// The devices `query` selects, ordered by id, at most its limit.
    pub fn list(&self, query: &DeviceQuery) -> Vec<Device> {
        let state = self.lock();
        let start = match &query.after {
            Some(after) => std::ops::Bound::Excluded(after.clone()),
            None => std::ops::Bound::Unbounded,
        };
        state
            .devices
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, device)| device)
            .filter(|device| query.selects(device))
            .take(query.limit)
            .map(|device| state.shown(device))
            .collect()
    }

    /// One page: the devices `query` selects after its cursor, at most its limit, and the id to
    /// ask after for the next page (`None`: this is the last).
    pub fn page(&self, query: &DeviceQuery) -> (Vec<Device>, Option<DeviceId>) {
        let limit = query.limit;
        let mut devices = self.list(&DeviceQuery { limit: limit.saturating_add(1), ..query.clone() });
        let more = devices.len() > limit;
        devices.truncate(limit);
        let next_after = if more { devices.last().map(|d| d.device_id.clone()) } else { None };
        (devices, next_after)
    }

    /// Every id `query` selects, in order, with no limit (for resolving a rollout's targets).
    pub fn ids(&self, query: &DeviceQuery) -> Vec<DeviceId> {
        let state = self.lock();
        state.devices.values().filter(|d| query.selects(d)).map(|d| d.device_id.clone()).collect()
    }

    /// Of `ids`, those Rocky has never seen: not registered, never answered a job (a job made
    /// for an unknown id adds it unseen) and never sent a status. Such a device may be a typo;
    /// each of its jobs then spends its whole request timeout. The one meaning of "never seen"
    /// for the create answers' warnings and the dry run's list alike.
    pub fn never_seen<'a>(&self, ids: impl IntoIterator<Item = &'a DeviceId>) -> Vec<DeviceId> {
        let state = self.lock();
        ids.into_iter()
            .filter(|id| match state.devices.get(*id) {
                Some(d) => !d.vouched(),
                None => state.unlisted.get(id.as_str()).is_none(),
            })
            .cloned()
            .collect()
    }

    /// Registers devices with these labels (replacing the labels of those already known), all
    /// or none: the store records them before they count here. Returns how many were new.
    pub async fn register(&self, rows: Vec<(DeviceId, Labels)>) -> Result<usize, InventoryError> {
        let _one_at_a_time = self.registering.lock().await;
        let adding = {
            let state = self.lock();
            let adding = rows.iter().filter(|(id, _)| !state.devices.contains_key(id)).count();
            if state.devices.len() + adding > state.max {
                return Err(InventoryError::Full { held: state.devices.len(), adding, max: state.max });
            }
            adding
        };
        if let Some(store) = &self.store {
            store.register(rows.clone()).await?;
        }
        let mut state = self.lock();
        let state = &mut *state;
        for (id, labels) in rows {
            let device = state.devices.entry(id.clone()).or_insert_with(|| Box::new(Device::new(id.clone())));
            device.labels = labels;
            device.registered = true;
            if let Some(running) = state.unlisted.take(&id) {
                device.running = Some(running);
                state.observed.insert(id);
            }
        }
        Ok(adding)
    }

    /// Forgets a device; false when it was not known.
    pub async fn forget(&self, id: &DeviceId) -> Result<bool, InventoryError> {
        if !self.lock().devices.contains_key(id) {
            return Ok(false);
        }
        if let Some(store) = &self.store {
            store.forget(id.clone()).await?;
        }
        let mut state = self.lock();
        state.observed.remove(id);
        let removed = state.devices.remove(id);
        // What the device said of itself outlives its entry (the broker sends a retained status
        // again only at a new subscription): a device that takes signed images only must not
        // be taken for one that never said so once forgotten.
        if let Some(running) = removed.as_ref().and_then(|device| device.running.clone()) {
            state.unlisted.report(id, Some(running));
        }
        Ok(removed.is_some())
    }

    /// A valid response from `id` arrived at `at` (Unix ms).
    pub fn seen(&self, id: &DeviceId, at: u64) {
        self.observe(id, |device| {
            device.first_seen.get_or_insert(at);
            device.last_seen = Some(device.last_seen.map_or(at, |last| last.max(at)));
        });
    }

    /// A job was created for `id`.
    pub fn job_created(&self, id: &DeviceId, job: JobId) {
        self.observe(id, |device| device.last_job = Some(device.last_job.map_or(job, |last| last.max(job))));
    }

    /// `id` said what it runs (`None`: it cleared its status). Kept on the device when the
    /// inventory holds it, else aside (bounded); a status never adds a device.
    pub fn report_status(&self, id: &DeviceId, mut running: Option<Running>) -> StatusKept {
        let mut state = self.lock();
        let state = &mut *state;
        match state.devices.get_mut(id) {
            Some(device) => {
                // The same status again (a retained one at every subscription) is not news: it
                // keeps when it was first said, and costs the store nothing.
                let same = matches!((&device.running, &running), (Some(a), Some(b)) if a.says_the_same_as(b));
                if !same {
                    if let Some(running) = running.as_mut() {
                        state.shared.share(running);
                    }
                    device.running = running;
                    state.observed.insert(id.clone());
                }
                StatusKept::Inventory
            }
            None if state.unlisted.report(id, running) => StatusKept::Unlisted,
            None => StatusKept::Refused,
        }
    }

    /// What `id` last said it runs, whether the inventory holds it or not (a device's first
    /// job is made before the device joins the inventory).
    pub fn running_of(&self, id: &(impl std::borrow::Borrow<str> + ?Sized)) -> Option<Running> {
        let id: &str = id.borrow();
        let state = self.lock();
        match state.devices.get(id) {
            Some(device) => device.running.clone(),
            None => state.unlisted.get(id).cloned(),
        }
    }

    /// Whether `id` runs the image `sha256` (hex), as a rollout judges it: what its status
    /// says, else (a device that reports none) the last image that succeeded on it.
    pub fn runs(&self, id: &(impl std::borrow::Borrow<str> + ?Sized), sha256: &str) -> bool {
        let id: &str = id.borrow();
        match self.running_of(id) {
            Some(running) => &*running.image == sha256,
            None => self.get(id).and_then(|d| d.last_image).is_some_and(|image| &*image.sha256 == sha256),
        }
    }

    /// Statuses held for devices the inventory does not hold, and those refused for want of
    /// room since the start (for `/metrics`).
    pub fn unlisted_statuses(&self) -> (usize, u64) {
        let state = self.lock();
        (state.unlisted.len(), state.unlisted.refused)
    }

    /// `image` succeeded on `id`.
    pub fn succeeded(&self, id: &DeviceId, image: ImageInfo) {
        self.observe(id, |device| device.last_image = Some(image));
    }

    fn observe(&self, id: &DeviceId, change: impl FnOnce(&mut Device)) {
        let mut state = self.lock();
        let state = &mut *state;
        if !state.devices.contains_key(id) && state.devices.len() >= state.max {
            state.refused += 1;
            let due =
                state.refused_logged_at.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(60));
            if due {
                tracing::warn!(
                    max = state.max,
                    refused = state.refused,
                    "devices first seen on the wire were not added to the inventory: it is full (store.max_devices)"
                );
                state.refused = 0;
                state.refused_logged_at = Some(std::time::Instant::now());
            }
            return;
        }
        let unlisted = &mut state.unlisted;
        let device = state.devices.entry(id.clone()).or_insert_with(|| {
            let mut device = Device::new(id.clone());
            device.running = unlisted.take(id);
            Box::new(device)
        });
        change(device);
        state.observed.insert(id.clone());
    }

    /// What the wire changed since the last call, for the store (it goes with the job changes).
    pub fn take_observed(&self) -> Vec<Device> {
        let mut state = self.lock();
        let ids = std::mem::take(&mut state.observed);
        ids.iter().filter_map(|id| state.devices.get(id).map(|d| Device::clone(d))).collect()
    }

    /// Takes in the devices as another instance sharing the store left them: their labels and
    /// registration as stored, wire facts whichever are newer (the wire's news not yet written
    /// here wins), and devices not known here, up to the bound. A device another instance
    /// forgot stays here until a restart.
    pub fn refresh(&self, stored: Vec<Device>) {
        let mut state = self.lock();
        let state = &mut *state;
        for theirs in stored {
            let pending = state.observed.contains(&theirs.device_id);
            let room = state.devices.len() < state.max;
            match state.devices.get_mut(&theirs.device_id) {
                // What the store holds is mostly what this instance wrote: a field is replaced
                // only when it differs, so the texts held stay (shared) and the ones read back
                // are freed at once, not left scattered through the heap.
                Some(ours) => {
                    if ours.labels != theirs.labels {
                        ours.labels = theirs.labels;
                    }
                    ours.registered = theirs.registered;
                    ours.first_seen = match (ours.first_seen, theirs.first_seen) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    ours.last_seen = ours.last_seen.max(theirs.last_seen);
                    ours.last_job = ours.last_job.max(theirs.last_job);
                    if !pending && theirs.last_image.is_some() && ours.last_image != theirs.last_image {
                        ours.last_image = theirs.last_image.map(|mut image| {
                            state.shared.share_image(&mut image);
                            image
                        });
                    }
                    // Every instance hears the same statuses, and writes what it heard last: the
                    // stored one stands unless ours is news not yet written (a cleared status
                    // included) or newer.
                    let older = ours.running.as_ref().is_some_and(|o| {
                        theirs.running.as_ref().is_some_and(|t| t.reported_at < o.reported_at)
                    });
                    if !pending && !older && ours.running != theirs.running {
                        ours.running = theirs.running.map(|mut running| {
                            state.shared.share(&mut running);
                            running
                        });
                    }
                }
                None if room => {
                    let mut theirs = theirs;
                    let aside = state.unlisted.take(&theirs.device_id);
                    if theirs.running.is_none() {
                        theirs.running = aside;
                    }
                    state.shared.share_device(&mut theirs);
                    state.devices.insert(theirs.device_id.clone(), Box::new(theirs));
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
