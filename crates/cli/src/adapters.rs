//! Adapters: every store the benchmark compares — backends and baselines —
//! behind one interface, so that each runs the same pages in the same way.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pagebackup::compressed::{Algorithm, CompressedConfig};
use pagebackup::raw::params::Spec;
use pagebackup::shmem::ShmemConfig;
use pagebackup::{BackupBackend, BackupFlags, Handle, PAGE_SIZE, Page};

/// An error an adapter reports.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `e` and every error of its chain of sources on one line, outermost
/// first: each level's `Display` says only its own part.
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let chain: Vec<String> = std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect();
    chain.join(": ")
}

/// What an adapter keeps for one batch it backed up, to restore and free it.
#[derive(Debug)]
pub enum Stored {
    /// Backend handles.
    Handles(Vec<Handle>),
    /// `count` pages at page offset `first` of a file or device.
    Slots {
        /// The first page offset.
        first: u64,
        /// Pages.
        count: usize,
    },
    /// Compressed pages, back to back, with each one's length.
    Compressed {
        /// The compressed bytes.
        data: Vec<u8>,
        /// Each page's compressed length.
        lens: Vec<usize>,
    },
}

pub use crate::report::Op;

/// A store under test. Methods take `&self`: the benchmark calls them from
/// several threads at once, each thread on pages of its own.
pub trait Adapter: Sync {
    /// The name in reports: a backend spec, or `baseline:...`, `kernel:...`.
    fn name(&self) -> &str;
    /// For a backend: the baseline its `op` figures are compared with.
    fn baseline(&self, op: Op) -> Option<String>;
    /// Stores `pages`, page `k` at index `first_idx + k`.
    fn backup(&self, pages: &[&Page], first_idx: u64) -> Result<Stored, Error>;
    /// Makes every backup so far complete (a backend's `flush`).
    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
    /// Copies what `stored` holds into `dsts`.
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error>;
    /// Frees what `stored` holds.
    fn release(&self, stored: Stored) -> Result<(), Error>;
    /// Bytes of memory or storage the stored pages take now, if known.
    fn footprint(&self) -> Option<u64>;
}

/// A pagebackup backend.
pub struct Backend {
    name: String,
    backend: Box<dyn BackupBackend>,
    baselines: [Option<String>; 2],
    /// `seal=on`: [`CIPHER`] runs beside it, the cipher's own speed.
    sealed: bool,
    /// shmem's `reuse`: the bytes of dropped pages it keeps resident for
    /// the next backups.
    reuse: Option<u64>,
}

impl Backend {
    /// The backend `spec` opens, compared with the baseline that fits it.
    pub fn open(spec: &str) -> Result<Backend, Error> {
        let backend = pagebackup::open(spec)?;
        let mut reuse = None;
        let baselines = match backend.name() {
            "memory" => [Some(PREFAULTED.into()), Some(PREFAULTED.into())],
            // With reuse (the default), backups after the first round go
            // into memory kept since the last round's drops (steady state;
            // the best round is kept): a copy into pre-faulted memory is
            // their limit. Without it every backup allocates, as one
            // pwrite per page into a memfd does.
            "shmem" => {
                let kept = ShmemConfig::from_params(&Spec::parse(spec)?.params)?.reuse;
                reuse = Some(kept);
                let backup = if kept > 0 { PREFAULTED } else { "baseline:pwrite-memfd" };
                [Some(backup.into()), Some(PREFAULTED.into())]
            }
            "file" if spec_param(spec, "direct") == Some("on") => [Some(DD_DIRECT.into()), Some(DD_DIRECT.into())],
            "file" => [Some("baseline:pwrite-file".into()), Some("baseline:pwrite-file".into())],
            "redis" => [Some(REDIS_PER_PAGE.into()), Some(REDIS_PER_PAGE.into())],
            "compressed" => {
                let params = Spec::parse(spec)?.params;
                let codec = codec_baseline(CompressedConfig::from_params(&params)?.algorithm);
                [Some(codec.clone()), Some(codec)]
            }
            _ => [None, None],
        };
        Ok(Backend {
            name: crate::report::shown(spec),
            backend,
            baselines,
            sealed: spec_param(spec, "seal") == Some("on"),
            reuse,
        })
    }

