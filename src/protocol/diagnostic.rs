//! CBOR diagnostic notation (RFC 8949 §8) for the traffic detail view: the exact structure of a
//! payload, whatever it is, so a malformed frame can be read as easily as a good one.

use ciborium::Value;

use super::frame::DecodeError;

/// Items rendered before the rest of an array, map or byte string is elided.
const MAX_ITEMS: usize = 64;

/// `[42, 1, h'315f…']`-style text for any CBOR payload; an error for bytes that are not CBOR.
pub fn diagnostic(payload: &[u8]) -> Result<String, DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader = payload;
    let value: Value = ciborium::from_reader(&mut reader).map_err(super::frame::not_cbor)?;
    let mut out = String::new();
    render(&value, &mut out);
    if !reader.is_empty() {
        out.push_str(&format!("  (+{} trailing bytes)", reader.len()));
    }
    Ok(out)
}

fn render(value: &Value, out: &mut String) {
    match value {
        Value::Integer(i) => out.push_str(&i128::from(*i).to_string()),
        Value::Bytes(bytes) => {
            out.push_str("h'");
            for b in bytes.iter().take(MAX_ITEMS) {
                out.push_str(&format!("{b:02x}"));
            }
            if bytes.len() > MAX_ITEMS {
                out.push_str(&format!("…(+{} B)", bytes.len() - MAX_ITEMS));
            }
            out.push('\'');
        }
        Value::Float(f) => out.push_str(&format!("{f:?}")),
        Value::Text(t) => out.push_str(&format!("{t:?}")),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
        Value::Tag(tag, inner) => {
            out.push_str(&format!("{tag}("));
            render(inner, out);
            out.push(')');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().take(MAX_ITEMS).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(item, out);
            }
            if items.len() > MAX_ITEMS {
                out.push_str(&format!(", …(+{} items)", items.len() - MAX_ITEMS));
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().take(MAX_ITEMS).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(k, out);
                out.push_str(": ");
                render(v, out);
            }
            out.push('}');
        }
        _ => out.push_str("undefined"),
    }
}

/// How wide a [`hex_dump`] row of `per_row` bytes is: offset, hex and ASCII.
pub fn hex_row_width(per_row: usize) -> usize {
    11 + 4 * per_row
}

/// A classic hex dump: offset, `per_row` bytes in hex (16 where it fits, fewer on a narrow
/// screen, so no row wraps), and their printable ASCII, each row [`hex_row_width`] wide.
pub fn hex_dump(payload: &[u8], max_bytes: usize, per_row: usize) -> Vec<String> {
    let per_row = per_row.max(1);
    let shown = &payload[..payload.len().min(max_bytes)];
    let mut lines: Vec<String> = shown
        .chunks(per_row)
        .enumerate()
        .map(|(row, bytes)| {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let ascii: String = bytes
                .iter()
                .map(|b| if b.is_ascii_graphic() || *b == b' ' { *b as char } else { '.' })
                .collect();
            let width = per_row * 3 - 1;
            format!("{:08x}  {:<width$}  {ascii}", row * per_row, hex.join(" "))
        })
        .collect();
    if payload.len() > shown.len() {
        lines.push(format!("… {} more bytes", payload.len() - shown.len()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_frames_in_diagnostic_notation() {
        assert_eq!(diagnostic(&[0x82, 0x18, 0x2a, 0x02]).unwrap(), "[42, 2]");
        assert_eq!(diagnostic(&[0x83, 0x18, 0x2a, 0x04, 0x80]).unwrap(), "[42, 4, []]");
        assert_eq!(diagnostic(&[0x43, 0xde, 0xad, 0x01]).unwrap(), "h'dead01'");
        assert_eq!(diagnostic(&[0xa1, 0x61, 0x61, 0x01]).unwrap(), "{\"a\": 1}");
        assert_eq!(diagnostic(&[0x82, 0x20, 0x02]).unwrap(), "[-1, 2]");
        assert_eq!(diagnostic(&[0x01, 0x02]).unwrap(), "1  (+1 trailing bytes)");
        assert!(diagnostic(&[0xff]).is_err());
        assert!(diagnostic(&[]).is_err());
    }

    #[test]
    fn hex_dump_shows_offsets_and_ascii() {
        let lines = hex_dump(b"Hello, world! 0123456789", 64, 16);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("00000000  48 65 6c 6c"), "{}", lines[0]);
        assert!(lines[0].ends_with("Hello, world! 01"), "{}", lines[0]);
        assert_eq!(hex_dump(&[0u8; 40], 16, 16).last().unwrap(), "… 24 more bytes");
        let narrow = hex_dump(b"Hello, world! 0123456789", 64, 8);
        assert_eq!(narrow.len(), 3);
        assert_eq!(narrow[1], "00000008  6f 72 6c 64 21 20 30 31  orld! 01");
        assert!(narrow.iter().all(|l| l.chars().count() <= hex_row_width(8)), "{narrow:?}");
    }
}
