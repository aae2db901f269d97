//! Jobs as an operator asks for them: created for devices from an image named by path, URL or
//! hash (resolved here, paced by the one rule of `firmware::Pacing`), read, cancelled, their
//! timelines, and the same update again for a job that ended.

use std::path::Path;
use std::sync::Arc;

use super::{JobFilter, Service, ServiceError, jobs_target};
use crate::audit::Action;
use crate::engine::{JobId, JobSpec};
use crate::firmware::{ChunkSize, FirmwareSource, LoadLimits, Pacing, resolve};
use crate::protocol::DeviceId;
use crate::snapshot::{HistoryRecord, JobSnapshot};
use crate::units::Rate;

/// Jobs to create: one per device, all of one image, paced alike.
#[derive(Debug, Clone)]
pub struct NewJobs {
    pub devices: Vec<DeviceId>,
    pub firmware: FirmwareSource,
    pub chunk_size: Option<u64>,
    pub chunk_interval_ms: Option<u64>,
    pub max_rate: Option<Rate>,
    /// Sent even to devices whose status says they run the image already.
    pub force: bool,
    /// `false`: the whole image even to devices that take patches.
    pub delta: bool,
    /// For devices that run AWS's OTA agent: this request's own `certfile` or `filepath`.
    pub aws_ota: Option<crate::runtime::AwsOtaOverride>,
}

/// Jobs just created, and their devices Rocky had never seen (not refused: a typo's job waits
/// out its request timeout, so the faces say so).
#[derive(Debug)]
pub struct SubmittedJobs {
    pub jobs: Vec<JobSnapshot>,
    pub never_seen: Vec<DeviceId>,
}

impl Service {
    /// Resolves the image (paths only inside `firmware_dir`), paces the jobs and creates them:
    /// all or none.
    pub async fn submit_jobs(
        &self,
        request: NewJobs,
        firmware_dir: &Path,
        limits: &LoadLimits,
    ) -> Result<SubmittedJobs, ServiceError> {
        let asked = devices_target(&request.devices);
        let result = self.submit_jobs_unaudited(request, firmware_dir, limits).await;
        self.audited(Action::JobCreate, result, |made| match made {
            Some(made) => jobs_target(made.jobs.iter().map(|job| &job.id)),
            None => asked,
        })
        .await
    }

    async fn submit_jobs_unaudited(
        &self,
        request: NewJobs,
        firmware_dir: &Path,
        limits: &LoadLimits,
    ) -> Result<SubmittedJobs, ServiceError> {
        let NewJobs { devices, firmware, chunk_size, chunk_interval_ms, max_rate, force, delta, aws_ota } =
            request;
        if let Some(over) = &aws_ota {
            over.check().map_err(ServiceError::Invalid)?;
        }
        let paced = Pacing::new(chunk_size, chunk_interval_ms, max_rate, self.default_chunk())
            .map_err(ServiceError::Invalid)?;
        let image = resolve(&firmware, self.library(), Some(firmware_dir), limits).await?;
        // Looked at before the jobs exist: making a job adds its device to the inventory.
        let never_seen = self.inventory().never_seen(&devices);
        let specs = devices
            .into_iter()
            .map(|device| JobSpec {
                chunk_size: paced.chunk_size,
                chunk_interval: paced.pause,
                force,
                delta_note: (!delta).then(|| "the request said \"delta\": false: sent whole".to_owned()),
                ..JobSpec::new(device, image.clone())
            })
            .collect();
        let jobs = self.submit_unaudited(specs, aws_ota.as_ref()).await?;
        Ok(SubmittedJobs { jobs, never_seen })
    }

    /// Creates jobs whose images are already in hand (the console's form previewed them).
    /// Each gets its image's manifest (none is created when the manifest rule stops one) and,
    /// for a device that speaks deltas, a patch from the image it runs.
    pub async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<JobSnapshot>, ServiceError> {
        let asked = devices_target(&specs.iter().map(|spec| spec.device.clone()).collect::<Vec<_>>());
        let result = self.submit_unaudited(specs, None).await;
        self.audited(Action::JobCreate, result, |made| {
            made.map_or(asked, |jobs| jobs_target(jobs.iter().map(|job| &job.id)))
        })
        .await
    }

