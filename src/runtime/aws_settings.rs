//! What a job for a device that runs AWS's OTA agent names besides its signature: where the
//! code-signing certificate is on the device and where it writes the image. `[aws_ota]` sets
//! them for every job; a job or a rollout may name its own (`"aws_ota"` in `POST /jobs` and
//! `POST /rollouts`), since fleets differ in where their certificate lives.

use serde::{Deserialize, Serialize};

/// The longest `certfile` or `filepath`: the whole job document must fit the agent's 5,626-byte
/// buffer.
pub const MAX_AWS_PATH_BYTES: usize = 1024;

/// The settings in force for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsOtaSettings {
    /// Where the code-signing certificate is on the device; empty: jobs for AWS devices are
    /// refused, by name.
    pub cert_file: String,
    /// Where the device writes the image.
    pub file_path: String,
}

impl Default for AwsOtaSettings {
    fn default() -> Self {
        Self { cert_file: String::new(), file_path: "firmware.bin".into() }
    }
}

impl AwsOtaSettings {
    /// These settings with what `over` names instead.
    pub fn with(&self, over: Option<&AwsOtaOverride>) -> AwsOtaSettings {
        let Some(over) = over else { return self.clone() };
        AwsOtaSettings {
            cert_file: over.certfile.clone().unwrap_or_else(|| self.cert_file.clone()),
            file_path: over.filepath.clone().unwrap_or_else(|| self.file_path.clone()),
        }
    }
}

/// A job's or a rollout's own `certfile` or `filepath` (`"aws_ota": {"certfile": …}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsOtaOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filepath: Option<String>,
}

impl AwsOtaOverride {
    /// Refuses an empty, overlong or unprintable path, naming the field.
    pub fn check(&self) -> Result<(), String> {
        for (key, value) in [("aws_ota.certfile", &self.certfile), ("aws_ota.filepath", &self.filepath)] {
            if let Some(value) = value {
                check_path(key, value)?;
            }
        }
        Ok(())
    }
}

/// The rule for a path on the device, from a request or the config file: 1 to
/// [`MAX_AWS_PATH_BYTES`] printable bytes.
pub fn check_path(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{key} is empty: name a path on the device, or leave it out"));
    }
    if value.len() > MAX_AWS_PATH_BYTES || value.chars().any(crate::text::is_unprintable) {
        return Err(format!("{key} must be at most {MAX_AWS_PATH_BYTES} printable bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_only_what_it_names_and_bad_paths_are_refused_by_name() {
        let config = AwsOtaSettings { cert_file: "certs/a.crt".into(), file_path: "/ota/a.bin".into() };
        assert_eq!(config.with(None), config);
        let over = AwsOtaOverride { certfile: Some("certs/b.crt".into()), filepath: None };
        let both = config.with(Some(&over));
        assert_eq!((both.cert_file.as_str(), both.file_path.as_str()), ("certs/b.crt", "/ota/a.bin"));
        assert!(over.check().is_ok());
        let empty = AwsOtaOverride { filepath: Some(String::new()), ..Default::default() };
        assert!(empty.check().unwrap_err().contains("aws_ota.filepath is empty"));
        let long =
            AwsOtaOverride { certfile: Some("x".repeat(MAX_AWS_PATH_BYTES + 1)), ..Default::default() };
        assert!(long.check().unwrap_err().contains("aws_ota.certfile must be at most 1024"));
        let control = AwsOtaOverride { certfile: Some("a\nb".into()), ..Default::default() };
        assert!(control.check().is_err());
        let refused = serde_json::from_str::<AwsOtaOverride>(r#"{"cert": "x"}"#).unwrap_err().to_string();
        assert!(refused.contains("unknown field"), "{refused}");
    }
}
