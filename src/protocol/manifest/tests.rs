//! The manifest extension against `PROTOCOL.md`'s vectors: Rocky's signing reproduces the
//! vector's bytes exactly (Ed25519 is deterministic), and every way a manifest can be wrong is
//! refused in words.

use sha2::Digest;

use super::*;
use crate::signing::{PublicKey, TrustedKeys};

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../tests/integration/data/protocol_vectors.json")).unwrap()
}

fn hex_at(vectors: &serde_json::Value, pointer: &str) -> Vec<u8> {
    hex::decode(vectors.pointer(pointer).and_then(|v| v.as_str()).unwrap()).unwrap()
}

fn vector_key() -> SigningKey {
    let secret: [u8; 32] = hex_at(&vectors(), "/extensions/ed25519_secret_key_hex").try_into().unwrap();
    SigningKey::ed25519_from_secret(&secret)
}

fn hello_payload() -> ManifestPayload {
    ManifestPayload {
        image_sha256: sha2::Sha256::digest(b"Hello, world!").into(),
        size: 13,
        version: Some("2.1.0".into()),
        seq: 3,
    }
}

fn trusting(key: &SigningKey) -> TrustedKeys {
    let mut trusted = TrustedKeys::default();
    trusted.add(key.public(), "test".into());
    trusted
}

#[test]
fn the_payload_and_the_signed_manifest_are_the_vectors_bytes() {
    let v = vectors();
    assert_eq!(hello_payload().encode(), hex_at(&v, "/extensions/manifest_payload/cbor_hex"));
    let manifest = Manifest::sign(hello_payload(), &vector_key());
    assert_eq!(manifest.0.signed, hex_at(&v, "/extensions/sig_structure_hex"));
    assert_eq!(manifest.bytes().as_ref(), hex_at(&v, "/extensions/manifest/cbor_hex").as_slice());
    assert_eq!(manifest.kid().hex(), v["extensions"]["kid_hex"].as_str().unwrap());
}

#[test]
fn the_vector_manifest_decodes_and_verifies_under_the_vector_public_key() {
    let v = vectors();
    let bytes = hex_at(&v, "/extensions/manifest/cbor_hex");
    let manifest = Manifest::decode(&bytes).unwrap();
    assert_eq!(manifest.payload(), &hello_payload());
    assert_eq!(manifest.bytes().as_ref(), bytes.as_slice(), "re-encoding keeps the bytes");
    let public = PublicKey::parse(v["extensions"]["ed25519_public_key_hex"].as_str().unwrap()).unwrap();
    let mut trusted = TrustedKeys::default();
    trusted.add(public, "vector".into());
    manifest.verify(&trusted).unwrap();
    let hash: Sha256 = sha2::Sha256::digest(b"Hello, world!").into();
    manifest.check_image(&hash, 13).unwrap();
    assert_eq!(manifest.check_image(&hash, 14), Err(ManifestError::OtherSize { manifest: 13, image: 14 }));
    let other: Sha256 = sha2::Sha256::digest(b"other").into();
    assert!(matches!(manifest.check_image(&other, 13), Err(ManifestError::OtherImage { .. })));
    let info = manifest.info();
    assert_eq!(serde_json::to_value(&info).unwrap()["kid"], "21fe31dfa154a261");
    assert_eq!(serde_json::to_value(&info).unwrap()["alg"], "EdDSA");
    let json = serde_json::to_value(&manifest).unwrap();
    assert_eq!((json["version"].as_str(), json["seq"].as_u64()), (Some("2.1.0"), Some(3)));
    assert_eq!(serde_json::from_value::<Manifest>(json).unwrap(), manifest);
}

#[test]
fn es256_manifests_verify_and_an_untagged_one_is_read_and_sent_tagged() {
    let key = SigningKey::generate(Alg::Es256).unwrap();
    let manifest = Manifest::sign(hello_payload(), &key);
    manifest.verify(&trusting(&key)).unwrap();
    assert_eq!(manifest.bytes()[0], 0xd2, "tag 18");
    let untagged = &manifest.bytes()[1..];
    let again = Manifest::decode(untagged).unwrap();
    assert_eq!(again.bytes(), manifest.bytes());
    again.verify(&trusting(&key)).unwrap();
}

