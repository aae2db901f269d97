//! How the claims task and the rollouts follower say that a periodic read of the shared store
//! failed. They run every second; a line a second would bury the log, and a line at debug (as
//! before) left an operator unaware that this instance had stopped mirroring the others' jobs,
//! refreshing the inventory or claiming a dead instance's jobs while its lease renewed fine (a
//! statement timeout, a permission, a table changed by a newer version).
//!
//! So each read keeps the last reason it warned of: a new reason is a warning, the same one again
//! within [`REMIND_EVERY`] is said at debug only (a failure that lasts is warned of again every
//! 5 minutes, and one that comes and goes does not make two lines a second), and the first
//! success after a warning says so once. While the lease's own renewal is failing, the store is
//! out of reach and the lease's line already says why: the reads then say theirs at debug. (In the
//! second or so before the lease's renewal fails, each read may still warn once.)

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long the same reason is not warned of again.
pub const REMIND_EVERY: Duration = Duration::from_secs(300);

/// What one failure or success came to (returned so tests can check the decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// A new reason, or the same one after [`REMIND_EVERY`], said as a warning.
    Warned,
    /// Said at debug only: the reason last warned of, within [`REMIND_EVERY`], or the lease
    /// already says the store is out of reach.
    Quiet,
    /// The first success after a warning, said once.
    Recovered,
    /// A success with no warning since the last recovery said.
    Nothing,
}

/// The failures of one periodic read.
#[derive(Debug)]
pub struct Trouble {
    /// What the read does, for the log ("read other instances' changes").
    what: &'static str,
    /// The reason last warned of, and when.
    warned: Option<(String, Instant)>,
    /// A warning was said and no success since.
    unresolved: bool,
}

impl Trouble {
    pub fn new(what: &'static str) -> Self {
        Self { what, warned: None, unresolved: false }
    }

    /// The read failed with `error` at `now`; `lease_failing` when the lease's renewal already
    /// says the store cannot be reached.
    pub fn failed(&mut self, error: &dyn Display, lease_failing: bool, now: Instant) -> Said {
        let reason = error.to_string();
        let recent = self
            .warned
            .as_ref()
            .is_some_and(|(said, at)| *said == reason && now.saturating_duration_since(*at) < REMIND_EVERY);
        if lease_failing || recent {
            tracing::debug!(error = %reason, "could not {}", self.what);
            return Said::Quiet;
        }
        tracing::warn!(
            error = %reason,
            "could not {}; it is tried again, and said again for another reason or after {} minutes",
            self.what,
            REMIND_EVERY.as_secs() / 60
        );
        self.warned = Some((reason, now));
        self.unresolved = true;
        Said::Warned
    }

    /// The read succeeded.
    pub fn succeeded(&mut self) -> Said {
        if std::mem::take(&mut self.unresolved) {
            tracing::info!("could {} again", self.what);
            return Said::Recovered;
        }
        Said::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_warned_of_once_and_its_end_said_once() {
        let t0 = Instant::now();
        let mut trouble = Trouble::new("read the inventory");
        assert_eq!(trouble.succeeded(), Said::Nothing);
        assert_eq!(trouble.failed(&"statement timeout", false, t0), Said::Warned);
        assert_eq!(trouble.failed(&"statement timeout", false, t0), Said::Quiet, "the same reason again");
        assert_eq!(trouble.failed(&"permission denied", false, t0), Said::Warned, "another reason");
        assert_eq!(trouble.succeeded(), Said::Recovered);
        assert_eq!(trouble.succeeded(), Said::Nothing, "the end is said once");
    }

    #[test]
    fn a_failure_that_comes_and_goes_is_said_once_per_reminder() {
        let t0 = Instant::now();
        let mut trouble = Trouble::new("claim jobs");
        assert_eq!(trouble.failed(&"statement timeout", false, t0), Said::Warned);
        assert_eq!(trouble.succeeded(), Said::Recovered);
        for s in 1..10 {
            let at = t0 + Duration::from_secs(s);
            assert_eq!(trouble.failed(&"statement timeout", false, at), Said::Quiet, "second {s}");
            assert_eq!(trouble.succeeded(), Said::Nothing, "nothing was warned of since the recovery");
        }
        let later = t0 + REMIND_EVERY;
        assert_eq!(trouble.failed(&"statement timeout", false, later), Said::Warned, "reminded");
        assert_eq!(trouble.failed(&"statement timeout", false, later + REMIND_EVERY / 2), Said::Quiet);
        assert_eq!(
            trouble.failed(&"statement timeout", false, later + REMIND_EVERY),
            Said::Warned,
            "a lasting failure"
        );
        assert_eq!(trouble.succeeded(), Said::Recovered);
    }

    #[test]
    fn while_the_lease_says_the_store_is_away_the_reads_stay_quiet() {
        let t0 = Instant::now();
        let mut trouble = Trouble::new("claim jobs");
        assert_eq!(trouble.failed(&"connection refused", true, t0), Said::Quiet);
        assert_eq!(trouble.succeeded(), Said::Nothing, "nothing was warned of, so no end is said");
        assert_eq!(
            trouble.failed(&"connection refused", false, t0),
            Said::Warned,
            "the lease renews, the read fails"
        );
    }
}
