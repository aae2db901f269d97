//! A job's one shape outside the engine: what the API answers, `/events` streams, the store
//! writes and reads, `rocky jobs --json` prints and the console shows. Made once, at the
//! runtime's edge, from the engine's view; times are milliseconds since the Unix epoch.
//!
//! Field names follow the requests (`device_id`, `chunk_interval_ms`), so what a client sends and
//! what it reads back use the same words.

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::engine::{JobId, JobState, JobView, RolloutId};
use std::sync::Arc;
use std::time::Duration;

use crate::firmware::{ChunkSize, Image};
use crate::protocol::DeviceId;

/// An image as a job names it: enough to show and compare, never the bytes. Its texts are
/// shared: a rollout's 100,000 jobs (in the job table) and the devices it updated (in the
/// inventory) each hold one, all made from the one image's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: Arc<str>,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: Arc<str>,
}

impl From<&Image> for ImageInfo {
    fn from(image: &Image) -> Self {
        image.info()
    }
}

impl ImageInfo {
    /// The first 8 hex digits and an ellipsis, as the console shows a hash at a glance.
    pub fn short_hash(&self) -> String {
        format!("{}…", self.sha256.get(..8).unwrap_or(&self.sha256))
    }
}

/// One job at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSnapshot {
    pub id: JobId,
    pub device_id: DeviceId,
    pub state: JobState,
    pub image: ImageInfo,
    pub chunk_size: u32,
    pub chunk_interval_ms: u64,
    /// Chunks sent: handed to the broker (under flow control, the highest sent).
    pub chunks_done: u32,
    /// Under flow control, chunks the device confirmed it holds; `null` for a pushed job.
    pub chunks_confirmed: Option<u32>,
    /// Under flow control, the device's window (0: paused); `null` for a pushed job.
    pub window: Option<u32>,
    pub chunks_total: u32,
    pub bytes_sent: u64,
    /// The rollout that asked for this job, if one did.
    #[serde(default)]
    pub rollout_id: Option<RolloutId>,
    /// FOTA_REQUEST sends so far.
    pub attempts: u32,
    pub error: Option<String>,
    /// The reason code the device gave with its NACK or DONE_FAILED, when it gave a code
    /// (`error` holds its meaning from the table).
    #[serde(default)]
    pub reason_code: Option<u64>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Sent even though the device's status said it ran the image already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// While `confirming`: the boot counter a status after the device's next boot must pass.
    #[serde(default)]
    pub confirm_boot: Option<u64>,
    /// When a status confirmed that the device runs the image (confirm extension), else null.
    #[serde(default)]
    pub confirmed_at: Option<u64>,
    /// The image's manifest (`kid`, `alg`, `version`, `seq`, and `cose`, its bytes in hex),
    /// sent to the device when its status lists `manifest`; null for an unsigned image.
    #[serde(default)]
    pub manifest: Option<crate::protocol::Manifest>,
    /// The patch offered instead of the image (`base_sha256`, `patch_size`, `patch_sha256`), for
    /// a device that speaks `delta-bsdiff4` and ran a base Rocky holds; null for a whole image.
    #[serde(default)]
    /// Boxed, as `aws` is: most jobs have neither, and the job table holds a snapshot of every
    /// job it keeps (100,000 in a fleet's rollout).
    pub delta: Option<Box<crate::firmware::DeltaInfo>>,
    /// The device runs AWS's OTA agent (the `aws-iot-ota` profile): the job document's
    /// `certfile`, `filepath` and `sig-sha256-ecdsa`. Absent for Rocky's own protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<Box<crate::engine::AwsJob>>,
}

impl JobSnapshot {
    /// The snapshot of the engine's view, its instants placed on the wall clock by `clock`.
    pub fn new(view: &JobView, clock: &Clock) -> Self {
        Self {
            id: view.id,
            device_id: view.device.clone(),
            state: view.state,
            image: ImageInfo::from(&view.image),
            chunk_size: view.chunk_size.get(),
            chunk_interval_ms: u64::try_from(view.chunk_interval.as_millis()).unwrap_or(u64::MAX),
            chunks_done: view.chunks_done,
            chunks_confirmed: view.chunks_confirmed,
            window: view.window,
            chunks_total: view.chunks_total,
            bytes_sent: view.bytes_sent,
            rollout_id: view.rollout,
            attempts: view.attempts,
            error: view.error.clone(),
            reason_code: view.reason_code,
            created_at: clock.unix_ms(view.created_at),
            started_at: view.started_at.map(|t| clock.unix_ms(t)),
            finished_at: view.finished_at.map(|t| clock.unix_ms(t)),
            force: view.force,
            confirm_boot: view.confirm_boot,
            confirmed_at: view.confirmed_at.map(|t| clock.unix_ms(t)),
            manifest: view.manifest.clone(),
            delta: view.delta.map(Box::new),
            aws: view.aws.clone().map(Box::new),
        }
    }

