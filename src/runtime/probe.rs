//! The delivery probe: Rocky publishes a small QoS 1 message to a topic of its own under the
//! command filter it subscribes to, and expects it back. When it does not come back within
//! [`PROBE_TIMEOUT`] the broker is holding Rocky's messages back — mosquitto 2.0 keeps the
//! in-flight quota of QoS 1 messages it drops for being larger than Rocky accepts, and once
//! that quota is used up it delivers nothing more to Rocky, while the connection itself looks
//! healthy. The driver then says so (health, log, console) and the messenger starts a clean
//! session. A pure state machine on the caller's clock.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::Topics;

/// A probe goes out this long after the last one came back.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A probe not back this long after the broker acknowledged it means the broker stopped
/// delivering to Rocky. Counted from the acknowledgement, not the send: the probe may wait
/// behind a window of large chunks on a slow link before the broker even has it.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Probes lost in a row, with none ever back, after which probing stops for good: the broker
/// does not let Rocky publish to or read its probe topic (an ACL), which is no stall.
pub const NEVER_BACK: u32 = 3;

/// What a probe that did not come back means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdue {
    /// Probes came back before: the broker stopped delivering (waited this long).
    Stalled(Duration),
    /// None ever came back: probing is off from now on.
    NeverBack,
}

#[derive(Debug)]
pub struct DeliveryProbe {
    topic: String,
    /// The name in the probe's topic (`$probe-<name>`), to tell ours from another Rocky's.
    name: String,
    /// Distinguishes this process's probes from another's with the same client id.
    nonce: u64,
    seq: u64,
    /// Probing runs while connected with the command filter granted.
    running: bool,
    /// The probe out now: its number, and when the broker acknowledged it (once it has).
    outstanding: Option<(u64, Option<Instant>)>,
    next_at: Option<Instant>,
    /// A probe has come back in this process: the broker lets Rocky probe.
    ever_back: bool,
    /// Probes lost in a row while none ever came back.
    lost_unproven: u32,
    /// Probing was given up for good (see [`NEVER_BACK`]), or the broker refused the probe.
    off: bool,
}

impl DeliveryProbe {
    pub fn new(topics: &Topics, client_id: &str) -> Self {
        let topic = topics.probe(client_id);
        let name = match topics.parse(&topic) {
            Some(crate::protocol::TopicKind::Probe(name)) => name,
            _ => String::new(),
        };
        Self {
            topic,
            name,
            nonce: crate::mqtt::random_u64(),
            seq: 0,
            running: false,
            outstanding: None,
            next_at: None,
            ever_back: false,
            lost_unproven: 0,
            off: false,
        }
    }

    /// The broker refused the probe's publish: probing cannot work, so it stops for good.
    pub fn refused(&mut self) {
        self.off = true;
        self.stop();
    }

    /// Connected and subscribed to the command filter: the first probe goes out at once.
    pub fn start(&mut self, now: Instant) {
        self.running = !self.off;
        self.outstanding = None;
        self.next_at = Some(now);
    }

    /// Disconnected, or the command filter was refused: nothing to probe with.
    pub fn stop(&mut self) {
        self.running = false;
        self.outstanding = None;
        self.next_at = None;
    }

    /// The probe to publish now, if one is due (topic and payload).
    pub fn due(&mut self, now: Instant) -> Option<(String, Bytes)> {
        if !self.running || self.outstanding.is_some() || self.next_at.is_none_or(|at| now < at) {
            return None;
        }
        self.seq += 1;
        self.outstanding = Some((self.seq, None));
        self.next_at = None;
        let mut payload = Vec::with_capacity(16);
        payload.extend_from_slice(&self.nonce.to_be_bytes());
        payload.extend_from_slice(&self.seq.to_be_bytes());
        Some((self.topic.clone(), Bytes::from(payload)))
    }

    /// The broker acknowledged the probe out now: the wait for it to come back starts.
    pub fn acked(&mut self, now: Instant) {
        if let Some((_, acked @ None)) = self.outstanding.as_mut() {
            *acked = Some(now);
        }
    }

    /// A message came back on a probe topic named `name`: true when it is this Rocky's own
    /// (the caller then shows nothing of it). The current probe coming back schedules the next.
    pub fn echoed(&mut self, name: &str, payload: &[u8], now: Instant) -> bool {
        if name != self.name || payload.len() != 16 || payload[..8] != self.nonce.to_be_bytes() {
            return false;
        }
        let seq = u64::from_be_bytes(payload[8..].try_into().unwrap_or_default());
        if self.outstanding.is_some_and(|(out, _)| out == seq) {
            self.outstanding = None;
            self.next_at = Some(now + PROBE_EVERY);
            self.ever_back = true;
        }
        true
    }

