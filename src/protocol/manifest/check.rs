//! Whether a manifest seen on the wire verifies, for the traffic view, at a bounded cost.
//!
//! Every FOTA_REQUEST on a device's topic is described, Rocky's own and anyone else's. An ES256
//! verification costs about 280 µs here, on the one thread that sends every chunk: verifying each
//! one again repeated the same work once per job, and let any broker client that may publish on a
//! device's topic buy 280 µs of that thread per message by naming a trusted key id beside a
//! garbage signature. Answers are remembered by the manifest's bytes (Rocky sends the same
//! manifest to every device of a rollout), and manifests not seen before under a trusted key id
//! are verified at most [`FRESH_CHECKS_PER_S`] a second; past that the text says the signature
//! was not checked. One under a key id Rocky does not trust is refused at no cost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Manifest;
use crate::signing::TrustedKeys;

/// Manifests not seen before that are verified in one second, at most (about 6 ms of ES256).
pub const FRESH_CHECKS_PER_S: u32 = 20;

/// Answers remembered (each at most [`super::MAX_MANIFEST_BYTES`]); past it they start over.
const REMEMBERED: usize = 64;

pub struct ManifestCheck {
    trusted: TrustedKeys,
    state: std::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    known: HashMap<Bytes, bool>,
    /// When the current second of the budget began, and what of it is spent.
    second: Option<Instant>,
    spent: u32,
}

impl ManifestCheck {
    pub fn new(trusted: TrustedKeys) -> Self {
        Self { trusted, state: std::sync::Mutex::default() }
    }

    /// Whether a trusted key signed `manifest`, or `None` when this second's verifications
    /// are spent and the manifest was not seen before.
    pub fn verifies(&self, manifest: &Manifest) -> Option<bool> {
        self.verifies_at(manifest, tokio::time::Instant::now().into_std())
    }

    fn verifies_at(&self, manifest: &Manifest, now: Instant) -> Option<bool> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = state.known.get(manifest.bytes()) {
            return Some(*known);
        }
        // A key id Rocky does not trust costs nothing to refuse: it spends no budget and takes
        // no room from the manifests worth remembering.
        if self.trusted.get(&manifest.kid()).is_none() {
            return Some(false);
        }
        if state.second.is_none_or(|began| now.duration_since(began) >= Duration::from_secs(1)) {
            state.second = Some(now);
            state.spent = 0;
        }
        if state.spent >= FRESH_CHECKS_PER_S {
            return None;
        }
        state.spent += 1;
        let verified = manifest.verify(&self.trusted).is_ok();
        if state.known.len() >= REMEMBERED {
            state.known.clear();
        }
        state.known.insert(manifest.bytes().clone(), verified);
        Some(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ManifestPayload;
    use crate::signing::{Alg, SigningKey};

    fn signed(key: &SigningKey, seq: u64) -> Manifest {
        Manifest::sign(ManifestPayload { image_sha256: [7; 32], size: 8, version: None, seq }, key)
    }

    #[test]
    fn known_manifests_are_answered_from_memory_and_new_ones_verified_within_the_budget() {
        let start = Instant::now();
        let key = SigningKey::generate(Alg::Ed25519).unwrap();
        let mut trusted = TrustedKeys::default();
        trusted.add(key.public(), "test".into());
        let check = ManifestCheck::new(trusted);
        let stranger = SigningKey::generate(Alg::Ed25519).unwrap();
        let rockys = signed(&key, 0);
        assert_eq!(check.verifies_at(&rockys, start), Some(true));
        // Strangers' manifests are refused without spending the budget.
        for seq in 0..100 {
            assert_eq!(check.verifies_at(&signed(&stranger, seq), start), Some(false));
        }
        // One naming a trusted key id beside a signature that does not verify spends it.
        let mut bytes = signed(&key, 500).bytes().to_vec();
        if let Some(last) = bytes.last_mut() {
            *last ^= 1; // the signature's last byte
        }
        let forged = Manifest::decode(&bytes).unwrap();
        assert_eq!(check.verifies_at(&forged, start), Some(false));
        for seq in 1..u64::from(FRESH_CHECKS_PER_S) - 1 {
            assert_eq!(check.verifies_at(&signed(&key, seq), start), Some(true));
        }
        // The second's budget is spent: a new manifest is not checked, a known one still is.
        assert_eq!(check.verifies_at(&signed(&key, 999), start), None);
        assert_eq!(check.verifies_at(&rockys, start), Some(true));
        let later = |ms| start + Duration::from_millis(ms);
        assert_eq!(check.verifies_at(&signed(&key, 999), later(999)), None, "still the same second");
        assert_eq!(
            check.verifies_at(&signed(&key, 999), later(1000)),
            Some(true),
            "a new second, a new budget"
        );
    }
}
