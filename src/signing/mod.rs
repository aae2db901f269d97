//! Keys and signatures for signed updates (the manifest extension of `PROTOCOL.md`): the two
//! algorithms devices verify (Ed25519 and P-256 ECDSA), key ids, key files, and the set of
//! public keys Rocky accepts manifests from. Below everything else: no module of Rocky's here.
//!
//! A private key never leaves this module as text except through [`SigningKey::to_pkcs8_pem`]
//! (writing a new key file); `Debug` shows only its algorithm and key id, and every error names
//! the file, never its content.

mod alg;
mod aws;
mod key_file;
mod keys;
mod trusted;

pub use alg::Alg;
pub use aws::{
    AwsSignatureError, aws_signature, aws_signature_of_digest, aws_signature_verifies,
    aws_signature_verifies_digest,
};
pub use key_file::{KeyFileError, read_signing_key, write_new_signing_key};
pub use keys::{Kid, PublicKey, PublicKeyError, SigningKey};
pub use trusted::{TrustedKey, TrustedKeys, TrustedKeysError};
