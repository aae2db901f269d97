//! What subscribers see: engine events, every MQTT message in and out, and the connection.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::engine::{Event, JobId, RolloutId};
use crate::protocol::DeviceId;

/// One event with its sequence number and wall-clock time. Shared behind an `Arc`, so fanning
/// out to many subscribers copies a pointer, not the payload.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub seq: u64,
    pub time: SystemTime,
    pub event: RuntimeEvent,
    /// The event as `/events` sends it (name and JSON), made once by the first client that
    /// needs it and shared by the rest.
    pub json: std::sync::OnceLock<(String, String)>,
}

impl Envelope {
    pub fn new(seq: u64, time: SystemTime, event: RuntimeEvent) -> Self {
        Self { seq, time, event, json: std::sync::OnceLock::new() }
    }
}

#[derive(Debug, Clone)]
pub enum RuntimeEvent {
    Engine(Event),
    Traffic(Traffic),
    Connection(ConnectionState),
    /// A rollout changed state.
    Rollout(RolloutNotice),
    /// Something the operator must hear of that is no job's (another publisher commands a
    /// device, the broker stopped delivering): said once, shown by the console as an alarm.
    Alert(Alert),
}

/// What [`RuntimeEvent::Alert`] says (`/events` sends it as `alert`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// The device it concerns, if one.
    pub device: Option<DeviceId>,
    pub text: String,
}

/// A rollout's change of state, with why (`/events` sends it as `rollout`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolloutNotice {
    pub rollout: RolloutId,
    pub name: String,
    pub from: crate::rollout::RolloutState,
    pub to: crate::rollout::RolloutState,
    pub reason: String,
    /// Which change of this rollout it is, from 1: with the rollout's id, names it across
    /// restarts and instances (a notification's id).
    #[serde(default)]
    pub change: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficDirection {
    /// Rocky → device.
    Out,
    /// Device → Rocky.
    In,
}

/// One MQTT message, with the rendering people read and the raw bytes for a detail view.
/// Chunk payloads are slices of the image, so keeping them costs no copy.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub direction: TrafficDirection,
    pub topic: String,
    pub qos: u8,
    pub size: usize,
    pub text: String,
    pub payload: Bytes,
    pub device: Option<DeviceId>,
    pub job: Option<JobId>,
    /// True for a frame from a device that did not decode.
    pub decode_error: bool,
    /// True for a raw firmware chunk (the console folds these).
    pub chunk: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    Connecting,
    Connected,
    Disconnected { reason: String },
    Reconnecting { attempt: u32, delay_ms: u64, reason: String },
    Stopped,
}

impl ConnectionState {
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected)
    }

    /// Why Rocky is not connected, if it is not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Disconnected { reason } | Self::Reconnecting { reason, .. } => Some(reason),
            Self::Stopped => Some("Rocky is stopping"),
            Self::Connecting | Self::Connected => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Connecting => "connecting".to_owned(),
            Self::Connected => "connected".to_owned(),
            Self::Disconnected { reason } => format!("disconnected: {reason}"),
            Self::Reconnecting { attempt, delay_ms, reason } => {
                format!("reconnecting (attempt {attempt}, in {delay_ms} ms): {reason}")
            }
            Self::Stopped => "stopped".to_owned(),
        }
    }
}

/// What a subscriber receives: an event, or word that it fell behind and lost some.
#[derive(Debug, Clone)]
pub enum Received {
    Event(Arc<Envelope>),
    Missed(u64),
}

/// A subscription that turns broadcast lag into a visible count instead of an error, so a slow
/// reader (a busy console, a slow SSE client) loses old events and knows how many, while the
/// engine never waits for it. It is fed either by the runtime in this process or by a channel
/// (the attached console's reader of a remote `/events`, which already counted its losses).
pub struct EventStream {
    /// Set for a quiet subscription ([`QuietCount::subscribe`]): counted while it lives, and
    /// the chatter a louder subscriber brings is skipped. Declared first, so it is let go of
    /// before the receiver: the count never says more quiet subscribers than there are.
    quiet: Option<QuietGuard>,
    from: From,
}

