//! The status extension: what a device says about itself on `{prefix}/status/{device_id}`, a
//! retained CBOR map — the image it runs, that image's version, its boot and security counters,
//! the extensions it speaks and the keys it trusts. Decoding is bounded (at most
//! [`MAX_STATUS_BYTES`]) and never panics; every malformed status is a [`StatusError`] that says
//! what was wrong, and leaves the device's last good status in place.

use ciborium::Value;

use super::Sha256;
use super::frame::{decode_hash, kind, render};

/// The largest status Rocky reads; a longer one is refused whole.
pub const MAX_STATUS_BYTES: usize = 1024;
/// The longest `version` text.
pub const MAX_VERSION_BYTES: usize = 64;
/// The most extensions of a status Rocky keeps, and the longest name it keeps: what a status can
/// make Rocky hold per device stays small (a thousand empty names would fit in 1,024 bytes).
/// Items beyond these are left out, never a reason to refuse the status.
pub const MAX_CAPS: usize = 16;
pub const MAX_CAP_BYTES: usize = 32;
/// The most key ids of a status Rocky keeps.
pub const MAX_KIDS: usize = 16;

/// The extensions a device may list in `caps` (others are kept as said, and mean nothing).
pub const CAP_RESUME: &str = "resume";
pub const CAP_FLOW: &str = "flow";
pub const CAP_REASONS: &str = "reasons";
pub const CAP_CONFIRM: &str = "confirm";
pub const CAP_MANIFEST: &str = "manifest";
pub const CAP_DELTA_BSDIFF4: &str = "delta-bsdiff4";
/// Every extension Rocky knows, kept from a status whatever else it lists.
const KNOWN_CAPS: [&str; 6] =
    [CAP_RESUME, CAP_FLOW, CAP_REASONS, CAP_CONFIRM, CAP_MANIFEST, CAP_DELTA_BSDIFF4];

/// A device's last word about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    /// SHA-256 of the image it runs now.
    pub image: Sha256,
    /// That image's version as people name it.
    pub version: Option<String>,
    /// Grows by at least 1 at every boot; required for `confirm`.
    pub boot: Option<u64>,
    /// The running image's security counter.
    pub seq: Option<u64>,
    /// Extensions it speaks, in the order it listed them.
    pub caps: Vec<String>,
    /// Key ids whose manifests it accepts.
    pub kids: Vec<[u8; 8]>,
}

impl DeviceStatus {
    /// Whether the device listed extension `cap`.
    pub fn speaks(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }
}

