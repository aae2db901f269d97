//! The MQTT file stream of the AWS OTA profile, in CBOR: a device's request for blocks (a
//! bitmap of the blocks it still needs, from a block offset) and the blocks Rocky sends, one
//! message each.

use ciborium::Value;

/// Block sizes taken: a device asks for its own within these (AWS's service allows 256 B to
/// 128 KiB; a block must fit one MQTT message on any broker).
pub const MIN_BLOCK_SIZE: u32 = 256;
pub const MAX_BLOCK_SIZE: u32 = 64 * 1024;
/// The most blocks one request may ask for (the agent asks for 8 at most).
pub const MAX_BLOCKS_PER_REQUEST: u32 = 64;
/// The largest bitmap taken: a bit per block, so 262,144 blocks (64 MiB of 256-byte blocks).
pub const MAX_BITMAP_BYTES: usize = 32 * 1024;
/// The largest request taken from a device, before it is decoded.
pub const MAX_REQUEST_BYTES: usize = MAX_BITMAP_BYTES + 256;
/// The longest client token taken.
const MAX_CLIENT_TOKEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("{0} bytes, more than the {MAX_REQUEST_BYTES} a block request may be")]
    TooLarge(usize),
    #[error("not CBOR: {0}")]
    Cbor(String),
    #[error("field {field:?}: {reason}")]
    Field { field: &'static str, reason: String },
}

/// A device's request for blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRequest {
    /// `c`: the agent's client token (echoed nowhere; kept for the traffic view).
    pub client_token: Option<String>,
    /// `f`: which file of the job.
    pub file_id: u32,
    /// `l`: the block size it wants.
    pub block_size: u32,
    /// `o`: the block the bitmap's first bit stands for.
    pub offset: u32,
    /// `b`: bit i (bit i mod 8 of byte i / 8, lowest first) set = block offset + i still needed.
    pub bitmap: Vec<u8>,
    /// `n`: how many blocks it wants now.
    pub count: u32,
}

impl BlockRequest {
    /// The blocks to send for this request, first `count` of those the bitmap asks for that
    /// exist in a file of `total_blocks`; and how many asked-for blocks lie past its end
    /// (counted by the caller, never sent).
    pub fn wanted(&self, total_blocks: u32) -> (Vec<u32>, u32) {
        let mut wanted = Vec::new();
        let mut past_end = 0u32;
        for (byte_index, byte) in self.bitmap.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                let block = u64::from(self.offset) + byte_index as u64 * 8 + u64::from(bit);
                match u32::try_from(block) {
                    Ok(block) if block < total_blocks => {
                        if wanted.len() < self.count as usize {
                            wanted.push(block);
                        }
                    }
                    _ => past_end = past_end.saturating_add(1),
                }
            }
        }
        (wanted, past_end)
    }

    /// The blocks of a file of `total_blocks` the device holds by this request's word, one bit
    /// each (block i: bit i % 64 of word i / 64): those before the bitmap's first and those
    /// whose bit is clear; blocks past the bitmap's end count as needed. The work is bounded
    /// by the request's own size and the file's block count / 64.
    pub fn held(&self, total_blocks: u32) -> Vec<u64> {
        let total = total_blocks as usize;
        let mut held = vec![u64::MAX; total.div_ceil(64)];
        if !total.is_multiple_of(64)
            && let Some(last) = held.last_mut()
        {
            *last = (1u64 << (total % 64)) - 1;
        }
        let offset = self.offset as usize;
        let covered_end = offset.saturating_add(self.bitmap.len().saturating_mul(8));
        clear_range(&mut held, covered_end.min(total), total);
        for (byte_index, byte) in self.bitmap.iter().enumerate() {
            for bit in (0..8).filter(|bit| byte & (1 << bit) != 0) {
                let block = offset.saturating_add(byte_index * 8 + bit);
                if block < total {
                    held[block / 64] &= !(1u64 << (block % 64));
                }
            }
        }
        held
    }

    /// "blocks 0–4 of 5 needed" for the traffic view: the first and last block asked for.
    pub fn summary(&self, total_blocks: Option<u32>) -> String {
        let (wanted, _) = self.wanted(u32::MAX);
        let asked = match (wanted.first(), wanted.last()) {
            (Some(first), Some(last)) if first == last => format!("block {first}"),
            (Some(first), Some(last)) => format!("blocks {first}–{last}"),
            _ => "no block".to_owned(),
        };
        let of = total_blocks.map(|t| format!(" of {t}")).unwrap_or_default();
        format!("{asked}{of} needed, {} at a time of {} B", self.count, self.block_size)
    }
}

