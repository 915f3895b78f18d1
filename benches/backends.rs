//! Compares every compiled-in backend and the baselines on the same pages in
//! the same run: `cargo bench --all-features --bench backends`.
//!
//! Each adapter backs up the whole corpus in batches of 64 pages and frees
//! it again (only the backup timed), then backs it up, restores it and frees
//! it (only the restore timed). Baselines:
//!
//! - `baseline:memcpy`: the memory backend, a copy into RAM;
//! - `baseline:pwrite-memfd`: one `pwrite` (backup) or `pread` (restore) per
//!   page on a plain memfd, whose pages are punched out between rounds as a
//!   backend's drops would;
//! - `baseline:pwrite-file`, `baseline:uring-file`: one `pwrite`/`pread`,
//!   or one io_uring write/read, per page on an unlinked file in the
//!   temporary directory, where the file backend puts its file;
//! - `baseline:lz4_flex`, `baseline:zstd-1`: the raw codecs compressing each
//!   page into (and decompressing it from) a preallocated buffer, no store:
//!   the compressed backend's overhead is its distance from these.

use std::io::IoSliceMut;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pagebackup::{BackupBackend, BackupFlags, Handle, MemoryBackend, PAGE_SIZE, Page};
use pagebackup_testkit::PageSpec;

/// 64 MiB: larger than the caches, as the buffers a backup gives back are.
const CORPUS_PAGES: usize = 16384;
const BATCH: usize = 64;

/// One store under test: backs up and restores the whole corpus.
trait Adapter {
    fn name(&self) -> &str;
    fn backup(&mut self, corpus: &[Page]);
    fn restore(&mut self, out: &mut [Page]);
    fn clear(&mut self);
}

struct Backend {
    name: String,
    backend: Box<dyn BackupBackend>,
    handles: Vec<Handle>,
}

impl Adapter for Backend {
    fn name(&self) -> &str {
        &self.name
    }
    fn backup(&mut self, corpus: &[Page]) {
        for (k, chunk) in corpus.chunks(BATCH).enumerate() {
            let refs: Vec<&Page> = chunk.iter().collect();
            self.backend
                .backup_pages(&refs, (k * BATCH) as u64, BackupFlags::NONE, &mut self.handles)
                .unwrap();
        }
        self.backend.flush().unwrap();
    }
    fn restore(&mut self, out: &mut [Page]) {
        for (handles, dsts) in self.handles.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            let mut refs: Vec<&mut Page> = dsts.iter_mut().collect();
            self.backend.copy_pages(handles, &mut refs, None).unwrap();
        }
    }
    fn clear(&mut self) {
        self.backend.drop_handles(&self.handles).unwrap();
        self.handles.clear();
    }
}

/// One `pwrite` / `pread` per page on a plain memfd.
struct PerPage {
    name: &'static str,
    fd: OwnedFd,
    len: u64,
    /// Submit each page as its own io_uring operation instead of a syscall.
    ring: Option<io_uring::IoUring>,
}

