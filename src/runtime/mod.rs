//! Wires the engine to tokio and the broker. The only module that owns tasks.
//!
//! Two tasks: the *messenger* owns the rumqttc event loop (connect, reconnect with backoff,
//! re-subscribe), and the *driver* owns the [`Engine`](crate::engine::Engine) and is the only
//! code that touches job state. Everyone else holds a cheap [`Handle`]: requests go in over a
//! bounded channel with a oneshot reply, and what happens comes out on a bounded broadcast of
//! [`Envelope`]s.

mod aws_settings;
mod aws_wire;
mod cluster;
mod command_watch;
mod driver;
mod events;
mod handle;
mod job_table;
mod log_limit;
mod messenger;
mod persist;
mod probe;
mod publish_tracker;
mod recover;
mod rollouts;

pub use crate::clock::Clock;
pub use crate::mqtt::{BrokerUrl, BrokerUrlError, MAX_PACKET_BYTES};
pub use aws_settings::{AwsOtaOverride, AwsOtaSettings, MAX_AWS_PATH_BYTES, check_path as check_aws_path};
pub use driver::PROGRESS_REFRESH;
pub use events::{
    Alert, ConnectionState, Envelope, EventStream, QuietCount, Received, RolloutNotice, RuntimeEvent,
    Traffic, TrafficDirection,
};
pub use handle::{Handle, RuntimeError, Status};
pub use job_table::{JobChange, JobChanges, JobFilter, JobFollower, JobTable};
pub use log_limit::LogLimiter;
pub use messenger::STABLE_AFTER;
pub use rollouts::{RolloutError, Rollouts};

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::engine::{Engine, Settings};
use crate::firmware::Library;
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::mqtt::BrokerConnection;
use crate::protocol::Topics;
use crate::store::Store;

/// Everything the runtime needs to run.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The broker, credentials, TLS and client id.
    pub connection: BrokerConnection,
    pub topics: Topics,
    pub engine: Settings,
    /// Events kept for slow subscribers before they start missing the oldest. Job state does
    /// not travel here (the job table is lossless), so this bounds only timeline and traffic:
    /// a traffic event holds at most 4 KiB of a frame (64 bytes of a chunk, copied), so a
    /// stalled reader pins at most this many times 4 KiB.
    pub event_capacity: usize,
    /// Publishes handed to the broker connection and not yet acknowledged (QoS 1 PUBACK).
    /// This is the flow control behind "as fast as the broker takes them".
    pub window: u16,
    /// The most devices the inventory holds (`store.max_devices`).
    pub max_devices: usize,
    /// What jobs for devices that run AWS's OTA agent name (`[aws_ota]`).
    pub aws_ota: AwsOtaSettings,
}

/// The default for [`RuntimeConfig::event_capacity`]: 16 MiB of frame previews at most.
pub const DEFAULT_EVENT_CAPACITY: usize = 4096;

impl RuntimeConfig {
    /// A plain connection to `broker` with a unique client id and the default settings.
    pub fn new(broker: BrokerUrl) -> Self {
        Self::with_connection(BrokerConnection::plain(broker))
    }

    pub fn with_connection(connection: BrokerConnection) -> Self {
        Self {
            connection,
            topics: Topics::default(),
            engine: Settings::default(),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            window: 128,
            max_devices: crate::inventory::DEFAULT_MAX_DEVICES,
            aws_ota: AwsOtaSettings::default(),
        }
    }
}

/// A started runtime: the handle to talk to it and the tasks to wait for after shutdown.
pub struct Runtime {
    pub handle: Handle,
    tasks: Vec<JoinHandle<()>>,
    /// This instance's part in a shared store: its jobs handed over on a graceful stop.
    cluster: Option<cluster::Cluster>,
}

impl Runtime {
    /// Starts the messenger and the driver. Connecting happens in the background; its progress
    /// is reported as connection events, so a broker that is down is not an error here.
    pub fn start(config: RuntimeConfig, library: Arc<Library>) -> Self {
        let inventory = Inventory::new(Vec::new(), config.max_devices, None);
        let clock = Clock::new();
        let rollouts = Rollouts::new(Vec::new(), None, clock);
        Self::spawn(config, library, None, Vec::new(), clock, inventory, rollouts)
    }

    /// Like [`Runtime::start`], with a job store: every job it holds comes back (finished ones
    /// as they ended, the others queued to run again), ids continue after the highest ever
    /// given, and from now on jobs are recorded as they change.
    pub async fn start_with_store(
        config: RuntimeConfig,
        library: Arc<Library>,
        store: Store,
    ) -> Result<Self, crate::store::StoreError> {
        let (mut records, last_id) = store.load().await?;
        if let Some(membership) = store.membership() {
            // Sharing the database: drive only what this instance owns (with a fixed client
            // id, what it drove before a restart); others' unfinished jobs are theirs, and a
            // dead instance's are claimed once its lease has run out.
            let mine: std::collections::HashSet<crate::engine::JobId> =
                membership.mine().await?.iter().map(|job| job.id).collect();
            records.retain(|record| record.state.is_final() || mine.contains(&record.id));
            let unfinished: Vec<_> = records.iter().filter(|r| !r.state.is_final()).cloned().collect();
            store.fetch_images(&unfinished).await?;
        }
        let inventory =
            Inventory::new(store.load_devices().await?, config.max_devices, Some(Arc::new(store.clone())));
        let clock = Clock::new();
        let images = store.images().clone();
        // Images evicted from memory come back from the store's content-addressed files.
        library.attach_disk(images.clone());
        let lib = library.clone();
        let restored = tokio::task::spawn_blocking(move || recover::restore(records, &images, &lib, &clock))
            .await
            .map_err(|_| crate::store::StoreError::Stopped)?;
        let rollouts = Rollouts::new(store.load_rollouts().await?, Some(store.clone()), clock);
        rollouts.reconcile().await?;
        Ok(Self::spawn(config, library, Some((store, last_id)), restored, clock, inventory, rollouts))
    }

