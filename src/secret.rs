//! Passwords and tokens: read from a file or an environment variable, never from a flag (flags
//! show up in `ps`), and never printed: `Debug` and `Display` say where the value came from.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret came from; safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOrigin {
    File(PathBuf),
    Env(&'static str),
}

impl fmt::Display for SecretOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "from {}", path.display()),
            Self::Env(var) => write!(f, "from {var}"),
        }
    }
}

/// A secret value. Only [`Secret::expose`] hands out the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: SecretOrigin,
}

/// Why a secret could not be read; names the file or variable, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {key} file {path}: {reason}")]
    Unreadable { key: &'static str, path: PathBuf, reason: String },
    #[error("{key} file {path} is empty")]
    EmptyFile { key: &'static str, path: PathBuf },
    #[error("{var} is set but empty")]
    EmptyEnv { var: &'static str },
}

/// What to say when a secret file can be read by users other than its owner (group or
/// others have read permission), as `ssh` says of a private key; `None` when it cannot.
pub fn loose_permissions(key: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "{key} file {} can be read by other users (mode {:o}): anyone on this machine may read the secret; \
             chmod 600 it",
            path.display(),
            mode & 0o777
        )
    })
}

/// Secret files are small; anything bigger is a wrong path, not a password.
const MAX_SECRET_FILE: u64 = 64 * 1024;

impl Secret {
    /// Reads a secret file; one trailing newline (as editors and `echo` leave) is not part of it.
    pub fn from_file(key: &'static str, path: &Path) -> Result<Self, SecretError> {
        let unreadable = |reason: String| SecretError::Unreadable { key, path: path.to_owned(), reason };
        let bytes = crate::small_file::read_small_file(path, MAX_SECRET_FILE).map_err(unreadable)?;
        let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8 text".into()))?;
        let value = text.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&text);
        if value.is_empty() {
            return Err(SecretError::EmptyFile { key, path: path.to_owned() });
        }
        if let Some(warning) = loose_permissions(key, path) {
            tracing::warn!("{warning}");
        }
        Ok(Self { value: value.to_owned(), origin: SecretOrigin::File(path.to_owned()) })
    }

    /// A secret from the environment variable `var`, already read by the caller.
    pub fn from_env(var: &'static str, value: String) -> Result<Self, SecretError> {
        if value.is_empty() {
            return Err(SecretError::EmptyEnv { var });
        }
        Ok(Self { value, origin: SecretOrigin::Env(var) })
    }

    /// The environment variable wins over the file, as it does for every other setting.
    pub fn resolve(
        key: &'static str,
        file: &str,
        var: &'static str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SecretError> {
        if let Some(value) = env(var) {
            return Self::from_env(var, value).map(Some);
        }
        if file.trim().is_empty() {
            return Ok(None);
        }
        Self::from_file(key, Path::new(file)).map(Some)
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn origin(&self) -> &SecretOrigin {
        &self.origin
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(set, {})", self.origin)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(set, {})", self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_others_can_read_is_warned_of_without_its_content() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = loose_permissions("mqtt.password_file", &path).unwrap();
        assert!(
            warning.contains("mqtt.password_file")
                && warning.contains("644")
                && warning.contains("chmod 600")
        );
        assert!(!warning.contains("hunter2"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(loose_permissions("mqtt.password_file", &path), None);
    }

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret::from_env("ROCKY_MQTT_PASSWORD", "hunter2".into()).unwrap();
        assert_eq!(secret.expose(), "hunter2");
        for shown in [format!("{secret}"), format!("{secret:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("ROCKY_MQTT_PASSWORD"), "{shown}");
        }
    }

    #[test]
    fn files_lose_one_trailing_newline_and_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(Secret::from_file("mqtt.password_file", &path).unwrap().expose(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(Secret::from_file("k", &path), Err(SecretError::EmptyFile { .. })));
        let missing = dir.path().join("missing");
        let err = Secret::from_file("mqtt.password_file", &missing).unwrap_err().to_string();
        assert!(err.contains("mqtt.password_file") && err.contains("missing"), "{err}");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let env = |var: &str| (var == "ROCKY_MQTT_PASSWORD").then(|| "from-env".to_owned());
        let secret =
            Secret::resolve("mqtt.password_file", "/nonexistent", "ROCKY_MQTT_PASSWORD", env).unwrap();
        assert_eq!(secret.unwrap().expose(), "from-env");
        let none = Secret::resolve("mqtt.password_file", "", "ROCKY_MQTT_PASSWORD", |_| None).unwrap();
        assert!(none.is_none());
    }
}
