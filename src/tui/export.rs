//! What `w` writes: the traffic as the traffic pane shows it (filtered), one JSON object a line,
//! the selected job whole with its timeline, or the selected rollout. Built from the console's own state; written to
//! a file beside the log by the event loop, off its task.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::app::{JobRow, TrafficLine};
use crate::service::TrafficDirection;

/// A file to write and what to call it when done.
#[derive(Debug)]
pub struct Export {
    pub path: PathBuf,
    pub contents: String,
    /// "42 traffic lines", "job 7".
    pub what: String,
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A file name that does not clash with an earlier export: `traffic-20261130-004512.jsonl`.
fn file_name(dir: &Path, stem: &str, extension: &str, now: SystemTime) -> PathBuf {
    let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%d-%H%M%S");
    let mut path = dir.join(format!("{stem}-{stamp}.{extension}"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{stem}-{stamp}-{n}.{extension}"));
        n += 1;
    }
    path
}

/// The lines as JSON lines: time (Unix ms), direction, topic, QoS, device, job, size, the
/// payload kept (hex; `payload_kept` less than `size` when only the start was kept) and the
/// decoded text.
pub fn traffic(lines: &[&TrafficLine], dir: &Path, now: SystemTime) -> Export {
    let mut contents = String::new();
    for line in lines {
        let record = json!({
            "time": unix_ms(line.time),
            "direction": match line.direction { TrafficDirection::Out => "out", TrafficDirection::In => "in" },
            "topic": line.topic,
            "qos": line.qos,
            "device": line.device,
            "job": line.job,
            "size": line.size,
            "payload_hex": hex::encode(&line.payload),
            "payload_kept": line.payload.len(),
            "text": line.text,
            "decode_error": line.decode_error,
        });
        contents.push_str(&record.to_string());
        contents.push('\n');
    }
    let what =
        if lines.len() == 1 { "1 traffic line".to_owned() } else { format!("{} traffic lines", lines.len()) };
    Export { path: file_name(dir, "traffic", "jsonl", now), contents, what }
}

/// One job as the API shows it, with the console's timeline of it.
pub fn job(row: &JobRow, dir: &Path, now: SystemTime) -> Export {
    let timeline: Vec<_> =
        row.timeline.iter().map(|(at, text)| json!({"at": unix_ms(*at), "text": text})).collect();
    let record = json!({"job": *row.job, "timeline": timeline});
    let contents = serde_json::to_string_pretty(&record).unwrap_or_default() + "\n";
    Export {
        path: file_name(dir, &format!("job-{}", row.id), "json", now),
        contents,
        what: format!("job {}", row.id),
    }
}

/// One device as the console knows it (labels, firmware, last seen, its last response, its
/// counts), with its latest job and that job's timeline.
pub fn device(row: &super::app::DeviceRow, job: Option<&JobRow>, dir: &Path, now: SystemTime) -> Export {
    let latest = job.map(|job| {
        let timeline: Vec<_> =
            job.timeline.iter().map(|(at, text)| json!({"at": unix_ms(*at), "text": text})).collect();
        json!({"job": *job.job, "timeline": timeline})
    });
    let record = json!({
        "device_id": row.id,
        "labels": row.labels,
        "firmware": row.firmware,
        "last_seen": row.last_seen.map(unix_ms),
        "last_response": row.last_response,
        "succeeded": row.succeeded,
        "failed": row.failed,
        "latest_job": latest,
    });
    let contents = serde_json::to_string_pretty(&record).unwrap_or_default() + "\n";
    let stem: String = row
        .id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    Export {
        path: file_name(dir, &format!("device-{stem}"), "json", now),
        contents,
        what: format!("device {}", row.id),
    }
}

/// One rollout as the API shows it: whole (every device's outcome, its changes).
pub fn rollout(view: &crate::rollout::RolloutView, dir: &Path, now: SystemTime) -> Export {
    let contents = serde_json::to_string_pretty(view).unwrap_or_default() + "\n";
    Export {
        path: file_name(dir, &format!("rollout-{}", view.id), "json", now),
        contents,
        what: format!("rollout {}", view.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_clash_with_an_earlier_export() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let first = file_name(dir.path(), "traffic", "jsonl", now);
        std::fs::write(&first, "").unwrap();
        let second = file_name(dir.path(), "traffic", "jsonl", now);
        assert_ne!(first, second);
        assert!(second.to_string_lossy().ends_with("-2.jsonl"), "{second:?}");
    }
}
