//! `GET /events`: the runtime's event stream as server-sent events. A client that cannot keep
//! up gets a `missed` event with the count instead of slowing anything down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::ApiState;
use super::dto::event_json;

pub async fn stream(State(state): State<ApiState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = state.handle.subscribe();
    let clock = *state.handle.clock();
    // The guard lives as long as the stream: the client gauge drops when the client goes.
    let client = state.handle.metrics().event_client();
    let stream = futures_util::stream::unfold((events, client), move |(mut events, client)| async move {
        let received = events.recv().await?;
        let (name, body) = event_json(&received, &clock);
        let event = Event::default().event(name).data(body.to_string());
        Some((Ok(event), (events, client)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
