//! Whether this instance may send and create jobs: a process that was stopped (or starved) past
//! its lease on a shared store must not send one more chunk, since another instance may already
//! drive the same devices.

use std::sync::Arc;

use crate::store::Membership;

/// What a refused submission says while the fence is closed.
pub const LEASE_RAN_OUT: &str =
    "this instance's lease on the shared store has run out; try again shortly or on another instance";

pub struct Fence {
    /// Closed by the claims task while this instance's lease cannot be renewed.
    fenced: bool,
    /// This instance's membership of a shared store, if it shares one.
    membership: Option<Arc<Membership>>,
}

impl Fence {
    pub fn new(membership: Option<Arc<Membership>>) -> Self {
        Self { fenced: false, membership }
    }

    /// Closed or opened by the claims task.
    pub fn set_fenced(&mut self, fenced: bool) {
        self.fenced = fenced;
    }

    /// Open: not fenced, and the lease (if any) holds by this process's clock right now.
    pub fn open(&self) -> bool {
        !self.fenced && self.membership.as_ref().is_none_or(|m| m.holds())
    }
}
