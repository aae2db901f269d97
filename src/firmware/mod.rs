//! Firmware images: loaded once, hashed once, sliced into chunks without copying.

mod image;
mod library;
mod load;

pub use image::{ChunkSize, Image, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
pub use library::Library;
pub use load::{DEFAULT_MAX_IMAGE_BYTES, FirmwareError, LoadLimits, load_file, load_url};
