//! One simulated device: its own MQTT connection, its own reassembly buffer, its own verdicts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use sha2::Digest;
use tokio::sync::watch;

use super::Behavior;
use crate::mqtt::BrokerConnection;
use crate::protocol::{
    Command, CommandBody, DeviceId, Reason, Response, ResponseBody, Sha256, TopicKind, Topics,
    decode_command, encode_response,
};

/// How a device's last update ended, from its own point of view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The reassembled image matched the requested SHA-256.
    Verified,
    /// The image did not verify (or the device was told to fail).
    Failed,
    /// The device refused the request.
    Refused,
}

/// What one device saw and said; shared with the fleet for summaries and test assertions.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeviceReport {
    pub behavior: Option<Behavior>,
    pub connected: bool,
    pub requests: u32,
    pub chunks: u64,
    pub duplicate_chunks: u64,
    pub bytes: u64,
    /// Undecodable or unexpected frames received on the command topic.
    pub bad_frames: u32,
    pub verdicts: Vec<(u32, Verdict)>,
}

impl DeviceReport {
    pub fn last_verdict(&self) -> Option<&Verdict> {
        self.verdicts.last().map(|(_, v)| v)
    }
}

/// The image being received for one job.
struct Transfer {
    job: u32,
    hash: Sha256,
    chunks: BTreeMap<u32, Bytes>,
}

impl Transfer {
    /// The first chunk id not yet held (the resume point).
    fn next_missing(&self) -> u32 {
        let mut next = 1;
        while self.chunks.contains_key(&next) {
            next += 1;
        }
        next
    }

    fn verify(&self, corrupt: bool) -> bool {
        let mut hasher = sha2::Sha256::new();
        for (expected, (id, chunk)) in (1u32..).zip(&self.chunks) {
            if *id != expected {
                return false; // a gap: the image is incomplete
            }
            if corrupt && *id == 1 {
                let mut damaged = chunk.to_vec();
                if let Some(first) = damaged.first_mut() {
                    *first ^= 0xff;
                }
                hasher.update(&damaged);
            } else {
                hasher.update(chunk);
            }
        }
        !self.chunks.is_empty() && <[u8; 32]>::from(hasher.finalize()) == self.hash
    }
}

pub struct SimDevice {
    pub id: DeviceId,
    pub behavior: Behavior,
    pub slow_delay: Duration,
    pub topics: Topics,
    pub connection: BrokerConnection,
    pub report: Arc<Mutex<DeviceReport>>,
}

