//! Which images are signed: each image's manifest (the manifest extension), attached after it
//! verified against the trusted keys and the image, or made here with `firmware.signing_key_file`.
//! Kept in memory by image hash and, with an image store, as `<sha256>.cose` beside the image,
//! so a restart still knows. A manifest is handed out only while a trusted key verifies it: a key
//! taken out of `trusted_keys` unsigns its images at the next restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{Image, ImageStore, write_atomically};
use crate::protocol::{Manifest, ManifestError, ManifestPayload, Sha256, sha256_hex};
use crate::signing::{Kid, SigningKey, TrustedKeys};

/// The signing settings (`[firmware]` in the config file).
#[derive(Debug, Clone, Default)]
pub struct SigningPolicy {
    /// Rocky signs images it is given with this key (its public half is trusted too).
    pub signer: Option<SigningKey>,
    pub trusted: TrustedKeys,
    /// Every job's image must have a manifest from a trusted key.
    pub require_signed: bool,
    /// The security counter of manifests Rocky makes for images that have none when a job is
    /// made (0; the demo signs at its images' counter).
    pub default_seq: u64,
}

impl SigningPolicy {
    /// The trusted keys with the signer's public half among them.
    fn with_signer_trusted(mut self) -> Self {
        if let Some(signer) = &self.signer {
            self.trusted.add(signer.public(), "signing_key_file".into());
        }
        self
    }
}

/// Manifests held: at most this many in memory (each about 150 bytes); older ones are read back
/// from their files when asked for.
const MAX_HELD: usize = 100_000;

pub struct Manifests {
    policy: SigningPolicy,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Only manifests a trusted key verified for the image they are held under.
    by_image: Verified<Manifest>,
    /// Where the files are kept, and its sweeps as last seen: a sweep removes the files of
    /// images no job needs, so what was verified from them is forgotten then (a later upload of
    /// the same bytes is unsigned, as it is after a restart).
    disk: Option<(ImageStore, u64)>,
    /// `sig-sha256-ecdsa` made with Rocky's key, by image (at most [`AWS_SIGNATURES_HELD`]):
    /// one signature for an image however many AWS devices get it.
    aws: HashMap<Sha256, String>,
    /// `sig-sha256-ecdsa` made elsewhere (`rocky sign --format aws`) and attached, by image,
    /// after a trusted ES256 key verified it (kept as files too).
    aws_attached: Verified<String>,
}

/// What a file beside each image holds, verified once on its way into memory: the verified
/// ones by image, and the images whose file no trusted key verifies, each at most
/// [`MAX_HELD`]. A rollout asks once per device, and a verification costs up to about 270 µs
/// of the async thread (ES256); the trusted keys do not change while Rocky runs.
struct Verified<T> {
    held: HashMap<Sha256, T>,
    refused: std::collections::HashSet<Sha256>,
}

impl State {
    fn dir(&self) -> Option<PathBuf> {
        self.disk.as_ref().map(|(store, _)| store.dir().to_path_buf())
    }

    fn sweeps_seen(&self) -> Option<u64> {
        self.disk.as_ref().map(|(_, seen)| *seen)
    }

    /// Forgets every file's verdict when the store swept files away since the last ask. Sweeps
    /// are rare (retention removed the last job of an image); each verdict is then reached
    /// again, once, from the files that remain.
    fn forget_if_swept(&mut self) {
        let Some((store, seen)) = &mut self.disk else { return };
        let now = store.sweeps();
        if now != *seen {
            *seen = now;
            self.by_image = Verified::default();
            self.aws_attached = Verified::default();
        }
    }
}

impl<T> Default for Verified<T> {
    fn default() -> Self {
        Self { held: HashMap::new(), refused: std::collections::HashSet::new() }
    }
}

impl<T: Clone> Verified<T> {
    /// `Some(answer)` when this image's file was verified or refused already.
    fn known(&self, sha256: &Sha256) -> Option<Option<T>> {
        match self.held.get(sha256) {
            Some(value) => Some(Some(value.clone())),
            None => self.refused.contains(sha256).then_some(None),
        }
    }

    fn hold(&mut self, sha256: &Sha256, value: T) {
        self.refused.remove(sha256);
        if self.held.len() >= MAX_HELD && !self.held.contains_key(sha256) {
            self.held.clear();
        }
        self.held.insert(*sha256, value);
    }

