//! Every device the console knows: the inventory's (registered or seen, with labels and the
//! last image that succeeded) and those it saw in jobs and traffic.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Cursor;
use crate::engine::{JobId, JobState};
use crate::inventory::Labels;

#[derive(Debug, Clone, Default)]
pub struct DeviceRow {
    pub id: String,
    /// When the device last published anything.
    pub last_seen: Option<SystemTime>,
    /// Its last response, as rendered text.
    pub last_response: Option<String>,
    /// Its active or most recent job and that job's state.
    pub job: Option<(JobId, JobState)>,
    pub succeeded: u32,
    pub failed: u32,
    /// Its labels, from the inventory.
    pub labels: Labels,
    /// The last image that succeeded on it, from the inventory.
    pub firmware: Option<String>,
    /// The inventory says it is registered or has answered a job.
    pub vouched: bool,
    /// What it says it runs (its status): version, short hash, the extensions it speaks.
    pub runs: Option<String>,
}

/// The devices pane: every device the console knows, by id, and how the pane shows them.
#[derive(Debug, Default)]
pub struct Devices {
    pub rows: BTreeMap<String, DeviceRow>,
    /// The console has not yet read every page of the inventory: a device missing here may be
    /// on a page still to come.
    pub inventory_cut: bool,
    /// Where the next page of the inventory starts (`None`: the next read starts a new walk
    /// from its first device).
    pub inventory_after: Option<crate::protocol::DeviceId>,
    /// Pages read in the walk under way, and in the last whole one (the console spaces its
    /// walks by it, so a large inventory is not read over and over).
    pub inventory_pages: (usize, usize),
    pub cursor: Cursor,
    pub filter: String,
}

impl Devices {
    /// Every device the form's `prefix*` and label selectors may match, by id, with labels.
    pub fn known(&self) -> Vec<(&str, &Labels)> {
        self.rows.values().map(|row| (row.id.as_str(), &row.labels)).collect()
    }

    /// Takes in the inventory's devices: their labels, last image and last contact (the
    /// later of the inventory's and what this console saw).
    pub fn merge_inventory(&mut self, page: crate::tui::source::InventoryPage) {
        self.inventory_pages.0 += 1;
        match page.next_after {
            Some(next) => self.inventory_after = Some(next),
            None => {
                // The walk reached the last page: every device is known, the next walk starts over.
                self.inventory_cut = false;
                self.inventory_after = None;
                self.inventory_pages = (0, self.inventory_pages.0);
            }
        }
        if self.inventory_after.is_some() && self.inventory_pages.1 == 0 {
            self.inventory_cut = true;
        }
        for device in page.devices {
            let vouched = device.vouched();
            let row = self.entry(device.device_id.as_str());
            row.labels = device.labels;
            row.firmware = device.last_image.map(|image| image.name.to_string());
            row.vouched = vouched;
            // A device of AWS's OTA agent sends no status: its profile says what it runs.
            row.runs = device.running.as_ref().map(runs).or_else(|| {
                (device.profile == crate::inventory::Profile::AwsIotOta).then(|| AWS_AGENT.to_owned())
            });
            let seen = device.last_seen.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
            row.last_seen = row.last_seen.max(seen);
        }
    }

    /// Of `ids`, those Rocky has never seen: not registered, never answered a job, no status
    /// held, and not heard from by this console. None are claimed when the inventory was cut (they may be
    /// past the part this console read).
    pub fn never_seen<'a>(&self, ids: &[&'a str]) -> Vec<&'a str> {
        if self.inventory_cut {
            return Vec::new();
        }
        ids.iter()
            .copied()
            .filter(|id| self.rows.get(*id).is_none_or(|row| !row.vouched && row.last_seen.is_none()))
            .collect()
    }

    pub fn entry(&mut self, id: &str) -> &mut DeviceRow {
        self.rows
            .entry(id.to_owned())
            .or_insert_with(|| DeviceRow { id: id.to_owned(), ..Default::default() })
    }

    /// A job of `device` entered `state`; `newly_final` counts its outcome (once per job).
    pub fn job_changed(&mut self, device: &str, job: JobId, state: JobState, newly_final: bool) {
        let row = self.entry(device);
        // A queued job does not replace the device's running one in this column.
        if state != JobState::Queued || row.job.is_none_or(|(_, s)| s.is_final()) {
            row.job = Some((job, state));
        }
        match state {
            _ if !newly_final => {}
            JobState::Succeeded | JobState::UpToDate => row.succeeded += 1,
            state if state.is_failure() => row.failed += 1,
            _ => {}
        }
    }
}

/// What the RUNS column says of a device that runs AWS's OTA agent.
pub const AWS_AGENT: &str = "AWS OTA agent";

