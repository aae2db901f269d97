//! Reading the certificates and keys of any TLS endpoint Rocky has (the broker connection's
//! client side in `mqtt/`, the HTTP API's server side in `http/`): PEM files read once, bounded,
//! and every failure naming the setting and the path, never a key's content.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {key} {path}: {reason}")]
    Unreadable { key: &'static str, path: PathBuf, reason: String },
    #[error("{key} {path} holds no PEM certificate")]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("{key} {path}: {reason}")]
    BadCertificate { key: &'static str, path: PathBuf, reason: String },
    #[error("{key} {path} holds no PEM private key (RSA, EC or PKCS#8)")]
    NoKey { key: &'static str, path: PathBuf },
    #[error("mqtt.client_cert and mqtt.client_key must be given together")]
    HalfClientIdentity,
    #[error("{cert_key} {cert} with {key_key} {key} cannot be used: {reason}")]
    Identity { cert_key: &'static str, cert: PathBuf, key_key: &'static str, key: PathBuf, reason: String },
    #[error("TLS set-up failed: {0}")]
    Setup(String),
    #[error("no trusted CA: the system has no root certificates; set mqtt.ca_file")]
    NoRoots,
}

/// The single crypto provider Rocky uses (ring), so no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The largest PEM file read; a bundle of every public CA is about 250 KiB.
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    crate::small_file::read_small_file(path, MAX_PEM_BYTES).map_err(|reason| TlsSetupError::Unreadable {
        key,
        path: path.to_owned(),
        reason,
    })
}

/// Every certificate in a PEM file; an error names the setting and the path.
pub fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_pem(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::BadCertificate { key, path: path.to_owned(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate { key, path: path.to_owned() });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#1, SEC1 or PKCS#8); the error never shows content.
pub fn read_private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = read_pem(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsSetupError::NoKey { key, path: path.to_owned() })
}

/// Why a certificate and key cannot serve as an identity, in words that say what to change.
pub fn identity_error(
    (cert_key, cert): (&'static str, &Path),
    (key_key, key): (&'static str, &Path),
    error: &rustls::Error,
) -> TlsSetupError {
    let reason = match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
            if format!("{other:?}").contains("UnsupportedCertVersion") =>
        {
            "it is an X.509 version 1 certificate and TLS needs version 3: sign it with extensions \
             (openssl x509 -req … -extfile FILE, e.g. with extendedKeyUsage=clientAuth)"
                .to_owned()
        }
        rustls::Error::InconsistentKeys(_) => "the key does not belong to the certificate".to_owned(),
        other => other.to_string(),
    };
    TlsSetupError::Identity { cert_key, cert: cert.to_owned(), key_key, key: key.to_owned(), reason }
}
