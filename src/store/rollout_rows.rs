//! A rollout as the store writes it, whatever the database. A rollout's head (its plan without
//! the device list, state, reason and history of changes) is one JSON row in `rollouts`; each
//! device's outcome is a row of its own in `rollout_devices`, so a change writes the head and
//! the devices that changed, not all of a 100,000-device rollout. The jobs a rollout created
//! name it in their own rows (`jobs.rollout_id`), written in the job's creation transaction.

use std::hash::{Hash, Hasher};

use crate::protocol::DeviceId;
use crate::rollout::{Outcome, Rollout, Slot};

/// What one write of a rollout holds.
#[derive(Debug, Clone)]
pub struct RolloutRow {
    pub id: u64,
    pub state: &'static str,
    /// The head as JSON.
    pub body: String,
    pub updated_at: u64,
    /// Devices to write, by position: all of them the first time, then those that changed.
    pub devices: Vec<(usize, Slot)>,
}

impl RolloutRow {
    /// The head and the devices whose fingerprint differs from `saved` (all when `saved` is
    /// shorter, as for a rollout never written); also the fingerprints as of this write.
    pub fn of(rollout: &Rollout, saved: &[u64]) -> (Self, Vec<u64>) {
        let fingerprints: Vec<u64> = rollout.slots.iter().map(fingerprint).collect();
        let devices = rollout
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| saved.get(*i) != fingerprints.get(*i))
            .map(|(i, slot)| (i, slot.clone()))
            .collect();
        let row = Self {
            id: rollout.id,
            state: rollout.state.as_str(),
            // A rollout's head is plain data: serialising it cannot fail.
            body: serde_json::to_string(&head(rollout)).unwrap_or_default(),
            updated_at: rollout.updated_at,
            devices,
        };
        (row, fingerprints)
    }
}

/// A rollout without its devices (kept in rows of their own), with its history.
fn head(rollout: &Rollout) -> Rollout {
    let mut head = rollout.head();
    head.changes = rollout.changes.clone();
    head
}

/// Tells whether a device's row must be written again.
fn fingerprint(slot: &Slot) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    slot.device_id.as_str().hash(&mut hasher);
    outcome_name(slot.outcome).hash(&mut hasher);
    slot.job_id.hash(&mut hasher);
    slot.attempts.hash(&mut hasher);
    slot.retry_at.hash(&mut hasher);
    slot.detail.hash(&mut hasher);
    hasher.finish()
}

/// The outcome as stored (its serde name: `succeeded`, `waiting`, …).
pub(crate) fn outcome_name(outcome: Outcome) -> String {
    serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Reads a stored device row back; a row that is not a valid device says why.
pub(crate) fn slot(
    device: &str,
    outcome: &str,
    job_id: Option<crate::engine::JobId>,
    attempts: u32,
    retry_at: Option<i64>,
    detail: Option<String>,
) -> Result<Slot, String> {
    Ok(Slot {
        device_id: DeviceId::parse(device).map_err(|e| e.to_string())?,
        outcome: serde_json::from_value(serde_json::Value::String(outcome.to_owned()))
            .map_err(|_| format!("{outcome:?} is not an outcome"))?,
        job_id,
        attempts,
        retry_at: retry_at.map(|at| at as u64),
        detail,
    })
}

/// A stored head with its devices in order, or why it cannot be read.
pub(crate) fn assemble(body: &str, slots: Vec<Slot>) -> Result<Rollout, String> {
    let mut rollout: Rollout = serde_json::from_str(body).map_err(|e| e.to_string())?;
    rollout.plan.devices = slots.iter().map(|s| s.device_id.clone()).collect();
    rollout.slots = slots;
    Ok(rollout)
}
