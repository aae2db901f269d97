//! Why a broker connection failed, in words an operator can act on. rumqttc reports failures
//! as nested library errors ("I/O: connection closed by peer abruptly", "TLS: invalid peer
//! certificate: UnknownIssuer"); this turns each into one sentence that names the cause and the
//! setting to look at. No secret is ever part of one.

use std::io;

use rumqttc::TlsError;

use super::BrokerConnection;

/// What kind of failure; the messenger treats some specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// TCP, DNS or lost pings: worth retrying soon.
    Network,
    /// Connecting (TCP, TLS and the CONNECT) got no answer in time; a broker that takes the
    /// TCP connection and never answers a version 5 CONNECT (amqtt) looks like this.
    NoAnswer,
    /// The TLS handshake failed: certificates, names, client identity.
    Tls,
    /// The broker refused the CONNECT (credentials, authorisation, client id).
    Refused,
    /// Another client connected with the same client id and the broker handed it the session.
    TakenOver,
    /// The broker closed the connection without a word; before a CONNACK this is how a
    /// 3.1.1-only broker answers a version 5 CONNECT.
    Closed,
    /// The broker sent a packet larger than Rocky accepts.
    TooLarge,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
}

impl Failure {
    fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        Self { kind, reason: reason.into() }
    }
}

pub(super) fn endpoint(connection: &BrokerConnection) -> String {
    let url = &connection.url;
    if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    }
}

fn from_io(error: &io::Error, connection: &BrokerConnection) -> Failure {
    if let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return from_rustls(tls, connection);
    }
    let at = endpoint(connection);
    let text = error.to_string();
    match error.kind() {
        io::ErrorKind::ConnectionRefused => Failure::new(
            FailureKind::Network,
            format!("connection refused by {at}: no broker listens there (check mqtt.url)"),
        ),
        io::ErrorKind::TimedOut => {
            Failure::new(FailureKind::Network, format!("no answer from {at} within 5 s"))
        }
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            Failure::new(FailureKind::Closed, format!("the broker at {at} closed the connection"))
        }
        _ if text.contains("lookup address") || text.contains("not known") || text.contains("No address") => {
            Failure::new(
                FailureKind::Network,
                format!("cannot resolve the broker's host name {:?} (DNS)", connection.url.host),
            )
        }
        _ => Failure::new(FailureKind::Network, format!("cannot reach {at}: {text}")),
    }
}

fn from_rustls(error: &rustls::Error, connection: &BrokerConnection) -> Failure {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    let host = &connection.url.host;
    let text = match error {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => {
            "TLS: the broker's certificate is not signed by a trusted CA (check mqtt.ca_file)".to_owned()
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            format!(
                "TLS: the broker's certificate is not valid for {host:?}, the host in mqtt.url \
                 (connect by a name or address the certificate lists)"
            )
        }
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "TLS: the broker's certificate has expired".to_owned()
        }
        rustls::Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "TLS: the broker's certificate is not valid yet (is this machine's clock right?)".to_owned()
        }
        rustls::Error::InvalidCertificate(other) => {
            format!("TLS: the broker's certificate was refused: {other:?}")
        }
        rustls::Error::AlertReceived(Alert::CertificateRequired) => {
            "TLS: the broker requires a client certificate (set mqtt.client_cert and mqtt.client_key)"
                .to_owned()
        }
        rustls::Error::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied
            | Alert::DecryptError),
        ) => format!("TLS: the broker refused Rocky's client certificate ({alert:?})"),
        rustls::Error::AlertReceived(alert) => format!("TLS: the broker ended the handshake ({alert:?})"),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "TLS: the broker did not answer in TLS (is it a plain mqtt:// port?)".to_owned()
        }
        other => format!("TLS: {other}"),
    };
    Failure::new(FailureKind::Tls, text)
}

fn from_tls(error: &TlsError, connection: &BrokerConnection) -> Failure {
    match error {
        TlsError::Io(e) => from_io(e, connection),
        TlsError::TLS(e) => from_rustls(e, connection),
        TlsError::DNSName(_) => Failure::new(
            FailureKind::Tls,
            format!("TLS: {:?} is not a valid server name", connection.url.host),
        ),
        other => Failure::new(FailureKind::Tls, format!("TLS: {other}")),
    }
}

