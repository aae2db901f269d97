//! The driver's side of the AWS OTA profile: what an AWS device publishes (`$next/get`, job
//! updates, requests for blocks) decoded within bounds and handed to the engine, and the "no
//! job" answer for a device without one here. Anything that does not decode or fit is counted
//! (`rocky_responses_undecodable_total`, `rocky_responses_ignored_total`) and said at most once
//! a minute per device; nothing it sends can make Rocky hold more than a device's current job.

use std::time::Instant;

use super::driver::Driver;
use crate::protocol::aws::{self, AwsTopic};

/// How often a device without a job here hears "no job" at most: a flood of `$next/get`
/// costs one small answer per device per interval.
pub const NO_JOB_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// "No job" answers waiting to go out at most.
const NO_JOB_QUEUED: usize = 1024;

impl Driver {
    /// A message on an `$aws/things/…` topic.
    pub(super) fn aws_seen(&mut self, topic: String, payload: bytes::Bytes, qos: u8, now: Instant) {
        let Some(parsed) = AwsTopic::parse(&topic) else {
            tracing::debug!(%topic, "a message on an AWS topic Rocky does not answer ignored");
            return;
        };
        let device = parsed.thing().clone();
        let outcome: Result<Result<(), String>, String> = match parsed {
            AwsTopic::NextGet { .. } => match aws::decode_next_get(&payload) {
                Ok(_) => {
                    self.inventory.heard_aws(&device);
                    // Asks while an offer of the job waits to go out share it (the engine
                    // queues one per job), so a flood of them cannot outpace the broker.
                    if self.engine.aws_next_get(&device, now) {
                        Ok(Ok(()))
                    } else {
                        self.answer_no_job(&device, now);
                        // No job here: nothing about the device is kept (a made-up id costs
                        // nothing but a rate-limited answer).
                        Ok(Err("no job for the device".to_owned()))
                    }
                }
                Err(e) => Err(e.to_string()),
            },
            AwsTopic::Update { job, .. } => match aws::decode_update(&payload) {
                Ok(update) => Ok(self.engine.aws_update(&device, &job, update, now)),
                Err(e) => Err(e.to_string()),
            },
            AwsTopic::GetBlocks { stream, .. } => match aws::decode_block_request(&payload) {
                Ok(request) => Ok(self.engine.aws_blocks(&device, &stream, &request, now)),
                Err(e) => Err(e.to_string()),
            },
        };
        self.show_incoming(&topic, &payload, qos, Some(device.clone()), None, outcome.is_err());
        match outcome {
            Ok(Ok(())) => self.inventory.seen(&device, self.clock.unix_ms(now)),
            Ok(Err(reason)) => {
                self.metrics.ignored();
                if let Some(left_out) = self.bad_frames.allow(device.as_str(), now) {
                    tracing::debug!(%device, %topic, %reason, left_out, "an AWS device's message changed nothing");
                }
            }
            Err(error) => {
                self.metrics.undecodable();
                if let Some(left_out) = self.bad_frames.allow(device.as_str(), now) {
                    tracing::warn!(%device, %topic, %error, left_out, "an AWS device's message did not decode");
                }
            }
        }
    }

    /// `{"timestamp"}` on the device's `notify-next`: it has no job here (at most once per
    /// [`NO_JOB_EVERY`] per device; queued, bounded, and sent with the driver's next pass).
    fn answer_no_job(&mut self, device: &crate::protocol::DeviceId, now: Instant) {
        if self.no_job_answers.allow(device.as_str(), now).is_some() {
            self.queue_no_job(device, now);
        }
    }

    /// An AWS job of `device` ended (the device said so, or it was cancelled or timed out):
    /// when no other job of its is under way, it hears "no job", as AWS's service tells a
    /// device whose job is over or was cancelled (the agent then drops a transfer under way).
    /// Once per job's end: not held to the rate of answers to asks.
    pub(super) fn aws_job_ended(&mut self, device: &crate::protocol::DeviceId, now: Instant) {
        if !self.engine.aws_has_job(device) {
            self.queue_no_job(device, now);
        }
    }

    /// Queues a "no job" answer for `device` (bounded).
    fn queue_no_job(&mut self, device: &crate::protocol::DeviceId, now: Instant) {
        if self.no_job_due.len() >= NO_JOB_QUEUED {
            return;
        }
        let topic = aws::notify_next_topic(device);
        let payload = bytes::Bytes::from(aws::encode_no_job(self.clock.unix_ms(now) / 1000));
        self.no_job_due.push_back((topic, payload));
    }

    /// Sends the "no job" answers waiting, within the window of unacknowledged publishes.
    pub(super) async fn send_no_job_answers(&mut self) {
        while self.outstanding < self.window {
            let Some((topic, payload)) = self.no_job_due.pop_front() else { return };
            let tag =
                super::publish_tracker::Tag { job: None, chunk: false, topic: topic.clone(), answer: true };
            match self.publisher.publish(topic, payload).await {
                Ok(()) => {
                    self.outstanding += 1;
                    self.tracker.queued(tag);
                }
                Err(e) => tracing::error!(error = %e, "a \"no job\" answer could not be queued"),
            }
        }
    }
}
