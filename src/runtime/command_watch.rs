//! The watch for commands this Rocky did not send. Rocky subscribes to every device's command
//! topic and sees its own commands come back; a command for a job it does not hold for that
//! device was published by someone else — another Rocky with a store of its own on the same
//! broker (whose job ids may meet this one's), or a stranger. That is said once per device.
//!
//! A job another instance sharing this store just created reaches this instance's job table
//! within about two seconds, so a command that is not recognised at once is looked at again
//! after [`GRACE`] before it counts as foreign. Bounded: at most [`MAX_PENDING`] commands wait,
//! and at most [`MAX_NOTED`] devices are remembered as said.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::engine::JobId;
use crate::protocol::DeviceId;

pub const GRACE: Duration = Duration::from_secs(3);
pub const MAX_PENDING: usize = 4096;
pub const MAX_NOTED: usize = 10_000;

/// A command nobody here sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    pub device: DeviceId,
    /// Its job id, when it decoded as a command at all.
    pub job: Option<JobId>,
    /// The first seen on this device (the one to say).
    pub first: bool,
}

#[derive(Debug, Default)]
pub struct CommandWatch {
    pending: VecDeque<(Instant, DeviceId, Option<JobId>)>,
    noted: HashSet<DeviceId>,
}

impl CommandWatch {
    /// A command for `device` (job `job`, `None` when it did not decode) that is not one of
    /// this engine's jobs: it waits for [`GRACE`]. Returns the commands that had to be judged
    /// early to keep the queue bounded.
    pub fn unrecognised(
        &mut self,
        device: DeviceId,
        job: Option<JobId>,
        now: Instant,
        known: impl Fn(JobId, &DeviceId) -> bool,
    ) -> Vec<Foreign> {
        self.pending.push_back((now, device, job));
        let mut judged = Vec::new();
        while self.pending.len() > MAX_PENDING {
            if let Some((_, device, job)) = self.pending.pop_front() {
                judged.extend(self.judge(device, job, &known));
            }
        }
        judged
    }

    /// The waiting commands whose grace has passed and that are still nobody's here.
    pub fn due(&mut self, now: Instant, known: impl Fn(JobId, &DeviceId) -> bool) -> Vec<Foreign> {
        let mut found = Vec::new();
        while let Some((at, _, _)) = self.pending.front() {
            if now.saturating_duration_since(*at) < GRACE {
                break;
            }
            if let Some((_, device, job)) = self.pending.pop_front() {
                found.extend(self.judge(device, job, &known));
            }
        }
        found
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        self.pending.front().map(|(at, _, _)| *at + GRACE)
    }

    fn judge(
        &mut self,
        device: DeviceId,
        job: Option<JobId>,
        known: &impl Fn(JobId, &DeviceId) -> bool,
    ) -> Option<Foreign> {
        if job.is_some_and(|job| known(job, &device)) {
            return None;
        }
        let first = !self.noted.contains(&device) && self.noted.len() < MAX_NOTED;
        if first {
            self.noted.insert(device.clone());
        }
        Some(Foreign { device, job, first })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str) -> DeviceId {
        DeviceId::parse(id).unwrap()
    }

    #[test]
    fn a_command_known_within_the_grace_is_ours_and_others_are_said_once_per_device() {
        let mut watch = CommandWatch::default();
        let t0 = Instant::now();
        let sibling = |job: JobId, _: &DeviceId| job == JobId::new(7);
        assert!(watch.unrecognised(dev("a"), Some(JobId::new(7)), t0, sibling).is_empty());
        assert!(watch.unrecognised(dev("a"), Some(JobId::new(1)), t0, sibling).is_empty());
        assert!(watch.unrecognised(dev("a"), None, t0, sibling).is_empty());
        assert!(
            watch
                .unrecognised(dev("b"), Some(JobId::new(1)), t0 + Duration::from_secs(1), sibling)
                .is_empty()
        );
        assert!(watch.due(t0 + Duration::from_secs(2), sibling).is_empty(), "within the grace");
        assert_eq!(watch.next_wakeup(), Some(t0 + GRACE));
        let found = watch.due(t0 + GRACE, sibling);
        assert_eq!(
            found,
            vec![
                Foreign { device: dev("a"), job: Some(JobId::new(1)), first: true },
                Foreign { device: dev("a"), job: None, first: false },
            ],
            "job 7 became known (another instance's); the rest are foreign, said once"
        );
        let later = watch.due(t0 + GRACE * 2, sibling);
        assert_eq!(later, vec![Foreign { device: dev("b"), job: Some(JobId::new(1)), first: true }]);
        assert_eq!(watch.next_wakeup(), None);
    }

    #[test]
    fn the_queue_and_the_devices_remembered_are_bounded() {
        let mut watch = CommandWatch::default();
        let t0 = Instant::now();
        let nobody = |_: JobId, _: &DeviceId| false;
        let mut judged = 0;
        for i in 0..MAX_PENDING + 10 {
            judged += watch.unrecognised(dev(&format!("d{i}")), Some(JobId::new(1)), t0, nobody).len();
        }
        assert_eq!(judged, 10, "the oldest are judged early");
        assert_eq!(watch.pending.len(), MAX_PENDING);
        for i in 0..MAX_NOTED + 10 {
            watch.judge(dev(&format!("n{i}")), Some(JobId::new(1)), &nobody);
        }
        assert_eq!(watch.noted.len(), MAX_NOTED);
    }
}
