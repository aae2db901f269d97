//! This instance's part in a shared store, made once when the runtime starts and handed to each
//! part that needs it: the driver's fence, the handle's cancel of a job another instance drives,
//! the claims task, and the hand-over on a graceful stop.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Fence, claims};
use crate::engine::JobId;
use crate::firmware::Library;
use crate::inventory::Inventory;
use crate::runtime::handle::Request;
use crate::runtime::{Clock, JobTable, RuntimeError};
use crate::snapshot::JobSnapshot;
use crate::store::{Membership, Store};

#[derive(Clone)]
pub struct Cluster {
    store: Store,
    membership: Arc<Membership>,
}

impl Cluster {
    /// The store's sharing, when it is shared (PostgreSQL); `None` for a store of one's own.
    pub fn of(store: &Store) -> Option<Self> {
        let membership = store.membership()?.clone();
        Some(Self { store: store.clone(), membership })
    }

    /// The fence the engine's task checks: never closed without a cluster.
    pub fn fence(cluster: Option<&Self>) -> Fence {
        Fence::new(cluster.map(|c| c.membership.clone()))
    }

    /// Cancels job `id`, which this instance does not drive: in the store when no live instance
    /// drives it, else by asking the one that does and waiting for its answer.
    pub async fn cancel(&self, id: JobId) -> Result<JobSnapshot, RuntimeError> {
        claims::cancel_elsewhere(&self.membership, id).await
    }

    /// Starts the claims task (lease, claims, cancels asked of this instance, others' jobs).
    pub fn spawn_claims(
        &self,
        table: Arc<JobTable>,
        library: Arc<Library>,
        clock: Clock,
        inventory: Inventory,
        requests: mpsc::Sender<Request>,
        stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let shared = claims::Shared {
            membership: self.membership.clone(),
            store: self.store.clone(),
            table,
            library,
            clock,
            inventory,
        };
        tokio::spawn(claims::run(shared, requests, stop))
    }

    /// Hands this instance's unfinished jobs over at once (a graceful stop); others take them
    /// when its lease runs out otherwise.
    pub async fn leave(&self) {
        if let Err(error) = self.membership.leave().await {
            tracing::warn!(%error, "could not hand over this instance's jobs; others take them when its lease runs out");
        }
    }
}
