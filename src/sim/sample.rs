//! Sample firmware for simulations, tests and benchmarks: deterministic, incompressible bytes
//! (a real image does not compress either), so the same seed always gives the same hash.

use bytes::Bytes;

/// `len` pseudo-random bytes from `seed` (xorshift64).
pub fn sample_image(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(sample_image(1000, 7), sample_image(1000, 7));
        assert_ne!(sample_image(1000, 7), sample_image(1000, 8));
        let distinct: std::collections::BTreeSet<u8> = sample_image(4096, 1).iter().copied().collect();
        assert!(distinct.len() > 200, "spread over the byte values");
    }
}
