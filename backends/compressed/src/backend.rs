//! [`CompressedBackend`].

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use pagebackup_core::raw::{HandleCodec, SlotTable, thread_index};
use pagebackup_core::{
    BackupBackend, BackupError, BackupFlags, BackupStats, Handle, Interrupt, Operation, Origin, PAGE_SIZE, Page, Result,
};

use crate::arena::{Arena, MAX_COMPRESSED, RAW_CLASS};
use crate::codec::{Codec, SCRATCH_LEN};
use crate::entry::{Entry, Stored};
use crate::{Algorithm, CompressedConfig, NAME};

const SHARD_BITS: u32 = 3;
const SHARDS: usize = 1 << SHARD_BITS;
const MAX_SLOTS_PER_SHARD: u32 = (HandleCodec::MAX_SLOTS >> SHARD_BITS) as u32;
const PAGE: u64 = PAGE_SIZE as u64;

/// Bytes of handle-table metadata per stored page: a 12-byte entry (where
/// and how the page is stored) and the slot's 4-byte generation.
pub const HANDLE_TABLE_BYTES_PER_PAGE: u64 = (std::mem::size_of::<Entry>() + std::mem::size_of::<u32>()) as u64;

/// What [`CompressedBackend::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Objects moved to fuller slabs.
    pub moved_pages: u64,
    /// Bytes of slab memory freed.
    pub released_bytes: u64,
}

/// Pages compressed into a zram-like arena in process memory.
///
/// - **Same-filled pages** (one 8-byte word repeated, zero pages included)
///   are kept as that word, in their handle-table entry, with no arena space
///   (zram's `same_pages`).
/// - **Other pages** are compressed (lz4 or zstd, per-thread contexts, outside
///   any lock); if the result is larger than the huge threshold (3/4 of a
///   page by default) the page is stored raw (zram's `huge_pages`).
/// - **The arena** is a size-class allocator like zsmalloc: objects are
///   rounded up to 32 bytes and share slabs of 1 to 8 pages with objects of
///   their class; an emptied slab is freed at once, and
///   [`compact`](Self::compact) moves objects out of sparse slabs. Slab
///   memory comes from, and goes back to, the process's allocator.
/// - **Metadata** per stored page is [`HANDLE_TABLE_BYTES_PER_PAGE`] (16)
///   bytes, plus per-slab bitmaps (and 4-byte checksums when enabled).
/// - **Concurrency**: 8 shards, each an arena and a handle table behind its
///   own lock; a thread backs up into the shard it is assigned, and a restore
///   holds its shard's lock only to copy the compressed bytes out.
/// - **Limit**: with [`CompressedConfig::limit`], a backup that would take
///   the memory used (slabs and per-page metadata) past the limit gives
///   `NoSpace`; `bytes_avail` is the room left times the running ratio.
/// - **Corruption** of stored data gives `Corrupt` or, without checksums, at
///   worst a wrong page — never a panic or a short page.
pub struct CompressedBackend {
    codec: Codec,
    checksum: bool,
    threshold: usize,
    handles: HandleCodec,
    shards: Box<[Mutex<Shard>]>,
    limit: Option<u64>,
    /// Memory the limit counts besides per-page metadata: every shard's
    /// slabs (with their bookkeeping) and class tables.
    accounted: AtomicU64,
    stored_pages: AtomicU64,
    failed_backups: AtomicU64,
    failed_restores: AtomicU64,
}

struct Shard {
    table: SlotTable,
    entries: Vec<Entry>,
    arena: Arena,
    /// Bytes of stored objects (zram's `compr_data_size`).
    object_bytes: u64,
    same_filled: u64,
    incompressible: u64,
    compacted: u64,
}

/// What a backup will store, worked out before taking a lock.
enum Prepared<'a> {
    Same(u64),
    Object(&'a [u8]),
}

thread_local! {
    static SCRATCH: RefCell<Box<[u8; SCRATCH_LEN]>> = RefCell::new(Box::new([0; SCRATCH_LEN]));
}

