//! One update job: its state machine's states and the snapshot others may read.

use std::fmt;
use std::time::{Duration, Instant};

use crate::firmware::{ChunkSize, Image};
use crate::protocol::DeviceId;

/// A job's id: given out once, in increasing order, never reused.
///
/// Ids go on the wire as the first frame item (unsigned, 32 bits): `protocol/` sits below the
/// engine and keeps a raw `u32` there; the engine and the runtime convert where frames are built
/// and read. Everywhere else (the engine, the runtime, the stores, the API, the console) an id is
/// a `JobId`, so a rollout id or a count cannot be passed for one.
///
/// One style of conversion: [`JobId::new`] from a raw number, [`JobId::get`] back (no `From`
/// either way, so each conversion is visible where it is made). Serialized as the bare number
/// (`#[serde(transparent)]`: the JSON of the HTTP API and of the store, and CBOR, as before), and
/// both `Display` and `Debug` print the bare number, so log lines, the console, the CLI and
/// messages read exactly as they did when ids were plain `u32`s. A `tracing` field takes
/// `id.get()`, so structured logs keep a number there (not a string).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct JobId(u32);

impl JobId {
    /// The first id an allocator gives (no job has id 0).
    pub const FIRST: JobId = JobId(1);
    /// The last id; never given, so an allocator that would reach it has run out
    /// (`SubmitError::IdsExhausted`, `WriteError::IdsExhausted`).
    pub const MAX: JobId = JobId(u32::MAX);

    pub const fn new(raw: u32) -> Self {
        Self(raw)
    }

    /// The number itself (the wire's frame item, an SQL parameter).
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The id after this one: where an allocator goes on after a job it has seen (stops at
    /// [`JobId::MAX`] instead of wrapping).
    pub const fn next(self) -> JobId {
        JobId(self.0.saturating_add(1))
    }

    /// The id `count` past this one, if it is below [`JobId::MAX`] (reserving `count` ids from
    /// this one leaves the allocator there).
    pub fn after(self, count: u32) -> Option<JobId> {
        self.0.checked_add(count).filter(|&next| next < u32::MAX).map(JobId)
    }

    /// This id and the ones after it, in order: the ids reserved from this one.
    pub fn and_following(self) -> impl Iterator<Item = JobId> {
        (self.0..).map(JobId)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Forwarded with the formatter, so widths and alignment (`{:>6}`) apply as to a `u32`.
        fmt::Display::fmt(&self.0, f)
    }
}

/// The bare number, as `Display` (and as the `u32` it was): messages and log fields that format
/// an id, or a value holding ids, with `{:?}` read as before.
impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Parses the bare number, as a `u32` does (same errors).
impl std::str::FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// A rollout's id: given out once, in increasing order, never reused.
///
/// Defined here, beside [`JobId`], and re-exported as `rollout::RolloutId` (its home by name):
/// the engine tags each job with the rollout that asked for it, and the engine must not import
/// `rollout/` (domain modules import downward only, `rollout → engine → protocol`, see
/// docs/architecture.md). Here both can use it.
///
/// The same style as [`JobId`]: [`RolloutId::new`] and [`RolloutId::get`], serialized as the
/// bare number, `Display` and `Debug` print the bare number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RolloutId(u64);

impl RolloutId {
    /// The first id given (no rollout has id 0).
    pub const FIRST: RolloutId = RolloutId(1);

    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The number itself (an SQL parameter, a log field).
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The id given after this one.
    pub const fn next(self) -> RolloutId {
        RolloutId(self.0 + 1)
    }
}

impl fmt::Display for RolloutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The bare number, as `Display` (and as the `u64` it was).
impl fmt::Debug for RolloutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Parses the bare number, as a `u64` does (same errors).
impl std::str::FromStr for RolloutId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(RolloutId)
    }
}

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
    pub rollout: Option<RolloutId>,
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
    /// The patch sent instead of the image (the delta extension), until the device refuses it
    /// (code 13; then the job's JSON says `delta: null`) or the job ends (its description stays
    /// for readers).
    pub delta: Option<Box<crate::firmware::Patch>>,
    pub delta_info: Option<Box<crate::firmware::DeltaInfo>>,
    /// The device refused the patch (NACK 13) and the whole image is on offer: a repeat of
    /// that refusal changes nothing.
    pub patch_refused: bool,
    /// Its device asked for a job on AWS IoT Jobs topics while this job (in Rocky's protocol)
    /// was its: the timeline said once how to make it an AWS job.
    pub aws_hinted: bool,
    /// A job for a device that runs AWS's OTA agent: its execution and stream.
    pub aws: Option<Box<super::scheduler::AwsState>>,
}

