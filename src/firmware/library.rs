//! Keeps one copy of each distinct image alive however many jobs send it.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Image;
use crate::protocol::Sha256;

/// Interns images by SHA-256, so that jobs and the API can also name an image by its hash.
#[derive(Default)]
pub struct Library {
    // A std mutex is right here: the critical section is a hash-map lookup with no await inside.
    keep: Mutex<HashMap<Sha256, Image>>,
}

impl Library {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the image already held for this hash if there is one, else keeps `image`.
    /// Images are kept for the life of the library: uploads may be referred to by hash later.
    pub fn intern(&self, image: Image) -> Image {
        let mut keep = self.keep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        keep.entry(*image.sha256()).or_insert(image).clone()
    }

    pub fn get(&self, sha256: &Sha256) -> Option<Image> {
        self.keep.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(sha256).cloned()
    }

    pub fn len(&self) -> usize {
        self.keep.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn the_same_content_is_held_once() {
        let lib = Library::new();
        let a = lib.intern(Image::new("a.bin", Bytes::from(vec![1u8; 1000])));
        let b = lib.intern(Image::new("copy.bin", Bytes::from(vec![1u8; 1000])));
        assert!(a.same_allocation(&b));
        assert_eq!(lib.len(), 1);
        let c = lib.intern(Image::new("c.bin", Bytes::from(vec![2u8; 1000])));
        assert!(!a.same_allocation(&c));
        assert_eq!(lib.get(a.sha256()).map(|i| i.name().to_owned()), Some("a.bin".into()));
    }
}
