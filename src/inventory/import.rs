//! `POST /devices/import` and `rocky devices import`: many devices with their labels at once,
//! as JSON (`[{"device_id": "d1", "labels": {"model": "m1"}}, …]`) or as lines of
//! `device_id,key=value,…` (blank lines and lines starting with `#` are skipped, and so is a
//! first line whose first field is `device_id`). Commas cannot appear in a value in the line
//! form; use JSON for those.
//!
//! Every row is checked before anything is kept: the first bad row refuses the whole import,
//! naming its line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::labels::{self, Labels};
use crate::protocol::DeviceId;

/// One checked row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// Where the row starts in the text, from 1.
    pub line: usize,
    pub device_id: DeviceId,
    pub labels: Labels,
}

/// Why an import was refused; nothing of it was kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}; nothing of this import was kept")]
pub struct ImportError {
    pub line: usize,
    pub reason: String,
}

/// Reads JSON when the text starts with `[`, the line form otherwise.
pub fn parse(text: &str) -> Result<Vec<ImportRow>, ImportError> {
    let rows = if text.trim_start().starts_with('[') { parse_json(text)? } else { parse_lines(text)? };
    let mut seen: BTreeMap<&DeviceId, usize> = BTreeMap::new();
    for row in &rows {
        if let Some(first) = seen.insert(&row.device_id, row.line) {
            return Err(ImportError {
                line: row.line,
                reason: format!("device {} is already listed on line {first}", row.device_id),
            });
        }
    }
    if rows.is_empty() {
        return Err(ImportError { line: 1, reason: "no devices in the import".into() });
    }
    Ok(rows)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    device_id: String,
    #[serde(default)]
    labels: Labels,
}

fn parse_json(text: &str) -> Result<Vec<ImportRow>, ImportError> {
    let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| ImportError {
        line: e.line().max(1),
        reason: format!("not a JSON array of devices: {e}"),
    })?;
    raw.into_iter()
        .enumerate()
        .map(|(index, value)| {
            // The raw value is a slice of `text`: its offset gives the row's line.
            let offset = (value.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
            let line = 1 + text.get(..offset).map_or(0, |before| before.matches('\n').count());
            let fail =
                |reason: String| ImportError { line, reason: format!("device {}: {reason}", index + 1) };
            let row: JsonRow = serde_json::from_str(value.get())
                .map_err(|e| fail(format!("expected {{\"device_id\": \"…\", \"labels\": {{…}}}}: {e}")))?;
            let device_id = DeviceId::parse(&row.device_id).map_err(|e| fail(e.to_string()))?;
            labels::check(&row.labels).map_err(|e| fail(e.to_string()))?;
            Ok(ImportRow { line, device_id, labels: row.labels })
        })
        .collect()
}

fn parse_lines(text: &str) -> Result<Vec<ImportRow>, ImportError> {
    let mut rows = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut fields = trimmed.split(',').map(str::trim);
        let first = fields.next().unwrap_or_default();
        if rows.is_empty() && first == "device_id" {
            continue; // a header
        }
        let fail = |reason: String| ImportError { line, reason };
        let device_id = DeviceId::parse(first).map_err(|e| fail(e.to_string()))?;
        let mut labels = Labels::new();
        for field in fields.filter(|f| !f.is_empty()) {
            let (key, value) = labels::parse_pair(field).map_err(|e| fail(e.to_string()))?;
            if labels.insert(key.clone(), value).is_some() {
                return Err(fail(format!("label {key:?} is given twice")));
            }
            // As it reads, not after: a line under the body limit could name 600,000 labels.
            labels::check_count(&labels).map_err(|e| fail(e.to_string()))?;
        }
        labels::check(&labels).map_err(|e| fail(e.to_string()))?;
        rows.push(ImportRow { line, device_id, labels });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(rows: &[ImportRow]) -> Vec<&str> {
        rows.iter().map(|r| r.device_id.as_str()).collect()
    }

    #[test]
    fn json_rows_with_labels() {
        let rows = parse(
            r#"[
  {"device_id": "d1", "labels": {"model": "m1"}},
  {"device_id": "d2"}
]"#,
        )
        .unwrap();
        assert_eq!(ids(&rows), ["d1", "d2"]);
        assert_eq!(rows[0].labels.get("model").map(String::as_str), Some("m1"));
        assert_eq!((rows[0].line, rows[1].line), (2, 3));
    }

    #[test]
    fn a_bad_json_row_names_its_line() {
        let err = parse("[\n{\"device_id\": \"d1\"},\n{\"device_id\": \"a/b\"}\n]").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("'/'"), "{err}");
        let err = parse("[\n{\"device_id\": \"d1\", \"labels\": {\"-x\": \"1\"}}]").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse("[\n{\"device_id\": \"d1\",}\n]").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        let err = parse("[{\"device\": \"d1\"}]").unwrap_err();
        assert!(err.reason.contains("device_id"), "{err}");
    }

    #[test]
    fn line_rows_with_a_header_comments_and_blank_lines() {
        let rows = parse("device_id,labels\n# lab\n\nd1,model=m1,site=lab\nd2\n").unwrap();
        assert_eq!(ids(&rows), ["d1", "d2"]);
        assert_eq!(rows[0].labels.len(), 2);
        assert_eq!(rows[0].line, 4);
    }

    #[test]
    fn a_bad_line_row_names_its_line() {
        let err = parse("d1,model=m1\nd2,model\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("line 2: label \"model\" has no '='"), "{err}");
        let err = parse("d1\nd1\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("already listed on line 1"), "{err}");
        let err = parse("d1,a=1,a=2\n").unwrap_err();
        assert!(err.reason.contains("given twice"), "{err}");
        assert!(parse("\n# nothing\n").unwrap_err().reason.contains("no devices"));
    }
}