impl CompressedBackend {
    /// A backend with `config`. A dictionary with lz4, a zstd level out of
    /// range or a threshold outside 64..=3072 gives `InvalidInput`.
    pub fn new(config: CompressedConfig) -> Result<Self> {
        let invalid = |detail: String| BackupError::InvalidInput {
            origin: Origin::new(NAME, Operation::Open),
            detail,
        };
        if !(64..=MAX_COMPRESSED).contains(&config.huge_threshold) {
            return Err(invalid(format!(
                "huge threshold {} is outside 64..={MAX_COMPRESSED}",
                config.huge_threshold
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
        }
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
        let shards: Box<[Mutex<Shard>]> = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    table: SlotTable::new(MAX_SLOTS_PER_SHARD),
                    entries: Vec::new(),
                    arena: Arena::new(config.checksum),
                    object_bytes: 0,
                    same_filled: 0,
                    incompressible: 0,
                    compacted: 0,
                })
            })
            .collect();
        let fixed: u64 = shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.arena.class_bytes()) + std::mem::size_of::<Mutex<Shard>>() as u64)
            .sum();
        Ok(CompressedBackend {
            codec,
            checksum: config.checksum,
            threshold: config.huge_threshold,
            handles: HandleCodec::new(),
            shards,
            limit: config.limit,
            accounted: AtomicU64::new(fixed),
            stored_pages: AtomicU64::new(0),
            failed_backups: AtomicU64::new(0),
            failed_restores: AtomicU64::new(0),
        })
    }

    /// The codec in use.
    pub fn algorithm(&self) -> Algorithm {
        self.codec.algorithm()
    }

    /// Moves objects out of sparse slabs into fuller ones and frees the
    /// emptied slabs, shard by shard (each shard is locked while it is
    /// compacted). Every page stays restorable.
    pub fn compact(&self) -> Compaction {
        let mut done = Compaction::default();
        for index in 0..SHARDS {
            let mut guard = self.shard(index);
            let shard = &mut *guard;
            let (moved, released) = shard.arena.compact(&mut shard.entries);
            shard.compacted += moved;
            self.accounted.fetch_sub(released, Ordering::Relaxed);
            done.moved_pages += moved;
            done.released_bytes += released;
        }
        done
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        // Shard updates that can panic (allocation) happen before any state
        // changes, so a poisoned shard is still consistent.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The memory the limit counts, with `extra_pages` more pages stored:
    /// slabs, class tables and the per-page handle-table entries.
    fn used_with(&self, extra_pages: u64) -> u64 {
        let pages = self.stored_pages.load(Ordering::Relaxed) + extra_pages;
        self.accounted.load(Ordering::Relaxed) + pages * HANDLE_TABLE_BYTES_PER_PAGE
    }

    /// Takes `bytes` for a new slab, if the limit allows.
    fn reserve_slab(&self, bytes: u64) -> bool {
        let before = self.accounted.fetch_add(bytes, Ordering::Relaxed);
        let fits = self.limit.is_none_or(|limit| {
            let pages = self.stored_pages.load(Ordering::Relaxed) + 1;
            before + bytes + pages * HANDLE_TABLE_BYTES_PER_PAGE <= limit
        });
        if !fits {
            self.accounted.fetch_sub(bytes, Ordering::Relaxed);
        }
        fits
    }

    fn no_space(&self, op: Operation, detail: String) -> BackupError {
        self.failed_backups.fetch_add(1, Ordering::Relaxed);
        BackupError::NoSpace {
            origin: Origin::new(NAME, op),
            detail,
        }
    }

    /// Stores a prepared page in this thread's shard.
    fn store(&self, prepared: Prepared<'_>, raw: bool) -> Result<Handle> {
        let op = Operation::BackupPage;
        if self.limit.is_some_and(|limit| self.used_with(1) > limit) {
            return Err(self.no_space(op, format!("the limit of {} bytes is reached", self.limit.unwrap_or(0))));
        }
        let shard_index = thread_index() % SHARDS;
        let mut guard = self.shard(shard_index);
        let shard = &mut *guard;
        let Some((local, generation)) = shard.table.alloc() else {
            return Err(self.no_space(
                op,
                format!("all {MAX_SLOTS_PER_SHARD} slots of shard {shard_index} are in use"),
            ));
        };
        let stored = match prepared {
            Prepared::Same(word) => {
                shard.same_filled += 1;
                Stored::Same(word)
            }
            Prepared::Object(bytes) => {
                let Some(loc) = shard.arena.alloc(bytes.len(), |b| self.reserve_slab(b)) else {
                    shard.table.release(local);
                    let limit = self.limit.unwrap_or(0);
                    return Err(self.no_space(op, format!("a new slab would pass the limit of {limit} bytes")));
                };
                shard.arena.object_mut(loc).copy_from_slice(bytes);
                if self.checksum {
                    shard.arena.set_checksum(loc, crc32fast::hash(bytes));
                }
                shard.object_bytes += bytes.len() as u64;
                shard.incompressible += u64::from(raw);
                Stored::Object(loc)
            }
        };
        if local as usize == shard.entries.len() {
            shard.entries.push(Entry::default());
        }
        shard.entries[local as usize] = Entry::pack(stored);
        self.stored_pages.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .handles
            .encode(local << SHARD_BITS | shard_index as u32, generation))
    }

    /// Runs `f` on the live entry `handle` names, under its shard's lock.
    fn with_entry<R>(&self, handle: Handle, op: Operation, f: impl FnOnce(&mut Shard, u32, Stored) -> R) -> Result<R> {
        let slot = self.handles.slot(handle);
        let (shard_index, local) = (slot as usize % SHARDS, slot >> SHARD_BITS);
        let mut shard = self.shard(shard_index);
        let live = shard
            .table
            .live_generation(local)
            .filter(|&g| self.handles.matches(handle, g));
        match live.and_then(|_| shard.entries[local as usize].unpack()) {
            Some(stored) => Ok(f(&mut shard, local, stored)),
            None => Err(BackupError::InvalidHandle {
                origin: Origin::new(NAME, op),
                handle,
            }),
        }
    }

    fn corrupt(&self, handle: Handle, detail: String) -> BackupError {
        BackupError::Corrupt {
            origin: Origin::new(NAME, Operation::CopyPage),
            handle,
            detail,
        }
    }

    fn restore(&self, dst: &mut Page, handle: Handle, scratch: &mut [u8; SCRATCH_LEN]) -> Result<()> {
        let op = Operation::CopyPage;
        let (stored, sum) = self.with_entry(handle, op, |shard, _, stored| {
            let Stored::Object(loc) = stored else {
                return (stored, None);
            };
            let object = shard.arena.object(loc);
            if loc.class == RAW_CLASS {
                dst.as_bytes_mut().copy_from_slice(object);
            } else {
                scratch[..object.len()].copy_from_slice(object);
            }
            (stored, shard.arena.checksum(loc))
        })?;
        match stored {
            Stored::Same(word) => fill_words(dst, word),
            Stored::Object(loc) => {
                let raw = loc.class == RAW_CLASS;
                let bytes: &[u8] = if raw {
                    dst.as_bytes()
                } else {
                    &scratch[..usize::from(loc.len)]
                };
                if let Some(sum) = sum.filter(|&s| s != crc32fast::hash(bytes)) {
                    return Err(self.corrupt(
                        handle,
                        format!(
                            "checksum {:#010x} does not match the stored {sum:#010x}",
                            crc32fast::hash(bytes)
                        ),
                    ));
                }
                if !raw {
                    self.codec
                        .decompress(&scratch[..usize::from(loc.len)], dst)
                        .map_err(|e| self.corrupt(handle, e))?;
                }
            }
        }
        Ok(())
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
        if let Some(word) = same_word(page) {
            return self.store(Prepared::Same(word), false);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match self.codec.compress(page, &mut scratch, self.threshold) {
                Some(len) => self.store(Prepared::Object(&scratch[..len]), false),
                None => self.store(Prepared::Object(page.as_bytes()), true),
            }
        })
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        let result = if intr.is_some_and(Interrupt::is_interrupted) {
            Err(BackupError::Interrupted {
                origin: Origin::new(NAME, Operation::CopyPage),
            })
        } else {
            SCRATCH.with(|scratch| self.restore(dst, handle, &mut scratch.borrow_mut()))
        };
        if result.is_err() {
            self.failed_restores.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.with_entry(handle, Operation::DropHandle, |shard, local, stored| {
            if let Stored::Object(loc) = stored {
                let released = shard.arena.free(loc);
                self.accounted.fetch_sub(released, Ordering::Relaxed);
                shard.object_bytes -= u64::from(loc.len);
                shard.incompressible -= u64::from(loc.class == RAW_CLASS);
            } else {
                shard.same_filled -= 1;
            }
            shard.entries[local as usize] = Entry::default();
            shard.table.release(local);
        })?;
        self.stored_pages.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    fn bytes_avail(&self) -> u64 {
        let used = self.used_with(0);
        let room = match self.limit {
            Some(limit) => limit.saturating_sub(used),
            None => {
                let info = rustix::system::sysinfo();
                (info.freeram as u64).saturating_mul(u64::from(info.mem_unit))
            }
        };
        let original = self.stored_pages.load(Ordering::Relaxed) * PAGE;
        if original == 0 || used == 0 {
            return room;
        }
        (room as u128 * u128::from(original) / u128::from(used)).min(u128::from(u64::MAX)) as u64
    }

    fn stats(&self) -> BackupStats {
        let mut stats = BackupStats::default();
        for index in 0..SHARDS {
            let shard = self.shard(index);
            stats.stored_pages += shard.table.live();
            stats.stored_bytes += shard.object_bytes;
            stats.memory_used += shard.arena.bytes()
                + shard.arena.class_bytes()
                + shard.table.metadata_bytes()
                + (shard.entries.capacity() * std::mem::size_of::<Entry>()) as u64;
            stats.same_filled_pages += shard.same_filled;
            stats.incompressible_pages += shard.incompressible;
            stats.compacted_pages += shard.compacted;
        }
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
            .field("limit", &self.limit)
            .field("checksum", &self.checksum)
            .field("stored_pages", &self.stored_pages.load(Ordering::Relaxed))
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

    fn location(b: &CompressedBackend, h: Handle) -> (usize, u32, Location) {
        let slot = b.handles.slot(h);
        let (shard, local) = (slot as usize % SHARDS, slot >> SHARD_BITS);
        let Some(Stored::Object(loc)) = b.shard(shard).entries[local as usize].unpack() else {
            panic!("not an object")
        };
        (shard, local, loc)
    }

    /// Flips bytes of every stored object (and cuts objects short) and
    /// restores: with checksums every damage is `Corrupt`; without, a restore
    /// gives `Corrupt` or a page — never a panic. Undone, every page is exact.
    fn damage_everything(algorithm: Algorithm, checksum: bool) -> (usize, usize) {
        let b = CompressedBackend::new(CompressedConfig::new(algorithm).with_checksum(checksum)).unwrap();
        let pages: Vec<Box<Page>> = (0..16).map(page).collect();
        let handles: Vec<Handle> = pages
            .iter()
            .map(|p| b.backup_page(p, 0, BackupFlags::NONE).unwrap())
            .collect();
        let (mut corrupt, mut wrong) = (0, 0);
        let mut dst = Page::new_boxed();
        for (&h, original) in handles.iter().zip(&pages) {
            let (shard, local, loc) = location(&b, h);
            for pos in (0..usize::from(loc.len)).step_by(usize::from(loc.len) / 24 + 1) {
                b.shard(shard).arena.object_mut(loc)[pos] ^= 0x5a;
                match b.copy_page(&mut dst, h, None) {
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
                        corrupt += 1;
                    }
                    Ok(()) => {
                        assert!(!checksum, "a checksum missed a flipped byte at {pos} of {loc:?}");
                        wrong += usize::from(dst != *original);
                    }
                }
                b.shard(shard).arena.object_mut(loc)[pos] ^= 0x5a;
            }
            if loc.class != RAW_CLASS {
                let cut = Location {
                    len: loc.len / 2,
                    ..loc
                };
                b.shard(shard).entries[local as usize] = Entry::pack(Stored::Object(cut));
                let result = b.copy_page(&mut dst, h, None);
                assert!(result.is_err() || !checksum, "a checksum missed a truncated object");
                if let Err(e) = result {
                    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
                }
                b.shard(shard).entries[local as usize] = Entry::pack(Stored::Object(loc));
            }
            b.copy_page(&mut dst, h, None).unwrap();
            assert_eq!(dst, *original);
        }
        b.drop_handles(&handles).unwrap();
        (corrupt, wrong)
    }

    #[test]
    fn damaged_objects_give_corrupt_or_a_page_never_a_panic() {
        for algorithm in [Algorithm::Lz4, Algorithm::Zstd { level: 3 }] {
            let (corrupt, _) = damage_everything(algorithm, true);
            assert!(corrupt > 100);
            let (corrupt, wrong) = damage_everything(algorithm, false);
            println!("{algorithm} without checksums: {corrupt} damaged restores gave Corrupt, {wrong} a wrong page");
        }
    }
}
