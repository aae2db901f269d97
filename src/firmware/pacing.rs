//! How fast a job sends: its chunk size and the pause between its chunks, from what the operator
//! asked for (a pause, a per-job byte-rate cap, or both). One rule, read by the API's jobs, its
//! rollouts and the console's form.

use std::time::Duration;

use super::ChunkSize;
use crate::units::Rate;

/// The longest pause between two chunks of a job.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// A job's chunk size (none: the default) and pause between chunks (none: as fast as the
/// broker takes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pacing {
    pub chunk_size: Option<ChunkSize>,
    pub pause: Option<Duration>,
}

impl Pacing {
    /// `chunk_size` bytes a chunk, and the longer of `pause_ms` and the pause that keeps a job
    /// under `max_rate` (a chunk of `chunk_size`, else of `default_chunk`, a second at that
    /// rate). Each error names the setting: `chunk_size`, `chunk_interval_ms` or `max_rate`.
    pub fn new(
        chunk_size: Option<u64>,
        pause_ms: Option<u64>,
        max_rate: Option<Rate>,
        default_chunk: ChunkSize,
    ) -> Result<Self, String> {
        let chunk_size =
            chunk_size.map(ChunkSize::new).transpose().map_err(|e| format!("chunk_size: {e}"))?;
        let asked = match pause_ms.map(Duration::from_millis) {
            Some(pause) if pause > MAX_PAUSE => {
                return Err(format!("chunk_interval_ms is at most {}", MAX_PAUSE.as_millis()));
            }
            other => other,
        };
        let chunk = chunk_size.unwrap_or(default_chunk).get();
        let by_rate = max_rate.and_then(|rate| rate.interval(chunk));
        if by_rate.is_some_and(|pause| pause > MAX_PAUSE) {
            let rate = max_rate.map_or(0, |rate| rate.0);
            return Err(format!(
                "max_rate {rate} B/s is so low that one {chunk}-byte chunk would take over {} s",
                MAX_PAUSE.as_secs()
            ));
        }
        let pause = match (asked, by_rate) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(Self { chunk_size, pause })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longer_of_the_pause_asked_and_the_rates_wins_and_each_mistake_is_named() {
        let chunk = ChunkSize::new(4096).unwrap();
        let paced = Pacing::new(Some(1024), Some(5), Some(Rate(51_200)), chunk).unwrap();
        assert_eq!(paced.chunk_size.map(ChunkSize::get), Some(1024));
        assert_eq!(paced.pause, Some(Duration::from_millis(20)), "1 KiB at 50 KiB/s");
        let paced = Pacing::new(None, Some(100), Some(Rate(51_200)), chunk).unwrap();
        assert_eq!(paced.pause, Some(Duration::from_millis(100)), "the pause asked is longer");
        assert_eq!(Pacing::new(None, None, Some(Rate(0)), chunk).unwrap().pause, None, "0 is no cap");
        assert!(Pacing::new(None, Some(60_001), None, chunk).unwrap_err().contains("chunk_interval_ms"));
        let err = Pacing::new(None, None, Some(Rate(10)), chunk).unwrap_err();
        assert!(err.contains("max_rate 10 B/s") && err.contains("4096-byte chunk"), "{err}");
        assert!(Pacing::new(Some(1), None, None, chunk).unwrap_err().starts_with("chunk_size: "));
    }
}
