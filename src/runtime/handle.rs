//! The cheap, cloneable way in: requests over a bounded channel with oneshot replies.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::{BrokerUrl, Clock, ConnectionState, Envelope, EventStream, JobFilter, JobFollower, JobTable};
use crate::engine::{CancelError, JobId, JobSpec, JobState, JobView, SubmitError};
use crate::firmware::Library;
use crate::metrics::Metrics;
use crate::mqtt::BrokerConnection;
use crate::rollout::RolloutId;
use crate::snapshot::JobSnapshot;
use crate::store::HistoryRecord;

/// The runtime's state at a glance (`GET /healthz`, the console's status bar).
#[derive(Debug, Clone)]
pub struct StatusReply {
    pub connection: ConnectionState,
    pub counts: BTreeMap<JobState, usize>,
    pub store_problem: Option<String>,
    pub publish_refused: Option<String>,
}

/// What `/healthz` and the console's status bar show.
#[derive(Debug, Clone)]
pub struct Status {
    pub broker: BrokerUrl,
    /// The broker's certificate is not verified (`--insecure-tls`); shown in red.
    pub insecure_tls: bool,
    pub connection: ConnectionState,
    pub counts: BTreeMap<JobState, usize>,
    /// Why the job store cannot write right now (its changes are kept and retried).
    pub store_problem: Option<String>,
    /// The broker refused one of Rocky's publishes in the last minute: what and why.
    pub publish_refused: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] crate::store::WriteError),
    #[error(transparent)]
    Cancel(#[from] CancelError),
    #[error("the engine has stopped")]
    Stopped,
}

pub(super) enum Request {
    /// Jobs to create, for a rollout when it says which (the store records it in each row).
    Submit {
        specs: Vec<JobSpec>,
        rollout: Option<RolloutId>,
        reply: oneshot::Sender<Result<Vec<JobView>, RuntimeError>>,
    },
    /// Jobs the store has recorded under these ids, to start now. `created_at_ms` is the
    /// creation time the store recorded, so the job's time is the same in memory and on disk.
    SubmitAs {
        specs: Vec<JobSpec>,
        ids: Vec<JobId>,
        created_at_ms: u64,
        rollout: Option<RolloutId>,
        reply: oneshot::Sender<Result<Vec<JobView>, RuntimeError>>,
    },
    History {
        job: JobId,
        reply: oneshot::Sender<Result<Vec<HistoryRecord>, String>>,
    },
    Prune {
        keep: Option<usize>,
        max_age: Option<std::time::Duration>,
    },
    Cancel {
        job: JobId,
        reply: oneshot::Sender<Result<JobView, CancelError>>,
    },
    /// Cancels these jobs together (each `true` only while still queued), answered once on
    /// disk; the answer is the ids not driven here.
    CancelMany {
        jobs: Vec<(JobId, bool)>,
        reply: oneshot::Sender<Vec<(JobId, bool)>>,
    },
    Status(oneshot::Sender<StatusReply>),
    Shutdown(oneshot::Sender<()>),
    /// An event from another part of the runtime (a rollout's change) for the event stream,
    /// numbered in turn with the engine's.
    Announce(super::RuntimeEvent),
    /// Jobs this instance drives from now on (claimed from a shared store), restored as after
    /// a restart.
    Adopt(Vec<super::recover::RestoredJob>),
    /// Lets go of every unfinished job (this instance's lease ran out, so another may drive
    /// them); answers with their ids.
    ReleaseUnfinished(oneshot::Sender<Vec<JobId>>),
    /// Holds back (true) or allows (false) everything sent, like a broker outage, while this
    /// instance's lease cannot be renewed.
    Fence {
        hold: bool,
    },
}

#[derive(Clone)]
pub struct Handle {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<Envelope>>,
    /// Subscribers that take no chatter.
    quiet: super::QuietCount,
    library: Arc<Library>,
    jobs: Arc<JobTable>,
    clock: Clock,
    broker: BrokerUrl,
    insecure_tls: bool,
    metrics: Metrics,
    /// Behind one more pointer each, so a handle stays small to pass around.
    inventory: Arc<crate::inventory::Inventory>,
    rollouts: Arc<super::rollouts::Rollouts>,
    /// This instance's part in a shared store: jobs others drive are cancelled through it.
    cluster: Option<super::cluster::Cluster>,
    /// The chunk size of a job that names none (`jobs.chunk_size`): what a byte-rate cap is
    /// turned into a pause between chunks by.
    default_chunk: crate::firmware::ChunkSize,
    /// Where the service writes who changed what (the store, or memory without one).
    audit: crate::audit::AuditLog,
    /// What jobs for AWS devices name (`[aws_ota]`).
    aws_ota: Arc<super::AwsOtaSettings>,
}

