//! A simulated device that trusts keys (`rocky sim --trust`) checks manifests as `PROTOCOL.md`
//! says, in its order, and refuses with its codes: no manifest or another key (11), another
//! image (14), an older security counter (12), and at FOTA_DONE an image whose size is not the
//! manifest's (14). Its status lists `manifest`, and after an update reports the manifest's
//! version and counter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::Digest;

use super::machine::DeviceMachine;
use super::{Behavior, DeviceModel, DeviceReport};
use crate::protocol::{
    Command, CommandBody, HashEncoding, Manifest, ManifestPayload, Reason, ResponseBody, Sha256,
    StatusUpdate, decode_response, decode_status, encode_command,
};
use crate::signing::{Alg, SigningKey, TrustedKeys};

fn device(trusted: &SigningKey) -> DeviceMachine {
    let mut keys = TrustedKeys::default();
    keys.add(trusted.public(), "test".into());
    let model = DeviceModel { trust: Some(Arc::new(keys)), ..DeviceModel::default() };
    DeviceMachine::new(Behavior::Good, Duration::ZERO, model, Arc::new(Mutex::new(DeviceReport::default())))
}

fn request(job: u32, hash: Sha256, manifest: Option<&Manifest>) -> Vec<u8> {
    let body = CommandBody::Request { hash, manifest: manifest.map(|m| m.bytes().clone()), delta: None };
    encode_command(&Command { job_id: job, body }, HashEncoding::Bytes)
}

fn answer(machine: &mut DeviceMachine, frame: &[u8], now: Instant) -> ResponseBody {
    machine.on_command(frame, now);
    let bytes = machine.poll_answer(now).expect("an answer");
    decode_response(&bytes).unwrap().body
}

fn nack(code: u64) -> ResponseBody {
    ResponseBody::RequestNack { reason: Some(Reason::Code(code)) }
}

#[test]
fn forged_and_stale_requests_are_refused_with_the_protocols_codes_and_a_good_one_updates_the_status() {
    let key = SigningKey::generate(Alg::Ed25519).unwrap();
    let stranger = SigningKey::generate(Alg::Ed25519).unwrap();
    let now = Instant::now();
    let image = b"firmware image".to_vec();
    let hash: Sha256 = sha2::Sha256::digest(&image).into();
    let signed = |key: &SigningKey, hash: Sha256, size: u64, seq: u64| {
        Manifest::sign(ManifestPayload { image_sha256: hash, size, version: Some("3.0".into()), seq }, key)
    };
    let mut machine = device(&key);
    machine.on_connect(now);
    let StatusUpdate::Reported { status, .. } = decode_status(&machine.poll_status(now).unwrap()).unwrap()
    else {
        panic!("a status")
    };
    assert!(status.speaks("manifest"), "{:?}", status.caps);

    assert_eq!(answer(&mut machine, &request(1, hash, None), now), nack(11), "no manifest");
    let foreign = signed(&stranger, hash, 14, 1);
    assert_eq!(answer(&mut machine, &request(2, hash, Some(&foreign)), now), nack(11), "another key");
    let elsewhere = signed(&key, [7; 32], 14, 1);
    assert_eq!(answer(&mut machine, &request(3, hash, Some(&elsewhere)), now), nack(14), "another image");

    // A good update to seq 5: then seq 4 is refused as a rollback.
    let good = signed(&key, hash, image.len() as u64, 5);
    assert!(matches!(
        answer(&mut machine, &request(4, hash, Some(&good)), now),
        ResponseBody::RequestAck { .. }
    ));
    machine.on_chunk(1, Bytes::from(image.clone()), now);
    let done = encode_command(&Command { job_id: 4, body: CommandBody::Done }, HashEncoding::Bytes);
    assert_eq!(answer(&mut machine, &done, now), ResponseBody::DoneSuccess);
    let later = now + Duration::from_secs(5);
    machine.tick(later);
    let StatusUpdate::Reported { status, .. } = decode_status(&machine.poll_status(later).unwrap()).unwrap()
    else {
        panic!("a status after the reboot")
    };
    assert_eq!((status.image, status.version.as_deref(), status.seq), (hash, Some("3.0"), Some(5)));
    let older_image = b"older firmware".to_vec();
    let older_hash: Sha256 = sha2::Sha256::digest(&older_image).into();
    let older = signed(&key, older_hash, older_image.len() as u64, 4);
    assert_eq!(answer(&mut machine, &request(5, older_hash, Some(&older)), later), nack(12), "anti-rollback");

    // A manifest whose size is not the image's: refused once the image is whole.
    let newer_image = b"newer firmware!".to_vec();
    let newer_hash: Sha256 = sha2::Sha256::digest(&newer_image).into();
    let wrong_size = signed(&key, newer_hash, 999, 6);
    let acked = answer(&mut machine, &request(6, newer_hash, Some(&wrong_size)), later);
    assert!(matches!(acked, ResponseBody::RequestAck { .. }));
    machine.on_chunk(1, Bytes::from(newer_image), later);
    let done = encode_command(&Command { job_id: 6, body: CommandBody::Done }, HashEncoding::Bytes);
    assert_eq!(
        answer(&mut machine, &done, later),
        ResponseBody::DoneFailed { reason: Some(Reason::Code(14)) },
        "the size is checked when the image is whole"
    );
}
