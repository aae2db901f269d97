//! The JSON shapes of the API. Times are milliseconds since the Unix epoch.

use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::{Event, JobState, JobView};
use crate::protocol::sha256_hex;
use crate::runtime::{Clock, Envelope, Received, RuntimeEvent};

#[derive(Debug, Serialize)]
pub struct ImageJson {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct JobJson {
    pub id: u32,
    pub device: String,
    pub state: JobState,
    pub image: ImageJson,
    pub chunk_size: u32,
    pub chunks_sent: u32,
    pub chunks_total: u32,
    pub bytes_sent: u64,
    pub attempts: u32,
    pub error: Option<String>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
}

impl JobJson {
    pub fn new(job: &JobView, clock: &Clock) -> Self {
        Self {
            id: job.id,
            device: job.device.to_string(),
            state: job.state,
            image: ImageJson {
                name: job.image.name().to_owned(),
                size: job.image.size(),
                sha256: sha256_hex(job.image.sha256()),
            },
            chunk_size: job.chunk_size.get(),
            chunks_sent: job.chunks_done,
            chunks_total: job.chunks_total,
            bytes_sent: job.bytes_sent,
            attempts: job.attempts,
            error: job.error.clone(),
            created_at: clock.unix_ms(job.created_at),
            started_at: job.started_at.map(|t| clock.unix_ms(t)),
            finished_at: job.finished_at.map(|t| clock.unix_ms(t)),
        }
    }
}

/// `(event name, JSON)` for one item of the event stream, as `GET /events` sends it.
pub fn event_json(received: &Received, clock: &Clock) -> (&'static str, Value) {
    let envelope: &Envelope = match received {
        Received::Missed(n) => return ("missed", json!({ "missed": n })),
        Received::Event(envelope) => envelope,
    };
    let time = envelope.time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let (name, mut body) = match &envelope.event {
        RuntimeEvent::Engine(event) => engine_json(event, clock),
        RuntimeEvent::Traffic(t) => (
            "traffic",
            json!({
                "direction": t.direction, "topic": t.topic, "qos": t.qos, "size": t.size, "text": t.text,
                "device": t.device.as_ref().map(ToString::to_string), "job": t.job, "decode_error": t.decode_error,
            }),
        ),
        RuntimeEvent::Connection(state) => ("connection", json!(state)),
    };
    if let Value::Object(map) = &mut body {
        map.insert("seq".into(), json!(envelope.seq));
        map.insert("time".into(), json!(time));
    }
    (name, body)
}

fn engine_json(event: &Event, clock: &Clock) -> (&'static str, Value) {
    match event {
        Event::Created(view) => ("job_created", json!(JobJson::new(view, clock))),
        Event::StateChanged { job, device, from, to, detail } => (
            "job_state",
            json!({ "job": job, "device": device.to_string(), "from": from, "to": to, "detail": detail }),
        ),
        Event::RequestRetried { job, device, attempt } => {
            ("request_retried", json!({ "job": job, "device": device.to_string(), "attempt": attempt }))
        }
        Event::ChunkSent { job, device, chunk, total, bytes } => (
            "chunk_sent",
            json!({ "job": job, "device": device.to_string(), "chunk": chunk, "total": total, "bytes": bytes }),
        ),
        Event::Ignored { device, job, command, reason } => (
            "response_ignored",
            json!({ "job": job, "device": device.to_string(), "command": command, "reason": reason }),
        ),
    }
}
