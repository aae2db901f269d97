//! How much of the protocol a simulated device speaks and how fast it is: enough to model the
//! devices of a real fleet beside the misbehaviours of `Behavior`.

use std::time::Duration;

/// Applies to every device of a fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceModel {
    /// Flow control with this window (`None`: Rocky pushes, as to a version 1 device).
    pub window: Option<u32>,
    /// Which devices use the window (`None`: all of them).
    pub paced: Option<super::Selection>,
    /// Bytes a second the device stores. It reads its connection no faster, so a broker's
    /// per-client queue fills as it would for a real device behind slow flash.
    pub flash_rate: Option<u64>,
    /// Share of chunks lost on the way (0.0 ..= 1.0), chosen by a hash of job and chunk so a
    /// run repeats exactly.
    pub lossy: f64,
    /// Version 1 only: no resume, no reasons, no flow control.
    pub legacy: bool,
    /// Flow control: the device stops confirming once it holds this many chunks (a device
    /// whose flash died mid-transfer).
    pub stop_confirming_at: Option<u32>,
    /// Its status does not list `confirm`: it succeeds at DONE_SUCCESS, as in version 1.
    pub no_confirm: bool,
    /// What it does after a verified update (boot it, roll back, never come back).
    pub after_update: super::AfterUpdate,
    /// How long after its DONE_SUCCESS it comes back from the reboot (0: at once).
    pub reboot_delay: Duration,
    /// The manifest extension: the device lists `manifest` and takes only images whose
    /// manifest one of these keys signed (`None`: it takes any image, as in version 1).
    pub trust: Option<std::sync::Arc<crate::signing::TrustedKeys>>,
    /// The delta extension: the device lists `delta-bsdiff4` and applies patches to the image
    /// it runs (it keeps that image's bytes).
    pub delta: bool,
    /// The protocol it speaks: Rocky's, or AWS's OTA agent's (`rocky sim --profile
    /// aws-iot-ota`), which checks `sig-sha256-ecdsa` with the ES256 keys of `trust`.
    pub profile: crate::inventory::Profile,
    /// The image the device runs at start, as bytes (so it can be a patch's base); `None`: a
    /// factory image known only by its hash.
    pub factory: Option<bytes::Bytes>,
}

impl DeviceModel {
    /// How long storing `bytes` takes at the flash rate.
    pub fn store_time(&self, bytes: usize) -> Duration {
        match self.flash_rate {
            Some(rate) if rate > 0 => Duration::from_secs_f64(bytes as f64 / rate as f64),
            _ => Duration::ZERO,
        }
    }

    /// Whether deliveries need counting: only a lossy link tells a first delivery from a resend
    /// (a map entry per chunk received was a good part of a fast device's work).
    pub fn counts_deliveries(&self) -> bool {
        self.lossy > 0.0
    }

    /// Whether chunk `chunk` of job `job` is lost (its first delivery only: a resend arrives).
    pub fn loses(&self, job: u32, chunk: u32, delivery: u32) -> bool {
        if self.lossy <= 0.0 || delivery > 0 {
            return false;
        }
        let mut x = (u64::from(job) << 32 | u64::from(chunk)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 31;
        (x % 10_000) as f64 / 10_000.0 < self.lossy
    }

    /// How often a flow-controlled device confirms: every `max(1, window / 2)` chunks stored.
    pub fn confirm_every(&self) -> u32 {
        self.window.map_or(1, |w| (w / 2).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_follow_the_share_and_a_resend_always_arrives() {
        let model = DeviceModel { lossy: 0.05, ..Default::default() };
        let lost = (1..=10_000).filter(|c| model.loses(7, *c, 0)).count();
        assert!((350..=650).contains(&lost), "about 5%: {lost}");
        assert!((1..=10_000).all(|c| !model.loses(7, c, 1)), "a second delivery is never lost");
        assert_eq!(DeviceModel::default().store_time(1024), Duration::ZERO);
        let slow = DeviceModel { flash_rate: Some(51_200), ..Default::default() };
        assert_eq!(slow.store_time(1024), Duration::from_millis(20));
        assert_eq!(DeviceModel { window: Some(8), ..Default::default() }.confirm_every(), 4);
    }
}
