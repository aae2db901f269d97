//! A rollout as the outside sees it: the HTTP API answers it, `rocky rollout` prints it and the
//! console draws it, so the three read one shape. A listing leaves out the devices and the
//! history of changes, which grow with the fleet.

use serde::{Deserialize, Serialize};

use super::devices::Slot;
use super::plan::{AbortRule, Gates};
use super::state::{Rollout, RolloutBytes, RolloutChange, RolloutId, RolloutState, WaveCounts};
use crate::snapshot::ImageInfo;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: RolloutId,
    pub name: String,
    pub state: RolloutState,
    /// Why it is in its state (paused below a threshold, aborted by its rule, …).
    pub reason: Option<String>,
    /// The wave under way, from 1 (the last once every wave ran).
    pub wave: usize,
    pub waves: Vec<WaveView>,
    pub image: ImageInfo,
    pub device_count: usize,
    pub settings: Settings,
    /// Unix ms.
    pub created_at: u64,
    pub updated_at: u64,
    /// A rough time left in ms while the rollout runs: its devices still to finish at the
    /// pace of those finished so far (or its start cap, if that is slower).
    pub eta_ms: Option<u64>,
    /// Bytes its finished jobs sent, against what whole images would have.
    #[serde(default)]
    pub bytes: RolloutBytes,
    /// Every device's outcome and latest job, in the rollout's order (not in listings), or
    /// one window of them (see `devices_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Slot>>,
    /// Where `devices` starts among the rollout's devices, when a window of them was asked
    /// for (`GET /rollouts/{id}?from=…&limit=…`); absent when `devices` holds them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_from: Option<usize>,
    /// Its changes of state, oldest first (not in listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<RolloutChange>>,
}

/// A window of a rollout's devices: positions `from` to `from + limit`, in the rollout's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceWindow {
    pub from: usize,
    pub limit: usize,
}

impl DeviceWindow {
    /// The most devices one window holds (`GET /rollouts/{id}?limit=`).
    pub const MAX: usize = 10_000;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveView {
    /// From 1.
    pub wave: usize,
    #[serde(flatten)]
    pub counts: WaveCounts,
}

/// The rollout's rules, as created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub chunk_size: Option<u32>,
    pub max_rate: Option<u64>,
    pub max_per_minute: Option<u32>,
    pub max_concurrent: Option<u32>,
    pub success_threshold: f64,
    pub abort: Option<AbortRule>,
    pub retries: u32,
    pub retry_backoff_s: u64,
    pub gates: Gates,
    pub skip_up_to_date: bool,
    /// Unix ms before which it starts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<u64>,
    /// Jobs start only inside these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<super::window::Window>,
}

impl Settings {
    /// The rules in words, as the console and `rocky rollout show` say them: "a wave goes on
    /// at ≥95% succeeded · abort at ≥20% failed once 10 finished · 1 retry (from 30 s apart)".
    pub fn in_words(&self) -> String {
        let mut parts = vec![format!("a wave goes on at ≥{:.0}% succeeded", self.success_threshold * 100.0)];
        if let Some(rule) = &self.abort {
            parts.push(format!(
                "abort at ≥{:.0}% failed once {} finished",
                rule.failure_share * 100.0,
                rule.min_finished
            ));
        }
        if self.retries > 0 {
            parts.push(format!(
                "{} retr{} (from {} s apart)",
                self.retries,
                if self.retries == 1 { "y" } else { "ies" },
                self.retry_backoff_s
            ));
        }
        if let Some(at) = self.start_at {
            parts.push(format!("starts at {}", crate::units::utc(at)));
        }
        for window in &self.windows {
            parts.push(format!(
                "starts jobs {} {}–{} {}",
                window.days.join(","),
                window.start,
                window.end,
                window.tz
            ));
        }
        if let Some(cap) = self.max_per_minute {
            parts.push(format!("≤{cap} starts a minute"));
        }
        if let Some(cap) = self.max_concurrent {
            parts.push(format!("≤{cap} at once"));
        }
        parts.push(format!("{:?} gates", self.gates).to_lowercase());
        if self.skip_up_to_date {
            parts.push("skips up-to-date devices".into());
        }
        if let Some(size) = self.chunk_size {
            parts.push(format!("{size}-byte chunks"));
        }
        if let Some(rate) = self.max_rate {
            parts.push(format!("≤{rate} B/s a job"));
        }
        parts.join(" · ")
    }
}

