//! What a simulated device runs and says about it (the status and confirm extensions): a
//! factory image at boot 1; a status at every connection (retained); after a verified update, a
//! reboot `reboot_delay` later into the new image (or back into the old one, for a device that
//! rolls back), reported by a status with the next boot counter. A device that never comes back
//! reports nothing more and answers nothing.

use std::time::{Duration, Instant};

use sha2::Digest;

use crate::protocol::{
    CAP_CONFIRM, CAP_DELTA_BSDIFF4, CAP_FLOW, CAP_MANIFEST, CAP_REASONS, CAP_RESUME, DeviceStatus,
    ManifestPayload, Sha256, encode_status,
};

/// What a device does after it verified an update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AfterUpdate {
    /// Boots it, and reports it (which confirms it).
    #[default]
    Boots,
    /// Boots it, fails its self-test and comes back on the image it ran before.
    RollsBack,
    /// Never comes back: no status, no answer, ever again.
    NeverBack,
}

/// The image every simulated device runs until its first update.
pub fn factory_image() -> Sha256 {
    sha2::Sha256::digest(b"rocky simulated device, factory image").into()
}

/// The version the factory image reports.
pub const FACTORY_VERSION: &str = "factory-1.0";

pub struct Boot {
    status: DeviceStatus,
    after_update: AfterUpdate,
    reboot_delay: Duration,
    /// A verified image, its manifest if it came with one, and when the device boots it.
    pending: Option<(Instant, Sha256, Option<ManifestPayload>)>,
    /// When the next status goes out.
    status_due: Option<Instant>,
    /// Gone for good (`AfterUpdate::NeverBack` after an update).
    gone: bool,
}

impl Boot {
    /// A device at boot 1 on the factory image; `window`: it speaks flow control; `confirms`:
    /// its status lists `confirm`; `signed`: it lists `manifest`.
    pub fn new(
        window: bool,
        confirms: bool,
        signed: bool,
        delta: bool,
        after_update: AfterUpdate,
        reboot_delay: Duration,
    ) -> Self {
        let mut caps = vec![CAP_RESUME.to_owned()];
        if window {
            caps.push(CAP_FLOW.to_owned());
        }
        caps.push(CAP_REASONS.to_owned());
        if confirms {
            caps.push(CAP_CONFIRM.to_owned());
        }
        if signed {
            caps.push(CAP_MANIFEST.to_owned());
        }
        if delta {
            caps.push(CAP_DELTA_BSDIFF4.to_owned());
        }
        let status = DeviceStatus {
            image: factory_image(),
            version: Some(FACTORY_VERSION.to_owned()),
            boot: Some(1),
            seq: None,
            caps,
            kids: Vec::new(),
        };
        Self { status, after_update, reboot_delay, pending: None, status_due: None, gone: false }
    }

    /// Runs `image` from the start (a factory image given as bytes).
    pub fn set_factory(&mut self, image: Sha256) {
        self.status.image = image;
    }

    pub fn running(&self) -> &Sha256 {
        &self.status.image
    }

    /// The security counter of the image it runs (0 when it knows none).
    pub fn seq(&self) -> u64 {
        self.status.seq.unwrap_or(0)
    }

    pub fn boot(&self) -> u64 {
        self.status.boot.unwrap_or(0)
    }

    /// Gone for good: answers nothing.
    pub fn gone(&self) -> bool {
        self.gone
    }

    /// Connected (again): the status goes out at once.
    pub fn connected(&mut self, now: Instant) {
        if !self.gone {
            self.status_due = Some(now);
        }
    }

    /// `image` verified (with its manifest, if one came): the device boots it `reboot_delay`
    /// from now.
    pub fn verified(&mut self, image: Sha256, manifest: Option<ManifestPayload>, now: Instant) {
        self.pending = Some((now + self.reboot_delay, image, manifest));
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        [self.pending.as_ref().map(|(at, ..)| *at), self.status_due].into_iter().flatten().min()
    }

    /// Boots a pending image when it is due.
    pub fn tick(&mut self, now: Instant) {
        if self.pending.as_ref().is_none_or(|(at, ..)| *at > now) {
            return;
        }
        let Some((_, image, manifest)) = self.pending.take() else { return };
        match self.after_update {
            AfterUpdate::NeverBack => {
                self.gone = true;
                self.status_due = None;
                return;
            }
            AfterUpdate::Boots => {
                // It reports what the manifest said of the image; without one it knows nothing.
                self.status.image = image;
                self.status.version = manifest.as_ref().and_then(|m| m.version.clone());
                self.status.seq = manifest.as_ref().map(|m| m.seq).or(self.status.seq);
            }
            AfterUpdate::RollsBack => {}
        }
        self.status.boot = Some(self.boot() + 1);
        self.status_due = Some(now);
    }

    /// The status to publish now (retained), if one is due.
    pub fn poll_status(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.gone || self.status_due.is_none_or(|at| at > now) {
            return None;
        }
        self.status_due = None;
        Some(encode_status(&self.status))
    }
}
