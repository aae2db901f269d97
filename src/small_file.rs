//! Reading the small files the connection settings name (passwords, tokens, certificates and
//! keys): a regular file, read through one handle, never more than a limit. The error is the
//! reason alone; callers add the setting and the path.

use std::io::Read;
use std::path::Path;

pub fn read_small_file(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    // Read through the checked handle, one byte past the limit, so a file that grows after the
    // check is still refused.
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_directories_missing_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_small_file(dir.path(), 10).unwrap_err(), "not a regular file");
        assert!(read_small_file(&dir.path().join("missing"), 10).is_err());
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789A").unwrap();
        assert_eq!(read_small_file(&path, 10).unwrap_err(), "larger than 10 bytes");
        assert_eq!(read_small_file(&path, 11).unwrap(), b"0123456789A");
    }
}
