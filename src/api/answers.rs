//! What the server answers: the response bodies of the HTTP API, typed once. The server writes
//! them (`http/`) and the console and the CLI read them.

use serde::{Deserialize, Serialize};

use crate::engine::JobId;
use crate::inventory::Device;
use crate::rollout::RolloutView;
use crate::snapshot::{HistoryRecord, JobSnapshot};

/// `POST /jobs`: the jobs made, and a warning naming devices Rocky has never seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedJobs {
    pub jobs: Vec<JobSnapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// How many of the devices Rocky has never seen (with the warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub never_seen: Option<usize>,
}

/// `GET /jobs`: one page, and the cursor of the next (`null` on the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    pub jobs: Vec<JobSnapshot>,
    pub next_after: Option<JobId>,
}

/// `GET /jobs/{id}/events`: a job's stored timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub job: JobId,
    pub events: Vec<HistoryRecord>,
}

/// `GET /devices`: one page, and the cursor of the next (`null` on the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicePage {
    pub devices: Vec<Device>,
    pub next_after: Option<String>,
}

/// `POST /devices/import`: rows read, and how many were new and how many known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub imported: usize,
    pub added: usize,
    pub updated: usize,
}

/// `POST /firmware`'s answer, `GET /firmware/{sha256}` and each row of `GET /firmware`; the
/// listing. Defined with the images (`firmware/`), which the service answers with.
pub use crate::firmware::{FirmwareImage, FirmwareList};

/// `GET /rollouts`: the newest rollouts at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutList {
    pub rollouts: Vec<RolloutView>,
}
