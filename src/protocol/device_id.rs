//! Device ids: one MQTT topic level, checked wherever an id enters Rocky so that no topic is ever
//! built from an unchecked string.

use std::fmt;

/// The longest id accepted, in bytes of UTF-8.
pub const MAX_DEVICE_ID_BYTES: usize = 128;

/// A device id that is known to be a valid single topic level.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

/// Why a string is not a device id. The message names the offending character and where it is,
/// because the person who typed it needs to find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("device id is empty")]
    Empty,
    #[error("device id is {len} bytes long; the limit is {MAX_DEVICE_ID_BYTES}")]
    TooLong { len: usize },
    #[error("device id {id:?} contains {what} at position {position}; ids are one MQTT topic level")]
    BadCharacter { id: String, what: &'static str, position: usize },
    #[error("device id {id:?} starts with '$', which MQTT reserves for broker topics")]
    LeadingDollar { id: String },
}

impl DeviceId {
    pub fn parse(raw: &str) -> Result<Self, DeviceIdError> {
        if raw.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        if raw.len() > MAX_DEVICE_ID_BYTES {
            return Err(DeviceIdError::TooLong { len: raw.len() });
        }
        if raw.starts_with('$') {
            return Err(DeviceIdError::LeadingDollar { id: raw.to_owned() });
        }
        for (index, ch) in raw.chars().enumerate() {
            let what = match ch {
                '/' => "'/' (topic level separator)",
                '+' => "'+' (single-level wildcard)",
                '#' => "'#' (multi-level wildcard)",
                '\0' => "a NUL character",
                _ => continue,
            };
            return Err(DeviceIdError::BadCharacter { id: raw.to_owned(), what, position: index + 1 });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by device id are looked up by the id's text (ordered and hashed as that text).
impl std::borrow::Borrow<str> for DeviceId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = DeviceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids_and_unicode() {
        for ok in ["dev-07", "a", "sensor_12.3", "gerät-ü", &"x".repeat(128)] {
            assert_eq!(DeviceId::parse(ok).map(|d| d.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn names_the_bad_character_and_its_position() {
        let err = DeviceId::parse("dev/7").unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
        assert!(err.to_string().contains("position 4"), "{err}");
        assert!(DeviceId::parse("a+b").unwrap_err().to_string().contains("'+'"));
        assert!(DeviceId::parse("a#").unwrap_err().to_string().contains("'#'"));
        assert!(DeviceId::parse("a\0b").unwrap_err().to_string().contains("NUL"));
    }

    #[test]
    fn refuses_empty_long_and_dollar_ids() {
        assert_eq!(DeviceId::parse(""), Err(DeviceIdError::Empty));
        assert_eq!(DeviceId::parse(&"x".repeat(129)), Err(DeviceIdError::TooLong { len: 129 }));
        // 43 three-byte characters are 129 bytes: the limit counts bytes, not characters.
        assert!(matches!(DeviceId::parse(&"€".repeat(43)), Err(DeviceIdError::TooLong { .. })));
        assert!(matches!(DeviceId::parse("$SYS"), Err(DeviceIdError::LeadingDollar { .. })));
        assert!(DeviceId::parse("a$").is_ok());
    }
}