    /// Refused until held again (attached or signed anew).
    fn refuse(&mut self, sha256: &Sha256) {
        if self.refused.len() >= MAX_HELD {
            self.refused.clear();
        }
        self.refused.insert(*sha256);
    }
}

/// The longest attached `sig-sha256-ecdsa`: base64 of a DER P-256 signature is at most 96
/// characters; a little room for a newline.
pub const MAX_AWS_SIGNATURE_BYTES: usize = 128;

/// Signatures for AWS devices remembered; past it they are made again.
const AWS_SIGNATURES_HELD: usize = 256;

/// Why an image could not be signed here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("Rocky holds no signing key (set firmware.signing_key_file, or sign offline with `rocky sign`)")]
    NoKey,
    #[error("the version must be at most {} printable bytes", crate::protocol::MAX_VERSION_BYTES)]
    BadVersion,
    #[error("cannot keep the manifest: {0}")]
    Io(String),
}

impl Default for Manifests {
    fn default() -> Self {
        Self::new(SigningPolicy::default())
    }
}

impl Manifests {
    /// The signature AWS's OTA agent checks for `image` (`sig-sha256-ecdsa`), made with Rocky's
    /// key (`firmware.signing_key_file`, which must be ES256); else why not.
    pub fn aws_signature(&self, image: &crate::firmware::Image) -> Result<String, String> {
        if let Some(attached) = self.attached_aws(image.sha256()) {
            return Ok(attached);
        }
        if let Some(known) = self.lock().aws.get(image.sha256()) {
            return Ok(known.clone());
        }
        let key = self.policy.signer.as_ref().ok_or_else(|| {
            "Rocky holds no signing key to make its sig-sha256-ecdsa: set firmware.signing_key_file to an ES256 \
             key (rocky keys generate --alg es256)"
                .to_owned()
        })?;
        // Signed from the image's hash (what ECDSA signs): nothing is read or hashed again.
        let signature =
            crate::signing::aws_signature_of_digest(key, image.sha256()).map_err(|e| e.to_string())?;
        let mut state = self.lock();
        if state.aws.len() >= AWS_SIGNATURES_HELD {
            state.aws.clear();
        }
        state.aws.insert(*image.sha256(), signature.clone());
        Ok(signature)
    }

    /// Attaches a `sig-sha256-ecdsa` made offline (`rocky sign --format aws`): it must verify
    /// over `image` with a trusted ES256 key (`firmware.trusted_keys`, or Rocky's own), whose
    /// key id is answered; then AWS devices get it instead of one Rocky makes.
    pub fn attach_aws(&self, image: &Image, signature: &str) -> Result<Kid, String> {
        let signature = signature.trim();
        if signature.is_empty() || signature.len() > MAX_AWS_SIGNATURE_BYTES {
            return Err(format!(
                "a sig-sha256-ecdsa is base64 of 1 to {MAX_AWS_SIGNATURE_BYTES} bytes (rocky sign --format aws writes one)"
            ));
        }
        let kid = self.aws_signer_of(image.sha256(), signature).ok_or_else(|| {
            "the signature does not verify over this image with any trusted ES256 key (firmware.trusted_keys or firmware.signing_key_file)"
                .to_owned()
        })?;
        let mut state = self.lock();
        state.forget_if_swept();
        if let Some(dir) = &state.dir() {
            std::fs::create_dir_all(dir)
                .and_then(|()| write_atomically(&Self::aws_path(dir, image.sha256()), signature.as_bytes()))
                .map_err(|e| format!("cannot keep the signature: {e}"))?;
        }
        state.aws_attached.hold(image.sha256(), signature.to_owned());
        Ok(kid)
    }

    /// The trusted ES256 key that made `signature` over the image with this hash.
    fn aws_signer_of(&self, sha256: &Sha256, signature: &str) -> Option<Kid> {
        self.policy.trusted.iter().find_map(|trusted| {
            crate::signing::aws_signature_verifies_digest(&trusted.key, sha256, signature)
                .then(|| trusted.key.kid())
        })
    }

