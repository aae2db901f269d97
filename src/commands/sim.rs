//! `rocky sim`: a simulated fleet on any broker, with a summary when it stops.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use super::behavior_flags::BehaviorFlags;
use super::setup::{load_config, shutdown_signal};
use crate::commands::output::say;
use rocky::sim::{Behavior, DeviceModel, Fleet, FleetConfig, Selection};

/// A number of seconds to wait: finite, not negative, and not beyond what a timer holds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| *secs >= 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|wait| *wait <= MAX_DURATION)
        .ok_or_else(|| format!("{text:?} is not a number of seconds from 0 to {}", MAX_DURATION.as_secs()))
}

/// The longest `--duration`: a year, far past any test, and well inside what a timer holds.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A share between 0 and 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share between 0 and 1 (0.05 = 5%)")),
    }
}

#[derive(Args, Debug)]
pub struct SimArgs {
    #[command(flatten)]
    pub config: super::ConfigFlag,
    #[command(flatten)]
    pub broker: super::BrokerFlags,

    /// How many devices.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true, value_parser = parse_count)]
    pub count: usize,
    /// Device ids are PREFIX01, PREFIX02, ...
    #[arg(long, default_value = "dev-")]
    pub prefix: String,
    /// More listener ports of the broker's host, e.g. `1884,1885`: devices take the URL's
    /// port and these in turn (one source address has about 28,000 ports towards one
    /// listener; a larger fleet needs more listeners).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Devices that start connecting each second (0: all at once).
    #[arg(long, value_name = "PER_S", default_value_t = 2000, allow_negative_numbers = true)]
    pub connect_rate: u32,
    /// Devices that share one MQTT connection (client id `FIRST+K-1`) instead of each having its
    /// own: a fleet larger than the open-files limit allows (`ulimit -Hn`, one file a
    /// connection here and in the broker) still reaches Rocky, which holds the same per device
    /// either way. Rocky's protocol only; not with --flash-rate (the devices would stall together).
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10_000), conflicts_with = "flash_rate")]
    pub per_connection: u32,
    /// The protocol the devices speak: rocky (Rocky's own) or aws-iot-ota (AWS's OTA agent:
    /// Jobs and MQTT file streams; they check sig-sha256-ecdsa with the ES256 keys of --trust;
    /// --rollback fails their self test, --distrust their signature check, --never-back keeps
    /// them from coming back after the reboot).
    #[arg(long, default_value = "rocky", value_parser = parse_profile)]
    pub profile: rocky::inventory::Profile,
    /// Misbehaving devices.
    #[command(flatten)]
    pub behavior: BehaviorFlags,
    /// Wait this long before each answer: on the --slow devices, or on every device when
    /// --slow is not given.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub ack_delay: Option<u64>,
    /// Flow control: devices opt in with this window (chunks beyond what they confirmed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), allow_negative_numbers = true)]
    pub window: Option<u32>,
    /// Which devices use --window: a share (0.25, 25%) or a list (dev-03,7); all when not given.
    #[arg(long, value_name = "LIST|RATIO", requires = "window", value_parser = Selection::parse)]
    pub paced: Option<Selection>,
    /// Each device stores this fast (bytes/s, or like 50KiB/s) and reads its connection no
    /// faster, as a device behind slow flash does.
    #[arg(long, value_name = "RATE", value_parser = rocky::units::parse_rate)]
    pub flash_rate: Option<u64>,
    /// Share of chunks each device loses on the way (0.05 = 5%).
    #[arg(long, value_name = "SHARE", value_parser = parse_share, allow_negative_numbers = true)]
    pub lossy: Option<f64>,
    /// Version 1 devices: no resume, no reasons, no flow control, no status.
    #[arg(long, conflicts_with = "window")]
    pub legacy: bool,
    /// How long a device takes to reboot into a verified update before it reports it.
    #[arg(long, value_name = "MS", default_value_t = 1000, allow_negative_numbers = true)]
    pub reboot_delay: u64,
    /// Devices that roll back: they boot the update, fail their self-test and come back on the
    /// image they ran before (a share like 0.1, or a list like dev-03,7).
    #[arg(long, value_name = "LIST|RATIO", value_parser = Selection::parse, conflicts_with = "legacy")]
    pub rollback: Option<Selection>,
    /// Devices that never come back after an update (no status, no answer).
    #[arg(long, value_name = "LIST|RATIO", value_parser = Selection::parse, conflicts_with = "legacy")]
    pub never_back: Option<Selection>,
    /// Devices whose status does not list confirm: they succeed at FOTA_DONE_SUCCESS.
    #[arg(long, value_name = "LIST|RATIO", value_parser = Selection::parse, conflicts_with = "legacy")]
    pub no_confirm: Option<Selection>,
    /// Devices verify manifests (their status lists `manifest`) and take only images signed by
    /// this public key: PEM or hex, or a file of either, or a private key file (its public
    /// half). Repeat for more keys.
    #[arg(long, value_name = "KEY", conflicts_with = "legacy")]
    pub trust: Vec<String>,
    /// Devices that trust a key of their own instead (they refuse signed requests with code 11):
    /// a share like 0.1, or a list like dev-03,7.
    #[arg(long, value_name = "LIST|RATIO", value_parser = Selection::parse, conflicts_with = "legacy")]
    pub distrust: Option<Selection>,
    /// Devices speak the delta extension: they list delta-bsdiff4 and apply patches to the image
    /// they run (they keep its bytes).
    #[arg(long, conflicts_with = "legacy")]
    pub delta: bool,
    /// The image every device runs at start, read from this file (so Rocky, holding it too, can
    /// send patches from it); without it devices run a factory image known only by its hash.
    #[arg(long, value_name = "FILE", conflicts_with = "legacy")]
    pub factory: Option<std::path::PathBuf>,
    /// Stop this many seconds after every device connected (or after trying this long, when
    /// they cannot all connect) instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
}

