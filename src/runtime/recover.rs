//! Turning stored rows back into engine jobs after a restart, with their images read back from
//! the content-addressed store (and verified).

use std::collections::HashMap;
use std::time::Duration;

use super::Clock;
use crate::engine::{JobState, JobView};
use crate::firmware::{ChunkSize, Image, ImageStore, Library, parse_sha256};
use crate::protocol::Sha256;
use crate::store::JobSnapshot;

/// One restored job per record that can be understood; a job whose image is gone or damaged
/// comes back failed with the reason, rather than running with the wrong bytes.
///
/// Only jobs that will run again get their image's bytes (read once per distinct image); a
/// finished job keeps its image's description, so a restart does not load every image any
/// stored job ever used.
pub fn restore(
    records: Vec<JobSnapshot>,
    images: &ImageStore,
    library: &Library,
    clock: &Clock,
) -> Vec<JobView> {
    let mut loaded: HashMap<String, Result<Image, String>> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let device = record.device_id.clone();
        let sha = parse_sha256(&record.image.sha256).map_err(|e| e.to_string());
        let described = |sha: &Result<Sha256, String>| {
            Image::described(&record.image.name, *sha.as_ref().unwrap_or(&[0; 32]), record.image.size)
        };
        let (image, state, error) = if record.state.is_final() {
            (described(&sha), record.state, record.error.clone())
        } else {
            let image = loaded
                .entry(record.image.sha256.clone())
                .or_insert_with(|| {
                    let sha = sha.clone()?;
                    match library.get(&sha) {
                        Some(image) => Ok(image),
                        None => images.load(&sha, &record.image.name).map(|image| library.intern(image)),
                    }
                })
                .clone();
            match image {
                Ok(image) => (image.renamed(&record.image.name), record.state, record.error.clone()),
                Err(reason) => (described(&sha), JobState::Failed, Some(reason)),
            }
        };
        let at = |ms: u64| clock.instant(ms);
        out.push(JobView {
            id: record.id,
            device,
            image,
            chunk_size: ChunkSize::new(u64::from(record.chunk_size)).unwrap_or_default(),
            chunk_interval: Duration::from_millis(record.chunk_interval_ms),
            state,
            chunks_done: record.chunks_done,
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