    /// The attached `sig-sha256-ecdsa` of the image with this hash, while a trusted key
    /// verifies it (from memory, or its file after a restart).
    ///
    /// Verified once, as [`Manifests::get`] does: every AWS job asks, and an ES256 check per
    /// trusted key costs about 270 µs of the async thread. A file no trusted key verifies is
    /// remembered as refused until a signature is attached again.
    pub fn attached_aws(&self, sha256: &Sha256) -> Option<String> {
        self.read_once(
            sha256,
            |state| &mut state.aws_attached,
            Self::aws_path,
            |bytes| {
                let text = String::from_utf8(bytes).ok()?;
                (text.len() <= MAX_AWS_SIGNATURE_BYTES && self.aws_signer_of(sha256, &text).is_some())
                    .then_some(text)
            },
        )
    }

    /// The verified content of the image's file (at `path` in the store's directory), from
    /// memory, or read and verified by `verify` once: held when it verifies, remembered as
    /// refused when it does not. A file that cannot be read is not remembered (another
    /// instance sharing the directory may write it later).
    fn read_once<T: Clone>(
        &self,
        sha256: &Sha256,
        kind: fn(&mut State) -> &mut Verified<T>,
        path: fn(&std::path::Path, &Sha256) -> PathBuf,
        verify: impl FnOnce(Vec<u8>) -> Option<T>,
    ) -> Option<T> {
        let (dir, sweeps) = {
            let mut state = self.lock();
            state.forget_if_swept();
            if let Some(answer) = kind(&mut state).known(sha256) {
                return answer;
            }
            (state.dir()?, state.sweeps_seen())
        };
        let bytes = std::fs::read(path(&dir, sha256)).ok()?;
        let verified = verify(bytes);
        let mut state = self.lock();
        state.forget_if_swept();
        if state.sweeps_seen() != sweeps {
            // A sweep meanwhile may have removed the file read: answered, not remembered.
            return verified;
        }
        let verified_here = kind(&mut state);
        // One attached or signed meanwhile is newer than the file as it was read.
        if let Some(Some(newer)) = verified_here.known(sha256) {
            return Some(newer);
        }
        match &verified {
            Some(value) => verified_here.hold(sha256, value.clone()),
            None => verified_here.refuse(sha256),
        }
        verified
    }

    fn aws_path(dir: &std::path::Path, sha256: &Sha256) -> PathBuf {
        dir.join(format!("{}.sig-sha256-ecdsa", sha256_hex(sha256)))
    }

