//! `GET /events`, typed: every event the stream sends, its SSE name (the variant's name in
//! snake case) and its data (the variant's fields as JSON), one enum for the server that writes
//! it and the console that reads it. The README lists these names; a reader skips a name it does
//! not know (a newer server).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::engine::{Event, JobId, JobState};
use crate::protocol::{CommandType, DeviceId};
use crate::runtime::{
    Alert, ConnectionState, Envelope, RolloutNotice, RuntimeEvent, Traffic, TrafficDirection,
};
use crate::snapshot::JobSnapshot;

/// One event of the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum WireEvent {
    /// A job as it is now. Lossless: a slow reader skips states, never a job's last one.
    Job(std::sync::Arc<JobSnapshot>),
    /// Retention forgot a job.
    JobRemoved {
        id: JobId,
    },
    /// The reader fell too far behind: every job follows again.
    JobsReset {},
    /// Every job was sent since `jobs_reset`: any the reader holds and did not get is gone.
    JobsSynced {},
    /// This many lossy events were skipped for a slow reader.
    Missed {
        missed: u64,
    },
    Connection(ConnectionState),
    Rollout(RolloutNotice),
    Alert(Alert),
    JobCreated(Box<JobSnapshot>),
    JobState {
        job: JobId,
        device: DeviceId,
        from: JobState,
        to: JobState,
        detail: Option<String>,
    },
    RequestRetried {
        job: JobId,
        device: DeviceId,
        attempt: u32,
    },
    ChunkSent {
        job: JobId,
        device: DeviceId,
        chunk: u32,
        total: u32,
        bytes: u32,
    },
    JobProgress {
        job: JobId,
        device: DeviceId,
        confirmed: u32,
        total: u32,
        window: u32,
    },
    JobNote {
        job: JobId,
        device: DeviceId,
        /// The state the job was in when this was said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<JobState>,
        text: String,
    },
    ResponseIgnored {
        job: JobId,
        device: DeviceId,
        command: CommandType,
        reason: String,
    },
    Traffic(TrafficWire),
}

/// One MQTT message as the stream carries it: its kept bytes in hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficWire {
    pub direction: TrafficDirection,
    pub topic: String,
    pub qos: u8,
    pub size: usize,
    pub text: String,
    pub device: Option<String>,
    pub job: Option<JobId>,
    pub decode_error: bool,
    pub chunk: Option<u32>,
    #[serde(default)]
    pub payload: String,
}

/// Where an event sits in the runtime's stream: its number and time (Unix ms), carried in the
/// data of every event that came from the runtime's broadcast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub time: u64,
}

impl WireEvent {
    /// The runtime's event as the stream sends it.
    pub fn from_runtime(event: &RuntimeEvent, clock: &Clock) -> Self {
        match event {
            RuntimeEvent::Engine(event) => Self::from_engine(event, clock),
            RuntimeEvent::Traffic(t) => Self::Traffic(TrafficWire {
                direction: t.direction,
                topic: t.topic.clone(),
                qos: t.qos,
                size: t.size,
                text: t.text.clone(),
                device: t.device.as_ref().map(ToString::to_string),
                job: t.job,
                decode_error: t.decode_error,
                chunk: t.chunk,
                // What a detail view needs: the whole of a command or response (at most 4 KiB
                // kept), the start of a chunk (the runtime keeps no more of it).
                payload: hex::encode(&t.payload),
            }),
            RuntimeEvent::Connection(state) => Self::Connection(state.clone()),
            RuntimeEvent::Rollout(notice) => Self::Rollout(notice.clone()),
            RuntimeEvent::Alert(alert) => Self::Alert(alert.clone()),
        }
    }

