//! [`CompressedBackend`].

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use pagebackup_core::raw::{HandleCodec, Shards, copy_in_order};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, BatchError, ErrorKind, Handle, Interrupt, Operation, Origin,
    PAGE_SIZE, Page, Result,
};

use crate::arena::{self, CHUNK, HEADER};
use crate::budget::Budget;
use crate::codec::{Codec, SCRATCH_LEN};
use crate::config::HUGE_THRESHOLDS;
use crate::entry::{self, ENTRY_BYTES, Stored};
use crate::seal::ObjectSeal;
use crate::shard::{COMPACTION_RESERVE, Prepared, Readers, Shard};
use crate::table::{self, Refused};
use crate::{Algorithm, CompressedConfig, NAME};

const SHARD_BITS: u32 = 3;
const SHARDS: usize = 1 << SHARD_BITS;
const MAX_SLOTS_PER_SHARD: u32 = (HandleCodec::MAX_SLOTS >> SHARD_BITS) as u32;
const PAGE: u64 = PAGE_SIZE as u64;

/// Bytes of metadata per stored page: an 8-byte handle-table entry (the
/// slot's allocation count, and where and how the page is stored) and, for a
/// page in the arena, its object's 4-byte header (the page's slot while
/// it is live, so that compaction can find the entry to update). Checksums
/// add 4 bytes per object; a same-filled page whose word the entry holds
/// has no header.
pub const METADATA_BYTES_PER_PAGE: u64 = (ENTRY_BYTES + HEADER) as u64;

/// What [`CompressedBackend::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Objects moved out of sparse chunks.
    pub moved_pages: u64,
    /// Bytes of chunk memory freed.
    pub released_bytes: u64,
}

/// Where a [`CompressedBackend`]'s memory goes, beyond [`BackupStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArenaStats {
    /// Pages stored raw because they compressed to more than the huge
    /// threshold (zram's `huge_pages`).
    pub raw_pages: u64,
    /// Bytes those raw pages take in the arena, headers included.
    pub raw_bytes: u64,
    /// Chunks allocated, of [`CHUNK_BYTES`] each.
    pub chunks: u64,
    /// Bytes of live objects in the chunks, headers included.
    pub live_bytes: u64,
    /// Bytes of chunks that compaction could give back: neither live nor
    /// the free end of a chunk being filled.
    pub garbage_bytes: u64,
    /// Bytes of handle tables (entries and directories) and chunk directories.
    pub table_bytes: u64,
    /// Bytes charged whatever is stored: the backend and its shards.
    pub fixed_bytes: u64,
}

/// Bytes of one arena chunk.
pub const CHUNK_BYTES: u64 = CHUNK as u64;

