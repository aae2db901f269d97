//! The runtime's side of sharing a PostgreSQL store with other instances. Every second it
//! - claims jobs no live instance drives (a dead instance's, once its lease ran out) and hands
//!   them to the engine;
//! - takes the cancels other instances asked of it;
//! - copies what changed in other instances' jobs into the job table, so this instance's API,
//!   `/events` and attached consoles show the whole fleet.
//!
//! When this instance's own lease cannot be renewed in time it holds back everything sent,
//! lets go of its unfinished jobs (another instance may claim them) and joins again once the
//! database answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::engine::{CancelError, JobId, JobState};
use crate::firmware::Library;
use crate::runtime::handle::Request;
use crate::runtime::{Clock, JobTable, RuntimeError, recover};
use crate::snapshot::JobSnapshot;
use crate::store::lease::CancelAsked;
use crate::store::{Membership, Seen, Store, WriteError};

use super::Trouble;

/// How often jobs are claimed, cancels taken, others' changes read and the lease checked.
pub const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// The most jobs claimed at once, so instances that claim together share a dead one's jobs.
pub const CLAIM_BATCH: usize = 500;
/// Every this often, the jobs no longer stored leave the job table, and every other
/// instance's job is read again (the reads between take only what changed since).
const MIRROR_RESYNC: Duration = Duration::from_secs(300);
/// How often the inventory is read again for devices other instances registered or relabelled
/// (those whose rows changed since the last read).
const INVENTORY_EVERY: Duration = Duration::from_secs(10);
/// How often that read takes every device: one the inventory had no room for when it changed
/// (`store.max_devices`) is taken in once there is room.
const INVENTORY_WHOLE_EVERY: Duration = Duration::from_secs(300);
/// How long a cancel forwarded to the instance that drives the job is waited for.
const FORWARDED_CANCEL_WAIT: Duration = Duration::from_secs(10);

const CANCEL_REASON: &str = "cancelled by the operator";

/// What the task works with.
pub struct Shared {
    pub membership: Arc<Membership>,
    pub store: Store,
    pub table: Arc<JobTable>,
    pub library: Arc<Library>,
    pub clock: Clock,
    pub inventory: crate::inventory::Inventory,
}

pub async fn run(shared: Shared, requests: mpsc::Sender<Request>, mut stop: watch::Receiver<bool>) {
    let membership = shared.membership.clone();
    let mut tick = tokio::time::interval(CLAIM_EVERY.min(membership.lease() / 3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fenced = false;
    let mut mirror = Mirror {
        seen: None,
        resync_at: Instant::now(),
        trouble: Trouble::new("read other instances' changes"),
    };
    let mut troubles = Troubles {
        claim: Trouble::new("claim jobs no live instance drives"),
        cancels: Trouble::new("take the cancels other instances asked of this one"),
        inventory: Trouble::new("read the devices other instances registered or relabelled"),
    };
    let mut inventory_at = Instant::now() + INVENTORY_EVERY;
    let mut inventory_whole_at = Instant::now() + INVENTORY_WHOLE_EVERY;
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
                if requests.send(Request::Fence { hold: true }).await.is_err() {
                    return;
                }
                let Some(released) = release(&requests, &mut stop).await else { return };
                tracing::warn!(jobs = released.len(), "unfinished jobs let go");
                mirror.resync_at = Instant::now(); // they are others' to show now
            }
            match membership.rejoin().await {
                Ok(()) => {
                    // A job whose creation committed just before the lease ran out may have
                    // reached the engine after the release: let it go too (rejoining gave its
                    // row back), then send again.
                    if release(&requests, &mut stop).await.is_none() {
                        return;
                    }
                    fenced = false;
                    tracing::info!(instance = membership.instance(), "lease taken again");
                    if requests.send(Request::Fence { hold: false }).await.is_err() {
                        return;
                    }
                }
                Err(_) => continue, // the heartbeat already says why, for /healthz and the log
            }
        }
        if adopt(&shared, &requests, &mut troubles.claim).await.is_err()
            || take_cancels(&membership, &requests, &mut troubles.cancels).await.is_err()
        {
            return;
        }
        mirror.catch_up(&shared).await;
        if Instant::now() >= inventory_at {
            inventory_at = Instant::now() + INVENTORY_EVERY;
            let whole = Instant::now() >= inventory_whole_at;
            let inventory = &shared.inventory;
            match shared.store.refresh_devices(whole, |devices| inventory.refresh(devices)).await {
                Ok(()) => {
                    troubles.inventory.succeeded();
                    if whole {
                        inventory_whole_at = Instant::now() + INVENTORY_WHOLE_EVERY;
                    }
                }
                Err(error) => {
                    troubles.inventory.failed(
                        &error,
                        membership.problem().is_some(),
                        std::time::Instant::now(),
                    );
                }
            }
        }
    }
}

