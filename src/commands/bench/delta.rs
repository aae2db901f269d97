//! `rocky bench --delta`: what a patch costs and saves. For each image size and kind of change
//! (one byte; 1 % and 10 % of the bytes, spread; a recompiled firmware: 4 KiB inserted near the
//! start, shifting all that follows, and 1 % changed after it), the patch's size, its share of
//! the image, the median build time over the rounds, and a rollout to `--devices` devices with
//! patches against one with whole images: the bytes each put on the wire and its wall time. The
//! process's peak RSS after the builds is the building's memory bound (run one `--size` alone to
//! read it for that size); the simulated fleet runs in a child process.

use std::time::Instant;

use super::stats::{median, peak_rss_bytes};
use crate::commands::output::say;
use rocky::firmware::{Image, build_patch};
use rocky::sim::sample_image;
use rocky::units::bytes;

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

pub async fn run(
    sizes: &[usize],
    rounds: usize,
    rollouts: &super::delta_rollout::Bench<'_>,
) -> anyhow::Result<()> {
    let devices = rollouts.devices;
    say!(
        "rocky bench --delta: BSDIFF40 patches (qbsdiff, one core), {rounds} rounds each; rollouts to {devices} \
         `rocky sim --delta` devices on the base through {} ({} B chunks), medians",
        rollouts.broker,
        rollouts.chunk
    );
    say!(
        "{:>10}  {:<12} {:>12} {:>7} {:>10}  {:>12} {:>12}  {:>14} {:>14}",
        "image",
        "change",
        "patch",
        "share",
        "build",
        "wire: patch",
        "wire: whole",
        "rollout: patch",
        "rollout: whole"
    );
    // Every patch is built (and timed) before any rollout, so the peak RSS then is the
    // building's alone.
    let mut builds = Vec::new();
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
            builds.push((size, kind, target, patch_len, median(times)));
        }
    }
    let build_rss = peak_rss_bytes();
    let mut whole_times: std::collections::HashMap<usize, Vec<f64>> = Default::default();
    for (size, kind, target, patch_len, build) in builds {
        let base_image = Image::new("base.bin", sample_image(size, 1));
        let target_image = Image::new("target.bin", target.clone().into());
        let mut patched = Vec::with_capacity(rounds);
        let mut wire = 0;
        for _ in 0..rounds {
            let measured = rollouts.rollout(&base_image, &target_image, true).await?;
            patched.push(measured.wall.as_secs_f64());
            wire = measured.bytes;
            // Whole images take as long whatever changed: measured `rounds` times per size.
            let whole = whole_times.entry(size).or_default();
            if whole.len() < rounds {
                whole.push(rollouts.rollout(&base_image, &target_image, false).await?.wall.as_secs_f64());
            }
        }
        say!(
            "{:>10}  {:<12} {:>12} {:>6.2}% {:>9.2}s  {:>12} {:>12}  {:>13.2}s {:>13.2}s",
            bytes(size as u64),
            kind,
            bytes(patch_len as u64),
            patch_len as f64 * 100.0 / target.len() as f64,
            build,
            bytes(wire),
            bytes((target.len() * devices) as u64),
            median(patched),
            median(whole_times[&size].clone()),
        );
    }
    if let Some(rss) = build_rss {
        let largest = sizes.iter().copied().max().unwrap_or(1) as f64;
        say!(
            "peak RSS while building {:.0} MiB ({:.1} bytes per byte of the largest base)",
            rss as f64 / 1048576.0,
            rss as f64 / largest
        );
    }
    Ok(())
}
