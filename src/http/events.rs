//! `GET /events`: the runtime's event stream as server-sent events. Every job's state arrives as
//! `job` events from the job table, which cannot lose a state: a slow client skips intermediate
//! states but always ends with each job's current one. Traffic and timeline events are bounded
//! and lossy: a client that cannot keep up gets a `missed` event with the count instead of
//! slowing anything down; each is serialised once for all clients. At most
//! `http.max_event_clients` clients at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::dto::event_json;
use super::{ApiError, ApiState};
use crate::api::WireEvent;
use crate::service::{Clock, JobChange, Received};

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
            let (name, body) = envelope.json.get_or_init(|| event_json(received, clock));
            Event::default().event(name).data(body)
        }
        Received::Missed(_) => {
            let (name, body) = event_json(received, clock);
            Event::default().event(name).data(body)
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
    let events = state.service.subscribe();
    let jobs = state.service.follow_jobs();
    let clock = *state.service.clock();
    // The guards live as long as the stream: the slot and the client gauge go with the client.
    let gauge = state.service.metrics().event_client();
    // The broker connection as it is now comes first; later changes follow as events.
    let mut pending = VecDeque::new();
    if let Ok(status) = state.service.status().await {
        pending.push_back(sse_of(&WireEvent::Connection(status.connection)));
    }
    let stopping = state.stopping.clone();
    let start = ClientStream { events, jobs, pending, syncing: false, stopping, _slot: slot, _gauge: gauge };
    let stream = futures_util::stream::unfold(start, move |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok(event), s));
            }
            // Unbiased: during a transfer job changes are nearly always ready, and must not
            // starve traffic and timeline events (or the other way round).
            tokio::select! {
                () = stopped(&mut s.stopping) => return None,
                changes = s.jobs.next(JOB_BATCH) => {
                    let changes = changes?;
                    if changes.reset {
                        s.pending.push_back(sse_of(&WireEvent::JobsReset {}));
                        s.syncing = true;
                    }
                    s.pending.extend(changes.changes.iter().map(job_event));
                    if s.syncing && changes.complete {
                        // The whole table has been sent: jobs the client held and did not
                        // receive since `jobs_reset` no longer exist.
                        s.pending.push_back(sse_of(&WireEvent::JobsSynced {}));
                        s.syncing = false;
                    }
                }
                received = s.events.recv() => s.pending.push_back(sse(&received?, &clock)),
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Job changes sent per wake-up; the rest follow on the next.
const JOB_BATCH: usize = 256;

/// One client's stream: the lossy event broadcast (traffic, timeline events, connection) and
/// the lossless job table, whose changes it sends as `job` events: after a reset (the first
/// batch, or after falling too far behind) the client receives every job again with no second
/// request.
struct ClientStream {
    events: crate::service::EventStream,
    jobs: crate::service::JobFollower,
    pending: VecDeque<Event>,
    /// Between `jobs_reset` and the end of the full table.
    syncing: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
    _slot: Slot,
    _gauge: crate::metrics::EventClientGuard,
}

/// Resolves when the server begins to stop; never for a state no server stops.
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    if stopping.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn job_event(change: &JobChange) -> Event {
    match change {
        JobChange::Job(job) => sse_of(&WireEvent::Job(job.clone())),
        JobChange::Removed(id) => sse_of(&WireEvent::JobRemoved { id: *id }),
    }
}

/// An event of the stream's own (not the runtime's broadcast), unstamped.
fn sse_of(event: &WireEvent) -> Event {
    let (name, data) = event.to_sse(None);
    Event::default().event(name).data(data)
}
