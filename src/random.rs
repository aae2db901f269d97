//! Numbers that tell two processes apart (MQTT client ids, lease tokens), with no dependency.

/// A random number from the standard library's randomly keyed hasher, mixed with the process
/// id and the time; enough to tell two processes apart (client ids, lease tokens).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(nanos.as_nanos());
    hasher.finish()
}