    /// What a reader of the figures should know before comparing them,
    /// when the bench backs up `pages` a round: a shmem whose `reuse`
    /// bound is below that keeps only part of a round's memory for the
    /// next, so its backups are measured mostly cold, not in the steady
    /// state its baseline (`baseline:copy-prefaulted`) stands for.
    pub fn notice(&self, pages: usize) -> Option<String> {
        let bytes = (pages * PAGE_SIZE) as u64;
        let reuse = self.reuse.filter(|&r| r > 0 && r < bytes)?;
        Some(format!(
            "{}: its reuse bound ({} KiB) is below the {} KiB a round backs up, so after the first round the \
             backups beyond it take new memory as cold ones do; for the steady state its baseline stands for, \
             give it reuse={}KiB or more",
            self.name,
            reuse >> 10,
            bytes >> 10,
            bytes.div_ceil(1024)
        ))
    }

    /// The baselines this backend is compared with, without repeats, and
    /// [`CIPHER`] beside a sealed one.
    pub fn baselines(&self) -> impl Iterator<Item = &str> {
        let [backup, restore] = &self.baselines;
        let restore = restore.as_ref().filter(|r| Some(*r) != backup.as_ref());
        let cipher = self.sealed.then_some(CIPHER);
        backup.iter().chain(restore).map(String::as_str).chain(cipher)
    }
}

/// The name of the redis baseline of one round trip per page
/// (`crate::redis_bench::RedisPerPage`).
pub const REDIS_PER_PAGE: &str = "baseline:redis-per-page";

/// The name of [`Prefaulted`], the physical limit of a copy.
pub const PREFAULTED: &str = "baseline:copy-prefaulted";

/// The name of [`Cipher`], the sealing cipher's own speed.
pub const CIPHER: &str = "baseline:cipher";

/// Every baseline `--baselines all` runs, besides the codec of each
/// compressed spec.
pub const ALL_BASELINES: [&str; 10] = [
    PREFAULTED,
    CIPHER,
    "baseline:pwrite-memfd",
    PWRITEV_MEMFD,
    "baseline:pwrite-file",
    "baseline:uring-file",
    DD_DIRECT,
    "baseline:lz4_flex",
    LZ4_C,
    "baseline:zstd-1",
];

/// The name of the lz4 baseline decoded by the C library
/// ([`RawCodec::lz4_c`]): the fastest restore any lz4 store can reach.
pub const LZ4_C: &str = "baseline:lz4-c";

/// The baseline adapter called `name`, for a corpus of `pages` pages.
pub fn baseline(name: &str, pages: usize) -> Result<Box<dyn Adapter>, Error> {
    Ok(match name {
        PREFAULTED => Box::new(Prefaulted::new(pages)),
        CIPHER => Box::new(Cipher::new(pages)?),
        "baseline:pwrite-memfd" => Box::new(PerPage::memfd(pages)?),
        "baseline:pwrite-file" => Box::new(PerPage::file(pages, false)?),
        "baseline:uring-file" => Box::new(PerPage::file(pages, true)?),
        DD_DIRECT => Box::new(PerBatch::direct_file(pages)?),
        PWRITEV_MEMFD => Box::new(PerBatch::memfd(pages)?),
        "baseline:lz4_flex" => Box::new(RawCodec::lz4()),
        LZ4_C => Box::new(RawCodec::lz4_c()),
        _ => match name.strip_prefix("baseline:zstd-") {
            Some(level) => Box::new(RawCodec::zstd(
                level.parse().map_err(|_| format!("bad zstd level in {name}"))?,
            )),
            None => return Err(format!("no baseline called {name}").into()),
        },
    })
}

/// Pages per lock of a [`Prefaulted`] store.
const CHUNK: usize = 64;

/// `baseline:copy-prefaulted`: one copy per page into a store allocated and
/// faulted in once, before the first round, and reused by every round — what
/// a copy costs with no allocator and no page faults, the physical limit of
/// any backend that copies. (The memory backend, by contrast, allocates a
/// page for every backup and frees it on drop.)
pub struct Prefaulted {
    chunks: Box<[Mutex<Box<[Page]>>]>,
    held: AtomicU64,
}

impl Prefaulted {
    /// A store of `pages` pages, every one written once so that it is resident.
    pub fn new(pages: usize) -> Prefaulted {
        let chunks = (0..pages.div_ceil(CHUNK))
            .map(|c| {
                let mut chunk = Page::new_boxed_slice(CHUNK.min(pages - c * CHUNK));
                for page in chunk.iter_mut() {
                    page.as_bytes_mut().fill(0xa5);
                }
                Mutex::new(chunk)
            })
            .collect();
        Prefaulted {
            chunks,
            held: AtomicU64::new(0),
        }
    }

