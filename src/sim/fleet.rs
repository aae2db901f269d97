//! A fleet of simulated devices started together, with a summary of what each saw.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::device::SimDevice;
use super::{Behavior, BehaviorPlan, DeviceModel, DeviceReport, Verdict};
use crate::mqtt::{BrokerConnection, BrokerUrl};
use crate::protocol::{DeviceId, DeviceIdError, Topics};

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The broker and how to reach it (TLS, credentials); each device uses its own client id.
    pub connection: BrokerConnection,
    pub topics: Topics,
    /// Devices are named `{prefix}{n}`, n from 1, zero-padded to at least two digits.
    pub prefix: String,
    pub count: usize,
    pub plan: BehaviorPlan,
    /// How long a `slow` device waits before each answer.
    pub slow_delay: Duration,
    /// What every device speaks and how fast it stores.
    pub model: DeviceModel,
    /// Devices that roll back after an update (boot it, fail, come back on the old image).
    pub rollback: Option<super::Selection>,
    /// Devices that never come back after an update.
    pub never_back: Option<super::Selection>,
    /// Devices whose status does not list `confirm`.
    pub no_confirm: Option<super::Selection>,
    /// Devices that verify manifests with a key of their own nobody signs with (they refuse
    /// every signed request with code 11), instead of `model.trust`.
    pub distrust: Option<super::Selection>,
    /// More listener ports of the same broker host: device n connects to the n-th port of
    /// the URL's and these, in turn. One source address has about 28,000 ephemeral ports
    /// towards one listener (Linux's 32768–60999), so a fleet larger than that needs more.
    pub ports: Vec<u16>,
    /// Devices that start connecting each second (0: all at once): a large fleet must not
    /// flood the broker's accept queue.
    pub connect_rate: u32,
    /// Devices of Rocky's protocol that share one MQTT connection (1: each its own). A
    /// connection holds an open file in the broker and in the fleet's process, so a fleet
    /// beyond the open-files limit shares them; AWS's agents always have their own.
    pub per_connection: usize,
}

impl FleetConfig {
    /// A fleet on a plain, open broker.
    pub fn new(broker: BrokerUrl, count: usize) -> Self {
        Self::with_connection(BrokerConnection::plain(broker), count)
    }

    pub fn with_connection(connection: BrokerConnection, count: usize) -> Self {
        Self {
            connection,
            topics: Topics::default(),
            prefix: "dev-".to_owned(),
            count,
            plan: BehaviorPlan::default(),
            slow_delay: super::machine::SLOW_DELAY,
            model: DeviceModel::default(),
            rollback: None,
            never_back: None,
            no_confirm: None,
            distrust: None,
            ports: Vec::new(),
            connect_rate: 0,
            per_connection: 1,
        }
    }

    pub fn device_ids(&self) -> Result<Vec<DeviceId>, DeviceIdError> {
        device_ids(&self.prefix, self.count)
    }
}

/// The ids of a fleet of `count` devices: `prefix` and a number from 1, at least two digits wide.
pub fn device_ids(prefix: &str, count: usize) -> Result<Vec<DeviceId>, DeviceIdError> {
    let width = count.to_string().len().max(2);
    (1..=count).map(|n| DeviceId::parse(&format!("{prefix}{n:0width$}"))).collect()
}

