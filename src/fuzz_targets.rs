//! The bodies of the `cargo fuzz` targets in `fuzz/`, kept in the library so that `cargo test`
//! runs every one of them over the seed inputs on stable Rust (see
//! `tests/integration/fuzz_seeds.rs`), and the fuzzer and the tests cannot drift apart. Each
//! body must return normally for any input; a panic is the finding.

use crate::protocol::{
    StatusUpdate, Topics, decode_command, decode_response, decode_status, describe, diagnostic,
    encode_response, encode_status, hex_dump,
};

/// A response frame: decoding never panics, and what decodes encodes back (as the simulated
/// devices send it) to a frame with the same job and type: encoder and decoder agree.
pub fn decode_response_frame(data: &[u8]) {
    if let Ok(response) = decode_response(data) {
        let again = decode_response(&encode_response(&response));
        let same = again.as_ref().map(|r| (r.job_id, r.command_type()));
        assert_eq!(same, Ok((response.job_id, response.command_type())), "re-encoded response differs");
    }
    let _ = decode_command(data);
}

/// The one-line rendering, for every topic kind: the first byte picks a topic, the rest is the
/// payload. Rendering is total: every input gives a line.
pub fn describe_frame(data: &[u8]) {
    let Ok(topics) = Topics::new("fota") else { return };
    let (selector, payload) = data.split_first().map_or((0, data), |(first, rest)| (*first, rest));
    let topic = match selector % 11 {
        0 => "fota/cmd/dev-1",
        1 => "fota/cmd_resp/dev-1",
        2 => "fota/data/dev-1/7",
        3 => "fota/data/dev-1/4294967296",
        4 => "fota/status/dev-1",
        5 => "$aws/things/t-1/jobs/$next/get",
        6 => "$aws/things/t-1/jobs/rocky-7/update",
        7 => "$aws/things/t-1/streams/rocky-7/get/cbor",
        8 => "$aws/things/t-1/jobs/notify-next",
        9 => "$aws/things/t-1/streams/rocky-7/data/cbor",
        _ => "elsewhere/x",
    };
    let line = describe(&topics, topic, payload);
    assert!(!line.is_empty());
}

/// A device's status: decoding is bounded and never panics, and a status that decodes encodes
/// back (as a simulated device publishes it) to one that decodes the same.
pub fn status_payload(data: &[u8]) {
    if let Ok(StatusUpdate::Reported { status, .. }) = decode_status(data) {
        let again = decode_status(&encode_status(&status));
        assert_eq!(
            again,
            Ok(StatusUpdate::Reported { status, confirm_dropped: false }),
            "re-encoded status differs"
        );
    }
}

/// A manifest (`PUT /firmware/{sha256}/manifest`'s body, a FOTA_REQUEST's fourth item): decoding
/// is bounded and never panics; what decodes reads back from its own bytes the same, and no
/// key Rocky does not hold verifies it.
pub fn manifest_bytes(data: &[u8]) {
    if let Ok(manifest) = crate::protocol::Manifest::decode(data) {
        let again = crate::protocol::Manifest::decode(manifest.bytes());
        assert_eq!(again.as_ref(), Ok(&manifest), "a manifest does not read back from its own bytes");
        assert!(manifest.verify(&crate::signing::TrustedKeys::default()).is_err(), "verified with no keys");
        let _ = manifest.check_image(&[0; 32], 0);
    }
    let _ = crate::protocol::ManifestPayload::decode(data);
}

/// The CBOR diagnostic renderer and the hex dump the detail view shows.
pub fn diagnostic_text(data: &[u8]) {
    let _ = diagnostic(data);
    let lines = hex_dump(data, 256, 16);
    assert!(lines.len() <= 256 / 16 + 2, "hex dump longer than its limit: {} lines", lines.len());
}

/// The config loader given arbitrary file text: it answers a config or an error, never a panic.
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::config::layer(Some("fuzz.toml".into()), Some(text), |_| None, &[]);
}

/// The embedded broker given any bytes from a connected client (see
/// [`crate::broker::handle_bytes`]).
pub fn broker_packets(data: &[u8]) {
    crate::broker::handle_bytes(data);
}

/// The attached console reading a server's `/events`: bytes framed in two reads (so an event may
/// be split anywhere), every event typed and turned into the runtime's form. Nothing may panic,
/// and the framer never holds more than its bound.
pub fn sse_events(data: &[u8]) {
    let clock = crate::clock::Clock::new();
    let mut framer = crate::api::Framer::default();
    let (first, second) = data.split_at(data.len() / 2);
    for piece in [first, second] {
        let Ok(events) = framer.push(piece) else { return };
        for (name, data) in events {
            if let Ok(Some((event, _))) = crate::api::WireEvent::from_sse(&name, &data) {
                let _ = event.into_runtime(&clock);
            }
        }
    }
}

/// What an AWS-profile device sends on a Jobs topic (the first byte picks which): a
/// `$next/get`, an execution update (its progress and reason read as the faces read them), or
/// a topic. Decoding is bounded and never panics; an update's details keep their bounds.
pub fn aws_jobs(data: &[u8]) {
    use crate::protocol::aws;
    let Some((&selector, payload)) = data.split_first() else { return };
    match selector % 3 {
        0 => {
            let _ = aws::decode_next_get(payload);
        }
        1 => {
            if let Ok(update) = aws::decode_update(payload) {
                assert!(update.details.len() <= aws::MAX_STATUS_DETAILS, "details past their bound");
                let _ = update.progress();
                if let Some(reason) = update.details.get("reason") {
                    let _ = aws::failure_words(reason);
                }
                if let Some(by) = update.details.get("updatedBy") {
                    let _ = aws::app_version(by);
                }
            }
        }
        _ => {
            if let Some(topic) = aws::AwsTopic::parse(&String::from_utf8_lossy(payload)) {
                let _ = topic.thing();
            }
        }
    }
}

/// An AWS-profile device's request for blocks: decoding is bounded and never panics, and the
/// blocks it asks for are at most its count, all inside the file (the first four bytes say
/// how many blocks the file has).
pub fn aws_stream(data: &[u8]) {
    use crate::protocol::aws;
    let Some((total, payload)) = data.split_first_chunk::<4>() else { return };
    let total = u32::from_le_bytes(*total);
    if let Ok(request) = aws::decode_block_request(payload) {
        assert!((aws::MIN_BLOCK_SIZE..=aws::MAX_BLOCK_SIZE).contains(&request.block_size));
        let (wanted, _) = request.wanted(total);
        assert!(wanted.len() <= request.count as usize, "more blocks than asked for");
        assert!(wanted.iter().all(|block| *block < total), "a block past the end");
        let _ = request.summary(Some(total));
        // What it holds, by its word: no block past the end (a file of at most 2^20 blocks
        // here, as an image's block count is bounded by its size).
        let blocks = total % (1 << 20);
        let held = request.held(blocks);
        assert_eq!(held.len(), (blocks as usize).div_ceil(64));
        let counted: u32 = held.iter().map(|word| word.count_ones()).sum();
        assert!(counted <= blocks, "more blocks held than the file has");
    }
    // What a simulated device reads: a block is never larger than the largest block.
    if let Ok(block) = aws::decode_block(payload) {
        assert!(!block.bytes.is_empty() && block.bytes.len() <= aws::MAX_BLOCK_SIZE as usize);
    }
}