    /// Counts `count` pages stored from `first_idx` as held: their batch.
    fn backup_count(&self, count: usize, first_idx: u64) -> Result<Stored, Error> {
        self.held.fetch_add(count as u64, Ordering::Relaxed);
        Ok(Stored::Slots {
            first: first_idx,
            count,
        })
    }

    /// Runs `f` on page `idx` of the store and the page of the batch at `k`.
    fn each(&self, first_idx: u64, count: usize, mut f: impl FnMut(usize, &mut Page)) -> Result<(), Error> {
        let mut k = 0;
        while k < count {
            let idx = first_idx as usize + k;
            let (c, at) = (idx / CHUNK, idx % CHUNK);
            let mut chunk = self
                .chunks
                .get(c)
                .ok_or("past the end of the pre-faulted store")?
                .lock()
                .map_err(|_| "store lock poisoned")?;
            let n = (CHUNK - at).min(count - k).min(chunk.len().saturating_sub(at));
            if n == 0 {
                return Err("past the end of the pre-faulted store".into());
            }
            for (j, page) in chunk[at..at + n].iter_mut().enumerate() {
                f(k + j, page);
            }
            k += n;
        }
        Ok(())
    }
}

impl Adapter for Prefaulted {
    fn name(&self) -> &str {
        PREFAULTED
    }
    fn baseline(&self, _: Op) -> Option<String> {
        None
    }
    fn backup(&self, pages: &[&Page], first_idx: u64) -> Result<Stored, Error> {
        self.each(first_idx, pages.len(), |k, slot| slot.clone_from(pages[k]))?;
        self.backup_count(pages.len(), first_idx)
    }
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
        let &Stored::Slots { first, count } = stored else {
            return Err("not a pre-faulted batch".into());
        };
        self.each(first, count.min(dsts.len()), |k, slot| dsts[k].clone_from(slot))
    }
    fn release(&self, stored: Stored) -> Result<(), Error> {
        let Stored::Slots { count, .. } = stored else {
            return Err("not a pre-faulted batch".into());
        };
        // The pages stay allocated and resident for the next round.
        self.held.fetch_sub(count as u64, Ordering::Relaxed);
        Ok(())
    }
    fn footprint(&self) -> Option<u64> {
        Some(self.held.load(Ordering::Relaxed) * PAGE_SIZE as u64)
    }
}

/// `baseline:cipher`: each page sealed (AES-256-GCM, or ChaCha20-Poly1305
/// where the CPU has no AES instructions: the cipher `seal=on` uses) from
/// the caller's page into a pre-faulted store, and opened from there into
/// the destination — the cipher's own speed on 4 KiB pages, out of place,
/// with no I/O: the limit of a sealed backend.
pub struct Cipher {
    store: Prefaulted,
    sealer: pagebackup::raw::seal::Sealer,
    /// Each stored page's write counter (its nonce) and tag.
    tags: Mutex<Vec<(u64, pagebackup::raw::seal::Tag)>>,
}

impl Cipher {
    /// A store of `pages` sealed pages under a random key.
    pub fn new(pages: usize) -> Result<Cipher, Error> {
        use pagebackup::raw::seal::{SealKey, Sealer};
        Ok(Cipher {
            store: Prefaulted::new(pages),
            sealer: Sealer::new(&SealKey::random()?)?,
            tags: Mutex::new(vec![(0, [0; 16]); pages]),
        })
    }
}

impl Adapter for Cipher {
    fn name(&self) -> &str {
        CIPHER
    }
    fn baseline(&self, _: Op) -> Option<String> {
        None
    }
    fn backup(&self, pages: &[&Page], first_idx: u64) -> Result<Stored, Error> {
        let mut tags = self.tags.lock().map_err(|_| "tag lock poisoned")?;
        self.store.each(first_idx, pages.len(), |k, slot| {
            let idx = first_idx as usize + k;
            let (counter, tag) = &mut tags[idx];
            *counter += 1;
            let id = pagebackup::raw::seal::Identity {
                slot: idx as u32,
                generation: *counter,
            };
            *tag = self.sealer.seal_into(id, pages[k].as_bytes(), slot.as_bytes_mut());
        })?;
        drop(tags);
        self.store.backup_count(pages.len(), first_idx)
    }
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
        let &Stored::Slots { first, count } = stored else {
            return Err("not a sealed batch".into());
        };
        let tags = self.tags.lock().map_err(|_| "tag lock poisoned")?;
        let mut failed = false;
        self.store.each(first, count.min(dsts.len()), |k, slot| {
            let idx = first as usize + k;
            let (generation, tag) = tags[idx];
            let id = pagebackup::raw::seal::Identity {
                slot: idx as u32,
                generation,
            };
            failed |= !self.sealer.open_into(id, slot.as_bytes(), dsts[k].as_bytes_mut(), &tag);
        })?;
        if failed {
            return Err("a sealed page failed authentication".into());
        }
        Ok(())
    }
    fn release(&self, stored: Stored) -> Result<(), Error> {
        self.store.release(stored)
    }
    fn footprint(&self) -> Option<u64> {
        self.store.footprint()
    }
}

