//! Reading the command's input files: regular files only, so that a FIFO, a
//! device or a directory is refused at once instead of hanging or reading
//! without end.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The whole of the regular file at `path`; `what` names it in messages
/// ("the corpus"). Opens without blocking (a FIFO with no writer would block
/// the open itself) and checks the file type before reading a byte.
pub fn read_regular(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot read {what} {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {what} {shown}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("{what} {shown} is not a regular file; refusing to read it"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what} {shown}: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_whole() {
        let path = std::env::temp_dir().join(format!("pagebackup-input-{}", std::process::id()));
        std::fs::write(&path, b"four").unwrap();
        assert_eq!(read_regular(&path, "the corpus").unwrap(), b"four");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_without_blocking() {
        let fifo = std::env::temp_dir().join(format!("pagebackup-input-fifo-{}", std::process::id()));
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        for path in [fifo.as_path(), Path::new("/dev/zero"), Path::new("/tmp")] {
            assert_eq!(
                read_regular(path, "the corpus").unwrap_err(),
                format!(
                    "the corpus {} is not a regular file; refusing to read it",
                    path.display()
                )
            );
        }
        std::fs::remove_file(fifo).unwrap();
    }
}
