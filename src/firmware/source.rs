//! Where an image comes from when a job names it: a URL, a path, or the hash of an image Rocky
//! already holds. Shared by the HTTP API, the console form and the CLI.

use std::path::{Path, PathBuf};

use super::{FirmwareError, Image, Library, LoadLimits, load_file, load_url};
use crate::protocol::Sha256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareSource {
    Url(String),
    Path(PathBuf),
    Sha256(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Load(#[from] FirmwareError),
    #[error("{0} is outside the firmware directory")]
    OutsideDir(String),
    #[error("{0:?} is not an image file (it is a directory or a special file)")]
    NotAFile(String),
    #[error("firmware {0} not found")]
    NotFound(String),
    /// The image store holds the image but it could not be read back intact.
    #[error("{0}")]
    Unreadable(String),
    #[error("{0:?} is not a SHA-256 (64 hex digits)")]
    BadSha256(String),
}

/// Parses 64 hex digits (either case) into a digest.
pub fn parse_sha256(text: &str) -> Result<Sha256, ResolveError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| ResolveError::BadSha256(text.to_owned()))?;
    Ok(out)
}

/// Loads (or finds) the image and interns it, so each distinct image is held once.
///
/// With `confine_to`, a path must resolve (after `..` and symlinks) inside that directory;
/// relative paths are taken from there. That is how remote clients are kept out of the rest of
/// the file system. Without it (the operator at the console) any readable path is fine.
pub async fn resolve(
    source: &FirmwareSource,
    library: &Library,
    confine_to: Option<&Path>,
    limits: &LoadLimits,
) -> Result<Image, ResolveError> {
    let image = match source {
        FirmwareSource::Url(url) => load_url(url, limits).await?,
        FirmwareSource::Sha256(text) => {
            let sha = parse_sha256(text)?;
            return match library.find(&sha).await {
                Ok(Some(image)) => Ok(image),
                Ok(None) => Err(ResolveError::NotFound(format!("with sha256 {text}"))),
                Err(reason) => Err(ResolveError::Unreadable(reason)),
            };
        }
        FirmwareSource::Path(path) => match confine_to {
            Some(dir) => {
                let (dir, path, limits) = (dir.to_path_buf(), path.clone(), limits.clone());
                tokio::task::spawn_blocking(move || super::confined::load_confined(&dir, &path, &limits))
                    .await
                    .map_err(|e| FirmwareError::Read {
                        path: "the image".into(),
                        source: std::io::Error::other(e),
                    })??
            }
            None => load_file(path, limits).await?,
        },
    };
    Ok(library.intern(image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paths_are_confined_to_the_firmware_dir() {
        let root = tempfile::tempdir().unwrap();
        let fw = root.path().join("fw");
        std::fs::create_dir(&fw).unwrap();
        std::fs::write(fw.join("a.bin"), b"image").unwrap();
        std::fs::write(root.path().join("secret"), b"secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.path().join("secret"), fw.join("link.bin")).unwrap();
        let lib = Library::new();
        let limits = LoadLimits::default();
        let ok = resolve(&FirmwareSource::Path("a.bin".into()), &lib, Some(&fw), &limits).await.unwrap();
        assert_eq!(ok.size(), 5);
        for escape in ["../secret", "link.bin"] {
            let err =
                resolve(&FirmwareSource::Path(escape.into()), &lib, Some(&fw), &limits).await.unwrap_err();
            assert!(matches!(err, ResolveError::OutsideDir(_)), "{escape}: {err}");
        }
        let abs = root.path().join("secret");
        assert!(matches!(
            resolve(&FirmwareSource::Path(abs.clone()), &lib, Some(&fw), &limits).await,
            Err(ResolveError::OutsideDir(_))
        ));
        // Unconfined (the console), the same file loads.
        assert!(resolve(&FirmwareSource::Path(abs), &lib, None, &limits).await.is_ok());
        assert!(matches!(
            resolve(&FirmwareSource::Path("missing.bin".into()), &lib, Some(&fw), &limits).await,
            Err(ResolveError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn images_are_found_by_hash_once_loaded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hw.bin"), b"Hello, world!").unwrap();
        let lib = Library::new();
        let limits = LoadLimits::default();
        let sha = "315f5bdb76d078c43b8ac0064e4a0164612b1fce77c869345bfc94c75894edd3";
        let by_hash = FirmwareSource::Sha256(sha.into());
        assert!(matches!(resolve(&by_hash, &lib, None, &limits).await, Err(ResolveError::NotFound(_))));
        resolve(&FirmwareSource::Path(dir.path().join("hw.bin")), &lib, None, &limits).await.unwrap();
        assert_eq!(resolve(&by_hash, &lib, None, &limits).await.unwrap().size(), 13);
        let upper = FirmwareSource::Sha256(sha.to_uppercase());
        assert!(resolve(&upper, &lib, None, &limits).await.is_ok());
        let bad = FirmwareSource::Sha256("xyz".into());
        assert!(matches!(resolve(&bad, &lib, None, &limits).await, Err(ResolveError::BadSha256(_))));
    }
}
