//! A device that takes patches, written from `../shared/PROTOCOL.md` ("Delta") and the BSDIFF40
//! format alone: its status names the image it says it runs and lists `delta-bsdiff4`; it reads
//! the delta descriptor with a general CBOR decoder, refuses a patch for a base it does not hold
//! (code 13), and applies patches with a bspatch of its own (the header, three bzip2 streams,
//! control triples), not with the library Rocky builds them with.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cbor_items::{cbor, field, frame, hash_of, unsigned};
use ciborium::Value;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sha2::{Digest, Sha256};

/// What the device saw and said.
#[derive(Debug, Default, Clone)]
pub struct DeltaSeen {
    /// FOTA_REQUESTs: (job, items in the frame).
    pub requests: Vec<(u64, usize)>,
    pub refusals: Vec<(u64, u64)>,
    /// Patches it applied: (job, patch bytes).
    pub patched: Vec<(u64, usize)>,
    pub verdicts: Vec<(u64, bool)>,
}

pub struct DeltaDevice {
    pub seen: Arc<Mutex<DeltaSeen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DeltaDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// BSDIFF40's numbers: 8 bytes little-endian, sign in the top bit.
fn offtin(bytes: &[u8]) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[..8]);
    let magnitude = (u64::from_le_bytes(raw) & !(1 << 63)) as i64;
    if raw[7] & 0x80 != 0 { -magnitude } else { magnitude }
}

fn bunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    bzip2::read::BzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// bspatch: applies a BSDIFF40 patch to `old`.
pub fn bspatch(old: &[u8], patch: &[u8]) -> Result<Vec<u8>, String> {
    if patch.len() < 32 || &patch[..8] != b"BSDIFF40" {
        return Err("not BSDIFF40".into());
    }
    let (ctrl_len, diff_len, new_len) = (offtin(&patch[8..]), offtin(&patch[16..]), offtin(&patch[24..]));
    let (ctrl_len, diff_len) =
        (usize::try_from(ctrl_len).map_err(|_| "ctrl")?, usize::try_from(diff_len).map_err(|_| "diff")?);
    let new_len = usize::try_from(new_len).map_err(|_| "size")?;
    let body = &patch[32..];
    if ctrl_len + diff_len > body.len() || new_len > 64 << 20 {
        return Err("lengths".into());
    }
    let ctrl = bunzip(&body[..ctrl_len])?;
    let diff = bunzip(&body[ctrl_len..ctrl_len + diff_len])?;
    let extra = bunzip(&body[ctrl_len + diff_len..])?;
    let (mut new, mut old_pos, mut diff_pos, mut extra_pos) =
        (Vec::with_capacity(new_len), 0i64, 0usize, 0usize);
    for triple in ctrl.chunks_exact(24) {
        if new.len() >= new_len {
            break;
        }
        let (add, copy, seek) = (offtin(&triple[0..]), offtin(&triple[8..]), offtin(&triple[16..]));
        for _ in 0..add {
            let from_old = usize::try_from(old_pos).ok().and_then(|i| old.get(i)).copied().unwrap_or(0);
            new.push(from_old.wrapping_add(*diff.get(diff_pos).ok_or("diff ran out")?));
            diff_pos += 1;
            old_pos += 1;
        }
        let copy = usize::try_from(copy).map_err(|_| "copy")?;
        new.extend_from_slice(extra.get(extra_pos..extra_pos + copy).ok_or("extra ran out")?);
        extra_pos += copy;
        old_pos += seek;
    }
    if new.len() != new_len {
        return Err(format!("made {} bytes, the header says {new_len}", new.len()));
    }
    Ok(new)
}

/// The delta descriptor as the device reads it: base sha256, patch size, patch sha256.
type Descriptor = (Vec<u8>, u64, Vec<u8>);

/// The job in hand: its id, the target's hash, and the descriptor of a patch.
type Job = (u64, Vec<u8>, Option<Descriptor>);

fn status(image: &[u8], boot: u64) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.to_owned());
    cbor(&Value::Map(vec![
        (text("image"), Value::Bytes(Sha256::digest(image).to_vec())),
        (text("boot"), Value::Integer(boot.into())),
        (text("caps"), Value::Array(vec![text("reasons"), text("confirm"), text("delta-bsdiff4")])),
    ]))
}

