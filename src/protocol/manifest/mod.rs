//! Manifests (the manifest extension of `PROTOCOL.md`): a COSE_Sign1 (RFC 9052 §4.2, tag 18) over
//! an image's hash, size, version and security counter, which a device that declared `manifest`
//! verifies with a key it trusts before it takes the image.
//!
//! The COSE structure is coset's (Google's maintained implementation); the payload is written
//! here because its bytes are fixed by the protocol's vectors. Decoding is bounded
//! ([`MAX_MANIFEST_BYTES`]) and never panics; a manifest that decodes is not yet trusted:
//! [`Manifest::verify`] checks its key and signature, [`Manifest::check_image`] its image.

mod check;
mod payload;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use coset::{CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};

pub use check::{FRESH_CHECKS_PER_S, ManifestCheck};
pub use payload::ManifestPayload;

use super::{Sha256, short_hash};
use crate::signing::{Alg, Kid, SigningKey, TrustedKeys};

/// The largest manifest Rocky reads. Rocky's own are about 150 bytes; a signer's extra headers
/// fit easily.
pub const MAX_MANIFEST_BYTES: usize = 4096;

/// A decoded COSE_Sign1 manifest and the exact bytes that go on the wire. Cheap to clone (a
/// job's view carries it). In JSON it is its [`ManifestInfo`] plus `cose`, the hex of its
/// bytes, from which it is read back.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest(std::sync::Arc<Inner>);

#[derive(PartialEq, Eq)]
struct Inner {
    /// Tagged COSE_Sign1, as embedded in FOTA_REQUEST.
    bytes: Bytes,
    alg: Alg,
    kid: Kid,
    payload: ManifestPayload,
    /// `Sig_structure` (RFC 9052 §4.4) with an empty external AAD: what the signature covers.
    signed: Vec<u8>,
    signature: Vec<u8>,
}

/// coset's errors in words ("decode CBOR failure: Io(EndOfFile)" is its debug form).
fn cose_words(error: &coset::CoseError) -> String {
    match error {
        coset::CoseError::DecodeFailed(ciborium::de::Error::Io(_)) => {
            "the bytes end in the middle of an item".into()
        }
        coset::CoseError::DecodeFailed(ciborium::de::Error::Syntax(at)) => {
            format!("malformed CBOR at byte {at}")
        }
        coset::CoseError::DecodeFailed(_) => "not valid CBOR".into(),
        coset::CoseError::ExtraneousData => "bytes after the end of the structure".into(),
        coset::CoseError::UnexpectedItem(got, want) => format!("expected {want}, got {got}"),
        other => other.to_string(),
    }
}

/// What job JSON, `/firmware` and the console show of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestInfo {
    pub kid: Kid,
    pub alg: Alg,
    pub version: Option<String>,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is {0} bytes; at most {MAX_MANIFEST_BYTES} are read")]
    TooLarge(usize),
    #[error("not a COSE_Sign1 manifest: {0}")]
    NotCoseSign1(String),
    #[error("the manifest's algorithm {0} is neither EdDSA (-8) nor ES256 (-7)")]
    UnknownAlg(String),
    #[error("the manifest names no key (kid)")]
    NoKid,
    #[error("the manifest names one kid in its protected header and another in its unprotected one")]
    KidsDiffer,
    #[error("the manifest's kid must be 8 bytes, got {0}")]
    BadKid(usize),
    #[error("the manifest marks headers critical that Rocky does not know")]
    Critical,
    #[error("the manifest carries no payload (a detached payload is not supported)")]
    NoPayload,
    #[error("the manifest's payload: {0}")]
    BadPayload(String),
    #[error("the manifest is signed by key {0}, which is not among Rocky's trusted keys")]
    Untrusted(Kid),
    #[error("the manifest's signature does not verify under key {0}")]
    BadSignature(Kid),
    #[error("the manifest is for image {manifest}, not {image}")]
    OtherImage { manifest: String, image: String },
    #[error("the manifest says {manifest} bytes; the image has {image}")]
    OtherSize { manifest: u64, image: u64 },
}

impl Manifest {
    /// Signs `payload` with `key`: `alg` protected, `kid` unprotected, as `PROTOCOL.md` lays out.
    pub fn sign(payload: ManifestPayload, key: &SigningKey) -> Self {
        let alg = match key.alg() {
            Alg::Ed25519 => coset::iana::Algorithm::EdDSA,
            Alg::Es256 => coset::iana::Algorithm::ES256,
        };
        let sign1 = CoseSign1Builder::new()
            .protected(HeaderBuilder::new().algorithm(alg).build())
            .unprotected(HeaderBuilder::new().key_id(key.kid().0.to_vec()).build())
            .payload(payload.encode())
            .create_signature(b"", |data| key.sign(data))
            .build();
        let signed = sign1.tbs_data(b"");
        let signature = sign1.signature.clone();
        // Encoding a structure coset just built from plain headers cannot fail; an empty
        // manifest would be refused by every device, never mistaken for a signed one.
        let bytes = sign1.to_tagged_vec().unwrap_or_default();
        Self::from_inner(Inner {
            bytes: bytes.into(),
            alg: key.alg(),
            kid: key.kid(),
            payload,
            signed,
            signature,
        })
    }

