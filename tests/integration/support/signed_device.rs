//! A device that takes signed images only, written from `../shared/PROTOCOL.md` ("Device
//! status", "Manifest") and RFC 9052 alone, not from Rocky's code: its status lists `manifest`;
//! it reads the COSE_Sign1 in a FOTA_REQUEST's fourth item with a general CBOR decoder, builds
//! the `Sig_structure` itself and checks the signature with the raw Ed25519 or P-256 primitive,
//! then checks the hash (14), the security counter (12) and, once the image is whole, its size.
//! Rocky's manifests are checked by this independent reading, not by the code that wrote them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cbor_items::{cbor, frame, hash_of, unsigned};
use ciborium::Value;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sha2::{Digest, Sha256};

/// The image it runs before its first update.
pub const FACTORY: [u8; 32] = [0xfa; 32];

/// What the device saw and said.
#[derive(Debug, Default, Clone)]
pub struct SignedSeen {
    /// FOTA_REQUESTs: (job, how many items the frame had).
    pub requests: Vec<(u64, usize)>,
    /// NACK codes it answered.
    pub refusals: Vec<(u64, u64)>,
    /// Manifests whose signature it verified: (kid hex, version, seq).
    pub verified: Vec<(String, Option<String>, u64)>,
    /// Verdicts at FOTA_DONE: (job, ok).
    pub verdicts: Vec<(u64, bool)>,
}

pub struct SignedDevice {
    pub seen: Arc<Mutex<SignedSeen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SignedDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn map_get(map: &[(Value, Value)], key: i64) -> Option<&Value> {
    map.iter().find(|(k, _)| k.as_integer().and_then(|i| i64::try_from(i).ok()) == Some(key)).map(|(_, v)| v)
}

/// A public key the device trusts: raw Ed25519 (32 bytes) or uncompressed P-256 (65 bytes).
#[derive(Clone)]
pub struct Trusted(pub Vec<u8>);

impl Trusted {
    fn kid(&self) -> Vec<u8> {
        Sha256::digest(&self.0)[..8].to_vec()
    }

    fn verifies(&self, alg: i64, message: &[u8], signature: &[u8]) -> bool {
        match (alg, self.0.len()) {
            (-8, 32) => {
                let Ok(raw) = <[u8; 32]>::try_from(self.0.as_slice()) else { return false };
                let (Ok(key), Ok(sig)) = (
                    ed25519_dalek::VerifyingKey::from_bytes(&raw),
                    ed25519_dalek::Signature::from_slice(signature),
                ) else {
                    return false;
                };
                key.verify_strict(message, &sig).is_ok()
            }
            (-7, 65) => {
                use p256::ecdsa::signature::Verifier;
                let (Ok(key), Ok(sig)) = (
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&self.0),
                    p256::ecdsa::Signature::from_slice(signature),
                ) else {
                    return false;
                };
                key.verify(message, &sig).is_ok()
            }
            _ => false,
        }
    }
}

/// The manifest's payload once its signature verified.
struct Accepted {
    size: u64,
    version: Option<String>,
    seq: u64,
}

/// PROTOCOL.md's checks in its order; the NACK code on refusal.
fn check(
    manifest: Option<&Value>,
    hash: &[u8],
    running_seq: u64,
    trusted: &[Trusted],
) -> Result<Accepted, u64> {
    let Some(Value::Tag(18, inner)) = manifest else { return Err(11) };
    let Value::Array(items) = inner.as_ref() else { return Err(11) };
    let [Value::Bytes(protected), Value::Map(unprotected), Value::Bytes(payload), Value::Bytes(signature)] =
        items.as_slice()
    else {
        return Err(11);
    };
    let Ok(Value::Map(protected_map)) = ciborium::from_reader::<Value, _>(protected.as_slice()) else {
        return Err(11);
    };
    let alg = map_get(&protected_map, 1).and_then(|v| v.as_integer()).and_then(|i| i64::try_from(i).ok());
    let kid = map_get(unprotected, 4).or_else(|| map_get(&protected_map, 4)).and_then(Value::as_bytes);
    let (Some(alg), Some(kid)) = (alg, kid) else { return Err(11) };
    // RFC 9052 §4.4: ["Signature1", body_protected, external_aad, payload].
    let to_be_signed = cbor(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.clone()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.clone()),
    ]));
    let key = trusted.iter().find(|key| key.kid() == *kid).ok_or(11u64)?;
    if !key.verifies(alg, &to_be_signed, signature) {
        return Err(11);
    }
    let Ok(Value::Map(fields)) = ciborium::from_reader::<Value, _>(payload.as_slice()) else {
        return Err(11);
    };
    if map_get(&fields, 1).and_then(Value::as_bytes).map(Vec::as_slice) != Some(hash) {
        return Err(14);
    }
    let seq = map_get(&fields, 4).and_then(unsigned).unwrap_or(0);
    if seq < running_seq {
        return Err(12);
    }
    Ok(Accepted {
        size: map_get(&fields, 2).and_then(unsigned).ok_or(11u64)?,
        version: map_get(&fields, 3).and_then(Value::as_text).map(str::to_owned),
        seq,
    })
}

