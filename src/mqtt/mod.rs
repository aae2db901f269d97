//! The broker connection: URLs, TLS, credentials, the protocol version and failures in words.
//! Rocky's own connection ([`crate::runtime`]) and the simulated devices ([`crate::sim`]) both
//! build their sessions from one [`BrokerConnection`].

mod connection;
mod failure;
mod port_probe;
mod resolve;
mod session;
mod tls;
mod url;

pub use crate::random::random_u64;
pub use crate::secret::{Secret, SecretError, SecretOrigin};
pub use connection::{
    BrokerConnection, MAX_INCOMING_V5, MAX_PACKET_BYTES, MqttVersion, Protocol, unique_client_id,
};
pub use failure::{Failure, FailureKind};
pub use port_probe::{PortSpeaks, port_speaks, tls_mismatch};
pub use resolve::{HostLookup, UnknownHost, look_up_host, require_known_host};
pub use session::{Filter, Incoming, Publisher, Session};
pub use tls::{
    TlsFiles, TlsSetupError, client_config, identity_error, provider, read_certificates, read_private_key,
};
pub use url::{BrokerUrl, BrokerUrlError, Scheme};