/// The name of [`PerBatch::direct_file`], the device's sequential limit.
pub const DD_DIRECT: &str = "baseline:dd-direct";

/// The name of [`PerBatch::memfd`], the fastest way pages enter new shmem.
pub const PWRITEV_MEMFD: &str = "baseline:pwritev-memfd";

/// One positioned vectored write (read) of the whole batch per call, at the
/// batch's place in a file.
pub struct PerBatch {
    name: &'static str,
    fd: OwnedFd,
    len: u64,
}

impl PerBatch {
    /// `baseline:dd-direct`: what `dd oflag=direct` (and `iflag=direct`)
    /// does, in an unlinked file in the temporary directory (where the file
    /// backend puts its own) opened `O_DIRECT`; with the default batch of
    /// 64 pages, `bs=256K`. The sequential limit of the device, which the
    /// page cache does not blur.
    pub fn direct_file(pages: usize) -> Result<PerBatch, Error> {
        Self::sized(DD_DIRECT, unlinked_file(rustix::fs::OFlags::DIRECT)?, pages)
    }

    /// `baseline:pwritev-memfd`: one `pwritev` per batch into a memfd, each
    /// backup into pages the kernel allocates and fills in one call (the
    /// floor of a backup into new shmem memory, one syscall per batch
    /// instead of `baseline:pwrite-memfd`'s one per page).
    pub fn memfd(pages: usize) -> Result<PerBatch, Error> {
        let fd = rustix::fs::memfd_create("pagebackup-baseline", rustix::fs::MemfdFlags::CLOEXEC)?;
        Self::sized(PWRITEV_MEMFD, fd, pages)
    }

    /// A file of `pages` pages (sparse).
    fn sized(name: &'static str, fd: OwnedFd, pages: usize) -> Result<PerBatch, Error> {
        let len = (pages * PAGE_SIZE) as u64;
        rustix::fs::ftruncate(&fd, len)?;
        Ok(PerBatch { name, fd, len })
    }
}

impl Adapter for PerBatch {
    fn name(&self) -> &str {
        self.name
    }
    fn baseline(&self, _: Op) -> Option<String> {
        None
    }
    fn backup(&self, pages: &[&Page], first_idx: u64) -> Result<Stored, Error> {
        let mut offset = first_idx * PAGE_SIZE as u64;
        // Pages are page-aligned, as O_DIRECT wants; a short write goes on.
        let mut done = 0;
        while done < pages.len() {
            let iov: Vec<IoSlice<'_>> = pages[done..].iter().map(|p| IoSlice::new(p.as_bytes())).collect();
            let written = rustix::io::pwritev(&self.fd, &iov, offset)?;
            if written == 0 || written % PAGE_SIZE != 0 {
                return Err(format!("{}: a write of {written} bytes", self.name).into());
            }
            done += written / PAGE_SIZE;
            offset += written as u64;
        }
        Ok(Stored::Slots {
            first: first_idx,
            count: pages.len(),
        })
    }
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
        let &Stored::Slots { first, count } = stored else {
            return Err("not a direct-file batch".into());
        };
        let mut offset = first * PAGE_SIZE as u64;
        let mut done = 0;
        while done < count.min(dsts.len()) {
            let mut iov: Vec<IoSliceMut<'_>> = dsts[done..count]
                .iter_mut()
                .map(|d| IoSliceMut::new(d.as_bytes_mut()))
                .collect();
            let read = rustix::io::preadv(&self.fd, &mut iov, offset)?;
            if read == 0 || read % PAGE_SIZE != 0 {
                return Err(format!("{}: a read of {read} bytes", self.name).into());
            }
            done += read / PAGE_SIZE;
            offset += read as u64;
        }
        Ok(())
    }
    fn release(&self, stored: Stored) -> Result<(), Error> {
        punch_slots(&self.fd, self.len, stored)
    }
    fn footprint(&self) -> Option<u64> {
        allocated_bytes(&self.fd)
    }
}