/// Has the engine let go of every unfinished job, once what changed is written; `None` when
/// the runtime stops meanwhile.
async fn release(requests: &mpsc::Sender<Request>, stop: &mut watch::Receiver<bool>) -> Option<Vec<JobId>> {
    let (reply, released) = oneshot::channel();
    requests.send(Request::ReleaseUnfinished(reply)).await.ok()?;
    tokio::select! {
        released = released => released.ok(),
        _ = stop.changed() => None,
    }
}

/// Claims what there is to claim and hands it to the engine; `Err` once the engine is gone.
async fn adopt(shared: &Shared, requests: &mpsc::Sender<Request>, trouble: &mut Trouble) -> Result<(), ()> {
    let claimed = match shared.membership.claim(CLAIM_BATCH).await {
        Ok(claimed) => {
            trouble.succeeded();
            claimed
        }
        Err(error) => {
            trouble.failed(&error, shared.membership.problem().is_some(), std::time::Instant::now());
            return Ok(());
        }
    };
    if claimed.is_empty() {
        return Ok(());
    }
    if let Err(error) = shared.store.fetch_images(&claimed).await {
        // Given back rather than failed for want of an image that is only out of reach now.
        tracing::warn!(%error, "could not fetch the images of jobs taken over; they are given back");
        let ids: Vec<JobId> = claimed.iter().map(|job| job.id).collect();
        if let Err(error) = shared.membership.unclaim(&ids).await {
            tracing::warn!(%error, "could not give the jobs back; they are claimed again when this instance's lease runs out");
        }
        return Ok(());
    }
    tracing::info!(
        jobs = claimed.len(),
        instance = shared.membership.instance(),
        "took over jobs no live instance drives"
    );
    let (images, library, clock) = (shared.store.images().clone(), shared.library.clone(), shared.clock);
    let views = tokio::task::spawn_blocking(move || recover::restore(claimed, &images, &library, &clock))
        .await
        .map_err(|_| ())?;
    requests.send(Request::Adopt(views)).await.map_err(|_| ())
}

/// Cancels the jobs other instances asked this one to cancel; `Err` once the engine is gone.
async fn take_cancels(
    membership: &Membership,
    requests: &mpsc::Sender<Request>,
    trouble: &mut Trouble,
) -> Result<(), ()> {
    let ids = match membership.take_cancels().await {
        Ok(ids) => {
            trouble.succeeded();
            ids
        }
        Err(error) => {
            trouble.failed(&error, membership.problem().is_some(), std::time::Instant::now());
            return Ok(());
        }
    };
    for id in ids {
        let (reply, _answer) = oneshot::channel();
        requests.send(Request::Cancel { job: id, reply }).await.map_err(|_| ())?;
    }
    Ok(())
}

/// Where reading other instances' changes has got to.
struct Mirror {
    /// The snapshot of the last read; `None`: read every other instance's job.
    seen: Option<Seen>,
    resync_at: Instant,
    trouble: Trouble,
}

/// The failures of the task's other reads, each said once per new reason.
struct Troubles {
    claim: Trouble,
    cancels: Trouble,
    inventory: Trouble,
}

impl Mirror {
    async fn catch_up(&mut self, shared: &Shared) {
        if Instant::now() >= self.resync_at {
            self.resync_at = Instant::now() + MIRROR_RESYNC;
            self.seen = None;
            forget_deleted(shared).await;
        }
        let table = &shared.table;
        match shared.membership.others_changed(self.seen.as_ref(), |jobs| table.upsert(jobs)).await {
            Ok(seen) => {
                self.seen = Some(seen);
                self.trouble.succeeded();
            }
            Err(error) => {
                self.trouble.failed(&error, shared.membership.problem().is_some(), std::time::Instant::now());
            }
        }
    }
}

