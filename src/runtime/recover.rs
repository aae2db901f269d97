//! Turning stored rows back into engine jobs after a restart, with their images read back from
//! the content-addressed store (and verified).

use std::collections::HashMap;
use std::time::Duration;

use super::Clock;
use crate::engine::{JobState, JobView};
use crate::firmware::{ChunkSize, Image, Library, parse_sha256};
use crate::protocol::DeviceId;
use crate::store::{ImageStore, JobRecord};

/// One restored job per record that can be understood; a job whose image is gone or damaged
/// comes back failed with the reason, rather than running with the wrong bytes.
pub fn restore(
    records: Vec<JobRecord>,
    images: &ImageStore,
    library: &Library,
    clock: &Clock,
) -> Vec<JobView> {
    let mut loaded: HashMap<String, Result<Image, String>> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let Ok(device) = DeviceId::parse(&record.device) else {
            tracing::warn!(job = record.id, device = %record.device, "stored job has an invalid device id; skipped");
            continue;
        };
        let image = loaded
            .entry(record.image_sha256.clone())
            .or_insert_with(|| {
                let sha = parse_sha256(&record.image_sha256).map_err(|e| e.to_string())?;
                match library.get(&sha) {
                    Some(image) => Ok(image),
                    None => images.load(&sha, &record.image_name).map(|image| library.intern(image)),
                }
            })
            .clone();
        let (image, state, error) = match image {
            Ok(image) => (image.renamed(&record.image_name), record.state, record.error),
            Err(_) if record.state.is_final() => {
                (Image::unavailable(&record.image_name), record.state, record.error)
            }
            Err(reason) => (Image::unavailable(&record.image_name), JobState::Failed, Some(reason)),
        };
        let at = |ms: u64| clock.instant(ms);
        out.push(JobView {
            id: record.id,
            device,
            image,
            chunk_size: ChunkSize::new(u64::from(record.chunk_size)).unwrap_or_default(),
            chunk_interval: Duration::from_millis(record.chunk_interval_ms),
            state,
            chunks_done: record.chunks_sent,
            chunks_total: record.chunks_total,
            bytes_sent: record.bytes_sent,
            attempts: record.attempts,
            error,
            created_at: at(record.created_at),
            started_at: record.started_at.map(at),
            finished_at: record.finished_at.map(at).or_else(|| (state.is_final()).then(|| clock.now())),
        });
    }
    out
}