impl RolloutView {
    /// Where the rollout is among its waves, for a listing: `2/3`, or `before 2/3` while it
    /// waits (paused, or at a manual gate) before a wave that has not started a device.
    pub fn wave_label(&self) -> String {
        let count = self.waves.len();
        let waiting = self.state == RolloutState::Paused
            && self
                .waves
                .get(self.wave.saturating_sub(1))
                .is_some_and(|w| w.counts.pending == w.counts.devices);
        if waiting { format!("before {}/{count}", self.wave) } else { format!("{}/{count}", self.wave) }
    }

    /// A listing's view: counts per wave, no devices. `waves` are `rollout.wave_counts()`,
    /// passed in because a listing holds only the rollout's head.
    pub fn summary(rollout: &Rollout, waves: Vec<WaveCounts>, device_count: usize, now: u64) -> Self {
        let plan = &rollout.plan;
        let waves: Vec<WaveView> = waves
            .into_iter()
            .enumerate()
            .map(|(index, counts)| WaveView { wave: index + 1, counts })
            .collect();
        let mut view = Self {
            id: rollout.id,
            name: plan.name.clone(),
            state: rollout.state,
            reason: rollout.reason.clone(),
            wave: (rollout.wave + 1).min(plan.wave_count()),
            waves,
            image: plan.image.clone(),
            device_count,
            devices_from: None,
            settings: Settings {
                chunk_size: plan.chunk_size,
                max_rate: plan.max_rate,
                max_per_minute: plan.max_per_minute,
                max_concurrent: plan.max_concurrent,
                success_threshold: plan.success_threshold,
                abort: plan.abort.clone(),
                retries: plan.retries,
                retry_backoff_s: plan.retry_backoff_ms / 1000,
                gates: plan.gates,
                skip_up_to_date: plan.skip_up_to_date,
                start_at: plan.start_at,
                windows: plan.windows.clone(),
            },
            created_at: rollout.created_at,
            updated_at: rollout.updated_at,
            eta_ms: None,
            bytes: rollout.bytes,
            devices: None,
            changes: None,
        };
        view.eta_ms = view.estimate(now);
        view
    }

    /// The whole rollout: every device and the history of changes too.
    pub fn full(rollout: &Rollout, now: u64) -> Self {
        Self::windowed(rollout, now, None)
    }

    /// The whole view with every device (`window` `None`), or with the devices in `window`
    /// only: a rollout of 100,000 devices is read a page at a time by whoever shows it.
    pub fn windowed(rollout: &Rollout, now: u64, window: Option<DeviceWindow>) -> Self {
        let mut view = Self::summary(rollout, rollout.wave_counts(), rollout.devices.len(), now);
        view.devices = Some(match window {
            None => rollout.devices.slots(),
            Some(w) => rollout.devices.slots_in(w.from, w.limit),
        });
        view.devices_from = window.map(|w| w.from);
        view.changes = Some(rollout.changes.clone());
        view
    }

    /// Every wave's counts added up.
    pub fn totals(&self) -> WaveCounts {
        self.waves.iter().fold(WaveCounts::default(), |mut sum, wave| {
            let c = &wave.counts;
            sum.devices += c.devices;
            sum.pending += c.pending;
            sum.active += c.active;
            sum.succeeded += c.succeeded;
            sum.failed += c.failed;
            sum.cancelled += c.cancelled;
            sum.up_to_date += c.up_to_date;
            sum.rolled_back += c.rolled_back;
            sum.confirming += c.confirming;
            sum.confirmed += c.confirmed;
            sum
        })
    }

    /// "12 confirmed · 3 up to date · 1 rolled back · 2 confirming" (of the succeeded, the
    /// failed and the active), or `None` when none of these happened: what the wave table's
    /// columns do not tell.
    /// What patches saved, once a finished job sent one: `sent 2.3 MiB of 100 MiB in whole
    /// images (98% saved by patches)`; `None` while nothing was saved.
    pub fn bytes_note(&self) -> Option<String> {
        let saved = self.bytes.saved_percent()?;
        Some(format!(
            "sent {} of {} in whole images ({saved:.0}% saved by patches)",
            crate::units::bytes(self.bytes.sent),
            crate::units::bytes(self.bytes.whole_image)
        ))
    }

