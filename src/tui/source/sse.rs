//! Reading a server's `/events`: server-sent-event framing, and each event turned back into what
//! the in-process runtime would have given the console.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::clock::Clock;
use crate::engine::{Event, JobId, JobState};
use crate::protocol::{CommandType, DeviceId};
use crate::runtime::{ConnectionState, Envelope, RuntimeEvent, Traffic, TrafficDirection};
use crate::snapshot::JobSnapshot;

/// The most one event may hold before the stream is treated as broken: a server that sends an
/// endless line must not make the console hold it. (A job snapshot is well under 16 KiB.)
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Splits a byte stream into `(event name, data)` pairs. It works on bytes and decodes whole
/// events, so a character split between two reads arrives whole.
#[derive(Default)]
pub struct Framer {
    buffer: Vec<u8>,
    /// Where the search for the next blank line resumes (what came before has none).
    scanned: usize,
}

impl Framer {
    /// Adds bytes; returns the complete events, or an error when one grows past the limit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let from = self.scanned.saturating_sub(1);
            let Some(end) = self.buffer[from..].windows(2).position(|w| w == b"\n\n").map(|at| from + at)
            else {
                self.scanned = self.buffer.len();
                break;
            };
            let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
            self.scanned = 0;
            let block = String::from_utf8_lossy(&raw);
            let mut name = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if !data.is_empty() {
                out.push((name, data.join("\n")));
            }
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(format!("the server sent an event larger than {MAX_EVENT_BYTES} bytes"));
        }
        Ok(out)
    }
}

/// One event of the server's stream, decoded.
#[derive(Debug)]
pub enum Item {
    Job(Box<JobSnapshot>),
    JobRemoved(JobId),
    JobsReset,
    JobsSynced,
    Event(Arc<Envelope>),
    Missed(u64),
}

#[derive(Deserialize)]
struct Stamp {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    time: u64,
}

#[derive(Deserialize)]
struct StateChanged {
    job: JobId,
    device: DeviceId,
    from: JobState,
    to: JobState,
    detail: Option<String>,
}

#[derive(Deserialize)]
struct Retried {
    job: JobId,
    device: DeviceId,
    attempt: u32,
}

#[derive(Deserialize)]
struct ChunkSent {
    job: JobId,
    device: DeviceId,
    chunk: u32,
    total: u32,
    bytes: u32,
}

#[derive(Deserialize)]
struct Progress {
    job: JobId,
    device: DeviceId,
    confirmed: u32,
    total: u32,
}

#[derive(Deserialize)]
struct Ignored {
    job: JobId,
    device: DeviceId,
    command: CommandType,
    reason: String,
}

#[derive(Deserialize)]
struct TrafficJson {
    direction: TrafficDirection,
    topic: String,
    qos: u8,
    size: usize,
    text: String,
    device: Option<String>,
    job: Option<JobId>,
    decode_error: bool,
    chunk: Option<u32>,
    #[serde(default)]
    payload: String,
}

#[derive(Deserialize)]
struct Note {
    job: JobId,
    device: DeviceId,
    text: String,
}

#[derive(Deserialize)]
struct Removed {
    id: JobId,
}

#[derive(Deserialize)]
struct Missed {
    missed: u64,
}