/// Pages compressed into a packed arena in process memory.
///
/// - **Same-filled pages** (one 8-byte word repeated, zero pages included)
///   are kept as that word (zram's `same_pages`): in their handle-table
///   entry, with no arena space, when it is a sign-extended 48-bit value
///   (zero, small integers, pointers, all ones) or two equal 32-bit halves
///   (any repeated byte), else as an 8-byte arena object. With `seal=on`
///   a word the entry cannot hold is compressed and sealed like any page.
/// - **Other pages** are compressed (lz4 or zstd, per-thread contexts, outside
///   any lock); if the result is larger than the huge threshold the page is
///   stored raw (zram's `huge_pages`).
/// - **The arena** is log-structured: each object is appended behind a
///   4-byte header where the previous one ended, in 64 KiB chunks, running
///   on into the next chunk where it does not fit, so nothing is lost to
///   size classes or part-filled slabs. An object in two pieces is decoded
///   from them in place by lz4_flex, and joined first for the C lz4
///   decoder (feature `lz4-c`, the default; in a per-thread buffer) and for
///   zstd (in its decoder's buffer).
/// - **Restores allocate nothing** when they succeed, not even on a
///   thread's first restore (they may run in a region's `SIGBUS` handler;
///   the error of a corrupt page is built on the heap): zstd's decoding
///   contexts are made with the backend, one per CPU (2 to 16, about
///   100 KiB each plus a copy of the dictionary, if any, outside
///   [`memory_used`](BackupStats::memory_used)), and a restore takes one
///   that no other thread holds.
///   A chunk is freed when nothing in it is live.
/// - **Compaction** runs by itself: a backup or drop that leaves more than a
///   chunk and 1/64 of the live bytes reclaimable moves up to 8 live
///   objects of one of the sparsest chunks to the head, and the operations
///   after it go on with that chunk until it is free: no operation holds a
///   shard for more than a few microseconds of compaction, so restores of
///   the shard are not held up. [`compact`](Self::compact) moves every
///   chunk under 15/16 live; [`maintain_step`](BackupBackend::maintain_step)
///   does one such step toward 1/256, for a caller with idle time.
/// - **Metadata** per stored page is [`METADATA_BYTES_PER_PAGE`] (12)
///   bytes; tables grow and shrink in segments of 256 entries. An entry
///   addresses 2^20 chunks (64 GiB of arena) per shard; a slot is retired
///   after 8191 backups into it and comes back when its segment's last
///   page is dropped (a segment of 2 KiB kept by one long-lived page while
///   the others churn is what that costs, once per two million backups).
/// - **Concurrency**: 8 shards, each an arena and a handle table behind its
///   own lock. A thread writes to the shard it used last unless another
///   thread holds it, so only as many shards fill as threads write at once;
///   a restore reads its shard under a shared lock, and waits for a
///   writer by spinning and yielding, not by sleeping (writers hold a
///   shard for microseconds; a sleeper is woken tens of them later).
/// - **Limit**: everything the backend allocates (chunks, tables, its fixed
///   part) is charged before it is allocated and refused past
///   [`CompressedConfig::limit`], so `memory_used` never exceeds it; a
///   backup that does not fit gives `NoSpace`. One chunk under the limit is
///   kept for compaction, which may need a chunk before it frees one; at
///   the limit, a backup first moves out a chunk holding enough garbage.
///   `bytes_avail` is the room left, that chunk aside, times the running
///   ratio.
/// - **Corruption** of stored data gives `Corrupt` or, without checksums, at
///   worst a wrong page — never a panic or a short page.
/// - **Sealing** (`seal=on`, feature `seal`): each object (compressed
///   first) is encrypted and authenticated in place, its 16-byte tag stored
///   after it and counted in the stored bytes, bound to the shard's
///   instance, the slot and the slot's write counter (8 bytes of metadata
///   per slot); a changed, moved or older object restores as `Corrupt`
///   ([`raw::seal`](pagebackup_core::raw::seal) has the cipher and why
///   nonces never repeat). The tag is the check: `checksum` is not kept.
/// - **Blocking class**: no call sleeps or does I/O. The limit refuses an
///   allocation rather than waiting for room, and locks are held only for
///   the arena's copies (one chunk of compaction at most, or the whole
///   shard during an explicit [`compact`](Self::compact)). So with lz4 or
///   zstd at level 1 or below, where a page costs a few microseconds,
///   [`never_blocks`](BackupBackend::never_blocks) is `true` and an async
///   adapter runs calls on the calling task; at higher zstd levels a page
///   costs tens to hundreds of microseconds of CPU, which would hold a
///   runtime worker, so calls go to the blocking pool. Being
///   [`cpu_bound`](BackupBackend::cpu_bound), its calls compute on all
///   cores but one at a time (at least one), on the calling tasks or on
///   the blocking pool, however many are in flight: a worker stays free
///   for the runtime's timers.
pub struct CompressedBackend {
    codec: Codec,
    checksum: bool,
    sealed: bool,
    threshold: usize,
    handles: HandleCodec,
    shards: Shards<Shard>,
    budget: Budget,
    fixed: u64,
    failed_backups: AtomicU64,
    failed_restores: AtomicU64,
}

thread_local! {
    /// Where a page is compressed (and sealed), and a sealed object opened.
    /// Const-initialised in place, never allocated: restores run in a
    /// region's SIGBUS handler, where a first use allocating could deadlock
    /// on a lock malloc holds in the interrupted code.
    static SCRATCH: RefCell<[u8; SCRATCH_LEN]> = const { RefCell::new([0; SCRATCH_LEN]) };
}

impl CompressedBackend {
    /// The bytes charged before anything is stored.
    pub fn fixed_bytes() -> u64 {
        (std::mem::size_of::<CompressedBackend>() + SHARDS * std::mem::size_of::<std::sync::RwLock<Shard>>()) as u64
    }

    /// The smallest limit a backend accepts: its fixed part, a chunk and
    /// a table segment with their directories, and the chunk kept for
    /// compaction.
    pub fn min_limit() -> u64 {
        Self::fixed_bytes()
            + CHUNK_BYTES
            + arena::DIRECTORY_STEP_BYTES
            + table::SEGMENT_BYTES
            + table::DIRECTORY_STEP_BYTES
            + COMPACTION_RESERVE
    }

