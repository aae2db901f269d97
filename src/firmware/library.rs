//! Finds images by hash, holds each distinct image once, and keeps only a bounded number of bytes
//! alive for images no job needs.
//!
//! An image's bytes live as long as something holds the [`Image`]: a queued or active job, or
//! this library's cache. The library itself keeps weak handles to every image some job holds (so
//! a second upload or job of the same content shares the first one's bytes) and strong handles to
//! the most recently used images up to `cache_bytes`. With an [`ImageStore`] attached, an image
//! evicted from memory is read back from its content-addressed file when a job names its hash.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;

use super::{Image, ImageStore, WeakImage};
use crate::protocol::{Sha256, sha256_hex};

/// The default for `firmware.cache_bytes`.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

pub struct Library {
    // A std mutex is right here: every critical section is a few map and queue operations with
    // no await and no I/O inside.
    state: Mutex<State>,
    /// Which of the images are signed, and by whom.
    manifests: super::Manifests,
    /// Patches between images (the delta extension).
    deltas: super::Deltas,
}

struct State {
    /// Every image some holder may still have, by hash; dead entries are swept on insert.
    held: HashMap<Sha256, WeakImage>,
    /// Recently used images, least recent first; their sizes add up to `cached_bytes`.
    cache: VecDeque<Image>,
    cached_bytes: u64,
    cache_limit: u64,
    disk: Option<ImageStore>,
    /// Files known to hold an image (uploads), oldest first, so an upload evicted from memory
    /// can still be named by its hash; each is verified when read back.
    files: VecDeque<(Sha256, PathBuf, String)>,
}

/// Upload files remembered by hash; the oldest are forgotten past this.
const MAX_REMEMBERED_FILES: usize = 10_000;

impl Default for Library {
    fn default() -> Self {
        Self::with_cache(DEFAULT_CACHE_BYTES)
    }
}

/// What the library holds, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LibraryUse {
    /// Bytes of distinct images alive in this process (jobs' and the cache's).
    pub held_bytes: u64,
    /// The part of those the cache keeps alive on its own account.
    pub cached_bytes: u64,
    pub images: usize,
    /// Patch builds so far (the delta extension).
    pub delta_builds: super::BuildStats,
}

impl Library {
    pub fn new() -> Self {
        Self::default()
    }

    /// A library whose cache keeps at most `cache_limit` bytes of images no job holds.
    pub fn with_cache(cache_limit: u64) -> Self {
        Self::with_signing(cache_limit, super::SigningPolicy::default())
    }

    /// A library whose images are signed and checked under `policy`.
    pub fn with_signing(cache_limit: u64, policy: super::SigningPolicy) -> Self {
        Self {
            manifests: super::Manifests::new(policy),
            deltas: super::Deltas::default(),
            state: Mutex::new(State {
                held: HashMap::new(),
                cache: VecDeque::new(),
                cached_bytes: 0,
                cache_limit,
                disk: None,
                files: VecDeque::new(),
            }),
        }
    }

    /// Images evicted from memory are read back from `store` when asked for by hash.
    /// The same library, building patches under `policy`.
    pub fn with_deltas(mut self, policy: super::DeltaPolicy) -> Self {
        self.deltas = super::Deltas::new(policy);
        self
    }

    /// Patches between images (the delta extension).
    pub fn deltas(&self) -> &super::Deltas {
        &self.deltas
    }

    pub fn attach_disk(&self, store: ImageStore) {
        self.manifests.keep_in(store.clone());
        self.deltas.keep_in(store.dir().join("deltas"));
        self.lock().disk = Some(store);
    }

    /// The images' manifests (the manifest extension).
    pub fn manifests(&self) -> &super::Manifests {
        &self.manifests
    }

    /// `path` holds the image `image` (an upload): found by hash even after eviction.
    pub fn remember_file(&self, image: &Image, path: PathBuf) {
        let mut state = self.lock();
        state.files.retain(|(sha, known, _)| sha != image.sha256() && *known != path);
        state.files.push_back((*image.sha256(), path, image.name().to_owned()));
        if state.files.len() > MAX_REMEMBERED_FILES {
            state.files.pop_front();
        }
    }

    pub fn disk(&self) -> Option<ImageStore> {
        self.lock().disk.clone()
    }

