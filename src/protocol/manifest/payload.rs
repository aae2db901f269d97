//! The signed payload of a manifest: `{1: image sha256, 2: size, 3: version, 4: seq}`, written in
//! RFC 8949 §4.2 deterministic CBOR (integer keys in order, shortest heads) so that signing the
//! same facts with the same Ed25519 key gives the same bytes everywhere.

use ciborium::Value;

use crate::protocol::cbor::{MAJOR_BYTES, MAJOR_TEXT, MAJOR_UNSIGNED, push_head};
use crate::protocol::{MAX_VERSION_BYTES, Sha256};

const MAJOR_MAP: u8 = 5;

/// What a manifest says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPayload {
    pub image_sha256: Sha256,
    pub size: u64,
    /// The image's version as people name it (`"2.1.0"`), at most 64 printable bytes.
    pub version: Option<String>,
    /// The security counter (anti-rollback); 0 when the payload has none.
    pub seq: u64,
}

impl ManifestPayload {
    /// Deterministic CBOR. The security counter is always written (0 included): a device reads
    /// an absent one as 0 anyway, and an explicit one says the signer meant it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        push_head(&mut out, MAJOR_MAP, if self.version.is_some() { 4 } else { 3 });
        push_head(&mut out, MAJOR_UNSIGNED, 1);
        push_head(&mut out, MAJOR_BYTES, 32);
        out.extend_from_slice(&self.image_sha256);
        push_head(&mut out, MAJOR_UNSIGNED, 2);
        push_head(&mut out, MAJOR_UNSIGNED, self.size);
        if let Some(version) = &self.version {
            push_head(&mut out, MAJOR_UNSIGNED, 3);
            push_head(&mut out, MAJOR_TEXT, version.len() as u64);
            out.extend_from_slice(version.as_bytes());
        }
        push_head(&mut out, MAJOR_UNSIGNED, 4);
        push_head(&mut out, MAJOR_UNSIGNED, self.seq);
        out
    }

    /// Reads a payload another signer wrote: any valid CBOR map with the keys above (unknown
    /// integer keys are ignored; the signature already covers them).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = bytes;
        let value: Value =
            ciborium::from_reader(&mut reader).map_err(|_| "the payload is not CBOR".to_owned())?;
        if !reader.is_empty() {
            return Err("the payload has bytes after its map".into());
        }
        let Value::Map(entries) = value else { return Err("the payload is not a map".into()) };
        let mut image = None;
        let mut size = None;
        let mut version = None;
        let mut seq = None;
        for (key, value) in entries {
            let Some(key) = key.as_integer().and_then(|k| u64::try_from(k).ok()) else { continue };
            let unsigned = |value: &Value| value.as_integer().and_then(|n| u64::try_from(n).ok());
            let fresh = match key {
                1 => {
                    let hash = value
                        .as_bytes()
                        .and_then(|b| Sha256::try_from(b.as_slice()).ok())
                        .ok_or("key 1 (image hash) must be 32 bytes")?;
                    image.replace(hash).is_none()
                }
                2 => size.replace(unsigned(&value).ok_or("key 2 (size) must be unsigned")?).is_none(),
                3 => {
                    let text = value.as_text().ok_or("key 3 (version) must be text")?;
                    if text.len() > MAX_VERSION_BYTES || text.chars().any(crate::text::is_unprintable) {
                        return Err(format!(
                            "key 3 (version) must be at most {MAX_VERSION_BYTES} printable bytes"
                        ));
                    }
                    version.replace(text.to_owned()).is_none()
                }
                4 => seq
                    .replace(unsigned(&value).ok_or("key 4 (security counter) must be unsigned")?)
                    .is_none(),
                _ => true,
            };
            if !fresh {
                return Err(format!("key {key} appears twice"));
            }
        }
        Ok(Self {
            image_sha256: image.ok_or("the payload has no image hash (key 1)")?,
            size: size.ok_or("the payload has no size (key 2)")?,
            version,
            seq: seq.unwrap_or(0),
        })
    }
}
