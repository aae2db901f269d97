//! What an operator can do, written once for every face: the HTTP API (`http/`) and the console
//! (`tui/`, in this process) hold a [`Service`] and call it, so a rule or a refusal cannot differ
//! between them. Each action answers a [`ServiceError`] that names what was wrong; the faces only
//! translate it (a status code, a line on screen).
//!
//! The faces learn the runtime's vocabulary (its events, the job table's filter and changes, the
//! broker connection's state) from here, re-exported below: they never reach into `runtime/` or
//! `store/`. Only the commands that start a runtime (`rocky serve`, `console`, `demo`, `bench`)
//! wire one, and hand its [`Handle`] to [`Service::new`].

mod audit;
mod devices;
mod dry_run;
mod dry_run_words;
mod error;
mod firmware;
mod jobs;
mod retention;
mod rollouts;
mod signed;
mod stored;

use std::sync::Arc;

pub use crate::runtime::{
    Clock, ConnectionState, Envelope, EventStream, JobChange, JobChanges, JobFilter, JobFollower, JobTable,
    Received, RolloutError, RuntimeError, RuntimeEvent, Status, Traffic, TrafficDirection,
};
pub use audit::{SYSTEM_ACTOR, jobs_target};
pub use devices::Imported;
pub use dry_run::{DeviceList, Estimate, NAMED_DEVICES, Refusal, RolloutDryRun};
pub use error::ServiceError;
pub use jobs::{NewJobs, SubmittedJobs};
pub use rollouts::{NewRollout, RolloutVerb};
pub use stored::stored_jobs;

use crate::firmware::{ChunkSize, Library};
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::runtime::Handle;

/// The operator's actions over one runtime, taken for one actor (the audit's name for who
/// acted; see [`Service::acting_as`]). Cheap to clone: every face and task holds its own.
#[derive(Clone)]
pub struct Service {
    handle: Handle,
    actor: Arc<str>,
}

impl From<Handle> for Service {
    fn from(handle: Handle) -> Self {
        Self::new(handle)
    }
}

impl Service {
    /// The service over `handle`, acting as Rocky itself until [`Service::acting_as`] names
    /// someone.
    pub fn new(handle: Handle) -> Self {
        Self { handle, actor: SYSTEM_ACTOR.into() }
    }

    /// The runtime's time: job times, timeouts and "seen" are read on it.
    pub fn clock(&self) -> &Clock {
        self.handle.clock()
    }

    /// Where images are found by hash and kept by content.
    pub fn library(&self) -> &Arc<Library> {
        self.handle.library()
    }

    pub fn metrics(&self) -> &Metrics {
        self.handle.metrics()
    }

    /// The devices Rocky knows, to read (changes go through [`Service::register`] and the rest).
    pub fn inventory(&self) -> &Inventory {
        self.handle.inventory()
    }

    /// The chunk size of a job that names none (`jobs.chunk_size`).
    pub fn default_chunk(&self) -> ChunkSize {
        self.handle.default_chunk()
    }

    /// The broker connection, the store's health and the job counts.
    pub async fn status(&self) -> Result<Status, ServiceError> {
        Ok(self.handle.status().await?)
    }

    /// Traffic, timeline events and the broker connection: bounded, losses counted.
    pub fn subscribe(&self) -> EventStream {
        self.handle.subscribe()
    }

    /// Events without chatter (traffic, per-chunk progress), which is then not made at all
    /// while no one else listens.
    pub fn subscribe_quiet(&self) -> EventStream {
        self.handle.subscribe_quiet()
    }

    /// Every job's state from a full snapshot on: lossless, latest wins.
    pub fn follow_jobs(&self) -> JobFollower {
        self.handle.follow_jobs()
    }

    /// Every change of a rollout's state from now on (bounded; a reader that falls behind is
    /// told how many it missed).
    pub fn rollout_notices(&self) -> tokio::sync::broadcast::Receiver<crate::runtime::RolloutNotice> {
        self.handle.rollouts().notices()
    }
}
