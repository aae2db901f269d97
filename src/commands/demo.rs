//! `rocky demo`: an embedded broker, a simulated fleet with a realistic mix of behaviour, and the
//! console, with two rollouts started at once: the bundled sample image to the whole fleet in
//! waves, and a beta to one lot that aborts on its failure threshold; once the release has
//! ended, a hotfix goes to the devices running it as patches. No set-up at all.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;

use super::GlobalArgs;
use super::behavior_flags::BehaviorFlags;
use super::console::{FollowUp, Startup, run_console};
use super::setup::{data_dir, load_config};
use rocky::broker::EmbeddedBroker;
use rocky::firmware::{ChunkSize, Image};
use rocky::protocol::DeviceId;
use rocky::rollout::{AbortRule, RolloutPlan, WaveSize, wave_ends};
use rocky::sim::{Behavior, BehaviorPlan, DeviceModel, Fleet, FleetConfig, Selection};
use rocky::snapshot::ImageInfo;

/// The sample image the demo rolls out (192 KiB of pseudo-random bytes).
const SAMPLE_IMAGE: &[u8] = include_bytes!("../../assets/demo-firmware.bin");

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub config: super::ConfigFlag,
    #[command(flatten)]
    pub data_dir: super::DataDirFlag,
    #[command(flatten)]
    pub http: super::HttpFlag,

    /// Simulated devices.
    #[arg(long, default_value_t = 24)]
    pub devices: usize,
    /// Misbehaving devices; giving any of these replaces the default mix.
    #[command(flatten)]
    pub behavior: BehaviorFlags,
    /// Do not start the rollouts; press n in the console to make jobs.
    #[arg(long)]
    pub no_rollout: bool,
    /// Pause between chunks of one job, so progress is visible.
    #[arg(long, value_name = "MS", default_value_t = 40)]
    pub chunk_interval_ms: u64,
    /// Chunk size for the rollouts.
    #[arg(long, value_name = "BYTES", default_value_t = 2048)]
    pub chunk_size: u64,
    /// Simulated devices that run AWS's OTA agent (thing-01, …), updated by the release beside
    /// the rest; the second fails its self test and rolls back (from 2 up).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub aws_devices: usize,
}

impl DemoArgs {
    /// The flags given, or the default mix: one NACK, one DONE_FAILED, one silent, one that
    /// sends garbage, and about one in seven slow (from 8 and 12 devices up).
    fn plan(&self) -> BehaviorPlan {
        if let Some(plan) = self.behavior.plan() {
            return plan;
        }
        let at = |share: f64| {
            Selection::List(vec![((self.devices as f64 * share).round() as usize).max(1).to_string()])
        };
        let mut plan = BehaviorPlan::default();
        // Small fleets are all well-behaved, so a handful of devices is a clean playground.
        if self.devices >= 8 {
            plan = plan
                .with(Behavior::Nack, at(0.2))
                .with(Behavior::Fail, at(0.45))
                .with(Behavior::Silent, at(0.7));
        }
        if self.devices >= 12 {
            plan = plan.with(Behavior::Garbage, at(0.85)).with(Behavior::Slow, Selection::Ratio(0.15));
        }
        plan
    }
}

/// The lot the demo's beta goes to: its misbehaving devices and every fourth other one.
const BETA_LOT: &str = "2024-07";

/// The demo fleet's labels, so devices can be picked by group: two models (every third device
/// an nRF52840), every other device in the lab and the rest in the field, the first two a
/// canary ring, and a production lot (the misbehaving devices are all in [`BETA_LOT`]).
fn demo_labels(n: usize, misbehaving: bool) -> rocky::inventory::Labels {
    let mut labels = rocky::inventory::Labels::new();
    labels.insert("model".into(), if n % 3 == 2 { "nrf52840" } else { "esp32-c3" }.into());
    labels.insert("site".into(), if n.is_multiple_of(2) { "lab" } else { "field" }.into());
    if n < 2 {
        labels.insert("ring".into(), "canary".into());
    }
    let lot = if misbehaving || n % 4 == 3 { BETA_LOT } else { "2024-03" };
    labels.insert("lot".into(), lot.into());
    labels
}

/// Devices that will not take an update (the slow and the garbage-sending ones still do).
fn misbehaves(behavior: Option<Behavior>) -> bool {
    matches!(behavior, Some(Behavior::Nack | Behavior::Fail | Behavior::Silent | Behavior::Corrupt))
}

/// A rollout plan with the demo's chunk size and a short retry backoff (so a retry shows within
/// the demo's first minute); the callers set waves and rules.
fn demo_plan(name: &str, image: &Image, chunk_size: ChunkSize, devices: Vec<DeviceId>) -> RolloutPlan {
    let mut plan = RolloutPlan::new(name, ImageInfo::from(image), devices);
    plan.chunk_size = Some(chunk_size.get());
    plan.retry_backoff_ms = 5_000;
    plan
}