/// Which identity was refused. The user name stays out: reasons reach the unauthenticated
/// `/healthz`.
fn who(connection: &BrokerConnection) -> String {
    match &connection.username {
        Some(_) => format!("as the configured user, client id {:?}", connection.client_id),
        None => format!("without a user name, client id {:?}", connection.client_id),
    }
}

/// rumqttc prints the unexpected packet, and a CONNECT echoed back would carry Rocky's own
/// credentials: so this failure has fixed words and never the packet.
fn not_connack() -> Failure {
    Failure::new(
        FailureKind::Other,
        "the broker answered CONNECT with something other than a CONNACK (is it an MQTT broker?)",
    )
}

/// Mosquitto answers a wrong password with "not authorised", so both causes are named.
fn not_authorised(connection: &BrokerConnection) -> String {
    let hint = if connection.username.is_some() || connection.password.is_some() {
        "check the user name or password (mqtt.username, mqtt.password_file or ROCKY_MQTT_PASSWORD) \
         and the broker's rules for this client"
    } else {
        "it may need a user name and password (mqtt.username, mqtt.password_file or ROCKY_MQTT_PASSWORD)"
    };
    format!("the broker says Rocky is not authorised to connect ({}): {hint}", who(connection))
}

fn too_large(size: usize, limit: usize) -> Failure {
    Failure::new(
        FailureKind::TooLarge,
        format!(
            "the broker sent a {size}-byte message, over Rocky's limit of {limit} bytes; under MQTT 3.1.1 \
             the broker must hold such messages back (mosquitto: message_size_limit)"
        ),
    )
}

fn bad_credentials() -> String {
    "the broker refused the user name or password (mqtt.username, mqtt.password_file or \
     ROCKY_MQTT_PASSWORD)"
        .to_owned()
}

/// An MQTT 3.1.1 connection's failure.
pub fn from_v311(error: &rumqttc::ConnectionError, connection: &BrokerConnection) -> Failure {
    use rumqttc::{ConnectReturnCode as Code, ConnectionError as E, StateError as S};
    match error {
        E::Io(e)
        | E::MqttState(S::Io(e))
        | E::MqttState(S::Deserialization(rumqttc::mqttbytes::Error::Io(e))) => from_io(e, connection),
        E::Tls(e) => from_tls(e, connection),
        E::NetworkTimeout => {
            Failure::new(FailureKind::NoAnswer, format!("no answer from {} within 5 s", endpoint(connection)))
        }
        E::FlushTimeout => Failure::new(FailureKind::Network, "the broker stopped reading what Rocky sends"),
        E::MqttState(S::AwaitPingResp) => {
            Failure::new(FailureKind::Network, "the broker stopped answering pings")
        }
        E::MqttState(S::ConnectionAborted) => Failure::new(
            FailureKind::Closed,
            format!("the broker at {} closed the connection", endpoint(connection)),
        ),
        E::MqttState(S::Deserialization(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size))) => {
            too_large(*size, super::MAX_PACKET_BYTES)
        }
        E::ConnectionRefused(code) => Failure::new(
            FailureKind::Refused,
            match code {
                Code::BadUserNamePassword => bad_credentials(),
                Code::NotAuthorized => not_authorised(connection),
                Code::BadClientId => {
                    format!("the broker refused the client id {:?} (mqtt.client_id)", connection.client_id)
                }
                Code::RefusedProtocolVersion => "the broker does not accept MQTT 3.1.1".to_owned(),
                Code::ServiceUnavailable => "the broker says it is unavailable".to_owned(),
                Code::Success => "the broker sent a CONNACK that is not a refusal".to_owned(),
            },
        ),
        E::NotConnAck(_) => not_connack(),
        other => Failure::new(FailureKind::Other, other.to_string()),
    }
}

