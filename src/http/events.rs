//! `GET /events`: the runtime's event stream as server-sent events. A client that cannot keep
//! up gets a `missed` event with the count instead of slowing anything down; each event is
//! serialised once for all clients; at most `http.max_event_clients` clients at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::dto::event_json;
use super::{ApiError, ApiState};
use crate::runtime::{Clock, Received};

/// Holds one of the `/events` slots until the stream ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn take_slot(clients: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
    let taken = clients.fetch_add(1, Ordering::AcqRel);
    let slot = Slot(clients.clone());
    (taken < max).then_some(slot)
}

/// The SSE name and data of what a client received; an event's JSON is made once.
fn sse(received: &Received, clock: &Clock) -> Event {
    match received {
        Received::Event(envelope) => {
            let (name, body) = envelope.json.get_or_init(|| {
                let (name, value) = event_json(received, clock);
                (name, value.to_string())
            });
            Event::default().event(*name).data(body)
        }
        Received::Missed(_) => {
            let (name, value) = event_json(received, clock);
            Event::default().event(name).data(value.to_string())
        }
    }
}

pub async fn stream(
    State(state): State<ApiState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let max = state.policy.max_event_clients;
    let Some(slot) = take_slot(&state.event_clients, max) else {
        return Err(ApiError::Unavailable(format!(
            "{max} clients are already reading /events (http.max_event_clients); try again later"
        )));
    };
    let events = state.handle.subscribe();
    let clock = *state.handle.clock();
    // The guards live as long as the stream: the slot and the client gauge go with the client.
    let gauge = state.handle.metrics().event_client();
    let stream =
        futures_util::stream::unfold((events, slot, gauge), move |(mut events, slot, gauge)| async move {
            let received = events.recv().await?;
            Some((Ok(sse(&received, &clock)), (events, slot, gauge)))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
