//! The image a simulated device is receiving, keyed by the image's hash.
//!
//! As a device writing to flash would, it hashes the chunks that arrived without a gap as they
//! come and keeps only those after a gap (a lost or reordered chunk), so an idle fleet that was
//! just updated holds no images: `rocky bench` made its 100 devices hold 800 MiB each round (8
//! MiB images), and a fleet of 100,000 holds 1.6 GB of 16 KiB ones. A device that takes patches
//! keeps the bytes too: the next patch applies to them, and a patch is applied whole.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::Digest;

use crate::protocol::Sha256;

/// The image being received. Kept by the image's hash, never by the job id alone: another
/// store's job with the same number is another job.
pub(super) struct Transfer {
    pub(super) job: u32,
    pub(super) hash: Sha256,
    /// Chunks 1 to `prefix` arrived without a gap: hashed into `prefix_hash`.
    prefix: u32,
    prefix_hash: sha2::Sha256,
    prefix_bytes: u64,
    /// The first chunk's length, once it arrived (a resume compares the chunk size with it).
    first_len: Option<usize>,
    /// The bytes of chunks 1 to `prefix`, when the device keeps them (`keeps_bytes`).
    kept: Option<Vec<u8>>,
    /// Chunks that arrived after a gap, past `prefix + 1`: hashed once the gap is filled.
    after_gap: BTreeMap<u32, Bytes>,
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
    /// `keeps_bytes`: the device needs the bytes whole afterwards (a patch to apply, or an
    /// image that will be the base of the next patch).
    pub(super) fn new(job: u32, hash: Sha256, keeps_bytes: bool) -> Self {
        Self {
            job,
            hash,
            prefix: 0,
            prefix_hash: sha2::Sha256::new(),
            prefix_bytes: 0,
            first_len: None,
            kept: keeps_bytes.then(Vec::new),
            after_gap: BTreeMap::new(),
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

    /// Stores chunk `id`; true when the device held it already (a duplicate).
    pub(super) fn insert(&mut self, id: u32, payload: Bytes) -> bool {
        if id == 0 || id <= self.prefix {
            return id != 0;
        }
        if id != self.prefix.saturating_add(1) {
            return self.after_gap.insert(id, payload).is_some();
        }
        self.append(&payload);
        // The gap it filled may have been the only one.
        while let Some(next) = self.after_gap.remove(&self.prefix.saturating_add(1)) {
            self.append(&next);
        }
        false
    }

    fn append(&mut self, payload: &[u8]) {
        self.prefix += 1;
        if self.prefix == 1 {
            self.first_len = Some(payload.len());
        }
        self.prefix_hash.update(payload);
        self.prefix_bytes += payload.len() as u64;
        if let Some(kept) = self.kept.as_mut() {
            kept.extend_from_slice(payload);
        }
    }

    /// Forgets every chunk held (the chunk size changed: they are worthless).
    pub(super) fn clear(&mut self) {
        let keeps_bytes = self.kept.is_some();
        self.prefix = 0;
        self.prefix_hash = sha2::Sha256::new();
        self.prefix_bytes = 0;
        self.first_len = None;
        self.kept = keeps_bytes.then(Vec::new);
        self.after_gap.clear();
        self.deliveries.clear();
    }

    /// The transfer resumes (the same image asked for again): Rocky sends again from the first
    /// chunk missing onward, so what is held after a gap comes again. What is held there may be
    /// of an earlier chunk size, which only chunk 1 tells (and it may be missing too): forgotten,
    /// it cannot be hashed in when its gap fills.
    pub(super) fn resumes(&mut self) {
        self.after_gap.clear();
    }

    /// The first chunk's length, when it is held.
    pub(super) fn first_len(&self) -> Option<usize> {
        self.first_len
    }

    /// The first chunk id not yet held (the resume point). Every chunk held after a gap is
    /// past it, so it is the one after the gapless ones.
    pub(super) fn next_missing(&self) -> u32 {
        self.prefix.saturating_add(1)
    }

    /// Whether `chunk` is the image's last chunk at the chunk size held: the chunks held and it
    /// hash to the image.
    pub(super) fn completes_with(&self, chunk: u32, payload: &Bytes) -> bool {
        self.after_gap.is_empty()
            && chunk == self.prefix.saturating_add(1)
            && <[u8; 32]>::from(self.prefix_hash.clone().chain_update(payload).finalize()) == self.hash
    }

    /// The bytes held, in order, when there is no gap and the device keeps them.
    pub(super) fn assembled(&self) -> Option<Vec<u8>> {
        self.kept.as_ref().filter(|_| self.after_gap.is_empty()).cloned()
    }

    /// The bytes held.
    pub(super) fn len(&self) -> u64 {
        self.prefix_bytes + self.after_gap.values().map(|chunk| chunk.len() as u64).sum::<u64>()
    }

    /// Whether the chunks held are the image, without a gap; a device that corrupts what it
    /// writes never verifies one.
    pub(super) fn verify(&self, corrupt: bool) -> bool {
        !corrupt
            && self.prefix > 0
            && self.after_gap.is_empty()
            && <[u8; 32]>::from(self.prefix_hash.clone().finalize()) == self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(image: &[u8], chunk: usize, keeps_bytes: bool) -> (Transfer, Vec<Bytes>) {
        let hash: Sha256 = sha2::Sha256::digest(image).into();
        (Transfer::new(1, hash, keeps_bytes), image.chunks(chunk).map(Bytes::copy_from_slice).collect())
    }

    #[test]
    fn verifies_complete_images_only() {
        let image: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let (mut t, chunks) = transfer(&image, 64, false);
        assert!(!t.verify(false), "nothing held");
        for (id, chunk) in (1u32..).zip(&chunks) {
            assert!(!t.insert(id, chunk.clone()));
        }
        assert!(t.verify(false));
        assert!(!t.verify(true), "corruption is detected");
        assert_eq!(t.next_missing(), 17);
        assert_eq!(t.len(), 1000);
        assert!(t.insert(5, chunks[4].clone()), "a chunk held is a duplicate");
        assert!(t.verify(false), "and changes nothing");
        assert_eq!(t.assembled(), None, "a device that installs no patches keeps no bytes");
    }

    #[test]
    fn chunks_after_a_gap_wait_for_it() {
        let image: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let (mut t, chunks) = transfer(&image, 64, true);
        assert_eq!(t.next_missing(), 1);
        assert!(!t.insert(3, chunks[2].clone()), "chunk 1 is missing");
        assert_eq!(t.next_missing(), 1, "a chunk alone past the start");
        assert!(t.insert(3, chunks[2].clone()), "held after the gap: a duplicate");
        assert!(!t.insert(1, chunks[0].clone()));
        assert_eq!(t.first_len(), Some(64));
        assert_eq!(t.next_missing(), 2);
        for id in (4..=16).rev() {
            assert!(!t.insert(id, chunks[id as usize - 1].clone()));
        }
        assert_eq!(t.len(), 1000 - 64, "every chunk but the second");
        assert!(!t.verify(false), "a gap fails");
        assert_eq!(t.assembled(), None, "a gap leaves nothing whole");
        assert!(!t.completes_with(17, &chunks[15]), "not while a gap is open");
        assert!(!t.insert(2, chunks[1].clone()), "the gap filled");
        assert_eq!(t.next_missing(), 17);
        assert!(t.verify(false));
        assert_eq!(t.assembled().as_deref(), Some(image.as_slice()));
        t.clear();
        assert_eq!((t.next_missing(), t.len(), t.first_len()), (1, 0, None));
        assert!(!t.verify(false));
        assert_eq!(t.assembled().as_deref(), Some(&[][..]), "still keeps bytes, none yet");
    }

    #[test]
    fn a_resume_forgets_what_came_after_a_gap_at_another_chunk_size() {
        let image: Vec<u8> = (0..3072u32).map(|i| (i * 5) as u8).collect();
        let (mut t, big) = transfer(&image, 1024, false);
        assert!(!t.insert(2, big[1].clone()), "chunk 2 of 1 KiB arrives alone");
        t.resumes();
        let small: Vec<Bytes> = image.chunks(512).map(Bytes::copy_from_slice).collect();
        for (id, chunk) in (1u32..).zip(&small) {
            assert!(!t.insert(id, chunk.clone()), "chunk {id} of 512 B is new");
        }
        assert!(t.verify(false), "the 1 KiB chunk 2 was not hashed in");
        assert_eq!(t.len(), 3072);
    }

    #[test]
    fn the_last_chunk_is_told_by_the_hash() {
        let image: Vec<u8> = (0..1000u32).map(|i| (i * 3) as u8).collect();
        let (mut t, chunks) = transfer(&image, 100, false);
        for (id, chunk) in (1u32..).zip(&chunks[..9]) {
            t.insert(id, chunk.clone());
        }
        assert!(t.completes_with(10, &chunks[9]));
        assert!(!t.completes_with(11, &chunks[9]), "not the next chunk");
        assert!(!t.completes_with(10, &chunks[8]), "not the image's last bytes");
        assert!(!t.insert(0, chunks[0].clone()) && t.next_missing() == 10, "chunk 0 is no chunk");
    }
}
