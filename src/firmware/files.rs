//! Writing image files so that no reader ever sees half of one.

use std::io;
use std::path::Path;

/// Writes `bytes` to a hidden file beside `path`, then renames it into place (atomic on one
/// file system). Creates the directory if needed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("a file path needs a directory"))?;
    let name = path.file_name().ok_or_else(|| io::Error::other("a file path needs a name"))?;
    std::fs::create_dir_all(dir)?;
    let partial = dir.join(format!(".{}.partial", name.to_string_lossy()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_into_a_new_directory_and_leaves_no_partial_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("nested/fw.bin");
        write_atomically(&path, b"image").unwrap();
        write_atomically(&path, b"image 2").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"image 2");
        let names: Vec<_> =
            std::fs::read_dir(root.path().join("nested")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("fw.bin")]);
    }
}
