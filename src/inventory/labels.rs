//! Device labels: free-form `key=value` pairs an operator attaches to devices to pick them by
//! group (`model=esp32-c3`, `site=lab`). Checked where they enter, so a label never carries a
//! control character into a log line or a terminal, and never grows without bound.

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 63;
/// The longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 253;
/// The most labels one device carries.
pub const MAX_LABELS: usize = 32;

/// One device's labels, ordered by key: a map kept as a sorted list. A fleet's devices carry a
/// handful of labels each, and an inventory holds one set per device (100,000 by default): a
/// `BTreeMap` allocates a node of eleven entries (544 bytes) for the first label, the list only
/// what it holds. Serialized as a JSON object, as the map was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

/// Iterates labels as `(key, value)` in key order.
pub type Iter<'a> =
    std::iter::Map<std::slice::Iter<'a, (String, String)>, fn(&(String, String)) -> (&String, &String)>;

impl Labels {
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                // One more place, not a doubling: a device holds its labels for its lifetime.
                self.0.reserve_exact(1);
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> Iter<'_> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

impl FromIterator<(String, String)> for Labels {
    /// A later pair for the same key replaces an earlier one, as a map's would.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut list: Vec<(String, String)> = pairs.into_iter().collect();
        // Stable, so that of equal keys the last given is last; then keep that one.
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(String, String)> = Vec::with_capacity(list.len());
        for pair in list {
            match kept.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => kept.push(pair),
            }
        }
        kept.shrink_to_fit();
        Self(kept)
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

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
        // Its start only: a 10 KB key must not come back whole in the error.
        return Err(LabelError::KeyTooLong { key: crate::text::clip(key, 40), len: key.len() });
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

/// Checks that a set holds no more than [`MAX_LABELS`].
pub fn check_count(labels: &Labels) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany { count: labels.len() });
    }
    Ok(())
}

/// Checks a whole set of labels.
pub fn check(labels: &Labels) -> Result<(), LabelError> {
    check_count(labels)?;
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
        let error = parse_pair(&format!("{}=v", "k".repeat(10_000))).unwrap_err().to_string();
        assert!(error.len() < 200 && error.contains("10000 bytes"), "{error}");
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

    /// The sorted list answers as the map it replaced did: key order, one value a key (the last
    /// given), the same JSON object both ways.
    #[test]
    fn labels_behave_as_a_map_in_key_order() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let mut labels: Labels = [pair("site", "lab"), pair("model", "m1"), pair("site", "field")].into();
        assert_eq!(labels.keys().map(String::as_str).collect::<Vec<_>>(), ["model", "site"]);
        assert_eq!(labels.get("site").map(String::as_str), Some("field"), "the last value given wins");
        assert_eq!(labels.insert("model".into(), "m2".into()).as_deref(), Some("m1"));
        assert_eq!(labels.insert("batch".into(), "7".into()), None);
        assert_eq!(render(&labels), "batch=7 model=m2 site=field");
        assert_eq!(labels.remove("model").as_deref(), Some("m2"));
        assert!(!labels.contains_key("model") && labels.len() == 2);
        let json = serde_json::to_string(&labels).unwrap();
        assert_eq!(json, r#"{"batch":"7","site":"field"}"#);
        let back: Labels = serde_json::from_str(r#"{"site":"field","batch":"7"}"#).unwrap();
        assert_eq!(back, labels);
        assert!(serde_json::from_str::<Labels>(r#"["site"]"#).is_err());
        let reference: std::collections::BTreeMap<String, String> = labels.clone().into_iter().collect();
        assert!(reference.iter().eq(labels.iter()));
    }
}
