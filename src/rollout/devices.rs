//! A rollout's devices as it holds them in memory, compact because a Rocky may hold 64 rollouts
//! of 100,000 devices each: the ids in one string, each device's outcome in 32 bytes, the
//! retry times of just the devices waiting for one, and each distinct reason text once. What
//! goes out (the API, the store, the console) is [`Slot`], one device whole.
//!
//! `cargo bench --bench rollout_memory` measures the bytes held per device.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state::Outcome;
use crate::engine::JobId;
use crate::protocol::DeviceId;

/// One device of the rollout, whole: what the API answers and the store writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub device_id: DeviceId,
    pub outcome: Outcome,
    /// Its latest job.
    pub job_id: Option<JobId>,
    /// Jobs started for it.
    pub attempts: u32,
    /// When it is tried again (Unix ms), while `Retrying`.
    pub retry_at: Option<u64>,
    /// Why it ended as it did (the job's error), or why it was not updated.
    pub detail: Option<String>,
}

/// One device's state without its id and retry time (held beside it).
#[derive(Debug, Clone)]
struct Cell {
    detail: Option<Arc<str>>,
    job_id: Option<JobId>,
    attempts: u32,
    outcome: Outcome,
    /// Changed since the store last wrote it.
    unsaved: bool,
}

/// Every device of one rollout, in the rollout's order.
#[derive(Debug, Clone, Default)]
pub struct Devices {
    /// The ids one after another; device `i` is `ids[ends[i - 1]..ends[i]]`.
    ids: String,
    ends: Vec<u32>,
    cells: Vec<Cell>,
    /// When each `Retrying` device is tried again (Unix ms), by position.
    retry_at: BTreeMap<u32, u64>,
    details: DetailPool,
    /// How many devices have each outcome, kept as outcomes change: the concurrency cap and
    /// the abort rule ask after every job's end, and counting 100,000 cells each time made a
    /// rollout's job ends cost seconds of the async thread.
    counts: [u32; OUTCOMES],
    /// `(job, position)` for each job started for a device, by job id, so a job's end finds
    /// its device by a binary search (a walk over the cells per job end took 5 s of a
    /// 100,000-device rollout). A retry's earlier job stays listed until [`Devices::set_job`]
    /// sweeps; a lookup checks that the job is still its device's latest. At most 1.5 entries
    /// (12 bytes) a device are held.
    by_job: Vec<(JobId, u32)>,
    /// No device before this position has an open (not final) outcome: where the walks for
    /// pending devices and for a wave's end start, instead of at device 0 on every step (a
    /// 100,000-device rollout's steps walked its finished devices again and again).
    /// [`Devices::set_outcome`] keeps it a lower bound; [`Devices::first_open`] moves it up.
    open_from: u32,
}

/// Outcomes there are (the count of [`Outcome`]'s variants).
const OUTCOMES: usize = Outcome::Cancelled as usize + 1;

impl PartialEq for Devices {
    /// The same devices with the same outcomes, however they are held or written.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.slot(i) == other.slot(i))
    }
}

impl Devices {
    /// These devices, none started, none written yet.
    pub fn new(ids: &[DeviceId]) -> Self {
        let mut devices = Self::with_capacity(ids.iter().map(|id| id.as_str().len()).sum(), ids.len());
        devices.counts[Outcome::Pending as usize] = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        for id in ids {
            devices.push_id(id.as_str());
            devices.cells.push(Cell {
                detail: None,
                job_id: None,
                attempts: 0,
                outcome: Outcome::Pending,
                unsaved: true,
            });
        }
        devices
    }

