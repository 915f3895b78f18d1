//! `direct=on` restores against `dd iflag=direct bs=256K` on a noisy
//! machine: 64 MiB backed up to each subject, then every batch of 64 pages
//! restored from each subject in turn (the order rotating per batch), so
//! that drift in the disk's speed cancels at the grain of one batch. Prints
//! each subject's median time per page and its ratio to the `preadv` of
//! the same 256 KiB from an `O_DIRECT` file.
//!
//! - `checksum=on`: the default, each half of a batch checksummed as it
//!   arrives while the other is read (io_uring).
//! - `checksum=on,io=sync`: read with `preadv`, then checksummed.
//! - `checksum=off`: read with `preadv`.
//!
//! `cargo run --release -p pagebackup-file --example direct_restore_ab [DIR] [PASSES]`

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pagebackup_core::{BackupBackend, BackupFlags, Handle, PAGE_SIZE, Page};
use pagebackup_file::{FileBackend, FileConfig, IoMode};

const PAGES: usize = 16384;
const BATCH: usize = 64;

/// A subject: restores batch `k` into `out`.
trait Subject {
    fn restore(&self, k: usize, out: &mut [Page]);
}

/// A file backend and the handles of its batches.
struct Store(FileBackend, Vec<Handle>);

impl Subject for Store {
    fn restore(&self, k: usize, out: &mut [Page]) {
        let mut dsts: Vec<&mut Page> = out.iter_mut().collect();
        self.0
            .copy_pages(&self.1[k * BATCH..(k + 1) * BATCH], &mut dsts, None)
            .expect("restore");
    }
}

/// An unlinked `O_DIRECT` file read as `dd` reads it.
struct Dd(OwnedFd);

impl Subject for Dd {
    fn restore(&self, k: usize, out: &mut [Page]) {
        let mut iov: Vec<IoSliceMut<'_>> = out.iter_mut().map(|p| IoSliceMut::new(p.as_bytes_mut())).collect();
        let read = rustix::io::preadv(&self.0, &mut iov, (k * BATCH * PAGE_SIZE) as u64).expect("preadv");
        assert_eq!(read, BATCH * PAGE_SIZE, "a short read");
    }
}

fn store(dir: &Path, config: FileConfig, pages: &[Page]) -> Store {
    let backend = FileBackend::new(config.with_dir(dir).with_direct(true).with_shards(1)).expect("a direct=on backend");
    let mut handles = Vec::new();
    for (k, batch) in pages.chunks(BATCH).enumerate() {
        let refs: Vec<&Page> = batch.iter().collect();
        backend
            .backup_pages(&refs, (k * BATCH) as u64, BackupFlags::NONE, &mut handles)
            .expect("backup");
    }
    backend.flush().expect("flush");
    Store(backend, handles)
}

fn dd(dir: &Path, pages: &[Page]) -> Dd {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::DIRECT | OFlags::CLOEXEC;
    let fd = rustix::fs::open(dir, flags, Mode::from_raw_mode(0o600)).expect("an O_DIRECT file");
    for (k, batch) in pages.chunks(BATCH).enumerate() {
        let iov: Vec<IoSlice<'_>> = batch.iter().map(|p| IoSlice::new(p.as_bytes())).collect();
        let written = rustix::io::pwritev(&fd, &iov, (k * BATCH * PAGE_SIZE) as u64).expect("pwritev");
        assert_eq!(written, BATCH * PAGE_SIZE, "a short write");
    }
    Dd(fd)
}

/// The median of `times`, in microseconds per page.
fn median_us_per_page(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2] * 1e6 / BATCH as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let passes: usize = args.next().map_or(8, |p| p.parse().expect("PASSES: a number"));
    let mut pages = Page::new_boxed_slice(PAGES);
    for (i, page) in pages.iter_mut().enumerate() {
        for (j, byte) in page.as_bytes_mut().iter_mut().enumerate() {
            *byte = ((i.wrapping_mul(2_654_435_761) >> 7) ^ (j * 13)) as u8;
        }
    }
    let subjects: Vec<(&str, Box<dyn Subject>)> = vec![
        ("checksum=on", Box::new(store(&dir, FileConfig::new(), &pages))),
        (
            "checksum=on,io=sync",
            Box::new(store(&dir, FileConfig::new().with_io(IoMode::Sync), &pages)),
        ),
        (
            "checksum=off",
            Box::new(store(&dir, FileConfig::new().with_checksum(false), &pages)),
        ),
        ("dd iflag=direct bs=256K", Box::new(dd(&dir, &pages))),
    ];
    let mut out = Page::new_boxed_slice(BATCH);
    let mut times = vec![Vec::new(); subjects.len()];
    for _ in 0..passes {
        for k in 0..PAGES / BATCH {
            for r in 0..subjects.len() {
                let s = (r + k) % subjects.len();
                let start = Instant::now();
                subjects[s].1.restore(k, &mut out);
                times[s].push(start.elapsed().as_secs_f64());
            }
        }
    }
    let medians: Vec<f64> = times.iter_mut().map(|t| median_us_per_page(t)).collect();
    let dd = medians[subjects.len() - 1];
    println!(
        "direct=on restores, batches of {BATCH}, {passes} passes over 64 MiB in {}",
        dir.display()
    );
    for ((name, _), median) in subjects.iter().zip(&medians) {
        println!("{name:<24} median {median:.2} us/page, {:.3}x dd", dd / median);
    }
}
