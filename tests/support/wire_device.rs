//! A device written from `../shared/PROTOCOL.md` alone, not from Rocky's simulator: it speaks
//! MQTT 3.1.1 through rumqttc, reads commands with a general CBOR decoder and answers with
//! frames it builds itself. Tests about the wire use it, so they check Rocky against the
//! contract rather than against Rocky's own idea of it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

pub struct WireDevice {
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WireDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The job a device is working on.
#[derive(Default)]
struct Transfer {
    job: u64,
    hash: Vec<u8>,
    chunks: BTreeMap<u64, Vec<u8>>,
}

fn frame(items: &[u64]) -> Vec<u8> {
    let value = Value::Array(items.iter().map(|n| Value::Integer((*n).into())).collect());
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("CBOR encodes into a Vec");
    out
}

fn unsigned(value: &Value) -> Option<u64> {
    value.as_integer().and_then(|i| u64::try_from(i).ok())
}

/// The hash of a FOTA_REQUEST: an array of 32 unsigned integers, or a byte string.
fn hash_of(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(bytes) => Some(bytes.clone()),
        Value::Array(items) => items.iter().map(|i| unsigned(i).and_then(|n| u8::try_from(n).ok())).collect(),
        _ => None,
    }
}

impl WireDevice {
    /// Connects device `id` to the broker on `port` (prefix `/fota`) and waits until it is
    /// subscribed.
    pub async fn start(port: u16, id: &str, mode: Mode) -> Self {
        let mut options = MqttOptions::new(format!("wire-{id}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10)).set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let id = id.to_owned();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let cmd = format!("/fota/cmd/{id}");
            let data = format!("/fota/data/{id}/");
            let resp = format!("/fota/cmd_resp/{id}");
            let mut ready = Some(ready_tx);
            let mut transfer = Transfer::default();
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
                        let _ = client.subscribe(cmd.clone(), QoS::AtLeastOnce).await;
                        let _ = client.subscribe(format!("{data}+"), QoS::AtLeastOnce).await;
                        continue;
                    }
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Event::Incoming(Packet::Publish(publish)) => publish,
                    _ => continue,
                };
                let mut answers = Vec::new();
                if publish.topic == cmd {
                    let Ok(Value::Array(items)) = ciborium::from_reader::<Value, _>(&publish.payload[..])
                    else {
                        continue;
                    };
                    let (Some(job), Some(kind)) =
                        (items.first().and_then(unsigned), items.get(1).and_then(unsigned))
                    else {
                        continue;
                    };
                    match kind {
                        1 => {
                            record.lock().unwrap().requests.push(job);
                            let hash = items.get(2).and_then(hash_of).unwrap_or_default();
                            if transfer.job != job || transfer.hash != hash {
                                transfer = Transfer { job, hash, chunks: BTreeMap::new() };
                            }
                            answers.push(match mode {
                                Mode::Honest => frame(&[job, 2]),
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
                        }
                        _ => {}
                    }
                } else if let Some(n) = publish.topic.strip_prefix(&data).and_then(|n| n.parse::<u64>().ok())
                {
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
            }
        });
        tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .expect("the wire device subscribed within 20 s")
            .expect("the wire device's task runs");
        Self { seen, task }
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}