    fn from_engine(event: &Event, clock: &Clock) -> Self {
        match event.clone() {
            Event::Created(view) => Self::JobCreated(Box::new(JobSnapshot::new(&view, clock))),
            Event::StateChanged { job, device, from, to, detail } => {
                Self::JobState { job, device, from, to, detail }
            }
            Event::RequestRetried { job, device, attempt } => Self::RequestRetried { job, device, attempt },
            Event::ChunkSent { job, device, chunk, total, bytes } => {
                Self::ChunkSent { job, device, chunk, total, bytes }
            }
            Event::Progress { job, device, confirmed, total, window } => {
                Self::JobProgress { job, device, confirmed, total, window }
            }
            Event::Note { job, device, state, text } => {
                Self::JobNote { job, device, state: Some(state), text }
            }
            Event::Ignored { device, job, command, reason } => {
                Self::ResponseIgnored { job, device, command, reason }
            }
        }
    }

    /// The runtime's event this stands for (the form the in-process console reads), or `None`
    /// for what only the stream has (jobs, resets, skips).
    pub fn into_runtime(self, clock: &Clock) -> Option<RuntimeEvent> {
        let engine = |event: Event| Some(RuntimeEvent::Engine(event));
        match self {
            Self::Job(_)
            | Self::JobRemoved { .. }
            | Self::JobsReset {}
            | Self::JobsSynced {}
            | Self::Missed { .. } => None,
            Self::Connection(state) => Some(RuntimeEvent::Connection(state)),
            Self::Rollout(notice) => Some(RuntimeEvent::Rollout(notice)),
            Self::Alert(alert) => Some(RuntimeEvent::Alert(alert)),
            Self::JobCreated(job) => {
                let view = job.to_view(job.described_image(), clock);
                engine(Event::Created(Box::new(view)))
            }
            Self::JobState { job, device, from, to, detail } => {
                engine(Event::StateChanged { job, device, from, to, detail })
            }
            Self::RequestRetried { job, device, attempt } => {
                engine(Event::RequestRetried { job, device, attempt })
            }
            Self::ChunkSent { job, device, chunk, total, bytes } => {
                engine(Event::ChunkSent { job, device, chunk, total, bytes })
            }
            Self::JobProgress { job, device, confirmed, total, window } => {
                engine(Event::Progress { job, device, confirmed, total, window })
            }
            // A server from before notes carried their state: said as transferring, as it did.
            Self::JobNote { job, device, state, text } => {
                engine(Event::Note { job, device, state: state.unwrap_or(JobState::Transferring), text })
            }
            Self::ResponseIgnored { job, device, command, reason } => {
                engine(Event::Ignored { device, job, command, reason })
            }
            Self::Traffic(t) => Some(RuntimeEvent::Traffic(Traffic {
                direction: t.direction,
                topic: t.topic,
                qos: t.qos,
                size: t.size,
                text: t.text,
                payload: bytes::Bytes::from(hex::decode(&t.payload).unwrap_or_default()),
                device: t.device.and_then(|d| DeviceId::parse(&d).ok()),
                job: t.job,
                decode_error: t.decode_error,
                chunk: t.chunk,
            })),
        }
    }

    /// The SSE name and data, with `stamp` in the data when given.
    pub fn to_sse(&self, stamp: Option<Stamped>) -> (String, String) {
        // Plain data (ids, strings, numbers): serialising it cannot fail.
        let mut tagged = serde_json::to_value(self).unwrap_or(Value::Null);
        let name = tagged["event"].as_str().unwrap_or_default().to_owned();
        let mut data = tagged.get_mut("data").map(Value::take).unwrap_or_else(|| json!({}));
        if let (Some(stamp), Value::Object(map)) = (stamp, &mut data) {
            map.insert("seq".into(), json!(stamp.seq));
            map.insert("time".into(), json!(stamp.time));
        }
        (name, data.to_string())
    }