    /// Reads a manifest: tagged (18) or untagged COSE_Sign1; what goes on the wire is always the
    /// tagged form. Checks structure only.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let sign1 = match CoseSign1::from_tagged_slice(bytes) {
            Ok(sign1) => sign1,
            Err(tagged) => {
                CoseSign1::from_slice(bytes).map_err(|_| ManifestError::NotCoseSign1(cose_words(&tagged)))?
            }
        };
        Self::from_sign1(sign1)
    }

    fn from_inner(inner: Inner) -> Self {
        Self(std::sync::Arc::new(inner))
    }

    fn from_sign1(sign1: CoseSign1) -> Result<Self, ManifestError> {
        let protected = &sign1.protected.header;
        if !protected.crit.is_empty() {
            return Err(ManifestError::Critical);
        }
        let alg = match &protected.alg {
            Some(coset::RegisteredLabelWithPrivate::Assigned(coset::iana::Algorithm::EdDSA)) => Alg::Ed25519,
            Some(coset::RegisteredLabelWithPrivate::Assigned(coset::iana::Algorithm::ES256)) => Alg::Es256,
            Some(other) => return Err(ManifestError::UnknownAlg(format!("{other:?}"))),
            None => return Err(ManifestError::UnknownAlg("(none)".into())),
        };
        // A kid in both headers must be the same kid: a device may read either.
        if !protected.key_id.is_empty()
            && !sign1.unprotected.key_id.is_empty()
            && protected.key_id != sign1.unprotected.key_id
        {
            return Err(ManifestError::KidsDiffer);
        }
        let kid_bytes =
            if protected.key_id.is_empty() { &sign1.unprotected.key_id } else { &protected.key_id };
        if kid_bytes.is_empty() {
            return Err(ManifestError::NoKid);
        }
        let kid = Kid::from_slice(kid_bytes).ok_or(ManifestError::BadKid(kid_bytes.len()))?;
        let payload_bytes = sign1.payload.as_deref().ok_or(ManifestError::NoPayload)?;
        let payload = ManifestPayload::decode(payload_bytes).map_err(ManifestError::BadPayload)?;
        let signed = sign1.tbs_data(b"");
        let signature = sign1.signature.clone();
        let bytes = sign1.to_tagged_vec().map_err(|e| ManifestError::NotCoseSign1(e.to_string()))?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        Ok(Self::from_inner(Inner { bytes: bytes.into(), alg, kid, payload, signed, signature }))
    }

    /// Checks that a trusted key with the manifest's id signed it.
    pub fn verify(&self, trusted: &TrustedKeys) -> Result<(), ManifestError> {
        let key = trusted.get(&self.0.kid).ok_or(ManifestError::Untrusted(self.0.kid))?;
        if key.key.verify(self.0.alg, &self.0.signed, &self.0.signature) {
            Ok(())
        } else {
            Err(ManifestError::BadSignature(self.0.kid))
        }
    }

    /// Checks that the manifest is for this image.
    pub fn check_image(&self, sha256: &Sha256, size: u64) -> Result<(), ManifestError> {
        if self.0.payload.image_sha256 != *sha256 {
            return Err(ManifestError::OtherImage {
                manifest: short_hash(&self.0.payload.image_sha256),
                image: short_hash(sha256),
            });
        }
        if self.0.payload.size != size {
            return Err(ManifestError::OtherSize { manifest: self.0.payload.size, image: size });
        }
        Ok(())
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }

    pub fn alg(&self) -> Alg {
        self.0.alg
    }

    pub fn kid(&self) -> Kid {
        self.0.kid
    }

    pub fn payload(&self) -> &ManifestPayload {
        &self.0.payload
    }

    pub fn info(&self) -> ManifestInfo {
        ManifestInfo {
            kid: self.0.kid,
            alg: self.0.alg,
            version: self.0.payload.version.clone(),
            seq: self.0.payload.seq,
        }
    }
}

/// The JSON shape: what a person reads, and the bytes to read it back from.
#[derive(serde::Serialize, serde::Deserialize)]
struct ManifestJson {
    #[serde(flatten)]
    info: ManifestInfo,
    cose: String,
}

impl serde::Serialize for Manifest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ManifestJson { info: self.info(), cose: hex::encode(self.bytes()) }.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Manifest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = ManifestJson::deserialize(deserializer)?;
        let bytes = hex::decode(&json.cose).map_err(serde::de::Error::custom)?;
        Manifest::decode(&bytes).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("alg", &self.0.alg)
            .field("kid", &self.0.kid)
            .field("payload", &self.0.payload)
            .field("bytes", &self.0.bytes.len())
            .finish()
    }
}
