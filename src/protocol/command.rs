//! Command type codes and which topic each belongs on.

use std::fmt;

/// Which way a frame travels: commands go to the device on `cmd`, responses come back on
/// `cmd_resp`. A code that belongs to the other direction is a decode error, not a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ToDevice,
    FromDevice,
}

/// The six command types of protocol v1 and FOTA_PROGRESS (flow control), with their wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CommandType {
    #[serde(rename = "FOTA_REQUEST")]
    Request = 0x01,
    #[serde(rename = "FOTA_REQUEST_ACK")]
    RequestAck = 0x02,
    #[serde(rename = "FOTA_REQUEST_NACK")]
    RequestNack = 0x03,
    #[serde(rename = "FOTA_DONE")]
    Done = 0x04,
    #[serde(rename = "FOTA_DONE_SUCCESS")]
    DoneSuccess = 0x05,
    #[serde(rename = "FOTA_DONE_FAILED")]
    DoneFailed = 0x06,
    /// The flow-control extension: the device confirms what it holds.
    #[serde(rename = "FOTA_PROGRESS")]
    Progress = 0x07,
}

impl CommandType {
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0x01 => Self::Request,
            0x02 => Self::RequestAck,
            0x03 => Self::RequestNack,
            0x04 => Self::Done,
            0x05 => Self::DoneSuccess,
            0x06 => Self::DoneFailed,
            0x07 => Self::Progress,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn direction(self) -> Direction {
        match self {
            Self::Request | Self::Done => Direction::ToDevice,
            _ => Direction::FromDevice,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Request => "FOTA_REQUEST",
            Self::RequestAck => "FOTA_REQUEST_ACK",
            Self::RequestNack => "FOTA_REQUEST_NACK",
            Self::Done => "FOTA_DONE",
            Self::DoneSuccess => "FOTA_DONE_SUCCESS",
            Self::DoneFailed => "FOTA_DONE_FAILED",
            Self::Progress => "FOTA_PROGRESS",
        }
    }
}

impl fmt::Display for CommandType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_none() {
        for code in 1..=7u64 {
            let ty = CommandType::from_code(code).expect("known code");
            assert_eq!(u64::from(ty.code()), code);
        }
        assert_eq!(CommandType::from_code(0), None);
        assert_eq!(CommandType::from_code(8), None);
        assert_eq!(CommandType::from_code(99), None);
    }

    #[test]
    fn directions_match_the_topic_table() {
        assert_eq!(CommandType::Request.direction(), Direction::ToDevice);
        assert_eq!(CommandType::Done.direction(), Direction::ToDevice);
        assert_eq!(CommandType::RequestAck.direction(), Direction::FromDevice);
        assert_eq!(CommandType::DoneFailed.direction(), Direction::FromDevice);
    }
}
