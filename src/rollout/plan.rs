//! What a rollout was asked to do, checked and resolved: the image, the devices in order, where
//! each wave ends, and the rules for pace, success, abort and retries. Kept as it was created.

use serde::{Deserialize, Serialize};

use crate::protocol::DeviceId;
use crate::snapshot::ImageInfo;

/// Whether a wave starts by itself once the previous one met the success threshold, or waits for
/// a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Gates {
    #[default]
    Auto,
    Manual,
}

/// When a rollout stops by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortRule {
    /// The failed share of finished devices at which the rollout aborts (0 < share ≤ 1).
    pub failure_share: f64,
    /// Devices that must have finished before the share is judged.
    #[serde(default = "default_min_finished")]
    pub min_finished: u32,
    /// Whether a device that refused (NACK) counts as failed.
    #[serde(default = "yes")]
    pub count_rejected: bool,
    /// Whether active jobs are cancelled too (otherwise they finish).
    #[serde(default)]
    pub cancel_active: bool,
}

fn default_min_finished() -> u32 {
    10
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPlan {
    pub name: String,
    pub image: ImageInfo,
    pub chunk_size: Option<u32>,
    /// Bytes a second, per job.
    pub max_rate: Option<u64>,
    /// The pause between chunks each job gets (from `max_rate`).
    pub chunk_interval_ms: Option<u64>,
    /// The targets, resolved when the rollout was created, in the order given. Empty in a
    /// rollout's own plan: [`super::Rollout::new`] takes them over, held compactly.
    pub devices: Vec<DeviceId>,
    /// Where each wave ends (exclusive index into `devices`), ascending; the last is
    /// `devices.len()`.
    pub wave_ends: Vec<usize>,
    /// Job starts a minute across the rollout, evenly spread.
    pub max_per_minute: Option<u32>,
    /// Jobs of this rollout active at once.
    pub max_concurrent: Option<u32>,
    /// The share of a wave's devices that must succeed for the next wave to start.
    pub success_threshold: f64,
    pub abort: Option<AbortRule>,
    /// Times a failed or timed-out device (or one that answered busy) is tried again.
    pub retries: u32,
    /// The first retry waits this long; each later one twice as long as the one before.
    pub retry_backoff_ms: u64,
    pub gates: Gates,
    /// Devices whose last succeeded image is this one are reported up to date, not updated.
    pub skip_up_to_date: bool,
    /// Devices that take patches are sent one (the delta extension); `false`: whole images.
    #[serde(default = "yes")]
    pub delta: bool,
    /// Unix ms before which it starts nothing (`scheduled` until then); `None`: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<u64>,
    /// Jobs start only while one of these is open (none: any time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<super::window::Window>,
    /// For devices that run AWS's OTA agent: `certfile` or `filepath` in place of `[aws_ota]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_ota: Option<crate::runtime::AwsOtaOverride>,
}

/// The longest wait between two tries of one device.
pub const MAX_RETRY_BACKOFF_MS: u64 = 3_600_000;

impl RolloutPlan {
    /// Every setting, without the device list (which may hold 100,000 ids).
    pub fn clone_settings(&self) -> RolloutPlan {
        RolloutPlan {
            name: self.name.clone(),
            image: self.image.clone(),
            chunk_size: self.chunk_size,
            max_rate: self.max_rate,
            chunk_interval_ms: self.chunk_interval_ms,
            devices: Vec::new(),
            wave_ends: self.wave_ends.clone(),
            max_per_minute: self.max_per_minute,
            max_concurrent: self.max_concurrent,
            success_threshold: self.success_threshold,
            abort: self.abort.clone(),
            retries: self.retries,
            retry_backoff_ms: self.retry_backoff_ms,
            gates: self.gates,
            skip_up_to_date: self.skip_up_to_date,
            delta: self.delta,
            start_at: self.start_at,
            windows: self.windows.clone(),
            aws_ota: self.aws_ota.clone(),
        }
    }

    /// `image` to `devices` in one wave with the API's defaults: 95% to succeed, no caps, no
    /// abort, no retries, 30 s backoff, automatic gates. Callers set what they need besides.
    pub fn new(name: &str, image: ImageInfo, devices: Vec<DeviceId>) -> RolloutPlan {
        RolloutPlan {
            name: name.into(),
            image,
            chunk_size: None,
            max_rate: None,
            chunk_interval_ms: None,
            wave_ends: vec![devices.len()],
            devices,
            max_per_minute: None,
            max_concurrent: None,
            success_threshold: 0.95,
            abort: None,
            retries: 0,
            retry_backoff_ms: 30_000,
            gates: Gates::Auto,
            skip_up_to_date: false,
            delta: true,
            start_at: None,
            windows: Vec::new(),
            aws_ota: None,
        }
    }

    /// For tests: [`RolloutPlan::new`] of a made-up image to these devices.
    #[cfg(test)]
    pub fn example(devices: Vec<DeviceId>) -> RolloutPlan {
        let image = ImageInfo { name: "fw.bin".into(), size: 10, sha256: "ab".repeat(32).into() };
        RolloutPlan::new("r", image, devices)
    }

    /// For tests: `n` devices named by `name(1..=n)`.
    #[cfg(test)]
    pub fn example_of(n: usize, name: impl Fn(usize) -> String) -> RolloutPlan {
        RolloutPlan::example(
            (1..=n).map(|i| DeviceId::parse(&name(i)).unwrap_or_else(|e| panic!("{e}"))).collect(),
        )
    }

    pub fn wave_count(&self) -> usize {
        self.wave_ends.len()
    }

    /// Its devices: where the last wave ends (the device list itself goes to the rollout).
    pub fn device_count(&self) -> usize {
        self.wave_ends.last().copied().unwrap_or(self.devices.len())
    }

    /// The devices of wave `wave` (from 0), as a range of positions.
    pub fn wave_range(&self, wave: usize) -> std::ops::Range<usize> {
        let start =
            if wave == 0 { 0 } else { self.wave_ends.get(wave - 1).copied().unwrap_or(self.device_count()) };
        let end = self.wave_ends.get(wave).copied().unwrap_or(self.device_count());
        start..end
    }

    /// How long before try `attempt` (2, 3, …): the backoff doubling from the first retry.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(2).min(20);
        self.retry_backoff_ms.saturating_mul(1u64 << doublings).min(MAX_RETRY_BACKOFF_MS)
    }

    /// The least time between two job starts, from `max_per_minute`.
    pub fn start_spacing_ms(&self) -> Option<u64> {
        self.max_per_minute.filter(|n| *n > 0).map(|n| 60_000 / u64::from(n))
    }
}

