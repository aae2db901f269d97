//! The second device profile's wire contract: what a device running AWS's open-source OTA agent
//! exchanges over MQTT (AWS IoT Jobs and MQTT file streams), as observed from such a device and
//! written down in `../shared/aws-iot-ota/`. Pure functions only, like the rest of `protocol/`:
//! topics, the Jobs JSON both ways, the stream's CBOR both ways, and the agent's error codes in
//! words.
//!
//! Everything a device sends is bounded before it is decoded (sizes below), and every decoder
//! has a fuzz target.

mod codes;
mod describe;
mod jobs;
mod stream;
mod topics;

pub use codes::{app_version, failure_words, is_self_test_rejection};
pub use describe::describe;
pub use jobs::{
    ExecutionStatus, ExecutionUpdate, JobDocument, JobsError, MAX_JOB_MESSAGE, MAX_JOBS_JSON,
    MAX_STATUS_DETAILS, NextGet, Progress, decode_next_get, decode_update, encode_execution, encode_no_job,
};
pub use stream::{
    Block, BlockRequest, MAX_BITMAP_BYTES, MAX_BLOCK_MESSAGE, MAX_BLOCK_SIZE, MAX_BLOCKS_PER_REQUEST,
    MAX_REQUEST_BYTES, MIN_BLOCK_SIZE, ReceivedBlock, StreamError, decode_block, decode_block_request,
    encode_block, encode_block_request,
};
pub use topics::{AwsTopic, SUBSCRIPTIONS, data_topic, notify_next_topic};
