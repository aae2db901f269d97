//! Why an operator's action was refused or failed, in words, with what kind of failure it is
//! (the HTTP API answers each kind with its own status).

use crate::firmware::ResolveError;
use crate::inventory::InventoryError;
use crate::runtime::{RolloutError, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// What was asked is wrong: the message names the field and why.
    #[error("{0}")]
    Invalid(String),
    /// What was asked conflicts with what is there (a manifest with a higher counter).
    #[error("{0}")]
    Conflict(String),
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The disk is full: nothing was changed.
    #[error("{0}")]
    DiskFull(String),
    /// What was asked needs something this Rocky does not have now (a store, for timelines).
    #[error("{0}")]
    Unavailable(String),
    /// The image named could not be found, read or fetched (its own kinds: outside the
    /// firmware directory, too large, …).
    #[error(transparent)]
    Firmware(#[from] ResolveError),
    /// Something on this side failed (the message says what).
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The runtime refused or failed (its own kinds: a full store, a finished job, …).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}
