//! Public and private keys of both algorithms, and the key id (`kid`) devices know them by.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};

use super::Alg;

/// The first 8 bytes of the SHA-256 of a public key's raw bytes (Ed25519: its 32 bytes; P-256:
/// the 65-byte uncompressed point), as `PROTOCOL.md` defines it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kid(pub [u8; 8]);

impl Kid {
    pub fn of_raw_key(raw: &[u8]) -> Self {
        let digest = Sha256::digest(raw);
        let mut kid = [0u8; 8];
        kid.copy_from_slice(&digest[..8]);
        Self(kid)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 8]>::try_from(bytes).ok().map(Self)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kid({})", self.hex())
    }
}

impl serde::Serialize for Kid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for Kid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(&text)
            .ok()
            .and_then(|bytes| Kid::from_slice(&bytes))
            .ok_or_else(|| serde::de::Error::custom("a kid is 16 hex digits"))
    }
}

/// A key a signature is checked with.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Es256(p256::ecdsa::VerifyingKey),
}

/// Why text is not a public key. Public keys are not secret, but the text is not repeated: it
/// may be a private key pasted in the wrong place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("a PEM public key that is neither Ed25519 nor P-256")]
    UnknownPem,
    #[error("this is a private key; give the public half (`rocky keys show FILE` prints it)")]
    PrivateGiven,
    #[error(
        "not a public key: expected PEM (-----BEGIN PUBLIC KEY-----) or hex of 64 (Ed25519) or 130 or 66 (P-256) digits"
    )]
    NotAKey,
    #[error("the hex is not a valid {0} public key")]
    BadPoint(&'static str),
}

impl PublicKey {
    /// PEM (SubjectPublicKeyInfo), or hex: 32 bytes are Ed25519, 65 (uncompressed) or 33
    /// (compressed) bytes are P-256.
    /// The key of a PEM X.509 certificate (a code-signing certificate a device checks with);
    /// why not, in words.
    pub fn from_certificate_pem(text: &str) -> Result<Self, String> {
        use base64::Engine as _;
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(text.as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let spki = base64::engine::general_purpose::STANDARD.encode(cert.tbs_certificate.subject_pki.raw);
        // Base64 is ASCII: every 64-byte line is text.
        let lines: Vec<&str> =
            spki.as_bytes().chunks(64).filter_map(|l| std::str::from_utf8(l).ok()).collect();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"));
        Self::parse(&pem).map_err(|e| format!("its key is not one Rocky reads: {e}"))
    }

    pub fn parse(text: &str) -> Result<Self, PublicKeyError> {
        let text = text.trim();
        if text.contains("PRIVATE KEY") {
            return Err(PublicKeyError::PrivateGiven);
        }
        if text.starts_with("-----BEGIN") {
            if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
                return Ok(Self::Ed25519(key));
            }
            if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
                return Ok(Self::Es256(key));
            }
            return Err(PublicKeyError::UnknownPem);
        }
        let bytes = hex::decode(text).map_err(|_| PublicKeyError::NotAKey)?;
        match bytes.len() {
            32 => {
                let raw = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| PublicKeyError::NotAKey)?;
                ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map(Self::Ed25519)
                    .map_err(|_| PublicKeyError::BadPoint("Ed25519"))
            }
            33 | 65 => p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                .map(Self::Es256)
                .map_err(|_| PublicKeyError::BadPoint("P-256")),
            _ => Err(PublicKeyError::NotAKey),
        }
    }

    pub fn alg(&self) -> Alg {
        match self {
            Self::Ed25519(_) => Alg::Ed25519,
            Self::Es256(_) => Alg::Es256,
        }
    }

    /// The bytes the key id is computed from: Ed25519's 32, P-256's uncompressed 65.
    pub fn raw(&self) -> Vec<u8> {
        match self {
            Self::Ed25519(key) => key.to_bytes().to_vec(),
            Self::Es256(key) => key.to_sec1_bytes().to_vec(),
        }
    }

    pub fn kid(&self) -> Kid {
        Kid::of_raw_key(&self.raw())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.raw())
    }

    /// SubjectPublicKeyInfo PEM, as `rocky keys show` prints it.
    pub fn pem(&self) -> String {
        let pem = match self {
            Self::Ed25519(key) => key.to_public_key_pem(Default::default()),
            Self::Es256(key) => key.to_public_key_pem(Default::default()),
        };
        pem.unwrap_or_default()
    }

    /// Checks `signature` over `message` under `alg`, which must be this key's algorithm.
    /// Ed25519 is checked strictly (no malleable or small-order forms).
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match (self, alg) {
            (Self::Ed25519(key), Alg::Ed25519) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify_strict(message, &signature).is_ok()),
            (Self::Es256(key), Alg::Es256) => {
                use p256::ecdsa::signature::Verifier;
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|signature| key.verify(message, &signature).is_ok())
            }
            _ => false,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, kid {})", self.alg(), self.kid())
    }
}