    /// The event named `name` with `data`, and its stamp (zero when it has none); `Ok(None)`
    /// for a name this side does not know; an error naming the event when its data is not
    /// what the name says.
    pub fn from_sse(name: &str, data: &str) -> Result<Option<(Self, Stamped)>, String> {
        let bad = || format!("the server's {name} event did not parse");
        let data: Value = serde_json::from_str(data).map_err(|_| bad())?;
        let stamp: Stamped = serde_json::from_value(data.clone()).unwrap_or_default();
        match serde_json::from_value(json!({ "event": name, "data": data })) {
            Ok(event) => Ok(Some((event, stamp))),
            Err(e) if e.to_string().starts_with("unknown variant") => Ok(None),
            Err(_) => Err(bad()),
        }
    }
}

impl Stamped {
    /// The envelope's number and time.
    pub fn of(envelope: &Envelope) -> Self {
        let time = envelope.time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self { seq: envelope.seq, time }
    }

    /// The time as a `SystemTime` (now when the event had none).
    pub fn when(self) -> SystemTime {
        if self.time > 0 { UNIX_EPOCH + Duration::from_millis(self.time) } else { SystemTime::now() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: &WireEvent) -> WireEvent {
        let (name, data) = event.to_sse(Some(Stamped { seq: 9, time: 1_000 }));
        let (back, stamp) = WireEvent::from_sse(&name, &data).unwrap().unwrap();
        assert_eq!(stamp, Stamped { seq: 9, time: 1_000 }, "{name}");
        back
    }

    #[test]
    fn names_and_fields_are_the_readmes_and_come_back_whole() {
        let device = DeviceId::parse("dev-1").unwrap();
        let state = WireEvent::JobState {
            job: JobId::new(3),
            device: device.clone(),
            from: JobState::Queued,
            to: JobState::Requesting,
            detail: None,
        };
        let (name, data) = state.to_sse(Some(Stamped { seq: 9, time: 1 }));
        assert_eq!(name, "job_state");
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(
            data,
            json!({"job": 3, "device": "dev-1", "from": "queued", "to": "requesting", "detail": null, "seq": 9, "time": 1})
        );
        assert!(matches!(round_trip(&state), WireEvent::JobState { job, .. } if job == JobId::new(3)));
        assert_eq!(WireEvent::JobsReset {}.to_sse(None), ("jobs_reset".to_owned(), "{}".to_owned()));
        assert_eq!(
            WireEvent::JobRemoved { id: JobId::new(7) }.to_sse(None),
            ("job_removed".to_owned(), r#"{"id":7}"#.to_owned())
        );
        let progress =
            WireEvent::JobProgress { job: JobId::new(3), device, confirmed: 5, total: 9, window: 4 };
        assert!(matches!(round_trip(&progress), WireEvent::JobProgress { confirmed: 5, total: 9, .. }));
    }

    #[test]
    fn an_unknown_name_is_skipped_and_bad_data_is_named() {
        assert!(WireEvent::from_sse("from_the_future", "{}").unwrap().is_none());
        assert!(WireEvent::from_sse("job", "{not json").unwrap_err().contains("job event"));
        assert!(WireEvent::from_sse("job_removed", r#"{"id":"seven"}"#).unwrap_err().contains("job_removed"));
        let (event, _) = WireEvent::from_sse("jobs_synced", "{}").unwrap().unwrap();
        assert!(matches!(event, WireEvent::JobsSynced {}));
    }

    #[test]
    fn traffic_carries_its_bytes_in_hex() {
        let traffic = r#"{"direction":"in","topic":"/fota/cmd_resp/d","qos":1,"size":4,"text":"t","device":"d",
            "job":42,"decode_error":false,"chunk":null,"payload":"82182a02"}"#;
        let (event, _) = WireEvent::from_sse("traffic", traffic).unwrap().unwrap();
        let Some(RuntimeEvent::Traffic(t)) = event.into_runtime(&Clock::new()) else { panic!("traffic") };
        assert_eq!(&t.payload[..], &[0x82, 0x18, 0x2a, 0x02]);
        assert_eq!(t.device.map(|d| d.to_string()).as_deref(), Some("d"));
    }
}
