//! Starting a rollout: its request checked and planned against the inventory before its image
//! is known (so a mistake costs no download), then its image kept by content beside the store
//! and the rollout written. The API resolves the image from a path, URL or hash between the
//! two steps; the console has it already, from the form's preview.

use super::ServiceError;
use crate::firmware::Image;
use crate::protocol::DeviceId;
use crate::rollout::{Rollout, RolloutPlan, RolloutRequest};
use crate::runtime::Handle;
use crate::snapshot::ImageInfo;

/// A rollout just started, and the devices of it Rocky has never seen (not refused: a typo's
/// job waits out its request timeout, so the faces say so).
#[derive(Debug)]
pub struct NewRollout {
    pub rollout: Rollout,
    pub never_seen: Vec<DeviceId>,
}

/// Checks `request` by every rule and plans it; its image is filled in by [`start_rollout`].
pub fn plan_rollout(handle: &Handle, request: &RolloutRequest) -> Result<RolloutPlan, ServiceError> {
    let unknown = ImageInfo { name: String::new(), size: 0, sha256: String::new() };
    request.plan(unknown, handle.inventory(), handle.default_chunk()).map_err(ServiceError::Invalid)
}

/// Keeps `image` by content (jobs made after a restart still find it) and starts `plan` with it.
pub async fn start_rollout(
    handle: &Handle,
    mut plan: RolloutPlan,
    image: Image,
) -> Result<NewRollout, ServiceError> {
    let image = handle.library().keep(image).await.map_err(|e| {
        if crate::store::is_disk_full(&e) {
            ServiceError::DiskFull("the disk is full: the rollout's image could not be kept".into())
        } else {
            ServiceError::Internal(format!("the rollout's image could not be kept: {e}"))
        }
    })?;
    plan.image = ImageInfo::from(&image);
    // Looked at before the rollout's jobs exist: a job adds its device to the inventory.
    let never_seen = handle.inventory().never_seen(&plan.devices);
    let rollout = handle.rollouts().create(plan).await?;
    Ok(NewRollout { rollout, never_seen })
}
