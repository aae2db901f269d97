//! Device labels: free-form `key=value` pairs an operator attaches to devices to pick them by
//! group (`model=esp32-c3`, `site=lab`). Checked where they enter, so a label never carries a
//! control character into a log line or a terminal, and never grows without bound.

use std::collections::BTreeMap;

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 63;
/// The longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 253;
/// The most labels one device carries.
pub const MAX_LABELS: usize = 32;

/// One device's labels, ordered by key.
pub type Labels = BTreeMap<String, String>;

/// Why a label is refused; the message names the label and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label {0:?} has no '=': write key=value")]
    NoEquals(String),
    #[error("a label key is empty")]
    EmptyKey,
    #[error("label key {key:?} is {len} bytes; the limit is {MAX_KEY_BYTES}")]
    KeyTooLong { key: String, len: usize },
    #[error(
        "label key {key:?} contains {what}; keys are letters, digits and . _ - / (and start with a letter or digit)"
    )]
    BadKey { key: String, what: String },
    #[error("the value of label {key:?} is {len} bytes; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLong { key: String, len: usize },
    #[error(
        "the value of label {key:?} contains a control or format character (such as a bidirectional override) at position {position}"
    )]
    BadValue { key: String, position: usize },
    #[error("{count} labels; a device carries at most {MAX_LABELS}")]
    TooMany { count: usize },
}

/// Checks a key: letters, digits, `.`, `_`, `-`, `/`, starting with a letter or digit.
pub fn check_key(key: &str) -> Result<(), LabelError> {
    if key.is_empty() {
        return Err(LabelError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(LabelError::KeyTooLong { key: key.to_owned(), len: key.len() });
    }
    for (position, c) in key.chars().enumerate() {
        let allowed = c.is_ascii_alphanumeric() || (position > 0 && matches!(c, '.' | '_' | '-' | '/'));
        if !allowed {
            let what = if c.is_control() {
                format!("a control character at position {position}")
            } else {
                format!("{c:?} at position {position}")
            };
            return Err(LabelError::BadKey { key: key.escape_debug().to_string(), what });
        }
    }
    Ok(())
}

/// Checks a value: any text without control characters, up to [`MAX_VALUE_BYTES`].
pub fn check_value(key: &str, value: &str) -> Result<(), LabelError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(LabelError::ValueTooLong { key: key.to_owned(), len: value.len() });
    }
    if let Some(position) = value.chars().position(crate::text::is_unprintable) {
        return Err(LabelError::BadValue { key: key.to_owned(), position });
    }
    Ok(())
}

/// Checks a whole set of labels.
pub fn check(labels: &Labels) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany { count: labels.len() });
    }
    for (key, value) in labels {
        check_key(key)?;
        check_value(key, value)?;
    }
    Ok(())
}

/// Reads `key=value` (the value may be empty and may contain `=`), trimmed around both.
pub fn parse_pair(text: &str) -> Result<(String, String), LabelError> {
    let (key, value) = text.split_once('=').ok_or_else(|| LabelError::NoEquals(text.to_owned()))?;
    let (key, value) = (key.trim(), value.trim());
    check_key(key)?;
    check_value(key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Whether `labels` has every pair of `selector`.
/// `model=esp32-c3 site=lab`: labels as the console and the CLI show them, in key order.
pub fn render(labels: &Labels) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

pub fn matches(labels: &Labels, selector: &Labels) -> bool {
    selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_read_and_checked() {
        assert_eq!(parse_pair(" model = esp32-c3 ").unwrap(), ("model".into(), "esp32-c3".into()));
        assert_eq!(parse_pair("note=a=b").unwrap(), ("note".into(), "a=b".into()));
        assert_eq!(parse_pair("site=").unwrap(), ("site".into(), String::new()));
        assert_eq!(parse_pair("model"), Err(LabelError::NoEquals("model".into())));
        assert_eq!(parse_pair("=x"), Err(LabelError::EmptyKey));
        assert!(parse_pair("-model=x").unwrap_err().to_string().contains("'-' at position 0"));
        assert!(parse_pair("mo del=x").unwrap_err().to_string().contains("' ' at position 2"));
        assert!(parse_pair("k=a\u{1b}[2J").unwrap_err().to_string().contains("control or format character"));
        let bidi = parse_pair("site=lab\u{202E}3-ved").unwrap_err().to_string();
        assert!(bidi.contains("bidirectional override") && bidi.contains("position 3"), "{bidi}");
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(parse_pair(&format!("{long}=v")), Err(LabelError::KeyTooLong { .. })));
        let value = "v".repeat(MAX_VALUE_BYTES + 1);
        assert!(matches!(parse_pair(&format!("k={value}")), Err(LabelError::ValueTooLong { .. })));
    }

    #[test]
    fn a_selector_matches_devices_with_all_of_its_pairs() {
        let labels: Labels = [("model".into(), "m1".into()), ("site".into(), "lab".into())].into();
        assert!(matches(&labels, &Labels::new()));
        assert!(matches(&labels, &[("model".into(), "m1".into())].into()));
        assert!(!matches(&labels, &[("model".into(), "m2".into())].into()));
        assert!(!matches(&labels, &[("model".into(), "m1".into()), ("rack".into(), "3".into())].into()));
    }

    #[test]
    fn too_many_labels_are_refused() {
        let labels: Labels = (0..=MAX_LABELS).map(|n| (format!("k{n}"), String::new())).collect();
        assert_eq!(check(&labels), Err(LabelError::TooMany { count: MAX_LABELS + 1 }));
    }
}