/// The demo's two rollouts: the release to the whole fleet in waves (a canary, a quarter, the
/// rest), and a beta to one lot that aborts on its failure threshold, since its misbehaving
/// devices go first.
fn demo_rollouts(
    fleet: &Fleet,
    aws: &[DeviceId],
    release: &Image,
    beta: &Image,
    chunk_size: ChunkSize,
) -> Vec<RolloutPlan> {
    // The devices of AWS's OTA agent update in the release's last wave, beside the rest.
    let ids: Vec<DeviceId> = fleet.ids().into_iter().chain(aws.iter().cloned()).collect();
    let mut staged = demo_plan("release 2.1.0, staged", release, chunk_size, ids.clone());
    // The waves tolerate the demo's misbehaving devices (about one in six), so the release
    // runs through and ends "completed"; one retry shows a failed device tried again.
    staged.wave_ends = wave_ends(
        &[WaveSize::Count(1), WaveSize::Share("25%".into()), WaveSize::Share("100%".into())],
        ids.len(),
    )
    .unwrap_or_else(|_| vec![ids.len()]);
    staged.success_threshold = 0.6;
    staged.retries = 1;
    let mut rollouts = vec![staged];
    let (bad, good): (Vec<_>, Vec<_>) = fleet
        .ids()
        .iter()
        .enumerate()
        .filter(|(n, id)| misbehaves(fleet.behavior(id)) || n % 4 == 3)
        .map(|(_, id)| id.clone())
        .partition(|id| misbehaves(fleet.behavior(id)));
    if !bad.is_empty() {
        let lot: Vec<DeviceId> = bad.into_iter().chain(good).collect();
        let mut trial = demo_plan(&format!("beta 2.2.0 to lot {BETA_LOT}"), beta, chunk_size, lot);
        trial.max_concurrent = Some(2);
        trial.abort = Some(AbortRule {
            failure_share: 0.5,
            min_finished: 2,
            count_rejected: true,
            cancel_active: false,
        });
        rollouts.push(trial);
    }
    rollouts
}

/// The hotfix: the release with 64 bytes changed in its middle and 2 KiB appended, as a small
/// fix changes a firmware (its patch from the release is a few hundred bytes).
fn hotfix_bytes(release: &[u8]) -> Vec<u8> {
    let mut bytes = release.to_vec();
    let middle = bytes.len() / 2;
    let end = (middle + 64).min(bytes.len());
    bytes[middle..end].copy_from_slice(&b"ROCKY-2.1.1-HOTFIX".repeat(4)[..end - middle]);
    bytes.extend(release.iter().take(2048).map(|b| b.rotate_left(3)));
    bytes
}

/// The hotfix rollout, started once the release has ended, to the devices then running the
/// release: each gets a patch from it (the delta extension).
fn hotfix_rollout(release: &Image, hotfix: &Image, chunk_size: ChunkSize) -> FollowUp {
    let on = rocky::protocol::sha256_hex(release.sha256());
    let image = ImageInfo::from(hotfix);
    FollowUp {
        on,
        plan: Box::new(move |devices| {
            let mut plan = RolloutPlan::new("hotfix 2.1.1 as patches", image, devices);
            plan.chunk_size = Some(chunk_size.get());
            plan.success_threshold = 0.6;
            plan
        }),
    }
}