/// At least one device.
fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(count) if count >= 1 => Ok(count),
        _ => Err(format!("{text:?} is not a number of devices (1 or more)")),
    }
}

/// Every list in the selection flags names devices of the fleet: `--slow abc` that picked no
/// device would leave the user thinking some devices are slow.
fn check_selections(args: &SimArgs, ids: &[String]) -> anyhow::Result<()> {
    let named = args.behavior.named();
    let others = [
        ("--paced", &args.paced),
        ("--rollback", &args.rollback),
        ("--never-back", &args.never_back),
        ("--no-confirm", &args.no_confirm),
        ("--distrust", &args.distrust),
    ];
    for (flag, selection) in named.into_iter().chain(others) {
        let Some(selection) = selection else { continue };
        let unmatched = selection.unmatched(ids);
        if let Some(first) = unmatched.first() {
            let (low, high) = (ids.first().map_or("", String::as_str), ids.last().map_or("", String::as_str));
            anyhow::bail!(
                "{flag}: {first:?} names no device of this fleet (ids {low} to {high}, or numbers 1 to {})",
                ids.len()
            );
        }
    }
    Ok(())
}

fn parse_profile(text: &str) -> Result<rocky::inventory::Profile, String> {
    rocky::inventory::Profile::parse(text)
        .ok_or_else(|| format!("{text:?}: a profile is rocky or aws-iot-ota"))
}

