//! A rollout as the store writes it, whatever the database. A rollout's head (its plan without
//! the device list, state, reason and history of changes) is one JSON row in `rollouts`; each
//! device's outcome is a row of its own in `rollout_devices`, so a change writes the head and
//! the devices that changed, not all of a 100,000-device rollout. The jobs a rollout created
//! name it in their own rows (`jobs.rollout_id`), written in the job's creation transaction.

use crate::engine::RolloutId;
use crate::protocol::DeviceId;
use crate::rollout::{Devices, Outcome, Rollout, Slot};

/// Rollouts read back for an instance that shows them but does not plan them.
#[derive(Debug, Default)]
pub struct StoredRollouts {
    /// Every rollout stored (and readable), with its save number: PostgreSQL numbers each save
    /// (`rollouts.saved`); `None` from a store that does not, whose rollouts are all in `read`.
    pub saves: std::collections::BTreeMap<RolloutId, Option<i64>>,
    /// Those saved since the save numbers the reader knew.
    pub read: Vec<Rollout>,
    /// Those saved since that could not be read (a row edited or deleted by hand): skipped with
    /// a warning, and read again only once saved again.
    pub unreadable: Vec<RolloutId>,
}

/// What one write of a rollout holds.
#[derive(Debug, Clone)]
pub struct RolloutRow {
    pub id: RolloutId,
    pub state: &'static str,
    /// The head as JSON.
    pub body: String,
    pub updated_at: u64,
    /// Devices to write, by position: all of them the first time, then those that changed.
    pub devices: Vec<(usize, Slot)>,
}

impl RolloutRow {
    /// The head and the devices changed since the last write (all of them the first time),
    /// which count as written from now on (see `Devices::unsaved_again` for a write that
    /// fails).
    pub fn of(rollout: &mut Rollout) -> Self {
        Self {
            id: rollout.id,
            state: rollout.state.as_str(),
            // A rollout's head is plain data: serialising it cannot fail.
            body: serde_json::to_string(&head(rollout)).unwrap_or_default(),
            updated_at: rollout.updated_at,
            devices: rollout.devices.take_unsaved(),
        }
    }
}

/// A rollout without its devices (kept in rows of their own), with its history.
fn head(rollout: &Rollout) -> Rollout {
    let mut head = rollout.head();
    head.changes = rollout.changes.clone();
    head
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
    rollout.devices = Devices::from_slots(slots);
    Ok(rollout)
}
