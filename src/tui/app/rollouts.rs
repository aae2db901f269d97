//! The rollouts the console shows. They live in the runtime (or the server), not in the event
//! stream, so the console fetches the listing about once a second, at once when a rollout
//! announces a change, and the open rollout's whole view with it.

use super::Cursor;
use crate::rollout::{RolloutId, RolloutView};

#[derive(Debug, Default)]
pub struct Rollouts {
    /// The newest first, as the source listed them.
    pub list: Vec<RolloutView>,
    /// The rollout whose detail is open, whole (devices and history).
    pub detail: Option<RolloutView>,
    /// Fetch again now rather than at the next second.
    pub due: bool,
    /// Why the last fetch failed (an attached console's server went away), until one works.
    pub error: Option<String>,
    pub cursor: Cursor,
    pub filter: String,
}

impl Rollouts {
    pub fn get(&self, id: RolloutId) -> Option<&RolloutView> {
        self.list.iter().find(|r| r.id == id)
    }
}
