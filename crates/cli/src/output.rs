//! Files the command writes without ever destroying one: a new file with
//! mode 0600 beside the target, renamed into place only once it is complete.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file being written: a temporary file in the target's directory until
/// [`NewFile::commit`] renames it to the target. Dropped uncommitted, it is
/// removed, and the target is left as it was.
#[derive(Debug)]
pub struct NewFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
    replace: bool,
}

impl NewFile {
    /// Starts writing `target`. Refuses a target that exists, unless
    /// `replace` is set, and a target that is anything but a regular file
    /// (a device, a FIFO, a directory, a symbolic link) whatever `replace` says.
    pub fn create(target: &Path, replace: bool) -> Result<NewFile, String> {
        let shown = target.display();
        match std::fs::symlink_metadata(target) {
            Ok(meta) if !meta.file_type().is_file() => {
                return Err(format!(
                    "{shown} exists and is not a regular file; refusing to replace it"
                ));
            }
            Ok(_) if !replace => {
                return Err(format!("{shown} exists; pass --force to replace it"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot look at {shown}: {e}")),
        }
        let name = target
            .file_name()
            .ok_or_else(|| format!("{shown} does not name a file"))?
            .to_string_lossy();
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        for attempt in 0u32.. {
            let temp = dir.join(format!(".{name}.{}-{attempt}.tmp", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp) {
                Ok(file) => {
                    return Ok(NewFile {
                        file: Some(file),
                        temp,
                        target: target.to_path_buf(),
                        replace,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {}
                Err(e) => return Err(format!("cannot create a file in {}: {e}", dir.display())),
            }
        }
        unreachable!("the loop returns by its hundredth attempt")
    }

    /// The file to write to.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until committed")
    }

    /// Makes the file durable and renames it to the target: atomically, and
    /// without replacing a file that appeared meanwhile unless `replace` was set.
    pub fn commit(mut self) -> Result<(), String> {
        let shown = self.target.display().to_string();
        let file = self.file.take().expect("open until committed");
        file.sync_all().map_err(|e| format!("cannot write {shown}: {e}"))?;
        drop(file);
        let renamed = if self.replace {
            std::fs::rename(&self.temp, &self.target)
        } else {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &self.temp,
                rustix::fs::CWD,
                &self.target,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(io::Error::from)
        };
        renamed.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                format!("{shown} appeared while it was being written; pass --force to replace it")
            }
            _ => format!("cannot rename the finished file to {shown}: {e}"),
        })?;
        // Renamed: nothing left for `drop` to remove.
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            // Only our own temporary file, which nobody else can have opened by name.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pagebackup-output-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(d: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_committed_file_is_private_and_takes_the_target_name() {
        let d = dir("commit");
        let target = d.join("out.pages");
        let mut new = NewFile::create(&target, false).unwrap();
        new.file().write_all(b"pages").unwrap();
        assert!(!target.exists(), "the target appears only on commit");
        new.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"pages");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(entries(&d), ["out.pages"]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_and_an_existing_target_untouched() {
        let d = dir("abandon");
        let target = d.join("out.pages");
        std::fs::write(&target, b"before").unwrap();
        let mut new = NewFile::create(&target, true).unwrap();
        new.file().write_all(b"after").unwrap();
        drop(new);
        assert_eq!(std::fs::read(&target).unwrap(), b"before");
        assert_eq!(entries(&d), ["out.pages"]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_existing_target_is_replaced_only_when_asked() {
        let d = dir("replace");
        let target = d.join("out.pages");
        std::fs::write(&target, b"before").unwrap();
        let err = NewFile::create(&target, false).unwrap_err();
        assert_eq!(err, format!("{} exists; pass --force to replace it", target.display()));
        let mut new = NewFile::create(&target, true).unwrap();
        new.file().write_all(b"after").unwrap();
        new.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"after");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_target_that_appears_meanwhile_is_kept() {
        let d = dir("race");
        let target = d.join("out.pages");
        let new = NewFile::create(&target, false).unwrap();
        std::fs::write(&target, b"theirs").unwrap();
        let err = new.commit().unwrap_err();
        assert!(err.contains("appeared while it was being written"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
        assert_eq!(entries(&d), ["out.pages"]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn non_regular_targets_are_refused_even_with_force() {
        let d = dir("special");
        let link = d.join("link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        for target in [Path::new("/dev/null"), &d, &link] {
            let err = NewFile::create(target, true).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "{} exists and is not a regular file; refusing to replace it",
                    target.display()
                )
            );
        }
        assert_eq!(entries(&d), ["link"]);
        std::fs::remove_dir_all(d).unwrap();
    }
}
