//! What the engine tells the world. Events are small and cheap to clone because they fan out to
//! every subscriber (console, SSE clients, the store).

use super::{JobId, JobState, JobView};
use crate::protocol::{CommandType, DeviceId};

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A job was accepted; the view is its first snapshot.
    Created(Box<JobView>),
    /// A job moved from one state to another. `detail` says why where that is not obvious
    /// (the attempt number of a re-sent request, a resume point, the reason for a failure).
    StateChanged { job: JobId, device: DeviceId, from: JobState, to: JobState, detail: Option<String> },
    /// FOTA_REQUEST went out again after a timeout.
    RequestRetried { job: JobId, device: DeviceId, attempt: u32 },
    /// A chunk was handed to the broker connection.
    ChunkSent { job: JobId, device: DeviceId, chunk: u32, total: u32, bytes: u32 },
    /// A flow-controlled device's FOTA_PROGRESS moved what it holds or its window: it has the
    /// first `confirmed` of `total` chunks (fewer than before after a rewind) and takes up to
    /// `window` more (0: paused).
    Progress { job: JobId, device: DeviceId, confirmed: u32, total: u32, window: u32 },
    /// Something worth a line in the job's timeline that is not a change of state: a device's
    /// rewind, a go-back-N after a stall; `state` is the one the job was in when it was said.
    Note { job: JobId, device: DeviceId, state: JobState, text: String },
    /// A response that changes nothing: unknown job, wrong phase, duplicate, late.
    Ignored { device: DeviceId, job: JobId, command: CommandType, reason: String },
}

/// A job's timeline line for an offer sent again: a FOTA_REQUEST, or for a device that runs
/// AWS's OTA agent the job's execution on `notify-next`.
pub fn retry_words(attempt: u32, aws: bool) -> String {
    let what = if aws { "the job offered again on notify-next" } else { "FOTA_REQUEST sent again" };
    format!("no answer: {what} (attempt {attempt})")
}

impl Event {
    /// The job whose record this event changed (`Ignored` changes none).
    pub fn job(&self) -> Option<JobId> {
        match self {
            Event::Created(view) => Some(view.id),
            Event::StateChanged { job, .. }
            | Event::RequestRetried { job, .. }
            | Event::ChunkSent { job, .. }
            | Event::Progress { job, .. }
            | Event::Note { job, .. } => Some(*job),
            Event::Ignored { .. } => None,
        }
    }
}