    /// Devices as the store wrote them (so none is unsaved).
    pub fn from_slots(slots: Vec<Slot>) -> Self {
        let mut devices =
            Self::with_capacity(slots.iter().map(|s| s.device_id.as_str().len()).sum(), slots.len());
        for slot in slots {
            devices.push_id(slot.device_id.as_str());
            let position = devices.cells.len() as u32;
            if let Some(at) = slot.retry_at {
                devices.retry_at.insert(position, at);
            }
            let detail = slot.detail.as_deref().map(|text| devices.details.intern(text));
            devices.counts[slot.outcome as usize] += 1;
            if let Some(job) = slot.job_id {
                devices.by_job.push((job, position));
            }
            devices.cells.push(Cell {
                detail,
                job_id: slot.job_id,
                attempts: slot.attempts,
                outcome: slot.outcome,
                unsaved: false,
            });
        }
        devices.by_job.sort_unstable();
        devices.by_job.shrink_to_fit();
        devices
    }

    fn with_capacity(id_bytes: usize, count: usize) -> Self {
        Self {
            ids: String::with_capacity(id_bytes),
            ends: Vec::with_capacity(count),
            cells: Vec::with_capacity(count),
            retry_at: BTreeMap::new(),
            details: DetailPool::default(),
            counts: [0; OUTCOMES],
            by_job: Vec::new(),
            open_from: 0,
        }
    }

    fn push_id(&mut self, id: &str) {
        self.ids.push_str(id);
        // A rollout holds at most a few million ids of at most a few hundred bytes each.
        self.ends.push(u32::try_from(self.ids.len()).unwrap_or(u32::MAX));
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The id of the device at `index` ("" past the end).
    pub fn id(&self, index: usize) -> &str {
        let start = if index == 0 { 0 } else { self.ends.get(index - 1).map_or(0, |&e| e as usize) };
        let end = self.ends.get(index).map_or(start, |&e| e as usize);
        self.ids.get(start..end).unwrap_or("")
    }

    /// The device at `index` as a [`DeviceId`].
    pub fn device_id(&self, index: usize) -> Option<DeviceId> {
        // Every id held was a `DeviceId` when it came in.
        DeviceId::parse(self.id(index)).ok()
    }

    pub fn outcome(&self, index: usize) -> Option<Outcome> {
        self.cells.get(index).map(|c| c.outcome)
    }

    pub fn attempts(&self, index: usize) -> u32 {
        self.cells.get(index).map_or(0, |c| c.attempts)
    }

    pub fn job_id(&self, index: usize) -> Option<JobId> {
        self.cells.get(index).and_then(|c| c.job_id)
    }

    pub fn retry_at(&self, index: usize) -> Option<u64> {
        u32::try_from(index).ok().and_then(|i| self.retry_at.get(&i).copied())
    }

    pub fn detail(&self, index: usize) -> Option<&str> {
        self.cells.get(index).and_then(|c| c.detail.as_deref())
    }

    /// Every device's outcome, in order.
    pub fn outcomes(&self) -> impl Iterator<Item = Outcome> + '_ {
        self.cells.iter().map(|c| c.outcome)
    }

    /// The device at `index`, whole.
    pub fn slot(&self, index: usize) -> Option<Slot> {
        let cell = self.cells.get(index)?;
        Some(Slot {
            device_id: self.device_id(index)?,
            outcome: cell.outcome,
            job_id: cell.job_id,
            attempts: cell.attempts,
            retry_at: self.retry_at(index),
            detail: cell.detail.as_deref().map(str::to_owned),
        })
    }

    /// Every device, whole, in order.
    pub fn slots(&self) -> Vec<Slot> {
        (0..self.len()).filter_map(|i| self.slot(i)).collect()
    }

    /// The devices from position `from` on, at most `limit` of them, in order.
    pub fn slots_in(&self, from: usize, limit: usize) -> Vec<Slot> {
        (from..from.saturating_add(limit).min(self.len())).filter_map(|i| self.slot(i)).collect()
    }

    /// The position of the device whose latest job this is.
    pub fn position_of_job(&self, job: JobId) -> Option<usize> {
        let found = self.by_job.binary_search_by_key(&job, |&(job, _)| job).ok()?;
        let position = self.by_job.get(found)?.1 as usize;
        (self.job_id(position) == Some(job)).then_some(position)
    }

