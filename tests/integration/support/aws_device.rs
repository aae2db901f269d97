//! A device that speaks as AWS's OTA agent does, written from `../shared/aws-iot-ota/README.md`
//! and its transcripts alone (not from Rocky's code): it asks `$next/get`, takes the job from
//! `notify-next`, asks for every block it lacks by bitmap, checks the image's
//! `sig-sha256-ecdsa` with its code-signing key, says `self_test: ready`, "reboots", asks
//! again, and once the job comes back IN_PROGRESS with its details says SUCCEEDED; or FAILED
//! with the agent's code 0xe3 when the signature does not verify.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ciborium::Value as Cbor;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

/// What the device saw and said, for the test to read.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Executions received on notify-next: (job id, status); "" for "no job".
    pub executions: Vec<(String, String)>,
    /// Blocks received (with repeats).
    pub blocks: u64,
    /// Updates sent: (status, statusDetails).
    pub updates: Vec<(String, Value)>,
    /// The image as written, once whole.
    pub image: Option<Vec<u8>>,
    /// Downloads dropped on hearing "no job" (a cancelled job).
    pub dropped: u32,
    /// Downloads dropped and begun again because a job came on notify-next while one was
    /// under way (the agent aborts its download at any job document then, and asks anew).
    pub restarted: u32,
}

/// How the device's firmware behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsMode {
    /// Takes the job, downloads, verifies, passes its self test.
    Good,
    /// Fails its self test after the reboot: FAILED "rejected: 0x…", back on its old image.
    RejectsSelfTest,
    /// Asks for its first blocks once and never again (a download that stalls).
    Stalls,
}

pub struct AwsDevice {
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AwsDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Download {
    job: String,
    stream: String,
    size: usize,
    signature: String,
    blocks: BTreeMap<u32, Vec<u8>>,
}

const BLOCK: usize = 4096;

impl AwsDevice {
    /// Thing `thing` on the broker at `port`, checking signatures with `code_signing`.
    pub async fn start(port: u16, thing: &str, code_signing: p256::ecdsa::VerifyingKey) -> Self {
        Self::start_as(port, thing, code_signing, AwsMode::Good).await
    }

