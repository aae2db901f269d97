//! What asking for an image's manifest costs, against verifying its signature (what every ask
//! paid before manifests were verified once, on the way into memory). A rollout asks once per
//! device, on the async thread that also sends every chunk.
//!
//! Run with `cargo bench --bench manifest_lookup`: three rounds of at least 3 s each per
//! algorithm, medians printed with the spread of the rounds.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rocky::firmware::{Image, Manifests, SigningPolicy};
use rocky::signing::{Alg, SigningKey};

const ROUND: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

/// The median and the extremes of `ROUNDS` rounds of `op`, in nanoseconds per call.
fn per_call(mut op: impl FnMut() -> bool) -> (f64, f64, f64) {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut calls = 0u64;
            while started.elapsed() < ROUND {
                for _ in 0..64 {
                    assert!(op(), "the manifest must be there and verify");
                }
                calls += 64;
            }
            started.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    (rounds[ROUNDS / 2], rounds[0], rounds[ROUNDS - 1])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for alg in [Alg::Ed25519, Alg::Es256] {
        let key = SigningKey::generate(alg)?;
        let trusted = Manifests::new(SigningPolicy { signer: Some(key), ..SigningPolicy::default() });
        let image = Image::new("fw.bin", Bytes::from_static(b"firmware"));
        let manifest = trusted.sign(&image, None, 1)?;
        let (get, get_lo, get_hi) = per_call(|| trusted.get(image.sha256()).is_some());
        let (verify, verify_lo, verify_hi) = per_call(|| manifest.verify(trusted.trusted()).is_ok());
        println!(
            "{alg:?}: a lookup {get:.0} ns ({get_lo:.0}–{get_hi:.0}), a verification {:.1} µs ({:.1}–{:.1}); \
             100,000 devices: {:.3} s of lookups, {:.1} s had each verified",
            verify / 1e3,
            verify_lo / 1e3,
            verify_hi / 1e3,
            get * 1e5 / 1e9,
            verify * 1e5 / 1e9,
        );
    }
    Ok(())
}
