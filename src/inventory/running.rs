//! What a device last said it runs (the status extension), as the inventory keeps it and the API
//! shows it, and the bounded room for statuses of devices the inventory does not hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::protocol::{DeviceId, DeviceStatus, sha256_hex};
use crate::snapshot::ImageInfo;

use super::Device;

/// Statuses kept for devices the inventory does not hold (never registered, never sent a job):
/// enough for a fleet that reports before its operator registers it, never the inventory's room.
pub const MAX_UNLISTED_STATUSES: usize = 10_000;

/// A device's last status. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// SHA-256 (hex) of the image it runs. Its texts are shared between devices that say the
    /// same (`SharedTexts`): a fleet runs few images and speaks one set of capabilities.
    pub image: Arc<str>,
    pub version: Option<Arc<str>>,
    pub boot: Option<u64>,
    pub seq: Option<u64>,
    pub caps: Arc<[String]>,
    /// Key ids (hex) whose manifests it accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kids: Vec<String>,
    pub reported_at: u64,
}

/// How many different texts of each kind [`SharedTexts`] keeps.
const SHARED_TEXTS: usize = 16;

/// The statuses' texts many devices report alike, kept once for all of them: at most
/// `SHARED_TEXTS` of each kind. A text no device holds any more gives its place to a new one;
/// while all are held, a new text stays its device's own, as it would without sharing.
#[derive(Debug, Default)]
pub struct SharedTexts {
    /// Images' hashes (hex), whether a status reports one or a job succeeded with it.
    images: Vec<Arc<str>>,
    versions: Vec<Arc<str>>,
    caps: Vec<Arc<[String]>>,
    /// The names of the images devices last succeeded with.
    names: Vec<Arc<str>>,
}

impl SharedTexts {
    /// Makes `running`'s texts the ones already kept where they are equal.
    pub fn share(&mut self, running: &mut Running) {
        share(&mut self.images, &mut running.image);
        if let Some(version) = running.version.as_mut() {
            share(&mut self.versions, version);
        }
        share(&mut self.caps, &mut running.caps);
    }

    /// Makes the texts of a device read from the store (its status, its last image) the ones
    /// already kept where they are equal: a device read back holds texts of its own (its image's
    /// hash and name, its version, its capabilities), each a heap block per device. Sharing
    /// them is what brought PostgreSQL's fleet peak down to SQLite's (docs/scale.md).
    pub fn share_device(&mut self, device: &mut Device) {
        if let Some(running) = device.running.as_mut() {
            self.share(running);
        }
        if let Some(image) = device.last_image.as_mut() {
            self.share_image(image);
        }
    }

    /// Makes `image`'s name and hash the texts already kept where they are equal.
    pub fn share_image(&mut self, image: &mut ImageInfo) {
        share(&mut self.names, &mut image.name);
        share(&mut self.images, &mut image.sha256);
    }
}

fn share<T: ?Sized + PartialEq>(kept: &mut Vec<Arc<T>>, value: &mut Arc<T>) {
    if let Some(found) = kept.iter().find(|k| **k == *value) {
        *value = found.clone();
    } else if kept.len() < SHARED_TEXTS {
        kept.push(value.clone());
    } else if let Some(unused) = kept.iter_mut().find(|k| Arc::strong_count(k) == 1) {
        *unused = value.clone();
    }
}

impl Running {
    pub fn new(status: &DeviceStatus, reported_at: u64) -> Self {
        Self {
            image: sha256_hex(&status.image).into(),
            version: status.version.as_deref().map(Arc::from),
            boot: status.boot,
            seq: status.seq,
            caps: status.caps.clone().into(),
            kids: status.kids.iter().map(hex::encode).collect(),
            reported_at,
        }
    }

    /// What the engine needs of it: the image, its version, the boot counter and whether the
    /// device confirms updates (`confirm`, which needs the counter). `None` when the stored
    /// image is not a hash (a damaged row).
    pub fn reported(&self) -> Option<crate::engine::Reported> {
        let mut image = [0u8; 32];
        hex::decode_to_slice(&*self.image, &mut image).ok()?;
        Some(crate::engine::Reported {
            image,
            version: self.version.as_deref().map(str::to_owned),
            boot: self.boot,
            confirm: self.boot.is_some() && self.speaks(crate::protocol::CAP_CONFIRM),
            manifest: self.speaks(crate::protocol::CAP_MANIFEST),
            delta: self.speaks(crate::protocol::CAP_DELTA_BSDIFF4),
            seq: self.seq,
            kids: self
                .kids
                .iter()
                .filter_map(|kid| hex::decode(kid).ok().and_then(|b| crate::signing::Kid::from_slice(&b)))
                .collect(),
        })
    }

    /// The same word from the device, whenever it was said (a retained status comes again at
    /// every subscription: it is not news).
    pub fn says_the_same_as(&self, other: &Running) -> bool {
        Running { reported_at: other.reported_at, ..self.clone() } == *other
    }

    /// Whether the device listed extension `cap`.
    pub fn speaks(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    /// The version it names, else the first 8 hex digits of the image's hash.
    pub fn label(&self) -> String {
        match &self.version {
            Some(version) => version.to_string(),
            None => self.image.chars().take(8).collect(),
        }
    }
}

/// Statuses of devices the inventory does not hold, at most [`MAX_UNLISTED_STATUSES`]: a broker
/// client can make up any number of ids, so past the bound new ones are counted, not kept. A
/// device that enters the inventory (registered, or sent a job) takes its status from here.
/// In memory only: the broker retains statuses and sends them again at every subscription.
#[derive(Debug, Default)]
pub struct Unlisted {
    statuses: BTreeMap<DeviceId, Running>,
    /// Statuses not kept because the room was full, since the start.
    pub refused: u64,
}

impl Unlisted {
    /// Keeps (or, `None`, clears) the status of `id`; false when there was no room for it.
    pub fn report(&mut self, id: &DeviceId, running: Option<Running>) -> bool {
        // A cleared status takes no room: there is nothing to keep.
        let Some(running) = running else {
            self.statuses.remove(id);
            return true;
        };
        if let Some(held) = self.statuses.get_mut(id) {
            if !held.says_the_same_as(&running) {
                *held = running;
            }
            return true;
        }
        if self.statuses.len() >= MAX_UNLISTED_STATUSES {
            self.refused += 1;
            return false;
        }
        self.statuses.insert(id.clone(), running);
        true
    }

    /// The status of `id`, if one is held.
    pub fn get(&self, id: &str) -> Option<&Running> {
        self.statuses.get(id)
    }

    /// The status of `id`, taken out (it joins the inventory).
    pub fn take(&mut self, id: &DeviceId) -> Option<Running> {
        self.statuses.remove(id)
    }

    pub fn len(&self) -> usize {
        self.statuses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty()
    }
}
