//! The JSON shapes of the API. Times are milliseconds since the Unix epoch.

use serde_json::{Value, json};

use crate::engine::Event;
use crate::runtime::{Clock, Envelope, Received, RuntimeEvent};
use crate::snapshot::JobSnapshot;

/// `(event name, JSON)` for one item of the event stream, as `GET /events` sends it.
pub fn event_json(received: &Received, clock: &Clock) -> (&'static str, Value) {
    let envelope: &Envelope = match received {
        Received::Missed(n) => return ("missed", json!({ "missed": n })),
        Received::Event(envelope) => envelope,
    };
    let time = envelope.time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let (name, mut body) = match &envelope.event {
        RuntimeEvent::Engine(event) => engine_json(event, clock),
        RuntimeEvent::Traffic(t) => {
            // What a detail view needs: the whole of a command or response (at most 4 KiB
            // kept), the start of a chunk (the runtime keeps no more of it).
            let payload = hex::encode(&t.payload);
            (
                "traffic",
                json!({
                    "direction": t.direction, "topic": t.topic, "qos": t.qos, "size": t.size, "text": t.text,
                    "device": t.device.as_ref().map(ToString::to_string), "job": t.job,
                    "decode_error": t.decode_error, "chunk": t.chunk, "payload": payload,
                }),
            )
        }
        RuntimeEvent::Connection(state) => ("connection", json!(state)),
        RuntimeEvent::Rollout(notice) => ("rollout", json!(notice)),
        RuntimeEvent::Alert(alert) => ("alert", json!(alert)),
    };
    if let Value::Object(map) = &mut body {
        map.insert("seq".into(), json!(envelope.seq));
        map.insert("time".into(), json!(time));
    }
    (name, body)
}

fn engine_json(event: &Event, clock: &Clock) -> (&'static str, Value) {
    match event {
        Event::Created(view) => ("job_created", json!(JobSnapshot::new(view, clock))),
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
        Event::Progress { job, device, confirmed, total } => (
            "job_progress",
            json!({ "job": job, "device": device.to_string(), "confirmed": confirmed, "total": total }),
        ),
        Event::Note { job, device, text } => {
            ("job_note", json!({ "job": job, "device": device.to_string(), "text": text }))
        }
        Event::Ignored { device, job, command, reason } => (
            "response_ignored",
            json!({ "job": job, "device": device.to_string(), "command": command, "reason": reason }),
        ),
    }
}
