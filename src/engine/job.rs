//! One update job: its state machine's states and the snapshot others may read.

use std::fmt;
use std::time::{Duration, Instant};

use crate::firmware::{ChunkSize, Image};
use crate::protocol::DeviceId;

/// Job ids go on the wire as the first frame item: unsigned, 32 bits, never reused.
pub type JobId = u32;

/// `queued → requesting → transferring → finishing → succeeded`, or one of the other final states.
/// A device that confirms updates (its status lists `confirm`) passes through `confirming`
/// between its FOTA_DONE_SUCCESS and the status that shows what it booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Requesting,
    Transferring,
    Finishing,
    /// Stored and verified by the device; waiting for a status after its next boot that names
    /// the image (the confirm extension). Holds the device, not a transfer slot.
    Confirming,
    Succeeded,
    /// The device booted and came back on another image (a failure).
    RolledBack,
    /// The device already runs the image: nothing was sent (not a failure).
    UpToDate,
    /// The device answered FOTA_REQUEST_NACK.
    Rejected,
    /// The device answered FOTA_DONE_FAILED.
    Failed,
    /// The device did not answer in time; the job's error says in which phase.
    TimedOut,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 12] = [
        JobState::Queued,
        JobState::Requesting,
        JobState::Transferring,
        JobState::Finishing,
        JobState::Confirming,
        JobState::Succeeded,
        JobState::UpToDate,
        JobState::Rejected,
        JobState::Failed,
        JobState::RolledBack,
        JobState::TimedOut,
        JobState::Cancelled,
    ];

    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::UpToDate
                | Self::Rejected
                | Self::Failed
                | Self::RolledBack
                | Self::TimedOut
                | Self::Cancelled
        )
    }

    /// A final state that counts against the update: the device refused, failed, rolled back
    /// or never answered (cancelled is the operator's, up to date is no failure).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Rejected | Self::Failed | Self::RolledBack | Self::TimedOut)
    }

    /// Holding the device: between FOTA_REQUEST and the verdict.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Requesting | Self::Transferring | Self::Finishing)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Requesting => "requesting",
            Self::Transferring => "transferring",
            Self::Finishing => "finishing",
            Self::Confirming => "confirming",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled_back",
            Self::UpToDate => "up_to_date",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    /// In words, as people read it: `timed out` (`as_str` is the API's `timed_out`).
    pub fn label(self) -> &'static str {
        match self {
            Self::TimedOut => "timed out",
            Self::RolledBack => "rolled back",
            Self::UpToDate => "up to date",
            other => other.as_str(),
        }
    }

    /// The state named `text`; the error lists the names that exist.
    /// A state by its name; people may write `timed out` or `timed-out` as the console shows
    /// it, for `timed_out`.
    pub fn parse(text: &str) -> Result<Self, UnknownState> {
        let name = text.trim().replace([' ', '-'], "_");
        Self::ALL.into_iter().find(|s| s.as_str() == name).ok_or_else(|| UnknownState(text.to_owned()))
    }
}

/// A state name that is not one of [`JobState::ALL`] (from a query, a flag or a stored row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}; one of {names}", names = JobState::ALL.map(JobState::as_str).join(", "))]
pub struct UnknownState(pub String);

impl std::str::FromStr for JobState {
    type Err = UnknownState;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's record of a job. Only the engine mutates it.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub id: JobId,
    pub device: DeviceId,
    pub image: Image,
    pub chunk_size: ChunkSize,
    pub chunk_interval: Duration,
    /// The rollout that asked for this job, if one did.
    pub rollout: Option<u64>,
    pub state: JobState,
    pub total_chunks: u32,
    /// The next chunk to send (1-based); chunks before it count as delivered.
    pub next_chunk: u32,
    pub bytes_sent: u64,
    /// FOTA_REQUEST sends so far, over the job's whole life.
    pub attempts: u32,
    /// FOTA_REQUEST sends left in the current round before the job times out. A round starts
    /// when the job becomes active and again after a broker reconnect, so a flapping broker
    /// does not eat a silent device's retries.
    pub sends_left: u32,
    pub error: Option<String>,
    /// The reason code the device gave with a NACK or DONE_FAILED, when it gave a code.
    pub reason_code: Option<u64>,
    pub created_at: Instant,
    pub started_at: Option<Instant>,
    pub finished_at: Option<Instant>,
    /// The answer deadline that is current; older timer entries for this job are stale.
    pub deadline: Option<Instant>,
    /// Set while a paced job waits for its next chunk slot.
    pub paced_until: Option<Instant>,
    /// In the round-robin of jobs that may send now (never twice).
    pub in_sending: bool,
    /// Flow control: the device's window (`None`: pushed as fast as the broker takes it;
    /// `Some(0)`: paused until its next FOTA_PROGRESS).
    pub window: Option<u32>,
    /// Flow control: the device holds every chunk below this.
    pub confirmed: u32,
    /// The highest chunk sent so far (go-back-N sends some again).
    pub highest_sent: u32,
    /// Flow control: the progress deadline that is current.
    pub progress_due: Option<Instant>,
    /// Flow control: progress deadlines passed in a row.
    pub stalls: u32,
    /// Bytes sent for this job since this process took it on (a restart starts afresh): what
    /// `max_send_factor` bounds, so a device cannot have its image sent forever.
    pub sent_here: u64,
    /// Flow control: times the device rewound (FOTA_PROGRESS below what it had confirmed).
    pub rewinds: u32,
    /// Chunks handed to the broker that it has not acknowledged yet. FOTA_DONE goes out only
    /// once this is 0: MQTT orders messages per topic, not across the data and command topics.
    pub unacked: u32,
    /// All chunks were sent and FOTA_DONE waits for the broker to acknowledge the last of them.
    pub done_waits: bool,
    /// Sent even to a device whose status says it runs the image already.
    pub force: bool,
    /// While confirming: the boot counter of the device's last status before its
    /// FOTA_DONE_SUCCESS; a status with a greater one decides the job.
    pub confirm_boot: Option<u64>,
    /// When a status confirmed that the device runs the image.
    pub confirmed_at: Option<Instant>,
    /// The boot counter the device reported when its FOTA_REQUEST went out: a status past it
    /// that names the image, seen before the DONE_SUCCESS, confirms at once.
    pub boot_at_request: Option<u64>,
    /// While confirming with the broker away: what is left of the confirmation's time.
    pub confirm_left: Option<std::time::Duration>,
    /// The image's manifest, from a trusted key, if it has one.
    pub manifest: Option<crate::protocol::Manifest>,
    /// Whether this round's FOTA_REQUEST carries the manifest (the device declared
    /// `manifest` when the job started), so every repeat of it is byte-identical.
    pub send_manifest: bool,
}

