//! Maps the engine's monotonic instants to wall-clock time for people and the API.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Taken once at start: wall time = `wall` + (instant - `mono`). Monotonic arithmetic keeps
/// durations right even if the system clock is stepped while Rocky runs.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    mono: Instant,
    wall: SystemTime,
}

impl Clock {
    pub fn new() -> Self {
        Self { mono: tokio::time::Instant::now().into_std(), wall: SystemTime::now() }
    }

    /// A clock pinned to a given pair of instants (tests and fixtures).
    pub fn fixed(mono: Instant, wall: SystemTime) -> Self {
        Self { mono, wall }
    }

    /// The engine's notion of now (tokio's clock, so paused-time tests drive it too).
    pub fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    pub fn wall(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.mono) {
            Some(after) => self.wall + after,
            None => self.wall - self.mono.duration_since(at),
        }
    }

    /// The instant for a wall-clock time in Unix milliseconds (for times read back from disk).
    pub fn instant(&self, unix_ms: u64) -> Instant {
        let wall = UNIX_EPOCH + Duration::from_millis(unix_ms);
        match wall.duration_since(self.wall) {
            Ok(after) => self.mono + after,
            Err(before) => self.mono.checked_sub(before.duration()).unwrap_or(self.mono),
        }
    }

    /// Milliseconds since the Unix epoch, the API's timestamp format.
    /// When this clock began (the runtime's start), in Unix ms.
    pub fn started_ms(&self) -> u64 {
        self.unix_ms(self.mono)
    }

    pub fn unix_ms(&self, at: Instant) -> u64 {
        self.wall(at).duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Sleeps until `at`, or for ever when there is no `at` (a `select!` branch with no timer).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
