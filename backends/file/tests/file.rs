//! What the file backend does with its file: where it is, who can read it,
//! what happens when the file system fills up, and restores from every
//! stage of a page's life while other threads drop pages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, PAGE_SIZE, Page};
use pagebackup_file::{FileBackend, FileConfig, IoMode};
use pagebackup_testkit::{ConcurrentConfig, PageClass, PageSpec, check_concurrent};

const PAGE: u64 = PAGE_SIZE as u64;

/// Every message of an error's chain, outermost first.
fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(e), |e| e.source())
        .map(|e| e.to_string())
        .collect()
}

/// The `errno` of the first `io::Error` of the chain that has one.
fn errno_in_chain(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    std::iter::successors(Some(e), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .find_map(std::io::Error::raw_os_error)
}

/// A fresh, empty directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("pagebackup-file-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }

    fn entries(&self) -> usize {
        std::fs::read_dir(&self.0).unwrap().count()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn verify(b: &FileBackend, live: &[(Handle, PageSpec)]) {
    let mut page = Page::new_boxed();
    for &(h, spec) in live {
        b.copy_page(&mut page, h, None).unwrap_or_else(|e| panic!("{h:?}: {e}"));
        spec.verify(&page).unwrap();
    }
}

#[test]
fn the_default_file_is_invisible() {
    let dir = TempDir::new("tmpfile");
    let b = FileBackend::new(FileConfig::new().with_dir(&dir.0)).unwrap();
    assert_eq!(b.file_kind(), "O_TMPFILE");
    let spec = PageSpec::new(1, 0, PageClass::Random);
    let h = b.backup_page(&spec.page(), 0, BackupFlags::WRITEBACK).unwrap();
    b.flush().unwrap();
    assert_eq!(dir.entries(), 0, "an O_TMPFILE file has no name in the directory");
    assert_eq!(b.path(), None);
    verify(&b, &[(h, spec)]);
    for fd in b.fds() {
        assert_eq!(rustix::fs::fstat(fd).unwrap().st_mode & 0o777, 0o600);
    }
    drop(b);
    assert_eq!(dir.entries(), 0);
}

#[test]
fn a_named_file_is_0600_exclusive_and_removed_on_drop() {
    let dir = TempDir::new("named");
    let path = dir.0.join("backup.pages");
    let b = FileBackend::new(FileConfig::new().with_path(&path)).unwrap();
    assert_eq!((b.file_kind(), b.path()), ("named", Some(path.as_path())));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let again = FileBackend::new(FileConfig::new().with_path(&path)).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Io);
    assert_eq!(
        chain(&again),
        [
            "file backend: open: I/O error".to_string(),
            format!("cannot create {}", path.display()),
            std::io::Error::from_raw_os_error(17).to_string(),
        ]
    );
    assert_eq!(errno_in_chain(&again), Some(17), "EEXIST: {again:?}");
    let spec = PageSpec::new(2, 0, PageClass::Text);
    let h = b.backup_page(&spec.page(), 0, BackupFlags::NONE).unwrap();
    b.flush().unwrap();
    verify(&b, &[(h, spec)]);
    drop(b);
    assert!(!path.exists(), "the named file is removed with the backend");
}

#[test]
fn a_directory_that_does_not_exist_is_an_error() {
    let err = FileBackend::new(FileConfig::new().with_dir("/nonexistent/pagebackup")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        chain(&err)[1],
        "cannot create a temporary file in /nonexistent/pagebackup",
        "{err:?}"
    );
    assert_eq!(errno_in_chain(&err), Some(2), "ENOENT: {err:?}");
}

#[test]
fn each_io_path_says_which_it_is() {
    let sync = FileBackend::new(FileConfig::new().with_io(IoMode::Sync)).unwrap();
    assert_eq!(sync.io_path(), "pwritev");
    assert_eq!(sync.stats().io_path, Some("pwritev"));
    assert!(format!("{sync:?}").contains("io: \"pwritev\""));
    // Buffered, `auto` takes the syscalls, which measure faster; with
    // `direct`, io_uring where the kernel has it.
    let auto = FileBackend::new(FileConfig::new()).unwrap();
    assert_eq!(auto.io_path(), "pwritev");
    assert!(auto.fallback_reason().unwrap().contains("measure faster"));
    let dir = TempDir::new("direct-auto");
    let direct = FileBackend::new(FileConfig::new().with_dir(&dir.0).with_direct(true)).unwrap();
    match direct.fallback_reason() {
        None => assert_eq!(direct.io_path(), "io_uring"),
        Some(reason) => {
            println!("SKIP: io_uring with direct=on: {reason}");
            assert_eq!(direct.io_path(), "pwritev");
        }
    }
}

#[test]
fn drops_punch_holes_and_staged_pages_are_never_written() {
    let b = FileBackend::new(FileConfig::new()).unwrap();
    let specs: Vec<PageSpec> = (0..128).map(|i| PageSpec::new(3, i, PageClass::Random)).collect();
    let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut direct = Vec::new();
    b.backup_pages(&refs, 0, BackupFlags::NONE, &mut direct).unwrap();
    let allocated = |b: &FileBackend| -> u64 {
        b.fds()
            .map(|fd| rustix::fs::fstat(fd).unwrap().st_blocks as u64 * 512)
            .sum()
    };
    assert_eq!(allocated(&b), 128 * PAGE);
    // Staged, then dropped before any flush: never reaches the file.
    let staged: Vec<Handle> = refs[..10]
        .iter()
        .map(|p| b.backup_page(p, 1000, BackupFlags::NONE).unwrap())
        .collect();
    b.drop_handles(&staged).unwrap();
    b.flush().unwrap();
    assert_eq!(allocated(&b), 128 * PAGE);
    b.drop_handles(&direct[..64]).unwrap();
    assert_eq!(allocated(&b), 64 * PAGE);
    let live: Vec<(Handle, PageSpec)> = direct[64..].iter().copied().zip(specs[64..].iter().copied()).collect();
    verify(&b, &live);
    b.drop_handles(&direct[64..]).unwrap();
    assert_eq!(allocated(&b), 0);
    assert_eq!(b.stats().stored_pages, 0);
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct SmallTmpfs(TempDir);

impl SmallTmpfs {
    fn mount(tag: &str, size: &str) -> Option<SmallTmpfs> {
        let dir = TempDir::new(tag);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .status();
        match ok {
            Ok(status) if status.success() => Some(SmallTmpfs(dir)),
            other => {
                println!("SKIP: cannot mount a tmpfs ({other:?})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        &self.0.0
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.0.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Leave nothing mounted behind, even if something still holds it.
            let _ = Command::new("umount").arg("--lazy").arg(&self.0.0).status();
        }
    }
}

#[test]
fn a_full_file_system_gives_no_space_and_loses_nothing() {
    if !is_root() {
        println!("SKIP: mounting a small tmpfs needs root");
        return;
    }
    for io in [IoMode::Auto, IoMode::Sync] {
        let Some(fs) = SmallTmpfs::mount(&format!("tmpfs-{io:?}"), "2m") else {
            return;
        };
        let b = FileBackend::new(FileConfig::new().with_dir(fs.path()).with_io(io)).unwrap();
        assert!(b.bytes_avail() <= 2 << 20);
        let mut live: Vec<(Handle, PageSpec)> = Vec::new();
        let mut next = 0;
        // Batches written straight to the file, until the file system is full.
        let err = loop {
            let specs: Vec<PageSpec> = (next..next + 16)
                .map(|i| PageSpec::new(4, i, PageClass::Random))
                .collect();
            next += 16;
            let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
            let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
            let mut handles = Vec::new();
            let result = b.backup_pages(&refs, next, BackupFlags::NONE, &mut handles);
            live.extend(handles.into_iter().zip(specs));
            if let Err(e) = result {
                break e;
            }
        };
        assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
        let on_file = live.len();
        // Single backups are staged in memory; the write of a full stage fails.
        let err = loop {
            let spec = PageSpec::new(4, next, PageClass::Random);
            next += 1;
            match b.backup_page(&spec.page(), next, BackupFlags::NONE) {
                Ok(h) => live.push((h, spec)),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
        assert_eq!(b.flush().unwrap_err().kind(), ErrorKind::NoSpace);
        println!(
            "{:?}: {on_file} pages on a 2 MiB tmpfs, {} staged when it filled up",
            b.io_path(),
            live.len() - on_file
        );
        verify(&b, &live);
        // Dropping pages on the file makes room: the staged pages get written.
        let dropped: Vec<Handle> = live.drain(..on_file / 2).map(|(h, _)| h).collect();
        b.drop_handles(&dropped).unwrap();
        b.flush().unwrap();
        let spec = PageSpec::new(4, next, PageClass::Random);
        live.push((b.backup_page(&spec.page(), 0, BackupFlags::WRITEBACK).unwrap(), spec));
        b.flush().unwrap();
        verify(&b, &live);
        assert_eq!(b.stats().stored_pages, live.len() as u64);
        drop(b);
        let mounted = fs.path().to_path_buf();
        drop(fs);
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.contains(mounted.to_str().unwrap()),
            "the tmpfs is still mounted"
        );
    }
}

#[test]
fn restores_from_staging_flight_and_file_while_other_threads_drop() {
    let b = FileBackend::new(FileConfig::new()).unwrap();
    let report = check_concurrent(
        &b,
        &ConcurrentConfig {
            seed: 0xf11e,
            threads: 4,
            ops_per_thread: 4000,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!("file: {report}");
    // Meanwhile a flusher keeps writes in flight.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                b.flush().unwrap();
            }
        });
        let report = check_concurrent(
            &b,
            &ConcurrentConfig {
                seed: 0xf11f,
                threads: 3,
                ops_per_thread: 4000,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        println!("file, with a concurrent flusher: {report}");
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(b.stats().stored_pages, 0);
    for fd in b.fds() {
        assert_eq!(rustix::fs::fstat(fd).unwrap().st_blocks, 0, "every block is released");
    }
}

/// The lines of this process's memory map that name `path`.
fn mappings_of(path: &Path) -> Vec<String> {
    let name = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains(name))
        .map(String::from)
        .collect()
}

/// Unsealed, nothing borrows the file's pages where they lie, so the
/// backend never maps its file, whether pages are staged one at a time,
/// written in batches or restored.
#[test]
fn an_unsealed_buffered_backend_never_maps_its_file() {
    let dir = TempDir::new("unmapped");
    let path = dir.0.join("pages");
    let b = FileBackend::new(FileConfig::new().with_path(&path)).unwrap();
    let specs: Vec<PageSpec> = (0..200).map(|i| PageSpec::new(9, i, PageClass::Heap)).collect();
    let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
    let mut live = Vec::new();
    for (i, (page, spec)) in pages.iter().zip(&specs).enumerate().take(100) {
        live.push((b.backup_page(page, i as u64, BackupFlags::NONE).unwrap(), *spec));
    }
    let refs: Vec<&Page> = pages[100..].iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    b.backup_pages(&refs, 100, BackupFlags::NONE, &mut handles).unwrap();
    live.extend(handles.into_iter().zip(specs[100..].iter().copied()));
    b.flush().unwrap();
    verify(&b, &live);
    assert_eq!(mappings_of(&path), Vec::<String>::new());
}

/// A byte changed on the disk under `direct=on` and buffered, in a batch
/// or a single page, gives `Corrupt` naming the first changed page: the
/// pages before it in a batch restore exactly, and an unchanged one after
/// it stays restorable. A batch of 100 reads in parts under `direct=on`,
/// each checked as it arrives, with changes in two of them, the later
/// part's page first. The bytes are changed through a second, buffered
/// descriptor (whose write the `O_DIRECT` read sees, as the kernel writes
/// it back before reading).
#[test]
fn a_byte_changed_on_the_disk_is_corrupt_with_or_without_direct() {
    for (direct, count, changed) in [
        (false, 4, &[2][..]),
        (true, 4, &[2][..]),
        (false, 100, &[70, 40][..]),
        (true, 100, &[70, 40][..]),
    ] {
        let dir = TempDir::new(&format!("rot-{direct}-{count}"));
        let path = dir.0.join("pages");
        let b = match FileBackend::new(FileConfig::new().with_path(&path).with_direct(direct)) {
            Ok(b) => b,
            Err(e) if direct && e.kind() == ErrorKind::Unsupported => {
                println!("SKIP: direct=on: {e}");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let specs: Vec<PageSpec> = (0..count).map(|i| PageSpec::new(11, i, PageClass::Heap)).collect();
        let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
        let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
        let mut handles = Vec::new();
        b.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
        // Slots 0..count of the one file: flip a byte of each changed slot.
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for &slot in changed {
            let at = slot * PAGE + 4000;
            let mut byte = [0u8];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, at).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 0x20], at).unwrap();
        }
        file.sync_data().unwrap();
        let first = *changed.iter().min().unwrap() as usize;
        let mut out: Vec<Box<Page>> = (0..count).map(|_| Page::new_boxed()).collect();
        let mut dsts: Vec<&mut Page> = out.iter_mut().map(|p| &mut **p).collect();
        let err = b.copy_pages(&handles, &mut dsts, None).unwrap_err();
        let what = format!("direct={direct}, {count} pages: {err}");
        assert_eq!((err.kind(), err.completed), (ErrorKind::Corrupt, first), "{what}");
        for (page, spec) in out[..first].iter().zip(&specs) {
            spec.verify(page).unwrap();
        }
        let mut one = Page::new_boxed();
        let err = b.copy_page(&mut one, handles[first], None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}");
        b.copy_page(&mut one, handles[first + 1], None).unwrap();
        specs[first + 1].verify(&one).unwrap();
        b.drop_handles(&handles).unwrap();
    }
}

/// Staged pages are the store's pages held in RAM: `memory_used` counts
/// each once (as resident), not again as metadata; written buffers kept as
/// spares for the next staged pages count as metadata.
#[test]
fn staged_pages_are_counted_once_in_memory_used() {
    let b = FileBackend::new(FileConfig::new().with_shards(1)).unwrap();
    let before = b.stats();
    let page = PageSpec::new(61, 0, PageClass::Random).page();
    let handles: Vec<Handle> = (0..3)
        .map(|idx| b.backup_page(&page, idx, BackupFlags::NONE).unwrap())
        .collect();
    let staged = b.stats();
    assert_eq!(staged.resident_bytes, 3 * PAGE, "{staged:?}");
    assert!(
        staged.metadata_bytes < before.metadata_bytes + PAGE,
        "staged pages counted as metadata too: {before:?} then {staged:?}"
    );
    assert_eq!(staged.memory_used, staged.resident_bytes + staged.metadata_bytes);
    b.flush().unwrap();
    let written = b.stats();
    assert_eq!(written.resident_bytes, 0, "{written:?}");
    assert!(
        written.metadata_bytes >= before.metadata_bytes + 3 * PAGE,
        "the spare buffers are not counted: {written:?}"
    );
    b.drop_handles(&handles).unwrap();
}
