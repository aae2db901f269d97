//! Flow control (device-paced transfers, `PROTOCOL.md` "Flow control"): the device's window, its
//! cumulative FOTA_PROGRESS, go-back-N after a stall, rewinds, and FOTA_DONE only once every
//! chunk is confirmed. A job whose ACK gave no window never comes here: it is pushed as before.

use std::time::Instant;

use super::super::job::Job;
use super::super::timers::TimerKind;
use super::{Ack, Engine, Event, JobId, JobState};
use crate::protocol::{CommandType, DeviceId};

/// Whether the job may send its next chunk now: always when pushed; under flow control only
/// while fewer than `window` chunks are beyond what the device confirmed (none while paused),
/// and never past the last chunk (FOTA_DONE waits for the confirmations).
pub(super) fn may_send(job: &Job) -> bool {
    match job.window {
        None => true,
        Some(window) => {
            job.next_chunk <= job.total_chunks
                && u64::from(job.next_chunk) < u64::from(job.confirmed) + u64::from(window)
        }
    }
}

impl Engine {
    /// A FOTA_PROGRESS from the device whose current job `id` is, while it transfers.
    pub(super) fn progress(
        &mut self,
        device: &DeviceId,
        id: JobId,
        next: u32,
        window: Option<u32>,
        now: Instant,
    ) {
        let ignore = |engine: &mut Self, reason: String| {
            let event =
                Event::Ignored { device: device.clone(), job: id, command: CommandType::Progress, reason };
            engine.events.push_back((now, event));
        };
        let timeout = self.settings.progress_timeout;
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.window.is_none() {
            return ignore(
                self,
                "FOTA_PROGRESS for a job without flow control (its ACK gave no window)".into(),
            );
        }
        // Rocky has sent chunks up to `next_chunk - 1`: the device cannot hold more.
        if next == 0 || next > job.next_chunk.max(job.highest_sent + 1) {
            let sent = job.highest_sent;
            return ignore(
                self,
                format!(
                    "protocol error: FOTA_PROGRESS says next {next}, but only chunks 1 to {sent} were sent"
                ),
            );
        }
        let moved = next != job.confirmed || window.is_some_and(|w| job.window != Some(w));
        if let Some(window) = window {
            job.window = Some(window);
        }
        let total = job.total_chunks;
        let rewound = next < job.confirmed;
        let note = if rewound {
            // A rewind: the device lost what it held from `next` on. The first is said on the
            // timeline; the rest are counted, since a device can rewind as often as it likes.
            job.rewinds += 1;
            let note = (job.rewinds == 1).then(|| {
                format!(
                    "device rewound to chunk {next} (it had confirmed up to {}); further rewinds are counted",
                    job.confirmed - 1
                )
            });
            job.confirmed = next;
            job.next_chunk = next;
            job.stalls = 0;
            job.progress_due = None;
            note
        } else if next > job.confirmed {
            job.confirmed = next;
            job.stalls = 0;
            job.progress_due = None;
            // Chunks below what it now confirmed need not be sent again after a go-back.
            job.next_chunk = job.next_chunk.max(next);
            None
        } else {
            None // a repeat: it repairs a lost FOTA_PROGRESS, or reopens the window
        };
        let (device, rewinds, window) = (job.device.clone(), job.rewinds, job.window.unwrap_or(0));
        if moved {
            let confirmed = next - 1;
            let event = Event::Progress { job: id, device: device.clone(), confirmed, total, window };
            self.events.push_back((now, event));
        }
        if let Some(text) = note {
            self.note(id, text, now);
        }
        if rewound {
            let limit = self.settings.max_rewinds.max(1);
            if rewinds >= limit {
                let detail = format!(
                    "the device rewound {rewinds} times (jobs.max_rewinds): it keeps losing what it was sent"
                );
                self.finish(id, JobState::Failed, Some(detail), now);
                return;
            }
            if !self.awaiting_slot.is_empty() {
                self.yield_slot(id, now);
                return;
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else { return };
        if job.confirmed > total {
            job.progress_due = None;
            self.transition(
                id,
                JobState::Finishing,
                Some(format!("device confirmed all {total} chunks")),
                now,
            );
            self.send_done(id, now);
            return;
        }
        // Outstanding chunks, or a pause: the device must speak again before the deadline.
        let waiting = job.highest_sent >= job.confirmed || job.window == Some(0);
        if waiting && job.progress_due.is_none() {
            let at = now + timeout;
            job.progress_due = Some(at);
            self.timers.arm(at, id, TimerKind::Progress);
        }
        if may_send(job) && job.paced_until.is_none() {
            self.queue_send(id);
        }
    }

    /// The progress deadline passed without the device confirming more: send again from what it
    /// confirmed (go back N), or, after `progress_stalls` stalls in a row, give up.
    pub(super) fn stalled(&mut self, id: JobId, now: Instant) {
        let (timeout, limit) = (self.settings.progress_timeout, self.settings.progress_stalls.max(1));
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.stalls += 1;
        let (held, total) = (job.confirmed - 1, job.total_chunks);
        if job.stalls >= limit {
            let detail = format!("the device stopped confirming chunks at {held} of {total}");
            self.finish(id, JobState::TimedOut, Some(detail), now);
            return;
        }
        job.next_chunk = job.confirmed;
        let at = now + timeout;
        job.progress_due = Some(at);
        self.timers.arm(at, id, TimerKind::Progress);
        let text = format!(
            "no FOTA_PROGRESS for {} s: sending again from chunk {} (stall {} of {limit})",
            timeout.as_secs_f64(),
            job.confirmed,
            job.stalls
        );
        let paced = job.paced_until.is_some();
        self.note(id, text, now);
        if !paced {
            self.queue_send(id);
        }
    }

    /// A rewinding job gives its transfer slot to the oldest job waiting for one and waits at
    /// the back of that queue, resuming from where the device says it is: a device that keeps
    /// losing what it was sent cannot keep healthy jobs from starting.
    fn yield_slot(&mut self, id: JobId, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        // Still device-paced when it comes back, even if the device had paused (window 0).
        let ack = Ack { next_chunk: Some(job.confirmed), window: job.window.map(|w| w.max(1)) };
        job.progress_due = None;
        job.paced_until = None;
        job.deadline = None;
        self.sending.retain(|sending| *sending != id);
        if let Some(job) = self.jobs.get_mut(&id) {
            job.in_sending = false;
        }
        self.transferring = self.transferring.saturating_sub(1);
        self.requesting += 1;
        let detail = "device rewound while other jobs wait for a transfer slot: it waits for one again";
        self.transition(id, JobState::Requesting, Some(detail.into()), now);
        self.awaiting_slot.push_back((id, ack));
        self.promote(now);
    }
}
