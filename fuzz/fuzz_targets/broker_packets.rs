#![no_main]
//! See `rocky::fuzz_targets::broker_packets` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rocky::fuzz_targets::broker_packets(data));
