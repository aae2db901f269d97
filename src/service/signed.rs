//! The manifest rule at creation (`PROTOCOL.md`, "Manifest"): every job gets its image's
//! manifest from a trusted key, and a job or rollout for a device that must not be sent its image
//! (a device that takes signed images only and an unsigned image, a key it does not list, an
//! older security counter; or any unsigned image under `firmware.require_signed`) is refused
//! before anything exists, naming the image and the devices.

use super::{Service, ServiceError};
use crate::engine::{JobSpec, manifest_to_send};
use crate::firmware::Image;
use crate::protocol::{DeviceId, Manifest};

/// Devices named in a refusal; the rest are counted.
const NAMED: usize = 10;

impl Service {
    /// Gives each spec its image's manifest, or refuses them all with the reasons.
    pub(super) fn sign_specs(&self, specs: &mut [JobSpec]) -> Result<(), ServiceError> {
        // One look (and one signature check) per image, however many jobs name it.
        let mut by_image: std::collections::HashMap<crate::protocol::Sha256, Option<Manifest>> =
            std::collections::HashMap::new();
        let mut refusals = Vec::new();
        for spec in specs.iter_mut() {
            let manifest = match by_image.get(spec.image.sha256()) {
                Some(known) => known.clone(),
                None => {
                    let (manifest, _) = self.signing_check(&spec.image, std::iter::empty())?;
                    by_image.insert(*spec.image.sha256(), manifest.clone());
                    manifest
                }
            };
            let reported = self.inventory().running_of(&spec.device).and_then(|running| running.reported());
            if let Err(why) =
                manifest_to_send(&spec.device, reported.as_ref(), manifest.as_ref(), spec.image.name())
            {
                refusals.push(why);
            }
            spec.manifest = manifest;
        }
        refused(refusals)
    }

    /// Refuses a rollout of `image` to `devices` that the rule would stop, or that has devices
    /// running AWS's OTA agent it could not make jobs for (`aws_ota`: the rollout's own paths).
    pub(super) fn check_rollout_signing(
        &self,
        image: &Image,
        devices: &[DeviceId],
        aws_ota: Option<&crate::runtime::AwsOtaOverride>,
    ) -> Result<(), ServiceError> {
        let (_, mut refusals) = self.signing_check(image, devices.iter())?;
        refusals.extend(devices.iter().filter_map(|device| self.aws_refusal(device, image, aws_ota)));
        refused(refusals)
    }

    /// Why a job of `image` could not be made for `device`, when it runs AWS's OTA agent.
    pub(super) fn aws_refusal(
        &self,
        device: &DeviceId,
        image: &Image,
        aws_ota: Option<&crate::runtime::AwsOtaOverride>,
    ) -> Option<String> {
        self.handle.aws_job_for(device, image, aws_ota).err()
    }

    /// The image's manifest, and why each of `devices` may not be sent the image.
    fn signing_check<'a>(
        &self,
        image: &Image,
        devices: impl Iterator<Item = &'a DeviceId>,
    ) -> Result<(Option<Manifest>, Vec<String>), ServiceError> {
        let manifests = self.library().manifests();
        let manifest = self.manifest_for(image)?;
        if manifest.is_none() && manifests.require_signed() {
            return Err(unsigned_refused(image));
        }
        let inventory = self.inventory();
        let refusals = devices
            .filter_map(|device| {
                let reported = inventory.running_of(device).and_then(|running| running.reported());
                manifest_to_send(device, reported.as_ref(), manifest.as_ref(), image.name()).err()
            })
            .collect();
        Ok((manifest, refusals))
    }
}

impl Service {
    /// A patch instead of the image for each spec whose device speaks `delta-bsdiff4` and runs
    /// an image Rocky holds, where it saves enough (or the reason it does not, for the
    /// timeline). A spec that says no delta (`delta_note` set beforehand) is left whole.
    pub(super) async fn choose_deltas(&self, specs: &mut [JobSpec]) {
        // Asked together: each pair is built once, and the wait for builds is one wait, not one
        // per device.
        let asks = specs.iter().map(|spec| async move {
            if spec.delta.is_some() || spec.delta_note.is_some() {
                return None;
            }
            let reported = self.inventory().running_of(&spec.device).and_then(|running| running.reported());
            let (running, speaks) = reported.as_ref().map_or((None, false), |r| (Some(r.image), r.delta));
            crate::firmware::delta_for(self.library(), running.as_ref(), speaks, &spec.image).await
        });
        let choices = futures_util::future::join_all(asks).await;
        for (spec, choice) in specs.iter_mut().zip(choices) {
            match choice {
                Some(crate::firmware::Choice::Patch(patch)) => spec.delta = Some(patch),
                Some(crate::firmware::Choice::Whole(why)) => spec.delta_note = Some(why),
                None => {}
            }
        }
    }

    /// The manifest `image` goes out with: its own from a trusted key, else one Rocky makes
    /// with `firmware.signing_key_file` when it holds a key (Rocky signs what it holds), at the
    /// policy's counter.
    /// The manifest [`Service::manifest_for`] would answer, without keeping one it makes (a
    /// dry run creates nothing); refused like a real start when `firmware.require_signed` is
    /// set and there is none.
    pub fn manifest_preview(&self, image: &Image) -> Result<Option<Manifest>, ServiceError> {
        let manifests = self.library().manifests();
        let manifest = manifests.get(image.sha256()).or_else(|| manifests.unkept(image));
        if manifest.is_none() && manifests.require_signed() {
            return Err(unsigned_refused(image));
        }
        Ok(manifest)
    }

    pub fn manifest_for(&self, image: &Image) -> Result<Option<Manifest>, ServiceError> {
        let manifests = self.library().manifests();
        match manifests.get(image.sha256()) {
            Some(manifest) => Ok(Some(manifest)),
            None if manifests.signer().is_some() => {
                self.sign_image(image, None, manifests.default_seq(), false).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// An image with no manifest while `firmware.require_signed` is set.
fn unsigned_refused(image: &Image) -> ServiceError {
    ServiceError::Invalid(format!(
        "image {} ({}) has no manifest from a trusted key, and firmware.require_signed is set: \
         sign it (rocky sign, then PUT /firmware/{{sha256}}/manifest) first",
        image.name(),
        crate::protocol::short_hash(image.sha256())
    ))
}

fn refused(refusals: Vec<String>) -> Result<(), ServiceError> {
    if refusals.is_empty() {
        return Ok(());
    }
    let count = refusals.len();
    let mut text = format!("nothing was created: {}", refusals[..count.min(NAMED)].join("; "));
    if count > NAMED {
        text.push_str(&format!("; and {} more devices", count - NAMED));
    }
    Err(ServiceError::Invalid(text))
}
