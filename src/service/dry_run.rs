//! A rollout's dry run (`POST /rollouts?dry_run=true`, `rocky rollout create --dry-run`): the
//! plan a real run would follow, checked by the same rules, with nothing created (no rollout, no
//! job, nothing on the broker): its waves, the devices it would skip or that would refuse, the
//! devices Rocky has not heard from, and what it would cost in bytes and time under its caps.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Service, ServiceError};
use crate::engine::manifest_to_send;
use crate::firmware::Image;
use crate::protocol::{DeviceId, sha256_hex};
use crate::rollout::RolloutPlan;
use crate::snapshot::ImageInfo;

/// Each list of a dry run names at most this many devices (its count is whole).
pub const NAMED_DEVICES: usize = 1000;

/// A device not heard from for this long is listed as not seen lately.
const RECENT_MS: u64 = 24 * 3600 * 1000;

/// Some devices: how many, and the first [`NAMED_DEVICES`] of them in the rollout's order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceList {
    pub count: usize,
    pub devices: Vec<DeviceId>,
}

impl DeviceList {
    fn push(&mut self, device: &DeviceId) {
        self.count += 1;
        if self.devices.len() < NAMED_DEVICES {
            self.devices.push(device.clone());
        }
    }
}

/// A device the rollout's job would be refused for, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub device: DeviceId,
    pub reason: String,
}

/// What the rollout would send and how long it would take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Every device (but those up to date) sent the whole image.
    pub bytes_whole: u64,
    /// With patches for the devices that speak deltas and run an image Rocky holds.
    pub bytes_with_deltas: u64,
    /// Devices that would be sent a patch.
    pub patches: usize,
    /// Devices that take patches whose patch Rocky has not built (a dry run builds nothing):
    /// counted as whole images; a real run builds it.
    #[serde(default)]
    pub patches_not_built: usize,
    /// Seconds, under the rollout's caps (`None` without a cap to reckon by).
    pub duration_s: Option<f64>,
    /// How the duration was reckoned, or why it was not.
    pub duration_note: String,
}

/// A rollout's plan as a real run would follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutDryRun {
    pub dry_run: bool,
    pub name: String,
    pub image: ImageInfo,
    pub device_count: usize,
    /// Its waves in order, each with its devices.
    pub waves: Vec<DeviceList>,
    /// Devices whose status says they run the image: their jobs end `up_to_date` (or they are
    /// skipped with `skip_up_to_date`), nothing is sent.
    pub up_to_date: DeviceList,
    /// Devices Rocky has never seen ([`crate::inventory::Inventory::never_seen`]: what the real
    /// start warns of; a typo's job waits out its request timeout).
    pub never_seen: DeviceList,
    /// Devices registered but never heard from, or heard from but not in the last day.
    pub not_seen_lately: DeviceList,
    /// Devices the rollout would be refused for (an unsigned image for a device that asks for
    /// manifests, a lower security counter): a real run is refused as a whole while any remain.
    pub refused: Vec<Refusal>,
    pub refused_count: usize,
    pub estimate: Estimate,
}

