//! What clients send: the request bodies of the HTTP API, typed once. The server reads them
//! (`http/`, refusing unknown fields) and the console and the CLI write them.

use serde::{Deserialize, Serialize};

use crate::firmware::FirmwareSource;
use crate::inventory::Labels;
use crate::units::Rate;

/// `POST /jobs`: one job per device, all with one image and pacing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJobs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub firmware: Firmware,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_interval_ms: Option<u64>,
    /// A byte-rate cap: bytes a second or a text like "80KiB/s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<Rate>,
    /// Send even to devices whose status says they run the image already (else their jobs end
    /// `up_to_date` with nothing sent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// `false`: send the whole image even to devices that take patches (the delta extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<bool>,
    /// For devices that run AWS's OTA agent: `certfile` or `filepath` in place of `[aws_ota]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_ota: Option<crate::runtime::AwsOtaOverride>,
}

/// Where a request's image comes from: exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Firmware {
    /// An image the server holds (or will, once uploaded), named by its SHA-256 in hex.
    pub fn sha256(hex: impl Into<String>) -> Self {
        Self { sha256: Some(hex.into()), ..Self::default() }
    }

    /// The source it names; an error in words unless exactly one is given.
    pub fn source(self) -> Result<FirmwareSource, String> {
        match (self.url, self.path, self.sha256) {
            (Some(url), None, None) => Ok(FirmwareSource::Url(url)),
            (None, Some(path), None) => Ok(FirmwareSource::Path(path.into())),
            (None, None, Some(sha)) => Ok(FirmwareSource::Sha256(sha)),
            _ => Err("firmware needs exactly one of \"url\", \"path\" or \"sha256\"".into()),
        }
    }
}

/// `POST /update`: the original Rocky's request, `{"device_id": "...", "url": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOriginal {
    pub device_id: String,
    pub url: String,
}

/// `PUT /devices/{id}`: register a device with these labels (replacing its labels if known).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutDevice {
    #[serde(default)]
    pub labels: Labels,
    /// `rocky` or `aws-iot-ota`: kept as the `profile` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}
