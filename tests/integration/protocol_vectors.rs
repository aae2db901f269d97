//! The wire vectors from `PROTOCOL.md`, checked byte for byte: Rocky's encoder must produce the
//! command frames exactly, and its decoder must accept every valid frame and reject every invalid
//! response with an error.

use rocky::protocol::{
    Command, CommandBody, HashEncoding, Reason, Response, ResponseBody, TopicKind, Topics, decode_command,
    decode_response, encode_command, encode_response,
};
use serde_json::Value;
use sha2::Digest;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/protocol_vectors.json")).expect("vector file is JSON")
}

fn bytes(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text).expect("vector hex")
}

fn find<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["valid"].as_array().unwrap().iter().find(|x| x["name"] == name).unwrap_or_else(|| panic!("{name}"))
}

#[test]
fn sha256_of_hello_world_matches_the_vector() {
    let v = vectors();
    let hash = sha2::Sha256::digest(b"Hello, world!");
    assert_eq!(hex::encode(hash), v["sha256_hello_world"].as_str().unwrap());
}

#[test]
fn command_frames_are_encoded_byte_for_byte() {
    let v = vectors();
    let hash: [u8; 32] = sha2::Sha256::digest(b"Hello, world!").into();
    let request = Command { job_id: 42, body: CommandBody::Request { hash, manifest: None, delta: None } };
    let done = Command { job_id: 42, body: CommandBody::Done };
    let cases = [
        (
            "request, hash as array (default, as the original sends it)",
            encode_command(&request, HashEncoding::Array),
        ),
        (
            "request, hash as byte string (hash_encoding = bytes)",
            encode_command(&request, HashEncoding::Bytes),
        ),
        ("done (empty array third item)", encode_command(&done, HashEncoding::Array)),
        ("done (empty array third item)", encode_command(&done, HashEncoding::Bytes)),
    ];
    for (name, ours) in cases {
        let vector = find(&v, name);
        assert_eq!(hex::encode(&ours), vector["cbor_hex"].as_str().unwrap(), "{name}");
        // The topic in the vector is what Rocky builds for that device.
        let topics = Topics::default();
        match topics.parse(vector["topic"].as_str().unwrap()) {
            Some(TopicKind::Cmd(device)) => assert_eq!(topics.cmd(&device), vector["topic"]),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(decode_command(&ours).unwrap().job_id, 42);
    }
}

#[test]
fn every_valid_response_decodes_to_what_it_says() {
    let v = vectors();
    let expect = [
        ("request ack", 42, ResponseBody::RequestAck { next_chunk: None, window: None }),
        ("request nack", 42, ResponseBody::RequestNack { reason: None }),
        ("done success", 42, ResponseBody::DoneSuccess),
        ("done failed", 42, ResponseBody::DoneFailed { reason: None }),
        (
            "ack with resume extension: device holds chunks 1..16",
            42,
            ResponseBody::RequestAck { next_chunk: Some(17), window: None },
        ),
        ("large job id (fits 32 bits)", 4_000_000_000, ResponseBody::DoneSuccess),
        (
            "4-digit job id as the original allocates",
            9394,
            ResponseBody::RequestAck { next_chunk: None, window: None },
        ),
        (
            "ack with flow control: nothing held, window 8",
            42,
            ResponseBody::RequestAck { next_chunk: Some(1), window: Some(8) },
        ),
        (
            "ack with resume and flow control: holds 1..16, window 32",
            42,
            ResponseBody::RequestAck { next_chunk: Some(17), window: Some(32) },
        ),
        ("progress: holds every chunk below 9", 42, ResponseBody::Progress { next_chunk: 9, window: None }),
        (
            "progress with a new window (0 = pause)",
            42,
            ResponseBody::Progress { next_chunk: 9, window: Some(0) },
        ),
        (
            "nack with a text reason",
            42,
            ResponseBody::RequestNack { reason: Some(Reason::text("battery below 20%")) },
        ),
        (
            "done failed with a code (10: writing to flash failed)",
            42,
            ResponseBody::DoneFailed { reason: Some(Reason::Code(10)) },
        ),
    ];
    for (name, job_id, body) in expect {
        let wire = bytes(find(&v, name)["cbor_hex"].as_str().unwrap());
        let frame = decode_response(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((frame.job_id, &frame.body), (job_id, &body), "{name}");
        // The simulated devices' encoder writes the vector's exact bytes.
        assert_eq!(encode_response(&Response { job_id, body }), wire, "{name}");
    }
    // And every valid vector on cmd_resp decodes; every one on cmd decodes as a command.
    for vector in v["valid"].as_array().unwrap() {
        let payload = bytes(vector["cbor_hex"].as_str().unwrap());
        let topic = vector["topic"].as_str().unwrap();
        if topic.contains("/cmd_resp/") {
            assert!(decode_response(&payload).is_ok(), "{}", vector["name"]);
        } else {
            assert!(decode_command(&payload).is_ok(), "{}", vector["name"]);
        }
    }
}

#[test]
fn every_invalid_response_is_an_error() {
    let v = vectors();
    let invalid = v["invalid_responses"].as_array().unwrap();
    assert!(invalid.len() >= 11);
    for vector in invalid {
        let payload = bytes(vector["cbor_hex"].as_str().unwrap());
        let result = decode_response(&payload);
        assert!(result.is_err(), "{} decoded as {result:?}", vector["name"]);
    }
}

#[test]
fn data_topic_example_parses_as_chunk_one() {
    let v = vectors();
    let topics = Topics::default();
    let kind = topics.parse(v["data_topic"]["example"].as_str().unwrap());
    assert!(matches!(kind, Some(TopicKind::Data(ref d, 1)) if d.as_str() == "dev-07"), "{kind:?}");
}
