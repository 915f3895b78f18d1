//! The tiered backend's own handle table: each live page's tier, its handle
//! there, its cost and when it was last used.

use std::collections::HashMap;
use std::ops::Range;

use pagebackup_core::Handle;
use pagebackup_core::raw::SlotTable;

/// Where a live page is and what the policy needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The page's handle in its tier.
    pub(crate) inner: Handle,
    /// The bytes it is counted for in its tier's budget.
    pub(crate) cost: u32,
    /// [`Clock`] time of its backup or last restore.
    pub(crate) last_use: u32,
    /// [`Clock`] time it entered its tier's FIFO: came to the tier, or was
    /// reinserted by [`Policy::S3Fifo`](crate::Policy::S3Fifo). Milliseconds,
    /// like `last_use`, so that FIFO order holds for 49 days whatever the
    /// number of policy runs.
    pub(crate) since: u32,
    /// The tier holding it (0 is the first).
    pub(crate) tier: u8,
    /// Restores since it came to its tier (saturating), halved each time
    /// the policy looks at its tier: a counting clock, so that a page
    /// restored often outranks one restored once lately. Under
    /// [`Policy::S3Fifo`](crate::Policy::S3Fifo), S3-FIFO's frequency.
    pub(crate) heat: u8,
    /// [`Flag`]s, one bit each, so that an entry stays 24 bytes.
    flags: u8,
}

/// A yes-or-no fact about a page in its [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Flag {
    /// Its tier stores it poorly (above the huge threshold).
    Huge = 1,
    /// In the main FIFO of [`Policy::S3Fifo`](crate::Policy::S3Fifo), not
    /// the small one that new pages enter.
    Main = 2,
    /// A drop of the page is running (its inner drop outside the shard
    /// lock): the handle names it until that drop succeeds, but no move
    /// may switch it and no second drop may start.
    Dropping = 4,
    /// The page also has a [`Kept`] copy in a lower tier (it was promoted
    /// and its copy below kept), in its shard table's side map.
    Kept = 8,
    /// Its promotion waits for the policy thread or task: a restore does
    /// not queue it again.
    Queued = 16,
    /// It is in a batch of moves in flight (`Shared::move_batch`): a drop
    /// of it waits for the batch to end, so that no copy the batch made or
    /// has yet to release outlives the drop.
    Moving = 32,
}

impl Entry {
    /// A page stored in `tier` under `inner` for `cost` bytes at `now`,
    /// cold, entering the tier's small FIFO, with no other flag than `huge`.
    pub(crate) fn new(inner: Handle, tier: u8, cost: u32, huge: bool, now: u32) -> Self {
        Entry {
            inner,
            cost,
            last_use: now,
            since: now,
            tier,
            heat: 0,
            flags: if huge { Flag::Huge as u8 } else { 0 },
        }
    }

    /// Whether `flag` is set.
    pub(crate) fn is(&self, flag: Flag) -> bool {
        self.flags & flag as u8 != 0
    }

    /// Sets `flag` to `on`; returns whether it was set before.
    pub(crate) fn set(&mut self, flag: Flag, on: bool) -> bool {
        let was = self.is(flag);
        if on {
            self.flags |= flag as u8;
        } else {
            self.flags &= !(flag as u8);
        }
        was
    }
}

/// The copy a promoted page keeps in the tier it came from: the page's
/// bytes never change under a handle, so this copy stays good for as long
/// as the page lives, and moving the page down again is a drop of its
/// upper copy, with no recompression, and no hole left below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kept {
    /// Its handle in its tier.
    pub(crate) inner: Handle,
    /// Its tier, below the one the page is served from.
    pub(crate) tier: u8,
    /// The bytes it is counted for in its tier.
    pub(crate) cost: u32,
}

/// One shard's slots and entries.
#[derive(Debug)]
pub(crate) struct Table {
    slots: SlotTable,
    entries: Vec<Option<Entry>>,
    /// The kept copies of the promoted pages, by slot: only pages promoted
    /// with a copy kept below have one, so the map stays the size of the
    /// upper tier at most, and every other entry pays one flag for it.
    kept: HashMap<u32, Kept>,
    /// Restores of the shard's pages so far: the policy's window of
    /// accesses, counted under the lock the restore takes anyway.
    pub(crate) restores: u64,
}

impl Table {
    pub(crate) fn new(max_slots: u32) -> Self {
        Table {
            slots: SlotTable::new(max_slots),
            entries: Vec::new(),
            kept: HashMap::new(),
            restores: 0,
        }
    }

    /// Takes a slot for `entry`: its local slot and generation, or `None`
    /// when every slot is live.
    pub(crate) fn insert(&mut self, entry: Entry) -> Option<(u32, u32)> {
        let (slot, generation) = self.slots.alloc()?;
        let index = slot as usize;
        if index >= self.entries.len() {
            self.entries.resize(index + 1, None);
        }
        self.entries[index] = Some(entry);
        Some((slot, generation))
    }