    /// A backend with `config`. A dictionary with lz4, a zstd level out of
    /// range, a threshold outside [`HUGE_THRESHOLDS`], a limit below
    /// [`min_limit`](Self::min_limit) or a dictionary that does not help on
    /// the configured samples gives [`BackupError::Config`], with the
    /// bounds in its message.
    pub fn new(config: CompressedConfig) -> Result<Self> {
        let invalid = |detail: String| BackupError::Config {
            origin: Origin::new(NAME, Operation::Open),
            detail,
        };
        if !HUGE_THRESHOLDS.contains(&config.huge_threshold) {
            return Err(invalid(format!(
                "huge threshold {} is outside {}..={}",
                config.huge_threshold,
                HUGE_THRESHOLDS.start(),
                HUGE_THRESHOLDS.end()
            )));
        }
        if let Some(limit) = config.limit.filter(|&l| l < Self::min_limit()) {
            return Err(invalid(format!(
                "limit {limit} is below the minimum of {} bytes: the backend's fixed part, a table segment and two {CHUNK}-byte chunks (one kept for compaction)",
                Self::min_limit()
            )));
        }
        #[cfg(feature = "zstd")]
        #[allow(irrefutable_let_patterns, reason = "zstd is the only algorithm when lz4 is left out")]
        if let Algorithm::Zstd { level } = config.algorithm {
            let range = zstd::compression_level_range();
            if !range.contains(&level) {
                return Err(invalid(format!(
                    "zstd level {level} is outside {}..={}",
                    range.start(),
                    range.end()
                )));
            }
            if let Some(dict) = &config.dictionary {
                let samples: Vec<&Page> = config.dictionary_samples.iter().map(|p| &**p).collect();
                dict.check_on(level, &samples)?;
            }
        }
        let mut seals = Self::seals(&config)?.into_iter();
        // A sealed object's tag authenticates it: a CRC beside it checks nothing more.
        let checksum = config.checksum && config.seal.is_none();
        #[cfg(feature = "zstd")]
        let codec = {
            #[cfg(feature = "lz4")]
            if config.algorithm == Algorithm::Lz4 && config.dictionary.is_some() {
                return Err(invalid("dictionaries are for zstd; lz4 takes none".into()));
            }
            Codec::new(config.algorithm, config.dictionary)
        };
        #[cfg(not(feature = "zstd"))]
        let codec = Codec::new(config.algorithm);
        let codec = codec.map_err(|source| BackupError::Io {
            origin: Origin::new(NAME, Operation::Open),
            source,
        })?;
        let fixed = Self::fixed_bytes();
        Ok(CompressedBackend {
            codec,
            checksum,
            sealed: config.seal.is_some(),
            threshold: config.huge_threshold,
            handles: HandleCodec::new(),
            shards: Shards::new(SHARDS, |_| Shard::new(MAX_SLOTS_PER_SHARD, checksum, seals.next())),
            budget: Budget::new(config.limit, fixed),
            fixed,
            failed_backups: AtomicU64::new(0),
            failed_restores: AtomicU64::new(0),
        })
    }

    /// One sealing per shard, each under its own instance salt, with one
    /// key for all, if `config` asks for sealing: a key that cannot be
    /// loaded, or sealing asked of a build without the `seal` feature, is
    /// `Config` at open.
    fn seals(config: &CompressedConfig) -> Result<Vec<ObjectSeal>> {
        let Some(source) = &config.seal else {
            return Ok(Vec::new());
        };
        let origin = Origin::new(NAME, Operation::Open);
        #[cfg(feature = "seal")]
        {
            let key = pagebackup_core::raw::seal::SealKey::load(source, origin)?;
            (0..SHARDS).map(|_| ObjectSeal::new(&key, origin)).collect()
        }
        #[cfg(not(feature = "seal"))]
        {
            let _ = source;
            Err(pagebackup_core::raw::seal::not_compiled_in(origin))
        }
    }

    /// Whether pages are sealed (`seal=on`).
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// The codec in use.
    pub fn algorithm(&self) -> Algorithm {
        self.codec.algorithm()
    }

    /// Moves the objects of every chunk under 15/16 live to the head of its
    /// arena and frees the chunks, shard by shard (each shard is locked
    /// while it is compacted). Every page stays restorable.
    pub fn compact(&self) -> Compaction {
        let mut done = Compaction::default();
        for index in 0..self.shards.len() {
            let (moved, released) = self.shards.lock(index).compact(&self.budget);
            done.moved_pages += moved;
            done.released_bytes += released;
        }
        done
    }

    /// Where the memory goes: raw pages, chunks, garbage, tables.
    pub fn arena_stats(&self) -> ArenaStats {
        let mut stats = ArenaStats {
            fixed_bytes: self.fixed,
            ..ArenaStats::default()
        };
        for index in 0..self.shards.len() {
            let shard = self.shards.read(index);
            let overhead = shard.arena.overhead() as u64;
            stats.raw_pages += shard.raw;
            stats.raw_bytes += shard.raw * (shard.raw_len() as u64 + overhead);
            stats.chunks += shard.arena.chunks();
            stats.live_bytes += shard.arena.live();
            stats.garbage_bytes += shard.arena.garbage();
            stats.table_bytes += shard.table.bytes() + shard.arena.bytes() - shard.arena.chunks() * CHUNK_BYTES
                + shard.seal.as_ref().map_or(0, ObjectSeal::bytes);
        }
        stats
    }

    fn no_space(&self, detail: String) -> BackupError {
        self.failed_backups.fetch_add(1, Ordering::Relaxed);
        BackupError::NoSpace {
            origin: Origin::new(NAME, Operation::BackupPage),
            detail,
        }
    }

    /// Stores a prepared page in a shard no other thread is writing to.
    fn store(&self, prepared: Prepared<'_>) -> Result<Handle> {
        let (index, mut shard) = self.shards.pick();
        let readers = Readers::of(self.shards.readers_waiting(index));
        match shard.store(prepared, &self.budget, readers) {
            Ok((local, generation)) => Ok(self.handles.encode(self.shards.slot(index, local), generation)),
            Err(Refused::Full) => {
                Err(self.no_space(format!("all {MAX_SLOTS_PER_SHARD} slots of shard {index} are in use")))
            }
            Err(Refused::Limit) => Err(self.no_space(format!(
                "the limit of {} bytes is reached ({} in use)",
                self.budget.limit().unwrap_or(u64::MAX),
                self.budget.used()
            ))),
            Err(Refused::Chunks) => Err(self.no_space(format!(
                "shard {index} holds {} chunks of {CHUNK} bytes, the most its handle table can address",
                entry::MAX_CHUNKS
            ))),
            Err(Refused::Worn) => Err(self.no_space(format!(
                "a slot of shard {index} was sealed as many times as its nonce counter allows; sealing it again \
                 would repeat a nonce"
            ))),
        }
    }