impl DeltaDevice {
    /// Device `id` that says it runs `says` and holds the bytes of `runs` (the same, except for
    /// a device reflashed by hand since its last status).
    pub async fn start(port: u16, id: &str, says: Vec<u8>, runs: Vec<u8>) -> Self {
        let mut options = MqttOptions::new(format!("delta-{id}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10)).set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let seen = Arc::new(Mutex::new(DeltaSeen::default()));
        let record = seen.clone();
        let id = id.to_owned();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let (mut running, mut boot) = (runs, 1u64);
            let mut announced = says;
            let mut job: Option<Job> = None;
            let mut chunks = std::collections::BTreeMap::new();
            loop {
                let publish = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let filters = [format!("/fota/cmd/{id}"), format!("/fota/data/{id}/+")]
                            .map(|path| rumqttc::SubscribeFilter::new(path, QoS::AtLeastOnce));
                        let _ = client.subscribe_many(filters).await;
                        let _ = client
                            .publish(
                                format!("/fota/status/{id}"),
                                QoS::AtLeastOnce,
                                true,
                                status(&announced, boot),
                            )
                            .await;
                        continue;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => publish,
                    Ok(_) => continue,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let resp = format!("/fota/cmd_resp/{id}");
                if publish.topic.starts_with("/fota/data/") {
                    if let Some(n) = publish.topic.rsplit('/').next().and_then(|n| n.parse::<u64>().ok()) {
                        chunks.insert(n, publish.payload.to_vec());
                    }
                    continue;
                }
                let Ok(Value::Array(items)) = ciborium::from_reader::<Value, _>(&publish.payload[..]) else {
                    continue;
                };
                let (Some(this), Some(command)) =
                    (items.first().and_then(unsigned), items.get(1).and_then(unsigned))
                else {
                    continue;
                };
                match command {
                    1 => {
                        record.lock().unwrap().requests.push((this, items.len()));
                        // The hash as a byte string or as Rocky's default array of 32 integers.
                        let Some(target) = items.get(2).and_then(hash_of) else { continue };
                        let delta = match items.get(4) {
                            Some(Value::Map(map)) => {
                                let bytes =
                                    |k| field(map, k).and_then(Value::as_bytes).cloned().unwrap_or_default();
                                Some((bytes(1), field(map, 3).and_then(unsigned).unwrap_or(0), bytes(4)))
                            }
                            _ => None,
                        };
                        if let Some((base, ..)) = &delta
                            && Sha256::digest(&running).as_slice() != base.as_slice()
                        {
                            record.lock().unwrap().refusals.push((this, 13));
                            let _ =
                                client.publish(&resp, QoS::AtLeastOnce, false, frame(&[this, 3, 13])).await;
                            continue;
                        }
                        // A request whose bytes differ from the last is new, even under one id.
                        job = Some((this, target, delta));
                        chunks.clear();
                        let _ = client.publish(&resp, QoS::AtLeastOnce, false, frame(&[this, 2])).await;
                    }
                    4 => {
                        let Some((job_id, target, delta)) = job.clone().filter(|(j, ..)| *j == this) else {
                            continue;
                        };
                        let received: Vec<u8> = chunks.values().flatten().copied().collect();
                        let image = match &delta {
                            Some((_, size, sha))
                                if received.len() as u64 == *size
                                    && Sha256::digest(&received).as_slice() == sha.as_slice() =>
                            {
                                record.lock().unwrap().patched.push((job_id, received.len()));
                                bspatch(&running, &received).ok()
                            }
                            Some(_) => None,
                            None => Some(received),
                        };
                        let ok = image
                            .as_ref()
                            .is_some_and(|image| Sha256::digest(image).as_slice() == target.as_slice());
                        record.lock().unwrap().verdicts.push((job_id, ok));
                        let answer = if ok { frame(&[job_id, 5]) } else { frame(&[job_id, 6, 4]) };
                        let _ = client.publish(&resp, QoS::AtLeastOnce, false, answer).await;
                        if let (true, Some(image)) = (ok, image) {
                            // It boots the new image and says so.
                            (running, announced, boot) = (image.clone(), image, boot + 1);
                            let _ = client
                                .publish(
                                    format!("/fota/status/{id}"),
                                    QoS::AtLeastOnce,
                                    true,
                                    status(&announced, boot),
                                )
                                .await;
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .expect("the delta device subscribed within 30 s")
            .expect("the delta device's task runs");
        Self { seen, task }
    }

    pub fn seen(&self) -> DeltaSeen {
        self.seen.lock().unwrap().clone()
    }
}