impl PerPage {
    /// A plain memfd of `pages` pages.
    fn memfd(pages: usize) -> Self {
        let fd = rustix::fs::memfd_create("baseline", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        Self::with_fd("baseline:pwrite-memfd", fd, pages, false)
    }

    /// An unlinked file in the temporary directory, where the file backend puts its own.
    fn tmpfile(name: &'static str, pages: usize, uring: bool) -> Self {
        let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::CLOEXEC;
        let fd = rustix::fs::open(std::env::temp_dir(), flags, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        Self::with_fd(name, fd, pages, uring)
    }

    fn with_fd(name: &'static str, fd: OwnedFd, pages: usize, uring: bool) -> Self {
        let len = (pages * PAGE_SIZE) as u64;
        rustix::fs::ftruncate(&fd, len).unwrap();
        PerPage {
            name,
            fd,
            len,
            ring: uring.then(|| io_uring::IoUring::new(BATCH as u32).unwrap()),
        }
    }

    /// One io_uring operation per page, `BATCH` submitted together.
    fn uring(&mut self, pages: usize, mut op: impl FnMut(usize) -> io_uring::squeue::Entry) {
        let ring = self.ring.as_mut().expect("a ring");
        for start in (0..pages).step_by(BATCH) {
            let end = (start + BATCH).min(pages);
            for i in start..end {
                // SAFETY: the entry's buffer is a page of the corpus or of the
                // output, which outlives this call; we wait for every
                // completion before the next group and before returning.
                unsafe { ring.submission().push(&op(i)).unwrap() };
            }
            ring.submit_and_wait(end - start).unwrap();
            for cqe in ring.completion() {
                assert_eq!(cqe.result(), PAGE_SIZE as i32);
            }
        }
    }
}

impl Adapter for PerPage {
    fn name(&self) -> &str {
        self.name
    }
    fn backup(&mut self, corpus: &[Page]) {
        if self.ring.is_some() {
            let fd = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(&self.fd));
            return self.uring(corpus.len(), |i| {
                let page = corpus[i].as_bytes();
                io_uring::opcode::Write::new(fd, page.as_ptr(), PAGE_SIZE as u32)
                    .offset((i * PAGE_SIZE) as u64)
                    .build()
            });
        }
        for (i, page) in corpus.iter().enumerate() {
            rustix::io::pwrite(&self.fd, page.as_bytes(), (i * PAGE_SIZE) as u64).unwrap();
        }
    }
    fn restore(&mut self, out: &mut [Page]) {
        if self.ring.is_some() {
            let fd = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(&self.fd));
            let base = out.as_mut_ptr();
            return self.uring(out.len(), |i| {
                // SAFETY: i < out.len(), so the page is inside `out`.
                let page = unsafe { base.add(i) }.cast::<u8>();
                io_uring::opcode::Read::new(fd, page, PAGE_SIZE as u32)
                    .offset((i * PAGE_SIZE) as u64)
                    .build()
            });
        }
        for (i, page) in out.iter_mut().enumerate() {
            let mut buf = [IoSliceMut::new(page.as_bytes_mut())];
            rustix::io::preadv(&self.fd, &mut buf, (i * PAGE_SIZE) as u64).unwrap();
        }
    }
    fn clear(&mut self) {
        let mode = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        rustix::fs::fallocate(&self.fd, mode, 0, self.len).unwrap();
    }
}

/// A codec compressing each page into its own fixed-size stretch of one
/// buffer, and back: the work of a compressed store without the store.
struct RawCodec {
    name: &'static str,
    compress: fn(&Page, &mut [u8]) -> usize,
    decompress: fn(&[u8], &mut Page),
    buffer: Vec<u8>,
    lens: Vec<usize>,
}

/// Room per page in a [`RawCodec`] buffer: lz4's worst case and then some.
const STRIDE: usize = 2 * PAGE_SIZE;

impl RawCodec {
    fn new(name: &'static str, compress: fn(&Page, &mut [u8]) -> usize, decompress: fn(&[u8], &mut Page)) -> Self {
        RawCodec {
            name,
            compress,
            decompress,
            buffer: vec![0; CORPUS_PAGES * STRIDE],
            lens: Vec::new(),
        }
    }

    fn lz4() -> Self {
        Self::new(
            "baseline:lz4_flex",
            |p, out| lz4_flex::block::compress_into(p.as_bytes(), out).unwrap(),
            |src, p| {
                assert_eq!(
                    lz4_flex::block::decompress_into(src, p.as_bytes_mut()).unwrap(),
                    PAGE_SIZE
                )
            },
        )
    }

    fn zstd() -> Self {
        thread_local! {
            static C: std::cell::RefCell<zstd::bulk::Compressor<'static>> = std::cell::RefCell::new(zstd::bulk::Compressor::new(1).unwrap());
            static D: std::cell::RefCell<zstd::bulk::Decompressor<'static>> = std::cell::RefCell::new(zstd::bulk::Decompressor::new().unwrap());
        }
        Self::new(
            "baseline:zstd-1",
            |p, out| C.with(|c| c.borrow_mut().compress_to_buffer(p.as_bytes().as_slice(), out).unwrap()),
            |src, p| {
                D.with(|d| {
                    assert_eq!(
                        d.borrow_mut()
                            .decompress_to_buffer(src, p.as_bytes_mut().as_mut_slice())
                            .unwrap(),
                        PAGE_SIZE
                    )
                })
            },
        )
    }
}

