//! The status extension against `PROTOCOL.md`'s vectors and its rules.

use super::*;

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../tests/integration/data/protocol_vectors.json")).unwrap()
}

fn hex_of(value: &serde_json::Value) -> Vec<u8> {
    hex::decode(value.as_str().unwrap()).unwrap()
}

fn reported(update: StatusUpdate) -> (DeviceStatus, bool) {
    match update {
        StatusUpdate::Reported { status, confirm_dropped } => (status, confirm_dropped),
        StatusUpdate::Cleared => panic!("a status was expected"),
    }
}

/// A map of text keys to values, as a device would write it.
fn map(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    let entries = entries.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect();
    ciborium::into_writer(&Value::Map(entries), &mut out).unwrap();
    out
}

fn image() -> Value {
    Value::Bytes(vec![7; 32])
}

#[test]
fn the_vector_status_decodes_field_by_field_and_encodes_back_to_its_bytes() {
    let vector = &vectors()["extensions"]["status"];
    assert_eq!(vector["topic"], "/fota/status/dev-07");
    let bytes = hex_of(&vector["cbor_hex"]);
    let (status, confirm_dropped) = reported(decode_status(&bytes).unwrap());
    assert!(!confirm_dropped);
    assert_eq!(hex::encode(status.image), "315f5bdb76d078c43b8ac0064e4a0164612b1fce77c869345bfc94c75894edd3");
    assert_eq!((status.version.as_deref(), status.boot, status.seq), (Some("2.0.3"), Some(17), Some(3)));
    assert_eq!(status.caps, ["resume", "flow", "reasons", "confirm", "manifest", "delta-bsdiff4"]);
    assert!(status.speaks(CAP_CONFIRM) && status.speaks(CAP_DELTA_BSDIFF4) && !status.speaks("teleport"));
    assert_eq!(encode_status(&status), bytes, "a simulated device writes the vector's bytes");
}

#[test]
fn every_invalid_vector_is_refused_with_its_reason() {
    let invalid = vectors()["extensions"]["status_invalid"].as_array().unwrap().clone();
    assert_eq!(invalid.len(), 3);
    for case in invalid {
        let err = decode_status(&hex_of(&case["cbor_hex"])).unwrap_err();
        let why = case["why"].as_str().unwrap();
        let expected = match why {
            "not a map" => matches!(err, StatusError::NotMap(_)),
            "image is 31 bytes" => matches!(&err, StatusError::BadImage(text) if text.contains("31 bytes")),
            "no image" => err == StatusError::NoImage,
            other => panic!("a vector this test does not know: {other}"),
        };
        assert!(expected, "{why}: {err}");
    }
}

#[test]
fn an_empty_payload_clears_and_an_oversized_one_is_refused_unread() {
    assert_eq!(decode_status(&[]), Ok(StatusUpdate::Cleared));
    let mut big = map(vec![("image", image()), ("version", Value::Text("x".repeat(60)))]);
    big.resize(MAX_STATUS_BYTES + 1, 0);
    assert_eq!(decode_status(&big), Err(StatusError::TooLarge(MAX_STATUS_BYTES + 1)));
    assert_eq!(decode_status(&vec![0xa1; 1 << 20]), Err(StatusError::TooLarge(1 << 20)));
}

#[test]
fn confirm_without_a_boot_counter_is_taken_without_confirm() {
    let caps = Value::Array(vec![Value::Text("confirm".into()), Value::Text("resume".into())]);
    let (status, dropped) = reported(decode_status(&map(vec![("image", image()), ("caps", caps)])).unwrap());
    assert!(dropped && !status.speaks(CAP_CONFIRM) && status.speaks(CAP_RESUME));
}