/// One wave as the request gives it: a device count or a share of the fleet ("10%"), each
/// counted from the start (cumulative), as `[1, "10%", "50%", "100%"]` reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WaveSize {
    Count(u64),
    Share(String),
}

/// Read by hand rather than as an untagged enum, whose error ("data did not match any variant
/// of untagged enum WaveSize") says neither what a wave is nor which was wrong.
impl<'de> Deserialize<'de> for WaveSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Wave;
        impl serde::de::Visitor<'_> for Wave {
            type Value = WaveSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a wave: a device count (5) or a share of the devices (\"10%\")")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<WaveSize, E> {
                Ok(WaveSize::Count(n))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<WaveSize, E> {
                Ok(WaveSize::Share(text.to_owned()))
            }
        }
        deserializer.deserialize_any(Wave)
    }
}

/// Turns the requested waves into where each ends. A wave that adds no device to the one before
/// is left out; devices past the last wave make a final one.
pub fn wave_ends(waves: &[WaveSize], devices: usize) -> Result<Vec<usize>, String> {
    if devices == 0 {
        return Err("the rollout has no devices".into());
    }
    if waves.is_empty() {
        return Ok(vec![devices]);
    }
    if waves.len() > 100 {
        return Err(format!("{} waves; at most 100", waves.len()));
    }
    let mut ends = Vec::with_capacity(waves.len() + 1);
    // Waves are where each ends, counted from the start, so as written they must grow: a count
    // after a smaller or equal count, or a share after a smaller or equal share, is a mistake
    // (`5, 3`), said by name. Only a share after a count (or the reverse) may come to nothing
    // for a small fleet, and is then left out.
    let mut last_count: Option<u64> = None;
    let mut last_share: Option<f64> = None;
    for (index, wave) in waves.iter().enumerate() {
        let number = index + 1;
        let end = match wave {
            WaveSize::Count(0) => {
                return Err(format!("wave {number}: 0 devices; a wave ends after at least 1"));
            }
            WaveSize::Count(n) => {
                if let Some(before) = last_count.filter(|before| before >= n) {
                    return Err(format!(
                        "wave {number} ends at {n} devices, not after wave {} at {before}: waves count from the \
                         start and must grow (e.g. 1, 10, 50)",
                        number - 1
                    ));
                }
                last_count = Some(*n);
                usize::try_from(*n).unwrap_or(usize::MAX)
            }
            WaveSize::Share(text) => {
                let p = parse_percent(text).map_err(|e| format!("wave {number}: {e}"))?;
                if let Some(before) = last_share.filter(|before| *before >= p) {
                    return Err(format!(
                        "wave {number} ends at {p}%, not after an earlier wave at {before}%: waves count from the \
                         start and must grow (e.g. 10%, 50%, 100%)"
                    ));
                }
                last_share = Some(p);
                ((devices as f64) * p / 100.0).ceil() as usize
            }
        };
        let end = end.min(devices);
        let previous = ends.last().copied().unwrap_or(0);
        // A wave that adds nobody (10% of 8 devices after a first wave of 1) is left out, so
        // the same plan fits a small fleet and a large one.
        if end > previous {
            ends.push(end);
        }
    }
    if ends.last().copied() != Some(devices) {
        ends.push(devices);
    }
    Ok(ends)
}

