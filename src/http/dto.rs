//! The JSON shapes of the API. Times are milliseconds since the Unix epoch.

use crate::api::{Stamped, WireEvent};
use crate::service::{Clock, Received};

/// `(event name, data)` for one item of the event stream, as `GET /events` sends it.
pub fn event_json(received: &Received, clock: &Clock) -> (String, String) {
    match received {
        Received::Missed(n) => WireEvent::Missed { missed: *n }.to_sse(None),
        Received::Event(envelope) => {
            WireEvent::from_runtime(&envelope.event, clock).to_sse(Some(Stamped::of(envelope)))
        }
    }
}