    pub fn confirm_note(&self) -> Option<String> {
        let totals = self.totals();
        let mut parts = Vec::new();
        if totals.confirmed > 0 {
            parts.push(format!("{} confirmed", totals.confirmed));
        }
        if totals.up_to_date > 0 {
            parts.push(format!("{} up to date", totals.up_to_date));
        }
        if totals.rolled_back > 0 {
            parts.push(format!("{} rolled back", totals.rolled_back));
        }
        if totals.confirming > 0 {
            parts.push(format!("{} confirming", totals.confirming));
        }
        (!parts.is_empty()).then(|| parts.join(" · "))
    }

    /// Failed devices as a share of those finished (succeeded or failed), the figure the
    /// abort rule compares; `None` before any finished.
    pub fn failure_share(&self) -> Option<f64> {
        let totals = self.totals();
        let finished = totals.succeeded + totals.failed;
        (finished > 0).then(|| totals.failed as f64 / finished as f64)
    }

    fn estimate(&self, now: u64) -> Option<u64> {
        if self.state != RolloutState::Running {
            return None;
        }
        let totals = self.totals();
        let finished = totals.succeeded + totals.failed + totals.cancelled;
        let left = totals.devices.saturating_sub(finished) as u64;
        let elapsed = now.saturating_sub(self.created_at);
        if finished == 0 || left == 0 || elapsed == 0 {
            return None;
        }
        let by_pace = elapsed.saturating_mul(left) / finished as u64;
        let by_cap = self
            .settings
            .max_per_minute
            .map_or(0, |cap| (totals.pending as u64).saturating_mul(60_000) / u64::from(cap.max(1)));
        Some(by_pace.max(by_cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Outcome, RolloutPlan};

    fn rollout(devices: usize) -> Rollout {
        let mut plan = RolloutPlan::example_of(devices, |n| format!("d{n}"));
        plan.wave_ends = vec![1, devices];
        plan.max_per_minute = Some(6);
        plan.success_threshold = 0.5;
        Rollout::new(RolloutId::new(1), plan, 0)
    }

    #[test]
    fn a_listing_leaves_out_devices_and_a_full_view_round_trips_through_json() {
        let r = rollout(4);
        let listed = RolloutView::summary(&r.head(), r.wave_counts(), 4, 0);
        let json = serde_json::to_value(&listed).unwrap();
        assert!(json.get("devices").is_none() && json.get("changes").is_none());
        assert_eq!(json["waves"][1]["wave"], 2);
        assert_eq!(json["waves"][1]["devices"], 3, "counts are flattened into the wave");
        let full = RolloutView::full(&r, 0);
        let back: RolloutView = serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        assert_eq!(back, full);
        assert_eq!(back.devices.map(|d| d.len()), Some(4));
    }

    #[test]
    fn the_failure_share_counts_finished_devices_and_the_eta_follows_the_pace_or_the_cap() {
        let mut r = rollout(10);
        r.state = RolloutState::Running;
        assert_eq!(RolloutView::full(&r, 60_000).failure_share(), None);
        assert_eq!(RolloutView::full(&r, 60_000).eta_ms, None, "nothing finished: no pace yet");
        r.devices.set_outcome(0, Outcome::Succeeded);
        r.devices.set_outcome(1, Outcome::Failed);
        let view = RolloutView::full(&r, 60_000);
        assert_eq!(view.failure_share(), Some(0.5));
        // 2 finished in a minute, 8 left: 4 minutes at that pace; the cap (6 a minute, 8
        // pending) would take 80 s, so the pace decides.
        assert_eq!(view.eta_ms, Some(240_000));
        r.plan.max_per_minute = Some(1);
        assert_eq!(RolloutView::full(&r, 60_000).eta_ms, Some(480_000), "a slower cap decides");
        r.state = RolloutState::Paused;
        assert_eq!(RolloutView::full(&r, 60_000).eta_ms, None, "no ETA while paused");
    }
}
