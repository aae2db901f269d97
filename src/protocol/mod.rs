//! The wire contract with devices (see `docs/protocol.md`): topics, device ids, CBOR frames and
//! their human-readable rendering. Pure functions only: nothing here touches a socket or a clock,
//! so every rule of the protocol is tested byte for byte without a broker.

pub mod aws;
mod cbor;
mod command;
mod describe;
mod device_id;
mod diagnostic;
mod frame;
mod manifest;
mod reason;
mod status;
mod topic;

pub use command::{CommandType, Direction};
pub use describe::{describe, describe_with, hex_preview, short_hash};
pub use device_id::{DeviceId, DeviceIdError};
pub use diagnostic::{diagnostic, hex_dump, hex_row_width};
pub use frame::{
    Command, CommandBody, DELTA_FORMAT, DecodeError, DeltaItem, HashEncoding, Response, ResponseBody,
    decode_command, decode_response, encode_command, encode_response,
};
pub use manifest::{
    FRESH_CHECKS_PER_S, MAX_MANIFEST_BYTES, Manifest, ManifestCheck, ManifestError, ManifestInfo,
    ManifestPayload,
};
pub use reason::{MAX_REASON_BYTES, Reason};
pub use status::{
    CAP_CONFIRM, CAP_DELTA_BSDIFF4, CAP_FLOW, CAP_MANIFEST, CAP_REASONS, CAP_RESUME, DeviceStatus,
    MAX_STATUS_BYTES, MAX_VERSION_BYTES, StatusError, StatusUpdate, decode_status, encode_status,
};
pub use topic::{TopicError, TopicKind, Topics};

/// SHA-256 digest of a firmware image, as carried in FOTA_REQUEST.
pub type Sha256 = [u8; 32];

/// Lower-case hex of a digest, the form used in logs, the API and file names.
pub fn sha256_hex(hash: &Sha256) -> String {
    hex::encode(hash)
}
