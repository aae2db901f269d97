//! A device's status as both backends store it: one JSON column, so the status extension's
//! fields can grow without a migration per field.

use crate::inventory::{Device, Running};
use crate::protocol::DeviceId;

/// A device's status as stored: JSON, or NULL when it reports none.
pub fn running_json(device: &Device) -> Option<String> {
    device.running.as_ref().and_then(|running| serde_json::to_string(running).ok())
}

/// A stored status read back; an unreadable one is no status (with a warning).
pub fn running_from(device: &DeviceId, json: Option<&str>) -> Option<Running> {
    serde_json::from_str(json?)
        .map_err(
            |e| tracing::warn!(%device, reason = %e, "a stored device status was unreadable; it has none"),
        )
        .ok()
}
