//! The engine's pending wake-ups: response deadlines and chunk pacing.
//!
//! A min-heap with lazy deletion: re-arming pushes a new entry and the job remembers which
//! instant is current, so a stale entry is recognised and dropped when it comes due. That keeps
//! arming O(log n) and finding the next wake-up O(1) however many jobs are active.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::JobId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// A FOTA_REQUEST or FOTA_DONE answer is due.
    Deadline,
    /// A paced job may send its next chunk.
    Pace,
    /// Flow control: the device should have confirmed more by now.
    Progress,
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, JobId, TimerKind)>>,
}

impl Timers {
    pub fn arm(&mut self, at: Instant, job: JobId, kind: TimerKind) {
        self.heap.push(Reverse((at, job, kind)));
    }

    /// The earliest armed instant (possibly stale: waking early for it is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, JobId, TimerKind)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }
}
