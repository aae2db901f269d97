//! A device written from `../shared/PROTOCOL.md` alone, not from Rocky's simulator: it speaks
//! MQTT 3.1.1 through rumqttc, reads commands with a general CBOR decoder and answers with
//! frames it builds itself. Tests about the wire use it, so they check Rocky against the
//! contract rather than against Rocky's own idea of it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cbor_items::{frame, hash_of, unsigned};
use ciborium::Value;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sha2::{Digest, Sha256};

/// How the device behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepts with a plain `[job, 2]`, stores every chunk, checks the hash at FOTA_DONE.
    Honest,
    /// Accepts with flow control (window 8), confirms the first 8 chunks, then rewinds to chunk
    /// 1 when anything beyond them arrives, over and over (issue 20, A3).
    Rewinder,
    /// Honest, and speaks status and confirm: a retained status at every connection (boot 1,
    /// a factory image, caps `confirm`); after its DONE_SUCCESS it "reboots" into the image and
    /// publishes a status with the next boot counter.
    Confirms,
    /// Like `Confirms`, but comes back from the reboot on the image it ran before.
    RollsBack,
}

/// The image a `Confirms` or `RollsBack` device runs before its first update.
pub const FACTORY: [u8; 32] = [0xee; 32];

/// A status map as PROTOCOL.md lays it out: `image`, `version`, `boot`, `caps`.
fn status(image: &[u8], boot: u64) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.to_owned());
    let version = if image == FACTORY { "factory" } else { "new" };
    let map = Value::Map(vec![
        (text("image"), Value::Bytes(image.to_vec())),
        (text("version"), text(version)),
        (text("boot"), Value::Integer(boot.into())),
        (text("caps"), Value::Array(vec![text("reasons"), text("confirm")])),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&map, &mut out).expect("CBOR encodes into a Vec");
    out
}

/// What the device saw and said, for the test to read.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// FOTA_REQUESTs received, by job id.
    pub requests: Vec<u64>,
    /// Chunks received (with repeats).
    pub chunks: u64,
    /// Verdicts given: `(job, hash matched)`.
    pub verdicts: Vec<(u64, bool)>,
    /// Statuses published: `(image, boot)`.
    pub statuses: Vec<(Vec<u8>, u64)>,
}

