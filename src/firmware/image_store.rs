//! Images kept by content: `firmware/<sha256>`, written once, verified on every read, so a job
//! never depends on the path or URL it was created from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{Image, write_atomically};
use crate::protocol::{Sha256, sha256_hex};

#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    /// How many images sweeps removed so far, shared by every clone: what remembers files of
    /// this store in memory (verified manifests) forgets them when it changes.
    sweeps: Arc<AtomicU64>,
}

impl ImageStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, sweeps: Arc::default() }
    }

    /// Grows whenever [`Self::remove_unneeded`] removes an image (with its manifest and AWS
    /// signature).
    pub fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::Acquire)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, sha256: &Sha256) -> PathBuf {
        self.dir.join(sha256_hex(sha256))
    }

    /// Writes the image unless it is already there.
    pub fn save(&self, image: &Image) -> std::io::Result<()> {
        let path = self.path(image.sha256());
        if path.is_file() {
            return Ok(());
        }
        write_atomically(&path, image.bytes())
    }

    /// Removes every stored image whose hash is not in `needed` (lower-case hex), and its
    /// manifest (`<sha256>.cose`) and AWS signature (`<sha256>.sig-sha256-ecdsa`); returns how many images went. Files that are not named like a
    /// stored image or manifest are left alone.
    pub fn remove_unneeded(&self, needed: &std::collections::HashSet<String>) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let is_image =
                name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if is_image && !needed.contains(&name) {
                // Counted before and after: a read of these files that overlaps the removal
                // sees the count move either way (and does not remember what it read).
                self.sweeps.fetch_add(1, Ordering::AcqRel);
                std::fs::remove_file(entry.path())?;
                // Its manifest goes with it; a manifest of an image only uploaded (not kept
                // here) stays, so a signed upload no job named yet is still signed tomorrow.
                let _ = std::fs::remove_file(self.dir.join(format!("{name}.cose")));
                let _ = std::fs::remove_file(self.dir.join(format!("{name}.sig-sha256-ecdsa")));
                removed += 1;
                self.sweeps.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.remove_unneeded_patches(needed)?;
        Ok(removed)
    }

    /// Patches (`deltas/<base>-<target>.bsdiff`) to an image no job needs go too: a later job
    /// for that image builds its patch again.
    fn remove_unneeded_patches(&self, needed: &std::collections::HashSet<String>) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(self.dir.join("deltas")) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let target = name.strip_suffix(".bsdiff").and_then(|pair| pair.split_once('-')).map(|(_, t)| t);
            if target.is_some_and(|target| target.len() == 64 && !needed.contains(target)) {
                match std::fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Reads an image back and checks it still has the hash it is filed under.
    pub fn load(&self, sha256: &Sha256, name: &str) -> Result<Image, String> {
        let path = self.path(sha256);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("image {} is missing from the store: {e}", sha256_hex(sha256)))?;
        let image = Image::new(name, Bytes::from(bytes));
        if image.sha256() != sha256 {
            return Err(format!(
                "image {} in the store is damaged (its content no longer matches)",
                sha256_hex(sha256)
            ));
        }
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_once_and_verifies_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path().join("firmware"));
        let image = Image::new("a.bin", Bytes::from_static(b"Hello, world!"));
        store.save(&image).unwrap();
        store.save(&image).unwrap();
        let back = store.load(image.sha256(), "a.bin").unwrap();
        assert_eq!(back.bytes(), image.bytes());
        std::fs::write(store.path(image.sha256()), b"tampered").unwrap();
        assert!(store.load(image.sha256(), "a.bin").unwrap_err().contains("damaged"));
        assert!(store.load(&[0u8; 32], "x").unwrap_err().contains("missing"));
        let other = Image::new("b.bin", Bytes::from_static(b"another"));
        store.save(&other).unwrap();
        std::fs::write(store.dir().join("notes.txt"), b"not an image").unwrap();
        let manifest = |sha: &Sha256| store.dir().join(format!("{}.cose", sha256_hex(sha)));
        std::fs::write(manifest(image.sha256()), b"cose").unwrap();
        std::fs::write(manifest(other.sha256()), b"cose").unwrap();
        std::fs::write(manifest(&[5; 32]), b"an uploaded image's manifest").unwrap();
        let deltas = store.dir().join("deltas");
        std::fs::create_dir_all(&deltas).unwrap();
        let patch = |base: &Sha256, target: &Sha256| {
            deltas.join(format!("{}-{}.bsdiff", sha256_hex(base), sha256_hex(target)))
        };
        std::fs::write(patch(&[5; 32], image.sha256()), b"BSDIFF40").unwrap();
        std::fs::write(patch(&[5; 32], other.sha256()), b"BSDIFF40").unwrap();
        let needed = std::collections::HashSet::from([sha256_hex(other.sha256())]);
        let sweeps = store.clone();
        assert_eq!(store.remove_unneeded(&needed).unwrap(), 1);
        assert_eq!(sweeps.sweeps(), 2, "a clone sees the sweep (counted before and after)");
        assert_eq!(store.remove_unneeded(&needed).unwrap(), 0);
        assert_eq!(sweeps.sweeps(), 2, "a sweep that removed nothing changes nothing");
        assert!(!patch(&[5; 32], image.sha256()).exists(), "a patch to an image no job needs goes");
        assert!(patch(&[5; 32], other.sha256()).exists());
        assert!(!store.path(image.sha256()).exists() && store.path(other.sha256()).exists());
        assert!(store.dir().join("notes.txt").exists());
        assert!(!manifest(image.sha256()).exists() && manifest(other.sha256()).exists());
        assert!(manifest(&[5; 32]).exists(), "a manifest whose image is not stored here stays");
    }
}
