//! A simulated device that speaks deltas (`rocky sim --delta`) applies the protocol's vector
//! patch to the vector base and verifies the target; one that runs another image refuses the
//! patch with code 13 and takes the whole image offered next in the same job.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::Digest;

use super::machine::DeviceMachine;
use super::{Behavior, DeviceModel, DeviceReport};
use crate::protocol::{
    Command, CommandBody, HashEncoding, Reason, ResponseBody, StatusUpdate, decode_command, decode_response,
    decode_status, encode_command,
};

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../tests/integration/data/protocol_vectors.json")).unwrap()
}

/// The vector's base: bytes 0..=255, sixteen times.
fn base() -> Vec<u8> {
    (0..16).flat_map(|_| 0..=255u8).collect()
}

fn device(factory: Vec<u8>) -> DeviceMachine {
    let model = DeviceModel { delta: true, factory: Some(Bytes::from(factory)), ..DeviceModel::default() };
    DeviceMachine::new(Behavior::Good, Duration::ZERO, model, Arc::new(Mutex::new(DeviceReport::default())))
}

fn answer(machine: &mut DeviceMachine, frame: &[u8], now: Instant) -> ResponseBody {
    machine.on_command(frame, now);
    decode_response(&machine.poll_answer(now).expect("an answer")).unwrap().body
}

fn status_image(machine: &mut DeviceMachine, now: Instant) -> [u8; 32] {
    match decode_status(&machine.poll_status(now).expect("a status")).unwrap() {
        StatusUpdate::Reported { status, .. } => status.image,
        StatusUpdate::Cleared => panic!("a status"),
    }
}

#[test]
fn the_vector_patch_applies_to_the_vector_base_and_gives_the_target() {
    let v = vectors();
    let delta = &v["extensions"]["delta"];
    let request = hex::decode(delta["request_with_delta"]["cbor_hex"].as_str().unwrap()).unwrap();
    let patch = hex::decode(delta["patch_bsdiff4_hex"].as_str().unwrap()).unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(base())), delta["base_sha256"].as_str().unwrap());
    let now = Instant::now();
    let mut machine = device(base());
    machine.on_connect(now);
    assert_eq!(hex::encode(status_image(&mut machine, now)), delta["base_sha256"].as_str().unwrap());
    let Command { job_id, body: CommandBody::Request { delta: Some(item), .. } } =
        decode_command(&request).unwrap()
    else {
        panic!("the vector request carries a delta")
    };
    assert_eq!((job_id, item.size), (43, 184));
    assert!(matches!(answer(&mut machine, &request, now), ResponseBody::RequestAck { .. }));
    machine.on_chunk(1, Bytes::from(patch), now);
    let done = encode_command(&Command { job_id, body: CommandBody::Done }, HashEncoding::Bytes);
    assert_eq!(answer(&mut machine, &done, now), ResponseBody::DoneSuccess);
    let later = now + Duration::from_secs(5);
    machine.tick(later);
    assert_eq!(hex::encode(status_image(&mut machine, later)), delta["target_sha256"].as_str().unwrap());
}

#[test]
fn a_device_that_runs_another_image_refuses_the_patch_with_13_and_takes_the_whole_image() {
    let v = vectors();
    let request =
        hex::decode(v["extensions"]["delta"]["request_with_delta"]["cbor_hex"].as_str().unwrap()).unwrap();
    let now = Instant::now();
    let mut machine = device(b"another image it was reflashed with".to_vec());
    let refused = answer(&mut machine, &request, now);
    assert_eq!(refused, ResponseBody::RequestNack { reason: Some(Reason::Code(13)) });
    // The whole target, offered next under the same job id.
    let mut target = base();
    target[100..110].copy_from_slice(b"0123456789");
    target.extend_from_slice(b"tail");
    let hash: [u8; 32] = sha2::Sha256::digest(&target).into();
    let whole = encode_command(
        &Command { job_id: 43, body: CommandBody::Request { hash, manifest: None, delta: None } },
        HashEncoding::Bytes,
    );
    assert!(matches!(answer(&mut machine, &whole, now), ResponseBody::RequestAck { .. }));
    machine.on_chunk(1, Bytes::from(target), now);
    let done = encode_command(&Command { job_id: 43, body: CommandBody::Done }, HashEncoding::Bytes);
    assert_eq!(answer(&mut machine, &done, now), ResponseBody::DoneSuccess);
}
