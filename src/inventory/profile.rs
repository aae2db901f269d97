//! Which protocol a device speaks: Rocky's own (the default) or that of AWS's OTA agent
//! (`aws-iot-ota`). An operator says so with the `profile` label (`PUT /devices/{id}` with
//! `"profile"`, an import, `rocky devices label ID profile=aws-iot-ota`), which the store keeps
//! with the other labels; a registered device with no label that asks for its job on an
//! `$aws/things/…` topic (and never reported a status in Rocky's protocol) is heard as one too
//! (remembered for at most [`HEARD_KEPT`] devices, not stored: it asks again).

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::Labels;
use crate::protocol::DeviceId;

/// The label that names a device's profile.
pub const PROFILE_LABEL: &str = "profile";
/// Devices heard on AWS topics remembered at most; the oldest are forgotten first.
pub const HEARD_KEPT: usize = 10_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// Rocky's own protocol (PROTOCOL.md).
    #[default]
    #[serde(rename = "rocky")]
    Rocky,
    /// AWS IoT Jobs and MQTT file streams, as AWS's OTA agent speaks them.
    #[serde(rename = "aws-iot-ota")]
    AwsIotOta,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rocky => "rocky",
            Self::AwsIotOta => "aws-iot-ota",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Rocky, Self::AwsIotOta].into_iter().find(|p| p.as_str() == text)
    }

    /// What `labels` say, if they name a profile (checked by [`check`]).
    pub fn of_labels(labels: &Labels) -> Option<Self> {
        labels.get(PROFILE_LABEL).and_then(|value| Self::parse(value))
    }
}

/// A `profile` label names a profile Rocky knows.
pub fn check(labels: &Labels) -> Result<(), String> {
    match labels.get(PROFILE_LABEL) {
        Some(value) if Profile::parse(value).is_none() => {
            Err(format!("label profile={value:?}: a profile is rocky or aws-iot-ota"))
        }
        _ => Ok(()),
    }
}

/// Devices heard on AWS topics, newest last, bounded.
#[derive(Debug, Default)]
pub struct Heard {
    order: VecDeque<DeviceId>,
    known: HashSet<DeviceId>,
}

impl Heard {
    pub fn insert(&mut self, id: &DeviceId) {
        if self.known.contains(id) {
            return;
        }
        if self.order.len() >= HEARD_KEPT
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        self.order.push_back(id.clone());
        self.known.insert(id.clone());
    }

    pub fn contains(&self, id: &str) -> bool {
        self.known.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_a_profile_and_heard_devices_are_bounded() {
        let labels: Labels = [(PROFILE_LABEL.to_owned(), "aws-iot-ota".to_owned())].into();
        assert_eq!(Profile::of_labels(&labels), Some(Profile::AwsIotOta));
        assert!(check(&labels).is_ok());
        let bad: Labels = [(PROFILE_LABEL.to_owned(), "zigbee".to_owned())].into();
        assert!(check(&bad).unwrap_err().contains("rocky or aws-iot-ota"));
        let mut heard = Heard::default();
        for n in 0..HEARD_KEPT + 1 {
            heard.insert(&DeviceId::parse(&format!("t-{n}")).unwrap());
        }
        assert!(
            !heard.contains("t-0") && heard.contains("t-1") && heard.contains(&format!("t-{HEARD_KEPT}"))
        );
    }
}
