//! The audit of a Rocky without a store (`rocky demo`, benchmarks):
//! the newest entries in memory, numbered from 1.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{Entry, NewEntry, Query};

/// Entries a store-less Rocky keeps; older ones are dropped.
pub const MEMORY_ENTRIES: usize = 10_000;

#[derive(Clone, Default)]
pub struct Ring(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    entries: VecDeque<Entry>,
    last_id: i64,
}

impl Ring {
    pub fn push(&self, entry: NewEntry) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.last_id += 1;
        let id = state.last_id;
        if state.entries.len() >= MEMORY_ENTRIES {
            state.entries.pop_front();
        }
        state.entries.push_back(entry.numbered(id));
    }

    pub fn read(&self, query: &Query) -> Vec<Entry> {
        let state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let matching = state.entries.iter().filter(|e| query.matches(e));
        if query.newest_first {
            matching.rev().take(query.limit).cloned().collect()
        } else {
            matching.take(query.limit).cloned().collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Action;

    #[test]
    fn keeps_the_newest_and_numbers_them() {
        let ring = Ring::default();
        for at in 0..(MEMORY_ENTRIES as i64 + 5) {
            ring.push(NewEntry::new(at, "a", Action::JobCancel, "job:1", "ok"));
        }
        let all = ring.read(&Query { limit: usize::MAX, ..Query::default() });
        assert_eq!(all.len(), MEMORY_ENTRIES);
        assert_eq!(all[0].id, 6);
        assert_eq!(all.last().map(|e| e.id), Some(MEMORY_ENTRIES as i64 + 5));
    }
}
