//! HTTPS for the API (`http.tls_cert` and `http.tls_key`): the server configuration. Each
//! connection's handshake runs in the connection's own task, within the header timeout (see
//! `server.rs`).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::tls_files::{TlsSetupError, identity_error, provider, read_certificates, read_private_key};

/// Reads the certificate chain and key named by `http.tls_cert` and `http.tls_key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    let chain = read_certificates("http.tls_cert", cert)?;
    let private = read_private_key("http.tls_key", key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| identity_error(("http.tls_cert", cert), ("http.tls_key", key), &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
