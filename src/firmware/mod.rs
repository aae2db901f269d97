//! Firmware images: loaded once, hashed once, sliced into chunks without copying.

mod confined;
mod delta;
mod files;
mod image;
mod image_store;
mod library;
mod listing;
mod load;
mod manifests;
mod pacing;
mod source;

pub use delta::{
    BuildStats, Choice, DeltaInfo, DeltaPolicy, Deltas, Patch, apply_patch, build_patch, delta_for,
};
pub use files::{PartialFile, remove_partials, remove_stale_uploads, upload_name, write_atomically};
pub use image::{ChunkSize, DEFAULT_CHUNK_SIZE, Image, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, WeakImage};
pub use image_store::ImageStore;
pub use library::{DEFAULT_CACHE_BYTES, Library, LibraryUse};
pub use listing::{FirmwareImage, FirmwareList};
pub use load::{DEFAULT_MAX_IMAGE_BYTES, FirmwareError, LoadLimits, check_url_prefix, load_file, load_url};
pub use manifests::{MAX_AWS_SIGNATURE_BYTES, Manifests, SignError, SigningPolicy};
pub use pacing::{MAX_PAUSE, Pacing};
pub use source::{FirmwareSource, ResolveError, parse_sha256, resolve};