impl Service {
    /// The dry run of `plan` with `image`: every rule a real start checks, nothing created.
    /// Patches are counted where Rocky has them already; none is built.
    pub async fn dry_run_rollout(
        &self,
        plan: &RolloutPlan,
        image: &Image,
    ) -> Result<RolloutDryRun, ServiceError> {
        // What would refuse the whole rollout refuses its dry run alike: too many under way,
        // or another instance sharing the store plans rollouts.
        self.handle.rollouts().may_create()?;
        let manifest = self.manifest_preview(image)?;
        let inventory = self.inventory();
        let now = self.clock().unix_ms(self.clock().now());
        let image_hex = sha256_hex(image.sha256());
        let mut run = RolloutDryRun {
            dry_run: true,
            name: plan.name.clone(),
            image: ImageInfo::from(image),
            device_count: plan.devices.len(),
            waves: Vec::new(),
            up_to_date: DeviceList::default(),
            never_seen: DeviceList::default(),
            not_seen_lately: DeviceList::default(),
            refused: Vec::new(),
            refused_count: 0,
            estimate: Estimate {
                bytes_whole: 0,
                bytes_with_deltas: 0,
                patches: 0,
                patches_not_built: 0,
                duration_s: None,
                duration_note: String::new(),
            },
        };
        let mut start = 0;
        for &end in &plan.wave_ends {
            let mut wave = DeviceList::default();
            plan.devices.get(start..end).unwrap_or_default().iter().for_each(|d| wave.push(d));
            run.waves.push(wave);
            start = end;
        }
        // What each device would be sent, by the image it runs (one look a base): a patch's
        // size, the whole image, or not known without building (`None`).
        let mut by_base: HashMap<String, Option<Option<u64>>> = HashMap::new();
        // The devices the real start's answer will warn of.
        let unseen: std::collections::HashSet<DeviceId> =
            inventory.never_seen(&plan.devices).into_iter().collect();
        for device in &plan.devices {
            let running = inventory.running_of(device);
            if unseen.contains(device) {
                run.never_seen.push(device);
            } else if inventory.get(device).is_some_and(|d| match d.last_seen {
                Some(seen) => now.saturating_sub(seen) > RECENT_MS,
                // Registered but never heard from: no warning at the start (the operator
                // listed it), yet not heard from lately either.
                None => running.is_none(),
            }) {
                run.not_seen_lately.push(device);
            }
            // The manifest rule first: a real start checks every device, up to date or not.
            let reported = running.as_ref().and_then(|r| r.reported());
            let refusal = manifest_to_send(device, reported.as_ref(), manifest.as_ref(), image.name())
                .err()
                .or_else(|| self.aws_refusal(device, image, plan.aws_ota.as_ref()));
            if let Some(reason) = refusal {
                run.refused_count += 1;
                if run.refused.len() < NAMED_DEVICES {
                    run.refused.push(Refusal { device: device.clone(), reason });
                }
                continue;
            }
            // As the rollout judges it (`Inventory::runs`).
            if inventory.runs(device, &image_hex) {
                run.up_to_date.push(device);
                continue;
            }
            run.estimate.bytes_whole += image.size();
            let deltas = self.library().deltas();
            let patch = match reported.filter(|r| r.delta && plan.delta && deltas.policy().enabled) {
                Some(reported) => *by_base.entry(sha256_hex(&reported.image)).or_insert_with(|| match deltas
                    .decided(&reported.image, image)
                {
                    Some(Ok(size)) => Some(Some(size)),
                    Some(Err(_)) => Some(None),
                    None => None,
                }),
                None => Some(None),
            };
            match patch {
                Some(Some(size)) => {
                    run.estimate.patches += 1;
                    run.estimate.bytes_with_deltas += size;
                }
                Some(None) => run.estimate.bytes_with_deltas += image.size(),
                None => {
                    run.estimate.patches_not_built += 1;
                    run.estimate.bytes_with_deltas += image.size();
                }
            }
        }
        let sending = plan.devices.len().saturating_sub(run.up_to_date.count + run.refused_count);
        (run.estimate.duration_s, run.estimate.duration_note) = duration(plan, sending, &run.estimate);
        Ok(run)
    }
}

/// How long sending to `sending` devices takes under the plan's caps: the start cap alone, or
/// each job at `max_rate` with at most `max_concurrent` at once, whichever is longer.
fn duration(plan: &RolloutPlan, sending: usize, estimate: &Estimate) -> (Option<f64>, String) {
    if sending == 0 {
        return (Some(0.0), "nothing to send".into());
    }
    let by_starts =
        plan.max_per_minute.map(|per_minute| sending as f64 * 60.0 / f64::from(per_minute.max(1)));
    let by_rate = plan.max_rate.filter(|rate| *rate > 0).map(|rate| {
        let per_job = estimate.bytes_with_deltas as f64 / sending as f64 / rate as f64;
        let at_once = plan
            .max_concurrent
            .map_or(sending.min(crate::rollout::UNCAPPED_AT_ONCE), |n| (n as usize).clamp(1, sending));
        sending.div_ceil(at_once) as f64 * per_job
    });
    match (by_starts, by_rate) {
        (None, None) => {
            (None, "no max_per_minute or max_rate: as fast as the devices and the broker go".into())
        }
        (starts, rate) => {
            let seconds = starts.unwrap_or(0.0).max(rate.unwrap_or(0.0));
            let how = match (starts, rate) {
                (Some(_), Some(_)) => "the start cap and max_rate per job, whichever is slower",
                (Some(_), None) => "the start cap (max_per_minute); transfers not counted",
                _ => "max_rate per job, max_concurrent at once",
            };
            (Some(seconds), format!("by {how}; waves' gates and retries not counted"))
        }
    }
}
