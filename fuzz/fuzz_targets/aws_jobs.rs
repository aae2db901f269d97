#![no_main]
//! See `rocky::fuzz_targets::aws_jobs` for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rocky::fuzz_targets::aws_jobs(data));
