//! Every device the console has seen, from jobs and from traffic.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::engine::{JobId, JobState};

#[derive(Debug, Clone, Default)]
pub struct DeviceRow {
    pub id: String,
    /// When the device last published anything.
    pub last_seen: Option<SystemTime>,
    /// Its last response, as rendered text.
    pub last_response: Option<String>,
    /// Its active or most recent job and that job's state.
    pub job: Option<(JobId, JobState)>,
    pub succeeded: u32,
    pub failed: u32,
}

#[derive(Debug, Default)]
pub struct Devices {
    pub rows: BTreeMap<String, DeviceRow>,
    /// The inventory's ids (registered devices, and those known from earlier jobs), refreshed
    /// while the new-job form is open, so `prefix*` finds devices that never answered yet.
    pub inventory: Vec<String>,
}

impl Devices {
    /// Every device id the form's `prefix*` may match, sorted, each once.
    pub fn known(&self) -> Vec<String> {
        let mut known: std::collections::BTreeSet<String> = self.inventory.iter().cloned().collect();
        known.extend(self.rows.keys().cloned());
        known.into_iter().collect()
    }

    pub fn entry(&mut self, id: &str) -> &mut DeviceRow {
        self.rows
            .entry(id.to_owned())
            .or_insert_with(|| DeviceRow { id: id.to_owned(), ..Default::default() })
    }

    /// A job of `device` entered `state`; `newly_final` counts its outcome (once per job).
    pub fn job_changed(&mut self, device: &str, job: JobId, state: JobState, newly_final: bool) {
        let row = self.entry(device);
        // A queued job does not replace the device's running one in this column.
        if state != JobState::Queued || row.job.is_none_or(|(_, s)| s.is_final()) {
            row.job = Some((job, state));
        }
        match state {
            _ if !newly_final => {}
            JobState::Succeeded => row.succeeded += 1,
            JobState::Rejected | JobState::Failed | JobState::TimedOut => row.failed += 1,
            _ => {}
        }
    }
}
