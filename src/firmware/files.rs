//! Writing image files so that no reader ever sees half of one, and nothing half-written is
//! left behind when writing fails.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

/// Writes `bytes` to a hidden file beside `path`, then renames it into place (atomic on one
/// file system). Creates the directory if needed; on failure the hidden file is removed.
/// A file name as `POST /firmware?name=` accepts it (letters, digits, `.`, `-`, `_`; not
/// hidden; at most 200 characters): what a client uploads a local file under.
pub fn upload_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .take(200)
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "image.bin".to_owned(),
        rest => rest.to_owned(),
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("a file path needs a directory"))?;
    let name = path.file_name().ok_or_else(|| io::Error::other("a file path needs a name"))?;
    std::fs::create_dir_all(dir)?;
    let partial = dir.join(format!(".{}.{}.partial", name.to_string_lossy(), unique()));
    let written = std::fs::File::create(&partial).and_then(|mut file| {
        io::Write::write_all(&mut file, bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&partial, path)) {
        // The rename itself is made durable by syncing the directory.
        Ok(()) => std::fs::File::open(dir).and_then(|d| d.sync_all()).or(Ok(())),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Removes partial files an earlier process left behind (a crash mid-upload); returns how many.
pub fn remove_partials(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with('.') && name.ends_with(".partial")
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Retention for the firmware directory: removes the files last written before `cutoff` that
/// no kept job names (`needed`, by file name); hidden and partial files are left alone.
/// Returns the names removed.
pub fn remove_stale_uploads(
    dir: &Path,
    cutoff: std::time::SystemTime,
    needed: &std::collections::HashSet<String>,
) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        let stale = meta.modified().is_ok_and(|at| at < cutoff);
        if meta.is_file()
            && stale
            && !name.starts_with('.')
            && !needed.contains(&name)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed.push(name);
        }
    }
    removed
}

/// A number no other partial file of this process has, mixed with the process id.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A file being written in pieces beside where it will live. It is removed when dropped unless
/// [`PartialFile::commit`] moved it into place, so a failed or abandoned upload leaves nothing.
pub struct PartialFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl PartialFile {
    /// A new hidden file in `dir`.
    pub async fn create(dir: &Path) -> io::Result<Self> {
        tokio::fs::create_dir_all(dir).await?;
        let path = dir.join(format!(".upload.{}.partial", unique()));
        // create_new: never open something already there (a planted symlink, say).
        let file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).await?;
        Ok(Self { path, file: Some(file) })
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.write_all(bytes).await,
            None => Err(io::Error::other("the file was already committed")),
        }
    }

    /// Flushes to disk, renames the file to `target` and returns its bytes, read back through
    /// the same handle (never by path: what lies at `target` could change meanwhile).
    pub async fn commit(mut self, target: &Path) -> io::Result<bytes::Bytes> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = self.file.take().ok_or_else(|| io::Error::other("the file was already committed"))?;
        // tokio writes in the background: flush reports a failed last write (a full disk),
        // which sync_all alone would not.
        file.flush().await?;
        file.sync_all().await?;
        file.seek(io::SeekFrom::Start(0)).await?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).await?;
        tokio::fs::rename(&self.path, target).await?;
        Ok(bytes::Bytes::from(bytes))
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        // Removed on every path but a successful commit (which renamed it away already).
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_what_the_api_accepts() {
        assert_eq!(upload_name("fw 2.1 (final).bin"), "fw_2.1__final_.bin");
        assert_eq!(upload_name(".hidden"), "hidden");
        assert_eq!(upload_name("ü"), "_");
        assert_eq!(upload_name(""), "image.bin");
    }

    #[test]
    fn stale_uploads_no_job_names_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["old.bin", "needed.bin", ".x.partial"] {
            std::fs::write(dir.path().join(name), b"image").unwrap();
        }
        let needed = std::collections::HashSet::from(["needed.bin".to_owned()]);
        let before = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert!(remove_stale_uploads(dir.path(), before, &needed).is_empty(), "nothing is old enough yet");
        let after = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(remove_stale_uploads(dir.path(), after, &needed), vec!["old.bin".to_owned()]);
        assert!(dir.path().join("needed.bin").exists() && dir.path().join(".x.partial").exists());
    }

    fn names(dir: &Path) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect()
    }

    #[test]
    fn writes_into_a_new_directory_and_leaves_no_partial_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("nested/fw.bin");
        write_atomically(&path, b"image").unwrap();
        write_atomically(&path, b"image 2").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"image 2");
        assert_eq!(names(&root.path().join("nested")), vec![std::ffi::OsString::from("fw.bin")]);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        // Renaming onto a directory fails after the bytes were written.
        std::fs::create_dir(root.path().join("fw.bin")).unwrap();
        std::fs::write(root.path().join("fw.bin/keep"), b"x").unwrap();
        assert!(write_atomically(&root.path().join("fw.bin"), b"image").is_err());
        assert_eq!(names(root.path()), vec![std::ffi::OsString::from("fw.bin")]);
    }

    #[test]
    fn partial_files_left_by_a_crash_are_swept() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(".upload.1-0.partial"), b"half").unwrap();
        std::fs::write(root.path().join("fw.bin"), b"whole").unwrap();
        assert_eq!(remove_partials(root.path()), 1);
        assert_eq!(names(root.path()), vec![std::ffi::OsString::from("fw.bin")]);
    }

    #[tokio::test]
    async fn a_partial_file_is_removed_unless_committed() {
        let root = tempfile::tempdir().unwrap();
        let mut abandoned = PartialFile::create(root.path()).await.unwrap();
        abandoned.write(b"half").await.unwrap();
        drop(abandoned);
        assert!(names(root.path()).is_empty());
        let mut kept = PartialFile::create(root.path()).await.unwrap();
        kept.write(b"whole").await.unwrap();
        kept.commit(&root.path().join("fw.bin")).await.unwrap();
        assert_eq!(names(root.path()), vec![std::ffi::OsString::from("fw.bin")]);
    }
}
