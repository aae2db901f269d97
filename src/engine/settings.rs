//! The scheduler's knobs, with the defaults the documentation promises.

use std::time::Duration;

use crate::firmware::ChunkSize;
use crate::protocol::HashEncoding;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs transferring (from the device's ACK to its verdict) at once; accepted jobs beyond it
    /// wait for a slot.
    pub max_active: usize,
    /// Jobs waiting for an answer to FOTA_REQUEST at once; the rest wait as `queued`. Kept
    /// apart from `max_active` so silent devices never hold a transfer slot.
    pub max_requests: usize,
    /// How long to wait for ACK/NACK before FOTA_REQUEST is sent again.
    pub request_timeout: Duration,
    /// FOTA_REQUEST sends before a silent device's job times out (at least 1).
    pub request_attempts: u32,
    /// How long to wait for the device's verdict after FOTA_DONE.
    pub done_timeout: Duration,
    pub chunk_size: ChunkSize,
    /// Pause between two chunks of one job; zero sends as fast as the broker takes them.
    pub chunk_interval: Duration,
    /// The default byte-rate cap of a job that sets no pacing of its own (0: none). It becomes
    /// a pause between chunks: chunk size / rate.
    pub max_rate: u64,
    pub hash_encoding: HashEncoding,
    /// Flow control: how long the device may go without confirming a chunk while chunks are
    /// outstanding before Rocky sends again from what it confirmed (go back N).
    pub progress_timeout: Duration,
    /// Flow control: progress deadlines passed in a row after which the job ends `timed_out`.
    pub progress_stalls: u32,
    /// A job that has been sent more than this many times its image's bytes (rewinds,
    /// go-back-N, resends after reconnects) ends `failed`: a device must not be able to hold a
    /// transfer slot and the broker's bandwidth forever by asking for the same chunks again.
    pub max_send_factor: u32,
    /// Flow control: rewinds after which the job ends `failed`.
    pub max_rewinds: u32,
    /// How long a device that confirms updates has, after its FOTA_DONE_SUCCESS, to come back
    /// with a status naming the new image before the job ends `timed_out`.
    pub confirm_timeout: Duration,
    /// How long a job for a device that runs AWS's OTA agent waits, once its offers
    /// (`request_attempts`) went unanswered, for the device to ask for its job: such a device
    /// asks (`$next/get`) whenever it connects, so an offline device is not a silent one. It
    /// holds no request slot meanwhile. Zero: it times out like any other.
    pub aws_device_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_active: 64,
            max_requests: 1024,
            request_timeout: Duration::from_secs(30),
            request_attempts: 3,
            done_timeout: Duration::from_secs(60),
            chunk_size: ChunkSize::default(),
            chunk_interval: Duration::ZERO,
            max_rate: 0,
            hash_encoding: HashEncoding::Array,
            progress_timeout: Duration::from_secs(10),
            progress_stalls: 5,
            max_send_factor: 3,
            max_rewinds: 16,
            confirm_timeout: Duration::from_secs(600),
            aws_device_wait: Duration::from_secs(86_400),
        }
    }
}