    /// Holds `image` and, with an image store attached, keeps it there by content (on a
    /// blocking thread), so what names it by hash finds it after a restart too. A rollout's
    /// image is kept this way before the rollout exists.
    pub async fn keep(&self, image: Image) -> std::io::Result<Image> {
        let image = self.intern(image);
        if let Some(disk) = self.disk() {
            let saved = image.clone();
            tokio::task::spawn_blocking(move || disk.save(&saved))
                .await
                .map_err(|_| std::io::Error::other("saving the image stopped"))??;
        }
        Ok(image)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the image already held for this hash if there is one (its bytes shared, under
    /// the name it was given now: the same content uploaded as another file keeps that file's
    /// name), else keeps `image`; either way it becomes the most recently used.
    pub fn intern(&self, image: Image) -> Image {
        let mut state = self.lock();
        let image = match state.held.get(image.sha256()).and_then(WeakImage::upgrade) {
            Some(existing) if existing.has_bytes() && existing.name() != image.name() => {
                existing.renamed(image.name())
            }
            Some(existing) if existing.has_bytes() => existing,
            _ => {
                state.held.retain(|_, weak| weak.upgrade().is_some());
                state.held.insert(*image.sha256(), image.downgrade());
                image
            }
        };
        state.touch(&image);
        image
    }

    /// The image with this hash if it is in memory (held by a job or cached).
    pub fn get(&self, sha256: &Sha256) -> Option<Image> {
        let mut state = self.lock();
        let image = state.held.get(sha256).and_then(WeakImage::upgrade).filter(Image::has_bytes)?;
        state.touch(&image);
        Some(image)
    }

    /// The image with this hash from memory or, failing that, from the attached image store
    /// (read and verified on a blocking thread). `Ok(None)` when neither has it.
    pub async fn find(&self, sha256: &Sha256) -> Result<Option<Image>, String> {
        if let Some(image) = self.get(sha256) {
            return Ok(Some(image));
        }
        let (disk, file) = {
            let state = self.lock();
            let file = state.files.iter().rev().find(|(sha, _, _)| sha == sha256).cloned();
            (state.disk.clone(), file)
        };
        let sha = *sha256;
        let loaded = tokio::task::spawn_blocking(move || {
            if let Some((_, path, name)) = file {
                // An upload that was replaced or removed since is simply not there any more.
                if let Ok(bytes) = std::fs::read(&path) {
                    let image = Image::new(name, bytes::Bytes::from(bytes));
                    if image.sha256() == &sha {
                        return Ok(Some(image));
                    }
                }
            }
            match disk {
                Some(disk) if disk.path(&sha).is_file() => {
                    disk.load(&sha, &format!("{}.bin", sha256_hex(&sha))).map(Some)
                }
                _ => Ok(None),
            }
        })
        .await
        .map_err(|_| "reading the image from the image store failed".to_owned())??;
        Ok(loaded.map(|image| self.intern(image)))
    }

    /// Images this library can name by hash, at most `limit`, by name: those in memory, the
    /// uploads it remembers and the image store's files (named by their hash). Reads the disk.
    pub fn known(&self, limit: usize) -> Vec<crate::snapshot::ImageInfo> {
        let (mut seen, files, disk) = {
            let state = self.lock();
            let live: std::collections::BTreeMap<Sha256, crate::snapshot::ImageInfo> = state
                .held
                .values()
                .filter_map(WeakImage::upgrade)
                .map(|image| (*image.sha256(), crate::snapshot::ImageInfo::from(&image)))
                .collect();
            (live, state.files.clone(), state.disk.clone())
        };
        for (sha, path, name) in files.iter().rev() {
            if seen.len() >= limit {
                break;
            }
            if let (false, Ok(meta)) = (seen.contains_key(sha), std::fs::metadata(path)) {
                seen.insert(
                    *sha,
                    crate::snapshot::ImageInfo {
                        name: name.as_str().into(),
                        size: meta.len(),
                        sha256: sha256_hex(sha).into(),
                    },
                );
            }
        }
        if let Some(entries) = disk.and_then(|disk| std::fs::read_dir(disk.dir()).ok()) {
            for entry in entries.filter_map(Result::ok) {
                if seen.len() >= limit {
                    break;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(sha) = super::parse_sha256(&name) else { continue };
                if let (false, Ok(meta)) = (seen.contains_key(&sha), entry.metadata()) {
                    seen.insert(
                        sha,
                        crate::snapshot::ImageInfo {
                            name: format!("{name}.bin").into(),
                            size: meta.len(),
                            sha256: name.into(),
                        },
                    );
                }
            }
        }
        let mut images: Vec<_> = seen.into_values().take(limit).collect();
        images.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.sha256.cmp(&b.sha256)));
        images
    }

    pub fn usage(&self) -> LibraryUse {
        let state = self.lock();
        let live: Vec<Image> =
            state.held.values().filter_map(WeakImage::upgrade).filter(Image::has_bytes).collect();
        LibraryUse {
            held_bytes: live.iter().map(Image::size).sum(),
            cached_bytes: state.cached_bytes,
            images: live.len(),
            delta_builds: self.deltas.stats(),
        }
    }
}

impl State {
    /// Makes `image` the most recently used cache entry, then evicts the least recent ones past
    /// the limit. An image larger than the whole cache is not cached at all.
    fn touch(&mut self, image: &Image) {
        if let Some(at) = self.cache.iter().position(|cached| cached.sha256() == image.sha256()) {
            if let Some(entry) = self.cache.remove(at) {
                self.cache.push_back(entry);
            }
            return;
        }
        if image.size() > self.cache_limit || !image.has_bytes() {
            return;
        }
        self.cache.push_back(image.clone());
        self.cached_bytes += image.size();
        while self.cached_bytes > self.cache_limit {
            let Some(evicted) = self.cache.pop_front() else { break };
            self.cached_bytes -= evicted.size();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn image(name: &str, fill: u8, len: usize) -> Image {
        Image::new(name, Bytes::from(vec![fill; len]))
    }

    #[test]
    fn the_same_content_is_held_once() {
        let lib = Library::new();
        let a = lib.intern(image("a.bin", 1, 1000));
        let b = lib.intern(image("copy.bin", 1, 1000));
        assert!(a.same_allocation(&b));
        assert_eq!(b.name(), "copy.bin", "the same bytes under the name given this time");
        assert_eq!(lib.usage().images, 1);
        let c = lib.intern(image("c.bin", 2, 1000));
        assert!(!a.same_allocation(&c));
        assert_eq!(lib.get(a.sha256()).map(|i| i.name().to_owned()), Some("a.bin".into()));
    }

    #[test]
    fn the_cache_keeps_the_most_recent_images_within_its_limit() {
        let lib = Library::with_cache(2500);
        let first = *lib.intern(image("1", 1, 1000)).sha256();
        let second = *lib.intern(image("2", 2, 1000)).sha256();
        // Using the first again makes the second the least recent.
        assert!(lib.get(&first).is_some());
        let third = *lib.intern(image("3", 3, 1000)).sha256();
        assert!(lib.get(&second).is_none(), "the least recently used image stays cached");
        assert!(lib.get(&first).is_some() && lib.get(&third).is_some());
        assert_eq!(lib.usage().cached_bytes, 2000);
        // Larger than the whole cache: alive while held, gone when dropped.
        let big = lib.intern(image("big", 4, 5000));
        assert_eq!(lib.usage().held_bytes, 7000);
        let big_sha = *big.sha256();
        drop(big);
        assert!(lib.get(&big_sha).is_none());
        assert_eq!(lib.usage().held_bytes, 2000);
    }

    #[tokio::test]
    async fn keep_holds_an_image_and_writes_it_by_content_when_there_is_a_store() {
        let lib = Library::new();
        let kept = lib.keep(image("mem.bin", 3, 50)).await.unwrap();
        assert!(lib.get(kept.sha256()).is_some(), "held without a store");
        let dir = tempfile::tempdir().unwrap();
        let disk = ImageStore::new(dir.path().join("firmware"));
        lib.attach_disk(disk.clone());
        let kept = lib.keep(image("disk.bin", 4, 50)).await.unwrap();
        assert!(disk.path(kept.sha256()).is_file(), "written by its hash");
    }

    #[test]
    fn a_job_keeps_its_image_alive_past_the_cache() {
        let lib = Library::with_cache(0);
        let held = lib.intern(image("held", 5, 100));
        assert!(lib.get(held.sha256()).is_some(), "a held image is found");
        let released = held.released();
        let sha = *held.sha256();
        drop(held);
        assert!(lib.get(&sha).is_none(), "a released image's bytes are freed");
        assert_eq!((released.size(), released.has_bytes()), (100, false));
        assert_eq!(
            lib.usage(),
            LibraryUse { held_bytes: 0, cached_bytes: 0, images: 0, ..LibraryUse::default() }
        );
    }

    #[tokio::test]
    async fn an_evicted_image_is_read_back_from_the_image_store() {
        let dir = tempfile::tempdir().unwrap();
        let disk = ImageStore::new(dir.path().join("firmware"));
        let lib = Library::with_cache(0);
        lib.attach_disk(disk.clone());
        let stored = image("s.bin", 6, 300);
        disk.save(&stored).unwrap();
        let sha = *stored.sha256();
        drop(stored);
        let back = lib.find(&sha).await.unwrap().expect("read back from disk");
        assert_eq!((back.size(), back.has_bytes()), (300, true));
        assert_eq!(lib.find(&[9; 32]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_evicted_upload_is_read_back_from_its_file_while_it_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::with_cache(0);
        let upload = image("up.bin", 7, 200);
        let path = dir.path().join("up.bin");
        std::fs::write(&path, upload.bytes()).unwrap();
        let sha = *upload.sha256();
        lib.remember_file(&upload, path.clone());
        drop(upload);
        let back = lib.find(&sha).await.unwrap().expect("read back from the upload");
        assert_eq!((back.name(), back.size()), ("up.bin", 200));
        drop(back);
        std::fs::write(&path, b"replaced by another upload").unwrap();
        assert_eq!(lib.find(&sha).await.unwrap(), None, "a changed file is not the image");
    }
}
