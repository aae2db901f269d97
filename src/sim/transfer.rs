//! The image a simulated device is receiving: the chunks it holds, keyed by the image's hash.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::Digest;

use crate::protocol::Sha256;

/// The image being received. Kept by the image's hash, never by the job id alone: another
/// store's job with the same number is another job.
pub(super) struct Transfer {
    pub(super) job: u32,
    pub(super) hash: Sha256,
    pub(super) chunks: BTreeMap<u32, Bytes>,
    /// The length of the chunks held from before a resume: the first chunk that then arrives
    /// must have it too, or the chunk size changed and what is held is worthless.
    pub(super) resumed_len: Option<usize>,
    /// Without flow control a size change can only be told with the verdict.
    pub(super) size_changed: bool,
    /// Flow control: chunks stored since the last FOTA_PROGRESS, and the last one sent.
    pub(super) unconfirmed: u32,
    pub(super) confirmed: u32,
    /// How often each chunk arrived (kept for the lossy model only: a resend always arrives).
    pub(super) deliveries: BTreeMap<u32, u32>,
    /// The device answered FOTA_DONE for it: the image was installed (or refused), and a new
    /// request for the same image starts over instead of resuming.
    pub(super) answered: bool,
    /// The manifest the device accepted with the request (the manifest extension).
    pub(super) manifest: Option<crate::protocol::ManifestPayload>,
    /// The delta extension: the chunks are this patch, to apply to the running image.
    pub(super) delta: Option<crate::protocol::DeltaItem>,
}

impl Transfer {
    pub(super) fn new(job: u32, hash: Sha256) -> Self {
        Self {
            job,
            hash,
            chunks: BTreeMap::new(),
            resumed_len: None,
            size_changed: false,
            unconfirmed: 0,
            confirmed: 1,
            deliveries: BTreeMap::new(),
            answered: false,
            manifest: None,
            delta: None,
        }
    }

    /// The first chunk id not yet held (the resume point). A flow-controlled device asks after
    /// every chunk, so it must not walk what it holds: chunk ids are distinct and from 1, so
    /// none is missing exactly when the last equals the count. Walking from 1 each time made a
    /// 64 MiB transfer (16,384 chunks) quadratic, and paced transfers to few devices crawled.
    pub(super) fn next_missing(&self) -> u32 {
        let held = u32::try_from(self.chunks.len()).unwrap_or(u32::MAX);
        match self.chunks.last_key_value() {
            None => 1,
            Some((&last, _)) if last == held => last.saturating_add(1),
            // A gap: the first number the ids in order skip.
            _ => (1u32..)
                .zip(self.chunks.keys())
                .find(|(expected, id)| expected != *id)
                .map_or(held.saturating_add(1), |(e, _)| e),
        }
    }

    /// Whether `chunk` is the image's last chunk at the chunk size held: the chunks held and it
    /// hash to the image.
    pub(super) fn completes_with(&self, chunk: u32, payload: &Bytes) -> bool {
        let mut hasher = sha2::Sha256::new();
        for (expected, (id, held)) in (1u32..).zip(&self.chunks) {
            if *id != expected {
                return false;
            }
            hasher.update(held);
        }
        chunk as usize == self.chunks.len() + 1 && {
            hasher.update(payload);
            <[u8; 32]>::from(hasher.finalize()) == self.hash
        }
    }

    /// The bytes held, in order, when there is no gap.
    pub(super) fn assembled(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for (expected, (id, chunk)) in (1u32..).zip(&self.chunks) {
            if *id != expected {
                return None;
            }
            out.extend_from_slice(chunk);
        }
        Some(out)
    }

    /// The bytes held.
    pub(super) fn len(&self) -> u64 {
        self.chunks.values().map(|chunk| chunk.len() as u64).sum()
    }

    pub(super) fn verify(&self, corrupt: bool) -> bool {
        let mut hasher = sha2::Sha256::new();
        for (expected, (id, chunk)) in (1u32..).zip(&self.chunks) {
            if *id != expected {
                return false; // a gap: the image is incomplete
            }
            if corrupt && *id == 1 {
                let mut damaged = chunk.to_vec();
                if let Some(first) = damaged.first_mut() {
                    *first ^= 0xff;
                }
                hasher.update(&damaged);
            } else {
                hasher.update(chunk);
            }
        }
        !self.chunks.is_empty() && <[u8; 32]>::from(hasher.finalize()) == self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(image: &[u8], chunk: usize) -> Transfer {
        let hash: Sha256 = sha2::Sha256::digest(image).into();
        let chunks =
            image.chunks(chunk).enumerate().map(|(i, c)| (i as u32 + 1, Bytes::copy_from_slice(c))).collect();
        Transfer { chunks, ..Transfer::new(1, hash) }
    }

    #[test]
    fn verifies_complete_images_only() {
        let image: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut t = transfer(&image, 64);
        assert!(t.verify(false));
        assert!(!t.verify(true), "corruption is detected");
        assert_eq!(t.next_missing(), 17);
        t.chunks.remove(&5);
        assert!(!t.verify(false), "a gap fails");
        assert_eq!(t.next_missing(), 5);
        t.chunks.remove(&1);
        assert_eq!(t.next_missing(), 1, "the first chunk missing");
        t.chunks.clear();
        assert_eq!(t.next_missing(), 1);
        t.chunks.insert(3, Bytes::new());
        assert_eq!(t.next_missing(), 1, "a chunk alone past the start");
    }
}
