//! TLS to the broker through rustls (ring): the system's roots or a CA bundle, an optional client
//! certificate (mutual TLS, as AWS IoT Core requires) and, only when asked for by name, no
//! verification at all.
//!
//! Everything is read and checked once, before anything connects, so a missing or malformed file
//! is reported with its path at start instead of as a connection error on every retry.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use crate::tls_files::{TlsSetupError, identity_error, provider, read_certificates, read_private_key};

/// What the configuration says about TLS; paths empty when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM bundle of the CAs to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key (RSA, EC or Ed25519) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate. Only from `--insecure-tls`.
    pub insecure: bool,
}

fn roots(files: &TlsFiles) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            for cert in read_certificates("mqtt.ca_file", path)? {
                roots.add(cert).map_err(|e| TlsSetupError::BadCertificate {
                    key: "mqtt.ca_file",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            // Unreadable entries in the system store are skipped; an empty store is an error.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsSetupError::NoRoots);
            }
        }
    }
    Ok(roots)
}

/// Builds the client configuration, reading every file it names.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Setup(e.to_string()))?;
    let builder = if files.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        builder.with_root_certificates(roots(files)?)
    };
    let config = match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates("mqtt.client_cert", cert)?;
            let private = read_private_key("mqtt.client_key", key)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| identity_error(("mqtt.client_cert", cert), ("mqtt.client_key", key), &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsSetupError::HalfClientIdentity),
    };
    Ok(Arc::new(config))
}

/// `--insecure-tls`: encryption without authentication. Signatures are still checked, so the
/// handshake is well-formed; who signed the certificate is not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let files = TlsFiles { ca_file: Some(missing.clone()), ..TlsFiles::default() };
        let err = client_config(&files).unwrap_err().to_string();
        assert!(err.contains("mqtt.ca_file") && err.contains("ca.pem"), "{err}");

        std::fs::write(&missing, "not a certificate").unwrap();
        let err = client_config(&files).unwrap_err();
        assert!(matches!(err, TlsSetupError::NoCertificate { .. }), "{err}");

        let half = TlsFiles { client_cert: Some(missing), insecure: true, ..TlsFiles::default() };
        assert_eq!(client_config(&half).unwrap_err(), TlsSetupError::HalfClientIdentity);
    }

    #[test]
    fn a_key_file_without_a_key_is_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_path = dir.path().join("client.pem");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        let key_path = dir.path().join("client.key");
        std::fs::write(&key_path, "top secret words").unwrap();
        let files = TlsFiles {
            client_cert: Some(cert_path.clone()),
            client_key: Some(key_path.clone()),
            insecure: true,
            ..TlsFiles::default()
        };
        let err = client_config(&files).unwrap_err().to_string();
        assert!(err.contains("client.key") && !err.contains("top secret"), "{err}");
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key_path, other.serialize_pem()).unwrap();
        let err = client_config(&files).unwrap_err().to_string();
        assert!(err.contains("client.key") && err.contains("does not belong"), "{err}");
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        assert!(client_config(&files).is_ok());
    }
}
