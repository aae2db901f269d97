//! The wire contract of Rocky's HTTP API, typed once for both sides: the server writes these
//! shapes and the attached console and the CLI read them. Serde only: no tokio, axum or ratatui
//! in here, so a client can take it whole.
//!
//! So far: the `/events` stream ([`WireEvent`], and the SSE framer) and the one API client
//! ([`Client`]) the CLI and the attached console share. Request and answer types of the other
//! endpoints follow (issue 21).

mod client;
mod events;
mod sse;

pub use client::{Body, Client, Failure, MAX_ANSWER_BYTES, failure, root_cause};
pub use events::{Stamped, TrafficWire, WireEvent};
pub use sse::{Framer, MAX_EVENT_BYTES};
