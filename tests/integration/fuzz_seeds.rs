//! Every `cargo fuzz` target body over its committed seeds (`fuzz/seeds/`), on stable Rust: the
//! seeds stay valid inputs for the targets, and a crash the fuzzer once found and that was saved
//! as a seed stays fixed. Running the fuzzer itself is described in the README.

use std::path::Path;

use rocky::fuzz_targets;

fn seeds(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(dir);
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("seed directory entry").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    found.sort();
    assert!(found.len() >= 4, "too few seeds in {}: {}", dir.display(), found.len());
    found
}

#[test]
fn frame_targets_accept_every_seed() {
    for (name, bytes) in seeds("frames") {
        eprintln!("{name}");
        fuzz_targets::decode_response_frame(&bytes);
        fuzz_targets::diagnostic_text(&bytes);
        for selector in 0..11u8 {
            let mut input = vec![selector];
            input.extend_from_slice(&bytes);
            fuzz_targets::describe_frame(&input);
        }
    }
}

#[test]
fn status_target_accepts_every_seed() {
    for (name, bytes) in seeds("status") {
        eprintln!("{name}");
        fuzz_targets::status_payload(&bytes);
        let mut input = vec![4u8];
        input.extend_from_slice(&bytes);
        fuzz_targets::describe_frame(&input);
    }
}

#[test]
fn manifest_target_accepts_every_seed() {
    for (name, bytes) in seeds("manifest") {
        eprintln!("{name}");
        fuzz_targets::manifest_bytes(&bytes);
    }
}

#[test]
fn config_target_accepts_every_seed() {
    for (name, bytes) in seeds("config") {
        eprintln!("{name}");
        fuzz_targets::config_text(&bytes);
    }
}

#[test]
fn the_default_config_seed_loads() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/config/defaults.toml"),
    )
    .expect("defaults seed");
    let loaded = rocky::config::layer(Some("defaults.toml".into()), Some(&text), |_| None, &[]);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

#[test]
fn broker_target_accepts_every_seed() {
    for (name, bytes) in seeds("mqtt") {
        eprintln!("{name}");
        fuzz_targets::broker_packets(&bytes);
    }
}

#[test]
fn sse_target_accepts_every_seed() {
    for (name, bytes) in seeds("sse") {
        eprintln!("{name}");
        fuzz_targets::sse_events(&bytes);
    }
}

#[test]
fn aws_targets_accept_every_seed() {
    for (name, bytes) in seeds("aws_jobs") {
        eprintln!("{name}");
        fuzz_targets::aws_jobs(&bytes);
        for selector in [5u8, 6, 8] {
            let mut input = vec![selector];
            input.extend_from_slice(bytes.get(1..).unwrap_or_default());
            fuzz_targets::describe_frame(&input);
        }
    }
    for (name, bytes) in seeds("aws_stream") {
        eprintln!("{name}");
        fuzz_targets::aws_stream(&bytes);
        // As the traffic view reads a request for blocks (the first four bytes are the file's
        // block count, for the stream target).
        let mut input = vec![7u8];
        input.extend_from_slice(bytes.get(4..).unwrap_or_default());
        fuzz_targets::describe_frame(&input);
    }
}
