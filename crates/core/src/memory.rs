//! [`MemoryBackend`]: plain copies in process memory, the reference backend.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{BackupError, Operation, Origin, Result};
use crate::interrupt::is_set;
use crate::raw::params::{ParamDoc, ParamError, Params};
use crate::raw::{HandleCodec, Shards, SlotTable};
use crate::{BackupBackend, BackupFlags, BackupStats, Handle, Interrupt, PAGE_SIZE, Page};

const NAME: &str = "memory";
const SHARDS: usize = 16;
/// Pages per slab chunk: 256 KiB, one allocation.
const CHUNK_PAGES: usize = 64;

/// Plain copies of pages in process memory, no compression.
///
/// The reference model for tests and the memcpy baseline for benchmarks.
/// Pages live in slabs of 64 pages (256 KiB) split over 16 shards, each behind
/// its own lock; a thread backs up into the shard it is assigned, and a
/// restore goes to the shard named in the handle, so threads rarely contend.
/// Dropped slots go on a free list and are reused, most recently freed
/// first; a slab whose every slot is free goes back to the allocator (but
/// for one spare slab per shard), so [`BackupStats::memory_used`] falls as
/// pages are dropped.
///
/// Handles carry the slot, its generation and the instance's key (see
/// [`HandleCodec`]): dropped, forged and foreign handles give
/// [`BackupError::InvalidHandle`].
///
/// **Blocking class**: never blocks. A call copies under a shard lock held
/// for the copy only, and the limit refuses a backup (`NoSpace`) rather
/// than waiting for room, so [`never_blocks`](BackupBackend::never_blocks)
/// is `true` and an async adapter runs it on the calling task.
pub struct MemoryBackend {
    codec: HandleCodec,
    shards: Shards<Shard>,
    limit_pages: u64,
    stored_pages: AtomicU64,
    failed_backups: AtomicU64,
    failed_restores: AtomicU64,
}

#[derive(Default)]
struct Shard {
    table: SlotTable,
    /// Slabs of `CHUNK_PAGES` pages; `None` once every slot in it is free.
    chunks: Vec<Option<Box<[Page]>>>,
    /// Live slots per slab.
    live: Vec<u16>,
    /// An emptied slab kept for the next one needed.
    spare: Option<Box<[Page]>>,
}

impl Shard {
    fn page(&self, slot: u32) -> &Page {
        let slot = slot as usize;
        &self.chunks[slot / CHUNK_PAGES]
            .as_ref()
            .expect("a live slot's slab exists")[slot % CHUNK_PAGES]
    }

    /// The page of a slot just allocated, making its slab if needed.
    fn page_for_new(&mut self, slot: u32) -> &mut Page {
        let (chunk, at) = (slot as usize / CHUNK_PAGES, slot as usize % CHUNK_PAGES);
        if chunk == self.chunks.len() {
            self.chunks.push(None);
            self.live.push(0);
        }
        self.live[chunk] += 1;
        let spare = &mut self.spare;
        &mut self.chunks[chunk]
            .get_or_insert_with(|| spare.take().unwrap_or_else(|| Page::new_boxed_slice(CHUNK_PAGES)))[at]
    }

    /// Frees a slot; a slab whose last slot this was is kept as the shard's
    /// one spare (so that a backup and drop in turn do not allocate and free
    /// a slab each time), or goes back to the allocator.
    fn release(&mut self, slot: u32) {
        let chunk = slot as usize / CHUNK_PAGES;
        self.table.release(slot);
        self.live[chunk] -= 1;
        if self.live[chunk] == 0 {
            let emptied = self.chunks[chunk].take();
            if self.spare.is_none() {
                self.spare = emptied;
            }
        }
    }

    fn slab_bytes(&self) -> u64 {
        let slabs = self.chunks.iter().flatten().count() + usize::from(self.spare.is_some());
        (slabs * CHUNK_PAGES * PAGE_SIZE) as u64
    }
}

impl MemoryBackend {
    /// A backend limited only by the process's memory.
    pub fn new() -> Self {
        Self::with_limit(u64::MAX)
    }

    /// A backend that holds at most `limit_bytes` of pages (rounded down to
    /// whole pages); backups past it give [`BackupError::NoSpace`].
    pub fn with_limit(limit_bytes: u64) -> Self {
        let local_slots = (HandleCodec::MAX_SLOTS / SHARDS as u64) as u32;
        let shards = Shards::new(SHARDS, |_| Shard {
            table: SlotTable::new(local_slots),
            chunks: Vec::new(),
            live: Vec::new(),
            spare: None,
        });
        MemoryBackend {
            codec: HandleCodec::new(),
            shards,
            limit_pages: limit_bytes / PAGE_SIZE as u64,
            stored_pages: AtomicU64::new(0),
            failed_backups: AtomicU64::new(0),
            failed_restores: AtomicU64::new(0),
        }
    }

