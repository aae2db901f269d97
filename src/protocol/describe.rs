//! One-line renderings of frames for people: the traffic pane, the SSE stream and the logs all
//! show the same text, so a frame reads the same wherever it is seen.

use super::frame::{CommandBody, ResponseBody, decode_command, decode_response};
use super::reason::Reason;
use super::status::{StatusUpdate, decode_status};
use super::{FRESH_CHECKS_PER_S, Manifest, ManifestCheck, Sha256, TopicKind, Topics};

/// A manifest as the traffic pane shows it, what matters first (a line is cut at the pane's
/// width): `manifest (signature verified by Rocky: yes) seq 3 "2.1.0" 13 B, kid 21fe31dfa154a261,
/// protected {alg: EdDSA}`, or why it does not decode.
fn describe_manifest(bytes: &[u8], hash: &Sha256, check: Option<&ManifestCheck>) -> String {
    let manifest = match Manifest::decode(bytes) {
        Ok(manifest) => manifest,
        Err(e) => return format!("manifest unreadable: {e}"),
    };
    let payload = manifest.payload();
    let mut text = "manifest".to_owned();
    match check.map(|check| check.verifies(&manifest)) {
        Some(Some(verified)) => {
            let verified = if verified { "yes" } else { "no" };
            text.push_str(&format!(" (signature verified by Rocky: {verified})"));
        }
        Some(None) => text.push_str(&format!(
            " (signature not checked: more than {FRESH_CHECKS_PER_S} new manifests this second)"
        )),
        None => {}
    }
    text.push_str(&format!(" seq {}", payload.seq));
    if let Some(version) = &payload.version {
        text.push_str(&format!(" {version:?}"));
    }
    text.push_str(&format!(" {} B", payload.size));
    if payload.image_sha256 != *hash {
        text.push_str(&format!(" for another image {}", short_hash(&payload.image_sha256)));
    }
    text.push_str(&format!(", kid {}, protected {{alg: {}}}", manifest.kid(), manifest.alg()));
    text
}

/// How many payload bytes a hex preview shows before it elides the rest.
const PREVIEW_BYTES: usize = 16;

/// Renders any message under the prefix, e.g. `cmd → dev-07 [42, FOTA_REQUEST, sha256 c7de48a4…]`,
/// `resp ← dev-07 [42, FOTA_REQUEST_ACK]`, `data → dev-07 chunk 3 (4096 B)`; a frame that does
/// not decode shows the error and a hex preview, never a panic.
pub fn describe(topics: &Topics, topic: &str, payload: &[u8]) -> String {
    describe_with(topics, topic, payload, None)
}

