//! A rollout as an operator asks for it: the body of `POST /rollouts` less its firmware (which
//! the API resolves from a path, URL or hash and the console from the file it previewed). The
//! API and the console (in this process, or sending it to a server) check it here, once.

use serde::{Deserialize, Serialize};

use super::plan::{AbortRule, Gates, RolloutPlan, WaveSize, wave_ends};
use crate::firmware::{ChunkSize, Pacing};
use crate::inventory::{DeviceQuery, Inventory, Labels, labels};
use crate::protocol::DeviceId;
use crate::snapshot::ImageInfo;
use crate::units::Rate;

/// The most devices one rollout targets.
pub const MAX_TARGETS: usize = 100_000;
/// The longest rollout name, in bytes.
pub const MAX_NAME: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    pub name: String,
    pub targets: Targets,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Vec<WaveSize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<Gates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_up_to_date: Option<bool>,
    /// `false`: whole images even to devices that take patches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<bool>,
    /// When it may start its first job: RFC 3339 (`2026-12-04T02:00:00+01:00`) or Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<StartAt>,
    /// Maintenance windows: jobs start only inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<super::window::Window>>,
    /// For devices that run AWS's OTA agent: `certfile` or `filepath` in place of `[aws_ota]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_ota: Option<crate::runtime::AwsOtaOverride>,
}

/// How far ahead a rollout may be scheduled.
pub const MAX_SCHEDULE_MS: u64 = 366 * 24 * 3600 * 1000;

/// A start time as given: RFC 3339 text or Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StartAt {
    Ms(u64),
    Text(String),
}

impl StartAt {
    /// Unix ms, or why the text is not a time (RFC 3339 with its offset).
    pub fn unix_ms(&self) -> Result<u64, String> {
        match self {
            // 10^11 ms is March 1973: a smaller number is a time in seconds, which would
            // start the rollout at once.
            Self::Ms(ms) if *ms < 100_000_000_000 => {
                Err(format!("start_at {ms} looks like seconds: give Unix milliseconds (or RFC 3339)"))
            }
            Self::Ms(ms) => Ok(*ms),
            Self::Text(text) => {
                let at = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|_| {
                    format!(
                        "start_at {text:?} is not an RFC 3339 time such as 2026-12-04T02:00:00Z, or Unix ms"
                    )
                })?;
                u64::try_from(at.timestamp_millis()).map_err(|_| format!("start_at {text:?} is before 1970"))
            }
        }
    }
}

/// Exactly one of: ids as given (registered or not), a pattern or a label selector over the
/// inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Leaves out devices whose status says they run this version (with any of the three).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_not: Option<String>,
}

impl Targets {
    /// The devices, resolved now against `inventory` (a pattern or labels), in the given order
    /// or the inventory's.
    pub fn resolve(&self, inventory: &Inventory) -> Result<Vec<DeviceId>, String> {
        let devices = match (&self.devices, &self.glob, &self.labels) {
            (Some(ids), None, None) => {
                let mut seen = std::collections::HashSet::new();
                let mut devices = Vec::with_capacity(ids.len());
                for id in ids {
                    let device = DeviceId::parse(id).map_err(|e| format!("targets.devices: {e}"))?;
                    if !seen.insert(device.clone()) {
                        return Err(format!("targets.devices names {id:?} more than once"));
                    }
                    devices.push(device);
                }
                if devices.is_empty() {
                    return Err("targets.devices is empty".into());
                }
                devices
            }
            (None, Some(glob), None) => {
                let query =
                    DeviceQuery::default().with_glob(glob).map_err(|e| format!("targets.glob: {e}"))?;
                let devices = inventory.ids(&query);
                if devices.is_empty() {
                    return Err(format!("targets.glob {glob:?} matches no device in the inventory"));
                }
                devices
            }
            (None, None, Some(selector)) => {
                labels::check(selector).map_err(|e| format!("targets.labels: {e}"))?;
                if selector.is_empty() {
                    return Err("targets.labels is empty: name at least one label".into());
                }
                let query = DeviceQuery { labels: selector.clone(), ..DeviceQuery::default() };
                let devices = inventory.ids(&query);
                if devices.is_empty() {
                    let shown: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    return Err(format!(
                        "targets.labels {} match no device in the inventory",
                        shown.join(",")
                    ));
                }
                devices
            }
            _ => return Err("targets needs exactly one of \"devices\", \"glob\" or \"labels\"".into()),
        };
        let devices = match &self.version_not {
            None => devices,
            Some(version) => {
                if version.is_empty() || version.len() > crate::protocol::MAX_VERSION_BYTES {
                    return Err(format!(
                        "targets.version_not is 1 to {} bytes",
                        crate::protocol::MAX_VERSION_BYTES
                    ));
                }
                let runs = |id: &DeviceId| {
                    inventory.running_of(id).is_some_and(|r| r.version.as_deref() == Some(version.as_str()))
                };
                let left: Vec<DeviceId> = devices.into_iter().filter(|id| !runs(id)).collect();
                if left.is_empty() {
                    return Err(format!("every targeted device says it runs version {version:?} already"));
                }
                left
            }
        };
        if devices.len() > MAX_TARGETS {
            return Err(format!("{} devices; a rollout targets at most {MAX_TARGETS}", devices.len()));
        }
        Ok(devices)
    }
}