/// A private key. Its bytes zeroize on drop (both crates do it); nothing here prints them.
#[derive(Clone)]
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate(alg: Alg) -> std::io::Result<Self> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        loop {
            getrandom::fill(seed.as_mut())
                .map_err(|e| std::io::Error::other(format!("no random source: {e}")))?;
            match alg {
                Alg::Ed25519 => return Ok(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))),
                // A scalar of zero or past the group order is refused; draw again (odds 2^-32).
                Alg::Es256 => {
                    if let Ok(key) = p256::ecdsa::SigningKey::from_slice(seed.as_ref()) {
                        return Ok(Self::Es256(key));
                    }
                }
            }
        }
    }

    /// An Ed25519 key from its 32-byte secret (the protocol's test vectors use one).
    pub fn ed25519_from_secret(secret: &[u8; 32]) -> Self {
        Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(secret))
    }

    /// Reads a PKCS#8 PEM private key of either algorithm. The error says nothing of the text.
    pub fn from_pkcs8_pem(pem: &str) -> Option<Self> {
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Some(Self::Ed25519(key));
        }
        p256::ecdsa::SigningKey::from_pkcs8_pem(pem).ok().map(Self::Es256)
    }

    /// The key as PKCS#8 PEM, for writing a new key file (and nothing else).
    pub fn to_pkcs8_pem(&self) -> Option<zeroize::Zeroizing<String>> {
        match self {
            Self::Ed25519(key) => key.to_pkcs8_pem(Default::default()).ok(),
            Self::Es256(key) => key.to_pkcs8_pem(Default::default()).ok(),
        }
    }

    pub fn alg(&self) -> Alg {
        match self {
            Self::Ed25519(_) => Alg::Ed25519,
            Self::Es256(_) => Alg::Es256,
        }
    }

    pub fn public(&self) -> PublicKey {
        match self {
            Self::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
            Self::Es256(key) => PublicKey::Es256(*key.verifying_key()),
        }
    }

    pub fn kid(&self) -> Kid {
        self.public().kid()
    }

    /// The signature over `message`: Ed25519's 64 bytes, or P-256's r‖s (64 bytes, RFC 6979
    /// deterministic nonces).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer;
        match self {
            Self::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            Self::Es256(key) => {
                let signature: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(key, message);
                signature.to_bytes().to_vec()
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, kid {}, private)", self.alg(), self.kid())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn what_is_not_a_certificate_is_said_in_words() {
        assert!(PublicKey::from_certificate_pem("hello").unwrap_err().starts_with("not a PEM certificate"));
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(PublicKey::from_certificate_pem(junk).unwrap_err().starts_with("not an X.509 certificate"));
    }

    use super::*;

    const RFC8032_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn vector_key() -> SigningKey {
        let secret: [u8; 32] = hex::decode(RFC8032_SECRET).unwrap().try_into().unwrap();
        SigningKey::ed25519_from_secret(&secret)
    }

    #[test]
    fn the_vector_key_has_the_vector_kid() {
        let key = vector_key();
        assert_eq!(key.public().hex(), RFC8032_PUBLIC);
        assert_eq!(key.kid().hex(), "21fe31dfa154a261");
        assert_eq!(PublicKey::parse(RFC8032_PUBLIC).unwrap().kid().hex(), "21fe31dfa154a261");
    }

    #[test]
    fn keys_round_trip_through_pem_and_hex_and_sign_what_their_public_half_verifies() {
        for alg in [Alg::Ed25519, Alg::Es256] {
            let key = SigningKey::generate(alg).unwrap();
            let pem = key.to_pkcs8_pem().unwrap();
            let again = SigningKey::from_pkcs8_pem(&pem).unwrap();
            assert_eq!(again.kid(), key.kid());
            let public = key.public();
            assert_eq!(PublicKey::parse(&public.pem()).unwrap(), public);
            assert_eq!(PublicKey::parse(&public.hex()).unwrap(), public);
            let signature = key.sign(b"image");
            assert_eq!(signature.len(), 64);
            assert!(public.verify(alg, b"image", &signature));
            assert!(!public.verify(alg, b"imagf", &signature));
            let other = if alg == Alg::Ed25519 { Alg::Es256 } else { Alg::Ed25519 };
            assert!(!public.verify(other, b"image", &signature), "an algorithm the key is not");
        }
    }

    #[test]
    fn p256_keys_are_known_by_the_uncompressed_point_even_when_given_compressed() {
        let key = SigningKey::generate(Alg::Es256).unwrap();
        let PublicKey::Es256(public) = key.public() else { panic!("P-256") };
        let compressed = hex::encode(public.to_sec1_point(true).as_bytes());
        let parsed = PublicKey::parse(&compressed).unwrap();
        assert_eq!(parsed.raw().len(), 65);
        assert_eq!(parsed.kid(), key.kid());
    }

    #[test]
    fn bad_public_keys_are_refused_in_words_and_private_keys_are_not_taken_for_public_ones() {
        assert_eq!(PublicKey::parse("zz"), Err(PublicKeyError::NotAKey));
        assert_eq!(PublicKey::parse(&"00".repeat(20)), Err(PublicKeyError::NotAKey));
        assert_eq!(PublicKey::parse(&"00".repeat(65)), Err(PublicKeyError::BadPoint("P-256")));
        let pem = vector_key().to_pkcs8_pem().unwrap();
        assert_eq!(PublicKey::parse(&pem), Err(PublicKeyError::PrivateGiven));
        assert!(!format!("{:?}", vector_key()).contains(&RFC8032_SECRET[..16]));
    }
}
