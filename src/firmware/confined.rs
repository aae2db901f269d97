//! Opening a firmware file that a remote client named, so that nothing outside the firmware
//! directory can be read or even probed.
//!
//! - A path that names somewhere else by its text (absolute elsewhere, or with `..`) is refused
//!   before the file system is touched, so "exists" and "does not exist" answer alike.
//! - The file is opened first and what was opened is checked: its real path (from
//!   `/proc/self/fd`) must lie inside the directory. A symlink swapped in between a check and an
//!   open cannot win, because there is no separate check: the bytes come from the very handle
//!   that was checked.
//! - Errors name the path as the client wrote it, never a server path.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use super::{FirmwareError, Image, LoadLimits, ResolveError};

/// The client's path as a relative path inside `base`, or `OutsideDir` from its text alone.
fn relative_inside(base: &Path, dir: &Path, requested: &Path, shown: &str) -> Result<PathBuf, ResolveError> {
    let outside = || ResolveError::OutsideDir(shown.to_owned());
    let relative = if requested.is_absolute() {
        requested
            .strip_prefix(base)
            .or_else(|_| requested.strip_prefix(dir))
            .map_err(|_| outside())?
            .to_path_buf()
    } else {
        requested.to_path_buf()
    };
    let mut clean = PathBuf::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(ResolveError::NotAFile(shown.to_owned()));
    }
    Ok(clean)
}

/// Opens for reading without blocking: a FIFO or device named by a client must not hold a
/// thread waiting for a writer (it is then refused as not a regular file).
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Where an open file really is.
fn real_path(file: &std::fs::File, fallback: &Path) -> std::io::Result<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let _ = fallback;
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        fallback.canonicalize()
    }
}

/// Reads the image `requested` names inside `dir` (blocking: call from `spawn_blocking`).
pub fn load_confined(dir: &Path, requested: &Path, limits: &LoadLimits) -> Result<Image, ResolveError> {
    let shown = requested.display().to_string();
    let base = dir.canonicalize().map_err(|e| FirmwareError::Read {
        path: "the firmware directory".into(),
        source: std::io::Error::new(e.kind(), "it cannot be opened"),
    })?;
    let relative = relative_inside(&base, dir, requested, &shown)?;
    let candidate = base.join(&relative);
    let read_err = |source: std::io::Error| FirmwareError::Read { path: shown.clone(), source };
    let mut file = match open_nonblocking(&candidate) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ResolveError::NotFound(shown)),
        Err(e) => return Err(read_err(e).into()),
    };
    let real = real_path(&file, &candidate).map_err(read_err)?;
    if !real.starts_with(&base) {
        return Err(ResolveError::OutsideDir(shown));
    }
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(ResolveError::NotAFile(shown));
    }
    if meta.len() > limits.max_bytes {
        return Err(FirmwareError::TooLarge { what: shown, size: meta.len(), limit: limits.max_bytes }.into());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the size check; never read past the limit.
    file.by_ref().take(limits.max_bytes + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > limits.max_bytes {
        return Err(FirmwareError::TooLarge {
            what: shown,
            size: bytes.len() as u64,
            limit: limits.max_bytes,
        }
        .into());
    }
    if bytes.is_empty() {
        return Err(FirmwareError::Empty(shown).into());
    }
    let name = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(shown);
    Ok(Image::new(name, Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoadLimits {
        LoadLimits::default()
    }

    #[test]
    fn outside_paths_answer_alike_whether_they_exist_or_not() {
        let root = tempfile::tempdir().unwrap();
        let fw = root.path().join("fw");
        std::fs::create_dir(&fw).unwrap();
        std::fs::write(root.path().join("exists"), b"secret").unwrap();
        for outside in [root.path().join("exists"), root.path().join("missing"), "/etc/shadow".into()] {
            let err = load_confined(&fw, &outside, &limits()).unwrap_err();
            assert!(matches!(err, ResolveError::OutsideDir(_)), "{}: {err}", outside.display());
        }
        for outside in ["../exists", "../missing", "a/../../exists"] {
            let err = load_confined(&fw, Path::new(outside), &limits()).unwrap_err();
            assert!(matches!(err, ResolveError::OutsideDir(_)), "{outside}: {err}");
        }
    }

    #[test]
    fn a_directory_is_not_an_image_and_no_server_path_is_shown() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        for path in [".", "sub", "./"] {
            let err = load_confined(root.path(), Path::new(path), &limits()).unwrap_err();
            assert!(matches!(err, ResolveError::NotAFile(_)), "{path}: {err}");
            let text = err.to_string();
            assert!(!text.contains(&root.path().display().to_string()), "{text}");
        }
        std::fs::write(root.path().join("fw.bin"), b"image").unwrap();
        let inside = root.path().join("fw.bin");
        assert_eq!(
            load_confined(root.path(), &inside, &limits()).unwrap().size(),
            5,
            "absolute inside is fine"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let root = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mkfifo").arg(root.path().join("pipe.bin")).status();
        if !status.is_ok_and(|s| s.success()) {
            return; // no mkfifo here: nothing to check
        }
        let err = load_confined(root.path(), Path::new("pipe.bin"), &limits()).unwrap_err();
        assert!(matches!(err, ResolveError::NotAFile(_)), "{err}");
    }

    #[test]
    fn a_symlink_swapped_during_the_load_never_yields_a_file_outside() {
        let root = tempfile::tempdir().unwrap();
        let fw = root.path().join("fw");
        std::fs::create_dir(&fw).unwrap();
        std::fs::write(fw.join("good.bin"), b"inside").unwrap();
        std::fs::write(root.path().join("secret"), b"OUTSIDE").unwrap();
        let link = fw.join("swap.bin");
        std::os::unix::fs::symlink(fw.join("good.bin"), &link).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (stop, link, fw, root) = (stop.clone(), link.clone(), fw.clone(), root.path().to_path_buf());
            std::thread::spawn(move || {
                let mut outside = false;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let target = if outside { root.join("secret") } else { fw.join("good.bin") };
                    let tmp = fw.join("swap.tmp");
                    let _ = std::fs::remove_file(&tmp);
                    let _ = std::os::unix::fs::symlink(&target, &tmp);
                    let _ = std::fs::rename(&tmp, &link);
                    outside = !outside;
                }
            })
        };
        let mut loaded_inside = 0;
        for _ in 0..1500 {
            match load_confined(&fw, Path::new("swap.bin"), &limits()) {
                Ok(image) => {
                    assert_eq!(&image.bytes()[..], b"inside", "a file outside was read");
                    loaded_inside += 1;
                }
                Err(e) => {
                    assert!(matches!(e, ResolveError::OutsideDir(_) | ResolveError::NotFound(_)), "{e}")
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(loaded_inside > 0, "the inside file was loaded at least sometimes");
    }
}