/// A wave's share, `10%`: over 0 and at most 100 percent (anything else: "not a share").
fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim().strip_suffix('%').and_then(|n| n.trim().parse::<f64>().ok()) {
        Some(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{text:?} is not a share like \"10%\"")),
    }
}

/// A share as people write it everywhere (the form, the CLI): `95%` or `0.95`, from 0 to 1.
pub fn parse_share(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    }
    .map_err(|_| format!("{text:?} is not a share like 95% or 0.95"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text} is not a share from 0% to 100%"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wave_that_is_neither_a_count_nor_a_share_says_what_a_wave_is() {
        let waves: Vec<WaveSize> = serde_json::from_str(r#"[5, "10%"]"#).unwrap();
        assert_eq!(waves, [WaveSize::Count(5), WaveSize::Share("10%".into())]);
        for bad in [r#"[{"a": 1}]"#, "[-1]", "[1.5]", "[true]"] {
            let error = serde_json::from_str::<Vec<WaveSize>>(bad).unwrap_err().to_string();
            assert!(error.contains("a device count (5) or a share of the devices"), "{bad}: {error}");
        }
    }

    fn share(s: &str) -> WaveSize {
        WaveSize::Share(s.into())
    }

    #[test]
    fn waves_count_from_the_start() {
        let waves = [WaveSize::Count(1), share("10%"), share("50%"), share("100%")];
        assert_eq!(wave_ends(&waves, 100).unwrap(), [1, 10, 50, 100]);
        assert_eq!(wave_ends(&waves, 20).unwrap(), [1, 2, 10, 20]);
        assert_eq!(wave_ends(&[], 7).unwrap(), [7]);
        // Devices past the last wave make a final one.
        assert_eq!(wave_ends(&[WaveSize::Count(2)], 5).unwrap(), [2, 5]);
    }

    #[test]
    fn waves_that_add_nobody_are_left_out_and_bad_shares_are_refused() {
        let waves = [WaveSize::Count(1), share("10%"), share("50%"), share("100%")];
        assert_eq!(wave_ends(&waves, 8).unwrap(), [1, 4, 8], "10% of 8 is the first device already");
        assert_eq!(wave_ends(&waves, 1).unwrap(), [1]);
        assert!(wave_ends(&[share("ten")], 5).unwrap_err().contains("\"ten\""));
        assert!(wave_ends(&[share("150%")], 5).is_err());
        assert!(wave_ends(&[], 0).is_err());
    }

    #[test]
    fn waves_that_do_not_grow_as_written_are_refused_by_name() {
        let count = WaveSize::Count;
        let err = wave_ends(&[count(5), count(3)], 10).unwrap_err();
        assert!(err.contains("wave 2 ends at 3 devices, not after wave 1 at 5"), "{err}");
        let err = wave_ends(&[share("50%"), share("10%")], 10).unwrap_err();
        assert!(err.contains("wave 2 ends at 10%") && err.contains("must grow"), "{err}");
        assert!(wave_ends(&[count(0)], 10).unwrap_err().contains("wave 1: 0 devices"));
        assert!(wave_ends(&[share("0%")], 10).unwrap_err().contains("\"0%\" is not a share"));
        assert!(wave_ends(&[count(2), count(2)], 10).is_err(), "equal is not growing");
    }

    #[test]
    fn shares_read_alike_as_percent_or_fraction() {
        assert_eq!(parse_share("95%"), Ok(0.95));
        assert_eq!(parse_share("0.2"), Ok(0.2));
        assert!(parse_share("120%").unwrap_err().contains("from 0% to 100%"));
        assert!(parse_share("lots").unwrap_err().contains("like 95% or 0.95"));
    }
}
