//! Everything needed to open a connection to the broker, resolved once at start: the URL, the
//! client id, credentials, TLS and the protocol version. Rocky's own connection and the simulated
//! devices build their rumqttc options from this one shape.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{NetworkOptions, TlsConfiguration, Transport};

use super::{BrokerUrl, Secret};

/// Which MQTT version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttVersion {
    /// MQTT 5, and 3.1.1 for a broker that closes the door on a version 5 CONNECT.
    #[default]
    Auto,
    /// MQTT 5 only.
    V5,
    /// MQTT 3.1.1 only.
    V311,
}

impl MqttVersion {
    /// Reads the `mqtt.version` setting: `auto`, `5` or `4` (3.1.1's protocol level).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "auto" => Ok(Self::Auto),
            "5" | "5.0" => Ok(Self::V5),
            "4" | "3.1.1" => Ok(Self::V311),
            other => Err(format!("{other:?} is not a known MQTT version: use 5, 4 (for 3.1.1) or auto")),
        }
    }
}

/// Written as `"auto"`, `5` or `4`, the way people write it in `rocky.toml`.
impl serde::Serialize for MqttVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::V5 => serializer.serialize_i64(5),
            Self::V311 => serializer.serialize_i64(4),
        }
    }
}

/// Accepts `5`, `4`, `"5"`, `"4"`, `"3.1.1"` and `"auto"` (numbers come from the file, text from
/// `ROCKY_MQTT_VERSION`).
impl<'de> serde::Deserialize<'de> for MqttVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MqttVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("5, 4 (for MQTT 3.1.1) or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MqttVersion, E> {
                MqttVersion::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MqttVersion, E> {
                MqttVersion::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MqttVersion, E> {
                MqttVersion::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The protocol a session actually speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V311,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Self::V5 => "MQTT 5",
            Self::V311 => "MQTT 3.1.1",
        }
    }
}

/// Largest packet the broker may send to Rocky's own connection under MQTT 5. Rocky receives
/// only device responses (a few dozen bytes, a reason text at most), so 64 KiB is generous; the
/// broker drops bigger messages for Rocky instead of delivering them.
pub const MAX_INCOMING_V5: u32 = 64 * 1024;

/// Largest MQTT packet sent (a 256 KiB chunk plus topic and header, with room), and the largest
/// received under 3.1.1, which has no way to ask the broker to hold bigger ones back.
pub const MAX_PACKET_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct BrokerConnection {
    pub url: BrokerUrl,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The TLS configuration, present exactly when the URL asks for TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// True when the broker's certificate is not verified (`--insecure-tls`).
    pub insecure_tls: bool,
    pub version: MqttVersion,
    pub keep_alive: Duration,
}

impl std::fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("tls", &self.tls.is_some())
            .field("insecure_tls", &self.insecure_tls)
            .field("version", &self.version)
            .finish()
    }
}

impl BrokerConnection {
    /// A plain connection with no credentials and a unique client id: the embedded broker, tests.
    pub fn plain(url: BrokerUrl) -> Self {
        Self {
            url,
            client_id: unique_client_id(),
            username: None,
            password: None,
            tls: None,
            insecure_tls: false,
            version: MqttVersion::Auto,
            keep_alive: Duration::from_secs(10),
        }
    }

    fn transport(&self) -> Transport {
        match &self.tls {
            Some(config) => Transport::Tls(TlsConfiguration::Rustls(config.clone())),
            None => Transport::Tcp,
        }
    }

    fn network(&self) -> NetworkOptions {
        let mut network = NetworkOptions::new();
        // Small commands must not wait ~40 ms for Nagle's algorithm to batch them.
        network.set_tcp_nodelay(true);
        network.set_connection_timeout(5);
        network
    }

    fn credentials(&self) -> Option<(String, String)> {
        match (&self.username, &self.password) {
            (None, None) => None,
            (user, password) => Some((
                user.clone().unwrap_or_default(),
                password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default(),
            )),
        }
    }

    /// MQTT 3.1.1 options with a clean session, for `client_id`.
    pub fn v311_options(&self, client_id: &str) -> (rumqttc::MqttOptions, NetworkOptions) {
        let mut options = rumqttc::MqttOptions::new(client_id, &self.url.host, self.url.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_transport(self.transport());
        if let Some((user, password)) = self.credentials() {
            options.set_credentials(user, password);
        }
        (options, self.network())
    }

    /// MQTT 5 options with a clean start, for `client_id`, that ask the broker to send nothing
    /// larger than `max_incoming` bytes.
    pub fn v5_options(&self, client_id: &str, max_incoming: u32) -> rumqttc::v5::MqttOptions {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, &self.url.host, self.url.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_start(true)
            .set_max_packet_size(Some(max_incoming))
            .set_transport(self.transport())
            .set_network_options(self.network());
        if let Some((user, password)) = self.credentials() {
            options.set_credentials(user, password);
        }
        options
    }
}

/// `rocky-<host>-<6 hex digits>`: unique per process, at most 23 characters (the length every
/// 3.1.1 broker must accept), so a console and a `serve` on one broker never take each other's
/// session.
pub fn unique_client_id() -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(10)
        .collect();
    let host = if host.is_empty() { "host".to_owned() } else { host };
    format!("rocky-{host}-{:06x}", crate::random::random_u64() & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_unique_and_short() {
        let a = unique_client_id();
        let b = unique_client_id();
        assert_ne!(a, b);
        assert!(a.starts_with("rocky-") && a.len() <= 23, "{a}");
    }

    #[test]
    fn versions_parse_from_their_usual_names() {
        assert_eq!(MqttVersion::parse("5"), Ok(MqttVersion::V5));
        assert_eq!(MqttVersion::parse("4"), Ok(MqttVersion::V311));
        assert_eq!(MqttVersion::parse("3.1.1"), Ok(MqttVersion::V311));
        assert_eq!(MqttVersion::parse("auto"), Ok(MqttVersion::Auto));
        assert!(MqttVersion::parse("3").unwrap_err().contains("use 5, 4"));
    }

    #[test]
    fn debug_output_keeps_the_password_out() {
        let mut connection = BrokerConnection::plain(BrokerUrl::local(1883));
        connection.password = Some(Secret::from_env("ROCKY_MQTT_PASSWORD", "hunter2".into()).unwrap());
        let shown = format!("{connection:?}");
        assert!(!shown.contains("hunter2") && shown.contains("ROCKY_MQTT_PASSWORD"), "{shown}");
    }
}
