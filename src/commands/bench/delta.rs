//! `rocky bench --delta`: what a patch costs and saves. For each image size and kind of change
//! (one byte; 1 % and 10 % of the bytes, spread; a recompiled firmware: 4 KiB inserted near the
//! start, shifting all that follows, and 1 % changed after it), the patch's size, its share of
//! the image, the median build time over the rounds, and the bytes a rollout to `--devices`
//! devices puts on the wire with patches against whole images. The process's peak RSS is the
//! building's memory bound (run one `--size` alone to read it for that size).

use std::time::Instant;

use super::stats::peak_rss_bytes;
use rocky::firmware::build_patch;
use rocky::sim::sample_image;

/// The kinds of change measured, each a function of the base.
fn changes(base: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    // Bytes replaced by unrelated ones (not nudged: a nudge compresses to nothing).
    let noise = sample_image(base.len(), 7);
    let spread = |every: usize| {
        let mut target = base.to_vec();
        for (byte, new) in target.iter_mut().zip(noise.iter()).step_by(every) {
            *byte ^= new | 1;
        }
        target
    };
    let mut one = base.to_vec();
    one[base.len() / 2] ^= 0xff;
    let mut shifted = base.to_vec();
    let at = base.len() / 8;
    let inserted = sample_image(4096, 99);
    shifted.splice(at..at, inserted.iter().copied());
    for (byte, new) in shifted[at + 4096..].iter_mut().zip(noise.iter()).step_by(100) {
        *byte ^= new | 1;
    }
    vec![("1 byte", one), ("1 % spread", spread(100)), ("10 % spread", spread(10)), ("recompiled", shifted)]
}

pub fn run(sizes: &[usize], rounds: usize, devices: usize) -> anyhow::Result<()> {
    println!(
        "rocky bench --delta: BSDIFF40 patches (qbsdiff, one core), {rounds} rounds each, {devices} devices"
    );
    println!(
        "{:>10}  {:<12} {:>12} {:>7} {:>10}  {:>12} {:>12}",
        "image", "change", "patch", "share", "build", "wire: patch", "wire: whole"
    );
    for &size in sizes {
        let base = sample_image(size, 1).to_vec();
        for (kind, target) in changes(&base) {
            let mut times = Vec::with_capacity(rounds);
            let mut patch_len = 0;
            for _ in 0..rounds {
                let started = Instant::now();
                patch_len = build_patch(&base, &target)?.len();
                times.push(started.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!(
                "{:>10}  {:<12} {:>12} {:>6.2}% {:>9.2}s  {:>12} {:>12}",
                bytes(size as u64),
                kind,
                bytes(patch_len as u64),
                patch_len as f64 * 100.0 / target.len() as f64,
                median,
                bytes((patch_len * devices) as u64),
                bytes((target.len() * devices) as u64)
            );
        }
    }
    if let Some(rss) = peak_rss_bytes() {
        let largest = sizes.iter().copied().max().unwrap_or(1) as f64;
        println!(
            "peak RSS {:.0} MiB ({:.1} bytes per byte of the largest base)",
            rss as f64 / 1048576.0,
            rss as f64 / largest
        );
    }
    Ok(())
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / 1048576.0),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
