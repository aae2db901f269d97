//! One simulated device: its own MQTT connection, its own reassembly buffer, its own verdicts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use sha2::Digest;
use tokio::sync::watch;

use super::{Behavior, DeviceModel};
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

/// The image being received. Kept by the image's hash, never by the job id alone: another
/// store's job with the same number is another job.
struct Transfer {
    job: u32,
    hash: Sha256,
    chunks: BTreeMap<u32, Bytes>,
    /// The length of the chunks held from before a resume: the first chunk that then arrives
    /// must have it too, or the chunk size changed and what is held is worthless.
    resumed_len: Option<usize>,
    /// Without flow control a size change can only be told with the verdict.
    size_changed: bool,
    /// Flow control: chunks stored since the last FOTA_PROGRESS, and the last one sent.
    unconfirmed: u32,
    confirmed: u32,
    /// How often each chunk arrived (for the lossy model: a resend always arrives).
    deliveries: BTreeMap<u32, u32>,
    /// The device answered FOTA_DONE for it: the image was installed (or refused), and a new
    /// request for the same image starts over instead of resuming.
    answered: bool,
}

impl Transfer {
    fn new(job: u32, hash: Sha256) -> Self {
        Self {
            job,
            hash,
            chunks: BTreeMap::new(),
            resumed_len: None,
            size_changed: false,
            unconfirmed: 0,
            confirmed: 1,
            deliveries: BTreeMap::new(),
            answered: false,
        }
    }

    /// The first chunk id not yet held (the resume point).
    fn next_missing(&self) -> u32 {
        let mut next = 1;
        while self.chunks.contains_key(&next) {
            next += 1;
        }
        next
    }