    /// The engine's view of this snapshot with `image` (its bytes, or only its description),
    /// wall-clock times placed back on `clock`'s instants: how a stored job is restored and how
    /// the attached console reads a server's `job_created` event.
    pub fn to_view(&self, image: Image, clock: &Clock) -> JobView {
        let at = |ms: u64| clock.instant(ms);
        JobView {
            id: self.id,
            device: self.device_id.clone(),
            image,
            chunk_size: ChunkSize::new(u64::from(self.chunk_size)).unwrap_or_default(),
            chunk_interval: Duration::from_millis(self.chunk_interval_ms),
            rollout: self.rollout_id,
            state: self.state,
            chunks_done: self.chunks_done,
            chunks_confirmed: self.chunks_confirmed,
            window: self.window,
            chunks_total: self.chunks_total,
            bytes_sent: self.bytes_sent,
            attempts: self.attempts,
            error: self.error.clone(),
            reason_code: self.reason_code,
            created_at: at(self.created_at),
            started_at: self.started_at.map(at),
            finished_at: self.finished_at.map(at),
            force: self.force,
            confirm_boot: self.confirm_boot,
            confirmed_at: self.confirmed_at.map(at),
            manifest: self.manifest.clone(),
            delta: self.delta.as_deref().copied(),
            aws: self.aws.as_deref().cloned(),
        }
    }

    /// The image as a description only (name, size, hash; no bytes).
    pub fn described_image(&self) -> Image {
        let mut sha = [0u8; 32];
        if hex::decode_to_slice(&*self.image.sha256, &mut sha).is_err() {
            sha = [0; 32];
        }
        Image::described(&self.image.name, sha, self.image.size)
    }

    /// Fraction of chunks sent, 0.0 ..= 1.0.
    pub fn progress(&self) -> f64 {
        fraction(self.chunks_done, self.chunks_total)
    }

    /// Fraction of chunks the device confirmed (flow control), else of chunks sent.
    pub fn confirmed_progress(&self) -> f64 {
        fraction(self.chunks_confirmed.unwrap_or(self.chunks_done), self.chunks_total)
    }

    /// Whether the device sets the pace (flow control).
    pub fn device_paced(&self) -> bool {
        self.window.is_some()
    }
}

fn fraction(part: u32, total: u32) -> f64 {
    if total == 0 { 0.0 } else { f64::from(part.min(total)) / f64::from(total) }
}

impl JobSnapshot {}

/// One entry of a job's timeline: a state it entered (or a retry), when, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryRecord {
    pub job: JobId,
    pub at: u64,
    pub state: JobState,
    pub detail: Option<String>,
    pub attempt: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_uses_the_requests_field_names_and_reads_back() {
        let snapshot = JobSnapshot {
            reason_code: None,
            rollout_id: None,
            id: JobId::new(7),
            device_id: DeviceId::parse("dev-7").unwrap(),
            state: JobState::Transferring,
            image: ImageInfo { name: "fw.bin".into(), size: 100, sha256: "ab".repeat(32).into() },
            chunk_size: 64,
            chunk_interval_ms: 5,
            chunks_done: 1,
            chunks_confirmed: None,
            window: None,
            chunks_total: 2,
            bytes_sent: 64,
            attempts: 1,
            error: None,
            created_at: 1,
            started_at: Some(2),
            finished_at: None,
            force: false,
            confirm_boot: None,
            confirmed_at: None,
            manifest: None,
            delta: None,
            aws: None,
        };
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["device_id"], "dev-7");
        assert_eq!(json["state"], "transferring");
        assert_eq!(json["image"]["sha256"], "ab".repeat(32));
        assert_eq!(serde_json::from_value::<JobSnapshot>(json).unwrap(), snapshot);
        let bad = serde_json::json!({"device_id": "a/b"});
        assert!(serde_json::from_value::<JobSnapshot>(bad).is_err());
    }
}