    /// The shard, local slot and generation `handle` names, deciphered
    /// once (a live slot matches it only if its generation is this one,
    /// which is never 0).
    fn locate(&self, handle: Handle) -> (usize, u32, u32) {
        let (slot, generation) = self.handles.decode(handle);
        let (shard, local) = self.shards.split(slot);
        (shard, local, generation)
    }

    fn invalid_handle(&self, handle: Handle, op: Operation) -> BackupError {
        BackupError::InvalidHandle {
            origin: Origin::new(NAME, op),
            handle,
        }
    }

    /// The restore of `handle` found its stored copy damaged: `detail`
    /// says which check failed, and `source` is the error that found it,
    /// kept as the cause where there is one (a decoder's).
    fn corrupt(
        &self,
        handle: Handle,
        detail: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> BackupError {
        let origin = Origin::new(NAME, Operation::CopyPage);
        match source {
            None => BackupError::Corrupt { origin, handle, detail },
            Some(source) => BackupError::Caused {
                origin,
                kind: ErrorKind::Corrupt,
                detail: format!("stored copy of handle {handle} is corrupt: {detail}"),
                source,
            },
        }
    }

    /// Runs `restore` unless `intr` is set, counting a failure either way.
    fn counted_restore(&self, intr: Option<&Interrupt>, restore: impl FnOnce() -> Result<()>) -> Result<()> {
        let result = if intr.is_some_and(Interrupt::is_interrupted) {
            Err(interrupted())
        } else {
            restore()
        };
        if result.is_err() {
            self.failed_restores.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn restore(&self, dst: &mut Page, handle: Handle) -> Result<()> {
        let (index, local, wanted) = self.locate(handle);
        self.restore_from(&self.shards.read_spinning(index), (local, wanted), dst, handle)
    }

    /// [`restore`](Self::restore) from `shard`, read-locked by the caller,
    /// of the page at `local` if its generation is `wanted`.
    fn restore_from(&self, shard: &Shard, (local, wanted): (u32, u32), dst: &mut Page, handle: Handle) -> Result<()> {
        let stored = match shard.table.get(local) {
            Some((generation, stored)) if generation != 0 && generation == wanted => stored,
            _ => return Err(self.invalid_handle(handle, Operation::CopyPage)),
        };
        let (loc, word) = match stored {
            Stored::Same(word) => {
                fill_words(dst, word);
                return Ok(());
            }
            Stored::Object(loc) => (loc, false),
            Stored::Word(loc) => (loc, true),
        };
        let (a, b) = shard.arena.object(loc);
        if let (Some(seal), false) = (&shard.seal, word) {
            // Opened into a buffer of this thread's (from the arena where
            // the object is in one piece, else joined there and opened in
            // place): `dst` gets nothing of an object that fails
            // authentication.
            return SCRATCH.with_borrow_mut(|scratch| {
                let opened = if b.is_empty() {
                    seal.open_into(local, a, &mut scratch[..])
                } else {
                    let object = &mut scratch[..a.len() + b.len()];
                    object[..a.len()].copy_from_slice(a);
                    object[a.len()..].copy_from_slice(b);
                    seal.open(local, object)
                };
                match opened {
                    Some(payload) => self.decode((payload, &[]), dst, handle),
                    None => Err(self.corrupt(
                        handle,
                        "the sealed object fails authentication: it was changed, or is another slot's, an older \
                         or another instance's"
                            .into(),
                        None,
                    )),
                }
            });
        }
        if let Some(sum) = shard.arena.checksum(loc) {
            let mut crc = crc32fast::Hasher::new();
            crc.update(a);
            crc.update(b);
            let found = crc.finalize();
            if found != sum {
                return Err(self.corrupt(
                    handle,
                    format!("checksum {found:#010x} does not match the stored {sum:#010x}"),
                    None,
                ));
            }
        }
        if word {
            let mut bytes = [0; 8];
            bytes[..a.len()].copy_from_slice(a);
            bytes[a.len()..].copy_from_slice(b);
            fill_words(dst, u64::from_ne_bytes(bytes));
            return Ok(());
        }
        self.decode((a, b), dst, handle)
    }

    /// Fills `dst` from an object's payload, in one piece or two: the page
    /// itself if it is a whole page, else decompressed.
    fn decode(&self, (a, b): (&[u8], &[u8]), dst: &mut Page, handle: Handle) -> Result<()> {
        if a.len() + b.len() == PAGE_SIZE {
            let out = dst.as_bytes_mut();
            out[..a.len()].copy_from_slice(a);
            out[a.len()..].copy_from_slice(b);
            return Ok(());
        }
        self.codec
            .decompress((a, b), dst)
            .map_err(|e| self.corrupt(handle, "it does not decode".into(), Some(Box::new(e))))
    }
}

/// The error of a restore whose interrupt was set before it began.
fn interrupted() -> BackupError {
    BackupError::Interrupted {
        origin: Origin::new(NAME, Operation::CopyPage),
    }
}

/// The word a same-filled page repeats, if it is one.
fn same_word(page: &Page) -> Option<u64> {
    let mut words = page.words();
    let first = words.next()?;
    words.all(|w| w == first).then_some(first)
}

fn fill_words(page: &mut Page, word: u64) {
    for chunk in page.as_bytes_mut().chunks_exact_mut(8) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
}

impl BackupBackend for CompressedBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn backup_page(&self, page: &Page, _idx: u64, _flags: BackupFlags) -> Result<Handle> {
        // A sealed shard keeps no word of a page in the arena unsealed.
        if let Some(word) = same_word(page).filter(|&word| !self.sealed || entry::holds_word(word)) {
            return self.store(Prepared::Same(word));
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let compressed = self.codec.compress(page, scratch, self.threshold);
            if self.sealed {
                // Sealed in place once the slot is known, the tag after it.
                let len = match compressed {
                    Some(len) => len,
                    None => {
                        scratch[..PAGE_SIZE].copy_from_slice(page.as_bytes());
                        PAGE_SIZE
                    }
                };
                let raw = compressed.is_none();
                let object = &mut scratch[..len + crate::seal::TAG_BYTES];
                return self.store(Prepared::Sealed { object, raw });
            }
            let (bytes, raw) = match compressed {
                Some(len) => (&scratch[..len], false),
                None => (page.as_bytes().as_slice(), true),
            };
            let sum = if self.checksum { crc32fast::hash(bytes) } else { 0 };
            self.store(Prepared::Object { bytes, raw, sum })
        })
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        self.counted_restore(intr, || self.restore(dst, handle))
    }

    /// Restores in order, as [`copy_page`](Self::copy_page) does, but holds
    /// a shard's read lock across consecutive pages of that shard (a
    /// thread's backups go to one shard, so a batch is mostly one run): one
    /// lock round trip per run instead of per page, a few percent of an lz4
    /// restore.
    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        let mut held = None;
        copy_in_order(NAME, handles, dsts, |dst, handle| {
            self.counted_restore(intr, || {
                let (index, local, wanted) = self.locate(handle);
                let shard = match held.take() {
                    Some((i, shard)) if i == index => shard,
                    // The lock of another shard goes before this one is taken.
                    other => {
                        drop(other);
                        self.shards.read_spinning(index)
                    }
                };
                let result = self.restore_from(&shard, (local, wanted), dst, handle);
                held = Some((index, shard));
                result
            })
        })
    }