    async fn submit_unaudited(
        &self,
        mut specs: Vec<JobSpec>,
        aws_ota: Option<&crate::runtime::AwsOtaOverride>,
    ) -> Result<Vec<JobSnapshot>, ServiceError> {
        self.sign_specs(&mut specs)?;
        // Devices that run AWS's OTA agent get its job document, or the whole request is refused.
        let mut refusals = Vec::new();
        for spec in specs.iter_mut() {
            match self.handle.aws_job_for(&spec.device, &spec.image, aws_ota) {
                Ok(aws) => spec.aws = aws,
                Err(why) => refusals.push(why),
            }
        }
        if let Some(first) = refusals.first() {
            let more = refusals.len() - 1;
            let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
            return Err(ServiceError::Invalid(format!("{first}{tail}")));
        }
        self.choose_deltas(&mut specs).await;
        Ok(self.handle.submit(specs).await?)
    }

    /// Cancels job `id`, wherever it is driven (here, or by another instance sharing the store).
    pub async fn cancel_job(&self, id: JobId) -> Result<JobSnapshot, ServiceError> {
        let result = self.handle.cancel(id).await.map_err(ServiceError::from);
        self.audited(Action::JobCancel, result, |_| format!("job:{id}")).await
    }

    /// A job's latest state, read without asking the engine.
    pub fn job(&self, id: JobId) -> Result<Arc<JobSnapshot>, ServiceError> {
        self.handle.job(id).ok_or_else(|| ServiceError::NotFound(format!("no job {id}")))
    }

    /// The jobs `filter` matches, by id, read in the caller's task: however many jobs there
    /// are, the engine's task is never asked to scan them.
    pub fn jobs(&self, filter: &JobFilter) -> Vec<Arc<JobSnapshot>> {
        self.handle.jobs(filter)
    }

    /// Job `id`'s stored timeline; unavailable when this Rocky keeps no store.
    pub async fn job_history(&self, id: JobId) -> Result<Vec<HistoryRecord>, ServiceError> {
        self.job(id)?;
        self.handle.history(id).await?.map_err(ServiceError::Unavailable)
    }

    /// A new job for `job`'s device and image at its chunk size. A finished job holds only its
    /// image's description, so the bytes come back by hash (memory, the uploads, the image store).
    pub async fn retry(
        &self,
        job: &JobSnapshot,
        limits: &LoadLimits,
    ) -> Result<Vec<JobSnapshot>, ServiceError> {
        let source = FirmwareSource::Sha256(job.image.sha256.to_string());
        let result = match resolve(&source, self.library(), None, limits).await {
            Ok(image) => {
                let chunk_size = ChunkSize::new(u64::from(job.chunk_size)).ok();
                let spec =
                    JobSpec { chunk_size, force: job.force, ..JobSpec::new(job.device_id.clone(), image) };
                // An AWS device's job names where its certificate and image are, as before.
                let aws_ota = job.aws.as_ref().map(|aws| crate::runtime::AwsOtaOverride {
                    certfile: Some(aws.cert_file.clone()),
                    filepath: Some(aws.file_path.clone()),
                });
                self.submit_unaudited(vec![spec], aws_ota.as_ref()).await
            }
            Err(e) => Err(ServiceError::Invalid(format!("cannot retry job {}: {e}", job.id))),
        };
        let retried = job.id;
        self.audited(Action::JobRetry, result, |made| match made {
            Some(jobs) => format!("job:{retried} as {}", jobs_target(jobs.iter().map(|job| &job.id))),
            None => format!("job:{retried}"),
        })
        .await
    }
}

/// The audit's name for the devices of a creation that was refused: `device:a,b` (the first
/// ten, then the count).
fn devices_target(devices: &[DeviceId]) -> String {
    let shown: Vec<&str> = devices.iter().take(10).map(DeviceId::as_str).collect();
    let mut target = format!("device:{}", shown.join(","));
    if devices.len() > shown.len() {
        target.push_str(&format!(",… ({} devices)", devices.len()));
    }
    target
}
