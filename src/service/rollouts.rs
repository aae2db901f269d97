//! Starting a rollout: its request checked and planned against the inventory before its image
//! is known (so a mistake costs no download), then its image kept by content beside the store
//! and the rollout written. The API resolves the image from a path, URL or hash between the
//! two steps; the console has it already, from the form's preview.

use std::path::Path;

use super::{Service, ServiceError};
use crate::audit::Action;
use crate::firmware::{FirmwareSource, Image, LoadLimits, resolve};
use crate::protocol::DeviceId;
use crate::rollout::{DeviceWindow, Rollout, RolloutId, RolloutPlan, RolloutRequest, RolloutView};
use crate::runtime::RolloutError;
use crate::snapshot::ImageInfo;

/// A rollout just started, and the devices of it Rocky has never seen (not refused: a typo's
/// job waits out its request timeout, so the faces say so).
#[derive(Debug)]
pub struct NewRollout {
    pub rollout: Rollout,
    pub never_seen: Vec<DeviceId>,
}

impl Service {
    /// Checks `request` by every rule and plans it; its image is filled in by
    /// [`Service::start_rollout`].
    pub fn plan_rollout(&self, request: &RolloutRequest) -> Result<RolloutPlan, ServiceError> {
        let unknown = ImageInfo { name: "".into(), size: 0, sha256: "".into() };
        let now = self.clock().unix_ms(self.clock().now());
        request.plan(unknown, self.inventory(), self.default_chunk(), now).map_err(ServiceError::Invalid)
    }

    /// The image a rollout request names by path (inside `firmware_dir`), URL or hash, loaded
    /// after the plan passed (a mistake costs no download).
    pub async fn rollout_image(
        &self,
        firmware: &FirmwareSource,
        firmware_dir: &Path,
        limits: &LoadLimits,
    ) -> Result<Image, ServiceError> {
        Ok(resolve(firmware, self.library(), Some(firmware_dir), limits).await?)
    }

    /// Keeps `image` by content (jobs made after a restart still find it) and starts `plan`
    /// with it.
    pub async fn start_rollout(&self, plan: RolloutPlan, image: Image) -> Result<NewRollout, ServiceError> {
        let result = self.start_rollout_unaudited(plan, image).await;
        self.audited(Action::RolloutCreate, result, |made| rollout_target(made.map(|m| &m.rollout))).await
    }

    async fn start_rollout_unaudited(
        &self,
        mut plan: RolloutPlan,
        image: Image,
    ) -> Result<NewRollout, ServiceError> {
        self.check_rollout_signing(&image, &plan.devices, plan.aws_ota.as_ref())?;
        let image = self.library().keep(image).await.map_err(|e| {
            if crate::write_error::is_disk_full(&e) {
                ServiceError::DiskFull("the disk is full: the rollout's image could not be kept".into())
            } else {
                ServiceError::Internal(format!("the rollout's image could not be kept: {e}"))
            }
        })?;
        plan.image = ImageInfo::from(&image);
        // Looked at before the rollout's jobs exist: a job adds its device to the inventory.
        let never_seen = self.inventory().never_seen(&plan.devices);
        let rollout = self.handle.rollouts().create(plan).await?;
        Ok(NewRollout { rollout, never_seen })
    }

    /// Starts `plan` as it is: its image is one the library holds already (the demo's rollouts,
    /// whose images live in memory while the console runs).
    pub async fn start_planned_rollout(&self, plan: RolloutPlan) -> Result<Rollout, ServiceError> {
        let result = self.handle.rollouts().create(plan).await.map_err(ServiceError::from);
        self.audited(Action::RolloutCreate, result, rollout_target).await
    }

    /// Pauses, resumes or cancels rollout `id`; the change is on disk when this answers.
    pub async fn control_rollout(&self, id: RolloutId, verb: RolloutVerb) -> Result<Rollout, ServiceError> {
        let rollouts = self.handle.rollouts();
        let (action, result) = match verb {
            RolloutVerb::Pause => (Action::RolloutPause, rollouts.pause(id).await),
            RolloutVerb::Resume => (Action::RolloutResume, rollouts.resume(id).await),
            RolloutVerb::Cancel => (Action::RolloutCancel, rollouts.cancel(id).await),
        };
        self.audited(action, result.map_err(ServiceError::from), |_| format!("rollout:{id}")).await
    }

    /// Rollout `id` with its history and its devices' outcomes: all of them, or the ones in
    /// `window` (at most [`DeviceWindow::MAX`]).
    pub fn rollout_view(
        &self,
        id: RolloutId,
        window: Option<DeviceWindow>,
    ) -> Result<RolloutView, ServiceError> {
        if let Some(w) = window
            && !(1..=DeviceWindow::MAX).contains(&w.limit)
        {
            return Err(ServiceError::Invalid(format!("limit must be 1 to {}", DeviceWindow::MAX)));
        }
        self.handle.rollouts().view(id, window).ok_or(ServiceError::Rollout(RolloutError::NotFound(id)))
    }

    /// The newest `limit` rollouts at a glance (no devices), newest first.
    pub fn rollouts(&self, limit: usize) -> Vec<RolloutView> {
        self.handle.rollouts().list(limit)
    }
}

/// The audit's name for a rollout: `rollout:3`, or `rollout` when none was made.
fn rollout_target(rollout: Option<&Rollout>) -> String {
    rollout.map_or_else(|| "rollout".to_owned(), |r| format!("rollout:{}", r.id))
}

/// What an operator can do to a running rollout (`POST /rollouts/{id}/pause`, the console's
/// keys, `rocky rollout pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutVerb {
    Pause,
    Resume,
    Cancel,
}

impl RolloutVerb {
    pub const ALL: [RolloutVerb; 3] = [RolloutVerb::Pause, RolloutVerb::Resume, RolloutVerb::Cancel];

    /// The API's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|verb| verb.as_str() == word)
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