    /// What the page costs in the arena: its object with its header and
    /// table entry, or only the entry for a same-filled page whose word the
    /// entry holds.
    fn stored_size(&self, handle: Handle) -> Option<u64> {
        let (index, local, wanted) = self.locate(handle);
        let shard = self.shards.read(index);
        match shard.table.get(local) {
            Some((generation, stored)) if generation != 0 && generation == wanted => Some(match stored {
                Stored::Same(_) => ENTRY_BYTES as u64,
                Stored::Object(at) | Stored::Word(at) => (ENTRY_BYTES + HEADER) as u64 + u64::from(at.len),
            }),
            _ => None,
        }
    }

    /// [`compact`](CompressedBackend::compact).
    fn maintain(&self) -> Result<()> {
        self.compact();
        Ok(())
    }

    /// One compaction step (up to 8 objects moved) in the first shard whose
    /// garbage is over 1/256 of its live bytes (the share operations keep is
    /// 1/64). The shard is taken as a drop takes it: restores waiting for it
    /// go first.
    fn maintain_step(&self) -> Result<bool> {
        Ok((0..self.shards.len()).any(|index| self.shards.lock_spinning(index).tidy_idle(&self.budget)))
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        let (index, local, wanted) = self.locate(handle);
        // Restores of the shard wait for this drop spinning: it must not
        // sleep on the lock either (see `Shards::lock_spinning`).
        let mut shard = self.shards.lock_spinning(index);
        match shard.table.get(local) {
            Some((generation, _)) if generation != 0 && generation == wanted => {
                shard.drop_slot(local, &self.budget, Readers::of(self.shards.readers_waiting(index)));
                Ok(())
            }
            _ => Err(self.invalid_handle(handle, Operation::DropHandle)),
        }
    }

    /// Nothing waits (see the type's blocking class); only the zstd levels
    /// above 1 are too slow per page to run on an async task.
    fn never_blocks(&self) -> bool {
        match self.codec.algorithm() {
            #[cfg(feature = "lz4")]
            Algorithm::Lz4 => true,
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { level } => level <= 1,
        }
    }

    /// Every call is codec work and copies: inline or on the blocking pool
    /// (zstd above level 1), its calls leave a core to the runtime.
    fn cpu_bound(&self) -> bool {
        true
    }

    fn bytes_avail(&self) -> u64 {
        let used = self.budget.used();
        let room = match self.budget.limit() {
            // New pages leave the compaction reserve unused.
            Some(limit) => limit.saturating_sub(used + COMPACTION_RESERVE),
            None => {
                let info = rustix::system::sysinfo();
                (info.freeram as u64).saturating_mul(u64::from(info.mem_unit))
            }
        };
        let stored = used - self.fixed;
        let original = (0..self.shards.len())
            .map(|i| self.shards.read(i).table.live())
            .sum::<u64>()
            * PAGE;
        if original == 0 || stored == 0 {
            return room;
        }
        (room as u128 * u128::from(original) / u128::from(stored)).min(u128::from(u64::MAX)) as u64
    }

