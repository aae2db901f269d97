//! The highest job id ever handed out, kept in a small file beside the database (`rocky.ids`)
//! and synced before the ids are given to anyone. The database's own counter lives in its
//! write-ahead log like everything else, so a damaged or lost WAL would roll it back and ids
//! would be given twice; this file cannot roll back with it.

use std::path::{Path, PathBuf};

use crate::firmware::write_atomically;
use crate::store::StoreError;

pub const IDS_FILE: &str = "rocky.ids";

pub struct HighWater {
    path: PathBuf,
    value: i64,
}

impl HighWater {
    /// Reads the file (0 when there is none yet); a damaged one is an error with its path.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(IDS_FILE);
        let value = match std::fs::read_to_string(&path) {
            Ok(text) => {
                text.trim().parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| StoreError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("not a job id (remove it only if the database is intact)"),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        Ok(Self { path, value })
    }

    pub fn get(&self) -> i64 {
        self.value
    }

    /// Records that ids up to `to` are about to be handed out (synced before it returns).
    pub fn raise(&mut self, to: i64) -> std::io::Result<()> {
        if to > self.value {
            write_atomically(&self.path, to.to_string().as_bytes())?;
            self.value = to;
        }
        Ok(())
    }
}