    /// Devices whose outcome is `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.counts[outcome as usize] as usize
    }

    /// The earliest retry time of any device.
    pub fn next_retry(&self) -> Option<u64> {
        self.retry_at.values().copied().min()
    }

    /// The devices whose retry time is due at `now`, in order.
    pub fn retries_due(&self, now: u64) -> Vec<usize> {
        self.retry_at.iter().filter(|&(_, &at)| at <= now).map(|(&i, _)| i as usize).collect()
    }

    fn cell(&mut self, index: usize) -> Option<&mut Cell> {
        let cell = self.cells.get_mut(index)?;
        cell.unsaved = true;
        Some(cell)
    }

    pub fn set_outcome(&mut self, index: usize, outcome: Outcome) {
        let Some(cell) = self.cell(index) else { return };
        let before = std::mem::replace(&mut cell.outcome, outcome);
        self.counts[before as usize] = self.counts[before as usize].saturating_sub(1);
        self.counts[outcome as usize] += 1;
        if !outcome.is_final() && index < self.open_from as usize {
            self.open_from = index as u32;
        }
    }

    /// The first device whose outcome is open (not final), or the count when none is.
    pub fn first_open(&mut self) -> usize {
        let mut at = self.open_from as usize;
        while self.cells.get(at).is_some_and(|cell| cell.outcome.is_final()) {
            at += 1;
        }
        self.open_from = at as u32;
        at
    }

    /// At or before the first open device (what [`Devices::first_open`] last found, or less):
    /// for a walk that cannot move the bound up.
    pub fn open_at_least(&self) -> usize {
        self.open_from as usize
    }

    pub fn set_job(&mut self, index: usize, job: Option<JobId>) {
        let Some(cell) = self.cell(index) else { return };
        cell.job_id = job;
        let (Some(job), Ok(position)) = (job, u32::try_from(index)) else { return };
        // Grown a quarter of the devices at a time, not doubled: the index stays within
        // 1.5 entries (12 bytes) a device, retries and all.
        if self.by_job.len() == self.by_job.capacity() {
            self.by_job.reserve_exact((self.cells.len() / 4).max(16));
        }
        // Jobs are made in rising id order, so this is nearly always a push.
        match self.by_job.last() {
            Some(&(last, _)) if last >= job => {
                match self.by_job.binary_search_by_key(&job, |&(job, _)| job) {
                    Ok(found) => self.by_job[found].1 = position,
                    Err(at) => self.by_job.insert(at, (job, position)),
                }
            }
            _ => self.by_job.push((job, position)),
        }
        // Retries' earlier jobs: swept once they are a quarter of the devices.
        if self.by_job.len() > self.cells.len() + self.cells.len() / 4 {
            let cells = &self.cells;
            self.by_job.retain(|&(job, position)| {
                cells.get(position as usize).is_some_and(|cell| cell.job_id == Some(job))
            });
        }
    }

    pub fn set_attempts(&mut self, index: usize, attempts: u32) {
        if let Some(cell) = self.cell(index) {
            cell.attempts = attempts;
        }
    }

    pub fn set_detail(&mut self, index: usize, detail: Option<&str>) {
        let detail = detail.map(|text| self.details.intern(text));
        if let Some(cell) = self.cell(index) {
            cell.detail = detail;
        }
    }

    pub fn set_retry_at(&mut self, index: usize, at: Option<u64>) {
        let Ok(position) = u32::try_from(index) else { return };
        if index >= self.len() {
            return;
        }
        let before = match at {
            Some(at) => self.retry_at.insert(position, at),
            None => self.retry_at.remove(&position),
        };
        if before != at {
            self.cell(index);
        }
    }

    /// The devices changed since the last call, whole, by position; they count as written
    /// from now on (give them back to [`Devices::unsaved_again`] if the write fails).
    pub fn take_unsaved(&mut self) -> Vec<(usize, Slot)> {
        let positions: Vec<usize> =
            self.cells.iter().enumerate().filter(|(_, c)| c.unsaved).map(|(i, _)| i).collect();
        let mut out = Vec::with_capacity(positions.len());
        for i in positions {
            if let Some(slot) = self.slot(i) {
                out.push((i, slot));
            }
            if let Some(cell) = self.cells.get_mut(i) {
                cell.unsaved = false;
            }
        }
        out
    }

    /// These devices were not written after all: the next write writes them again.
    pub fn unsaved_again(&mut self, positions: impl IntoIterator<Item = usize>) {
        for i in positions {
            self.cell(i);
        }
    }
}