#[test]
fn another_key_a_tampered_payload_and_a_flipped_signature_are_refused() {
    let key = vector_key();
    let manifest = Manifest::sign(hello_payload(), &key);
    let stranger = SigningKey::generate(Alg::Ed25519).unwrap();
    assert_eq!(manifest.verify(&trusting(&stranger)), Err(ManifestError::Untrusted(key.kid())));

    // The payload's size (13 = 0x0d) changed to 14 inside the signed bytes.
    let mut tampered = manifest.bytes().to_vec();
    let at = tampered.windows(2).position(|w| w == [0x02, 0x0d]).unwrap();
    tampered[at + 1] = 0x0e;
    let tampered = Manifest::decode(&tampered).unwrap();
    assert_eq!(tampered.payload().size, 14);
    assert_eq!(tampered.verify(&trusting(&key)), Err(ManifestError::BadSignature(key.kid())));

    let mut flipped = manifest.bytes().to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        Manifest::decode(&flipped).unwrap().verify(&trusting(&key)),
        Err(ManifestError::BadSignature(key.kid()))
    );
}

#[test]
fn malformed_manifests_are_errors_in_words() {
    assert!(matches!(Manifest::decode(&[]), Err(ManifestError::NotCoseSign1(_))));
    assert!(matches!(Manifest::decode(&[0xd2, 0x80]), Err(ManifestError::NotCoseSign1(_))));
    assert_eq!(Manifest::decode(&vec![0; 5000]), Err(ManifestError::TooLarge(5000)));
    // A COSE_Sign1 without a kid, and one with an algorithm Rocky does not take.
    let bare = CoseSign1Builder::new()
        .protected(HeaderBuilder::new().algorithm(coset::iana::Algorithm::EdDSA).build())
        .payload(hello_payload().encode())
        .signature(vec![0; 64])
        .build()
        .to_tagged_vec()
        .unwrap();
    assert_eq!(Manifest::decode(&bare), Err(ManifestError::NoKid));
    let rsa = CoseSign1Builder::new()
        .protected(HeaderBuilder::new().algorithm(coset::iana::Algorithm::PS256).key_id(vec![1; 8]).build())
        .payload(hello_payload().encode())
        .build()
        .to_tagged_vec()
        .unwrap();
    assert!(matches!(Manifest::decode(&rsa), Err(ManifestError::UnknownAlg(_))));
    let wrong_payload = CoseSign1Builder::new()
        .protected(HeaderBuilder::new().algorithm(coset::iana::Algorithm::EdDSA).key_id(vec![1; 8]).build())
        .payload(vec![0xa1, 0x01, 0x41, 0x00])
        .build()
        .to_tagged_vec()
        .unwrap();
    let error = Manifest::decode(&wrong_payload).unwrap_err().to_string();
    assert!(error.contains("key 1 (image hash) must be 32 bytes"), "{error}");
}

#[test]
fn a_payload_without_version_or_counter_reads_as_counter_zero() {
    // {1: hash, 2: 5}, as another signer may write it.
    let mut bytes = vec![0xa2, 0x01, 0x58, 0x20];
    bytes.extend_from_slice(&[9; 32]);
    bytes.extend_from_slice(&[0x02, 0x05]);
    let payload = ManifestPayload::decode(&bytes).unwrap();
    assert_eq!((payload.size, payload.seq, payload.version), (5, 0, None));
    let mut twice = vec![0xa3, 0x01, 0x58, 0x20];
    twice.extend_from_slice(&[9; 32]);
    twice.extend_from_slice(&[0x02, 0x05, 0x02, 0x06]);
    assert_eq!(ManifestPayload::decode(&twice), Err("key 2 appears twice".into()));
}
