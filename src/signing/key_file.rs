//! Private key files: PKCS#8 PEM, created with mode 0600 and never over an existing file. Errors
//! name the file and what is wrong, never a byte of its content.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "{path} is not a PKCS#8 PEM private key of Ed25519 or P-256 (make one with `rocky keys generate`; convert another P-256 key with `openssl pkcs8 -topk8 -nocrypt`)"
    )]
    NotAKey { path: PathBuf },
    #[error(
        "a key's text was given where the path of its file belongs: write the key to a file (mode 0600) and name the file"
    )]
    KeyTextGiven,
    #[error("{path} already exists; Rocky does not overwrite a key file")]
    Exists { path: PathBuf },
    #[error("cannot write the key file {path}: {reason}")]
    Unwritable { path: PathBuf, reason: String },
}

/// The most a key file may hold: a PEM key is a few hundred bytes.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// Whether text given as a key file's path is in fact key material (a PEM pasted where a path
/// belongs): such text is never read as a path, so no error can repeat it.
pub fn is_key_text(path: &str) -> bool {
    path.contains("PRIVATE KEY") || path.contains("-----") || path.contains('\n') || path.len() > 1024
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    if is_key_text(&path.to_string_lossy()) {
        return Err(KeyFileError::KeyTextGiven);
    }
    let unreadable = |reason: String| KeyFileError::Unreadable { path: path.to_path_buf(), reason };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(super::trusted::io_words(&e)))?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::NotAKey { path: path.to_path_buf() });
    }
    let text =
        zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| unreadable(super::trusted::io_words(&e)))?);
    let text = std::str::from_utf8(&text).map_err(|_| KeyFileError::NotAKey { path: path.to_path_buf() })?;
    SigningKey::from_pkcs8_pem(text).ok_or_else(|| KeyFileError::NotAKey { path: path.to_path_buf() })
}

/// Writes `key` to a new file readable by its owner only; an existing file is left as it is.
pub fn write_new_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyFileError> {
    let unwritable = |reason: String| KeyFileError::Unwritable { path: path.to_path_buf(), reason };
    let pem = key.to_pkcs8_pem().ok_or_else(|| unwritable("the key could not be encoded".into()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::Exists { path: path.to_path_buf() },
        // Creating a file, "not found" is about the directory it goes in.
        std::io::ErrorKind::NotFound => unwritable("its directory does not exist".into()),
        _ => unwritable(super::trusted::io_words(&e)),
    })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| unwritable(super::trusted::io_words(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Alg;

    #[test]
    fn a_key_file_is_owner_only_never_overwritten_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rocky.key");
        let key = SigningKey::generate(Alg::Ed25519).unwrap();
        write_new_signing_key(&path, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let before = std::fs::read(&path).unwrap();
        let other = SigningKey::generate(Alg::Es256).unwrap();
        assert!(matches!(write_new_signing_key(&path, &other), Err(KeyFileError::Exists { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(read_signing_key(&path).unwrap().kid(), key.kid());
    }

    #[test]
    fn a_file_that_is_not_a_key_is_named_and_its_content_is_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "hunter2-secret-words").unwrap();
        let error = read_signing_key(&path).unwrap_err().to_string();
        assert!(error.contains("notes.txt") && error.contains("PKCS#8"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let missing = read_signing_key(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.contains("nope") && missing.contains("no such file"), "{missing}");
        // Key text where the path belongs is refused without being repeated.
        let pem = SigningKey::generate(Alg::Ed25519).unwrap().to_pkcs8_pem().unwrap();
        let error = read_signing_key(Path::new(pem.as_str())).unwrap_err().to_string();
        assert!(!error.contains("BEGIN") && error.contains("key's text was given"), "{error}");
    }
}