/// Each distinct reason text once, however many devices give it ("timed out: …; try 2 of 4
/// in 30 s" for a thousand devices is one string). Texts no device holds any more are dropped
/// whenever the pool has doubled since it was last swept, so it stays within twice the texts
/// in use.
#[derive(Debug, Clone, Default)]
struct DetailPool {
    texts: HashSet<Arc<str>>,
    sweep_at: usize,
}

impl DetailPool {
    /// The smallest pool worth sweeping.
    const MIN_SWEEP: usize = 64;

    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(held) = self.texts.get(text) {
            return held.clone();
        }
        if self.texts.len() >= self.sweep_at.max(Self::MIN_SWEEP) {
            // Only the pool's own reference left: no device gives this text any more.
            self.texts.retain(|t| Arc::strong_count(t) > 1);
            self.sweep_at = self.texts.len() * 2;
        }
        let text: Arc<str> = Arc::from(text);
        self.texts.insert(text.clone());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<DeviceId> {
        (0..n).map(|i| DeviceId::parse(&format!("dev-{i}")).unwrap()).collect()
    }

    #[test]
    fn ids_come_back_in_order() {
        let devices = Devices::new(&ids(3));
        assert_eq!(
            (devices.id(0), devices.id(1), devices.id(2), devices.id(3)),
            ("dev-0", "dev-1", "dev-2", "")
        );
        assert_eq!(devices.device_id(2), Some(DeviceId::parse("dev-2").unwrap()));
    }

    #[test]
    fn what_changed_is_written_once_and_again_after_a_failed_write() {
        let mut devices = Devices::new(&ids(3));
        assert_eq!(devices.take_unsaved().len(), 3, "a new rollout writes every device");
        assert!(devices.take_unsaved().is_empty());
        devices.set_outcome(1, Outcome::Active);
        devices.set_job(1, Some(JobId::new(7)));
        let written = devices.take_unsaved();
        assert_eq!(written.len(), 1);
        assert_eq!((written[0].0, written[0].1.job_id), (1, Some(JobId::new(7))));
        devices.unsaved_again([1]);
        assert_eq!(devices.take_unsaved().len(), 1);
        // Clearing a retry time no device had changes nothing.
        devices.set_retry_at(2, None);
        assert!(devices.take_unsaved().is_empty());
    }

    #[test]
    fn loaded_devices_equal_the_written_ones_and_none_is_unsaved() {
        let mut devices = Devices::new(&ids(4));
        devices.set_outcome(0, Outcome::Retrying);
        devices.set_retry_at(0, Some(5_000));
        devices.set_detail(0, Some("timed out; try 2 of 3 in 30 s"));
        devices.set_detail(3, Some("timed out; try 2 of 3 in 30 s"));
        let loaded = Devices::from_slots(devices.slots());
        assert_eq!(loaded, devices);
        let mut loaded = loaded;
        assert!(loaded.take_unsaved().is_empty());
        assert_eq!(loaded.retries_due(4_999), Vec::<usize>::new());
        assert_eq!(loaded.retries_due(5_000), vec![0]);
        assert_eq!(loaded.next_retry(), Some(5_000));
    }

