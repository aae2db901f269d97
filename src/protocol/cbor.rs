//! The few CBOR heads Rocky writes (RFC 8949 §3.1).
//!
//! Command frames are three small items, and the vectors in `PROTOCOL.md` fix their bytes, so
//! they are written here directly: infallible, no intermediate `Value`, one allocation of the
//! exact size. Everything Rocky *reads* goes through ciborium, and a test checks that these bytes
//! equal ciborium's own encoding of the same values.

pub const MAJOR_UNSIGNED: u8 = 0;
pub const MAJOR_BYTES: u8 = 2;
pub const MAJOR_TEXT: u8 = 3;
pub const MAJOR_ARRAY: u8 = 4;

/// Appends the shortest head for `major` with argument `value`.
pub fn push_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    if value < 24 {
        out.push(major | value as u8);
    } else if let Ok(v) = u8::try_from(value) {
        out.extend_from_slice(&[major | 24, v]);
    } else if let Ok(v) = u16::try_from(value) {
        out.push(major | 25);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(value) {
        out.push(major | 26);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value;

    fn ciborium_bytes(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out
    }

    #[test]
    fn heads_match_ciborium_at_every_width_boundary() {
        for n in [0u64, 1, 23, 24, 255, 256, 65_535, 65_536, 4_294_967_295, 4_294_967_296, u64::MAX] {
            let mut ours = Vec::new();
            push_head(&mut ours, MAJOR_UNSIGNED, n);
            assert_eq!(ours, ciborium_bytes(&Value::Integer(n.into())), "{n}");
        }
    }
}
