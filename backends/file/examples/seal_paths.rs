//! The ways a sealed page can go between the caller and a file's page
//! cache, timed on the same pages in the same run, against the plain path:
//!
//! - restore: `pread` into the caller's pages, then open in place (the
//!   path of `direct=on`), or open from a read-only shared mapping of the
//!   file straight into the caller's pages (the backend's path otherwise);
//! - backup: seal from the caller's page into a buffer, then one `pwrite`
//!   (the backend's path), or seal straight into a writable shared mapping
//!   of the file (no system call; the faults allocate the page cache).
//!
//! `cargo run --release -p pagebackup-file --features seal --example seal_paths [MiB] [rounds]`

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use pagebackup_core::raw::seal::{Identity, SealKey, Sealer, Tag};
use pagebackup_core::{PAGE_SIZE, Page};

const RUN: usize = 64;

/// A shared mapping of `len` bytes of `file`.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(file: &File, len: usize, writable: bool) -> Self {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping of a file this program created and keeps at `len` bytes; nothing else maps or truncates it.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        Mapping { ptr: ptr.cast(), len }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes of a file that stays that long.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`, and `&mut self` is the mapping's only user.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unused from here on.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn punch(file: &File, len: usize) {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: a plain system call on a file this program owns.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, 0, len as i64) };
    assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
}

fn as_bytes(pages: &[Page]) -> &[u8] {
    // SAFETY: pages are plain bytes, contiguous in a slice.
    unsafe { std::slice::from_raw_parts(pages.as_ptr().cast(), pages.len() * PAGE_SIZE) }
}

fn as_bytes_mut(pages: &mut [Page]) -> &mut [u8] {
    // SAFETY: as `as_bytes`; any bytes are a valid page.
    unsafe { std::slice::from_raw_parts_mut(pages.as_mut_ptr().cast(), pages.len() * PAGE_SIZE) }
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let pages = args.next().unwrap_or(64) * 256;
    let rounds = args.next().unwrap_or(10);
    let len = pages * PAGE_SIZE;
    let dir = std::env::temp_dir();
    let open = |name: &str| {
        let path = dir.join(format!("pagebackup-seal-paths-{name}-{}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.set_len(len as u64).unwrap();
        file
    };
    let sealer = Sealer::new(&SealKey::random().unwrap()).unwrap();
    let mut corpus = Page::new_boxed_slice(pages);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (i, p) in corpus.iter_mut().enumerate() {
        for (k, b) in p.as_bytes_mut().iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Heap-like: small numbers, pointers, text.
            *b = if k % 8 < 4 { (x & 0x1f) as u8 } else { (i + k) as u8 };
        }
    }

    // The sealed file read back by the restores, and its tags.
    let sealed_file = open("restore");
    let mut tags: Vec<Tag> = Vec::with_capacity(pages);
    let mut sealed = corpus.clone();
    for (slot, p) in sealed.iter_mut().enumerate() {
        tags.push(sealer.seal(
            Identity {
                slot: slot as u32,
                generation: 1,
            },
            p.as_bytes_mut(),
        ));
    }
    sealed_file.write_all_at(as_bytes(&sealed), 0).unwrap();
    let plain_file = open("plain");
    plain_file.write_all_at(as_bytes(&corpus), 0).unwrap();
    let ro = Mapping::new(&sealed_file, len, false);
    let backup_file = open("backup");
    let mut rw = Mapping::new(&backup_file, len, true);

    let mut dst = Page::new_boxed_slice(RUN);
    let mut bounce = Page::new_boxed_slice(RUN);
    let id = |slot: usize, generation: u64| Identity {
        slot: slot as u32,
        generation,
    };
    let names = [
        "restore plain: pread",
        "restore sealed: pread, open in place",
        "restore sealed: open from a shared mapping",
        "backup plain: pwrite",
        "backup sealed: seal into a buffer, pwrite",
        "backup sealed: seal into a shared mapping",
    ];
    let mut times = [Duration::ZERO; 6];
    for round in 0..rounds {
        for (v, time) in times.iter_mut().enumerate() {
            if v >= 3 {
                punch(&backup_file, len);
            }
            let generation = round as u64 + 2;
            let t = Instant::now();
            for first in (0..pages).step_by(RUN) {
                let at = first * PAGE_SIZE;
                let run = &corpus[first..first + RUN];
                match v {
                    0 => plain_file.read_exact_at(as_bytes_mut(&mut dst), at as u64).unwrap(),
                    1 => {
                        sealed_file.read_exact_at(as_bytes_mut(&mut dst), at as u64).unwrap();
                        for (k, p) in dst.iter_mut().enumerate() {
                            assert!(sealer.open(id(first + k, 1), p.as_bytes_mut(), &tags[first + k]));
                        }
                    }
                    2 => {
                        let stored = ro.bytes()[at..at + RUN * PAGE_SIZE].chunks_exact(PAGE_SIZE);
                        for (k, (p, s)) in dst.iter_mut().zip(stored).enumerate() {
                            assert!(sealer.open_into(id(first + k, 1), s, p.as_bytes_mut(), &tags[first + k]));
                        }
                    }
                    3 => backup_file.write_all_at(as_bytes(run), at as u64).unwrap(),
                    4 => {
                        for (k, (b, p)) in bounce.iter_mut().zip(run).enumerate() {
                            let tag = sealer.seal_into(id(first + k, generation), p.as_bytes(), b.as_bytes_mut());
                            std::hint::black_box(tag);
                        }
                        backup_file.write_all_at(as_bytes(&bounce), at as u64).unwrap();
                    }
                    _ => {
                        let out = &mut rw.bytes_mut()[at..at + RUN * PAGE_SIZE];
                        for (k, (o, p)) in out.chunks_exact_mut(PAGE_SIZE).zip(run).enumerate() {
                            std::hint::black_box(sealer.seal_into(id(first + k, generation), p.as_bytes(), o));
                        }
                    }
                }
            }
            *time += t.elapsed();
        }
    }
    let gbs = |t: Duration| (rounds * len) as f64 / t.as_secs_f64() / 1e9;
    println!(
        "{}, {} MiB in runs of {RUN} pages, {rounds} rounds, interleaved:",
        sealer.cipher(),
        len >> 20
    );
    for (v, name) in names.iter().enumerate() {
        let base = if v < 3 { times[0] } else { times[3] };
        println!(
            "  {name:<58} {:>6.2} GB/s  {:.2}x plain pread/pwrite",
            gbs(times[v]),
            base.as_secs_f64() / times[v].as_secs_f64()
        );
    }
}