    /// [`AwsDevice::start`] with firmware that behaves as `mode` says.
    pub async fn start_as(
        port: u16,
        thing: &str,
        code_signing: p256::ecdsa::VerifyingKey,
        mode: AwsMode,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut options = MqttOptions::new(thing, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(60));
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut events) = AsyncClient::new(options, 64);
        let thing = thing.to_owned();
        let notify = format!("$aws/things/{thing}/jobs/notify-next");
        client.subscribe(&notify, QoS::AtLeastOnce).await.unwrap();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut download: Option<Download> = None;
            let mut rebooted = false;
            let next_get = format!("$aws/things/{thing}/jobs/$next/get");
            let ask = json!({"clientToken": format!(":{thing}")}).to_string();
            loop {
                let Ok(event) = events.poll().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Event::Incoming(packet) = event else { continue };
                match packet {
                    Packet::SubAck(_) if download.is_none() && !rebooted => {
                        let _ = client.publish(&next_get, QoS::AtLeastOnce, false, ask.clone()).await;
                    }
                    Packet::Publish(p) if p.topic == notify => {
                        let message: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                        let execution = &message["execution"];
                        let job = execution["jobId"].as_str().unwrap_or_default().to_owned();
                        let status = execution["status"].as_str().unwrap_or_default().to_owned();
                        record.lock().unwrap().executions.push((job.clone(), status.clone()));
                        if job.is_empty() {
                            // No job: a download under way was cancelled, as the agent drops it.
                            if download.take().is_some() {
                                record.lock().unwrap().dropped += 1;
                            }
                            continue;
                        }
                        let update = format!("$aws/things/{thing}/jobs/{job}/update");
                        if rebooted
                            && status == "IN_PROGRESS"
                            && execution["statusDetails"]["self_test"] == "ready"
                        {
                            // In self test: the new image works, or (as the agent words it)
                            // is rejected and the device goes back to the image before.
                            let end = if mode == AwsMode::RejectsSelfTest {
                                ("FAILED", json!({"reason": "rejected: 0x00000000"}))
                            } else {
                                ("SUCCEEDED", json!({"reason": "accepted  v1.0.1"}))
                            };
                            for (status, details) in [("IN_PROGRESS", json!({"self_test": "active"})), end] {
                                record.lock().unwrap().updates.push((status.into(), details.clone()));
                                let body = json!({"status": status, "statusDetails": details}).to_string();
                                let _ = client.publish(&update, QoS::AtLeastOnce, false, body).await;
                            }
                            continue;
                        }
                        if download.take().is_some() {
                            // As the agent: whatever job came, the download under way is
                            // aborted and the device asks for its job again.
                            record.lock().unwrap().restarted += 1;
                            let _ = client.publish(&next_get, QoS::AtLeastOnce, false, ask.clone()).await;
                            continue;
                        }
                        if status != "QUEUED" && status != "IN_PROGRESS" {
                            continue;
                        }
                        let file = &execution["jobDocument"]["afr_ota"]["files"][0];
                        let stream =
                            execution["jobDocument"]["afr_ota"]["streamname"].as_str().unwrap_or_default();
                        let next = Download {
                            job,
                            stream: stream.to_owned(),
                            size: file["filesize"].as_u64().unwrap_or(0) as usize,
                            signature: file["sig-sha256-ecdsa"].as_str().unwrap_or_default().to_owned(),
                            blocks: BTreeMap::new(),
                        };
                        let data = format!("$aws/things/{thing}/streams/{}/data/cbor", next.stream);
                        let _ = client.subscribe(&data, QoS::AtMostOnce).await;
                        ask_blocks(&client, &thing, &next).await;
                        download = Some(next);
                    }
                    Packet::Publish(p) if p.topic.ends_with("/data/cbor") => {
                        let Some(current) = download.as_mut() else { continue };
                        let Ok(Cbor::Map(fields)) = ciborium::from_reader::<Cbor, _>(&p.payload[..]) else {
                            continue;
                        };
                        let field = |name: &str| {
                            fields.iter().find(|(k, _)| k == &Cbor::Text(name.into())).map(|(_, v)| v.clone())
                        };
                        let (Some(Cbor::Integer(index)), Some(Cbor::Bytes(bytes))) = (field("i"), field("p"))
                        else {
                            continue;
                        };
                        record.lock().unwrap().blocks += 1;
                        current.blocks.insert(u32::try_from(i128::from(index)).unwrap_or(u32::MAX), bytes);
                        let total = current.size.div_ceil(BLOCK);
                        if current.blocks.len() < total {
                            if current.blocks.len() % 8 == 0 && mode != AwsMode::Stalls {
                                ask_blocks(&client, &thing, current).await;
                            }
                            continue;
                        }
                        let image: Vec<u8> = current.blocks.values().flatten().copied().collect();
                        let verified = verifies(&code_signing, &image, &current.signature);
                        let update = format!("$aws/things/{thing}/jobs/{}/update", current.job);
                        let (status, details) = if verified {
                            ("IN_PROGRESS", json!({"self_test": "ready", "updatedBy": "0x01000001"}))
                        } else {
                            ("FAILED", json!({"reason": "0x000000e3: 0x00000000"}))
                        };
                        {
                            let mut seen = record.lock().unwrap();
                            seen.updates.push((status.into(), details.clone()));
                            seen.image = Some(image);
                        }
                        let body = json!({"status": status, "statusDetails": details}).to_string();
                        let _ = client.publish(&update, QoS::AtLeastOnce, false, body).await;
                        download = None;
                        if verified {
                            // Reboots into the new image and asks for its job again.
                            rebooted = true;
                            let _ = client.publish(&next_get, QoS::AtLeastOnce, false, ask.clone()).await;
                        }
                    }
                    _ => {}
                }
            }
        });
        Self { seen, task }
    }
}

/// Asks for up to 8 of the blocks it lacks, by bitmap from block 0.
async fn ask_blocks(client: &AsyncClient, thing: &str, download: &Download) {
    let total = download.size.div_ceil(BLOCK);
    let mut bitmap = vec![0u8; total.div_ceil(8)];
    for block in (0..total).filter(|b| !download.blocks.contains_key(&(*b as u32))) {
        bitmap[block / 8] |= 1 << (block % 8);
    }
    let text = |s: &str| Cbor::Text(s.into());
    let request = Cbor::Map(vec![
        (text("c"), text("rdy")),
        (text("f"), Cbor::Integer(0.into())),
        (text("l"), Cbor::Integer((BLOCK as u64).into())),
        (text("o"), Cbor::Integer(0.into())),
        (text("b"), Cbor::Bytes(bitmap)),
        (text("n"), Cbor::Integer(8.into())),
    ]);
    let mut payload = Vec::new();
    ciborium::into_writer(&request, &mut payload).unwrap();
    let topic = format!("$aws/things/{thing}/streams/{}/get/cbor", download.stream);
    let _ = client.publish(topic, QoS::AtMostOnce, false, payload).await;
}

/// What the agent checks: the DER P-256 signature over the image (SHA-256), base64.
fn verifies(key: &p256::ecdsa::VerifyingKey, image: &[u8], signature: &str) -> bool {
    use p256::ecdsa::signature::Verifier;
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature) else { return false };
    let Ok(signature) = p256::ecdsa::Signature::from_der(&der) else { return false };
    key.verify(image, &signature).is_ok()
}