    pub fn new(policy: SigningPolicy) -> Self {
        Self { policy: policy.with_signer_trusted(), state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Manifests are kept as files beside the images of `store` from now on.
    pub fn keep_in(&self, store: ImageStore) {
        let sweeps = store.sweeps();
        self.lock().disk = Some((store, sweeps));
    }

    pub fn require_signed(&self) -> bool {
        self.policy.require_signed
    }

    pub fn trusted(&self) -> &TrustedKeys {
        &self.policy.trusted
    }

    /// The counter Rocky signs images with when a job needs them signed.
    pub fn default_seq(&self) -> u64 {
        self.policy.default_seq
    }

    /// The key id Rocky signs with, if it holds a key.
    pub fn signer(&self) -> Option<Kid> {
        self.policy.signer.as_ref().map(SigningKey::kid)
    }

    fn path(dir: &std::path::Path, sha256: &Sha256) -> PathBuf {
        dir.join(format!("{}.cose", sha256_hex(sha256)))
    }

    /// Attaches a manifest someone else signed: it must decode, verify under a trusted key and
    /// be for `image`; then it replaces any manifest the image had.
    pub fn attach(&self, image: &Image, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let manifest = Manifest::decode(bytes)?;
        manifest.verify(&self.policy.trusted)?;
        manifest.check_image(image.sha256(), image.size())?;
        self.keep(image.sha256(), manifest.clone())
            .map_err(|e| ManifestError::NotCoseSign1(e.to_string()))?;
        Ok(manifest)
    }

    /// The manifest Rocky would make for `image` at the policy's counter, not kept (a dry run's
    /// check); `None` without a signing key.
    pub fn unkept(&self, image: &Image) -> Option<Manifest> {
        let signer = self.policy.signer.as_ref()?;
        let payload = ManifestPayload {
            image_sha256: *image.sha256(),
            size: image.size(),
            version: None,
            seq: self.default_seq(),
        };
        Some(Manifest::sign(payload, signer))
    }

    /// Signs `image` with Rocky's key and attaches the manifest.
    pub fn sign(&self, image: &Image, version: Option<String>, seq: u64) -> Result<Manifest, SignError> {
        let signer = self.policy.signer.as_ref().ok_or(SignError::NoKey)?;
        if version.as_ref().is_some_and(|v| {
            v.len() > crate::protocol::MAX_VERSION_BYTES || v.chars().any(crate::text::is_unprintable)
        }) {
            return Err(SignError::BadVersion);
        }
        let payload = ManifestPayload { image_sha256: *image.sha256(), size: image.size(), version, seq };
        let manifest = Manifest::sign(payload, signer);
        self.keep(image.sha256(), manifest.clone())?;
        Ok(manifest)
    }

    /// Keeps `manifest`, which a trusted key made for the image with this hash (its callers
    /// verified it, or made it with Rocky's own key).
    fn keep(&self, sha256: &Sha256, manifest: Manifest) -> Result<(), SignError> {
        let mut state = self.lock();
        state.forget_if_swept();
        if let Some(dir) = &state.dir() {
            std::fs::create_dir_all(dir)
                .and_then(|()| write_atomically(&Self::path(dir, sha256), manifest.bytes()))
                .map_err(|e| SignError::Io(e.to_string()))?;
        }
        state.by_image.hold(sha256, manifest);
        Ok(())
    }

    /// The manifest of the image with this hash, if it has one a trusted key verifies.
    ///
    /// Verified once, when it is first read from its file: what is held was verified on the way
    /// in (attached, made here, or read back), and the trusted keys do not change while Rocky
    /// runs. A rollout asks once per device, and an ES256 verification costs about 270 µs
    /// here: verifying on every ask spent 27 s of the async thread on a 100,000-device
    /// rollout (`cargo bench --bench manifest_lookup`).
    pub fn get(&self, sha256: &Sha256) -> Option<Manifest> {
        self.read_once(
            sha256,
            |state| &mut state.by_image,
            Self::path,
            |bytes| {
                Manifest::decode(&bytes).ok().filter(|manifest| {
                    manifest.verify(&self.policy.trusted).is_ok()
                        && manifest.payload().image_sha256 == *sha256
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::signing::Alg;

    /// A policy that trusts `key` (as "ci").
    fn trusting(key: &SigningKey) -> SigningPolicy {
        let mut trusted = TrustedKeys::default();
        trusted.add(key.public(), "ci".into());
        SigningPolicy { trusted, ..SigningPolicy::default() }
    }

    /// Manifests under `policy`, kept as files in `dir`.
    fn kept_in(dir: &tempfile::TempDir, policy: SigningPolicy) -> Manifests {
        let manifests = Manifests::new(policy);
        manifests.keep_in(ImageStore::new(dir.path().to_path_buf()));
        manifests
    }

    #[test]
    fn an_aws_signature_attaches_only_from_a_trusted_key_wins_over_rockys_and_outlives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let offline = SigningKey::generate(Alg::Es256).unwrap();
        let rockys = SigningKey::generate(Alg::Es256).unwrap();
        let policy = SigningPolicy { signer: Some(rockys.clone()), ..trusting(&offline) };
        let manifests = kept_in(&dir, policy.clone());
        let image = Image::new("fw.bin", Bytes::from_static(b"firmware for an AWS device"));
        let own = manifests.aws_signature(&image).unwrap();
        assert!(crate::signing::aws_signature_verifies(&rockys.public(), image.bytes(), &own));

        let stranger =
            crate::signing::aws_signature(&SigningKey::generate(Alg::Es256).unwrap(), image.bytes());
        assert!(manifests.attach_aws(&image, &stranger.unwrap()).unwrap_err().contains("does not verify"));
        assert!(manifests.attach_aws(&image, "").is_err());
        assert!(manifests.attach_aws(&image, &"A".repeat(200)).is_err());
        let offline_signature = crate::signing::aws_signature(&offline, image.bytes()).unwrap();
        let other = Image::new("other.bin", Bytes::from_static(b"another image"));
        assert!(manifests.attach_aws(&other, &offline_signature).is_err(), "for another image");
        assert_eq!(manifests.attach_aws(&image, &format!("{offline_signature}\n")), Ok(offline.kid()));
        assert_eq!(manifests.aws_signature(&image).unwrap(), offline_signature, "the attached one wins");

        let after_restart = kept_in(&dir, policy);
        assert_eq!(after_restart.attached_aws(image.sha256()), Some(offline_signature));
        let distrusting = kept_in(&dir, SigningPolicy::default());
        assert_eq!(distrusting.attached_aws(image.sha256()), None, "a key no longer trusted unsigns");
    }

    #[test]
    fn an_aws_signature_file_no_trusted_key_verifies_is_refused_until_one_is_attached() {
        let dir = tempfile::tempdir().unwrap();
        let trusted_key = SigningKey::generate(Alg::Es256).unwrap();
        let manifests = kept_in(&dir, trusting(&trusted_key));
        let image = Image::new("fw.bin", Bytes::from_static(b"firmware for an AWS device"));
        let path = Manifests::aws_path(dir.path(), image.sha256());
        let stranger = SigningKey::generate(Alg::Es256).unwrap();
        std::fs::write(&path, crate::signing::aws_signature(&stranger, image.bytes()).unwrap()).unwrap();
        assert_eq!(manifests.attached_aws(image.sha256()), None);
        // Remembered, not read and verified again per AWS job: a good file put in its place
        // behind Rocky's back is not read either.
        let good = crate::signing::aws_signature(&trusted_key, image.bytes()).unwrap();
        std::fs::write(&path, &good).unwrap();
        assert_eq!(manifests.attached_aws(image.sha256()), None, "refused again, from memory");
        assert_eq!(manifests.attach_aws(&image, &good), Ok(trusted_key.kid()));
        assert_eq!(manifests.attached_aws(image.sha256()), Some(good));
    }

    #[test]
    fn manifests_attach_only_when_trusted_and_for_the_image_and_outlive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let offline = SigningKey::generate(Alg::Ed25519).unwrap();
        let policy = trusting(&offline);
        let manifests = kept_in(&dir, policy.clone());
        let image = Image::new("fw.bin", Bytes::from_static(b"firmware"));
        let payload = |sha: Sha256, size| ManifestPayload { image_sha256: sha, size, version: None, seq: 1 };
        assert_eq!(manifests.get(image.sha256()), None);
        assert_eq!(manifests.sign(&image, None, 1), Err(SignError::NoKey));

        let stranger = SigningKey::generate(Alg::Ed25519).unwrap();
        let foreign = Manifest::sign(payload(*image.sha256(), 8), &stranger);
        assert_eq!(manifests.attach(&image, foreign.bytes()), Err(ManifestError::Untrusted(stranger.kid())));
        let other_image = Manifest::sign(payload([3; 32], 8), &offline);
        assert!(matches!(
            manifests.attach(&image, other_image.bytes()),
            Err(ManifestError::OtherImage { .. })
        ));
        let wrong_size = Manifest::sign(payload(*image.sha256(), 9), &offline);
        assert!(matches!(manifests.attach(&image, wrong_size.bytes()), Err(ManifestError::OtherSize { .. })));
        assert_eq!(manifests.get(image.sha256()), None, "nothing refused was kept");

        let good = Manifest::sign(payload(*image.sha256(), 8), &offline);
        assert_eq!(manifests.attach(&image, good.bytes()).unwrap(), good);
        assert_eq!(manifests.get(image.sha256()), Some(good.clone()));

        let after_restart = kept_in(&dir, policy);
        assert_eq!(after_restart.get(image.sha256()), Some(good.clone()));
        // A trusted manifest in another image's file is not that image's manifest.
        let elsewhere = [9; 32];
        std::fs::copy(Manifests::path(dir.path(), image.sha256()), Manifests::path(dir.path(), &elsewhere))
            .unwrap();
        assert_eq!(after_restart.get(&elsewhere), None);
        let distrusting = kept_in(&dir, SigningPolicy::default());
        assert_eq!(distrusting.get(image.sha256()), None, "a key no longer trusted unsigns its images");
    }

    #[test]
    fn a_file_no_trusted_key_verifies_is_refused_until_rocky_signs_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(Alg::Ed25519).unwrap();
        let manifests = kept_in(&dir, SigningPolicy { signer: Some(key), ..SigningPolicy::default() });
        let image = Image::new("fw.bin", Bytes::from_static(b"firmware"));
        let stranger = SigningKey::generate(Alg::Ed25519).unwrap();
        let payload = ManifestPayload { image_sha256: *image.sha256(), size: 8, version: None, seq: 1 };
        let path = Manifests::path(dir.path(), image.sha256());
        std::fs::write(&path, Manifest::sign(payload.clone(), &stranger).bytes()).unwrap();
        assert_eq!(manifests.get(image.sha256()), None);
        // The refusal is remembered, not read and verified again: a good file put in its place
        // behind Rocky's back is not read either.
        std::fs::write(&path, Manifest::sign(payload, manifests.policy.signer.as_ref().unwrap()).bytes())
            .unwrap();
        assert_eq!(manifests.get(image.sha256()), None, "refused again, from memory");
        let signed = manifests.sign(&image, None, 2).unwrap();
        assert_eq!(manifests.get(image.sha256()), Some(signed));
    }

    #[test]
    fn an_image_swept_away_by_retention_takes_its_verified_files_out_of_memory_too() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(Alg::Es256).unwrap();
        let manifests =
            Manifests::new(SigningPolicy { signer: Some(key.clone()), ..SigningPolicy::default() });
        let store = ImageStore::new(dir.path().to_path_buf());
        manifests.keep_in(store.clone());
        let image = Image::new("fw.bin", Bytes::from_static(b"firmware kept by a job"));
        let kept = Image::new("other.bin", Bytes::from_static(b"firmware a job still needs"));
        for image in [&image, &kept] {
            store.save(image).unwrap();
            manifests.sign(image, None, 1).unwrap();
            let signature = crate::signing::aws_signature(&key, image.bytes()).unwrap();
            manifests.attach_aws(image, &signature).unwrap();
            assert!(
                manifests.get(image.sha256()).is_some() && manifests.attached_aws(image.sha256()).is_some()
            );
        }
        let needed = std::collections::HashSet::from([sha256_hex(kept.sha256())]);
        assert_eq!(store.clone().remove_unneeded(&needed).unwrap(), 1);
        // The same bytes uploaded again are unsigned, as they would be after a restart.
        assert_eq!(manifests.get(image.sha256()), None);
        assert_eq!(manifests.attached_aws(image.sha256()), None);
        assert!(manifests.get(kept.sha256()).is_some(), "read back from the file that stays");
        assert!(manifests.attached_aws(kept.sha256()).is_some());
        let again = manifests.sign(&image, None, 2).unwrap();
        assert_eq!(manifests.get(image.sha256()), Some(again), "signing it anew signs it");
    }

    #[test]
    fn a_verdict_reached_while_a_sweep_removes_the_file_is_answered_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(Alg::Ed25519).unwrap();
        let policy = SigningPolicy { signer: Some(key), ..SigningPolicy::default() };
        let store = ImageStore::new(dir.path().to_path_buf());
        let image = Image::new("fw.bin", Bytes::from_static(b"firmware retention sweeps away"));
        store.save(&image).unwrap();
        kept_in(&dir, policy.clone()).sign(&image, None, 1).unwrap();
        let manifests = Manifests::new(policy);
        manifests.keep_in(store.clone());
        // The sweep runs while the file read is being verified.
        let answered = manifests.read_once(
            image.sha256(),
            |state| &mut state.by_image,
            Manifests::path,
            |bytes| {
                assert_eq!(store.remove_unneeded(&std::collections::HashSet::new()).unwrap(), 1);
                Manifest::decode(&bytes).ok()
            },
        );
        assert!(answered.is_some(), "what was read is answered");
        assert_eq!(manifests.get(image.sha256()), None, "not remembered: the file is gone");
    }

    #[test]
    fn rocky_signs_with_its_own_key_and_trusts_it() {
        let key = SigningKey::generate(Alg::Es256).unwrap();
        let manifests =
            Manifests::new(SigningPolicy { signer: Some(key.clone()), ..SigningPolicy::default() });
        let image = Image::new("fw.bin", Bytes::from_static(b"firmware"));
        let manifest = manifests.sign(&image, Some("2.1.0".into()), 4).unwrap();
        assert_eq!((manifest.kid(), manifest.payload().seq), (key.kid(), 4));
        assert_eq!(manifests.get(image.sha256()), Some(manifest));
        assert_eq!(manifests.signer(), Some(key.kid()));
        assert_eq!(manifests.sign(&image, Some("bad\nversion".into()), 1), Err(SignError::BadVersion));
    }
}
