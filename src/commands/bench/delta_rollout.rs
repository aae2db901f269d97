//! The rollout half of `rocky bench --delta`: one rollout of a target image to a fleet of
//! `rocky sim --delta` devices that all run the base, timed from its creation to its end (every
//! device confirmed), with patches or with whole images. The fleet is started afresh for each
//! rollout (a device keeps what it installs), and the patch is built before the clock starts
//! (its build time is the table's own column).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use rocky::firmware::{Choice, ChunkSize, DeltaPolicy, Image, Library, Pacing};
use rocky::protocol::{DeviceId, sha256_hex};
use rocky::rollout::RolloutPlan;
use rocky::runtime::{BrokerUrl, Runtime, RuntimeConfig};
use rocky::service::Service;
use rocky::snapshot::ImageInfo;

/// How long one rollout may take before the bench gives up on it.
const LIMIT: Duration = Duration::from_secs(900);

/// One rollout's outcome: its wall time and the bytes its jobs sent.
pub struct RolloutRound {
    pub wall: Duration,
    pub bytes: u64,
}

/// Where the fleet runs and how its rollouts are made.
pub struct Bench<'a> {
    pub broker: &'a BrokerUrl,
    pub devices: usize,
    pub chunk: u32,
    /// Where the base is written for the fleet's `--factory`.
    pub dir: &'a std::path::Path,
    /// Each job's rate cap (bytes a second), as a slow link would have; `None`: as fast as the
    /// broker goes.
    pub link_rate: Option<u64>,
    /// Shared by the rollouts, so each pair's patch is built once.
    library: Arc<Library>,
}

impl<'a> Bench<'a> {
    pub fn new(
        broker: &'a BrokerUrl,
        devices: usize,
        chunk: u32,
        dir: &'a std::path::Path,
        link_rate: Option<u64>,
    ) -> anyhow::Result<Self> {
        // Each patch is waited for (it is built before the clock starts), however long it takes.
        let policy = DeltaPolicy { wait: LIMIT, ..DeltaPolicy::default() };
        let library = Arc::new(Library::new().with_deltas(policy));
        let bench = Self { broker, devices, chunk, dir, link_rate, library };
        bench.pacing()?;
        Ok(bench)
    }

    /// The chunk size and the pause between chunks that keeps each job under the link rate.
    fn pacing(&self) -> anyhow::Result<(ChunkSize, Option<Duration>)> {
        let chunk = ChunkSize::new(u64::from(self.chunk)).map_err(anyhow::Error::msg)?;
        let rate = self.link_rate.map(rocky::units::Rate);
        let paced = Pacing::new(Some(chunk.get().into()), None, rate, chunk).map_err(anyhow::Error::msg)?;
        Ok((chunk, paced.pause))
    }

    /// One rollout of `target` to devices running `base`: as patches when `patches`, else whole.
    pub async fn rollout(&self, base: &Image, target: &Image, patches: bool) -> anyhow::Result<RolloutRound> {
        let factory = self.dir.join("base.bin");
        std::fs::write(&factory, base.bytes()).context("cannot write the base for the fleet")?;
        let factory_arg = factory.display().to_string();
        let extra = ["--delta", "--factory", factory_arg.as_str()];
        let mut fleet = super::start_fleet_named(self.broker, self.devices, "delta-", &extra).await?;
        let result = self.timed(base, target, patches).await;
        let _ = fleet.start_kill();
        let _ = fleet.wait().await;
        result
    }

    async fn timed(&self, base: &Image, target: &Image, patches: bool) -> anyhow::Result<RolloutRound> {
        let mut config = RuntimeConfig::new(self.broker.clone());
        config.engine.max_active = self.devices.max(1);
        config.engine.done_timeout = Duration::from_secs(120);
        let library = self.library.clone();
        let (base, target) = (library.intern(base.clone()), library.intern(target.clone()));
        if patches && !matches!(library.deltas().choose(&base, &target).await, Choice::Patch(_)) {
            bail!("no patch from the base to the target (it would be sent whole)");
        }
        let runtime = Runtime::start(config, library);
        let service = Service::new(runtime.handle.clone());
        let width = self.devices.to_string().len().max(2);
        let ids = (1..=self.devices)
            .map(|n| DeviceId::parse(&format!("delta-{n:0width$}")).context("device id"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let rows = ids.iter().map(|id| (id.clone(), Default::default())).collect();
        service.inventory().register(rows).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        // Every device's status (retained, sent at its connection) names the base first.
        let base_hex = sha256_hex(base.sha256());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ids.iter().all(|id| service.inventory().running_of(id).is_some_and(|r| *r.image == *base_hex))
        {
            if Instant::now() > deadline {
                bail!("the devices' statuses did not arrive within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut plan = RolloutPlan::new("bench", ImageInfo::from(&target), ids);
        let (chunk, pause) = self.pacing()?;
        plan.chunk_size = Some(chunk.get());
        plan.max_rate = self.link_rate;
        plan.chunk_interval_ms = pause.map(|pause| pause.as_millis() as u64);
        plan.delta = patches;
        let started = Instant::now();
        let rollout = service.start_planned_rollout(plan).await?;
        let view = loop {
            let view = service.rollout_view(rollout.id, None)?;
            if view.state.is_final() {
                break view;
            }
            if started.elapsed() > LIMIT {
                bail!("the rollout did not end within {LIMIT:?} ({:?})", view.reason);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let wall = started.elapsed();
        runtime.shutdown().await;
        let totals = view.totals();
        if totals.succeeded != self.devices {
            bail!("{} of {} devices updated ({:?})", totals.succeeded, self.devices, view.reason);
        }
        Ok(RolloutRound { wall, bytes: view.bytes.sent })
    }
}
