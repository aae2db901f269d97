//! Where the console's jobs, events and actions come from: a runtime in this process, or a
//! running `rocky serve` reached through its HTTP API (`rocky console --server`). The console
//! reads both the same way (a job follower, an event stream, a few actions), so every screen and
//! key works the same attached or not.

mod remote;
mod sse;

pub use remote::Remote;

use std::sync::Arc;

use crate::clock::Clock;
use crate::engine::{JobId, JobSpec};
use crate::firmware::Image;
use crate::firmware::{ChunkSize, FirmwareSource, Library, LoadLimits, resolve};
use crate::inventory::Device;
use crate::rollout::{RolloutId, RolloutRequest, RolloutView};
use crate::runtime::{EventStream, Handle, JobFollower};
use crate::snapshot::JobSnapshot;
use crate::store::HistoryRecord;

/// Inventory devices the console lists (the first by id; the API pages at this many).
pub const INVENTORY_SHOWN: usize = 10_000;

/// Rollouts the console lists (the newest).
pub const ROLLOUTS_SHOWN: usize = 100;

/// What the operator can do to a rollout from the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutVerb {
    Pause,
    Resume,
    Cancel,
}

impl RolloutVerb {
    /// The API's word for it (`POST /rollouts/{id}/pause`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }

    /// Said once done: "rollout 3 paused".
    pub fn done(self) -> &'static str {
        match self {
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Cancel => "cancelled",
        }
    }
}

pub enum Source {
    Local(Handle),
    Remote(Remote),
}

impl Source {
    pub fn clock(&self) -> Clock {
        match self {
            Source::Local(handle) => *handle.clock(),
            Source::Remote(remote) => remote.clock(),
        }
    }

    /// Every job's state from a full snapshot on: lossless, latest wins.
    pub fn follow_jobs(&self) -> JobFollower {
        match self {
            Source::Local(handle) => handle.follow_jobs(),
            Source::Remote(remote) => remote.follow_jobs(),
        }
    }

    /// Traffic, timeline events and the broker connection: bounded, losses counted. For a
    /// remote source only the first call gets the stream.
    pub fn subscribe(&self) -> Option<EventStream> {
        match self {
            Source::Local(handle) => Some(handle.subscribe()),
            Source::Remote(remote) => remote.take_events(),
        }
    }

    /// Where previews are loaded: the operator's own files are always read here.
    pub fn library(&self) -> Arc<Library> {
        match self {
            Source::Local(handle) => handle.library().clone(),
            Source::Remote(remote) => remote.library(),
        }
    }

    /// The inventory's first [`INVENTORY_SHOWN`] devices by id (registered, or known from the
    /// wire): the devices pane lists them and the new-job form's `prefix*` matches them.
    pub async fn inventory(&self) -> Result<Vec<Device>, String> {
        match self {
            Source::Local(handle) => {
                let query = crate::inventory::DeviceQuery { limit: INVENTORY_SHOWN, ..Default::default() };
                Ok(handle.inventory().list(&query))
            }
            Source::Remote(remote) => remote.inventory(INVENTORY_SHOWN).await,
        }
    }

    /// Creates the jobs; answers how many.
    pub async fn submit(&self, specs: Vec<JobSpec>) -> Result<usize, String> {
        match self {
            Source::Local(handle) => {
                handle.submit(specs).await.map(|jobs| jobs.len()).map_err(|e| e.to_string())
            }
            Source::Remote(remote) => remote.submit(specs).await,
        }
    }

    pub async fn cancel(&self, id: JobId) -> Result<(), String> {
        match self {
            Source::Local(handle) => handle.cancel(id).await.map(|_| ()).map_err(|e| e.to_string()),
            Source::Remote(remote) => remote.cancel(id).await,
        }
    }

    /// A new job for the same device and image. A finished job holds only its image's
    /// description, so the bytes come back by hash (memory, the upload, or the image store).
    pub async fn retry(&self, job: &JobSnapshot, limits: &LoadLimits) -> Result<usize, String> {
        match self {
            Source::Local(handle) => {
                let source = FirmwareSource::Sha256(job.image.sha256.clone());
                let image = resolve(&source, handle.library(), None, limits)
                    .await
                    .map_err(|e| format!("cannot retry job {}: {e}", job.id))?;
                let chunk_size = ChunkSize::new(u64::from(job.chunk_size)).ok();
                let spec = JobSpec { device: job.device_id.clone(), image, chunk_size, chunk_interval: None };
                self.submit(vec![spec]).await
            }
            Source::Remote(remote) => remote.retry(job).await,
        }
    }

    /// The newest rollouts at a glance (no devices), newest first.
    pub async fn rollouts(&self) -> Result<Vec<RolloutView>, String> {
        match self {
            Source::Local(handle) => Ok(handle.rollouts().list(ROLLOUTS_SHOWN)),
            Source::Remote(remote) => remote.rollouts(ROLLOUTS_SHOWN).await,
        }
    }

    /// One rollout whole: every device's outcome and its history.
    pub async fn rollout(&self, id: RolloutId) -> Result<RolloutView, String> {
        match self {
            Source::Local(handle) => {
                handle.rollouts().view(id).ok_or_else(|| format!("there is no rollout {id}"))
            }
            Source::Remote(remote) => remote.rollout(id).await,
        }
    }

    /// Starts a rollout of `image` (the form's): here the request is checked and planned
    /// against this process's inventory and the image kept by content; attached, the server
    /// does both.
    pub async fn create_rollout(&self, request: RolloutRequest, image: Image) -> Result<RolloutId, String> {
        match self {
            Source::Local(handle) => {
                let plan = crate::service::plan_rollout(handle, &request).map_err(|e| e.to_string())?;
                let started =
                    crate::service::start_rollout(handle, plan, image).await.map_err(|e| e.to_string())?;
                Ok(started.rollout.id)
            }
            Source::Remote(remote) => remote.create_rollout(&request, &image).await,
        }
    }

    /// Pauses, resumes or cancels a rollout; the change is on disk when this answers.
    pub async fn control_rollout(&self, id: RolloutId, verb: RolloutVerb) -> Result<(), String> {
        match self {
            Source::Local(handle) => {
                let rollouts = handle.rollouts();
                let result = match verb {
                    RolloutVerb::Pause => rollouts.pause(id).await,
                    RolloutVerb::Resume => rollouts.resume(id).await,
                    RolloutVerb::Cancel => rollouts.cancel(id).await,
                };
                result.map(|_| ()).map_err(|e| format!("cannot {} rollout {id}: {e}", verb.as_str()))
            }
            Source::Remote(remote) => remote.control_rollout(id, verb).await,
        }
    }

    /// A job's stored timeline, when the other side keeps one.
    pub async fn history(&self, id: JobId) -> Option<Vec<HistoryRecord>> {
        match self {
            Source::Local(handle) => handle.history(id).await.ok()?.ok(),
            Source::Remote(remote) => remote.history(id).await,
        }
    }
}
