//! Which of Rocky's publishes the broker has acknowledged. rumqttc says which packet id a
//! publish went out under (in the order they were queued) and which packet id a PUBACK is for,
//! so the driver can tell the engine when every chunk of a job is with the broker (FOTA_DONE
//! waits for that) and, under MQTT 5, which job's publish the broker refused.
//!
//! Bounded: at most `limit` publishes are remembered (the driver's window keeps far fewer
//! unacknowledged); everything is forgotten when a session ends.

use std::collections::{HashMap, VecDeque};

use crate::engine::JobId;

/// One publish: the job it was for (none for the delivery probe), whether it was a chunk, and
/// its topic (to name it if the broker refuses it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub job: Option<JobId>,
    pub chunk: bool,
    pub topic: String,
    /// An answer to a device that is no job's (an AWS device's "no job"): not the probe.
    pub answer: bool,
}

#[derive(Debug)]
pub struct PublishTracker {
    /// Queued to rumqttc, packet id not known yet, oldest first.
    queued: VecDeque<Tag>,
    /// Sent, waiting for the broker's PUBACK, by packet id.
    awaiting: HashMap<u16, Tag>,
    limit: usize,
}

impl PublishTracker {
    pub fn new(limit: usize) -> Self {
        Self { queued: VecDeque::new(), awaiting: HashMap::new(), limit: limit.max(1) }
    }

    /// A publish was handed to rumqttc.
    pub fn queued(&mut self, tag: Tag) {
        if self.queued.len() >= self.limit {
            self.queued.pop_front();
        }
        self.queued.push_back(tag);
    }

    /// The oldest queued publish went out as `pkid`.
    pub fn sent(&mut self, pkid: u16) {
        if let Some(tag) = self.queued.pop_front() {
            if self.awaiting.len() >= self.limit {
                self.awaiting.clear();
            }
            self.awaiting.insert(pkid, tag);
        }
    }

    /// The broker answered publish `pkid`: which one it was, if known.
    pub fn acked(&mut self, pkid: u16) -> Option<Tag> {
        self.awaiting.remove(&pkid)
    }

    /// The session ended: nothing in flight will be answered.
    pub fn clear(&mut self) {
        self.queued.clear();
        self.awaiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(job: JobId) -> Tag {
        Tag { job: Some(job), chunk: true, topic: format!("/fota/data/d/{job}"), answer: false }
    }

    #[test]
    fn packet_ids_map_to_publishes_in_the_order_they_went_out() {
        let mut tracker = PublishTracker::new(8);
        tracker.queued(tag(JobId::new(1)));
        tracker.queued(tag(JobId::new(2)));
        tracker.sent(7);
        tracker.sent(3);
        assert_eq!(tracker.acked(3), Some(tag(JobId::new(2))));
        assert_eq!(tracker.acked(3), None, "answered once");
        assert_eq!(tracker.acked(7), Some(tag(JobId::new(1))));
        tracker.sent(9); // a resend rumqttc makes on its own after a reconnect: nothing queued
        assert_eq!(tracker.acked(9), None);
        tracker.queued(tag(JobId::new(4)));
        tracker.clear();
        tracker.sent(1);
        assert_eq!(tracker.acked(1), None, "forgotten with the session");
    }

    #[test]
    fn it_never_holds_more_than_its_limit() {
        let mut tracker = PublishTracker::new(2);
        for job in 0..10 {
            tracker.queued(tag(JobId::new(job)));
        }
        assert_eq!(tracker.queued.len(), 2);
        for pkid in 0..10 {
            tracker.queued(tag(JobId::new(pkid.into())));
            tracker.sent(pkid);
        }
        assert!(tracker.awaiting.len() <= 2);
    }
}