impl Adapter for RawCodec {
    fn name(&self) -> &str {
        self.name
    }
    fn backup(&mut self, corpus: &[Page]) {
        for (page, out) in corpus.iter().zip(self.buffer.chunks_mut(STRIDE)) {
            self.lens.push((self.compress)(page, out));
        }
    }
    fn restore(&mut self, out: &mut [Page]) {
        for ((page, src), &len) in out.iter_mut().zip(self.buffer.chunks(STRIDE)).zip(&self.lens) {
            (self.decompress)(&src[..len], page);
        }
    }
    fn clear(&mut self) {
        self.lens.clear();
    }
}

fn adapters() -> Vec<Box<dyn Adapter>> {
    let backend = |name: &str, backend: Box<dyn BackupBackend>| -> Box<dyn Adapter> {
        Box::new(Backend {
            name: name.to_string(),
            backend,
            handles: Vec::new(),
        })
    };
    let mut all = vec![
        backend("baseline:memcpy", Box::new(MemoryBackend::new())),
        Box::new(PerPage::memfd(CORPUS_PAGES)) as Box<dyn Adapter>,
    ];
    #[cfg(feature = "shmem")]
    all.push(backend(
        "shmem",
        Box::new(pagebackup::shmem::ShmemBackend::with_capacity(1 << 30).unwrap()),
    ));
    all.push(Box::new(PerPage::tmpfile("baseline:pwrite-file", CORPUS_PAGES, false)));
    all.push(Box::new(PerPage::tmpfile("baseline:uring-file", CORPUS_PAGES, true)));
    #[cfg(feature = "file")]
    for spec in ["file:io=uring", "file:io=sync"] {
        all.push(backend(spec, pagebackup::open(spec).unwrap()));
    }
    all.push(Box::new(RawCodec::lz4()));
    all.push(Box::new(RawCodec::zstd()));
    #[cfg(feature = "compressed-lz4")]
    all.push(backend(
        "compressed:algo=lz4",
        pagebackup::open("compressed:algo=lz4").unwrap(),
    ));
    #[cfg(feature = "compressed-zstd")]
    all.push(backend(
        "compressed:algo=zstd,level=1",
        pagebackup::open("compressed:algo=zstd,level=1").unwrap(),
    ));
    all
}

fn corpus() -> Box<[Page]> {
    let mut pages = Page::new_boxed_slice(CORPUS_PAGES);
    for (i, page) in pages.iter_mut().enumerate() {
        PageSpec::mixed(0xbe7c4, i as u64).fill(page);
    }
    pages
}

/// Times `op` over `iters` rounds, with `setup` and `teardown` around each
/// round untimed.
fn timed(iters: u64, mut setup: impl FnMut(), mut op: impl FnMut(), mut teardown: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        setup();
        let start = Instant::now();
        op();
        total += start.elapsed();
        teardown();
    }
    total
}

fn compare(c: &mut Criterion) {
    let corpus = corpus();
    let mut out = Page::new_boxed_slice(CORPUS_PAGES);
    let mut adapters = adapters();
    let bytes = (CORPUS_PAGES * PAGE_SIZE) as u64;

    // Every adapter must give the corpus back exactly before it is timed.
    for a in adapters.iter_mut() {
        a.backup(&corpus);
        a.restore(&mut out);
        assert!(
            out.iter().zip(corpus.iter()).all(|(x, y)| x == y),
            "{} restored the wrong bytes",
            a.name()
        );
        a.clear();
    }

    let mut group = c.benchmark_group("backup");
    group.throughput(Throughput::Bytes(bytes));
    for a in adapters.iter_mut() {
        let name = a.name().to_string();
        let a = std::cell::RefCell::new(a);
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || {},
                    || a.borrow_mut().backup(&corpus),
                    || a.borrow_mut().clear(),
                )
            })
        });
    }
    group.finish();

    // Each restore reads a fresh backup, as a real restore would (the
    // backup and the drop around it are not timed).
    let mut group = c.benchmark_group("restore");
    group.throughput(Throughput::Bytes(bytes));
    for a in adapters.iter_mut() {
        let name = a.name().to_string();
        let a = std::cell::RefCell::new(a);
        let out = std::cell::RefCell::new(&mut out);
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || a.borrow_mut().backup(&corpus),
                    || a.borrow_mut().restore(&mut out.borrow_mut()),
                    || a.borrow_mut().clear(),
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = compare
}
criterion_main!(benches);
