//! What a simulated device saw and said, shared with its fleet for summaries and assertions.

use super::Behavior;

/// How a device's last update ended, from its own point of view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The reassembled image matched the requested SHA-256.
    Verified,
    /// The image did not verify (or the device was told to fail).
    Failed,
    /// The device refused the request.
    Refused,
}

/// What one device saw and said; shared with the fleet for summaries and test assertions.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeviceReport {
    pub behavior: Option<Behavior>,
    pub connected: bool,
    /// The broker refused one of its subscriptions (an ACL): it hears nothing, so it does not
    /// count as connected.
    pub refused_subscription: bool,
    pub requests: u32,
    pub chunks: u64,
    pub duplicate_chunks: u64,
    pub bytes: u64,
    /// Undecodable or unexpected frames received on the command topic.
    pub bad_frames: u32,
    /// Downloads begun again from the start because a job message came while one was under
    /// way (a device of AWS's OTA agent aborts its download then).
    pub restarted_downloads: u32,
    /// Why its connection last failed (kept after it connects again; told only while it is not
    /// connected), so a fleet that cannot connect can say why.
    pub last_failure: Option<String>,
    pub verdicts: Vec<(u32, Verdict)>,
}

impl DeviceReport {
    pub fn last_verdict(&self) -> Option<&Verdict> {
        self.verdicts.last().map(|(_, v)| v)
    }
}