    /// The probe out now, once it has waited past [`PROBE_TIMEOUT`]: a stall (probing stops
    /// until [`DeliveryProbe::start`], after the caller reconnects), or, after [`NEVER_BACK`]
    /// losses with none ever back, the end of probing.
    pub fn overdue(&mut self, now: Instant) -> Option<Overdue> {
        let (_, Some(acked)) = self.outstanding? else { return None };
        let waited = now.saturating_duration_since(acked);
        if waited < PROBE_TIMEOUT {
            return None;
        }
        self.stop();
        if self.ever_back {
            return Some(Overdue::Stalled(waited));
        }
        self.lost_unproven += 1;
        if self.lost_unproven >= NEVER_BACK {
            self.off = true;
            return Some(Overdue::NeverBack);
        }
        Some(Overdue::Stalled(waited))
    }

    /// When the probe next needs attention: a probe to send, or one to give up on.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match self.outstanding {
            Some((_, Some(acked))) => Some(acked + PROBE_TIMEOUT),
            Some((_, None)) => None,
            None => self.next_at.filter(|_| self.running),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_that_comes_back_schedules_the_next_and_one_that_does_not_is_overdue() {
        let topics = Topics::default();
        let mut probe = DeliveryProbe::new(&topics, "rocky-a");
        let t0 = Instant::now();
        assert!(probe.due(t0).is_none(), "not before start");
        probe.start(t0);
        let (topic, payload) = probe.due(t0).expect("the first probe at once");
        assert_eq!(topic, "/fota/cmd/$probe-rocky-a");
        assert!(probe.due(t0).is_none(), "one at a time");
        assert!(!probe.echoed("rocky-b", &payload, t0), "another Rocky's name");
        let mut other = payload.to_vec();
        other[0] ^= 1;
        assert!(!probe.echoed("rocky-a", &other, t0), "another process with this name");
        assert!(probe.echoed("rocky-a", &payload, t0 + Duration::from_millis(30)));
        assert_eq!(probe.next_wakeup(), Some(t0 + Duration::from_millis(30) + PROBE_EVERY));
        assert!(probe.due(t0 + Duration::from_secs(1)).is_none());
        let t1 = t0 + Duration::from_millis(30) + PROBE_EVERY;
        let (_, second) = probe.due(t1).expect("the next after PROBE_EVERY");
        assert_ne!(second, payload);
        assert_eq!(probe.overdue(t1 + PROBE_TIMEOUT * 3), None, "no wait counts before the broker has it");
        probe.acked(t1);
        assert_eq!(probe.overdue(t1 + PROBE_TIMEOUT - Duration::from_millis(1)), None);
        assert_eq!(probe.overdue(t1 + PROBE_TIMEOUT), Some(Overdue::Stalled(PROBE_TIMEOUT)));
        assert_eq!(probe.overdue(t1 + PROBE_TIMEOUT * 2), None, "said once, then stopped");
        assert!(probe.due(t1 + PROBE_TIMEOUT * 2).is_none());
        // A late echo of an old probe is still ours, and changes nothing.
        assert!(probe.echoed("rocky-a", &payload, t1 + PROBE_TIMEOUT * 2));
        probe.start(t1 + PROBE_TIMEOUT * 3);
        assert!(probe.due(t1 + PROBE_TIMEOUT * 3).is_some(), "a new session probes again at once");
    }

    #[test]
    fn probes_that_never_come_back_end_probing_instead_of_reconnecting_for_ever() {
        let mut probe = DeliveryProbe::new(&Topics::default(), "rocky-a");
        let mut now = Instant::now();
        for lost in 1..=NEVER_BACK {
            probe.start(now);
            assert!(probe.due(now).is_some());
            probe.acked(now);
            now += PROBE_TIMEOUT;
            let expected =
                if lost < NEVER_BACK { Overdue::Stalled(PROBE_TIMEOUT) } else { Overdue::NeverBack };
            assert_eq!(probe.overdue(now), Some(expected));
        }
        probe.start(now);
        assert!(probe.due(now).is_none(), "off for good");
        let mut refused = DeliveryProbe::new(&Topics::default(), "rocky-b");
        refused.refused();
        refused.start(now);
        assert!(refused.due(now).is_none());
    }
}