/// [`describe`], and whether a manifest on the wire verifies under Rocky's trusted keys.
pub fn describe_with(topics: &Topics, topic: &str, payload: &[u8], check: Option<&ManifestCheck>) -> String {
    match topics.parse(topic) {
        Some(TopicKind::Cmd(device)) => match decode_command(payload) {
            Ok(cmd) => {
                let third = match &cmd.body {
                    CommandBody::Request { hash, manifest, delta } => {
                        let mut text = format!(", sha256 {}", short_hash(hash));
                        match (manifest, delta) {
                            (Some(manifest), _) => {
                                text.push_str(&format!(", {}", describe_manifest(manifest, hash, check)));
                            }
                            (None, Some(_)) => text.push_str(", no manifest"),
                            (None, None) => {}
                        }
                        if let Some(delta) = delta {
                            text.push_str(&format!(
                                ", delta from {}: patch of {} B, sha256 {}",
                                short_hash(&delta.base),
                                delta.size,
                                short_hash(&delta.sha256)
                            ));
                        }
                        text
                    }
                    CommandBody::Done => ", []".to_owned(),
                };
                format!("cmd → {device} [{}, {}{third}]", cmd.job_id, cmd.command_type())
            }
            Err(e) => format!("cmd → {device} decode error: {e} · {}", hex_preview(payload)),
        },
        Some(TopicKind::CmdResp(device)) => match decode_response(payload) {
            Ok(resp) => {
                let extra = match &resp.body {
                    ResponseBody::RequestAck { next_chunk, window } => {
                        let resume =
                            next_chunk.filter(|n| *n > 1).map(|n| format!(", resume from chunk {n}"));
                        let window = window.filter(|w| *w > 0).map(|w| format!(", window {w}"));
                        format!("{}{}", resume.unwrap_or_default(), window.unwrap_or_default())
                    }
                    ResponseBody::Progress { next_chunk, window } => {
                        let window = window.map(|w| format!(", window {w}")).unwrap_or_default();
                        format!(", next {next_chunk}{window}")
                    }
                    ResponseBody::RequestNack { reason: Some(r) }
                    | ResponseBody::DoneFailed { reason: Some(r) } => match r {
                        Reason::Text(text) => format!(", {text:?}"),
                        Reason::Code(code) => format!(", code {code}: {r}"),
                    },
                    _ => String::new(),
                };
                format!("resp ← {device} [{}, {}{extra}]", resp.job_id, resp.command_type())
            }
            Err(e) => format!("resp ← {device} decode error: {e} · {}", hex_preview(payload)),
        },
        Some(TopicKind::Data(device, chunk)) => {
            format!("data → {device} chunk {chunk} ({} B)", payload.len())
        }
        Some(TopicKind::Status(device)) => match decode_status(payload) {
            Ok(StatusUpdate::Cleared) => format!("status ← {device} cleared"),
            Ok(StatusUpdate::Reported { status, confirm_dropped }) => {
                let mut text = format!("status ← {device} runs {}", short_hash(&status.image));
                if let Some(version) = &status.version {
                    text.push_str(&format!(" ({version:?})"));
                }
                if let Some(boot) = status.boot {
                    text.push_str(&format!(", boot {boot}"));
                }
                if let Some(seq) = status.seq {
                    text.push_str(&format!(", seq {seq}"));
                }
                if !status.caps.is_empty() {
                    text.push_str(&format!(", speaks {}", status.caps.join(" ")));
                }
                if confirm_dropped {
                    text.push_str(" (confirm without boot: taken without confirm)");
                }
                text
            }
            Err(e) => format!("status ← {device} decode error: {e} · {}", hex_preview(payload)),
        },
        Some(TopicKind::Probe(name)) => format!("delivery probe of {name} ({} B)", payload.len()),
        None => super::aws::describe(topic, payload)
            .unwrap_or_else(|| format!("{topic} ({} B) {}", payload.len(), hex_preview(payload))),
    }
}

/// The first 8 hex digits of a hash and an ellipsis: enough to tell images apart at a glance.
pub fn short_hash(hash: &Sha256) -> String {
    format!("{}…", hex::encode(&hash[..4]))
}