/// Frees the pages a [`Stored::Slots`] names in a file of `len` bytes.
fn punch_slots(fd: &OwnedFd, len: u64, stored: Stored) -> Result<(), Error> {
    let Stored::Slots { first, count } = stored else {
        return Err("not a batch of file slots".into());
    };
    let mode = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
    let page = PAGE_SIZE as u64;
    rustix::fs::fallocate(fd, mode, first * page, (count as u64 * page).min(len))?;
    Ok(())
}

/// Bytes allocated to a file.
fn allocated_bytes(fd: &OwnedFd) -> Option<u64> {
    rustix::fs::fstat(fd).ok().map(|s| s.st_blocks as u64 * 512)
}

/// An unlinked file (mode 0600) in the temporary directory, opened with
/// `flags` besides read-write and close-on-exec.
fn unlinked_file(flags: rustix::fs::OFlags) -> Result<OwnedFd, Error> {
    let flags = flags | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::CLOEXEC;
    let dir = std::env::temp_dir();
    rustix::fs::open(&dir, flags, rustix::fs::Mode::from_raw_mode(0o600))
        .map_err(|e| format!("an unlinked file in {}: {e}", dir.display()).into())
}

/// The raw-codec baseline of a compressed backend's codec:
/// `baseline:lz4_flex` or `baseline:zstd-L` (a codec added later gets a
/// name [`baseline`] refuses until it has one).
pub fn codec_baseline(algorithm: Algorithm) -> String {
    match algorithm {
        Algorithm::Lz4 => "baseline:lz4_flex".into(),
        Algorithm::Zstd { level } => format!("baseline:zstd-{level}"),
        other => format!("baseline:{other}"),
    }
}

/// The value of `key` in the spec `NAME:key=value,...`.
pub fn spec_param<'a>(spec: &'a str, key: &str) -> Option<&'a str> {
    spec.split_once(':')
        .and_then(|(_, rest)| {
            rest.split(',')
                .find_map(|kv| kv.trim().strip_prefix(key)?.trim().strip_prefix('='))
        })
        .map(str::trim)
}

impl Adapter for Backend {
    fn name(&self) -> &str {
        &self.name
    }
    fn baseline(&self, op: Op) -> Option<String> {
        match op {
            Op::Backup => self.baselines[0].clone(),
            Op::Restore => self.baselines[1].clone(),
            Op::Drop => None,
        }
    }
    fn backup(&self, pages: &[&Page], first_idx: u64) -> Result<Stored, Error> {
        let mut handles = Vec::with_capacity(pages.len());
        if pages.len() == 1 {
            handles.push(self.backend.backup_page(pages[0], first_idx, BackupFlags::NONE)?);
        } else {
            self.backend
                .backup_pages(pages, first_idx, BackupFlags::NONE, &mut handles)?;
        }
        Ok(Stored::Handles(handles))
    }
    fn flush(&self) -> Result<(), Error> {
        Ok(self.backend.flush()?)
    }
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
        let Stored::Handles(handles) = stored else {
            return Err("not a backend's batch".into());
        };
        if handles.len() == 1 {
            return Ok(self.backend.copy_page(dsts[0], handles[0], None)?);
        }
        Ok(self.backend.copy_pages(handles, dsts, None)?)
    }
    fn release(&self, stored: Stored) -> Result<(), Error> {
        let Stored::Handles(handles) = stored else {
            return Err("not a backend's batch".into());
        };
        Ok(self.backend.drop_handles(&handles)?)
    }
    fn footprint(&self) -> Option<u64> {
        let stats = self.backend.stats();
        Some(stats.memory_used.max(stats.stored_bytes))
    }
}

/// One `pwrite`/`pread` (or one io_uring write/read) per page on a memfd or
/// an unlinked file.
pub struct PerPage {
    name: &'static str,
    fd: OwnedFd,
    len: u64,
    ring: Option<Mutex<io_uring::IoUring>>,
}

impl PerPage {
    /// `baseline:pwrite-memfd`: a plain memfd of `pages` pages.
    pub fn memfd(pages: usize) -> Result<PerPage, Error> {
        let fd = rustix::fs::memfd_create("pagebackup-baseline", rustix::fs::MemfdFlags::CLOEXEC)?;
        Self::with_fd("baseline:pwrite-memfd", fd, pages, false)
    }