impl Job {
    /// What goes out in chunks: the patch, or the image.
    pub fn payload(&self) -> &Image {
        self.delta.as_ref().map_or(&self.image, |patch| &patch.bytes)
    }

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
            delta: self.delta_info.as_deref().copied(),
            aws: self.aws.as_ref().map(|aws| super::AwsJob {
                details: aws.details.clone(),
                version: aws.version,
                queued_at: aws.queued_at_s,
                ..aws.job.clone()
            }),
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
    pub rollout: Option<RolloutId>,
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
    /// The patch the device was offered instead of the image (the delta extension).
    pub delta: Option<crate::firmware::DeltaInfo>,
    /// The device runs AWS's OTA agent: what its job document names.
    pub aws: Option<super::AwsJob>,
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
    /// Its status lists `delta-bsdiff4`: it applies patches.
    pub delta: bool,
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

    /// Ids read and write as the bare numbers they were as `u32`/`u64`: JSON, CBOR, text
    /// (with a width, as the CLI's table pads them), `{:?}` and parsing.
    #[test]
    fn ids_read_and_write_as_bare_numbers() {
        let job = JobId::new(4_000_000_000);
        assert_eq!(serde_json::to_string(&job).unwrap(), "4000000000");
        assert_eq!(serde_json::from_str::<JobId>("7").unwrap(), JobId::new(7));
        assert_eq!(
            serde_json::from_str::<JobId>("-1").unwrap_err().to_string(),
            serde_json::from_str::<u32>("-1").unwrap_err().to_string()
        );
        let (mut cbor, mut raw) = (Vec::new(), Vec::new());
        ciborium::into_writer(&job, &mut cbor).unwrap();
        ciborium::into_writer(&4_000_000_000u32, &mut raw).unwrap();
        assert_eq!(cbor, raw);
        assert_eq!(
            format!("{job} {:>6}|{:<4}|{:?}", JobId::new(42), JobId::new(7), Some(job)),
            "4000000000     42|7   |Some(4000000000)"
        );
        assert_eq!("12".parse::<JobId>(), Ok(JobId::new(12)));
        assert_eq!("x".parse::<JobId>(), "x".parse::<u32>().map(JobId::new));
        let rollout = RolloutId::new(u64::MAX);
        assert_eq!(serde_json::to_string(&rollout).unwrap(), u64::MAX.to_string());
        assert_eq!(format!("{rollout}|{:?}", RolloutId::new(3)), format!("{}|3", u64::MAX));
        assert_eq!("3".parse::<RolloutId>(), Ok(RolloutId::new(3)));
    }

    #[test]
    fn new_ids_come_from_methods_and_never_reach_the_last() {
        assert_eq!(JobId::FIRST.next(), JobId::new(2));
        assert_eq!(JobId::MAX.next(), JobId::MAX, "stops at the last instead of wrapping");
        assert_eq!(JobId::new(10).after(5), Some(JobId::new(15)));
        assert_eq!(JobId::new(u32::MAX - 2).after(1), Some(JobId::new(u32::MAX - 1)));
        assert_eq!(JobId::new(u32::MAX - 2).after(2), None, "the last id is never given");
        assert_eq!(JobId::new(u32::MAX).after(1), None);
        let run: Vec<JobId> = JobId::new(7).and_following().take(3).collect();
        assert_eq!(run, [JobId::new(7), JobId::new(8), JobId::new(9)]);
        assert_eq!(RolloutId::FIRST.next(), RolloutId::new(2));
    }
}
