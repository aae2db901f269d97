//! What the API and the console show of an image Rocky holds: its name, size, hash and manifest.

use serde::{Deserialize, Serialize};

/// An image Rocky holds, and its manifest when one from a trusted key is attached: `POST
/// /firmware`'s answer, `GET /firmware/{sha256}` and each row of `GET /firmware`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareImage {
    pub name: String,
    /// The file name in the firmware directory, for an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub manifest: Option<crate::protocol::Manifest>,
    /// The `sig-sha256-ecdsa` attached for devices that run AWS's OTA agent (`rocky sign
    /// --format aws`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_signature: Option<String>,
}

/// `GET /firmware`: the images Rocky can name by hash (at most [`FirmwareList::MAX`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareList {
    pub images: Vec<FirmwareImage>,
}

impl FirmwareList {
    pub const MAX: usize = 1000;
}