impl Job {
    pub fn view(&self) -> JobView {
        JobView {
            id: self.id,
            device: self.device.clone(),
            image: self.image.clone(),
            chunk_size: self.chunk_size,
            chunk_interval: self.chunk_interval,
            rollout: self.rollout,
            state: self.state,
            chunks_done: match self.window {
                Some(_) => self.highest_sent,
                None => self.next_chunk.saturating_sub(1),
            },
            chunks_confirmed: self.window.map(|_| self.confirmed.saturating_sub(1)),
            window: self.window,
            chunks_total: self.total_chunks,
            bytes_sent: self.bytes_sent,
            attempts: self.attempts,
            error: self.error.clone(),
            reason_code: self.reason_code,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            force: self.force,
            confirm_boot: self.confirm_boot,
            confirmed_at: self.confirmed_at,
            manifest: self.manifest.clone(),
        }
    }
}

/// A point-in-time copy of a job for readers (API, console). Cheap: the image is shared.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub id: JobId,
    pub device: DeviceId,
    pub image: Image,
    pub chunk_size: ChunkSize,
    pub chunk_interval: Duration,
    /// The rollout that asked for this job, if one did.
    pub rollout: Option<u64>,
    pub state: JobState,
    /// Chunks sent (pushed, or under flow control the highest sent).
    pub chunks_done: u32,
    /// Flow control: chunks the device confirmed it holds (`None`: a pushed job).
    pub chunks_confirmed: Option<u32>,
    /// Flow control: the device's window (`None`: a pushed job; 0: paused).
    pub window: Option<u32>,
    pub chunks_total: u32,
    pub bytes_sent: u64,
    pub attempts: u32,
    pub error: Option<String>,
    /// The reason code the device gave with a NACK or DONE_FAILED, when it gave a code.
    pub reason_code: Option<u64>,
    pub created_at: Instant,
    pub started_at: Option<Instant>,
    pub finished_at: Option<Instant>,
    /// Sent even to a device whose status says it runs the image already.
    pub force: bool,
    /// While confirming: the boot counter a status must pass to decide the job.
    pub confirm_boot: Option<u64>,
    /// When a status confirmed that the device runs the image.
    pub confirmed_at: Option<Instant>,
    /// The image's manifest (from a trusted key), if it has one.
    pub manifest: Option<crate::protocol::Manifest>,
}

/// What a device says it runs, as the engine needs it: the image, its version (to say what a
/// device rolled back to), its boot counter and whether it confirms updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub image: crate::protocol::Sha256,
    pub version: Option<String>,
    pub boot: Option<u64>,
    /// Its status lists `confirm` (and a boot counter, which confirmation needs).
    pub confirm: bool,
    /// Its status lists `manifest`: it takes signed requests only.
    pub manifest: bool,
    /// The security counter of the image it runs.
    pub seq: Option<u64>,
    /// The keys whose manifests it accepts, when it listed them.
    pub kids: Vec<crate::signing::Kid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_their_names_and_errors_list_the_names() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Ok(state));
        }
        assert_eq!(JobState::parse("timed out"), Ok(JobState::TimedOut), "as the console shows it");
        assert_eq!(JobState::parse("timed-out"), Ok(JobState::TimedOut));
        let err = "bogus".parse::<JobState>().unwrap_err().to_string();
        assert!(err.contains("\"bogus\"") && err.contains("timed_out") && err.contains("queued"), "{err}");
    }
}