/// Clears bits `from..to` of `bits`, a word at a time.
fn clear_range(bits: &mut [u64], from: usize, to: usize) {
    let mut at = from;
    while at < to {
        let (word, bit) = (at / 64, at % 64);
        let span = (64 - bit).min(to - at);
        let mask = if span == 64 { u64::MAX } else { ((1u64 << span) - 1) << bit };
        if let Some(w) = bits.get_mut(word) {
            *w &= !mask;
        }
        at += span;
    }
}

/// A byte string of 1 to `max` bytes.
fn field_bytes<'a>(value: &'a Value, field: &'static str, max: usize) -> Result<&'a [u8], StreamError> {
    match value {
        Value::Bytes(bytes) if !bytes.is_empty() && bytes.len() <= max => Ok(bytes),
        _ => Err(StreamError::Field { field, reason: format!("not a byte string of 1 to {max} bytes") }),
    }
}

fn field_u32(value: &Value, field: &'static str) -> Result<u32, StreamError> {
    let bad = |reason: &str| StreamError::Field { field, reason: reason.to_owned() };
    match value {
        Value::Integer(n) => {
            u32::try_from(i128::from(*n)).map_err(|_| bad("not a number from 0 to 2^32 - 1"))
        }
        _ => Err(bad("not an unsigned number")),
    }
}

/// Decodes a request for blocks, checking every bound.
pub fn decode_block_request(payload: &[u8]) -> Result<BlockRequest, StreamError> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(StreamError::TooLarge(payload.len()));
    }
    let value: Value = ciborium::from_reader(payload).map_err(|e| StreamError::Cbor(e.to_string()))?;
    let Value::Map(entries) = value else {
        return Err(StreamError::Cbor("not a map".into()));
    };
    let mut request = BlockRequest {
        client_token: None,
        file_id: 0,
        block_size: 0,
        offset: 0,
        bitmap: Vec::new(),
        count: 0,
    };
    let (mut size_given, mut bitmap_given, mut count_given) = (false, false, false);
    for (key, value) in &entries {
        let Value::Text(key) = key else { continue };
        match key.as_str() {
            "c" => match value {
                Value::Text(token) if token.len() <= MAX_CLIENT_TOKEN => {
                    request.client_token = Some(token.clone())
                }
                _ => {
                    return Err(StreamError::Field {
                        field: "c",
                        reason: format!("not text of at most {MAX_CLIENT_TOKEN} bytes"),
                    });
                }
            },
            "f" => request.file_id = field_u32(value, "f")?,
            "l" => {
                request.block_size = field_u32(value, "l")?;
                size_given = true;
            }
            "o" => request.offset = field_u32(value, "o")?,
            "n" => {
                request.count = field_u32(value, "n")?;
                count_given = true;
            }
            "b" => {
                request.bitmap = field_bytes(value, "b", MAX_BITMAP_BYTES)?.to_vec();
                bitmap_given = true;
            }
            _ => {}
        }
    }
    let missing = |field: &'static str| StreamError::Field { field, reason: "missing".into() };
    if !size_given {
        return Err(missing("l"));
    }
    if !bitmap_given {
        return Err(missing("b"));
    }
    if !count_given {
        return Err(missing("n"));
    }
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&request.block_size) {
        return Err(StreamError::Field {
            field: "l",
            reason: format!(
                "{} is not a block size from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}",
                request.block_size
            ),
        });
    }
    if !(1..=MAX_BLOCKS_PER_REQUEST).contains(&request.count) {
        return Err(StreamError::Field {
            field: "n",
            reason: format!("{} is not a count from 1 to {MAX_BLOCKS_PER_REQUEST}", request.count),
        });
    }
    Ok(request)
}

/// One block Rocky sends: `{"f": file, "i": index, "l": length, "p": bytes}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'a> {
    pub file_id: u32,
    pub index: u32,
    pub bytes: &'a [u8],
}

/// Encodes a block (keys in the order the agent's own server sends them).
pub fn encode_block(block: &Block<'_>) -> Vec<u8> {
    let map = Value::Map(vec![
        (Value::Text("f".into()), Value::Integer(block.file_id.into())),
        (Value::Text("i".into()), Value::Integer(block.index.into())),
        (Value::Text("l".into()), Value::Integer((block.bytes.len() as u64).into())),
        (Value::Text("p".into()), Value::Bytes(block.bytes.to_vec())),
    ]);
    let mut out = Vec::with_capacity(block.bytes.len() + 32);
    // Writing into a Vec cannot fail.
    let _ = ciborium::into_writer(&map, &mut out);
    out
}