    /// Whether `chunk` is the image's last chunk at the chunk size held: the chunks held and it
    /// hash to the image.
    fn completes_with(&self, chunk: u32, payload: &Bytes) -> bool {
        let mut hasher = sha2::Sha256::new();
        for (expected, (id, held)) in (1u32..).zip(&self.chunks) {
            if *id != expected {
                return false;
            }
            hasher.update(held);
        }
        chunk as usize == self.chunks.len() + 1 && {
            hasher.update(payload);
            <[u8; 32]>::from(hasher.finalize()) == self.hash
        }
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
    pub model: DeviceModel,
    pub topics: Topics,
    pub connection: BrokerConnection,
    pub report: Arc<Mutex<DeviceReport>>,
}

/// A flow-controlled device confirms what it holds once nothing more has arrived for this long
/// (so the last chunks of an image are confirmed at once).
const IDLE_CONFIRM: Duration = Duration::from_millis(100);

impl SimDevice {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // The client id is the device id, as real fleets usually do (AWS IoT's thing name), so a
        // broker ACL can give each device only its own topics (mosquitto `pattern … %c`).
        let client_id = self.id.to_string();
        // Devices speak MQTT 3.1.1, as most deployed devices do.
        let (options, network) = self.connection.v311_options(&client_id);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        eventloop.set_network_options(network);
        let outbox = start_outbox(client.clone(), self.topics.cmd_resp(&self.id));
        let mut transfer: Option<Transfer> = None;
        let mut idle_confirm: Option<tokio::time::Instant> = None;
        loop {
            let event = tokio::select! {
                _ = stop.changed() => break,
                () = crate::runtime::sleep_until(idle_confirm), if idle_confirm.is_some() => {
                    idle_confirm = None;
                    if let Some(t) = transfer.as_mut() {
                        self.confirm(&outbox, t);
                    }
                    continue;
                }
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
                    Some(TopicKind::Cmd(_)) => self.on_command(&outbox, &publish.payload, &mut transfer),
                    Some(TopicKind::Data(_, chunk)) => {
                        let len = publish.payload.len();
                        if self.on_chunk(&outbox, chunk, publish.payload, &mut transfer) {
                            idle_confirm = Some(tokio::time::Instant::now() + IDLE_CONFIRM);
                        }
                        // Storing takes its time, and the connection is not read meanwhile.
                        let store = self.model.store_time(len);
                        if !store.is_zero() {
                            tokio::time::sleep(store).await;
                        }
                    }
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

    fn flow_controlled(&self) -> bool {
        self.model.window.is_some() && !self.model.legacy
    }

    /// Stores a chunk; true when a flow-controlled device now holds chunks it has not
    /// confirmed (the idle confirmation is due).
    fn on_chunk(&self, client: &Outbox, chunk: u32, payload: Bytes, transfer: &mut Option<Transfer>) -> bool {
        let Some(t) = transfer.as_mut() else { return false };
        let delivery = t.deliveries.entry(chunk).or_insert(0);
        let earlier = *delivery;
        *delivery += 1;
        if self.model.loses(t.job, chunk, earlier) {
            return false; // lost on the way
        }
        if let Some(held) = t.resumed_len.take()
            && payload.len() != held
            && !(payload.len() < held && t.completes_with(chunk, &payload))
        {
            // The chunk size changed since the chunks held arrived: they are worthless.
            t.chunks.clear();
            t.deliveries.clear();
            if self.flow_controlled() {
                t.confirmed = 1;
                t.unconfirmed = 0;
                self.reply(client, t.job, ResponseBody::Progress { next_chunk: 1, window: None }, false);
                return false;
            }
            t.size_changed = true;
        }
        let len = payload.len() as u64;
        let duplicate = t.chunks.insert(chunk, payload).is_some();
        self.update(|r| {
            r.chunks += 1;
            r.bytes += len;
            r.duplicate_chunks += u64::from(duplicate);
        });
        if !self.flow_controlled() {
            return false;
        }
        t.unconfirmed += 1;
        // A chunk it already holds means a FOTA_PROGRESS was lost: repeat it at once.
        if duplicate || t.unconfirmed >= self.model.confirm_every() {
            self.confirm(client, t);
        }
        t.next_missing() > t.confirmed || t.unconfirmed > 0
    }

    /// Sends FOTA_PROGRESS with what the device holds without a gap.
    fn confirm(&self, client: &Outbox, t: &mut Transfer) {
        let next = t.next_missing();
        if self.model.stop_confirming_at.is_some_and(|at| next > at + 1) {
            return; // it went quiet
        }
        t.unconfirmed = 0;
        t.confirmed = next;
        self.reply(client, t.job, ResponseBody::Progress { next_chunk: next, window: None }, false);
    }

    fn on_command(&self, client: &Outbox, payload: &[u8], transfer: &mut Option<Transfer>) {
        let Ok(Command { job_id, body }) = decode_command(payload) else {
            self.update(|r| r.bad_frames += 1);
            return;
        };
        let legacy = self.model.legacy;
        let reply = match body {
            CommandBody::Request { hash } => {
                self.update(|r| r.requests += 1);
                match self.behavior {
                    Behavior::Silent => None,
                    Behavior::Nack => {
                        self.update(|r| r.verdicts.push((job_id, Verdict::Refused)));
                        // The reasons extension, as a text of the device's own.
                        let reason = (!legacy).then(|| Reason::text("battery below 20%"));
                        Some(ResponseBody::RequestNack { reason })
                    }
                    _ => {
                        // The same image again (Rocky re-sent the request after a broker
                        // restart, or another job of the same image): keep what arrived and say
                        // where to resume. Kept by hash, whatever the job id.
                        match transfer.as_mut() {
                            Some(t) if !legacy && t.hash == hash && !t.answered => {
                                t.job = job_id;
                                t.resumed_len = t.chunks.get(&1).map(Bytes::len);
                                t.unconfirmed = 0;
                                t.confirmed = t.next_missing();
                            }
                            _ => *transfer = Some(Transfer::new(job_id, hash)),
                        }
                        let next = transfer.as_ref().map_or(1, Transfer::next_missing);
                        Some(match (legacy, self.model.window) {
                            (true, _) => ResponseBody::RequestAck { next_chunk: None, window: None },
                            (false, Some(window)) => {
                                ResponseBody::RequestAck { next_chunk: Some(next), window: Some(window) }
                            }
                            (false, None) => ResponseBody::RequestAck {
                                next_chunk: (next > 1).then_some(next),
                                window: None,
                            },
                        })
                    }
                }
            }
            CommandBody::Done => match transfer.as_mut().filter(|t| t.job == job_id) {
                _ if self.behavior == Behavior::Silent => None,
                Some(t) => {
                    t.answered = true;
                    let ok = self.behavior != Behavior::Fail
                        && !t.size_changed
                        && t.verify(self.behavior == Behavior::Corrupt);
                    let verdict = if ok { Verdict::Verified } else { Verdict::Failed };
                    self.update(|r| {
                        // A repeated FOTA_DONE (after a reconnect) repeats the verdict once.
                        if r.verdicts.last().map(|(j, _)| *j) != Some(job_id) {
                            r.verdicts.push((job_id, verdict.clone()));
                        }
                    });
                    // The reasons extension: a device told to fail says its flash write failed
                    // (code 10), one whose chunk size changed says so, and one whose image did
                    // not verify says that (code 4). A version 1 device gives no reason.
                    let reason = match (self.behavior, t.size_changed) {
                        _ if legacy => None,
                        (Behavior::Fail, _) => Some(Reason::Code(10)),
                        (_, true) => Some(Reason::text("chunk size changed")),
                        _ => Some(Reason::Code(4)),
                    };
                    Some(if ok { ResponseBody::DoneSuccess } else { ResponseBody::DoneFailed { reason } })
                }
                None => None, // not the job this device is receiving: a real device ignores it
            },
        };
        if let Some(body) = reply {
            self.reply(client, job_id, body, true);
        }
    }

    /// Publishes a response from a task of its own, so a slow device's delay never stops its
    /// event loop from receiving. `answer`: a reply to a command (slow and garbage devices act
    /// on those), not a FOTA_PROGRESS.
    fn reply(&self, outbox: &Outbox, job_id: u32, body: ResponseBody, answer: bool) {
        let response = encode_response(&Response { job_id, body });
        let garbage = answer && self.behavior == Behavior::Garbage;
        let delay = if answer && self.behavior == Behavior::Slow { self.slow_delay } else { Duration::ZERO };
        let _ = outbox.send(Reply { delay, garbage, response });
    }
}

/// One answer to publish, after `delay`, with a garbage frame before it for a garbage device.
struct Reply {
    delay: Duration,
    garbage: bool,
    response: Vec<u8>,
}

/// The device's answers, published one after another in the order it gave them, as a real
/// device's are: a FOTA_PROGRESS must never overtake an earlier one (Rocky would read the
/// older, lower one as a rewind). A slow device's delay holds back what follows it too.
type Outbox = tokio::sync::mpsc::UnboundedSender<Reply>;

fn start_outbox(client: AsyncClient, topic: String) -> Outbox {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Reply>();
    tokio::spawn(async move {
        while let Some(Reply { delay, garbage, response }) = rx.recv().await {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if garbage {
                let _ = client.publish(topic.clone(), QoS::AtLeastOnce, false, vec![0xff, 0x00, 0x13]).await;
            }
            let _ = client.publish(topic.clone(), QoS::AtLeastOnce, false, response).await;
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(image: &[u8], chunk: usize) -> Transfer {
        let hash: Sha256 = sha2::Sha256::digest(image).into();
        let chunks =
            image.chunks(chunk).enumerate().map(|(i, c)| (i as u32 + 1, Bytes::copy_from_slice(c))).collect();
        Transfer { chunks, ..Transfer::new(1, hash) }
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
