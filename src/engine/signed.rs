//! The manifest extension's one rule for what may be sent to a device (`PROTOCOL.md`,
//! "Manifest"): a device whose status lists `manifest` gets the request with the image's
//! manifest, and nothing when there is none from a key it takes; an image whose security
//! counter is below the one a device runs is never offered to it. Checked when a job is created
//! (so the operator hears at once, naming the devices) and again when it starts (the device may
//! have said something new since).

use super::Reported;
use crate::protocol::{DeviceId, Manifest};

/// Whether the request to `device` carries `manifest` (`Ok(true)`), goes as version 1
/// (`Ok(false)`), or must not be sent at all (`Err`, in words naming the device and image).
pub fn manifest_to_send(
    device: &DeviceId,
    reported: Option<&Reported>,
    manifest: Option<&Manifest>,
    image: &str,
) -> Result<bool, String> {
    let Some(reported) = reported else { return Ok(false) };
    if let (Some(manifest), Some(running)) = (manifest, reported.seq)
        && manifest.payload().seq < running
    {
        return Err(format!(
            "device {device} runs seq {running}; image {image} is seq {} (anti-rollback)",
            manifest.payload().seq
        ));
    }
    if !reported.manifest {
        return Ok(false);
    }
    let Some(manifest) = manifest else {
        return Err(format!(
            "device {device} takes signed images only and image {image} has no manifest from a trusted key"
        ));
    };
    if !reported.kids.is_empty() && !reported.kids.contains(&manifest.kid()) {
        let kids: Vec<String> = reported.kids.iter().map(ToString::to_string).collect();
        return Err(format!(
            "device {device} trusts keys {}; image {image} is signed by key {}",
            kids.join(", "),
            manifest.kid()
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ManifestPayload;
    use crate::signing::{Alg, SigningKey};

    fn reported(manifest: bool, seq: Option<u64>, kids: Vec<crate::signing::Kid>) -> Reported {
        Reported {
            image: [0; 32],
            version: None,
            boot: None,
            confirm: false,
            manifest,
            seq,
            kids,
            delta: false,
        }
    }

    fn signed(key: &SigningKey, seq: u64) -> Manifest {
        Manifest::sign(ManifestPayload { image_sha256: [1; 32], size: 10, version: None, seq }, key)
    }

    #[test]
    fn devices_get_manifests_only_when_they_ask_and_never_an_unsigned_or_older_image() {
        let dev = DeviceId::parse("dev-1").unwrap();
        let key = SigningKey::generate(Alg::Ed25519).unwrap();
        let manifest = signed(&key, 5);
        assert_eq!(manifest_to_send(&dev, None, Some(&manifest), "fw"), Ok(false));
        assert_eq!(
            manifest_to_send(&dev, Some(&reported(false, None, vec![])), Some(&manifest), "fw"),
            Ok(false)
        );
        assert_eq!(
            manifest_to_send(&dev, Some(&reported(true, None, vec![])), Some(&manifest), "fw"),
            Ok(true)
        );
        let unsigned =
            manifest_to_send(&dev, Some(&reported(true, None, vec![])), None, "fw.bin").unwrap_err();
        assert!(unsigned.contains("dev-1") && unsigned.contains("fw.bin"), "{unsigned}");
        let older = manifest_to_send(&dev, Some(&reported(false, Some(7), vec![])), Some(&manifest), "fw")
            .unwrap_err();
        assert_eq!(older, "device dev-1 runs seq 7; image fw is seq 5 (anti-rollback)");
        let other = SigningKey::generate(Alg::Ed25519).unwrap().kid();
        let kids = manifest_to_send(&dev, Some(&reported(true, None, vec![other])), Some(&manifest), "fw")
            .unwrap_err();
        assert!(kids.contains(&other.to_string()) && kids.contains(&key.kid().to_string()), "{kids}");
        assert_eq!(
            manifest_to_send(
                &dev,
                Some(&reported(true, Some(5), vec![other, key.kid()])),
                Some(&manifest),
                "fw"
            ),
            Ok(true)
        );
    }
}
