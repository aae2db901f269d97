//! The few CBOR helpers the tests' own devices share, written from RFC 8949 with a general CBOR
//! library (ciborium), not from Rocky's frame code.

use ciborium::Value;

/// `value` as CBOR bytes.
pub fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encodes into a Vec");
    out
}

/// An unsigned integer item.
pub fn unsigned(value: &Value) -> Option<u64> {
    value.as_integer().and_then(|i| u64::try_from(i).ok())
}

/// A response frame of unsigned integers, `[job, type, …]`.
pub fn frame(items: &[u64]) -> Vec<u8> {
    cbor(&Value::Array(items.iter().map(|n| Value::Integer((*n).into())).collect()))
}

/// A FOTA_REQUEST's hash: a byte string, or an array of 32 unsigned integers.
pub fn hash_of(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(bytes) => Some(bytes.clone()),
        Value::Array(items) => items.iter().map(|i| unsigned(i).and_then(|n| u8::try_from(n).ok())).collect(),
        _ => None,
    }
}

/// The value under unsigned key `key` of a CBOR map.
pub fn field(map: &[(Value, Value)], key: u64) -> Option<&Value> {
    map.iter().find(|(k, _)| unsigned(k) == Some(key)).map(|(_, v)| v)
}