impl RolloutRequest {
    /// Checks every rule and makes the plan for `image`, the targets resolved against
    /// `inventory`; `default_chunk` turns a byte-rate cap into a pause between chunks when no
    /// chunk size is given. The error names the field and what was wrong.
    pub fn plan(
        &self,
        image: ImageInfo,
        inventory: &Inventory,
        default_chunk: ChunkSize,
        now_ms: u64,
    ) -> Result<RolloutPlan, String> {
        let name = check_name(&self.name)?;
        if let Some(over) = &self.aws_ota {
            over.check()?;
        }
        let start_at = self.start_at.as_ref().map(StartAt::unix_ms).transpose()?;
        let windows = self.windows.clone().unwrap_or_default();
        super::window::check(&windows)?;
        if start_at.is_some_and(|at| at > now_ms.saturating_add(MAX_SCHEDULE_MS)) {
            return Err("start_at is at most 366 days ahead".into());
        }
        let devices = self.targets.resolve(inventory)?;
        let wave_ends = wave_ends(self.waves.as_deref().unwrap_or_default(), devices.len())
            .map_err(|e| format!("waves: {e}"))?;
        let success_threshold = share("success_threshold", self.success_threshold.unwrap_or(0.95), true)?;
        if let Some(rule) = &self.abort {
            share("abort.failure_share", rule.failure_share, false)?;
        }
        let retries = self.retries.unwrap_or(0);
        if retries > 10 {
            return Err(format!("retries is at most 10, not {retries}"));
        }
        let retry_backoff_s = self.retry_backoff_s.unwrap_or(30);
        if !(1..=3600).contains(&retry_backoff_s) {
            return Err(format!("retry_backoff_s is from 1 to 3600, not {retry_backoff_s}"));
        }
        if self.max_per_minute == Some(0) || self.max_concurrent == Some(0) {
            return Err("max_per_minute and max_concurrent are at least 1 (leave them out for no cap)".into());
        }
        let max_rate = self.max_rate.filter(|rate| rate.0 > 0);
        let Pacing { chunk_size, pause } = Pacing::new(self.chunk_size, None, max_rate, default_chunk)?;
        Ok(RolloutPlan {
            name,
            image,
            chunk_size: chunk_size.map(ChunkSize::get),
            max_rate: max_rate.map(|rate| rate.0),
            chunk_interval_ms: pause.map(|pause| u64::try_from(pause.as_millis()).unwrap_or(u64::MAX)),
            devices,
            wave_ends,
            max_per_minute: self.max_per_minute,
            max_concurrent: self.max_concurrent,
            success_threshold,
            abort: self.abort.clone(),
            retries,
            retry_backoff_ms: retry_backoff_s * 1000,
            gates: self.gates.unwrap_or_default(),
            skip_up_to_date: self.skip_up_to_date.unwrap_or(false),
            delta: self.delta.unwrap_or(true),
            // A time gone by starts at once.
            start_at: start_at.filter(|at| *at > now_ms),
            windows,
            aws_ota: self.aws_ota.clone(),
        })
    }
}

/// A rollout's name, trimmed, or why it cannot be one (empty, too long, control characters).
pub fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("name is {} bytes; the limit is {MAX_NAME}", name.len()));
    }
    if let Some(position) = name.chars().position(crate::text::is_unprintable) {
        return Err(format!(
            "name contains a control or format character (such as a bidirectional override) at position {position}"
        ));
    }
    Ok(name.to_owned())
}

fn share(field: &str, value: f64, zero_ok: bool) -> Result<f64, String> {
    let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
    if low_ok && value <= 1.0 {
        Ok(value)
    } else {
        Err(format!(
            "{field} is a share {} 0 and 1 (0.95 = 95%), not {value}",
            if zero_ok { "from" } else { "over" }
        ))
    }
}