/// An MQTT 5 connection's failure.
pub fn from_v5(error: &rumqttc::v5::ConnectionError, connection: &BrokerConnection) -> Failure {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as Code, DisconnectReasonCode as Why};
    use rumqttc::v5::{ConnectionError as E, StateError as S};
    match error {
        E::Io(e)
        | E::MqttState(S::Io(e))
        | E::MqttState(S::Deserialization(rumqttc::v5::mqttbytes::Error::Io(e))) => from_io(e, connection),
        E::Tls(e) => from_tls(e, connection),
        E::Timeout(_) => {
            Failure::new(FailureKind::NoAnswer, format!("no answer from {} within 5 s", endpoint(connection)))
        }
        E::MqttState(S::AwaitPingResp) => {
            Failure::new(FailureKind::Network, "the broker stopped answering pings")
        }
        E::MqttState(S::ConnectionAborted) => Failure::new(
            FailureKind::Closed,
            format!("the broker at {} closed the connection", endpoint(connection)),
        ),
        E::MqttState(S::IncomingPacketTooLarge { pkt_size, max }) => too_large(*pkt_size, *max),
        E::MqttState(S::ServerDisconnect { reason_code: Why::SessionTakenOver, .. }) => Failure::new(
            FailureKind::TakenOver,
            format!(
                "another client connected with the same client id {:?}, so the broker closed this session \
                 (give each Rocky its own mqtt.client_id, or leave it empty for a unique one)",
                connection.client_id
            ),
        ),
        E::MqttState(S::ServerDisconnect { reason_code, reason_string }) => Failure::new(
            FailureKind::Other,
            match reason_string {
                Some(text) => format!("the broker disconnected Rocky: {reason_code:?} ({text})"),
                None => format!("the broker disconnected Rocky: {reason_code:?}"),
            },
        ),
        E::ConnectionRefused(code) => {
            let text = match code {
                Code::BadUserNamePassword => bad_credentials(),
                Code::NotAuthorized => not_authorised(connection),
                Code::BadClientId | Code::ClientIdentifierNotValid => {
                    format!("the broker refused the client id {:?} (mqtt.client_id)", connection.client_id)
                }
                Code::RefusedProtocolVersion | Code::UnsupportedProtocolVersion => {
                    return Failure::new(FailureKind::Closed, "the broker does not accept MQTT 5");
                }
                Code::Banned => format!("the broker has banned this client ({})", who(connection)),
                other => format!("the broker refused the connection: {other:?}"),
            };
            Failure::new(FailureKind::Refused, text)
        }
        E::NotConnAck(_) => not_connack(),
        other => Failure::new(FailureKind::Other, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{BrokerUrl, Secret};

    fn connection() -> BrokerConnection {
        let mut c = BrokerConnection::plain(BrokerUrl::parse("mqtts://broker.example:8883").unwrap());
        c.username = Some("rocky".into());
        c.password = Some(Secret::from_env("ROCKY_MQTT_PASSWORD", "hunter2".into()).unwrap());
        c
    }

    #[test]
    fn each_cause_gets_its_own_words() {
        let c = connection();
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(
            from_v5(&rumqttc::v5::ConnectionError::Io(refused), &c)
                .reason
                .contains("connection refused by broker.example:8883")
        );
        let unknown_ca = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, unknown_ca);
        let failure = from_v311(&rumqttc::ConnectionError::Io(wrapped), &c);
        assert_eq!(failure.kind, FailureKind::Tls);
        assert!(failure.reason.contains("trusted CA"), "{}", failure.reason);
        let bad_password =
            rumqttc::ConnectionError::ConnectionRefused(rumqttc::ConnectReturnCode::BadUserNamePassword);
        let failure = from_v311(&bad_password, &c);
        assert_eq!(failure.kind, FailureKind::Refused);
        assert!(failure.reason.contains("user name or password") && !failure.reason.contains("hunter2"));
        let taken = rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
            reason_code: rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::SessionTakenOver,
            reason_string: None,
        });
        let failure = from_v5(&taken, &c);
        assert_eq!(failure.kind, FailureKind::TakenOver);
        // A peer that echoes CONNECT would hand back Rocky's own password inside rumqttc's error.
        let mut echoed = rumqttc::mqttbytes::v4::Connect::new("rocky");
        echoed.login = Some(rumqttc::mqttbytes::v4::Login::new("rocky", "hunter2"));
        let echo = from_v311(&rumqttc::ConnectionError::NotConnAck(rumqttc::Packet::Connect(echoed)), &c);
        assert!(!echo.reason.contains("hunter2") && !echo.reason.contains("rocky\""), "{}", echo.reason);
        assert!(failure.reason.contains("same client id"), "{}", failure.reason);
    }
}
