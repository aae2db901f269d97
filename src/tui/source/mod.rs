//! Where the console's jobs, events and actions come from: a runtime in this process
//! ([`Local`], through `service/`), or a running `rocky serve` reached through its HTTP API
//! ([`Remote`], `rocky console --server`). Both are a [`Source`], so every screen and key works
//! the same attached or not.

mod local;
mod remote;
mod sse;

pub use crate::service::RolloutVerb;
pub use local::Local;
pub use remote::Remote;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::clock::Clock;
use crate::engine::{JobId, JobSpec};
use crate::firmware::{Image, Library, LoadLimits};
use crate::inventory::Device;
use crate::rollout::{DeviceWindow, RolloutId, RolloutRequest, RolloutView};
use crate::service::{ConnectionState, EventStream, JobFollower};
use crate::snapshot::HistoryRecord;
use crate::snapshot::JobSnapshot;

/// Inventory devices the console reads at a time: it walks the whole inventory a page at a
/// time (the API's pages), so a fleet of any size is listed without one giant answer.
pub const INVENTORY_PAGE: usize = 10_000;

/// One page of the inventory, and where the next starts (`None`: this was the last).
#[derive(Debug, Clone, Default)]
pub struct InventoryPage {
    pub devices: Vec<Device>,
    pub next_after: Option<crate::protocol::DeviceId>,
}

/// Rollouts the console lists (the newest).
pub const ROLLOUTS_SHOWN: usize = 100;

/// Devices an open rollout's detail shows and fetches at a time (`[` and `]` page).
pub const DETAIL_DEVICES: usize = 100;

/// An action's answer: the console runs each on a task of its own and shows the words of a
/// refusal as they are.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What the console reads and does, whoever holds the jobs.
pub trait Source: Send + Sync {
    /// Whether this console is attached to a server (the runtime is elsewhere).
    fn attached(&self) -> bool;

    fn clock(&self) -> Clock;

    /// Every job's state from a full snapshot on: lossless, latest wins.
    fn follow_jobs(&self) -> JobFollower;

    /// Traffic, timeline events and the broker connection: bounded, losses counted. Only the
    /// first call of an attached console gets the stream.
    fn subscribe(&self) -> Option<EventStream>;

    /// Where previews are loaded: the operator's own files are always read here.
    fn library(&self) -> Arc<Library>;

    /// The broker connection now, where the source knows it before any event says so.
    fn connection(&self) -> Answer<'_, Option<ConnectionState>>;

    /// The inventory's devices by id after `after` (registered, or known from the wire), at
    /// most [`INVENTORY_PAGE`]: the devices pane lists them and the new-job form's `prefix*`
    /// matches them.
    fn inventory(&self, after: Option<crate::protocol::DeviceId>) -> Answer<'_, InventoryPage>;

    /// Creates the jobs; answers how many.
    fn submit(&self, specs: Vec<JobSpec>) -> Answer<'_, usize>;

    fn cancel(&self, id: JobId) -> Answer<'_, ()>;

    /// A new job for the same device and image.
    fn retry<'a>(&'a self, job: &'a JobSnapshot, limits: &'a LoadLimits) -> Answer<'a, usize>;

    /// The newest rollouts at a glance (no devices), newest first.
    fn rollouts(&self) -> Answer<'_, Vec<RolloutView>>;

    /// One rollout with its history and its devices' outcomes: all of them (`None`: to write
    /// it to a file), or the ones in `window` (the detail's page).
    fn rollout(&self, id: RolloutId, window: Option<DeviceWindow>) -> Answer<'_, RolloutView>;

    /// Starts a rollout of `image` (the form's), checked and planned by the side that holds the
    /// inventory.
    fn create_rollout(&self, request: RolloutRequest, image: Image) -> Answer<'_, RolloutId>;

    /// What starting that rollout would do (`POST /rollouts?dry_run=true`): nothing is created.
    fn dry_run_rollout(
        &self,
        request: RolloutRequest,
        image: Image,
    ) -> Answer<'_, crate::service::RolloutDryRun>;

    /// Pauses, resumes or cancels a rollout; the change is on disk when this answers.
    fn control_rollout(&self, id: RolloutId, verb: RolloutVerb) -> Answer<'_, ()>;

    /// A job's stored timeline, when the other side keeps one.
    fn history(&self, id: JobId) -> Answer<'_, Vec<HistoryRecord>>;

    /// The manifest from a trusted key `image` goes out with: one Rocky holds, else the one Rocky
    /// makes with its own key when it holds one (the form says whether the image is signed).
    fn manifest(&self, image: Image) -> Answer<'_, Option<crate::protocol::Manifest>>;

    /// One page of the audit trail (who changed what), oldest first.
    fn audit(&self, query: crate::audit::Query) -> Answer<'_, crate::audit::Page>;

    /// Attaches `cose` (a manifest `rocky sign` wrote beside the operator's file) to `image`,
    /// once Rocky verified it; the attached console uploads the image first.
    fn attach_manifest(&self, image: Image, cose: Vec<u8>) -> Answer<'_, crate::protocol::Manifest>;
    /// Attaches the `sig-sha256-ecdsa` `rocky sign --format aws` wrote beside the image, for
    /// devices that run AWS's OTA agent (checked as the API checks it).
    fn attach_aws_signature(&self, image: Image, signature: String) -> Answer<'_, ()>;
}
