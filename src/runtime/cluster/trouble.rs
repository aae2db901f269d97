//! How the claims task and the rollouts follower say that a periodic read of the shared store
//! failed. They run every second; a line a second would bury the log, and a line at debug (as
//! before) left an operator unaware that this instance had stopped mirroring the others' jobs,
//! refreshing the inventory or claiming a dead instance's jobs while its lease renewed fine (a
//! statement timeout, a permission, a table changed by a newer version).
//!
//! So each read keeps the last reason it failed with: a new reason is a warning, the same one
//! again is nothing, and the first success after a warning says so once. While the lease's own
//! renewal is failing, the store is out of reach and the lease's line already says why: the reads
//! then say theirs at debug, so an outage is one warning, not six.

use std::fmt::Display;

/// What one failure or success came to (returned so tests can check the decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// A new reason, said as a warning.
    Warned,
    /// Said at debug only: the same reason as last time, or the lease already says the store is
    /// out of reach.
    Quiet,
    /// The first success after a warning, said once.
    Recovered,
    /// A success after successes.
    Nothing,
}

/// The failures of one periodic read.
#[derive(Debug)]
pub struct Trouble {
    /// What the read does, for the log ("read other instances' changes").
    what: &'static str,
    /// The reason last warned of, until a success.
    warned: Option<String>,
}

impl Trouble {
    pub fn new(what: &'static str) -> Self {
        Self { what, warned: None }
    }

    /// The read failed with `error`; `lease_failing` when the lease's renewal already says the
    /// store cannot be reached.
    pub fn failed(&mut self, error: &dyn Display, lease_failing: bool) -> Said {
        let reason = error.to_string();
        if lease_failing || self.warned.as_deref() == Some(reason.as_str()) {
            tracing::debug!(error = %reason, "could not {}", self.what);
            return Said::Quiet;
        }
        tracing::warn!(error = %reason, "could not {}; it is tried again, and said again only for another reason", self.what);
        self.warned = Some(reason);
        Said::Warned
    }

    /// The read succeeded.
    pub fn succeeded(&mut self) -> Said {
        if self.warned.take().is_some() {
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
        let mut trouble = Trouble::new("read the inventory");
        assert_eq!(trouble.succeeded(), Said::Nothing);
        assert_eq!(trouble.failed(&"statement timeout", false), Said::Warned);
        assert_eq!(trouble.failed(&"statement timeout", false), Said::Quiet, "the same reason again");
        assert_eq!(trouble.failed(&"permission denied", false), Said::Warned, "another reason");
        assert_eq!(trouble.succeeded(), Said::Recovered);
        assert_eq!(trouble.succeeded(), Said::Nothing, "the end is said once");
        assert_eq!(trouble.failed(&"permission denied", false), Said::Warned, "after a success it is news");
    }

    #[test]
    fn while_the_lease_says_the_store_is_away_the_reads_stay_quiet() {
        let mut trouble = Trouble::new("claim jobs");
        assert_eq!(trouble.failed(&"connection refused", true), Said::Quiet);
        assert_eq!(trouble.succeeded(), Said::Nothing, "nothing was warned of, so no end is said");
        assert_eq!(
            trouble.failed(&"connection refused", false),
            Said::Warned,
            "the lease renews, the read fails"
        );
    }
}
