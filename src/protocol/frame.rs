//! Command and response frames: `encode_*` for what Rocky (or a simulated device) sends,
//! `decode_*` for what arrives. Decoding never panics: every malformed input is a [`DecodeError`]
//! that says what was wrong.

use ciborium::Value;

use super::cbor::{MAJOR_ARRAY, MAJOR_BYTES, MAJOR_TEXT, MAJOR_UNSIGNED, push_head};
use super::{CommandType, Direction, Reason, Sha256};

/// How the image hash is written in FOTA_REQUEST. Both are accepted on decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashEncoding {
    /// A CBOR array of 32 unsigned integers, as the original Rocky sends it (the default).
    #[default]
    Array,
    /// A CBOR byte string (major type 2), 34 bytes on the wire instead of up to 66.
    Bytes,
}

/// A frame on `{prefix}/cmd/{device}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub job_id: u32,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    /// `manifest` is the manifest extension's fourth item: a tagged COSE_Sign1, embedded as it
    /// is (its bytes were signed; nothing re-encodes them), for devices that declared `manifest`.
    /// `delta` is the delta extension's fifth item (the chunks are then a patch); the fourth is
    /// then the manifest or `null`.
    Request {
        hash: Sha256,
        manifest: Option<bytes::Bytes>,
        delta: Option<DeltaItem>,
    },
    Done,
}

/// The delta descriptor, `{1: base sha256, 2: "bsdiff4", 3: patch size, 4: patch sha256}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaItem {
    pub base: Sha256,
    pub size: u64,
    pub sha256: Sha256,
}

/// The only patch format the delta extension names.
pub const DELTA_FORMAT: &str = "bsdiff4";

/// A frame on `{prefix}/cmd_resp/{device}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub job_id: u32,
    pub body: ResponseBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// `next_chunk` is the resume extension: the device holds chunks `1..next_chunk`. A
    /// `window` of at least 1 opts the job into flow control; 0 or none is version 1 push.
    RequestAck {
        next_chunk: Option<u32>,
        window: Option<u32>,
    },
    /// `reason` is the reasons extension: the device's text or code, if it sent one.
    RequestNack {
        reason: Option<Reason>,
    },
    DoneSuccess,
    DoneFailed {
        reason: Option<Reason>,
    },
    /// FOTA_PROGRESS: the device holds every chunk below `next_chunk`; a `window` replaces
    /// the job's (0 pauses until the next FOTA_PROGRESS).
    Progress {
        next_chunk: u32,
        window: Option<u32>,
    },
}

impl Command {
    pub fn command_type(&self) -> CommandType {
        match self.body {
            CommandBody::Request { .. } => CommandType::Request,
            CommandBody::Done => CommandType::Done,
        }
    }
}