pub async fn run(global: &GlobalArgs, args: DemoArgs) -> anyhow::Result<()> {
    if args.devices == 0 || args.devices > 10_000 {
        anyhow::bail!("--devices must be between 1 and 10000");
    }
    if args.aws_devices > 1_000 {
        anyhow::bail!("--aws-devices must be at most 1000");
    }
    super::console::require_terminal()?;
    let mut config = load_config(global)?.config;
    let data_dir = data_dir(&config)?;
    let broker = tokio::task::spawn_blocking(|| EmbeddedBroker::start(None)).await??;
    // Short waits, so a silent device's timeout shows within seconds (2 × 3 s), with room for a
    // slow device (0.5 s, still visibly slow) on a busy machine: six times its delay.
    config.jobs.request_timeout_s = 3.0;
    config.jobs.request_attempts = 2;
    config.jobs.done_timeout_s = 10.0;
    // A device that never comes back from its reboot times out within the demo.
    config.jobs.confirm_timeout_s = 20.0;
    config.jobs.chunk_interval_ms = args.chunk_interval_ms;
    config.mqtt.url = broker.url().to_string();
    // The embedded broker speaks MQTT 3.1.1 on plain TCP, with no user names.
    config.mqtt.version = rocky::mqtt::MqttVersion::V311;
    // Jobs for the devices of AWS's OTA agent name where their code-signing certificate is.
    if config.aws_ota.certfile.is_empty() {
        config.aws_ota.certfile = "certs/demo-codesign.crt".into();
    }
    let runtime_config = config.runtime_config().map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.reason))?;

    let mut fleet_config = FleetConfig::new(broker.url(), args.devices);
    fleet_config.topics = runtime_config.topics.clone();
    fleet_config.plan = args.plan();
    fleet_config.slow_delay = Duration::from_millis(500);
    // A quarter of the fleet sets its own pace (flow control, window 8): the console shows
    // device-paced jobs beside pushed ones.
    // Devices report what they run and confirm updates after a 2 s reboot (the status and
    // confirm extensions): from 8 devices up one rolls back and one never comes back.
    fleet_config.model = DeviceModel {
        window: Some(8),
        paced: Some(Selection::Ratio(0.25)),
        reboot_delay: Duration::from_secs(2),
        ..Default::default()
    };
    // Signed updates (the manifest extension): Rocky signs the demo's images with a key made
    // for this run (never written anywhere); the devices take only images that key signed,
    // and from 8 devices up one trusts another key and refuses them (code 11). ES256, since
    // the devices of AWS's OTA agent check the same key's sig-sha256-ecdsa.
    let signer = rocky::signing::SigningKey::generate(rocky::signing::Alg::Es256)?;
    let mut trusted = rocky::signing::TrustedKeys::default();
    trusted.add(signer.public(), "the demo's key".into());
    fleet_config.model.trust = Some(std::sync::Arc::new(trusted));
    if args.devices >= 8 {
        let at =
            |share: f64| Selection::List(vec![((args.devices as f64 * share).round() as usize).to_string()]);
        fleet_config.rollback = Some(at(0.3));
        fleet_config.never_back = Some(at(0.6));
        fleet_config.distrust = Some(at(0.5));
    }
    // Delta updates: the devices apply patches to the image they run (they keep its bytes).
    // They start on a factory image Rocky does not hold, so the release goes whole; the hotfix
    // after it goes to the devices then running the release as patches from it.
    fleet_config.model.delta = true;
    let fleet = Fleet::start(&fleet_config).context("cannot name the simulated devices")?;
    // A few devices that run AWS's OTA agent, trusting the same key; the second rolls back.
    let mut aws_config = FleetConfig::new(broker.url(), args.aws_devices);
    aws_config.prefix = "thing-".into();
    aws_config.model = DeviceModel {
        profile: rocky::inventory::Profile::AwsIotOta,
        reboot_delay: Duration::from_secs(2),
        trust: fleet_config.model.trust.clone(),
        ..Default::default()
    };
    if args.aws_devices >= 2 {
        aws_config.rollback = Some(Selection::List(vec!["2".into()]));
    }
    let aws_fleet = Fleet::start(&aws_config).context("cannot name the simulated AWS devices")?;
    fleet.wait_connected(Duration::from_secs(15)).await;
    aws_fleet.wait_connected(Duration::from_secs(15)).await;

    let release = Image::new("demo-firmware-2.1.0.bin", Bytes::from_static(SAMPLE_IMAGE));
    // The beta differs from the release in its first bytes, so it has its own hash.
    let mut beta_bytes = SAMPLE_IMAGE.to_vec();
    beta_bytes[..16].copy_from_slice(b"ROCKY-2.2.0-BETA");
    let beta = Image::new("demo-firmware-2.2.0-beta.bin", Bytes::from(beta_bytes));
    let hotfix = Image::new("demo-firmware-2.1.1.bin", Bytes::from(hotfix_bytes(SAMPLE_IMAGE)));
    let chunk_size = ChunkSize::new(args.chunk_size).map_err(anyhow::Error::msg)?;
    let rollouts = if args.no_rollout {
        Vec::new()
    } else {
        demo_rollouts(&fleet, &aws_fleet.ids(), &release, &beta, chunk_size)
    };
    let follow_up = (!args.no_rollout).then(|| hotfix_rollout(&release, &hotfix, chunk_size));
    let register = fleet
        .ids()
        .into_iter()
        .enumerate()
        .map(|(n, id)| {
            let labels = demo_labels(n, misbehaves(fleet.behavior(&id)));
            (id, labels)
        })
        .chain(aws_fleet.ids().into_iter().map(|id| {
            let labels =
                [(rocky::inventory::profile::PROFILE_LABEL.to_owned(), "aws-iot-ota".to_owned())].into();
            (id, labels)
        }))
        .collect();
    let versions = vec![("2.1.0".to_owned(), 3), ("2.2.0-beta".to_owned(), 3), ("2.1.1".to_owned(), 4)];
    let startup = Startup {
        register,
        images: vec![release, beta, hotfix],
        rollouts,
        signer: Some((signer, versions)),
        follow_up,
    };
    // The demo keeps nothing: its jobs are not written to the data dir's job store.
    let result = run_console(&config, runtime_config, &data_dir, startup, false).await;
    fleet.stop().await;
    aws_fleet.stop().await;
    result
}
