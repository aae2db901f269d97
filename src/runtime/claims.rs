//! The runtime's side of sharing a PostgreSQL store with other instances: now and then it
//! claims jobs no live instance drives (a dead instance's, once its lease ran out) and hands
//! them to the engine; when this instance's own lease cannot be renewed in time it holds back
//! everything sent, lets go of its unfinished jobs (another instance may have claimed them) and
//! joins again once the database answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::handle::Request;
use super::{Clock, recover};
use crate::firmware::Library;
use crate::store::{Membership, Store};

/// How often jobs are claimed and the lease checked.
pub const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// The most jobs claimed at once, so instances that claim together share a dead one's jobs.
pub const CLAIM_BATCH: usize = 500;

pub async fn run(
    membership: Arc<Membership>,
    store: Store,
    requests: mpsc::Sender<Request>,
    library: Arc<Library>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CLAIM_EVERY.min(membership.lease() / 3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fenced = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if !membership.holds() {
            if !fenced {
                fenced = true;
                tracing::error!(
                    instance = membership.instance(),
                    "this instance's lease ran out before it could be renewed: it sends nothing and lets \
                     go of its unfinished jobs, which another instance may take over"
                );
                if requests.send(Request::Fence(true)).await.is_err() {
                    return;
                }
                let (reply, released) = oneshot::channel();
                if requests.send(Request::ReleaseUnfinished(reply)).await.is_err() {
                    return;
                }
                let released = released.await.unwrap_or_default();
                tracing::warn!(jobs = released.len(), "unfinished jobs let go");
            }
            match membership.rejoin().await {
                Ok(()) => {
                    fenced = false;
                    tracing::info!(instance = membership.instance(), "lease taken again");
                    if requests.send(Request::Fence(false)).await.is_err() {
                        return;
                    }
                }
                Err(_) => continue, // the heartbeat already says why, for /healthz and the log
            }
        }
        if adopt(&membership, &store, &requests, &library, clock).await.is_err() {
            return;
        }
    }
}

/// Claims what there is to claim and hands it to the engine; `Err` once the engine is gone.
async fn adopt(
    membership: &Membership,
    store: &Store,
    requests: &mpsc::Sender<Request>,
    library: &Arc<Library>,
    clock: Clock,
) -> Result<(), ()> {
    let claimed = match membership.claim(CLAIM_BATCH).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::debug!(%error, "could not claim jobs");
            return Ok(());
        }
    };
    if claimed.is_empty() {
        return Ok(());
    }
    if let Err(error) = store.fetch_images(&claimed).await {
        tracing::warn!(%error, "could not fetch the images of jobs taken over");
    }
    tracing::info!(
        jobs = claimed.len(),
        instance = membership.instance(),
        "took over jobs no live instance drives"
    );
    let images = store.images().clone();
    let library = library.clone();
    let views = tokio::task::spawn_blocking(move || recover::restore(claimed, &images, &library, &clock))
        .await
        .map_err(|_| ())?;
    requests.send(Request::Adopt(views)).await.map_err(|_| ())
}