pub async fn run(global: &GlobalArgs, args: SimArgs) -> anyhow::Result<()> {
    // A fleet that cannot connect stops this long after the start; one that connects runs this
    // long after it did.
    let give_up_at = args.duration.map(|wait| tokio::time::Instant::now() + wait);
    if args.distrust.is_some() && args.trust.is_empty() {
        anyhow::bail!("--distrust picks devices that trust another key than --trust's: give --trust KEY too");
    }
    let aws = args.profile == rocky::inventory::Profile::AwsIotOta;
    if aws {
        let rocky_only = [
            ("--window", args.window.is_some()),
            ("--legacy", args.legacy),
            ("--delta", args.delta),
            ("--factory", args.factory.is_some()),
            ("--no-confirm", args.no_confirm.is_some()),
            ("--lossy", args.lossy.is_some()),
            ("--per-connection", args.per_connection > 1),
        ];
        if let Some((flag, _)) = rocky_only.iter().find(|(_, given)| *given) {
            anyhow::bail!("{flag} is for devices of Rocky's protocol, not --profile aws-iot-ota");
        }
        if args.trust.is_empty() {
            eprintln!(
                "note: no --trust KEY: these devices hold no code-signing certificate, so every job fails with \
                 0xe7 (give the ES256 key Rocky signs with, or its public half)"
            );
        }
    }
    let ids = rocky::sim::device_ids(&args.prefix, args.count).context("bad device prefix")?;
    check_selections(&args, &ids.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let config = load_config(global)?.config;
    let runtime_config = super::setup::runtime_config(&config, global).await?;
    let topics = runtime_config.topics;
    let connection = runtime_config.connection;
    let broker = connection.url.clone();
    let mut behavior = args.behavior.clone();
    // --ack-delay alone slows every device.
    if behavior.slow.is_none() && args.ack_delay.is_some() {
        behavior.slow = Some(Selection::Ratio(1.0));
    }
    let plan = behavior.plan().unwrap_or_default();
    let fleet_config = FleetConfig {
        connection,
        topics,
        prefix: args.prefix,
        count: args.count,
        plan,
        slow_delay: Duration::from_millis(args.ack_delay.unwrap_or(1500)),
        model: DeviceModel {
            window: args.window,
            paced: args.paced,
            flash_rate: args.flash_rate,
            lossy: args.lossy.unwrap_or(0.0),
            legacy: args.legacy,
            stop_confirming_at: None,
            reboot_delay: Duration::from_millis(args.reboot_delay),
            trust: trusted_keys(&args.trust)?.map(std::sync::Arc::new),
            profile: args.profile,
            delta: args.delta,
            factory: match &args.factory {
                Some(path) => Some(
                    std::fs::read(path)
                        .with_context(|| format!("cannot read --factory {}", path.display()))?
                        .into(),
                ),
                None => None,
            },
            ..DeviceModel::default()
        },
        rollback: args.rollback,
        never_back: args.never_back,
        no_confirm: args.no_confirm,
        distrust: args.distrust,
        ports: args.ports,
        connect_rate: args.connect_rate,
        per_connection: args.per_connection as usize,
    };
    let fleet = Fleet::start(&fleet_config).context("bad device prefix")?;
    let devices = rocky::units::plural(args.count, "simulated device");
    match args.duration {
        Some(wait) => say!("{devices} on {broker} for {} s (Ctrl-C to stop sooner)", wait.as_secs_f64()),
        None => say!("{devices} on {broker} (Ctrl-C to stop)"),
    }
    for (id, report) in fleet.reports() {
        if let Some(behavior) = report.behavior.filter(|b| *b != Behavior::Good) {
            say!("  {id}: {behavior}");
        }
    }
    if aws {
        let first = fleet.ids().first().map(ToString::to_string).unwrap_or_default();
        say!(
            "  they run AWS's OTA agent: Rocky takes a registered device heard on $aws/things/… as one \
             (rocky devices import, or rocky devices label {first} profile=aws-iot-ota)"
        );
    }
    // As long as the connect rate takes, and 30 s more; progress every 5 s on the way.
    let ramp = match args.connect_rate {
        0 => Duration::ZERO,
        rate => Duration::from_secs_f64(args.count as f64 / f64::from(rate)),
    };
    let mut deadline = tokio::time::Instant::now() + ramp + Duration::from_secs(30);
    if let Some(give_up_at) = give_up_at {
        deadline = deadline.min(give_up_at);
    }
    let mut all = false;
    while tokio::time::Instant::now() < deadline {
        let next = (tokio::time::Instant::now() + Duration::from_secs(5)).min(deadline);
        if fleet.wait_connected(next.saturating_duration_since(tokio::time::Instant::now())).await {
            all = true;
            break;
        }
        if tokio::time::Instant::now() < deadline {
            say!(
                "  {} of {} connected{}",
                fleet.connected(),
                rocky::units::plural(args.count, "device"),
                not_connected_words(&fleet)
            );
        }
    }
    let stop_at = if all {
        // `rocky bench` waits for this line before it starts the clock.
        say!("all {} connected", rocky::units::plural(args.count, "device"));
        args.duration.map(|wait| tokio::time::Instant::now() + wait)
    } else {
        let stopping = give_up_at.is_some_and(|at| tokio::time::Instant::now() >= at);
        say!(
            "only {} of {} connected{}{}",
            fleet.connected(),
            rocky::units::plural(args.count, "device"),
            not_connected_words(&fleet),
            if stopping { "; --duration is over" } else { " so far; still trying" }
        );
        give_up_at
    };
    match stop_at {
        Some(stop_at) => {
            tokio::select! {
                _ = tokio::time::sleep_until(stop_at) => {}
                _ = shutdown_signal() => {}
            }
        }
        None => shutdown_signal().await,
    }
    let summary = fleet.summary();
    fleet.stop().await;
    // Through `say!`: `print!` panics when the reader of a pipe (`| head`) is gone.
    say!("{}", summary.trim_end_matches('\n'));
    Ok(())
}

/// `--trust` keys: public keys (PEM, hex, or files of either), or a private key file, whose
/// public half is taken (the demo's devices trust the key Rocky signs with).
fn trusted_keys(entries: &[String]) -> anyhow::Result<Option<rocky::signing::TrustedKeys>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut keys = rocky::signing::TrustedKeys::default();
    for (index, entry) in entries.iter().enumerate() {
        if let Ok(private) = rocky::signing::read_signing_key(std::path::Path::new(entry)) {
            keys.add(private.public(), entry.clone());
            continue;
        }
        let one =
            rocky::signing::TrustedKeys::from_entries(std::slice::from_ref(entry), std::path::Path::new(""))
                .map_err(|e| anyhow::anyhow!("--trust #{}: {e}", index + 1))?;
        for key in one.iter() {
            keys.add(key.key.clone(), entry.clone());
        }
    }
    Ok(Some(keys))
}

/// What to add to a progress line: why devices could not connect, and whether the broker
/// refused some devices' subscriptions.
fn not_connected_words(fleet: &Fleet) -> String {
    let mut words = match fleet.last_failure() {
        Some(why) => format!("; the last failure: {why}"),
        None => String::new(),
    };
    if let n @ 1.. = fleet.refused() {
        words += &format!(
            "; the broker refused a subscription of {n} (an ACL on their topics?): they hear nothing and \
             are not counted as connected"
        );
    }
    words
}