impl Response {
    pub fn command_type(&self) -> CommandType {
        match self.body {
            ResponseBody::RequestAck { .. } => CommandType::RequestAck,
            ResponseBody::RequestNack { .. } => CommandType::RequestNack,
            ResponseBody::DoneSuccess => CommandType::DoneSuccess,
            ResponseBody::DoneFailed { .. } => CommandType::DoneFailed,
            ResponseBody::Progress { .. } => CommandType::Progress,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("not CBOR: {0}")]
    NotCbor(String),
    #[error("{0} bytes after the end of the CBOR item")]
    TrailingBytes(usize),
    #[error("expected a CBOR array, got {0}")]
    NotArray(&'static str),
    #[error("expected at least {expected} items, got {got}")]
    TooFewItems { expected: usize, got: usize },
    #[error("job id must be an unsigned integer of at most 32 bits, got {0}")]
    BadJobId(String),
    #[error("unknown command type {0}")]
    UnknownCommand(String),
    #[error("{0} does not belong on this topic")]
    WrongTopic(CommandType),
    #[error("bad image hash: {0}")]
    BadHash(String),
    #[error("bad delta descriptor: {0}")]
    BadDelta(String),
    #[error("next_chunk_id must be an unsigned integer, got {0}")]
    BadChunk(String),
}

/// Encodes `[job_id, command_type, hash | [], manifest?, delta?]` exactly as `PROTOCOL.md`
/// fixes it (a delta without a manifest sends `null` in the fourth place).
pub fn encode_command(command: &Command, encoding: HashEncoding) -> Vec<u8> {
    let (manifest, delta) = match &command.body {
        CommandBody::Request { manifest, delta, .. } => (manifest.as_ref(), delta.as_ref()),
        CommandBody::Done => (None, None),
    };
    let items = if delta.is_some() {
        5
    } else if manifest.is_some() {
        4
    } else {
        3
    };
    let mut out =
        Vec::with_capacity(72 + manifest.map_or(0, |m| m.len()) + if delta.is_some() { 90 } else { 0 });
    push_head(&mut out, MAJOR_ARRAY, items);
    push_head(&mut out, MAJOR_UNSIGNED, u64::from(command.job_id));
    push_head(&mut out, MAJOR_UNSIGNED, u64::from(command.command_type().code()));
    match (&command.body, encoding) {
        (CommandBody::Request { hash, .. }, HashEncoding::Array) => {
            push_head(&mut out, MAJOR_ARRAY, hash.len() as u64);
            for byte in hash {
                push_head(&mut out, MAJOR_UNSIGNED, u64::from(*byte));
            }
        }
        (CommandBody::Request { hash, .. }, HashEncoding::Bytes) => {
            push_head(&mut out, MAJOR_BYTES, hash.len() as u64);
            out.extend_from_slice(hash);
        }
        (CommandBody::Done, _) => push_head(&mut out, MAJOR_ARRAY, 0),
    }
    match (manifest, delta) {
        (Some(manifest), _) => out.extend_from_slice(manifest),
        (None, Some(_)) => out.push(CBOR_NULL),
        (None, None) => {}
    }
    if let Some(delta) = delta {
        push_head(&mut out, MAJOR_MAP, 4);
        push_head(&mut out, MAJOR_UNSIGNED, 1);
        push_head(&mut out, MAJOR_BYTES, 32);
        out.extend_from_slice(&delta.base);
        push_head(&mut out, MAJOR_UNSIGNED, 2);
        push_head(&mut out, MAJOR_TEXT, DELTA_FORMAT.len() as u64);
        out.extend_from_slice(DELTA_FORMAT.as_bytes());
        push_head(&mut out, MAJOR_UNSIGNED, 3);
        push_head(&mut out, MAJOR_UNSIGNED, delta.size);
        push_head(&mut out, MAJOR_UNSIGNED, 4);
        push_head(&mut out, MAJOR_BYTES, 32);
        out.extend_from_slice(&delta.sha256);
    }
    out
}

const MAJOR_MAP: u8 = 5;
/// CBOR `null` (major 7, simple value 22).
const CBOR_NULL: u8 = 0xf6;

/// Reads the delta descriptor; a map that is not one is a decode error.
fn decode_delta(item: &Value) -> Result<DeltaItem, DecodeError> {
    let bad = |why: &str| DecodeError::BadDelta(why.to_owned());
    let Value::Map(entries) = item else { return Err(bad("not a map")) };
    let get = |key: u64| entries.iter().find(|(k, _)| as_u64(k) == Some(key)).map(|(_, v)| v);
    let hash = |key: u64, what: &str| -> Result<Sha256, DecodeError> {
        get(key)
            .and_then(Value::as_bytes)
            .and_then(|b| Sha256::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad(&format!("key {key} ({what}) must be 32 bytes")))
    };
    if get(2).and_then(Value::as_text) != Some(DELTA_FORMAT) {
        return Err(bad("key 2 (format) must be \"bsdiff4\""));
    }
    Ok(DeltaItem {
        base: hash(1, "base sha256")?,
        size: get(3).and_then(as_u64).ok_or_else(|| bad("key 3 (patch size) must be unsigned"))?,
        sha256: hash(4, "patch sha256")?,
    })
}

/// Encodes a device's response with every extension `PROTOCOL.md` lists: the resume point and
/// the window of an ACK, FOTA_PROGRESS, and reasons. Used by the simulated devices.
pub fn encode_response(response: &Response) -> Vec<u8> {
    enum Item<'a> {
        Number(u64),
        Text(&'a str),
    }
    let number = |n: u32| Item::Number(u64::from(n));
    let extra: Vec<Item> = match &response.body {
        // A window needs the resume point before it: "nothing held" is chunk 1.
        ResponseBody::RequestAck { next_chunk, window: Some(window) } => {
            vec![number(next_chunk.unwrap_or(1)), number(*window)]
        }
        ResponseBody::RequestAck { next_chunk: Some(next), window: None } => vec![number(*next)],
        ResponseBody::Progress { next_chunk, window } => {
            std::iter::once(number(*next_chunk)).chain(window.map(number)).collect()
        }
        ResponseBody::RequestNack { reason: Some(reason) }
        | ResponseBody::DoneFailed { reason: Some(reason) } => match reason {
            Reason::Text(text) => vec![Item::Text(text)],
            Reason::Code(code) => vec![Item::Number(*code)],
        },
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(16);
    push_head(&mut out, MAJOR_ARRAY, 2 + extra.len() as u64);
    push_head(&mut out, MAJOR_UNSIGNED, u64::from(response.job_id));
    push_head(&mut out, MAJOR_UNSIGNED, u64::from(response.command_type().code()));
    for item in extra {
        match item {
            Item::Number(n) => push_head(&mut out, MAJOR_UNSIGNED, n),
            Item::Text(text) => {
                push_head(&mut out, MAJOR_TEXT, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    out
}

/// Decodes a frame from `cmd_resp`. Extra trailing items are accepted (extensions).
pub fn decode_response(payload: &[u8]) -> Result<Response, DecodeError> {
    let (job_id, ty, rest) = decode_head(payload)?;
    if ty.direction() != Direction::FromDevice {
        return Err(DecodeError::WrongTopic(ty));
    }
    let number =
        |index: usize| rest.get(index).and_then(as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let body = match ty {
        CommandType::RequestAck => ResponseBody::RequestAck {
            // A third item that is not a chunk number is some other extension: ignored.
            next_chunk: number(0),
            window: number(1),
        },
        CommandType::RequestNack => ResponseBody::RequestNack { reason: reason_item(&rest) },
        CommandType::DoneFailed => ResponseBody::DoneFailed { reason: reason_item(&rest) },
        CommandType::Progress => {
            let item = rest.first().ok_or(DecodeError::TooFewItems { expected: 3, got: 2 })?;
            let next_chunk = as_u64(item)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                .ok_or_else(|| DecodeError::BadChunk(render(item)))?;
            ResponseBody::Progress { next_chunk, window: number(1) }
        }
        _ => ResponseBody::DoneSuccess,
    };
    Ok(Response { job_id, body })
}

/// Decodes a frame from `cmd` (what a device reads, and what the traffic view renders).
pub fn decode_command(payload: &[u8]) -> Result<Command, DecodeError> {
    let (job_id, ty, rest) = decode_head(payload)?;
    let body = match ty {
        CommandType::Request => {
            let item = rest.first().ok_or(DecodeError::TooFewItems { expected: 3, got: 2 })?;
            // The manifest item as CBOR bytes again (`null`, as a delta request without a
            // manifest sends it, is none); what it says is the manifest decoder's business.
            let manifest = match rest.get(1) {
                None | Some(Value::Null) => None,
                Some(value) => {
                    let mut bytes = Vec::new();
                    ciborium::into_writer(value, &mut bytes)
                        .map_err(|e| DecodeError::NotCbor(e.to_string()))?;
                    Some(bytes.into())
                }
            };
            let delta = rest.get(2).map(decode_delta).transpose()?;
            CommandBody::Request { hash: decode_hash(item)?, manifest, delta }
        }
        CommandType::Done => CommandBody::Done,
        other => return Err(DecodeError::WrongTopic(other)),
    };
    Ok(Command { job_id, body })
}

/// Parses the whole payload as one CBOR array and reads its `[job_id, command_type]` head.
fn decode_head(payload: &[u8]) -> Result<(u32, CommandType, Vec<Value>), DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader = payload;
    let value: Value = ciborium::from_reader(&mut reader).map_err(not_cbor)?;
    if !reader.is_empty() {
        return Err(DecodeError::TrailingBytes(reader.len()));
    }
    let items = match value {
        Value::Array(items) => items,
        other => return Err(DecodeError::NotArray(kind(&other))),
    };
    if items.len() < 2 {
        return Err(DecodeError::TooFewItems { expected: 2, got: items.len() });
    }
    let mut items = items.into_iter();
    let (Some(id), Some(ty)) = (items.next(), items.next()) else {
        return Err(DecodeError::TooFewItems { expected: 2, got: 0 });
    };
    let job_id =
        as_u64(&id).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| DecodeError::BadJobId(render(&id)))?;
    let ty = as_u64(&ty)
        .and_then(CommandType::from_code)
        .ok_or_else(|| DecodeError::UnknownCommand(render(&ty)))?;
    Ok((job_id, ty, items.collect()))
}

/// Accepts the hash as an array of 32 unsigned integers below 256 or as a 32-byte string.
pub(super) fn decode_hash(item: &Value) -> Result<Sha256, DecodeError> {
    let bytes: Vec<u8> = match item {
        Value::Bytes(bytes) => bytes.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| as_u64(v).and_then(|n| u8::try_from(n).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| DecodeError::BadHash("array items must be integers from 0 to 255".into()))?,
        other => return Err(DecodeError::BadHash(format!("expected bytes or array, got {}", kind(other)))),
    };
    Sha256::try_from(bytes.as_slice())
        .map_err(|_| DecodeError::BadHash(format!("{} bytes, expected 32", bytes.len())))
}

/// ciborium's errors in words a person reads in the traffic pane.
pub(super) fn not_cbor(error: ciborium::de::Error<std::io::Error>) -> DecodeError {
    use ciborium::de::Error;
    DecodeError::NotCbor(match error {
        Error::Io(_) => "the payload ends in the middle of an item".to_owned(),
        Error::Syntax(offset) => format!("malformed item at byte {offset}"),
        Error::Semantic(Some(offset), message) => format!("{} at byte {offset}", unwrap_nested(&message)),
        Error::Semantic(None, message) => unwrap_nested(&message).to_owned(),
        Error::RecursionLimitExceeded => "nested too deeply".to_owned(),
    })
}

/// ciborium reports some errors as the debug form of another (`Semantic(None, "…")`): keep
/// only the quoted sentence.
fn unwrap_nested(message: &str) -> &str {
    match (message.starts_with("Semantic("), message.find('"'), message.rfind('"')) {
        (true, Some(start), Some(end)) if end > start => &message[start + 1..end],
        _ => message,
    }
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// The reasons extension's third item: a text (kept up to 200 bytes) or an unsigned code.
fn reason_item(rest: &[Value]) -> Option<Reason> {
    match rest.first() {
        Some(Value::Text(text)) => Some(Reason::text(text)),
        Some(value) => as_u64(value).map(Reason::Code),
        None => None,
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "an integer",
        Value::Bytes(_) => "a byte string",
        Value::Float(_) => "a float",
        Value::Text(_) => "a text string",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Tag(..) => "a tagged item",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        _ => "an unknown item",
    }
}

/// A short rendering of a scalar for error messages.
pub(super) fn render(value: &Value) -> String {
    match value {
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(t) => format!("{:?}", t.chars().take(32).collect::<String>()),
        other => kind(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_in_both_hash_encodings() {
        let hash: Sha256 = std::array::from_fn(|i| (i * 7) as u8);
        for encoding in [HashEncoding::Array, HashEncoding::Bytes] {
            for job_id in [0, 1, 23, 24, 9394, 65_536, u32::MAX] {
                let cmd =
                    Command { job_id, body: CommandBody::Request { hash, manifest: None, delta: None } };
                assert_eq!(decode_command(&encode_command(&cmd, encoding)), Ok(cmd));
            }
        }
    }

    #[test]
    fn command_bytes_equal_ciborium_encoding() {
        let hash: Sha256 = std::array::from_fn(|i| (255 - i * 3) as u8);
        let value = Value::Array(vec![
            Value::Integer(70_000.into()),
            Value::Integer(1.into()),
            Value::Array(hash.iter().map(|b| Value::Integer((*b).into())).collect()),
        ]);
        let mut expected = Vec::new();
        ciborium::into_writer(&value, &mut expected).unwrap();
        let cmd =
            Command { job_id: 70_000, body: CommandBody::Request { hash, manifest: None, delta: None } };
        assert_eq!(encode_command(&cmd, HashEncoding::Array), expected);
    }

    #[test]
    fn responses_round_trip_including_resume() {
        for body in [
            ResponseBody::RequestAck { next_chunk: None, window: None },
            ResponseBody::RequestAck { next_chunk: Some(17), window: None },
            ResponseBody::RequestAck { next_chunk: Some(u32::MAX), window: None },
            ResponseBody::RequestNack { reason: None },
            ResponseBody::DoneSuccess,
            ResponseBody::DoneFailed { reason: None },
        ] {
            let resp = Response { job_id: 4_000_000_000, body };
            assert_eq!(decode_response(&encode_response(&resp)), Ok(resp));
        }
    }

    #[test]
    fn trailing_items_and_text_reasons_are_accepted() {
        let mut bytes = Vec::new();
        let v = Value::Array(vec![
            Value::Integer(5.into()),
            Value::Integer(6.into()),
            Value::Text("hash mismatch".into()),
            Value::Map(vec![]),
        ]);
        ciborium::into_writer(&v, &mut bytes).unwrap();
        let resp = decode_response(&bytes).unwrap();
        assert_eq!(resp.body, ResponseBody::DoneFailed { reason: Some(Reason::text("hash mismatch")) });
        // An ACK whose third item is not a chunk number is an ACK without resume.
        let mut ack = Vec::new();
        let v = Value::Array(vec![5.into(), 2.into(), Value::Text("x".into())]);
        ciborium::into_writer(&v, &mut ack).unwrap();
        assert_eq!(
            decode_response(&ack).unwrap().body,
            ResponseBody::RequestAck { next_chunk: None, window: None }
        );
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        assert_eq!(decode_response(&[]), Err(DecodeError::Empty));
        assert!(matches!(decode_response(&[0x82, 0x01, 0x02, 0x00]), Err(DecodeError::TrailingBytes(1))));
        assert!(matches!(
            decode_response(&[0x82, 0x01, 0x01]),
            Err(DecodeError::WrongTopic(CommandType::Request))
        ));
        assert!(matches!(
            decode_command(&[0x82, 0x01, 0x02]),
            Err(DecodeError::WrongTopic(CommandType::RequestAck))
        ));
        // FOTA_REQUEST without a hash, with a short hash, with an out-of-range byte.
        assert!(matches!(decode_command(&[0x82, 0x01, 0x01]), Err(DecodeError::TooFewItems { .. })));
        assert!(matches!(decode_command(&[0x83, 0x01, 0x01, 0x41, 0x00]), Err(DecodeError::BadHash(_))));
        assert!(matches!(
            decode_command(&[0x83, 0x01, 0x01, 0x81, 0x19, 0x01, 0x00]),
            Err(DecodeError::BadHash(_))
        ));
        // Deep nesting is refused by ciborium's recursion limit, not by a stack overflow.
        let deep = vec![0x81u8; 100_000];
        assert!(decode_response(&deep).is_err());
    }
}
