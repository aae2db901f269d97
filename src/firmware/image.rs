//! An image in memory and its chunking.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use sha2::Digest;

use crate::protocol::{Sha256, sha256_hex};

pub const MIN_CHUNK_SIZE: u32 = 64;
pub const MAX_CHUNK_SIZE: u32 = 256 * 1024;
pub const DEFAULT_CHUNK_SIZE: u32 = 4096;

/// A chunk size within the protocol's bounds (64 B ..= 256 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ChunkSize(u32);

impl ChunkSize {
    pub fn new(bytes: u64) -> Result<Self, String> {
        match u32::try_from(bytes) {
            Ok(n) if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&n) => Ok(Self(n)),
            _ => Err(format!("chunk size {bytes} is outside {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes")),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self(DEFAULT_CHUNK_SIZE)
    }
}

/// A firmware image. Cloning is cheap (one `Arc`), and every chunk handed out is a slice of the
/// same `Bytes`, so a thousand jobs sending one image hold it once.
///
/// An image may also be only a description (name, hash, size, no bytes): what a finished job
/// keeps, so that its bytes are freed once no queued or active job and no cache holds them.
#[derive(Clone)]
pub struct Image(Arc<Inner>);

struct Inner {
    /// Shared with every job snapshot's and device's description of it (`info`).
    name: Arc<str>,
    /// Its SHA-256 in lower-case hex, made once, shared as `name` is.
    hex: Arc<str>,
    /// Empty for a description; `size` is the image's real size either way.
    bytes: Bytes,
    size: u64,
    sha256: Sha256,
}

/// A handle that does not keep the bytes alive: the library's index of images some job holds.
#[derive(Clone)]
pub struct WeakImage(Weak<Inner>);

impl WeakImage {
    pub fn upgrade(&self) -> Option<Image> {
        self.0.upgrade().map(Image)
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("name", &self.0.name)
            .field("size", &self.0.bytes.len())
            .field("sha256", &sha256_hex(&self.0.sha256))
            .finish()
    }
}

/// Two images are equal when they have the same name and content.
impl PartialEq for Image {
    fn eq(&self, other: &Self) -> bool {
        self.sha256() == other.sha256() && self.name() == other.name()
    }
}

impl Image {
    /// Hashes `bytes` and wraps them. An empty image is allowed here; loaders refuse it.
    pub fn new(name: impl Into<String>, bytes: Bytes) -> Self {
        let sha256: Sha256 = sha2::Sha256::digest(&bytes).into();
        let size = bytes.len() as u64;
        let name: String = name.into();
        Self(Arc::new(Inner { name: name.into(), hex: sha256_hex(&sha256).into(), bytes, size, sha256 }))
    }

    /// The same bytes under another name (jobs keep the name they were created with).
    pub fn renamed(&self, name: &str) -> Image {
        if name == self.name() {
            return self.clone();
        }
        Self(Arc::new(Inner {
            name: name.into(),
            hex: self.0.hex.clone(),
            bytes: self.0.bytes.clone(),
            size: self.0.size,
            sha256: self.0.sha256,
        }))
    }

    /// An image known only by its description: a finished job's image after a restart.
    pub fn described(name: &str, sha256: Sha256, size: u64) -> Image {
        Self(Arc::new(Inner {
            name: name.into(),
            hex: sha256_hex(&sha256).into(),
            bytes: Bytes::new(),
            size,
            sha256,
        }))
    }

    /// The same description without the bytes: what a job keeps once it has finished.
    pub fn released(&self) -> Image {
        if !self.has_bytes() {
            return self.clone();
        }
        Self(Arc::new(Inner {
            name: self.0.name.clone(),
            hex: self.0.hex.clone(),
            bytes: Bytes::new(),
            size: self.0.size,
            sha256: self.0.sha256,
        }))
    }

    /// Its description as jobs and devices show it, sharing its texts.
    pub fn info(&self) -> crate::snapshot::ImageInfo {
        crate::snapshot::ImageInfo {
            name: self.0.name.clone(),
            size: self.0.size,
            sha256: self.0.hex.clone(),
        }
    }