impl Handle {
    #[allow(clippy::too_many_arguments)] // each is one of the handle's own parts, named
    pub(super) fn new(
        requests: mpsc::Sender<Request>,
        events: broadcast::Sender<Arc<Envelope>>,
        library: Arc<Library>,
        jobs: Arc<JobTable>,
        clock: Clock,
        connection: &BrokerConnection,
        metrics: Metrics,
        inventory: crate::inventory::Inventory,
        rollouts: super::rollouts::Rollouts,
    ) -> Self {
        let broker = connection.url.clone();
        let insecure_tls = connection.insecure_tls;
        Self {
            requests,
            events,
            quiet: super::QuietCount::default(),
            library,
            jobs,
            clock,
            broker,
            insecure_tls,
            metrics,
            inventory: Arc::new(inventory),
            rollouts: Arc::new(rollouts),
            cluster: None,
            default_chunk: crate::firmware::ChunkSize::default(),
            audit: crate::audit::AuditLog::in_memory(),
            aws_ota: Arc::default(),
        }
    }

    /// Jobs for AWS devices name `settings`.
    pub(super) fn with_aws_ota(mut self, settings: super::AwsOtaSettings) -> Self {
        self.aws_ota = Arc::new(settings);
        self
    }

    /// What a job for `device` to run `image` needs to speak AWS's OTA agent's protocol, when
    /// the device speaks it (`None`: Rocky's own); else why such a job cannot be made. The one
    /// rule for every creator of jobs (the API, the console, rollouts). `over`: the job's or
    /// the rollout's own `certfile` or `filepath`, in place of `[aws_ota]`'s.
    pub fn aws_job_for(
        &self,
        device: &crate::protocol::DeviceId,
        image: &crate::firmware::Image,
        over: Option<&super::AwsOtaOverride>,
    ) -> Result<Option<crate::engine::AwsJob>, String> {
        if self.inventory.profile_of(device) != crate::inventory::Profile::AwsIotOta {
            return Ok(None);
        }
        let settings = self.aws_ota.with(over);
        if settings.cert_file.is_empty() {
            return Err(format!(
                "device {device} runs AWS's OTA agent: set [aws_ota] certfile, or \"aws_ota\": {{\"certfile\": …}} \
                 in the request (where the code-signing certificate is on the device)"
            ));
        }
        let signature = self.library.manifests().aws_signature(image).map_err(|why| {
            format!("device {device} runs AWS's OTA agent, which takes signed images only: {why}")
        })?;
        Ok(Some(crate::engine::AwsJob::new(settings.cert_file, settings.file_path, signature)))
    }

    /// Writes the audit to `audit` (the store) instead of memory.
    pub(super) fn with_audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// The audit trail.
    pub fn audit(&self) -> &crate::audit::AuditLog {
        &self.audit
    }

    /// Jobs that name no chunk size get `chunk`.
    pub(super) fn with_default_chunk(mut self, chunk: crate::firmware::ChunkSize) -> Self {
        self.default_chunk = chunk;
        self
    }

    /// The chunk size of a job that names none.
    pub fn default_chunk(&self) -> crate::firmware::ChunkSize {
        self.default_chunk
    }