    /// The entry of `slot` if it is live at `generation`.
    pub(crate) fn get(&mut self, slot: u32, generation: u32) -> Option<&mut Entry> {
        if generation == 0 || self.slots.live_generation(slot) != Some(generation) {
            return None;
        }
        self.entries[slot as usize].as_mut()
    }

    /// Counts a restore of `slot` (live at `generation`): stamps it with
    /// `now`, adds one to its heat and to the shard's restores, and returns
    /// the entry as it is then.
    pub(crate) fn restored(&mut self, slot: u32, generation: u32, now: u32) -> Option<Entry> {
        let entry = self.get(slot, generation)?;
        entry.last_use = now;
        entry.heat = entry.heat.saturating_add(1);
        let entry = *entry;
        self.restores += 1;
        Some(entry)
    }

    /// Frees `slot` (live at `generation`), returning its entry and its
    /// kept copy, if it has one.
    pub(crate) fn remove(&mut self, slot: u32, generation: u32) -> Option<(Entry, Option<Kept>)> {
        self.get(slot, generation)?;
        self.slots.release(slot);
        let entry = self.entries[slot as usize].take()?;
        let kept = self.take_kept(slot, &entry);
        Some((entry, kept))
    }

    /// Notes `kept` as the kept copy of the page at `slot`.
    pub(crate) fn keep(&mut self, slot: u32, kept: Kept) {
        self.kept.insert(slot, kept);
    }

    /// The kept copy of the page at `slot` whose entry is `entry`, if it has one.
    pub(crate) fn kept(&self, slot: u32, entry: &Entry) -> Option<Kept> {
        entry.is(Flag::Kept).then(|| self.kept.get(&slot).copied()).flatten()
    }

    /// Takes the kept copy of the page at `slot` out of the side map, its
    /// entry's flag already cleared.
    pub(crate) fn take_settled(&mut self, slot: u32) -> Option<Kept> {
        self.kept.remove(&slot)
    }

    /// Takes the kept copies held in tier `tier` out of the side map, until
    /// they come to `bytes` at least, clearing their entries' flags, and
    /// adds them to `out`; pages being dropped keep theirs, which their
    /// drop releases. Returns the bytes taken.
    pub(crate) fn take_kept_in(&mut self, tier: u8, bytes: u64, out: &mut Vec<Kept>) -> u64 {
        let (entries, mut taken) = (&mut self.entries, 0);
        self.kept.retain(|&slot, kept| {
            let entry = entries[slot as usize].as_mut();
            let Some(entry) = entry.filter(|e| taken < bytes && kept.tier == tier && !e.is(Flag::Dropping)) else {
                return true;
            };
            entry.set(Flag::Kept, false);
            taken += u64::from(kept.cost);
            out.push(*kept);
            false
        });
        taken
    }

    /// Takes the kept copy of the page at `slot` whose entry is `entry`
    /// out of the side map, if it has one.
    pub(crate) fn take_kept(&mut self, slot: u32, entry: &Entry) -> Option<Kept> {
        entry.is(Flag::Kept).then(|| self.kept.remove(&slot)).flatten()
    }

    /// Every live entry of the slots of `range` with its slot and generation, or those of tier
    /// `tier` only: the tier is checked first, so that a scan of a small
    /// tier reads no generation of another tier's pages.
    pub(crate) fn live_in(
        &mut self,
        tier: Option<u8>,
        range: Range<usize>,
    ) -> impl Iterator<Item = (u32, u32, &mut Entry)> + '_ {
        let slots = &self.slots;
        let end = range.end.min(self.entries.len());
        let start = range.start.min(end);
        self.entries[start..end]
            .iter_mut()
            .zip(start..)
            .filter_map(move |(entry, slot)| {
                let entry = entry.as_mut().filter(|e| tier.is_none_or(|t| e.tier == t))?;
                let slot = slot as u32;
                Some((slot, slots.live_generation(slot)?, entry))
            })
    }

    /// Slots the table has entries for, live or not.
    pub(crate) fn slots(&self) -> usize {
        self.entries.len()
    }

    /// Live pages.
    pub(crate) fn len(&self) -> u64 {
        self.slots.live()
    }

    /// Bytes of heap the table uses.
    pub(crate) fn metadata_bytes(&self) -> u64 {
        // A hash map's slot: the key, the value and a control byte.
        let kept = self.kept.capacity() * (size_of::<(u32, Kept)>() + 1);
        self.slots.metadata_bytes() + (self.entries.capacity() * size_of::<Option<Entry>>() + kept) as u64
    }
}

