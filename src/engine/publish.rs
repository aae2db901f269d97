//! What the engine asks the runtime to send.

use bytes::Bytes;

use super::JobId;
use crate::protocol::{CommandType, DeviceId};

/// One MQTT publish (always QoS 1, never retained). Chunk payloads are slices of the image.
#[derive(Debug, Clone)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub job: JobId,
    pub device: DeviceId,
    pub kind: PublishKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishKind {
    Command(CommandType),
    Chunk {
        id: u32,
        total: u32,
    },
    /// An AWS job's execution on `notify-next`.
    AwsExecution,
    /// A block of an AWS job's stream (`index` from 0, of `total`).
    AwsBlock {
        index: u32,
        total: u32,
    },
}
