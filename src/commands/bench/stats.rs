//! Small statistics for the benchmark.

use std::time::Duration;

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The lowest and the highest of `values`.
pub fn range(values: &[f64]) -> (f64, f64) {
    values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// A ratio of two measures taken in turns: each round's own (`a[i] / b[i]`), their median and
/// their range. Rounds taken in turns on a machine whose speed drifts say more this way than
/// the ratio of the two medians, or of one's slowest round to the other's fastest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

impl Paired {
    pub fn of(a: &[f64], b: &[f64]) -> Self {
        let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
        let (low, high) = range(&ratios);
        Self { median: median(ratios), low, high }
    }
}

/// The `p`-th percentile (0..=100) by nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's peak resident set (VmHWM), where the platform tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    super::proc_stats::ProcessStats::read(std::process::id()).ok().map(|stats| stats.peak_rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratios_are_each_rounds_own() {
        // A machine twice as fast in round 2 for both: each round's ratio is 0.5.
        let paired = Paired::of(&[10.0, 20.0, 12.0], &[20.0, 40.0, 20.0]);
        assert_eq!(paired, Paired { median: 0.5, low: 0.5, high: 0.6 });
        assert_eq!(range(&[3.0, 1.0, 2.0]), (1.0, 3.0));
        assert!(median(vec![]).is_nan());
    }
}
