//! The settings that name files to read (TLS certificates and keys, the MQTT password, the API
//! token), read once at start so that a missing or unreadable file stops Rocky with its path
//! and the reason before anything connects.

use std::path::PathBuf;

use super::Config;
use super::model::Invalid;
use crate::mqtt::{BrokerConnection, Scheme, Secret, SecretError, TlsFiles, TlsSetupError, client_config};

/// The environment variable that holds the MQTT password (instead of `mqtt.password_file`).
pub const MQTT_PASSWORD_ENV: &str = "ROCKY_MQTT_PASSWORD";
/// The environment variable that holds the API token (instead of `http.token_file`).
pub const HTTP_TOKEN_ENV: &str = "ROCKY_HTTP_TOKEN";
/// The environment variable that holds the PostgreSQL password (instead of `store.password_file`).
pub const STORE_PASSWORD_ENV: &str = "ROCKY_STORE_PASSWORD";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{}: {}", .0.key, .0.reason)]
    Invalid(Invalid),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

fn path(value: &str) -> Option<PathBuf> {
    Some(value.trim()).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The broker connection with its secrets and TLS files read. `insecure_tls` is the
/// `--insecure-tls` flag: it has no config key on purpose, so it is never left on by accident.
pub fn broker_connection(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
    insecure_tls: bool,
) -> Result<BrokerConnection, SetupError> {
    let mut connection = config.runtime_config().map_err(SetupError::Invalid)?.connection;
    let mqtt = &config.mqtt;
    connection.password = Secret::resolve("mqtt.password_file", &mqtt.password_file, MQTT_PASSWORD_ENV, env)?;
    let files = TlsFiles {
        ca_file: path(&mqtt.ca_file),
        client_cert: path(&mqtt.client_cert),
        client_key: path(&mqtt.client_key),
        insecure: insecure_tls,
    };
    match connection.url.scheme {
        Scheme::Mqtts => {
            connection.tls = Some(client_config(&files)?);
            connection.insecure_tls = insecure_tls;
        }
        Scheme::Mqtt => {
            let tls_key = [
                ("mqtt.ca_file", &files.ca_file),
                ("mqtt.client_cert", &files.client_cert),
                ("mqtt.client_key", &files.client_key),
            ]
            .into_iter()
            .find_map(|(key, value)| value.as_ref().map(|_| key));
            if let Some(key) = tls_key {
                let reason =
                    format!("{key} is set, so mqtt.url must be an mqtts:// URL (it is {})", connection.url);
                return Err(SetupError::Invalid(Invalid { key: "mqtt.url", reason }));
            }
            if insecure_tls {
                let reason =
                    format!("--insecure-tls needs an mqtts:// broker URL (it is {})", connection.url);
                return Err(SetupError::Invalid(Invalid { key: "mqtt.url", reason }));
            }
        }
    }
    Ok(connection)
}

/// The API's bearer token, if one is configured.
pub fn http_token(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, SecretError> {
    Secret::resolve("http.token_file", &config.http.token_file, HTTP_TOKEN_ENV, env)
}

/// Where the PostgreSQL store is, with its password read; `None` when `store.url` is empty
/// (the SQLite store in the data directory).
pub fn postgres_settings(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::store::PgSettings>, SetupError> {
    let url = config.store.url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    let password = store_password(config, env)?;
    crate::store::PgSettings::parse(url, password.as_ref())
        .map(Some)
        .map_err(|e| SetupError::Invalid(Invalid { key: "store.url", reason: e.to_string() }))
}

fn store_password(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, SecretError> {
    Secret::resolve("store.password_file", &config.store.password_file, STORE_PASSWORD_ENV, env)
}

/// `firmware.signing_key_file` described: where it is and the public key id, never the key.
fn signing_key(config: &Config) -> String {
    let path = &config.firmware.signing_key_file;
    if path.is_empty() {
        return "(not set)".to_owned();
    }
    match crate::signing::read_signing_key(std::path::Path::new(path)) {
        Ok(key) => format!("(set, from {path}; {} key {})", key.alg(), key.kid()),
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// `(set, from …)` or `(not set)` for each secret, as `rocky config` shows them.
pub fn describe_secrets(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    let show = |secret: Result<Option<Secret>, SecretError>| match secret {
        Ok(Some(secret)) => secret.to_string(),
        Ok(None) => "(not set)".to_owned(),
        Err(e) => format!("(unreadable: {e})"),
    };
    let mut shown = vec![
        (
            "mqtt password",
            show(Secret::resolve("mqtt.password_file", &config.mqtt.password_file, MQTT_PASSWORD_ENV, &env)),
        ),
        ("http token", show(http_token(config, &env))),
        ("store password", show(store_password(config, &env))),
        ("signing key", signing_key(config)),
    ];
    for receiver in &config.notify {
        let path = std::path::Path::new(&receiver.secret_file);
        shown.push(("notification secret", show(Secret::from_file("notify.secret_file", path).map(Some))));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_need_an_mqtts_url_and_files_must_exist() {
        let mut config = Config::default();
        config.mqtt.ca_file = "/nonexistent/ca.pem".into();
        let err = broker_connection(&config, |_| None, false).unwrap_err().to_string();
        assert!(err.contains("mqtts://"), "{err}");
        config.mqtt.url = "mqtts://127.0.0.1".into();
        let err = broker_connection(&config, |_| None, false).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let mut plain = Config::default();
        let err = broker_connection(&plain, |_| None, true).unwrap_err().to_string();
        assert!(err.contains("--insecure-tls"), "{err}");
        plain.mqtt.password_file = "/nonexistent/pw".into();
        let err = broker_connection(&plain, |_| None, false).unwrap_err().to_string();
        assert!(err.contains("mqtt.password_file") && err.contains("/nonexistent/pw"), "{err}");
    }

    #[test]
    fn secrets_are_described_not_shown() {
        let config = Config::default();
        let env = |var: &str| (var == MQTT_PASSWORD_ENV).then(|| "hunter2".to_owned());
        let shown = describe_secrets(&config, env);
        assert_eq!(shown[0].1, "(set, from ROCKY_MQTT_PASSWORD)");
        assert_eq!(shown[1].1, "(not set)");
        let connection = broker_connection(&config, env, false).unwrap();
        assert_eq!(connection.password.unwrap().expose(), "hunter2");
        assert!(connection.client_id.starts_with("rocky-"), "an empty client id means a unique one");
    }
}