#[test]
fn fields_of_the_wrong_type_are_decode_errors_and_unknown_keys_are_ignored() {
    let with = |key: &str, value: Value| decode_status(&map(vec![("image", image()), (key, value)]));
    assert!(matches!(with("version", Value::Text("v".repeat(65))), Err(StatusError::BadVersion(_))));
    assert!(matches!(with("version", Value::Integer(2.into())), Err(StatusError::BadVersion(_))));
    assert!(matches!(with("boot", Value::Integer((-1).into())), Err(StatusError::BadCounter("boot", _))));
    assert!(matches!(with("seq", Value::Text("3".into())), Err(StatusError::BadCounter("seq", _))));
    assert!(matches!(with("caps", Value::Text("confirm".into())), Err(StatusError::BadCaps(_))));
    assert!(matches!(
        with("caps", Value::Array(vec![Value::Integer(1.into())])),
        Err(StatusError::BadCaps(_))
    ));
    assert!(matches!(
        with("kids", Value::Array(vec![Value::Bytes(vec![1; 7])])),
        Err(StatusError::BadKids(_))
    ));
    assert!(matches!(
        decode_status(&map(vec![("image", Value::Text("abc".into()))])),
        Err(StatusError::BadImage(_))
    ));
    // A key given twice counts the first time.
    let (status, _) = reported(with("image", Value::Text("abc".into())).unwrap());
    assert_eq!(status.image, [7; 32]);
    let (status, _) = reported(with("weather", Value::Text("sunny".into())).unwrap());
    assert_eq!(status.image, [7; 32]);
    let (status, _) = reported(with("kids", Value::Array(vec![Value::Bytes(vec![9; 8])])).unwrap());
    assert_eq!(status.kids, [[9; 8]]);
    // What Rocky writes reads back the same.
    assert_eq!(
        decode_status(&encode_status(&status)),
        Ok(StatusUpdate::Reported { status, confirm_dropped: false })
    );
    let trailing = [map(vec![("image", image())]), vec![0]].concat();
    assert_eq!(decode_status(&trailing), Err(StatusError::TrailingBytes(1)));
}

/// What a status can make Rocky hold and show is bounded and printable (a hostile status must
/// not cost kilobytes per device, nor make the console say something else); items beyond the
/// bounds are left out, so a valid status is never refused for them.
#[test]
fn caps_and_kids_are_bounded_and_text_is_printable() {
    let with = |key: &str, value: Value| decode_status(&map(vec![("image", image()), (key, value)]));
    let texts = |n: usize, s: &str| Value::Array((0..n).map(|_| Value::Text(s.into())).collect());
    let (status, _) = reported(with("caps", texts(MAX_CAPS + 900, "")).unwrap());
    assert_eq!(status.caps.len(), MAX_CAPS);
    let long = Value::Array(vec![Value::Text("c".repeat(MAX_CAP_BYTES + 1)), Value::Text("resume".into())]);
    let (status, _) = reported(with("caps", long).unwrap());
    assert_eq!(status.caps, ["resume"]);
    let (status, _) = reported(with("caps", texts(1, "con\u{202e}firm")).unwrap());
    assert!(status.caps.is_empty());
    assert!(matches!(with("version", Value::Text("2.0\u{1b}[31m".into())), Err(StatusError::BadVersion(_))));
    let kids = Value::Array((0..=MAX_KIDS).map(|_| Value::Bytes(vec![0; 8])).collect());
    let (status, _) = reported(with("kids", kids).unwrap());
    assert_eq!(status.kids.len(), MAX_KIDS);
}

#[test]
fn the_extensions_rocky_knows_are_kept_wherever_they_stand_in_caps() {
    let mut caps: Vec<Value> = (0..20).map(|n| Value::Text(format!("vendor-{n}"))).collect();
    caps.push(Value::Text("manifest".into()));
    caps.push(Value::Text("manifest".into()));
    let (status, _) =
        reported(decode_status(&map(vec![("image", image()), ("caps", Value::Array(caps))])).unwrap());
    assert!(status.speaks("manifest"), "{:?}", status.caps);
    assert_eq!(status.caps.iter().filter(|c| *c == "manifest").count(), 1);
    assert_eq!(status.caps.len(), MAX_CAPS + 1, "16 of the device's own names, and manifest");
}