    /// `baseline:pwrite-file` or, with `uring`, `baseline:uring-file`: an
    /// unlinked file in the temporary directory, where the file backend puts its own.
    pub fn file(pages: usize, uring: bool) -> Result<PerPage, Error> {
        let fd = unlinked_file(rustix::fs::OFlags::empty())?;
        let name = if uring {
            "baseline:uring-file"
        } else {
            "baseline:pwrite-file"
        };
        Self::with_fd(name, fd, pages, uring)
    }

    fn with_fd(name: &'static str, fd: OwnedFd, pages: usize, uring: bool) -> Result<PerPage, Error> {
        let len = (pages * PAGE_SIZE) as u64;
        rustix::fs::ftruncate(&fd, len)?;
        let ring = if uring {
            Some(Mutex::new(io_uring::IoUring::new(64)?))
        } else {
            None
        };
        Ok(PerPage { name, fd, len, ring })
    }

    /// One io_uring operation per page, submitted 64 at a time.
    fn per_page_uring(&self, count: usize, op: impl Fn(usize) -> io_uring::squeue::Entry) -> Result<(), Error> {
        let mut ring = self
            .ring
            .as_ref()
            .expect("a ring")
            .lock()
            .map_err(|_| "ring lock poisoned")?;
        for start in (0..count).step_by(64) {
            let end = (start + 64).min(count);
            for i in start..end {
                // Each group's completions are reaped before the next group
                // and before returning.
                // SAFETY: every entry's buffer is a caller's page that outlives this call.
                unsafe { ring.submission().push(&op(i)) }.map_err(|_| "submission queue full")?;
            }
            ring.submit_and_wait(end - start)?;
            for cqe in ring.completion() {
                if cqe.result() != PAGE_SIZE as i32 {
                    return Err(format!("io_uring transfer returned {}", cqe.result()).into());
                }
            }
        }
        Ok(())
    }
}

impl Adapter for PerPage {
    fn name(&self) -> &str {
        self.name
    }
    fn baseline(&self, _: Op) -> Option<String> {
        None
    }
    fn backup(&self, pages: &[&Page], first_idx: u64) -> Result<Stored, Error> {
        let offset = |i: usize| (first_idx + i as u64) * PAGE_SIZE as u64;
        if self.ring.is_some() {
            let fd = io_uring::types::Fd(self.fd.as_raw_fd());
            self.per_page_uring(pages.len(), |i| {
                io_uring::opcode::Write::new(fd, pages[i].as_bytes().as_ptr(), PAGE_SIZE as u32)
                    .offset(offset(i))
                    .build()
            })?;
        } else {
            for (i, page) in pages.iter().enumerate() {
                rustix::io::pwrite(&self.fd, page.as_bytes(), offset(i))?;
            }
        }
        Ok(Stored::Slots {
            first: first_idx,
            count: pages.len(),
        })
    }
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
        let &Stored::Slots { first, .. } = stored else {
            return Err("not a per-page batch".into());
        };
        let offset = |i: usize| (first + i as u64) * PAGE_SIZE as u64;
        if self.ring.is_some() {
            let fd = io_uring::types::Fd(self.fd.as_raw_fd());
            let ptrs: Vec<*mut u8> = dsts.iter_mut().map(|d| d.as_bytes_mut().as_mut_ptr()).collect();
            return self.per_page_uring(dsts.len(), |i| {
                io_uring::opcode::Read::new(fd, ptrs[i], PAGE_SIZE as u32)
                    .offset(offset(i))
                    .build()
            });
        }
        for (i, dst) in dsts.iter_mut().enumerate() {
            rustix::io::preadv(&self.fd, &mut [IoSliceMut::new(dst.as_bytes_mut())], offset(i))?;
        }
        Ok(())
    }
    fn release(&self, stored: Stored) -> Result<(), Error> {
        punch_slots(&self.fd, self.len, stored)
    }
    fn footprint(&self) -> Option<u64> {
        allocated_bytes(&self.fd)
    }
}

/// A codec alone: each page compressed into a buffer and back, no store.
pub struct RawCodec {
    name: String,
    codec: RawKind,
    held: AtomicU64,
}

/// What a [`RawCodec`] encodes and decodes with.
#[derive(Clone, Copy)]
enum RawKind {
    /// lz4_flex both ways (safe Rust).
    Lz4Flex,
    /// lz4_flex's encoder (the same block format) and the C library's
    /// `LZ4_decompress_safe`.
    Lz4C,
    /// zstd at this level.
    Zstd(i32),
}