/// The idle clock: milliseconds since the backend was made, read once per
/// backup and restore (a vDSO clock read, no shared write) and stored per
/// page, so that finding cold pages needs no list kept on the hot path.
///
/// The clock is the kernel's coarse monotonic one (`CLOCK_MONOTONIC_COARSE`,
/// a tick's resolution, 1–10 ms by the kernel's `HZ`): pages used within
/// one tick look equally recent. Read on every restore, the precise clock
/// cost 25–30 ns of a 700 ns restore from an lz4 tier, a third of what the
/// tiered layer adds to it.
#[derive(Debug)]
pub(crate) struct Clock {
    start_ms: u64,
}

/// The coarse monotonic clock, in milliseconds.
fn coarse_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000_000
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock { start_ms: coarse_ms() }
    }

    /// Now, in milliseconds (saturating after 49 days: pages then all look
    /// equally recent, which costs ordering, never correctness).
    pub(crate) fn now(&self) -> u32 {
        u32::try_from(coarse_ms().saturating_sub(self.start_ms)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Entry {
        Entry::new(Handle::from_raw(n).unwrap(), 0, 4096, false, 0)
    }

    fn with(flag: Flag, on: bool, mut e: Entry) -> Entry {
        e.set(flag, on);
        e
    }

    #[test]
    fn an_entry_takes_24_bytes() {
        assert_eq!(size_of::<Option<Entry>>(), 24);
    }

    #[test]
    fn flags_are_set_and_cleared_one_by_one() {
        let mut e = entry(1);
        assert!(!e.set(Flag::Kept, true));
        assert!(!e.set(Flag::Queued, true));
        assert!(e.set(Flag::Kept, true), "it was set");
        assert!(e.is(Flag::Kept) && e.is(Flag::Queued) && !e.is(Flag::Huge) && !e.is(Flag::Dropping));
        assert!(e.set(Flag::Kept, false));
        assert!(!e.is(Flag::Kept) && e.is(Flag::Queued));
        assert!(Entry::new(Handle::from_raw(1).unwrap(), 0, 1, true, 0).is(Flag::Huge));
    }

    #[test]
    fn entries_follow_their_slot_generation() {
        let mut t = Table::new(4);
        let (slot, generation) = t.insert(entry(1)).unwrap();
        assert_eq!(t.get(slot, generation).map(|e| e.inner), Handle::from_raw(1));
        assert_eq!(t.get(slot, generation + 1), None);
        assert_eq!(t.get(slot, 0), None);
        assert_eq!(t.live_in(None, 0..4).count(), 1);
        assert_eq!(t.live_in(Some(1), 0..4).count(), 0);
        assert_eq!(t.remove(slot, generation), Some((entry(1), None)));
        assert_eq!(t.remove(slot, generation), None);
        let (again, next) = t.insert(entry(2)).unwrap();
        assert_eq!(again, slot);
        assert_ne!(next, generation);
        assert_eq!(t.get(slot, generation), None, "the old generation names nothing");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn kept_copies_in_a_tier_are_taken_up_to_the_bytes_asked() {
        let mut t = Table::new(8);
        let mut slots = Vec::new();
        for (n, tier) in [(1, 1), (2, 2), (3, 1), (4, 1)] {
            let (slot, generation) = t.insert(with(Flag::Kept, true, entry(n))).unwrap();
            let inner = Handle::from_raw(10 + n).unwrap();
            t.keep(slot, Kept { inner, tier, cost: 700 });
            slots.push((slot, generation));
        }
        let mut out = Vec::new();
        assert_eq!(
            t.take_kept_in(1, 1000, &mut out),
            1400,
            "whole copies, until 1000 bytes are passed"
        );
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|k| k.tier == 1));
        let flagged = |t: &mut Table| {
            slots
                .iter()
                .filter(|&&(s, g)| t.get(s, g).unwrap().is(Flag::Kept))
                .count()
        };
        assert_eq!(flagged(&mut t), 2, "the copies taken cleared their flags");
        assert_eq!(t.take_kept_in(1, u64::MAX, &mut out), 700);
        assert_eq!(t.take_kept_in(1, u64::MAX, &mut out), 0);
        assert_eq!(flagged(&mut t), 1, "the copy in tier 2 stays");
    }

    #[test]
    fn a_kept_copy_follows_its_entry_out() {
        let mut t = Table::new(4);
        let (slot, generation) = t.insert(with(Flag::Kept, true, entry(1))).unwrap();
        let kept = Kept {
            inner: Handle::from_raw(9).unwrap(),
            tier: 1,
            cost: 700,
        };
        t.keep(slot, kept);
        let e = *t.get(slot, generation).unwrap();
        assert_eq!(t.kept(slot, &e), Some(kept));
        assert_eq!(t.kept(slot, &with(Flag::Kept, false, e)), None, "no flag, no copy");
        assert_eq!(t.remove(slot, generation), Some((e, Some(kept))));
        assert_eq!(t.kept(slot, &e), None, "the copy left with its entry");
    }
}