    fn spawn(
        config: RuntimeConfig,
        library: Arc<Library>,
        store: Option<(Store, crate::engine::JobId)>,
        restored: Vec<recover::RestoredJob>,
        clock: Clock,
        inventory: Inventory,
        rollouts: Rollouts,
    ) -> Self {
        let (events, _) = broadcast::channel(config.event_capacity.max(16));
        let quiet = QuietCount::default();
        let (requests_tx, requests_rx) = mpsc::channel(256);
        let (mqtt_tx, mqtt_rx) = mpsc::channel(1024);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (restart_tx, restart_rx) = mpsc::channel(1);
        let metrics = Metrics::new(store.as_ref().map(|(store, _)| store.write_latency()));
        let rollouts_stop = stop_rx.clone();
        let (publisher, messenger) =
            messenger::Messenger::new(&config, mqtt_tx, stop_rx, restart_rx, metrics.clone());
        let mut engine = Engine::new(config.engine.clone(), config.topics.clone());
        engine.set_clock(clock);
        let now = clock.now();
        for job in restored {
            engine.restore_patched(job.view, job.patch, now);
        }
        // What the stored statuses say: which devices confirm, and whether a confirming job's
        // device has already reported its new boot (newer statuses come at subscription).
        let devices: std::collections::BTreeSet<_> =
            engine.jobs().filter(|job| !job.state.is_final()).map(|job| job.device).collect();
        for device in devices {
            let reported = inventory.running_of(&device).and_then(|r| r.reported());
            engine.device_reported(&device, reported, now);
        }
        // The table starts with every restored job (the engine may have re-queued some).
        let table = JobTable::new();
        table.upsert(engine.jobs().map(|view| crate::snapshot::JobSnapshot::new(&view, &clock)));
        // The restored finished jobs leave the engine whole at the driver's first drain of
        // events, once what the restore itself ended (a confirming job whose device's stored
        // status decides it) has told the inventory.
        let cluster = store.as_ref().and_then(|(store, _)| cluster::Cluster::of(store));
        let audit = match &store {
            Some((store, _)) => crate::audit::AuditLog::stored(store.clone()),
            None => crate::audit::AuditLog::in_memory(),
        };
        let (persistence, creator) = match store {
            Some((store, last_id)) => {
                engine.set_last_job_id(last_id);
                let (persistence, creator) =
                    persist::Persistence::new(store, table.clone(), requests_tx.clone());
                (Some(persistence), Some(creator))
            }
            None => (None, None),
        };
        let handle = Handle::new(
            requests_tx.clone(),
            events.clone(),
            library,
            table.clone(),
            clock,
            &config.connection,
            metrics.clone(),
            inventory.clone(),
            rollouts.clone(),
        )
        .with_cluster(cluster.clone())
        .with_default_chunk(config.engine.chunk_size)
        .with_aws_ota(config.aws_ota.clone())
        .with_audit(audit)
        .with_quiet(quiet.clone());
        let driver = driver::Driver {
            engine,
            publisher,
            metrics,
            requests: requests_rx,
            from_broker: mqtt_rx,
            events,
            quiet,
            clock,
            window: config.window.max(1),
            outstanding: 0,
            connection: ConnectionState::Connecting,
            seq: 0,
            bad_frames: LogLimiter::new(std::time::Duration::from_secs(60)),
            stop: stop_tx,
            persistence,
            table: table.clone(),
            dirty: Default::default(),
            refreshed_at: clock.now(),
            inventory,
            manifest_check: crate::protocol::ManifestCheck::new(
                handle.library().manifests().trusted().clone(),
            ),
            broker_up: false,
            fence: cluster::Cluster::fence(cluster.as_ref()),
            probe: probe::DeliveryProbe::new(&config.topics, &config.connection.client_id),
            restart: restart_tx,
            commands: Default::default(),
            tracker: publish_tracker::PublishTracker::new(4 * usize::from(config.window.max(1)) + 64),
            refused: None,
            no_job_answers: LogLimiter::new(aws_wire::NO_JOB_EVERY),
            no_job_due: Default::default(),
        };
        // The driver first: the submission feeder ends once the driver has dropped its sender.
        let rollout_task = rollouts::run(rollouts, handle.clone(), rollouts_stop.clone());
        let mut tasks =
            vec![tokio::spawn(driver.run()), tokio::spawn(messenger.run()), tokio::spawn(rollout_task)];
        tasks.extend(creator);
        if let Some(cluster) = &cluster {
            let library = handle.library().clone();
            let inventory = handle.inventory().clone();
            tasks.push(cluster.spawn_claims(table, library, clock, inventory, requests_tx, rollouts_stop));
        }
        Self { handle, tasks, cluster }
    }

    /// Asks every task to stop and waits for them; with a shared store, then hands this
    /// instance's unfinished jobs over at once (their last changes are written by then).
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(cluster) = self.cluster {
            cluster.leave().await;
        }
    }
}

pub use crate::clock::sleep_until;