    /// What the counts and the job index stand for, worked out the slow way.
    fn walked(devices: &Devices, job: JobId) -> Option<usize> {
        (0..devices.len()).find(|&i| devices.job_id(i) == Some(job))
    }

    const ALL: [Outcome; OUTCOMES] = [
        Outcome::Pending,
        Outcome::Active,
        Outcome::Confirming,
        Outcome::Retrying,
        Outcome::Succeeded,
        Outcome::Confirmed,
        Outcome::UpToDate,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::RolledBack,
        Outcome::TimedOut,
        Outcome::Cancelled,
    ];

    proptest::proptest! {
        /// Jobs started, restarted (a retry), cleared and finished in any order, with ids
        /// rising or not (adopted from another instance): a job is found at its device while
        /// it is the device's latest, the counts match the outcomes, and both survive a
        /// write and a read back.
        #[test]
        fn job_lookups_and_outcome_counts_match_the_cells(
            steps in proptest::collection::vec((0usize..20, 0u32..60, 0usize..OUTCOMES, proptest::bool::ANY), 1..400)
        ) {
            let mut devices = Devices::new(&ids(20));
            let mut made = Vec::new();
            for (step, (index, rank, outcome, clear)) in steps.into_iter().enumerate() {
                // Unique, as job ids are, and in no particular order.
                let job = JobId::new(rank * 1000 + step as u32 + 1);
                made.push(job);
                devices.set_outcome(index, ALL[outcome]);
                devices.set_job(index, (!clear).then_some(job));
                proptest::prop_assert!(devices.by_job.len() <= devices.len() + devices.len() / 4 + 1);
                proptest::prop_assert!(devices.by_job.capacity() <= devices.len() * 3 / 2 + 16);
            }
            let loaded = Devices::from_slots(devices.slots());
            for held in [&devices, &loaded] {
                for &job in &made {
                    proptest::prop_assert_eq!(held.position_of_job(job), walked(held, job));
                }
                for outcome in ALL {
                    proptest::prop_assert_eq!(held.count(outcome), held.outcomes().filter(|&o| o == outcome).count());
                }
            }
            let first_open = devices.outcomes().position(|o| !o.is_final()).unwrap_or(devices.len());
            proptest::prop_assert!(devices.open_at_least() <= first_open);
            proptest::prop_assert_eq!(devices.first_open(), first_open);
            let mut loaded = loaded;
            proptest::prop_assert_eq!(loaded.first_open(), first_open);
        }
    }

    #[test]
    fn a_retry_s_earlier_job_is_no_longer_its_device_s() {
        let mut devices = Devices::new(&ids(3));
        devices.set_job(1, Some(JobId::new(5)));
        devices.set_job(2, Some(JobId::new(6)));
        devices.set_job(1, Some(JobId::new(9)));
        assert_eq!(devices.position_of_job(JobId::new(5)), None);
        assert_eq!(devices.position_of_job(JobId::new(9)), Some(1));
        // An id below the newest (a job adopted from another instance) is found too.
        devices.set_job(0, Some(JobId::new(2)));
        assert_eq!(devices.position_of_job(JobId::new(2)), Some(0));
        assert_eq!(devices.position_of_job(JobId::new(6)), Some(2));
    }

    #[test]
    fn equal_reasons_are_held_once_and_unused_ones_are_swept() {
        let mut devices = Devices::new(&ids(1000));
        for i in 0..1000 {
            devices.set_detail(i, Some("timed out"));
        }
        assert_eq!(devices.details.texts.len(), 1);
        // Each device's reason replaced a thousand times: the pool keeps about what is in use.
        for round in 0..1000 {
            devices.set_detail(round % 10, Some(&format!("reason {round}")));
        }
        assert!(
            devices.details.texts.len() <= 2 * 11 + DetailPool::MIN_SWEEP,
            "{}",
            devices.details.texts.len()
        );
        assert_eq!(devices.detail(9), Some("reason 999"));
        assert_eq!(devices.detail(10), Some("timed out"));
    }
}