pub struct WireDevice {
    pub seen: Arc<Mutex<Seen>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for WireDevice {
    fn drop(&mut self) {
        // The last device of a shared connection ends its task.
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

/// The job a device is working on.
#[derive(Default)]
struct Transfer {
    job: u64,
    hash: Vec<u8>,
    chunks: BTreeMap<u64, Vec<u8>>,
}

impl WireDevice {
    /// Connects device `id` to the broker on `port` (prefix `/fota`) and waits until it is
    /// subscribed.
    pub async fn start(port: u16, id: &str, mode: Mode) -> Self {
        let mut fleet = Self::fleet(port, &[id.to_owned()], mode, &format!("wire-{id}")).await;
        fleet.remove(0)
    }

    /// Devices `ids` that share one MQTT connection (client id `client`), as a gateway or a
    /// test fleet does; each keeps its own transfer. Waits until all are subscribed.
    pub async fn fleet(port: u16, ids: &[String], mode: Mode, client: &str) -> Vec<Self> {
        let mut options = MqttOptions::new(client, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let seen: Vec<Arc<Mutex<Seen>>> = ids.iter().map(|_| Arc::default()).collect();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let ids: Vec<String> = ids.to_vec();
        let records = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut acks_left = ids.len();
            let mut transfers: Vec<Transfer> = ids.iter().map(|_| Transfer::default()).collect();
            // What each device runs and its boot counter (`Confirms` and `RollsBack`).
            let mut running: Vec<(Vec<u8>, u64)> = ids.iter().map(|_| (FACTORY.to_vec(), 1)).collect();
            let speaks_status = matches!(mode, Mode::Confirms | Mode::RollsBack);
            loop {
                let event = match eventloop.poll().await {
                    Ok(event) => event,
                    Err(_) => {
                        // Like a device in the field, it takes a moment to come back after the
                        // broker went away (a second here; Rocky retries from 100 ms).
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let publish = match event {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        acks_left = ids.len();
                        for (index, id) in ids.iter().enumerate() {
                            let filters = [format!("/fota/cmd/{id}"), format!("/fota/data/{id}/+")]
                                .map(|path| rumqttc::SubscribeFilter::new(path, QoS::AtLeastOnce));
                            let _ = client.subscribe_many(filters).await;
                            if speaks_status {
                                let (image, boot) = running[index].clone();
                                records[index].lock().unwrap().statuses.push((image.clone(), boot));
                                let topic = format!("/fota/status/{id}");
                                let _ =
                                    client.publish(topic, QoS::AtLeastOnce, true, status(&image, boot)).await;
                            }
                        }
                        continue;
                    }
                    Event::Incoming(Packet::SubAck(_)) => {
                        acks_left = acks_left.saturating_sub(1);
                        if acks_left == 0
                            && let Some(tx) = ready.take()
                        {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Event::Incoming(Packet::Publish(publish)) => publish,
                    _ => continue,
                };
                let Some(rest) = publish.topic.strip_prefix("/fota/") else { continue };
                let (kind, rest) = rest.split_once('/').unwrap_or((rest, ""));
                let (device, chunk) = match kind {
                    "data" => match rest.rsplit_once('/') {
                        Some((device, n)) => (device, n.parse::<u64>().ok()),
                        None => continue,
                    },
                    "cmd" => (rest, None),
                    _ => continue,
                };
                let Some(index) = ids.iter().position(|id| id == device) else { continue };
                let (transfer, record) = (&mut transfers[index], &records[index]);
                let resp = format!("/fota/cmd_resp/{device}");
                let mut answers = Vec::new();
                let mut reboot = None;
                if kind == "cmd" {
                    let Ok(Value::Array(items)) = ciborium::from_reader::<Value, _>(&publish.payload[..])
                    else {
                        continue;
                    };
                    let (Some(job), Some(command)) =
                        (items.first().and_then(unsigned), items.get(1).and_then(unsigned))
                    else {
                        continue;
                    };
                    match command {
                        1 => {
                            record.lock().unwrap().requests.push(job);
                            let hash = items.get(2).and_then(hash_of).unwrap_or_default();
                            if transfer.job != job || transfer.hash != hash {
                                *transfer = Transfer { job, hash, chunks: BTreeMap::new() };
                            }
                            answers.push(match mode {
                                Mode::Honest | Mode::Confirms | Mode::RollsBack => frame(&[job, 2]),
                                Mode::Rewinder => frame(&[job, 2, 1, 8]),
                            });
                        }
                        4 if job == transfer.job => {
                            let mut digest = Sha256::new();
                            for chunk in transfer.chunks.values() {
                                digest.update(chunk);
                            }
                            let ok = digest.finalize().as_slice() == transfer.hash.as_slice();
                            record.lock().unwrap().verdicts.push((job, ok));
                            answers.push(frame(&[job, if ok { 5 } else { 6 }]));
                            if ok && speaks_status {
                                reboot = Some(transfer.hash.clone());
                            }
                        }
                        _ => {}
                    }
                } else if let Some(n) = chunk {
                    record.lock().unwrap().chunks += 1;
                    transfer.chunks.insert(n, publish.payload.to_vec());
                    if mode == Mode::Rewinder {
                        if n == 8 {
                            answers.push(frame(&[transfer.job, 7, 9]));
                        } else if n > 8 {
                            transfer.chunks.clear();
                            answers.push(frame(&[transfer.job, 7, 1]));
                        }
                    }
                }
                for answer in answers {
                    let _ = client.publish(resp.clone(), QoS::AtLeastOnce, false, answer).await;
                }
                // Its answer out, it boots the image it verified (or falls back to the old one)
                // and says so with the next boot counter.
                if let Some(image) = reboot {
                    let (old, boot) = running[index].clone();
                    let image = if mode == Mode::RollsBack { old } else { image };
                    running[index] = (image.clone(), boot + 1);
                    record.lock().unwrap().statuses.push((image.clone(), boot + 1));
                    let topic = format!("/fota/status/{device}");
                    let _ = client.publish(topic, QoS::AtLeastOnce, true, status(&image, boot + 1)).await;
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .expect("the wire devices subscribed within 30 s")
            .expect("the wire devices' task runs");
        // One task serves them all; it stops when the last of them is dropped.
        let task = Arc::new(task);
        seen.into_iter().map(|seen| Self { seen, task: task.clone() }).collect()
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}
