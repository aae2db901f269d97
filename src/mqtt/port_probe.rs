//! Whether a broker port speaks TLS. A plain CONNECT sent to a TLS port, and a TLS handshake sent
//! to a plain MQTT port, both end with the broker closing the connection without a word, which
//! reads as "the broker closed the connection" (and, under `mqtt.version = auto`, as a broker
//! that does not speak MQTT 5). When that happens before the first CONNACK, Rocky asks the port
//! once more with a TLS ClientHello: a TLS server answers with a TLS record (a handshake or an
//! alert), an MQTT broker does not.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BrokerConnection;
use super::url::Scheme;

/// The bound on each step of the probe (connect, send, first answer).
const STEP: Duration = Duration::from_secs(2);

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSpeaks {
    Tls,
    /// It took the connection and answered a ClientHello with something else, or with nothing.
    NotTls,
    /// It could not be asked (refused, unreachable, no ClientHello could be made).
    Unknown,
}

/// The first two bytes of a TLS record of type handshake (22) or alert (21), any TLS version.
fn is_tls_record(head: &[u8]) -> bool {
    matches!(head, [0x15 | 0x16, 0x03, ..])
}

/// A ClientHello for `host` (a name it cannot be made for gets a placeholder: only the record
/// type of the answer matters).
fn client_hello(host: &str) -> Option<Vec<u8>> {
    let config = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .or_else(|_| rustls::pki_types::ServerName::try_from("broker.invalid"))
        .ok()?;
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).ok()?;
    Some(hello)
}

/// Asks the broker's port whether it speaks TLS.
pub async fn port_speaks(connection: &BrokerConnection) -> PortSpeaks {
    let url = &connection.url;
    let Some(hello) = client_hello(&url.host) else { return PortSpeaks::Unknown };
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(STEP, tokio::net::TcpStream::connect((url.host.as_str(), url.port))).await
    else {
        return PortSpeaks::Unknown;
    };
    if !matches!(tokio::time::timeout(STEP, stream.write_all(&hello)).await, Ok(Ok(()))) {
        return PortSpeaks::Unknown;
    }
    let mut head = [0u8; 2];
    match tokio::time::timeout(STEP, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) if is_tls_record(&head) => PortSpeaks::Tls,
        _ => PortSpeaks::NotTls,
    }
}

/// When `connection`'s URL and its port disagree about TLS, the failure that says so.
pub async fn tls_mismatch(connection: &BrokerConnection) -> Option<super::Failure> {
    let url = &connection.url;
    let at = super::failure::endpoint(connection);
    let reason = match (url.scheme, port_speaks(connection).await) {
        (Scheme::Mqtt, PortSpeaks::Tls) => format!(
            "the broker at {at} speaks TLS: use mqtts:// in mqtt.url (with mqtt.ca_file if its certificate \
             is not publicly trusted)"
        ),
        (Scheme::Mqtts, PortSpeaks::NotTls) => format!(
            "the broker at {at} does not speak TLS: use mqtt:// in mqtt.url, or the broker's TLS port \
             (often 8883)"
        ),
        _ => return None,
    };
    Some(super::Failure { kind: super::FailureKind::Tls, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_is_a_tls_handshake_record() {
        let hello = client_hello("localhost").unwrap();
        assert!(is_tls_record(&hello), "{:02x?}", &hello[..2]);
        assert!(client_hello("::1").is_some() && client_hello("not a name!").is_some());
    }

    #[test]
    fn mqtt_packets_are_not_tls_records() {
        // A CONNACK, a DISCONNECT, and nothing at all.
        for bytes in [&[0x20, 0x02][..], &[0xe0, 0x00], &[]] {
            assert!(!is_tls_record(bytes), "{bytes:02x?}");
        }
        assert!(is_tls_record(&[0x15, 0x03, 0x03, 0x00, 0x02]), "an alert");
    }
}
