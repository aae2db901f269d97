//! One line for the traffic view of each message of the AWS OTA profile, both ways: what a
//! device asks, says or is sent, decoded (a block request shows as "blocks 0–4 needed").

use serde_json::Value;

use super::{AwsTopic, decode_block_request, decode_next_get, decode_update, failure_words};
use crate::protocol::hex_preview;

/// The line for a message on an `$aws/things/…` topic, or `None` for another topic.
pub fn describe(topic: &str, payload: &[u8]) -> Option<String> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once('/')?;
    if let Some(parsed) = AwsTopic::parse(topic) {
        return Some(match parsed {
            AwsTopic::NextGet { .. } => match decode_next_get(payload) {
                Ok(_) => format!("aws ← {thing} asks for its next job"),
                Err(e) => format!("aws ← {thing} $next/get decode error: {e}"),
            },
            AwsTopic::Update { job, .. } => match decode_update(payload) {
                Ok(update) => {
                    let mut text = format!("aws ← {thing} job {job}: {}", update.status.as_str());
                    let details: Vec<String> = update
                        .details
                        .iter()
                        .map(|(key, value)| match key.as_str() {
                            "reason" => format!("reason {}", failure_words(value)),
                            _ => format!("{key} {value}"),
                        })
                        .collect();
                    if !details.is_empty() {
                        text.push_str(&format!(" ({})", details.join(", ")));
                    }
                    text
                }
                Err(e) => format!("aws ← {thing} job {job} update decode error: {e}"),
            },
            AwsTopic::GetBlocks { stream, .. } => match decode_block_request(payload) {
                Ok(request) => format!("aws ← {thing} stream {stream}: {}", request.summary(None)),
                Err(e) => format!(
                    "aws ← {thing} stream {stream} request decode error: {e} · {}",
                    hex_preview(payload)
                ),
            },
        });
    }
    if rest == "jobs/notify-next" {
        let message: Value = serde_json::from_slice(payload).unwrap_or_default();
        let execution = &message["execution"];
        if execution.is_null() {
            return Some(format!("aws → {thing} no job"));
        }
        let file = &execution["jobDocument"]["afr_ota"]["files"][0];
        return Some(format!(
            "aws → {thing} job {} {}: {} B to {}, certfile {}",
            execution["jobId"].as_str().unwrap_or("?"),
            execution["status"].as_str().unwrap_or("?"),
            file["filesize"].as_u64().unwrap_or(0),
            file["filepath"].as_str().unwrap_or("?"),
            file["certfile"].as_str().unwrap_or("?"),
        ));
    }
    if let Some(stream) = rest.strip_prefix("streams/").and_then(|s| s.strip_suffix("/data/cbor")) {
        let block = ciborium::from_reader::<ciborium::Value, _>(payload).ok().and_then(|value| match value {
            ciborium::Value::Map(fields) => fields.into_iter().find_map(|(key, value)| match (key, value) {
                (ciborium::Value::Text(key), ciborium::Value::Integer(index)) if key == "i" => {
                    Some(i128::from(index))
                }
                _ => None,
            }),
            _ => None,
        });
        let block = block.map_or_else(|| "?".to_owned(), |index| index.to_string());
        return Some(format!("aws → {thing} stream {stream} block {block} ({} B)", payload.len()));
    }
    Some(format!("aws {topic} ({} B) {}", payload.len(), hex_preview(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::aws::{Block, encode_block, encode_no_job};

    #[test]
    fn each_message_of_the_transcript_reads_in_a_line() {
        let t = "$aws/things/thing-1";
        let line = |topic: &str, payload: &[u8]| describe(&format!("{t}/{topic}"), payload).unwrap();
        assert_eq!(
            line("jobs/$next/get", br#"{"clientToken":":thing-1"}"#),
            "aws ← thing-1 asks for its next job"
        );
        assert_eq!(
            line(
                "jobs/rocky-7/update",
                br#"{"status":"FAILED","statusDetails":{"reason":"0x000000e3: 0x00000000"}}"#
            ),
            "aws ← thing-1 job rocky-7: FAILED (reason the signature check failed (0x000000e3: 0x00000000))"
        );
        let mut request = Vec::new();
        let text = |s: &str| ciborium::Value::Text(s.into());
        let map = ciborium::Value::Map(vec![
            (text("f"), ciborium::Value::Integer(0.into())),
            (text("l"), ciborium::Value::Integer(4096.into())),
            (text("o"), ciborium::Value::Integer(0.into())),
            (text("b"), ciborium::Value::Bytes(vec![0x1f])),
            (text("n"), ciborium::Value::Integer(8.into())),
        ]);
        ciborium::into_writer(&map, &mut request).unwrap();
        assert_eq!(
            line("streams/rocky-7/get/cbor", &request),
            "aws ← thing-1 stream rocky-7: blocks 0–4 needed, 8 at a time of 4096 B"
        );
        assert_eq!(line("jobs/notify-next", &encode_no_job(1)), "aws → thing-1 no job");
        let block = encode_block(&Block { file_id: 0, index: 3, bytes: &[1; 100] });
        assert_eq!(line("streams/rocky-7/data/cbor", &block), "aws → thing-1 stream rocky-7 block 3 (115 B)");
        assert!(line("streams/rocky-7/get/cbor", &[0xff]).contains("decode error"));
        assert_eq!(describe("/fota/cmd/x", b""), None);
    }
}