/// Drops from the job table the jobs no longer stored (another instance's retention removed
/// them), so what the table holds stays bounded by what the store holds.
async fn forget_deleted(shared: &Shared) {
    // The table first: a job is stored before it reaches the table, so every job listed here
    // that was not deleted is among the ids read after.
    let listed: Vec<JobId> =
        shared.table.list(&crate::runtime::JobFilter::default()).iter().map(|job| job.id).collect();
    let Ok(stored) = shared.membership.job_ids().await else { return };
    let gone: Vec<JobId> = listed.into_iter().filter(|id| !stored.contains(id)).collect();
    if !gone.is_empty() {
        shared.table.remove(&gone);
    }
}

/// Cancels a job this instance does not drive: in the database when no live instance drives
/// it, else by asking the one that does and waiting (a while) until it has.
pub async fn cancel_elsewhere(membership: &Membership, id: JobId) -> Result<JobSnapshot, RuntimeError> {
    let store_error =
        |e: crate::store::StoreError| RuntimeError::Store(WriteError::Unavailable(e.to_string()));
    let asked = membership.ask_cancel(id, CANCEL_REASON).await.map_err(store_error)?;
    let stored = |job: Option<JobSnapshot>| job.ok_or(RuntimeError::Cancel(CancelError::NotFound(id)));
    match asked {
        CancelAsked::NotFound => Err(RuntimeError::Cancel(CancelError::NotFound(id))),
        CancelAsked::Finished(state) => {
            let state = JobState::parse(&state).unwrap_or(JobState::Cancelled);
            Err(RuntimeError::Cancel(CancelError::AlreadyFinal { id, state }))
        }
        CancelAsked::Cancelled => stored(membership.job(id).await.map_err(store_error)?),
        CancelAsked::Forwarded { owner } => {
            let deadline = Instant::now() + FORWARDED_CANCEL_WAIT;
            loop {
                let job = stored(membership.job(id).await.map_err(store_error)?)?;
                if job.state.is_final() {
                    return Ok(job);
                }
                if Instant::now() >= deadline {
                    return Err(RuntimeError::Store(WriteError::Unavailable(format!(
                        "job {id} is driven by instance {owner}, which was asked to cancel it and has not \
                         confirmed within {} s",
                        FORWARDED_CANCEL_WAIT.as_secs()
                    ))));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ScratchDatabase;

    #[tokio::test]
    async fn jobs_deleted_from_the_store_leave_the_table_and_stored_ones_stay() {
        let db = match ScratchDatabase::create(&ScratchDatabase::admin_url(), "forget").await {
            Ok(db) => db,
            Err(e) => {
                assert!(std::env::var_os("ROCKY_REQUIRE_POSTGRES").is_none(), "PostgreSQL is required: {e}");
                return;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_postgres(db.settings(), dir.path(), "i", Duration::from_secs(15)).await.unwrap();
        let job = crate::store::NewJob {
            id: None,
            device: "d1".into(),
            image: crate::firmware::Image::new("fw.bin", bytes::Bytes::from_static(b"x")),
            chunk_size: 64,
            chunk_interval_ms: 0,
            chunks_total: 1,
            created_at: 1,
            rollout: None,
            force: false,
            manifest: None,
            delta: None,
            aws: None,
        };
        let kept = store.create(vec![job.clone()]).await.unwrap()[0];
        let deleted = store.create(vec![job]).await.unwrap()[0];
        let table = JobTable::new();
        table.upsert(store.load().await.unwrap().0);
        let membership = store.membership().unwrap().clone();
        let client = db.settings().connect().await.unwrap();
        client.execute("DELETE FROM jobs WHERE id = $1", &[&i64::from(deleted.get())]).await.unwrap();
        let shared = Shared {
            membership,
            store,
            table: table.clone(),
            library: Arc::new(Library::new()),
            clock: Clock::new(),
            inventory: crate::inventory::Inventory::in_memory(),
        };
        forget_deleted(&shared).await;
        assert!(table.get(deleted).is_none(), "the deleted job left the table");
        assert!(table.get(kept).is_some(), "the stored one stayed");
    }
}