    /// False for a description; a job is only ever submitted with the bytes.
    pub fn has_bytes(&self) -> bool {
        self.0.bytes.len() as u64 == self.0.size && self.0.size > 0
    }

    pub fn downgrade(&self) -> WeakImage {
        WeakImage(Arc::downgrade(&self.0))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn size(&self) -> u64 {
        self.0.size
    }

    pub fn sha256(&self) -> &Sha256 {
        &self.0.sha256
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }

    /// True when both handles share one allocation (the library's dedup guarantee).
    pub fn same_allocation(&self, other: &Image) -> bool {
        self.0.bytes.as_ptr() == other.0.bytes.as_ptr()
    }

    /// Number of chunks at `size`, or `None` when it would not fit the protocol's 32-bit chunk
    /// ids. An empty image has zero chunks.
    pub fn chunk_count(&self, size: ChunkSize) -> Option<u32> {
        u32::try_from(self.size().div_ceil(u64::from(size.get()))).ok()
    }

    /// Chunk `id` (1-based) as a zero-copy slice; the last chunk may be shorter.
    pub fn chunk(&self, size: ChunkSize, id: u32) -> Option<Bytes> {
        let index = u64::from(id.checked_sub(1)?);
        let start = index.checked_mul(u64::from(size.get()))?;
        if start >= self.size() {
            return None;
        }
        let end = (start + u64::from(size.get())).min(self.0.bytes.len() as u64);
        if start >= end {
            return None;
        }
        Some(self.0.bytes.slice(usize::try_from(start).ok()?..usize::try_from(end).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(len: usize) -> Image {
        Image::new("t.bin", Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>()))
    }

    fn reassemble(img: &Image, size: ChunkSize) -> Vec<u8> {
        let n = img.chunk_count(size).unwrap();
        (1..=n).flat_map(|i| img.chunk(size, i).unwrap().to_vec()).collect()
    }

    #[test]
    fn chunk_size_bounds() {
        assert!(ChunkSize::new(63).is_err());
        assert!(ChunkSize::new(64).is_ok());
        assert!(ChunkSize::new(262_144).is_ok());
        assert!(ChunkSize::new(262_145).is_err());
        assert!(ChunkSize::new(u64::MAX).is_err());
        assert_eq!(ChunkSize::default().get(), 4096);
    }

    #[test]
    fn one_byte_image_is_one_short_chunk() {
        let img = image(1);
        let size = ChunkSize::new(64).unwrap();
        assert_eq!(img.chunk_count(size), Some(1));
        assert_eq!(img.chunk(size, 1).unwrap().len(), 1);
        assert_eq!(img.chunk(size, 0), None);
        assert_eq!(img.chunk(size, 2), None);
    }

    #[test]
    fn exact_multiple_and_short_last_chunk() {
        let size = ChunkSize::new(4096).unwrap();
        let exact = image(4096 * 3);
        assert_eq!(exact.chunk_count(size), Some(3));
        assert_eq!(exact.chunk(size, 3).unwrap().len(), 4096);
        let short = image(4096 * 3 + 10);
        assert_eq!(short.chunk_count(size), Some(4));
        assert_eq!(short.chunk(size, 4).unwrap().len(), 10);
        assert_eq!(reassemble(&short, size), short.bytes().to_vec());
    }

    #[test]
    fn images_over_64_kib_and_over_65535_chunks() {
        let size = ChunkSize::new(64).unwrap();
        let img = image(64 * 70_000 + 5);
        assert_eq!(img.chunk_count(size), Some(70_001));
        let last = img.chunk(size, 70_001).unwrap();
        assert_eq!(last.len(), 5);
        assert_eq!(reassemble(&img, size), img.bytes().to_vec());
        let sha: Sha256 = sha2::Sha256::digest(reassemble(&img, size)).into();
        assert_eq!(&sha, img.sha256());
    }

    #[test]
    fn chunks_are_slices_of_the_image_not_copies() {
        let img = image(10_000);
        let size = ChunkSize::new(4096).unwrap();
        let chunk = img.chunk(size, 2).unwrap();
        assert_eq!(chunk.as_ptr(), img.bytes()[4096..].as_ptr());
    }
}
