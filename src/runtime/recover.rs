//! Turning stored rows back into engine jobs after a restart, with their images read back from
//! the content-addressed store (and verified).

use std::collections::HashMap;

use super::Clock;
use crate::engine::{JobState, JobView};
use crate::firmware::{Image, ImageStore, Library, Patch, parse_sha256};
use crate::store::JobSnapshot;

/// A stored job made whole again: its view, and the patch it was sending (read back from the
/// patch's file, when that is still there), so it sends the patch again rather than the image.
pub struct RestoredJob {
    pub view: JobView,
    pub patch: Option<Patch>,
}

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
) -> Vec<RestoredJob> {
    let mut loaded: HashMap<String, Result<Image, String>> = HashMap::new();
    let mut patches: HashMap<(crate::protocol::Sha256, crate::protocol::Sha256), Option<Patch>> =
        HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        // A confirming job's transfer is over: it waits for a status and needs no bytes.
        let (image, state, error) = if record.state.is_final() || record.state == JobState::Confirming {
            (record.described_image(), record.state, record.error.clone())
        } else {
            let image = loaded
                .entry(record.image.sha256.to_string())
                .or_insert_with(|| {
                    let sha = parse_sha256(&record.image.sha256).map_err(|e| e.to_string())?;
                    match library.get(&sha) {
                        Some(image) => Ok(image),
                        None => images.load(&sha, &record.image.name).map(|image| library.intern(image)),
                    }
                })
                .clone();
            match image {
                Ok(image) => (image.renamed(&record.image.name), record.state, record.error.clone()),
                Err(reason) => (record.described_image(), JobState::Failed, Some(reason)),
            }
        };
        let mut view = record.to_view(image, clock);
        view.state = state;
        view.error = error;
        // A stored manifest goes out again only while a trusted key verifies it and it is for
        // the job's image: a key taken out of trusted_keys is out for jobs already made too.
        let sha = parse_sha256(&record.image.sha256).ok();
        view.manifest = view.manifest.filter(|manifest| {
            manifest.verify(library.manifests().trusted()).is_ok()
                && sha.is_some_and(|sha| manifest.payload().image_sha256 == sha)
        });
        if state.is_final() && view.finished_at.is_none() {
            view.finished_at = Some(clock.now());
        }
        let runs_again = !state.is_final() && state != JobState::Confirming;
        // Read once per pair: the jobs of a rollout share one patch, as they share one image.
        let patch = match (view.delta, sha) {
            (Some(delta), Some(target)) if runs_again => patches
                .entry((delta.base, target))
                .or_insert_with(|| library.deltas().stored(&delta.base, &target))
                .clone()
                .filter(|patch| patch.info() == delta),
            _ => None,
        };
        out.push(RestoredJob { view, patch });
    }
    out
}
