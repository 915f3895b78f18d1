//! How much page cache a 64 MiB backup leaves behind, buffered and with
//! `direct=on`: the file's resident pages (`mincore` over a mapping of each
//! shard's file) and the growth of `Cached` in `/proc/meminfo`.
//!
//! `cargo run --release -p pagebackup-file --example page_cache [DIR]`

use std::os::fd::{AsRawFd, BorrowedFd};

use pagebackup_core::{BackupBackend, BackupFlags, PAGE_SIZE, Page};
use pagebackup_file::{FileBackend, FileConfig};

const PAGES: usize = 16384;

fn cached_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let line = meminfo
        .lines()
        .find(|l| l.starts_with("Cached:"))
        .expect("a Cached line");
    line.split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("kB")
        * 1024
}

/// Bytes of the file's pages in the page cache.
fn resident(fd: BorrowedFd<'_>) -> u64 {
    let len = rustix::fs::fstat(fd).expect("fstat").st_size as usize;
    if len == 0 {
        return 0;
    }
    // SAFETY: a fresh shared read-only mapping of the whole file, unmapped below; never read.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
    let mut vec = vec![0u8; len.div_ceil(PAGE_SIZE)];
    // SAFETY: `map` is a mapping of `len` bytes and `vec` has one byte per page of it.
    let rc = unsafe { libc::mincore(map, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    // SAFETY: unmaps the mapping made above.
    unsafe { libc::munmap(map, len) };
    vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE_SIZE as u64
}

fn main() {
    let dir = std::env::args().nth(1).map_or_else(std::env::temp_dir, Into::into);
    let pages: Vec<Box<Page>> = (0..PAGES)
        .map(|i| {
            let mut p = Page::new_boxed();
            p.0.iter_mut().enumerate().for_each(|(k, b)| *b = (k ^ (i * 31)) as u8);
            p
        })
        .collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    for direct in [false, true] {
        let b = FileBackend::new(FileConfig::new().with_dir(&dir).with_direct(direct)).expect("a file backend");
        let before = cached_bytes();
        let mut handles = Vec::new();
        for (k, chunk) in refs.chunks(64).enumerate() {
            b.backup_pages(chunk, (k * 64) as u64, BackupFlags::NONE, &mut handles)
                .expect("backup");
        }
        b.flush().expect("flush");
        let grown = cached_bytes().saturating_sub(before);
        let resident: u64 = b.fds().map(resident).sum();
        println!(
            "direct={}: {} MiB backed up through {}; the files' pages in the page cache: {:.2} MiB; Cached grew {:.2} MiB",
            if direct { "on" } else { "off" },
            (PAGES * PAGE_SIZE) >> 20,
            b.io_path(),
            resident as f64 / (1 << 20) as f64,
            grown as f64 / (1 << 20) as f64,
        );
        b.drop_handles(&handles).expect("drop");
    }
}