/// Encodes a request for blocks as the agent writes it (`c`, `f`, `l`, `o`, `b`, `n`): what a
/// simulated device of the profile sends.
pub fn encode_block_request(request: &BlockRequest) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.into());
    let mut map = Vec::with_capacity(6);
    if let Some(token) = &request.client_token {
        map.push((text("c"), text(token)));
    }
    map.extend([
        (text("f"), Value::Integer(request.file_id.into())),
        (text("l"), Value::Integer(request.block_size.into())),
        (text("o"), Value::Integer(request.offset.into())),
        (text("b"), Value::Bytes(request.bitmap.clone())),
        (text("n"), Value::Integer(request.count.into())),
    ]);
    let mut out = Vec::with_capacity(request.bitmap.len() + 32);
    // Writing into a Vec cannot fail.
    let _ = ciborium::into_writer(&Value::Map(map), &mut out);
    out
}

/// A block as a device receives it (owned: it outlives the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedBlock {
    pub file_id: u32,
    pub index: u32,
    pub bytes: Vec<u8>,
}

/// The most a block message may hold: the largest block and its keys.
pub const MAX_BLOCK_MESSAGE: usize = MAX_BLOCK_SIZE as usize + 64;

/// Decodes a block (`{"f", "i", "l", "p"}`) as a device reads it: `l` must be the length of
/// `p`, and the block at most [`MAX_BLOCK_SIZE`].
pub fn decode_block(payload: &[u8]) -> Result<ReceivedBlock, StreamError> {
    if payload.len() > MAX_BLOCK_MESSAGE {
        return Err(StreamError::TooLarge(payload.len()));
    }
    let value: Value = ciborium::from_reader(payload).map_err(|e| StreamError::Cbor(e.to_string()))?;
    let Value::Map(entries) = value else {
        return Err(StreamError::Cbor("not a map".into()));
    };
    let (mut file_id, mut index, mut length, mut bytes) = (0, None, None, None);
    for (key, value) in entries {
        let Value::Text(key) = key else { continue };
        match key.as_str() {
            "f" => file_id = field_u32(&value, "f")?,
            "i" => index = Some(field_u32(&value, "i")?),
            "l" => length = Some(field_u32(&value, "l")?),
            "p" => bytes = Some(field_bytes(&value, "p", MAX_BLOCK_SIZE as usize)?.to_vec()),
            _ => {}
        }
    }
    let missing = |field: &'static str| StreamError::Field { field, reason: "missing".into() };
    let index = index.ok_or_else(|| missing("i"))?;
    let bytes = bytes.ok_or_else(|| missing("p"))?;
    if length.is_some_and(|l| l as usize != bytes.len()) {
        return Err(StreamError::Field { field: "l", reason: format!("not the {} bytes of p", bytes.len()) });
    }
    Ok(ReceivedBlock { file_id, index, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_device_holds_is_read_from_its_bitmap() {
        let ask = |offset: u32, bitmap: Vec<u8>| BlockRequest {
            client_token: None,
            file_id: 0,
            block_size: 4096,
            offset,
            bitmap,
            count: 8,
        };
        // Blocks 1 and 3 needed of 5: it holds 0, 2 and 4.
        assert_eq!(ask(0, vec![0b0000_1010]).held(5), vec![0b10101]);
        // A bitmap from block 64 on: everything before it is held; past its end is needed.
        let held = ask(64, vec![0b0000_0001]).held(130);
        assert_eq!(held, vec![u64::MAX, 0b1111_1110, 0]);
        // An empty bitmap says nothing of the file: nothing is held.
        assert_eq!(ask(0, Vec::new()).held(70), vec![0, 0]);
        // All needed: nothing held; an offset past the end holds the whole file.
        assert_eq!(ask(0, vec![0xff; 2]).held(16), vec![0]);
        assert_eq!(ask(u32::MAX, vec![0xff]).held(3), vec![0b111]);
        let count = |bits: Vec<u64>| bits.iter().map(|w| w.count_ones()).sum::<u32>();
        assert_eq!(count(ask(0, vec![0xff; 1000]).held(100_000)), 0);
    }

    #[test]
    fn what_a_device_sends_and_reads_goes_back_and_forth_through_rockys_side() {
        let asked = decode_block_request(&transcripts()).unwrap();
        assert_eq!(encode_block_request(&asked), transcripts(), "byte for byte as the transcript's");
        let bytes = vec![7u8; 1633];
        let sent = encode_block(&Block { file_id: 0, index: 4, bytes: &bytes });
        assert_eq!(decode_block(&sent).unwrap(), ReceivedBlock { file_id: 0, index: 4, bytes });
        let lying = request(vec![
            ("f", Value::Integer(0.into())),
            ("i", Value::Integer(1.into())),
            ("l", Value::Integer(9.into())),
            ("p", Value::Bytes(vec![1, 2])),
        ]);
        assert!(decode_block(&lying).unwrap_err().to_string().contains("l"));
        assert!(decode_block(&request(vec![("i", Value::Integer(1.into()))])).is_err(), "no p");
        assert!(decode_block(b"\xff").is_err());
    }

    fn request(fields: Vec<(&str, Value)>) -> Vec<u8> {
        let map = Value::Map(fields.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect());
        let mut out = Vec::new();
        ciborium::into_writer(&map, &mut out).unwrap();
        out
    }

    fn transcripts() -> Vec<u8> {
        // {"c":"rdy","f":0,"l":4096,"o":0,"b":h'1f',"n":8}: 25 bytes, as the transcript says.
        request(vec![
            ("c", Value::Text("rdy".into())),
            ("f", Value::Integer(0.into())),
            ("l", Value::Integer(4096.into())),
            ("o", Value::Integer(0.into())),
            ("b", Value::Bytes(vec![0x1f])),
            ("n", Value::Integer(8.into())),
        ])
    }

    #[test]
    fn the_transcripts_request_asks_for_five_blocks_and_each_block_is_its_size() {
        let bytes = transcripts();
        assert_eq!(bytes.len(), 25);
        let asked = decode_block_request(&bytes).unwrap();
        assert_eq!((asked.block_size, asked.offset, asked.count, asked.file_id), (4096, 0, 8, 0));
        assert_eq!(asked.wanted(5), (vec![0, 1, 2, 3, 4], 0));
        assert_eq!(asked.wanted(3), (vec![0, 1, 2], 2), "blocks past the end are counted, not sent");
        assert_eq!(asked.summary(Some(5)), "blocks 0–4 of 5 needed, 8 at a time of 4096 B");
        let image = vec![7u8; 18000];
        let full = encode_block(&Block { file_id: 0, index: 1, bytes: &image[4096..8192] });
        assert_eq!(full.len(), 4113);
        let last = encode_block(&Block { file_id: 0, index: 4, bytes: &image[16384..] });
        assert_eq!(last.len(), 1633);
        let back: Value = ciborium::from_reader(&last[..]).unwrap();
        let Value::Map(fields) = back else { panic!("a map") };
        assert_eq!(fields[1], (Value::Text("i".into()), Value::Integer(4.into())));
        assert_eq!(fields[2], (Value::Text("l".into()), Value::Integer(1616.into())));
    }

    #[test]
    fn an_offset_moves_the_bitmap_and_count_caps_what_is_sent() {
        let bytes = request(vec![
            ("f", Value::Integer(0.into())),
            ("l", Value::Integer(1024.into())),
            ("o", Value::Integer(16.into())),
            ("b", Value::Bytes(vec![0b1010_0001, 0xff])),
            ("n", Value::Integer(3.into())),
        ]);
        let asked = decode_block_request(&bytes).unwrap();
        assert_eq!(asked.client_token, None);
        assert_eq!(asked.wanted(100).0, vec![16, 21, 23]);
    }

    #[test]
    fn bad_requests_name_their_field() {
        let base = |l: i64, n: i64, b: Value| {
            request(vec![
                ("l", Value::Integer(l.into())),
                ("n", Value::Integer(n.into())),
                ("b", b),
                ("o", Value::Integer(0.into())),
            ])
        };
        let field = |bytes: Vec<u8>| match decode_block_request(&bytes) {
            Err(StreamError::Field { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(base(4096, 0, Value::Bytes(vec![1]))), "n");
        assert_eq!(field(base(4096, 1_000_000, Value::Bytes(vec![1]))), "n");
        assert_eq!(field(base(100, 1, Value::Bytes(vec![1]))), "l");
        assert_eq!(field(base(1 << 20, 1, Value::Bytes(vec![1]))), "l");
        assert_eq!(field(base(-1, 1, Value::Bytes(vec![1]))), "l");
        assert_eq!(field(base(4096, 1, Value::Bytes(Vec::new()))), "b");
        assert_eq!(field(base(4096, 1, Value::Text("x".into()))), "b");
        assert_eq!(
            field(request(vec![("l", Value::Integer(4096.into())), ("n", Value::Integer(1.into()))])),
            "b"
        );
        assert!(matches!(decode_block_request(&[0xff; 3]), Err(StreamError::Cbor(_))));
        assert!(matches!(
            decode_block_request(&vec![0; MAX_REQUEST_BYTES + 1]),
            Err(StreamError::TooLarge(_))
        ));
        // The most a bitmap may hold, with every bit set, asks for at most `n` blocks.
        let full = base(256, 8, Value::Bytes(vec![0xff; MAX_BITMAP_BYTES]));
        let asked = decode_block_request(&full).unwrap();
        assert_eq!(asked.wanted(u32::MAX).0.len(), 8);
    }
}
