//! Log lines that anyone on the broker can cause (undecodable frames, ignored responses) are
//! written at most once per key (a device) per interval, with the count of those left out, so a
//! flood of bad frames costs a line a minute per device, not a line a frame.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Keys remembered at most; beyond that, stale ones are forgotten and the rest share one key.
const MAX_KEYS: usize = 1024;
const SHARED_KEY: &str = "(other devices)";

#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    keys: HashMap<String, Entry>,
    /// Stale keys are swept at most once a second, so a flood of new keys costs no scans.
    last_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    last: Instant,
    left_out: u64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        Self { interval, keys: HashMap::new(), last_sweep: None }
    }

    /// `Some(left out since the last line)` when a line for `key` may be written now.
    pub fn allow(&mut self, key: &str, now: Instant) -> Option<u64> {
        let sweep_due =
            self.last_sweep.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        if sweep_due && !self.keys.contains_key(key) && self.keys.len() >= MAX_KEYS {
            let interval = self.interval;
            // Stale keys go even with lines left out: those stay counted in /metrics, and a
            // stranger cannot pin the map with two frames per made-up device.
            self.keys.retain(|_, e| now.saturating_duration_since(e.last) < interval);
            self.last_sweep = Some(now);
        }
        let key = if self.keys.contains_key(key) || self.keys.len() < MAX_KEYS { key } else { SHARED_KEY };
        match self.keys.get_mut(key) {
            Some(entry) if now.saturating_duration_since(entry.last) < self.interval => {
                entry.left_out += 1;
                None
            }
            Some(entry) => {
                let left_out = entry.left_out;
                *entry = Entry { last: now, left_out: 0 };
                Some(left_out)
            }
            None => {
                self.keys.insert(key.to_owned(), Entry { last: now, left_out: 0 });
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval_with_the_count_left_out() {
        let mut limiter = LogLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(limiter.allow("dev-01", t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(limiter.allow("dev-01", t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limiter.allow("dev-02", t0), Some(0), "another device has its own budget");
        assert_eq!(limiter.allow("dev-01", t0 + Duration::from_secs(61)), Some(1000));
    }

    #[test]
    fn made_up_keys_cannot_pin_the_map_for_good() {
        let mut limiter = LogLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            let key = format!("fake-{i}");
            limiter.allow(&key, t0);
            limiter.allow(&key, t0); // one line left out each
        }
        let later = t0 + Duration::from_secs(61);
        assert_eq!(limiter.allow("dev-real", later), Some(0), "a real device gets its own line again");
        assert!(limiter.keys.contains_key("dev-real"));
    }

    #[test]
    fn endless_new_keys_cannot_grow_it_or_the_log() {
        let mut limiter = LogLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let lines = (0..100_000).filter(|i| limiter.allow(&format!("dev-{i}"), t0).is_some()).count();
        assert!(limiter.keys.len() <= MAX_KEYS + 1, "{}", limiter.keys.len());
        assert_eq!(lines, MAX_KEYS + 1, "the keys it remembers, then one shared line");
    }
}
