//! The audit trail the console shows (`a`): the newest entries of the last day, fetched when
//! the view opens and then only what is newer, every few seconds while it stays open.

use std::collections::VecDeque;

use crate::audit::Entry;

/// Entries the view holds; older ones drop off (`rocky audit` reads them all).
pub const AUDIT_SHOWN: usize = 500;

#[derive(Debug, Default)]
pub struct AuditView {
    /// Oldest first, at most [`AUDIT_SHOWN`].
    pub entries: VecDeque<Entry>,
    /// The newest entry's id: the next fetch asks only for what follows it.
    pub last_id: Option<i64>,
    /// Whether a first fetch has answered.
    pub loaded: bool,
    /// Why the last fetch failed, until one works.
    pub error: Option<String>,
}

impl AuditView {
    /// Adds newer entries (as fetched, oldest first).
    pub fn extend(&mut self, entries: Vec<Entry>) {
        self.loaded = true;
        self.error = None;
        for entry in entries {
            if self.last_id.is_some_and(|last| entry.id <= last) {
                continue;
            }
            self.last_id = Some(entry.id);
            if self.entries.len() >= AUDIT_SHOWN {
                self.entries.pop_front();
            }
            self.entries.push_back(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, NewEntry};

    #[test]
    fn keeps_the_newest_and_skips_what_it_holds() {
        let mut view = AuditView::default();
        let entry = |id: i64| NewEntry::new(id, "a", Action::JobCancel, "job:1", "ok").numbered(id);
        view.extend((1..=AUDIT_SHOWN as i64 + 3).map(entry).collect());
        view.extend(vec![entry(2), entry(AUDIT_SHOWN as i64 + 4)]);
        assert_eq!(view.entries.len(), AUDIT_SHOWN);
        assert_eq!(view.entries.front().map(|e| e.id), Some(5));
        assert_eq!(view.last_id, Some(AUDIT_SHOWN as i64 + 4));
    }
}
