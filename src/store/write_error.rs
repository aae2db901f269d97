//! How the databases' and the file system's failures become a [`WriteError`]'s kinds.

pub use crate::write_error::{WriteError, is_disk_full};

impl From<rusqlite::Error> for WriteError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as Code;
        match error.sqlite_error_code() {
            Some(Code::DiskFull) => Self::Full,
            Some(Code::DatabaseBusy | Code::DatabaseLocked) => Self::Busy(error.to_string()),
            Some(Code::DatabaseCorrupt | Code::NotADatabase) => Self::Corrupt(error.to_string()),
            _ => Self::Failed(error.to_string()),
        }
    }
}

impl From<std::io::Error> for WriteError {
    fn from(error: std::io::Error) -> Self {
        if is_disk_full(&error) { Self::Full } else { Self::Failed(error.kind().to_string()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_and_io_failures_map_to_their_kinds() {
        let full =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
        assert_eq!(WriteError::from(full), WriteError::Full);
        let busy =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(matches!(WriteError::from(busy), WriteError::Busy(_)));
        let corrupt =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), None);
        assert!(matches!(WriteError::from(corrupt), WriteError::Corrupt(_)));
        assert_eq!(WriteError::from(std::io::Error::from_raw_os_error(libc::ENOSPC)), WriteError::Full);
        assert!(matches!(
            WriteError::from(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
            WriteError::Failed(_)
        ));
    }
}
