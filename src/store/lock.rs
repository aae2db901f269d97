//! One Rocky per data directory: an exclusive advisory lock on `rocky.lock`, released by the OS
//! when the process ends, however it ends (so a crash never leaves a stale lock behind).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another Rocky is using the data directory {dir} (it holds {lock}); stop it or pass another --data-dir"
    )]
    Held { dir: PathBuf, lock: PathBuf },
    #[error("cannot lock {lock}: {source}")]
    Io { lock: PathBuf, source: std::io::Error },
}

#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let lock = dir.join("rocky.lock");
        let io = |source| LockError::Io { lock: lock.clone(), source };
        let mut file = OpenOptions::new().create(true).truncate(false).write(true).open(&lock).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::Held { dir: dir.to_path_buf(), lock });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // For people looking at the directory: who holds it.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(err.to_string().contains("another Rocky"), "{err}");
        drop(first);
        assert!(DataDirLock::acquire(dir.path()).is_ok());
    }
}