impl SimDevice {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // The client id is the device id, as real fleets usually do (AWS IoT's thing name), so a
        // broker ACL can give each device only its own topics (mosquitto `pattern … %c`).
        let client_id = self.id.to_string();
        // Devices speak MQTT 3.1.1, as most deployed devices do.
        let (options, network) = self.connection.v311_options(&client_id);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        eventloop.set_network_options(network);
        let mut transfer: Option<Transfer> = None;
        loop {
            let event = tokio::select! {
                _ = stop.changed() => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for filter in self.topics.device_filters(&self.id) {
                        let _ = client.subscribe(filter, QoS::AtLeastOnce).await;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => self.update(|r| r.connected = true),
                Ok(Event::Incoming(Packet::Publish(publish))) => match self.topics.parse(&publish.topic) {
                    Some(TopicKind::Cmd(_)) => self.on_command(&client, &publish.payload, &mut transfer),
                    Some(TopicKind::Data(_, chunk)) => self.on_chunk(chunk, publish.payload, &mut transfer),
                    _ => {}
                },
                Ok(_) => {}
                Err(_) => {
                    self.update(|r| r.connected = false);
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
        let _ = client.try_disconnect();
    }

    fn update(&self, f: impl FnOnce(&mut DeviceReport)) {
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut report);
    }

    fn on_chunk(&self, chunk: u32, payload: Bytes, transfer: &mut Option<Transfer>) {
        let Some(t) = transfer.as_mut() else { return };
        let len = payload.len() as u64;
        let duplicate = t.chunks.insert(chunk, payload).is_some();
        self.update(|r| {
            r.chunks += 1;
            r.bytes += len;
            r.duplicate_chunks += u64::from(duplicate);
        });
    }

    fn on_command(&self, client: &AsyncClient, payload: &[u8], transfer: &mut Option<Transfer>) {
        let Ok(Command { job_id, body }) = decode_command(payload) else {
            self.update(|r| r.bad_frames += 1);
            return;
        };
        let reply = match body {
            CommandBody::Request { hash } => {
                self.update(|r| r.requests += 1);
                match self.behavior {
                    Behavior::Silent => None,
                    Behavior::Nack => {
                        self.update(|r| r.verdicts.push((job_id, Verdict::Refused)));
                        // The reasons extension, as a text of the device's own.
                        Some(ResponseBody::RequestNack { reason: Some(Reason::text("battery below 20%")) })
                    }
                    _ => {
                        // The same job and image again (Rocky re-sent the request, e.g. after a
                        // broker restart): keep what arrived and tell Rocky where to resume.
                        let same = transfer.as_ref().is_some_and(|t| t.job == job_id && t.hash == hash);
                        if !same {
                            *transfer = Some(Transfer { job: job_id, hash, chunks: BTreeMap::new() });
                        }
                        let next = transfer.as_ref().map_or(1, Transfer::next_missing);
                        Some(ResponseBody::RequestAck {
                            next_chunk: (next > 1).then_some(next),
                            window: None,
                        })
                    }
                }
            }
            CommandBody::Done => match transfer.as_ref().filter(|t| t.job == job_id) {
                _ if self.behavior == Behavior::Silent => None,
                Some(t) => {
                    let ok = self.behavior != Behavior::Fail && t.verify(self.behavior == Behavior::Corrupt);
                    let verdict = if ok { Verdict::Verified } else { Verdict::Failed };
                    self.update(|r| {
                        // A repeated FOTA_DONE (after a reconnect) repeats the verdict once.
                        if r.verdicts.last().map(|(j, _)| *j) != Some(job_id) {
                            r.verdicts.push((job_id, verdict.clone()));
                        }
                    });
                    // The reasons extension, as codes from the table: a device told to fail
                    // says its flash write failed; one whose image did not verify says so.
                    Some(match (ok, self.behavior) {
                        (true, _) => ResponseBody::DoneSuccess,
                        (false, Behavior::Fail) => {
                            ResponseBody::DoneFailed { reason: Some(Reason::Code(10)) }
                        }
                        (false, _) => ResponseBody::DoneFailed { reason: Some(Reason::Code(4)) },
                    })
                }
                None => None, // not the job this device is receiving: a real device ignores it
            },
        };
        let Some(body) = reply else { return };
        let response = encode_response(&Response { job_id, body });
        let topic = self.topics.cmd_resp(&self.id);
        let client = client.clone();
        let garbage = self.behavior == Behavior::Garbage;
        let delay = if self.behavior == Behavior::Slow { self.slow_delay } else { Duration::ZERO };
        // Replies go through the client's channel from a task of their own, so a slow device's
        // delay never stops its event loop from receiving.
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if garbage {
                let _ = client.publish(topic.clone(), QoS::AtLeastOnce, false, vec![0xff, 0x00, 0x13]).await;
            }
            let _ = client.publish(topic, QoS::AtLeastOnce, false, response).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(image: &[u8], chunk: usize) -> Transfer {
        let hash: Sha256 = sha2::Sha256::digest(image).into();
        let chunks =
            image.chunks(chunk).enumerate().map(|(i, c)| (i as u32 + 1, Bytes::copy_from_slice(c))).collect();
        Transfer { job: 1, hash, chunks }
    }

    #[test]
    fn verifies_complete_images_only() {
        let image: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut t = transfer(&image, 64);
        assert!(t.verify(false));
        assert!(!t.verify(true), "corruption is detected");
        assert_eq!(t.next_missing(), 17);
        t.chunks.remove(&5);
        assert!(!t.verify(false), "a gap fails");
        assert_eq!(t.next_missing(), 5);
    }
}