impl RawCodec {
    /// `baseline:lz4_flex`.
    pub fn lz4() -> RawCodec {
        RawCodec {
            name: "baseline:lz4_flex".into(),
            codec: RawKind::Lz4Flex,
            held: AtomicU64::new(0),
        }
    }

    /// `baseline:lz4-c`: the same blocks as `baseline:lz4_flex`, decoded by
    /// the C library, the decoder the compressed backend restores with.
    pub fn lz4_c() -> RawCodec {
        RawCodec {
            name: LZ4_C.into(),
            codec: RawKind::Lz4C,
            held: AtomicU64::new(0),
        }
    }

    /// `baseline:zstd-L`.
    pub fn zstd(level: i32) -> RawCodec {
        RawCodec {
            name: format!("baseline:zstd-{level}"),
            codec: RawKind::Zstd(level),
            held: AtomicU64::new(0),
        }
    }
}

impl Adapter for RawCodec {
    fn name(&self) -> &str {
        &self.name
    }
    fn baseline(&self, _: Op) -> Option<String> {
        None
    }
    fn backup(&self, pages: &[&Page], _: u64) -> Result<Stored, Error> {
        let mut data = vec![0u8; pages.len() * (2 * PAGE_SIZE)];
        let mut lens = Vec::with_capacity(pages.len());
        let mut at = 0;
        for page in pages {
            let out = &mut data[at..at + 2 * PAGE_SIZE];
            let len = match self.codec {
                RawKind::Zstd(level) => ZSTD.with(|z| {
                    z.borrow_mut()
                        .compressor(level)?
                        .compress_to_buffer(page.as_bytes().as_slice(), out)
                })?,
                RawKind::Lz4Flex | RawKind::Lz4C => lz4_flex::block::compress_into(page.as_bytes(), out)?,
            };
            lens.push(len);
            at += len;
        }
        data.truncate(at);
        self.held.fetch_add(at as u64, Ordering::Relaxed);
        Ok(Stored::Compressed { data, lens })
    }
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
        let Stored::Compressed { data, lens } = stored else {
            return Err("not a codec's batch".into());
        };
        let mut at = 0;
        for (dst, &len) in dsts.iter_mut().zip(lens) {
            let src = &data[at..at + len];
            let out = match self.codec {
                RawKind::Zstd(_) => ZSTD.with(|z| {
                    z.borrow_mut()
                        .decompressor()?
                        .decompress_to_buffer(src, dst.as_bytes_mut().as_mut_slice())
                })?,
                RawKind::Lz4Flex => lz4_flex::block::decompress_into(src, dst.as_bytes_mut())?,
                RawKind::Lz4C => lz4::block::decompress_to_buffer(src, Some(PAGE_SIZE as i32), dst.as_bytes_mut())?,
            };
            if out != PAGE_SIZE {
                return Err(format!("{} decoded {out} bytes", self.name).into());
            }
            at += len;
        }
        Ok(())
    }
    fn release(&self, stored: Stored) -> Result<(), Error> {
        let Stored::Compressed { data, .. } = stored else {
            return Err("not a codec's batch".into());
        };
        self.held.fetch_sub(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn footprint(&self) -> Option<u64> {
        Some(self.held.load(Ordering::Relaxed))
    }
}

/// zstd contexts kept per thread, as the compressed backend keeps its own.
#[derive(Default)]
struct ZstdContexts {
    compressor: Option<(i32, zstd::bulk::Compressor<'static>)>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl ZstdContexts {
    fn compressor(&mut self, level: i32) -> std::io::Result<&mut zstd::bulk::Compressor<'static>> {
        if self.compressor.as_ref().is_none_or(|(l, _)| *l != level) {
            self.compressor = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        Ok(&mut self.compressor.as_mut().expect("just made").1)
    }

    fn decompressor(&mut self) -> std::io::Result<&mut zstd::bulk::Decompressor<'static>> {
        if self.decompressor.is_none() {
            self.decompressor = Some(zstd::bulk::Decompressor::new()?);
        }
        Ok(self.decompressor.as_mut().expect("just made"))
    }
}

thread_local! {
    static ZSTD: std::cell::RefCell<ZstdContexts> = std::cell::RefCell::new(ZstdContexts::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_names_its_baselines_once() {
        let names = |spec: &str| {
            Backend::open(spec)
                .unwrap()
                .baselines()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("memory"), [PREFAULTED]);
        assert_eq!(names("shmem"), [PREFAULTED]);
        assert_eq!(names("shmem:reuse=0"), ["baseline:pwrite-memfd", PREFAULTED]);
        assert_eq!(names("file:direct=on"), [DD_DIRECT]);
        assert_eq!(names("file"), ["baseline:pwrite-file"]);
        assert_eq!(names("file:seal=on"), ["baseline:pwrite-file", CIPHER]);
        assert_eq!(names("compressed:algo=zstd,level=3"), ["baseline:zstd-3"]);
        for name in ALL_BASELINES {
            assert_eq!(baseline(name, 8).unwrap().name(), name);
        }
        assert!(baseline("baseline:tape", 8).is_err());
    }

    #[test]
    fn the_prefaulted_store_gives_pages_back_across_chunks() {
        let store = Prefaulted::new(2 * CHUNK + 10);
        let pages: Vec<Box<Page>> = (0..20u8)
            .map(|i| {
                let mut p = Page::new_boxed();
                p.as_bytes_mut().fill(i);
                p
            })
            .collect();
        let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
        let stored = store.backup(&refs, CHUNK as u64 - 5).unwrap();
        assert_eq!(store.footprint(), Some(20 * PAGE_SIZE as u64));
        let mut out = Page::new_boxed_slice(20);
        let mut dsts: Vec<&mut Page> = out.iter_mut().collect();
        store.restore(&stored, &mut dsts).unwrap();
        assert!(out.iter().zip(&pages).all(|(o, p)| o == &**p));
        store.release(stored).unwrap();
        assert_eq!(store.footprint(), Some(0));
        assert!(
            store.backup(&refs, 2 * CHUNK as u64).is_err(),
            "20 pages from 128 overrun 138"
        );
    }

    #[test]
    fn the_cipher_baseline_gives_pages_back_and_stores_ciphertext() {
        let cipher = Cipher::new(CHUNK + 4).unwrap();
        let pages: Vec<Box<Page>> = (0..8u8)
            .map(|i| {
                let mut p = Page::new_boxed();
                p.as_bytes_mut().fill(i + 1);
                p
            })
            .collect();
        let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
        for _round in 0..2 {
            let stored = cipher.backup(&refs, CHUNK as u64 - 4).unwrap();
            let mut held = Vec::new();
            cipher
                .store
                .each(CHUNK as u64 - 4, 8, |_, slot| held.push(slot.clone()))
                .unwrap();
            assert!(held.iter().zip(&pages).all(|(h, p)| h != &**p), "ciphertext is stored");
            let mut out = Page::new_boxed_slice(8);
            let mut dsts: Vec<&mut Page> = out.iter_mut().collect();
            cipher.restore(&stored, &mut dsts).unwrap();
            assert!(out.iter().zip(&pages).all(|(o, p)| o == &**p));
            cipher.release(stored).unwrap();
        }
        assert_eq!(cipher.footprint(), Some(0));
    }

    #[test]
    fn codec_baselines_follow_the_spec() {
        let codec = |spec: &str| {
            let backend = Backend::open(spec).unwrap();
            let [backup, restore] = backend.baselines;
            assert_eq!(backup, restore, "{spec}");
            backup.unwrap()
        };
        assert_eq!(codec("compressed"), "baseline:lz4_flex");
        assert_eq!(codec("compressed:algo=lz4,limit=1MiB"), "baseline:lz4_flex");
        assert_eq!(codec("compressed:algo=zstd"), "baseline:zstd-1");
        assert_eq!(codec("compressed:level=7, algo = zstd"), "baseline:zstd-7");
    }

    #[test]
    fn a_shmem_whose_reuse_bound_is_below_a_round_is_noticed() {
        let open = |spec: &str| Backend::open(spec).unwrap();
        let notice = open("shmem:reuse=1MiB").notice(512).expect("2 MiB a round, 1 MiB kept");
        assert!(
            notice.starts_with("shmem:reuse=1MiB: its reuse bound (1024 KiB) is below the 2048 KiB"),
            "{notice}"
        );
        assert!(notice.ends_with("give it reuse=2048KiB or more"), "{notice}");
        assert_eq!(open("shmem:reuse=1MiB").notice(256), None, "a round fits the bound");
        assert_eq!(open("shmem:reuse=0").notice(512), None, "cold on purpose");
        assert_eq!(open("memory").notice(1 << 20), None);
    }
}