/// `82 18 2a 18 63`, cut after 16 bytes with a count of what was left out.
pub fn hex_preview(payload: &[u8]) -> String {
    if payload.is_empty() {
        return "(empty)".to_owned();
    }
    let shown = &payload[..payload.len().min(PREVIEW_BYTES)];
    let mut text = shown.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    if payload.len() > PREVIEW_BYTES {
        text.push_str(&format!(" … (+{} B)", payload.len() - PREVIEW_BYTES));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_read_in_words() {
        let topics = Topics::default();
        let line = |payload: &[u8]| describe(&topics, "/fota/cmd_resp/dev-07", payload);
        assert_eq!(line(&[0x83, 0x18, 0x2a, 0x07, 0x18, 0x61]), "resp ← dev-07 [42, FOTA_PROGRESS, next 97]");
        assert_eq!(
            line(&[0x84, 0x18, 0x2a, 0x02, 0x11, 0x18, 0x20]),
            "resp ← dev-07 [42, FOTA_REQUEST_ACK, resume from chunk 17, window 32]"
        );
        assert_eq!(
            line(&[0x83, 0x18, 0x2a, 0x06, 0x0a]),
            "resp ← dev-07 [42, FOTA_DONE_FAILED, code 10: writing to flash failed]"
        );
    }
    use crate::protocol::{Command, HashEncoding, encode_command};

    #[test]
    fn renders_each_kind_of_frame() {
        let t = Topics::default();
        let hash: Sha256 = std::array::from_fn(|i| [0xc7, 0xde, 0x48, 0xa4][i % 4]);
        let req = encode_command(
            &Command { job_id: 42, body: CommandBody::Request { hash, manifest: None, delta: None } },
            HashEncoding::Array,
        );
        assert_eq!(
            describe(&t, "/fota/cmd/dev-07", &req),
            "cmd → dev-07 [42, FOTA_REQUEST, sha256 c7de48a4…]"
        );
        let done = encode_command(&Command { job_id: 42, body: CommandBody::Done }, HashEncoding::Array);
        assert_eq!(describe(&t, "/fota/cmd/dev-07", &done), "cmd → dev-07 [42, FOTA_DONE, []]");
        assert_eq!(
            describe(&t, "/fota/cmd_resp/dev-07", &[0x82, 0x18, 0x2a, 0x02]),
            "resp ← dev-07 [42, FOTA_REQUEST_ACK]"
        );
        assert_eq!(
            describe(&t, "/fota/cmd_resp/dev-07", &[0x83, 0x18, 0x2a, 0x02, 0x11]),
            "resp ← dev-07 [42, FOTA_REQUEST_ACK, resume from chunk 17]"
        );
        assert_eq!(describe(&t, "/fota/data/dev-07/3", &[0u8; 4096]), "data → dev-07 chunk 3 (4096 B)");
    }

    #[test]
    fn the_vector_request_with_a_manifest_reads_field_by_field_and_says_whether_rocky_verified_it() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/integration/data/protocol_vectors.json")).unwrap();
        let vector = &vectors["extensions"]["request_with_manifest"];
        let bytes = hex::decode(vector["cbor_hex"].as_str().unwrap()).unwrap();
        let topic = vector["topic"].as_str().unwrap();
        let t = Topics::default();
        let rest = " seq 3 \"2.1.0\" 13 B, kid 21fe31dfa154a261, protected {alg: EdDSA}]";
        assert_eq!(
            describe(&t, topic, &bytes),
            format!("cmd → dev-07 [42, FOTA_REQUEST, sha256 315f5bdb…, manifest{rest}")
        );
        let public = vectors["extensions"]["ed25519_public_key_hex"].as_str().unwrap();
        let mut trusted = crate::signing::TrustedKeys::default();
        trusted.add(crate::signing::PublicKey::parse(public).unwrap(), "vector".into());
        assert_eq!(
            describe_with(&t, topic, &bytes, Some(&ManifestCheck::new(trusted))),
            format!(
                "cmd → dev-07 [42, FOTA_REQUEST, sha256 315f5bdb…, manifest (signature verified by Rocky: yes){rest}"
            )
        );
        let distrusting = ManifestCheck::new(crate::signing::TrustedKeys::default());
        assert!(describe_with(&t, topic, &bytes, Some(&distrusting)).contains("by Rocky: no)"));
    }

    #[test]
    fn garbage_shows_the_error_and_a_hex_preview() {
        let t = Topics::default();
        let text = describe(&t, "/fota/cmd_resp/dev-07", &[0x82, 0x18, 0x2a, 0x18, 0x63]);
        assert_eq!(text, "resp ← dev-07 decode error: unknown command type 99 · 82 18 2a 18 63");
        assert_eq!(
            describe(&t, "/fota/cmd_resp/d", &[0xff, 0x00]),
            "resp ← d decode error: not CBOR: invalid type: break, expected non-break · ff 00"
        );
        assert_eq!(
            describe(&t, "/fota/cmd_resp/d", &[0x82, 0x18]),
            "resp ← d decode error: not CBOR: the payload ends in the middle of an item · 82 18"
        );
        let long = describe(&t, "/fota/cmd_resp/d", &[0xffu8; 40]);
        assert!(long.ends_with("… (+24 B)"), "{long}");
        assert_eq!(hex_preview(&[]), "(empty)");
    }
}