/// Decodes one event; `Ok(None)` for an event this console does not know (a newer server).
pub fn decode(name: &str, data: &str, clock: &Clock) -> Result<Option<Item>, String> {
    let json = |what: &str| format!("the server's {what} event did not parse");
    let stamp: Stamp = serde_json::from_str(data).unwrap_or(Stamp { seq: 0, time: 0 });
    let envelope = |event: RuntimeEvent| {
        let time =
            if stamp.time > 0 { UNIX_EPOCH + Duration::from_millis(stamp.time) } else { SystemTime::now() };
        Ok(Some(Item::Event(Arc::new(Envelope::new(stamp.seq, time, event)))))
    };
    match name {
        "job" => serde_json::from_str(data).map(|job| Some(Item::Job(Box::new(job)))).map_err(|_| json(name)),
        "job_removed" => serde_json::from_str::<Removed>(data)
            .map(|r| Some(Item::JobRemoved(r.id)))
            .map_err(|_| json(name)),
        "jobs_reset" => Ok(Some(Item::JobsReset)),
        "jobs_synced" => Ok(Some(Item::JobsSynced)),
        "missed" => {
            serde_json::from_str::<Missed>(data).map(|m| Some(Item::Missed(m.missed))).map_err(|_| json(name))
        }
        "connection" => {
            let state: ConnectionState = serde_json::from_str(data).map_err(|_| json(name))?;
            envelope(RuntimeEvent::Connection(state))
        }
        "rollout" => {
            let notice: crate::runtime::RolloutNotice = serde_json::from_str(data).map_err(|_| json(name))?;
            envelope(RuntimeEvent::Rollout(notice))
        }
        "alert" => {
            let alert: crate::runtime::Alert = serde_json::from_str(data).map_err(|_| json(name))?;
            envelope(RuntimeEvent::Alert(alert))
        }
        "job_created" => {
            let job: JobSnapshot = serde_json::from_str(data).map_err(|_| json(name))?;
            let view = job.to_view(job.described_image(), clock);
            envelope(RuntimeEvent::Engine(Event::Created(Box::new(view))))
        }
        "job_state" => {
            let e: StateChanged = serde_json::from_str(data).map_err(|_| json(name))?;
            let event = Event::StateChanged {
                job: e.job,
                device: e.device,
                from: e.from,
                to: e.to,
                detail: e.detail,
            };
            envelope(RuntimeEvent::Engine(event))
        }
        "request_retried" => {
            let e: Retried = serde_json::from_str(data).map_err(|_| json(name))?;
            envelope(RuntimeEvent::Engine(Event::RequestRetried {
                job: e.job,
                device: e.device,
                attempt: e.attempt,
            }))
        }
        "chunk_sent" => {
            let e: ChunkSent = serde_json::from_str(data).map_err(|_| json(name))?;
            let event = Event::ChunkSent {
                job: e.job,
                device: e.device,
                chunk: e.chunk,
                total: e.total,
                bytes: e.bytes,
            };
            envelope(RuntimeEvent::Engine(event))
        }
        "job_progress" => {
            let e: Progress = serde_json::from_str(data).map_err(|_| json(name))?;
            let event =
                Event::Progress { job: e.job, device: e.device, confirmed: e.confirmed, total: e.total };
            envelope(RuntimeEvent::Engine(event))
        }
        "response_ignored" => {
            let e: Ignored = serde_json::from_str(data).map_err(|_| json(name))?;
            let event = Event::Ignored { device: e.device, job: e.job, command: e.command, reason: e.reason };
            envelope(RuntimeEvent::Engine(event))
        }
        "job_note" => {
            let e: Note = serde_json::from_str(data).map_err(|_| json(name))?;
            envelope(RuntimeEvent::Engine(Event::Note { job: e.job, device: e.device, text: e.text }))
        }
        "traffic" => {
            let t: TrafficJson = serde_json::from_str(data).map_err(|_| json(name))?;
            let payload = hex::decode(&t.payload).unwrap_or_default();
            envelope(RuntimeEvent::Traffic(Traffic {
                direction: t.direction,
                topic: t.topic,
                qos: t.qos,
                size: t.size,
                text: t.text,
                payload: bytes::Bytes::from(payload),
                device: t.device.and_then(|d| DeviceId::parse(&d).ok()),
                job: t.job,
                decode_error: t.decode_error,
                chunk: t.chunk,
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_and_unknown_events_are_skipped() {
        let mut framer = Framer::default();
        assert!(framer.push(b"event: jobs_reset\ndata: {}\n").unwrap().is_empty());
        let events = framer.push(b"\nevent: job_removed\ndata: {\"id\":7}\n\n: keep-alive\n\n").unwrap();
        assert_eq!(
            events,
            vec![("jobs_reset".into(), "{}".into()), ("job_removed".into(), "{\"id\":7}".into())]
        );
        let clock = Clock::new();
        assert!(matches!(decode("job_removed", "{\"id\":7}", &clock), Ok(Some(Item::JobRemoved(7)))));
        assert!(matches!(decode("from_the_future", "{}", &clock), Ok(None)));
        assert!(decode("job", "{not json", &clock).is_err());
        let state =
            r#"{"job":3,"device":"dev-1","from":"queued","to":"requesting","detail":null,"seq":9,"time":1}"#;
        let Ok(Some(Item::Event(envelope))) = decode("job_state", state, &clock) else { panic!("decoded") };
        assert_eq!(envelope.seq, 9);
        let traffic = r#"{"direction":"in","topic":"/fota/cmd_resp/d","qos":1,"size":4,"text":"t","device":"d",
            "job":42,"decode_error":false,"chunk":null,"payload":"82182a02"}"#;
        let Ok(Some(Item::Event(envelope))) = decode("traffic", traffic, &clock) else { panic!("decoded") };
        let RuntimeEvent::Traffic(t) = &envelope.event else { panic!("traffic") };
        assert_eq!(&t.payload[..], &[0x82, 0x18, 0x2a, 0x02]);
    }

    #[test]
    fn a_character_split_between_reads_arrives_whole() {
        let mut framer = Framer::default();
        let text = "event: traffic\ndata: cmd → dev-1\n\n".as_bytes();
        let split = text.iter().position(|b| *b == 0xe2).unwrap() + 1; // inside the arrow
        assert!(framer.push(&text[..split]).unwrap().is_empty());
        let events = framer.push(&text[split..]).unwrap();
        assert_eq!(events, vec![("traffic".into(), "cmd → dev-1".into())]);
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut framer = Framer::default();
        let err = framer.push(&vec![b'x'; MAX_EVENT_BYTES + 1]).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
    }
}
