//! Jobs an operator asks for beyond a plain submit: the same update again for a job that ended.

use super::ServiceError;
use crate::engine::JobSpec;
use crate::firmware::{ChunkSize, FirmwareSource, LoadLimits, resolve};
use crate::runtime::Handle;
use crate::snapshot::JobSnapshot;

/// A new job for `job`'s device and image at its chunk size. A finished job holds only its
/// image's description, so the bytes come back by hash (memory, the uploads, the image store).
pub async fn retry(
    handle: &Handle,
    job: &JobSnapshot,
    limits: &LoadLimits,
) -> Result<Vec<JobSnapshot>, ServiceError> {
    let source = FirmwareSource::Sha256(job.image.sha256.clone());
    let image = resolve(&source, handle.library(), None, limits)
        .await
        .map_err(|e| ServiceError::Invalid(format!("cannot retry job {}: {e}", job.id)))?;
    let chunk_size = ChunkSize::new(u64::from(job.chunk_size)).ok();
    let spec = JobSpec { device: job.device_id.clone(), image, chunk_size, chunk_interval: None };
    Ok(handle.submit(vec![spec]).await?)
}