    /// The parameters of the spec `memory:...` ([`from_params`](Self::from_params)).
    pub const PARAMS: &'static [ParamDoc] = &[ParamDoc {
        key: "limit",
        syntax: "SIZE",
        default: "no limit",
        meaning: "most bytes of pages held; at least one page (4096 bytes)",
    }];

    /// The backend a spec's parameters (see [`PARAMS`](Self::PARAMS)) give:
    /// a limit below one page, where no backup could ever succeed, is refused.
    pub fn from_params(params: &[(&str, &str)]) -> std::result::Result<Self, ParamError> {
        let params = Params::new(NAME, Self::PARAMS, params)?;
        Ok(match params.size_at_least("limit", PAGE_SIZE as u64)? {
            Some(limit) => Self::with_limit(limit),
            None => Self::new(),
        })
    }

    /// The limit in bytes, if one was set.
    pub fn limit(&self) -> Option<u64> {
        (self.limit_pages != u64::MAX / PAGE_SIZE as u64).then_some(self.limit_pages * PAGE_SIZE as u64)
    }

    /// Finds the live slot `handle` names and runs `f` on it under its shard's lock.
    fn with_live_slot<R>(&self, handle: Handle, op: Operation, f: impl FnOnce(&mut Shard, u32) -> R) -> Result<R> {
        let (slot, generation) = self.codec.decode(handle);
        let (shard_index, local) = self.shards.split(slot);
        let mut shard = self.shards.lock(shard_index);
        match shard.table.live_generation(local) {
            Some(live) if live == generation => Ok(f(&mut shard, local)),
            _ => Err(BackupError::InvalidHandle {
                origin: Origin::new(NAME, op),
                handle,
            }),
        }
    }

    fn no_space(&self, detail: String) -> BackupError {
        self.failed_backups.fetch_add(1, Ordering::Relaxed);
        BackupError::NoSpace {
            origin: Origin::new(NAME, Operation::BackupPage),
            detail,
        }
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl BackupBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn backup_page(&self, page: &Page, _idx: u64, _flags: BackupFlags) -> Result<Handle> {
        let reserved = self.stored_pages.fetch_add(1, Ordering::AcqRel);
        if reserved >= self.limit_pages {
            self.stored_pages.fetch_sub(1, Ordering::AcqRel);
            return Err(self.no_space(format!(
                "limit of {} bytes reached",
                self.limit_pages * PAGE_SIZE as u64
            )));
        }
        let shard_index = self.shards.mine();
        let mut shard = self.shards.lock(shard_index);
        let Some((local, generation)) = shard.table.alloc() else {
            drop(shard);
            self.stored_pages.fetch_sub(1, Ordering::AcqRel);
            return Err(self.no_space(format!(
                "all {} slots of shard {shard_index} are in use",
                self.shards.local_slots()
            )));
        };
        shard.page_for_new(local).clone_from(page);
        Ok(self.codec.encode(self.shards.slot(shard_index, local), generation))
    }

    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        if is_set(intr) {
            self.failed_restores.fetch_add(1, Ordering::Relaxed);
            return Err(BackupError::Interrupted {
                origin: Origin::new(NAME, Operation::CopyPage),
            });
        }
        self.with_live_slot(handle, Operation::CopyPage, |shard, local| {
            dst.clone_from(shard.page(local))
        })
        .inspect_err(|_| {
            self.failed_restores.fetch_add(1, Ordering::Relaxed);
        })
    }

    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.with_live_slot(handle, Operation::DropHandle, |shard, local| shard.release(local))?;
        self.stored_pages.fetch_sub(1, Ordering::AcqRel);
        Ok(())
    }

    fn bytes_avail(&self) -> u64 {
        let stored = self.stored_pages.load(Ordering::Relaxed);
        match self.limit() {
            Some(_) => self.limit_pages.saturating_sub(stored) * PAGE_SIZE as u64,
            None => {
                let info = rustix::system::sysinfo();
                (info.freeram as u64).saturating_mul(u64::from(info.mem_unit))
            }
        }
    }

    /// Every live page takes a whole page.
    fn stored_size(&self, handle: Handle) -> Option<u64> {
        self.with_live_slot(handle, Operation::Maintenance, |_, _| PAGE_SIZE as u64)
            .ok()
    }

    fn stats(&self) -> BackupStats {
        // One count for the whole backend, not a sum over shards: a sum
        // taken while pages come and go in different shards can count a
        // page twice. It includes backups in flight, never less than stored.
        let mut stats = BackupStats {
            stored_pages: self.stored_pages.load(Ordering::Acquire),
            ..BackupStats::default()
        };
        for shard in self.shards.each() {
            stats.metadata_bytes += shard.table.metadata_bytes();
            stats.memory_used += shard.slab_bytes();
        }
        stats.memory_used += stats.metadata_bytes;
        stats.original_bytes = stats.stored_pages * PAGE_SIZE as u64;
        stats.stored_bytes = stats.original_bytes;
        stats.failed_backups = self.failed_backups.load(Ordering::Relaxed);
        stats.failed_restores = self.failed_restores.load(Ordering::Relaxed);
        stats
    }

    /// A copy under a shard lock: nothing to wait for.
    fn never_blocks(&self) -> bool {
        true
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("limit", &self.limit())
            .field("stored_pages", &self.stored_pages.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_page_costs_a_page_and_a_dropped_one_nothing() {
        let backend = MemoryBackend::new();
        let h = backend.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE).unwrap();
        assert_eq!(backend.stored_size(h), Some(PAGE_SIZE as u64));
        backend.drop_handle(h).unwrap();
        assert_eq!(backend.stored_size(h), None);
    }
}