/// A status as it arrived: the device's word, or a cleared retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusUpdate {
    /// A zero-length retained message: Rocky knows nothing of the device's image any more.
    Cleared,
    /// `confirm_dropped`: the device listed `confirm` without a `boot` counter, so it is taken
    /// without `confirm` (confirmation needs the counter); said once by whoever reports it.
    Reported { status: DeviceStatus, confirm_dropped: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("status of {0} bytes; a status is at most {MAX_STATUS_BYTES} bytes")]
    TooLarge(usize),
    #[error("not CBOR: {0}")]
    NotCbor(String),
    #[error("{0} bytes after the end of the CBOR item")]
    TrailingBytes(usize),
    #[error("expected a CBOR map, got {0}")]
    NotMap(&'static str),
    #[error("no image: a status must name the SHA-256 of the image the device runs")]
    NoImage,
    #[error("image: {0}")]
    BadImage(String),
    #[error("version must be printable text of at most {MAX_VERSION_BYTES} bytes, got {0}")]
    BadVersion(String),
    #[error("{0} must be an unsigned integer, got {1}")]
    BadCounter(&'static str, String),
    #[error("caps must be an array of text, got {0}")]
    BadCaps(String),
    #[error("kids must be an array of 8-byte strings, got {0}")]
    BadKids(String),
}

/// Decodes a status payload. Unknown keys (and keys that are not text) are ignored; a key
/// given twice counts as given once, the first time.
pub fn decode_status(payload: &[u8]) -> Result<StatusUpdate, StatusError> {
    if payload.is_empty() {
        return Ok(StatusUpdate::Cleared);
    }
    if payload.len() > MAX_STATUS_BYTES {
        return Err(StatusError::TooLarge(payload.len()));
    }
    let mut reader = payload;
    let value: Value = ciborium::from_reader(&mut reader).map_err(|e| StatusError::NotCbor(e.to_string()))?;
    if !reader.is_empty() {
        return Err(StatusError::TrailingBytes(reader.len()));
    }
    let entries = match value {
        Value::Map(entries) => entries,
        other => return Err(StatusError::NotMap(kind(&other))),
    };
    let field = |name: &str| {
        entries
            .iter()
            .find(|(key, _)| matches!(key, Value::Text(text) if text == name))
            .map(|(_, value)| value)
    };
    let image = field("image").ok_or(StatusError::NoImage)?;
    let image = match image {
        Value::Bytes(_) | Value::Array(_) => {
            decode_hash(image).map_err(|e| StatusError::BadImage(e.to_string()))?
        }
        other => return Err(StatusError::BadImage(format!("expected 32 bytes, got {}", kind(other)))),
    };
    let version = match field("version") {
        None | Some(Value::Null) => None,
        // Shown in the console, the CLI and job errors: no control or format characters.
        Some(Value::Text(text))
            if text.len() <= MAX_VERSION_BYTES && !text.chars().any(crate::text::is_unprintable) =>
        {
            Some(text.clone())
        }
        Some(other) => return Err(StatusError::BadVersion(render(other))),
    };
    let counter = |name: &'static str| match field(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Integer(n)) => u64::try_from(*n)
            .map(Some)
            .map_err(|_| StatusError::BadCounter(name, render(&Value::Integer(*n)))),
        Some(other) => Err(StatusError::BadCounter(name, render(other))),
    };
    let (boot, seq) = (counter("boot")?, counter("seq")?);
    let caps = match field("caps") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut caps = Vec::new();
            for item in items {
                match item {
                    // No extension has a longer name, nor unprintable characters: such an item
                    // names nothing Rocky speaks, and is left out (as the items past
                    // MAX_CAPS are), so a valid status is never refused for it.
                    // The extensions Rocky speaks are kept wherever they stand in the list: a
                    // device's `manifest` must never fall off behind 16 names of its own.
                    Value::Text(text) if KNOWN_CAPS.contains(&text.as_str()) => {
                        if !caps.contains(text) {
                            caps.push(text.clone());
                        }
                    }
                    Value::Text(text)
                        if caps.len() < MAX_CAPS
                            && text.len() <= MAX_CAP_BYTES
                            && !text.chars().any(crate::text::is_unprintable) =>
                    {
                        caps.push(text.clone());
                    }
                    Value::Text(_) => {}
                    other => return Err(StatusError::BadCaps(format!("an item that is {}", kind(other)))),
                }
            }
            caps
        }
        Some(other) => return Err(StatusError::BadCaps(kind(other).to_owned())),
    };
    let kids = match field("kids") {
        None | Some(Value::Null) => Vec::new(),
        // Key ids past MAX_KIDS are left out (their type is still checked).
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Bytes(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                    .map_err(|_| StatusError::BadKids(format!("a key id of {} bytes", bytes.len()))),
                other => Err(StatusError::BadKids(format!("an item that is {}", kind(other)))),
            })
            .collect::<Result<Vec<[u8; 8]>, _>>()?
            .into_iter()
            .take(MAX_KIDS)
            .collect(),
        Some(other) => return Err(StatusError::BadKids(kind(other).to_owned())),
    };
    let mut status = DeviceStatus { image, version, boot, seq, caps, kids };
    let confirm_dropped = status.boot.is_none() && status.speaks(CAP_CONFIRM);
    if confirm_dropped {
        status.caps.retain(|cap| cap != CAP_CONFIRM);
    }
    Ok(StatusUpdate::Reported { status, confirm_dropped })
}

/// Encodes a status as `PROTOCOL.md` lays it out (`image`, `version`, `boot`, `seq`, `caps`,
/// `kids`, each only when there is one): what a simulated device publishes.
pub fn encode_status(status: &DeviceStatus) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.to_owned());
    let mut entries = vec![(text("image"), Value::Bytes(status.image.to_vec()))];
    if let Some(version) = &status.version {
        entries.push((text("version"), text(version)));
    }
    if let Some(boot) = status.boot {
        entries.push((text("boot"), Value::Integer(boot.into())));
    }
    if let Some(seq) = status.seq {
        entries.push((text("seq"), Value::Integer(seq.into())));
    }
    if !status.caps.is_empty() {
        entries.push((text("caps"), Value::Array(status.caps.iter().map(|c| text(c)).collect())));
    }
    if !status.kids.is_empty() {
        entries.push((
            text("kids"),
            Value::Array(status.kids.iter().map(|k| Value::Bytes(k.to_vec())).collect()),
        ));
    }
    let mut out = Vec::with_capacity(128);
    // Writing to a Vec cannot fail.
    let _ = ciborium::into_writer(&Value::Map(entries), &mut out);
    out
}

#[cfg(test)]
mod tests;
