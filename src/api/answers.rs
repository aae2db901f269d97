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

/// An image Rocky holds, and its manifest when one from a trusted key is attached: `POST
/// /firmware`'s answer, `GET /firmware/{sha256}` and each row of `GET /firmware`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareImage {
    pub name: String,
    /// The file name in the firmware directory, for an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub manifest: Option<crate::protocol::Manifest>,
}

/// `GET /firmware`: the images Rocky can name by hash (at most [`FirmwareList::MAX`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareList {
    pub images: Vec<FirmwareImage>,
}

impl FirmwareList {
    pub const MAX: usize = 1000;
}

/// `GET /rollouts`: the newest rollouts at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutList {
    pub rollouts: Vec<RolloutView>,
}
