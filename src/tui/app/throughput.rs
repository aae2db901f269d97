//! Bytes sent per second over the last minute, for the status bar's rate and sparkline.

use std::collections::VecDeque;
use std::time::SystemTime;

const SECONDS_KEPT: usize = 120;

#[derive(Debug, Default)]
pub struct Throughput {
    /// (whole second since the epoch, bytes in it), oldest first.
    buckets: VecDeque<(u64, u64)>,
}

impl Throughput {
    pub fn add(&mut self, at: SystemTime, bytes: u64) {
        let second = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        match self.buckets.back_mut() {
            Some((s, total)) if *s == second => *total += bytes,
            Some((s, _)) if *s > second => {} // clock went backwards: ignore
            _ => {
                self.buckets.push_back((second, bytes));
                while self.buckets.len() > SECONDS_KEPT {
                    self.buckets.pop_front();
                }
            }
        }
    }

    /// One value per second for the `width` seconds before `now`, oldest first.
    pub fn series(&self, now: SystemTime, width: usize) -> Vec<u64> {
        let current = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let start = current.saturating_sub(width as u64);
        let mut out = vec![0u64; width];
        for (second, bytes) in &self.buckets {
            if *second >= start && *second < current {
                out[(*second - start) as usize] = *bytes;
            }
        }
        out
    }

    /// Average bytes per second over the last three whole seconds.
    pub fn rate(&self, now: SystemTime) -> f64 {
        self.series(now, 3).iter().sum::<u64>() as f64 / 3.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_per_second_and_averages() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut tp = Throughput::default();
        tp.add(t0, 100);
        tp.add(t0 + Duration::from_millis(500), 200);
        tp.add(t0 + Duration::from_secs(1), 600);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(tp.series(now, 3), vec![0, 300, 600]);
        assert_eq!(tp.rate(now), 300.0);
    }
}
