//! Why a durable write failed, by kind: each kind has its own HTTP status and words, so an
//! operator can tell a full disk from a busy database from a damaged one. Below the store and
//! the domain both: the inventory answers it for the registrations it hands to storage without
//! knowing what storage is (`inventory::DeviceRecords`); `store/` maps its databases' errors to
//! it.

use crate::engine::JobId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The disk (or the file system's quota) is full: HTTP 507.
    #[error("the job store's disk is full; nothing was recorded")]
    Full,
    /// Another process holds the database, or too many submissions wait for it: HTTP 503.
    #[error("the job store is busy ({0}); try again shortly")]
    Busy(String),
    /// The database file is damaged: HTTP 500, and the log says which file.
    #[error("the job store is damaged ({0}); nothing was recorded")]
    Corrupt(String),
    /// An id the store already holds: a bug, never expected.
    #[error("job id {0} is already in the store")]
    Duplicate(JobId),
    /// Another instance sharing the store drives the device, or this instance's lease on the
    /// store has run out: HTTP 409, nothing recorded.
    #[error("{0}")]
    Elsewhere(String),
    /// The database server cannot be reached (PostgreSQL restarting, the network): HTTP 503.
    #[error("the job store's database cannot be reached ({0}); try again shortly")]
    Unavailable(String),
    /// Every job id (up to 2^32 - 2) has been given: no job can be created in this store.
    #[error("every job id has been given; no more jobs can be created in this store")]
    IdsExhausted,
    /// Any other failure to read or write the database or the image store.
    #[error("the job store cannot write ({0})")]
    Failed(String),
    #[error("the job store has stopped")]
    Stopped,
}

/// The disk, or the user's quota on it, is full.
pub fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}