    /// Shares a store with other instances as a member of `cluster`.
    pub(super) fn with_cluster(mut self, cluster: Option<super::cluster::Cluster>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Puts an event on the stream without waiting; dropped (with a debug line) when the
    /// engine's queue is full, like any event a slow reader misses.
    pub(super) fn announce(&self, event: super::RuntimeEvent) {
        if self.requests.try_send(Request::Announce(event)).is_err() {
            tracing::debug!("an announcement was dropped: the engine's queue is full");
        }
    }

    /// The rollouts, their state and their controls.
    pub fn rollouts(&self) -> &super::rollouts::Rollouts {
        &self.rollouts
    }

    /// The devices Rocky knows.
    pub fn inventory(&self) -> &crate::inventory::Inventory {
        &self.inventory
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// Creates jobs in the order given. Either all are created or none (an error names why).
    pub async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<JobSnapshot>, RuntimeError> {
        self.submit_for(specs, None).await
    }

    /// Like [`Handle::submit`], for rollout `rollout` (written in each job's row).
    pub async fn submit_for(
        &self,
        specs: Vec<JobSpec>,
        rollout: Option<RolloutId>,
    ) -> Result<Vec<JobSnapshot>, RuntimeError> {
        let views = self.ask(|reply| Request::Submit { specs, rollout, reply }).await??;
        Ok(views.iter().map(|view| JobSnapshot::new(view, &self.clock)).collect())
    }

    pub async fn cancel(&self, id: JobId) -> Result<JobSnapshot, RuntimeError> {
        match (self.ask(|reply| Request::Cancel { job: id, reply }).await?, &self.cluster) {
            (Ok(view), _) => Ok(JobSnapshot::new(&view, &self.clock)),
            // Not driven here: another instance's, or no one's, in the shared store.
            (Err(CancelError::NotFound(_)), Some(cluster)) => {
                let snapshot = cluster.cancel(id).await?;
                self.jobs.upsert([snapshot.clone()]);
                Ok(snapshot)
            }
            (Err(e), _) => Err(e.into()),
        }
    }

    /// Cancels these jobs together (a rollout's, when it is cancelled or aborted): one store
    /// commit for the lot, where a [`Handle::cancel`] each was a commit each, waited for in
    /// turn. A job paired with `true` is cancelled only while it is still queued, judged by
    /// the engine as it cancels (an abort leaves jobs under way to finish). Jobs that already
    /// ended stay as they are; jobs another instance drives are cancelled through the shared
    /// store, one by one, and a failure there is logged.
    pub async fn cancel_many(&self, jobs: Vec<(JobId, bool)>) -> Result<(), RuntimeError> {
        let not_here = self.ask(|reply| Request::CancelMany { jobs, reply }).await?;
        if let Some(cluster) = &self.cluster {
            for (id, only_if_queued) in not_here {
                // Another instance's: its state as this instance's table last heard it.
                if only_if_queued && self.jobs.get(id).is_some_and(|job| job.state != JobState::Queued) {
                    continue;
                }
                match cluster.cancel(id).await {
                    Ok(snapshot) => self.jobs.upsert([snapshot]),
                    // Ended, or gone, there too: nothing is left to cancel.
                    Err(RuntimeError::Cancel(_)) => {}
                    Err(error) => tracing::warn!(job = id.get(), %error, "a job could not be cancelled"),
                }
            }
        }
        Ok(())
    }

    /// A job's latest snapshot, read without asking the engine.
    pub fn job(&self, id: JobId) -> Option<Arc<JobSnapshot>> {
        self.jobs.get(id)
    }

    /// The jobs `filter` matches, by id, read without asking the engine.
    pub fn jobs(&self, filter: &JobFilter) -> Vec<Arc<JobSnapshot>> {
        self.jobs.list(filter)
    }

    /// Follows every job's state from a full snapshot on: lossless, latest wins.
    pub fn follow_jobs(&self) -> JobFollower {
        self.jobs.follow()
    }

    /// A job's stored timeline (an error when this Rocky has no store).
    pub async fn history(&self, id: JobId) -> Result<Result<Vec<HistoryRecord>, String>, RuntimeError> {
        self.ask(|reply| Request::History { job: id, reply }).await
    }

    /// Forgets finished jobs beyond `keep` or older than `max_age`, here and in the store.
    pub async fn prune(
        &self,
        keep: Option<usize>,
        max_age: Option<std::time::Duration>,
    ) -> Result<(), RuntimeError> {
        self.requests.send(Request::Prune { keep, max_age }).await.map_err(|_| RuntimeError::Stopped)
    }

    pub async fn status(&self) -> Result<Status, RuntimeError> {
        let StatusReply { connection, counts, store_problem, publish_refused } =
            self.ask(Request::Status).await?;
        Ok(Status {
            publish_refused,
            broker: self.broker.clone(),
            insecure_tls: self.insecure_tls,
            connection,
            counts,
            store_problem,
        })
    }

    pub fn subscribe(&self) -> EventStream {
        EventStream::new(self.events.subscribe())
    }

    /// A subscription without chatter (traffic, per-chunk progress): while every subscriber is
    /// one, none is made.
    pub fn subscribe_quiet(&self) -> EventStream {
        self.quiet.subscribe(&self.events)
    }

    /// Shares the driver's count of quiet subscribers.
    pub(super) fn with_quiet(mut self, quiet: super::QuietCount) -> Self {
        self.quiet = quiet;
        self
    }

    pub fn library(&self) -> &Arc<Library> {
        &self.library
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn broker(&self) -> &BrokerUrl {
        &self.broker
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops the driver (which stops the messenger). Safe to call more than once.
    pub async fn shutdown(&self) {
        let _ = self.ask(Request::Shutdown).await;
    }
}
