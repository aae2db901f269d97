//! The public keys Rocky accepts manifests from: `firmware.trusted_keys` (PEM, hex or files of
//! either, typically the offline signer's key) and the public half of `signing_key_file`.

use std::path::Path;

use super::{Kid, PublicKey, PublicKeyError};

/// One key and where it came from (shown when a manifest is attached or refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: PublicKey,
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedKeysError {
    #[error("trusted_keys[{index}]: {reason}")]
    Entry { index: usize, reason: String },
}

/// A trusted key file is a public key: small.
const MAX_PUBLIC_KEY_FILE_BYTES: u64 = 16 * 1024;

impl TrustedKeys {
    /// Reads each entry: PEM text, hex, or else the path of a file holding either (relative to
    /// `base`; the config passes the working directory).
    pub fn from_entries(entries: &[String], base: &Path) -> Result<Self, TrustedKeysError> {
        let mut keys = Self::default();
        for (index, entry) in entries.iter().enumerate() {
            let fail = |reason: String| TrustedKeysError::Entry { index, reason };
            let trimmed = entry.trim();
            let looks_inline = trimmed.starts_with("-----BEGIN")
                || (!trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_hexdigit()));
            let (key, source) = if looks_inline {
                let key = PublicKey::parse(trimmed).map_err(|e| fail(e.to_string()))?;
                (key, format!("trusted_keys[{index}]"))
            } else {
                let path = base.join(trimmed);
                // The entry is repeated only when it reads as a file name: a key's text pasted
                // wrongly (base64 of a private key, say) must not come back in an error.
                let named =
                    if looks_like_a_path(trimmed) { path.display().to_string() } else { "the entry".into() };
                let text = read_small(&path).map_err(|reason| {
                    fail(format!(
                        "{named}: {reason} (an entry is a public key in PEM, hex of 64, 66 or 130 digits, or a file of one)"
                    ))
                })?;
                let key =
                    PublicKey::parse(&text).map_err(|e: PublicKeyError| fail(format!("{named}: {e}")))?;
                (key, path.display().to_string())
            };
            keys.add(key, source);
        }
        Ok(keys)
    }

    /// Adds a key unless one with its id is already there.
    pub fn add(&mut self, key: PublicKey, source: String) {
        if self.get(&key.kid()).is_none() {
            self.keys.push(TrustedKey { key, source });
        }
    }

    pub fn get(&self, kid: &Kid) -> Option<&TrustedKey> {
        self.keys.iter().find(|trusted| trusted.key.kid() == *kid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TrustedKey> {
        self.keys.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// A file name as people write one: short, with an extension or a directory, no spaces, and
/// none of base64's `+` and `=`, no PEM armour.
fn looks_like_a_path(entry: &str) -> bool {
    entry.len() <= 255
        && (entry.contains('/')
            || entry.rsplit_once('.').is_some_and(|(_, ext)| (1..=5).contains(&ext.len())))
        && !entry.contains(['+', '=', ' ', '\n', '-'])
}

/// An I/O error as people say it ("no such file", not "entity not found").
pub(super) fn io_words(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::IsADirectory => "a directory, not a file".to_owned(),
        _ => error.to_string(),
    }
}

fn read_small(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| io_words(&e))?;
    if meta.len() > MAX_PUBLIC_KEY_FILE_BYTES {
        return Err(format!("{} bytes is too large for a public key", meta.len()));
    }
    std::fs::read_to_string(path).map_err(|e| io_words(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{Alg, SigningKey};

    #[test]
    fn entries_are_pem_hex_or_files_and_a_bad_one_is_named_by_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let a = SigningKey::generate(Alg::Ed25519).unwrap().public();
        let b = SigningKey::generate(Alg::Es256).unwrap().public();
        let c = SigningKey::generate(Alg::Ed25519).unwrap().public();
        std::fs::write(dir.path().join("c.pub"), c.pem()).unwrap();
        let keys =
            TrustedKeys::from_entries(&[a.pem(), b.hex(), "c.pub".into(), a.hex()], dir.path()).unwrap();
        assert_eq!(keys.len(), 3, "the same key twice is kept once");
        assert!(keys.get(&b.kid()).is_some());
        assert!(keys.get(&c.kid()).unwrap().source.ends_with("c.pub"));
        let error = TrustedKeys::from_entries(&[a.hex(), "missing.pub".into()], dir.path()).unwrap_err();
        assert!(
            error.to_string().starts_with("trusted_keys[1]: ") && error.to_string().contains("missing.pub")
        );
        let private = SigningKey::generate(Alg::Ed25519).unwrap().to_pkcs8_pem().unwrap().to_string();
        let error = TrustedKeys::from_entries(&[private], dir.path()).unwrap_err().to_string();
        assert!(error.contains("private key") && !error.contains("BEGIN"), "{error}");
        // A private key's base64 body pasted without its PEM lines is not taken for a file name
        // and not repeated.
        let body = "MFECAQEwBQYDK2VwBCIEIBpSnqP0aGQKDc/7NHHVG9QuXR6Qay+MgY=";
        let error = TrustedKeys::from_entries(&[body.into()], dir.path()).unwrap_err().to_string();
        assert!(!error.contains("MFEC") && error.contains("the entry: no such file"), "{error}");
    }
}
