//! The signature AWS's OTA agent checks (`sig-sha256-ecdsa` in a job document): base64 of the
//! DER-encoded ECDSA P-256 signature over the image, hashed with SHA-256. The device verifies it
//! with the code-signing certificate at the job's `certfile`; so only an ES256 key makes one.

use base64::Engine as _;

use super::{PublicKey, SigningKey};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsSignatureError {
    #[error(
        "AWS devices check ECDSA P-256 signatures (sig-sha256-ecdsa): key {kid} is {alg}; make one with rocky keys generate --alg es256"
    )]
    NotEs256 { kid: String, alg: String },
    /// Only a digest of the wrong length makes P-256 refuse; kept as an error, not a panic.
    #[error("the ECDSA P-256 signature could not be made: {0}")]
    Signing(String),
}

/// `sig-sha256-ecdsa` of `image` with `key`.
pub fn aws_signature(key: &SigningKey, image: &[u8]) -> Result<String, AwsSignatureError> {
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(image).into();
    aws_signature_of_digest(key, &digest)
}

/// [`aws_signature`] of the image whose SHA-256 is `digest`: ECDSA signs the hash, so an image
/// Rocky has hashed already is signed without reading its bytes again (tens of MiB on an async
/// worker), and the signature is the same.
pub fn aws_signature_of_digest(key: &SigningKey, digest: &[u8; 32]) -> Result<String, AwsSignatureError> {
    let SigningKey::Es256(key) = key else {
        return Err(AwsSignatureError::NotEs256 { kid: key.kid().hex(), alg: key.alg().to_string() });
    };
    let signature: p256::ecdsa::Signature =
        p256::ecdsa::signature::hazmat::PrehashSigner::sign_prehash(key, digest)
            .map_err(|e| AwsSignatureError::Signing(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes()))
}

/// Whether `signature` (base64 DER) is `public`'s over `image`: what the agent checks.
pub fn aws_signature_verifies(public: &PublicKey, image: &[u8], signature: &str) -> bool {
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(image).into();
    aws_signature_verifies_digest(public, &digest, signature)
}

/// [`aws_signature_verifies`] for the image whose SHA-256 is `digest` (ECDSA signs the hash,
/// so an image Rocky holds only by hash can still be checked).
pub fn aws_signature_verifies_digest(public: &PublicKey, digest: &[u8; 32], signature: &str) -> bool {
    let PublicKey::Es256(public) = public else { return false };
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
    let Ok(signature) = p256::ecdsa::Signature::from_der(&der) else { return false };
    p256::ecdsa::signature::hazmat::PrehashVerifier::verify_prehash(public, digest, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Alg;

    #[test]
    fn an_es256_key_signs_what_its_public_half_verifies_and_nothing_else() {
        let key = SigningKey::generate(Alg::Es256).unwrap();
        let image = vec![0x5au8; 18000];
        let signature = aws_signature(&key, &image).unwrap();
        let der = base64::engine::general_purpose::STANDARD.decode(&signature).unwrap();
        assert_eq!(der[0], 0x30, "DER: a SEQUENCE of r and s");
        assert!((70..=72).contains(&der.len()), "{}", der.len());
        assert!(aws_signature_verifies(&key.public(), &image, &signature));
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&image).into();
        assert!(aws_signature_verifies_digest(&key.public(), &digest, &signature), "over the hash alike");
        assert_eq!(
            aws_signature_of_digest(&key, &digest).unwrap(),
            signature,
            "signed from the hash: the same signature (deterministic nonces over the same digest)"
        );
        let mut tampered = image.clone();
        tampered[100] ^= 1;
        assert!(!aws_signature_verifies(&key.public(), &tampered, &signature));
        let other = SigningKey::generate(Alg::Es256).unwrap();
        assert!(!aws_signature_verifies(&other.public(), &image, &signature));
        assert!(!aws_signature_verifies(&key.public(), &image, "not base64!"));
        let ed = SigningKey::generate(Alg::Ed25519).unwrap();
        let refused = aws_signature(&ed, &image).unwrap_err().to_string();
        assert!(refused.contains("es256") && refused.contains(&ed.kid().hex()), "{refused}");
    }
}
