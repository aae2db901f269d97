//! Which devices a listing or a rollout's targets select: labels (all must match), an id
//! pattern, and how recently they were heard from.

use super::{Device, Labels, glob, labels};
use crate::protocol::DeviceId;

/// The longest id pattern accepted, in bytes, and the most `*` in it: matching is linear in the
/// id for each `*`, so these keep a hostile pattern over 100,000 devices well under a second.
pub const MAX_PATTERN_BYTES: usize = 128;
pub const MAX_PATTERN_STARS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceQuery {
    pub labels: Labels,
    pub glob: Option<String>,
    /// Heard from at or after this Unix millisecond.
    pub seen_since: Option<u64>,
    /// Ids after this one (paging).
    pub after: Option<DeviceId>,
    /// Its status says it runs this image (SHA-256, lower-case hex).
    pub running: Option<String>,
    /// Its status names this version.
    pub version: Option<String>,
    /// Its status does not name this version (a device without a status is not known to run
    /// it, so it is selected).
    pub version_not: Option<String>,
    pub limit: usize,
}

impl Default for DeviceQuery {
    fn default() -> Self {
        Self {
            labels: Labels::new(),
            glob: None,
            seen_since: None,
            after: None,
            running: None,
            version: None,
            version_not: None,
            limit: usize::MAX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("label filter: {0}")]
    Label(#[from] labels::LabelError),
    #[error("label filter names {0:?} twice with different values; no device can match")]
    Contradiction(String),
    #[error("device pattern is {0} bytes; the limit is {MAX_PATTERN_BYTES}")]
    PatternTooLong(usize),
    #[error("device pattern has {0} '*'; the limit is {MAX_PATTERN_STARS}")]
    TooManyStars(usize),
}

impl DeviceQuery {
    /// Adds `key=value` to the label selector.
    pub fn with_label(mut self, pair: &str) -> Result<Self, QueryError> {
        let (key, value) = labels::parse_pair(pair)?;
        if let Some(old) = self.labels.insert(key.clone(), value.clone())
            && old != value
        {
            return Err(QueryError::Contradiction(key));
        }
        Ok(self)
    }

    pub fn with_glob(mut self, pattern: &str) -> Result<Self, QueryError> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(QueryError::PatternTooLong(pattern.len()));
        }
        let stars = pattern.matches('*').count();
        if stars > MAX_PATTERN_STARS {
            return Err(QueryError::TooManyStars(stars));
        }
        self.glob = Some(pattern.to_owned());
        Ok(self)
    }

    pub fn selects(&self, device: &Device) -> bool {
        labels::matches(&device.labels, &self.labels)
            && self.glob.as_deref().is_none_or(|g| glob::matches(g, device.device_id.as_str()))
            && self.seen_since.is_none_or(|since| device.last_seen.is_some_and(|seen| seen >= since))
            && self
                .running
                .as_ref()
                .is_none_or(|image| device.running.as_ref().is_some_and(|r| *r.image == **image))
            && self.version.as_ref().is_none_or(|v| {
                device.running.as_ref().is_some_and(|r| r.version.as_deref() == Some(v.as_str()))
            })
            && self.version_not.as_ref().is_none_or(|v| {
                device.running.as_ref().is_none_or(|r| r.version.as_deref() != Some(v.as_str()))
            })
    }
}