    fn stats(&self) -> BackupStats {
        let mut stats = BackupStats::default();
        for index in 0..self.shards.len() {
            let shard = self.shards.read(index);
            stats.stored_pages += shard.table.live();
            stats.stored_bytes += shard.object_bytes;
            stats.same_filled_pages += shard.same_filled;
            stats.incompressible_pages += shard.raw;
            stats.compacted_pages += shard.compacted;
            // The handle table, the headers (and checksums) in front of the
            // arena's objects (`object_bytes` leaves them out) and the
            // sealing counters; a sealed object's tag is in `object_bytes`.
            stats.metadata_bytes += shard.table.bytes() + shard.arena.live() - shard.object_bytes
                + shard.seal.as_ref().map_or(0, ObjectSeal::bytes);
        }
        stats.memory_used = self.budget.used();
        stats.original_bytes = stats.stored_pages * PAGE;
        stats.failed_backups = self.failed_backups.load(Ordering::Relaxed);
        stats.failed_restores = self.failed_restores.load(Ordering::Relaxed);
        stats
    }
}

impl fmt::Debug for CompressedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressedBackend")
            .field("algorithm", &self.codec.algorithm())
            .field("limit", &self.budget.limit())
            .field("checksum", &self.checksum)
            .field("sealed", &self.sealed)
            .field("threshold", &self.threshold)
            .field("memory_used", &self.budget.used())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use pagebackup_core::ErrorKind;

    use super::*;
    use crate::entry::Location;

    fn page(i: u64) -> Box<Page> {
        // Text, heap-like, numeric and random bytes: compressed and raw objects.
        let mut page = Page::new_boxed();
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for (k, b) in page.as_bytes_mut().iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = match i % 4 {
                0 => b"the quick page backup "[k % 22],
                1 => (k / 64) as u8 ^ (x as u8 & 3),
                2 => (k as u8).wrapping_mul(3),
                _ => x as u8,
            };
        }
        page
    }

    fn location(b: &CompressedBackend, h: Handle) -> (usize, Location) {
        let (shard, local, _) = b.locate(h);
        let Some((_, Stored::Object(loc))) = b.shards.read(shard).table.get(local) else {
            panic!("not an object")
        };
        (shard, loc)
    }

    /// Flips a byte of a stored object in place.
    fn flip(b: &CompressedBackend, shard: usize, loc: Location, pos: usize) {
        b.shards.lock(shard).arena.flip(loc, pos);
    }

    /// Flips bytes of every stored object (and cuts objects short) and
    /// restores: with checksums every damage is `Corrupt`; without, a restore
    /// gives `Corrupt` or a page — never a panic. Undone, every page is exact.
    fn damage_everything(algorithm: Algorithm, checksum: bool) -> (usize, usize) {
        let b = CompressedBackend::new(CompressedConfig::new(algorithm).with_checksum(checksum)).unwrap();
        let pages: Vec<Box<Page>> = (0..64).map(page).collect();
        let handles: Vec<Handle> = pages
            .iter()
            .map(|p| b.backup_page(p, 0, BackupFlags::NONE).unwrap())
            .collect();
        let (mut corrupt, mut wrong) = (0, 0);
        let mut dst = Page::new_boxed();
        for (&h, original) in handles.iter().zip(&pages) {
            let (shard, loc) = location(&b, h);
            for pos in (0..usize::from(loc.len)).step_by(usize::from(loc.len) / 24 + 1) {
                flip(&b, shard, loc, pos);
                match b.copy_page(&mut dst, h, None) {
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
                        assert!(e.to_string().contains(&format!("handle {h} is corrupt")), "{e}");
                        // A checksum finds damage first; without, the decoder
                        // does, and its error is kept as the cause.
                        assert_eq!(e.cause().is_some(), !checksum, "{e}");
                        corrupt += 1;
                    }
                    Ok(()) => {
                        assert!(!checksum, "a checksum missed a flipped byte at {pos} of {loc:?}");
                        wrong += usize::from(dst != *original);
                    }
                }
                flip(&b, shard, loc, pos);
            }
            if usize::from(loc.len) != PAGE_SIZE {
                let (_, local, _) = b.locate(h);
                let cut = Location {
                    len: loc.len / 2,
                    ..loc
                };
                b.shards.lock(shard).table.moved(local, cut);
                let result = b.copy_page(&mut dst, h, None);
                assert!(result.is_err() || !checksum, "a checksum missed a truncated object");
                if let Err(e) = result {
                    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
                }
                b.shards.lock(shard).table.moved(local, loc);
            }
            b.copy_page(&mut dst, h, None).unwrap();
            assert_eq!(dst, *original);
        }
        b.drop_handles(&handles).unwrap();
        (corrupt, wrong)
    }

    /// Every codec built in, zstd at `level`.
    fn every_algorithm(level: i32) -> Vec<Algorithm> {
        let _ = level;
        vec![
            #[cfg(feature = "lz4")]
            Algorithm::Lz4,
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { level },
        ]
    }

    #[test]
    fn objects_in_two_pieces_restore_with_every_codec() {
        for algorithm in every_algorithm(1) {
            let b = CompressedBackend::new(CompressedConfig::new(algorithm)).unwrap();
            let pages: Vec<Box<Page>> = (0..400).map(page).collect();
            let handles: Vec<Handle> = pages
                .iter()
                .map(|p| b.backup_page(p, 0, BackupFlags::NONE).unwrap())
                .collect();
            let mut split = 0;
            let mut dst = Page::new_boxed();
            for (&h, original) in handles.iter().zip(&pages) {
                let (shard, loc) = location(&b, h);
                let compressed = usize::from(loc.len) < PAGE_SIZE;
                split += usize::from(compressed && !b.shards.read(shard).arena.object(loc).1.is_empty());
                b.copy_page(&mut dst, h, None).unwrap();
                assert_eq!(dst, *original);
            }
            assert!(split >= 3, "{algorithm}: {split} compressed objects in two pieces");
        }
    }

    #[test]
    fn damaged_objects_give_corrupt_or_a_page_never_a_panic() {
        for algorithm in every_algorithm(3) {
            let (corrupt, _) = damage_everything(algorithm, true);
            assert!(corrupt > 400, "{corrupt}");
            let (corrupt, wrong) = damage_everything(algorithm, false);
            println!("{algorithm} without checksums: {corrupt} damaged restores gave Corrupt, {wrong} a wrong page");
        }
    }

    #[cfg(feature = "seal")]
    mod sealed {
        use pagebackup_core::raw::seal::SealKeySource;

        use super::*;

        fn key_file(tag: &str) -> std::path::PathBuf {
            let path = std::env::temp_dir().join(format!("pagebackup-compressed-key-{tag}-{}", std::process::id()));
            std::fs::write(&path, [0x42; 32]).unwrap();
            path
        }

        fn backend(algorithm: Algorithm, key: SealKeySource) -> CompressedBackend {
            CompressedBackend::new(CompressedConfig::new(algorithm).with_seal(Some(key))).unwrap()
        }

        /// The object's bytes, joined.
        fn object(b: &CompressedBackend, h: Handle) -> Vec<u8> {
            let (shard, loc) = location(b, h);
            let shard = b.shards.read(shard);
            let (x, y) = shard.arena.object(loc);
            [x, y].concat()
        }

        /// Overwrites the object of `h` with `bytes` (of its length).
        fn overwrite(b: &CompressedBackend, h: Handle, bytes: &[u8]) {
            let (shard, loc) = location(b, h);
            let old = object(b, h);
            assert_eq!(old.len(), bytes.len());
            let mut shard = b.shards.lock(shard);
            for (pos, (o, n)) in old.iter().zip(bytes).enumerate() {
                shard.arena.xor(loc, pos, o ^ n);
            }
        }

        /// A restore of `h` gives `Corrupt` naming it and leaves `dst` untouched.
        fn assert_unauthentic(b: &CompressedBackend, h: Handle) {
            let mut dst = Page::new_boxed();
            dst.as_bytes_mut().fill(0xee);
            let e = b.copy_page(&mut dst, h, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            assert!(e.to_string().contains("fails authentication"), "{e}");
            assert!(
                dst.as_bytes().iter().all(|&x| x == 0xee),
                "a failed restore wrote into dst"
            );
        }

        #[test]
        fn sealed_objects_hold_ciphertext_and_cost_their_tag() {
            for algorithm in every_algorithm(1) {
                let plain = CompressedBackend::new(CompressedConfig::new(algorithm)).unwrap();
                let sealed = backend(algorithm, SealKeySource::Random);
                assert!(sealed.is_sealed() && !plain.is_sealed());
                // Page 0 compresses, page 3 is random (raw), page 5 is text again.
                for i in [0, 3, 5] {
                    let p = page(i);
                    let (hp, hs) = (
                        plain.backup_page(&p, 0, BackupFlags::NONE).unwrap(),
                        sealed.backup_page(&p, 0, BackupFlags::NONE).unwrap(),
                    );
                    let (clear, secret) = (object(&plain, hp), object(&sealed, hs));
                    assert_eq!(secret.len(), clear.len() + 16, "{algorithm}: the object and its tag");
                    assert_ne!(secret[..clear.len()], clear[..], "{algorithm}: the object is encrypted");
                    assert_eq!(sealed.stored_size(hs), plain.stored_size(hp).map(|s| s + 16));
                    let mut dst = Page::new_boxed();
                    sealed.copy_page(&mut dst, hs, None).unwrap();
                    assert_eq!(dst, p);
                }
                let (ps, ss) = (plain.stats(), sealed.stats());
                assert_eq!(
                    ss.stored_bytes,
                    ps.stored_bytes + 3 * 16,
                    "{algorithm}: tags are stored bytes"
                );
                assert_eq!(ss.incompressible_pages, 1);
                assert_eq!(sealed.arena_stats().raw_bytes, 4096 + 16 + 4);
                // One step of counters, 8 bytes per slot, is metadata.
                assert_eq!(ss.metadata_bytes, ps.metadata_bytes + 1024 * 8, "{algorithm}");
            }
        }

        #[test]
        fn a_sealed_shard_keeps_no_page_word_in_the_clear() {
            let (plain, sealed) = (
                CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4)).unwrap(),
                backend(Algorithm::Lz4, SealKeySource::Random),
            );
            // A word the entry holds stays there; one it cannot hold is an
            // 8-byte object unsealed, so a sealed shard compresses and
            // seals that page instead.
            for (word, in_entry) in [(0u64, true), (0x3ff0_0000_0000_0000, false)] {
                let mut p = Page::new_boxed();
                fill_words(&mut p, word);
                let (hp, hs) = (
                    plain.backup_page(&p, 0, BackupFlags::NONE).unwrap(),
                    sealed.backup_page(&p, 0, BackupFlags::NONE).unwrap(),
                );
                let expected = if in_entry { 8 } else { 8 + 4 + 8 };
                assert_eq!(plain.stored_size(hp), Some(expected), "{word:#x}");
                if in_entry {
                    assert_eq!(sealed.stored_size(hs), Some(8));
                } else {
                    let secret = object(&sealed, hs);
                    assert!(secret.len() > 16, "compressed and tagged: {}", secret.len());
                    assert!(
                        !secret.windows(8).any(|w| w == word.to_ne_bytes()),
                        "the word is not in the clear"
                    );
                }
                let mut dst = Page::new_boxed();
                sealed.copy_page(&mut dst, hs, None).unwrap();
                assert_eq!(dst, p);
            }
            assert_eq!(
                (plain.stats().same_filled_pages, sealed.stats().same_filled_pages),
                (2, 1)
            );
        }

        #[test]
        fn a_changed_object_is_corrupt_and_restores_once_undone() {
            let b = backend(Algorithm::Lz4, SealKeySource::Random);
            for i in [0, 3] {
                let p = page(i);
                let h = b.backup_page(&p, 0, BackupFlags::NONE).unwrap();
                let (shard, loc) = location(&b, h);
                for pos in [0, usize::from(loc.len) / 2, usize::from(loc.len) - 1] {
                    flip(&b, shard, loc, pos);
                    assert_unauthentic(&b, h);
                    flip(&b, shard, loc, pos);
                }
                let mut dst = Page::new_boxed();
                b.copy_page(&mut dst, h, None).unwrap();
                assert_eq!(dst, p);
            }
        }

        #[test]
        fn a_moved_or_older_object_is_corrupt() {
            let b = backend(Algorithm::Lz4, SealKeySource::Random);
            // Two pages of the same length: each object fits the other's place.
            let (p1, p2) = (page(0), page(4));
            let h1 = b.backup_page(&p1, 0, BackupFlags::NONE).unwrap();
            let h2 = b.backup_page(&p2, 0, BackupFlags::NONE).unwrap();
            let (o1, o2) = (object(&b, h1), object(&b, h2));
            assert_eq!(o1.len(), o2.len());
            // Moved: slot 2's object in slot 1's place.
            overwrite(&b, h1, &o2);
            assert_unauthentic(&b, h1);
            overwrite(&b, h1, &o1);
            // Older: slot 1 dropped and reused for the same page; its old
            // object put back in the new one's place.
            b.drop_handle(h1).unwrap();
            let h3 = b.backup_page(&p1, 0, BackupFlags::NONE).unwrap();
            let slot = |h| {
                let (shard, local, _generation) = b.locate(h);
                (shard, local)
            };
            assert_eq!(slot(h3), slot(h1), "the slot is reused");
            let o3 = object(&b, h3);
            assert_ne!(o3, o1, "a new counter, a new ciphertext");
            overwrite(&b, h3, &o1);
            assert_unauthentic(&b, h3);
            overwrite(&b, h3, &o3);
            let mut dst = Page::new_boxed();
            b.copy_page(&mut dst, h3, None).unwrap();
            assert_eq!(dst, p1);
            b.copy_page(&mut dst, h2, None).unwrap();
            assert_eq!(dst, p2);
        }

        #[test]
        fn another_instance_object_is_corrupt_under_the_same_key() {
            let path = key_file("instances");
            let (a, b) = (
                backend(Algorithm::Lz4, SealKeySource::File(path.clone())),
                backend(Algorithm::Lz4, SealKeySource::File(path.clone())),
            );
            std::fs::remove_file(&path).unwrap();
            let p = page(0);
            let ha = a.backup_page(&p, 0, BackupFlags::NONE).unwrap();
            let hb = b.backup_page(&p, 0, BackupFlags::NONE).unwrap();
            assert_eq!(a.locate(ha), b.locate(hb), "the same slot in each");
            overwrite(&b, hb, &object(&a, ha));
            assert_unauthentic(&b, hb);
        }

        #[test]
        fn seal_parameters_parse_and_a_missing_key_is_a_config_error() {
            let config = CompressedConfig::from_params(&[("seal", "on")]).unwrap();
            assert_eq!(config.seal, Some(SealKeySource::Random));
            assert!(CompressedConfig::from_params(&[("seal_key", "env:X")]).is_err());
            let missing = CompressedConfig::new(Algorithm::Lz4)
                .with_seal(Some(SealKeySource::File("/nonexistent/pagebackup-key".into())));
            let e = CompressedBackend::new(missing).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        }
    }
}