pub struct Fleet {
    devices: Vec<(DeviceId, Behavior, Arc<Mutex<DeviceReport>>)>,
    /// Devices subscribed now.
    connected: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Starts every device; they connect in the background (see [`Fleet::wait_connected`]).
    pub fn start(config: &FleetConfig) -> Result<Self, DeviceIdError> {
        let ids = config.device_ids()?;
        let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let behaviors = config.plan.assign(&names);
        let paced = config.model.paced.as_ref().map(|selection| selection.pick(&names));
        let pick = |selection: &Option<super::Selection>| {
            selection.as_ref().map_or_else(|| vec![false; names.len()], |s| s.pick(&names))
        };
        let (rollback, never_back, no_confirm) =
            (pick(&config.rollback), pick(&config.never_back), pick(&config.no_confirm));
        let distrust = pick(&config.distrust);
        // A key of their own that signs nothing.
        let stranger = distrust
            .iter()
            .any(|d| *d)
            .then(|| crate::signing::SigningKey::generate(crate::signing::Alg::Ed25519).ok())
            .flatten()
            .map(|key| {
                let mut keys = crate::signing::TrustedKeys::default();
                keys.add(key.public(), "a key of the device's own".into());
                Arc::new(keys)
            });
        let (stop, stop_rx) = watch::channel(false);
        let connected = Arc::new(AtomicUsize::new(0));
        let ports: Vec<u16> =
            std::iter::once(config.connection.url.port).chain(config.ports.iter().copied()).collect();
        let count = ids.len();
        let mut devices = Vec::with_capacity(count);
        let per_connection = match config.model.profile {
            crate::inventory::Profile::AwsIotOta => 1,
            _ => config.per_connection.max(1),
        };
        let mut tasks = Vec::with_capacity(ids.len() / per_connection + 1);
        let mut group: Vec<SimDevice> = Vec::with_capacity(per_connection);
        for (index, (id, behavior)) in ids.into_iter().zip(behaviors).enumerate() {
            let mut model = config.model.clone();
            if paced.as_ref().is_some_and(|picked| !picked[index]) {
                model.window = None;
            }
            model.after_update = match (rollback[index], never_back[index]) {
                (true, _) => super::AfterUpdate::RollsBack,
                (false, true) => super::AfterUpdate::NeverBack,
                _ => model.after_update,
            };
            model.no_confirm |= no_confirm[index];
            if distrust[index] {
                model.trust.clone_from(&stranger);
            }
            let report =
                Arc::new(Mutex::new(DeviceReport { behavior: Some(behavior), ..Default::default() }));
            let mut connection = config.connection.clone();
            // A connection's devices take its listener and its start together.
            let first = index - index % per_connection;
            connection.url.port = ports[(first / per_connection) % ports.len()];
            let start_delay = match config.connect_rate {
                0 => Duration::ZERO,
                rate => Duration::from_secs_f64(first as f64 / f64::from(rate)),
            };
            let device = SimDevice {
                id: id.clone(),
                behavior,
                slow_delay: config.slow_delay,
                model,
                topics: config.topics.clone(),
                connection,
                report: report.clone(),
                start_delay,
                connected: connected.clone(),
            };
            devices.push((id, behavior, report));
            if per_connection == 1 {
                tasks.push(tokio::spawn(device.run(stop_rx.clone())));
                continue;
            }
            group.push(device);
            if group.len() == per_connection || index + 1 == count {
                let members = std::mem::replace(&mut group, Vec::with_capacity(per_connection));
                let client_id = format!("{}+{}", members[0].id, members.len() - 1);
                tasks.push(tokio::spawn(super::shared::run(members, client_id, stop_rx.clone())));
            }
        }
        Ok(Self { devices, connected, stop, tasks })
    }

    pub fn ids(&self) -> Vec<DeviceId> {
        self.devices.iter().map(|(id, _, _)| id.clone()).collect()
    }

    pub fn behavior(&self, id: &DeviceId) -> Option<Behavior> {
        self.devices.iter().find(|(d, _, _)| d == id).map(|(_, b, _)| *b)
    }

    pub fn report(&self, id: &DeviceId) -> Option<DeviceReport> {
        self.devices
            .iter()
            .find(|(d, _, _)| d == id)
            .map(|(_, _, r)| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    pub fn reports(&self) -> Vec<(DeviceId, DeviceReport)> {
        self.devices
            .iter()
            .map(|(id, _, r)| (id.clone(), r.lock().unwrap_or_else(|p| p.into_inner()).clone()))
            .collect()
    }

    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Devices the broker refused a subscription (each counts once, until it subscribes).
    pub fn refused(&self) -> usize {
        self.devices
            .iter()
            .filter(|(_, _, r)| r.lock().unwrap_or_else(|p| p.into_inner()).refused_subscription)
            .count()
    }

    /// Why a device that is not connected last failed to, if one did.
    pub fn last_failure(&self) -> Option<String> {
        self.devices.iter().find_map(|(_, _, r)| {
            let report = r.lock().unwrap_or_else(|p| p.into_inner());
            report.last_failure.clone().filter(|_| !report.connected)
        })
    }

    /// Waits (polling, with a deadline) until every device has subscribed.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.connected() == self.devices.len() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// One line per behaviour: how many devices, and how their updates ended.
    pub fn summary(&self) -> String {
        let mut by_behavior: BTreeMap<Behavior, (usize, usize, usize, usize)> = BTreeMap::new();
        let mut chunks = 0u64;
        let mut bytes = 0u64;
        for (_, report) in self.reports() {
            let entry = by_behavior.entry(report.behavior.unwrap_or(Behavior::Good)).or_default();
            entry.0 += 1;
            match report.last_verdict() {
                Some(Verdict::Verified) => entry.1 += 1,
                Some(Verdict::Failed) => entry.2 += 1,
                Some(Verdict::Refused) => entry.3 += 1,
                None => {}
            }
            chunks += report.chunks;
            bytes += report.bytes;
        }
        let devices = crate::units::plural(self.devices.len(), "simulated device");
        let mut out = format!("{devices}, {chunks} chunks, {bytes} bytes received\n");
        for (behavior, (n, verified, failed, refused)) in by_behavior {
            let _ = writeln!(
                out,
                "  {behavior:<8} {n:>5} {:<8} {verified} verified, {failed} failed, {refused} refused",
                if n == 1 { "device:" } else { "devices:" }
            );
        }
        out
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}
