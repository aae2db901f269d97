//! The wire contract of Rocky's HTTP API, typed once for both sides: the server writes these
//! shapes and the attached console and the CLI read them. Serde only: no tokio, axum or ratatui
//! in here, so a client can take it whole.
//!
//! Here: the `/events` stream ([`WireEvent`], and the SSE framer), the request bodies
//! (`requests.rs`) and the answers (`answers.rs`) of the endpoints the CLI and the console use,
//! and the one API client ([`Client`]) they share. Still written by hand: `/healthz`'s answer and
//! a rollout's create and control answers (a `RolloutView` with a warning added).

mod answers;
mod client;
mod events;
mod requests;
mod sse;

pub use answers::{
    CreatedJobs, DevicePage, FirmwareImage, FirmwareList, Imported, JobPage, RolloutList, Timeline,
};
pub use client::{Body, Client, Failure, MAX_ANSWER_BYTES, failure, percent_encode, root_cause};
pub use events::{Stamped, TrafficWire, WireEvent};
pub use requests::{CreateJobs, CreateOriginal, Firmware, PutDevice};
pub use sse::{Framer, MAX_EVENT_BYTES};