/// "2.0.3 315f5bdb resume,flow,confirm": the version (when it names one), the image's first 8
/// hex digits and the extensions, in the order the device listed them.
fn runs(running: &crate::inventory::Running) -> String {
    let hash: String = running.image.chars().take(8).collect();
    let mut parts: Vec<String> = running.version.iter().map(|v| v.to_string()).collect();
    parts.push(hash);
    if !running.caps.is_empty() {
        parts.push(running.caps.join(","));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Device;
    use crate::protocol::DeviceId;
    use crate::snapshot::ImageInfo;
    use crate::tui::source::InventoryPage;

    fn registered(id: &str) -> Device {
        Device {
            device_id: DeviceId::parse(id).unwrap(),
            labels: Labels::new(),
            registered: true,
            first_seen: None,
            last_seen: None,
            last_image: None,
            last_job: None,
            running: None,
            profile: crate::inventory::Profile::Rocky,
        }
    }

    #[test]
    fn the_inventory_is_read_page_by_page_and_known_whole_only_after_its_last_page() {
        let mut devices = Devices::default();
        let first = InventoryPage {
            devices: vec![registered("a-1"), registered("a-2")],
            next_after: Some(DeviceId::parse("a-2").unwrap()),
        };
        devices.merge_inventory(first);
        assert_eq!(devices.inventory_after.as_ref().map(DeviceId::as_str), Some("a-2"));
        assert!(devices.inventory_cut, "a page is still to come");
        assert!(devices.never_seen(&["z-9"]).is_empty(), "nothing is claimed before the walk ends");
        devices.merge_inventory(InventoryPage { devices: vec![registered("b-1")], next_after: None });
        assert!(!devices.inventory_cut && devices.inventory_after.is_none(), "the walk starts over");
        assert_eq!(devices.inventory_pages, (0, 2), "the next walk is spaced by the pages this one took");
        assert_eq!(devices.rows.keys().collect::<Vec<_>>(), ["a-1", "a-2", "b-1"]);
        assert_eq!(devices.never_seen(&["b-1", "z-9"]), ["z-9"]);
        // A later walk that is cut short again does not unknow what the whole one showed.
        devices.merge_inventory(InventoryPage {
            devices: vec![registered("a-1")],
            next_after: Some(DeviceId::parse("a-1").unwrap()),
        });
        assert!(!devices.inventory_cut);
    }

    #[test]
    fn the_inventory_adds_devices_never_heard_from_with_their_labels_and_last_image() {
        let mut devices = Devices::default();
        devices.job_changed("dev-01", JobId::new(1), JobState::Succeeded, true);
        let mut shelf = registered("shelf-7");
        shelf.labels = [("site".to_owned(), "attic".to_owned()), ("model".to_owned(), "m9".to_owned())]
            .into_iter()
            .collect();
        let registered = shelf;
        let mut seen = registered.clone();
        seen.device_id = DeviceId::parse("dev-01").unwrap();
        seen.last_image =
            Some(ImageInfo { name: "fw-2.bin".into(), size: 1, sha256: "00".repeat(32).into() });
        seen.last_seen = Some(5_000);
        let mut aws = registered.clone();
        aws.device_id = DeviceId::parse("thing-1").unwrap();
        aws.profile = crate::inventory::Profile::AwsIotOta;
        // A device no one registered whose status Rocky holds (a job made it a row): heard from.
        let mut talks = registered.clone();
        talks.device_id = DeviceId::parse("talks-1").unwrap();
        talks.registered = false;
        talks.running = Some(crate::inventory::Running {
            image: "c8cdd3fb".repeat(8).into(),
            version: None,
            boot: Some(1),
            seq: None,
            caps: Vec::new().into(),
            kids: Vec::new(),
            reported_at: 1,
        });
        devices
            .merge_inventory(InventoryPage { devices: vec![registered, seen, aws, talks], next_after: None });
        assert_eq!(devices.rows["thing-1"].runs.as_deref(), Some(AWS_AGENT), "its profile shows");
        assert_eq!(devices.rows["shelf-7"].runs, None);
        let known: Vec<&str> = devices.known().into_iter().map(|(id, _)| id).collect();
        assert_eq!(known, ["dev-01", "shelf-7", "talks-1", "thing-1"], "prefix* finds the registered device");
        let shelf = &devices.rows["shelf-7"];
        assert_eq!(crate::inventory::labels::render(&shelf.labels), "model=m9 site=attic");
        assert_eq!(shelf.firmware, None);
        let dev = &devices.rows["dev-01"];
        assert_eq!(dev.firmware.as_deref(), Some("fw-2.bin"));
        assert_eq!(dev.succeeded, 1, "what the console counted is kept");
        assert_eq!(dev.last_seen, Some(UNIX_EPOCH + Duration::from_secs(5)));
        devices.job_changed("typo-1", JobId::new(2), JobState::Queued, false);
        assert_eq!(
            devices.never_seen(&["dev-01", "shelf-7", "talks-1", "typo-1", "typo-2"]),
            ["typo-1", "typo-2"],
            "registered, answered or a status held is seen; a job of its own is not"
        );
        devices.inventory_cut = true;
        assert!(devices.never_seen(&["typo-2"]).is_empty(), "past a cut list nothing is claimed");
    }

    #[test]
    fn the_runs_column_names_the_version_when_there_is_one_the_hash_and_the_extensions() {
        let running = |version: Option<&str>, caps: &[&str]| crate::inventory::Running {
            image: "c8cdd3fb".repeat(8).into(),
            version: version.map(Into::into),
            boot: Some(2),
            seq: None,
            caps: caps.iter().map(|c| c.to_string()).collect(),
            kids: Vec::new(),
            reported_at: 1,
        };
        assert_eq!(runs(&running(Some("2.0.3"), &["resume", "confirm"])), "2.0.3 c8cdd3fb resume,confirm");
        assert_eq!(runs(&running(None, &[])), "c8cdd3fb");
    }
}