/// Subscribers that take no chatter: no traffic and no per-chunk progress, only what changes
/// jobs, rollouts and the connection (`rocky serve`'s log below debug). While every
/// subscriber is quiet, the driver makes no chatter at all: describing each chunk and message
/// and waking a subscriber twice per chunk, for a log that drops it, was work on the thread
/// that sends every chunk.
#[derive(Debug, Clone, Default)]
pub struct QuietCount(Arc<std::sync::atomic::AtomicUsize>);

impl QuietCount {
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A quiet subscription to `events`.
    pub fn subscribe(&self, events: &broadcast::Sender<Arc<Envelope>>) -> EventStream {
        // Subscribed before it is counted (the count never says more than there are).
        let from = From::Runtime(events.subscribe());
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        EventStream { quiet: Some(QuietGuard(self.0.clone())), from }
    }
}

struct QuietGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for QuietGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl RuntimeEvent {
    /// Traffic and per-chunk progress: what quiet subscribers do not take.
    pub fn is_chatter(&self) -> bool {
        matches!(
            self,
            Self::Traffic(_)
                | Self::Engine(
                    crate::engine::Event::ChunkSent { .. } | crate::engine::Event::Progress { .. }
                )
        )
    }
}

enum From {
    Runtime(broadcast::Receiver<Arc<Envelope>>),
    Channel(tokio::sync::mpsc::Receiver<Received>),
}

impl EventStream {
    pub fn new(rx: broadcast::Receiver<Arc<Envelope>>) -> Self {
        Self { quiet: None, from: From::Runtime(rx) }
    }

    pub fn from_channel(rx: tokio::sync::mpsc::Receiver<Received>) -> Self {
        Self { quiet: None, from: From::Channel(rx) }
    }

    /// The next item, or `None` once the runtime has stopped.
    pub async fn recv(&mut self) -> Option<Received> {
        loop {
            let received = self.recv_any().await;
            if !self.skips(received.as_ref()) {
                return received;
            }
        }
    }

    /// Chatter, for a quiet subscription.
    fn skips(&self, received: Option<&Received>) -> bool {
        self.quiet.is_some()
            && matches!(received, Some(Received::Event(envelope)) if envelope.event.is_chatter())
    }

    async fn recv_any(&mut self) -> Option<Received> {
        match &mut self.from {
            From::Runtime(rx) => match rx.recv().await {
                Ok(envelope) => Some(Received::Event(envelope)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some(Received::Missed(n)),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            From::Channel(rx) => rx.recv().await,
        }
    }

    /// Like `recv` but never waits: `None` when nothing is pending (or the runtime stopped).
    pub fn try_recv(&mut self) -> Option<Received> {
        loop {
            let received = self.try_recv_any();
            if !self.skips(received.as_ref()) {
                return received;
            }
        }
    }

    fn try_recv_any(&mut self) -> Option<Received> {
        match &mut self.from {
            From::Runtime(rx) => match rx.try_recv() {
                Ok(envelope) => Some(Received::Event(envelope)),
                Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Received::Missed(n)),
                Err(_) => None,
            },
            From::Channel(rx) => rx.try_recv().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(seq: u64) -> Arc<Envelope> {
        Arc::new(Envelope::new(
            seq,
            SystemTime::UNIX_EPOCH,
            RuntimeEvent::Connection(ConnectionState::Connected),
        ))
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_many_events_it_missed() {
        let (tx, rx) = broadcast::channel(4);
        let mut stream = EventStream::new(rx);
        for seq in 1..=10 {
            tx.send(envelope(seq)).unwrap();
        }
        assert!(matches!(stream.recv().await, Some(Received::Missed(6))));
        let Some(Received::Event(next)) = stream.recv().await else { panic!("an event") };
        assert_eq!(next.seq, 7, "the oldest were dropped, the newest kept");
        drop(tx);
        while let Some(Received::Event(_)) = stream.try_recv() {}
        assert!(stream.recv().await.is_none(), "ends when the runtime stops");
    }
}