/// The status map; `kids`: the key ids it accepts, when it lists them.
fn status(image: &[u8], boot: u64, seq: u64, version: &str, kids: &[Vec<u8>]) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.to_owned());
    let mut map = vec![
        (text("image"), Value::Bytes(image.to_vec())),
        (text("version"), text(version)),
        (text("boot"), Value::Integer(boot.into())),
        (text("seq"), Value::Integer(seq.into())),
        (text("caps"), Value::Array(vec![text("reasons"), text("confirm"), text("manifest")])),
    ];
    if !kids.is_empty() {
        map.push((text("kids"), Value::Array(kids.iter().map(|k| Value::Bytes(k.clone())).collect())));
    }
    cbor(&Value::Map(map))
}

impl SignedDevice {
    /// Device `id` on the broker at `port` (prefix `/fota`), running the factory image at
    /// security counter `seq`, taking images signed by one of `trusted`. Waits until subscribed.
    pub async fn start(port: u16, id: &str, seq: u64, trusted: Vec<Trusted>) -> Self {
        Self::start_with(port, id, seq, trusted, false).await
    }

    /// As [`SignedDevice::start`]; `list_kids`: its status lists the ids of the keys it trusts.
    pub async fn start_with(port: u16, id: &str, seq: u64, trusted: Vec<Trusted>, list_kids: bool) -> Self {
        let kids: Vec<Vec<u8>> =
            if list_kids { trusted.iter().map(Trusted::kid).collect() } else { Vec::new() };
        let mut options = MqttOptions::new(format!("signed-{id}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10)).set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let seen = Arc::new(Mutex::new(SignedSeen::default()));
        let record = seen.clone();
        let id = id.to_owned();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let (mut image, mut boot, mut running_seq, mut version) =
                (FACTORY.to_vec(), 1u64, seq, "factory".to_owned());
            let mut job = 0u64;
            let mut hash = Vec::new();
            let mut accepted: Option<Accepted> = None;
            let mut chunks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            loop {
                let publish = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let filters = [format!("/fota/cmd/{id}"), format!("/fota/data/{id}/+")]
                            .map(|path| rumqttc::SubscribeFilter::new(path, QoS::AtLeastOnce));
                        let _ = client.subscribe_many(filters).await;
                        let body = status(&image, boot, running_seq, &version, &kids);
                        let _ =
                            client.publish(format!("/fota/status/{id}"), QoS::AtLeastOnce, true, body).await;
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
                if let Some(n) = publish.topic.rsplit_once('/').and_then(|(_, n)| n.parse::<u64>().ok())
                    && publish.topic.starts_with("/fota/data/")
                {
                    chunks.insert(n, publish.payload.to_vec());
                    continue;
                }
                let Ok(Value::Array(items)) = ciborium::from_reader::<Value, _>(&publish.payload[..]) else {
                    continue;
                };
                let (Some(this_job), Some(command)) =
                    (items.first().and_then(unsigned), items.get(1).and_then(unsigned))
                else {
                    continue;
                };
                match command {
                    1 => {
                        record.lock().unwrap().requests.push((this_job, items.len()));
                        let request_hash = items.get(2).and_then(hash_of).unwrap_or_default();
                        match check(items.get(3), &request_hash, running_seq, &trusted) {
                            Ok(manifest) => {
                                let kid = hex::encode(Trusted::kid_of(&items[3]));
                                let entry = (kid, manifest.version.clone(), manifest.seq);
                                record.lock().unwrap().verified.push(entry);
                                (job, hash, accepted) = (this_job, request_hash, Some(manifest));
                                chunks.clear();
                                let _ = client
                                    .publish(&resp, QoS::AtLeastOnce, false, frame(&[this_job, 2]))
                                    .await;
                            }
                            Err(code) => {
                                record.lock().unwrap().refusals.push((this_job, code));
                                let nack = frame(&[this_job, 3, code]);
                                let _ = client.publish(&resp, QoS::AtLeastOnce, false, nack).await;
                            }
                        }
                    }
                    4 if this_job == job => {
                        let whole: Vec<u8> = chunks.values().flatten().copied().collect();
                        let size_ok = accepted.as_ref().is_some_and(|m| m.size == whole.len() as u64);
                        let ok = size_ok && Sha256::digest(&whole).as_slice() == hash.as_slice();
                        record.lock().unwrap().verdicts.push((job, ok));
                        let answer = if ok { frame(&[job, 5]) } else { frame(&[job, 6, 14]) };
                        let _ = client.publish(&resp, QoS::AtLeastOnce, false, answer).await;
                        if let (true, Some(manifest)) = (ok, accepted.take()) {
                            // It boots the image and reports the manifest's version and counter.
                            (image, boot, running_seq) = (hash.clone(), boot + 1, manifest.seq);
                            version = manifest.version.unwrap_or_default();
                            let body = status(&image, boot, running_seq, &version, &kids);
                            let _ = client
                                .publish(format!("/fota/status/{id}"), QoS::AtLeastOnce, true, body)
                                .await;
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .expect("the signed device subscribed within 30 s")
            .expect("the signed device's task runs");
        Self { seen, task }
    }

    pub fn seen(&self) -> SignedSeen {
        self.seen.lock().unwrap().clone()
    }
}

impl Trusted {
    /// The kid a verified manifest named (unprotected header, else protected).
    fn kid_of(manifest: &Value) -> Vec<u8> {
        let Value::Tag(_, inner) = manifest else { return Vec::new() };
        let Value::Array(items) = inner.as_ref() else { return Vec::new() };
        let from_unprotected = match items.get(1) {
            Some(Value::Map(map)) => map_get(map, 4).and_then(Value::as_bytes).cloned(),
            _ => None,
        };
        from_unprotected.unwrap_or_default()
    }
}
