//! The tiered backend's own handle table: each live page's tier, its handle
//! there, its cost and when it was last used.

use std::collections::HashMap;
use std::time::Instant;

use pagebackup_core::Handle;
use pagebackup_core::raw::SlotTable;

/// Where a live page is and what the policy needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The page's handle in its tier.
    pub(crate) inner: Handle,
    /// The tier holding it (0 is the first).
    pub(crate) tier: u8,
    /// Whether its tier stores it poorly (above the huge threshold).
    pub(crate) huge: bool,
    /// The bytes it is counted for in its tier's budget.
    pub(crate) cost: u32,
    /// [`Clock`] time of its backup or last restore.
    pub(crate) last_use: u32,
    /// Restores since it came to its tier (saturating), halved each time
    /// the policy looks at its tier: a counting clock, so that a page
    /// restored often outranks one restored once lately. Under
    /// [`Policy::S3Fifo`](crate::Policy::S3Fifo), S3-FIFO's frequency.
    pub(crate) heat: u8,
    /// The policy run (the low 16 bits of its count) in which it entered
    /// its tier's FIFO: came to the tier, or was reinserted by
    /// [`Policy::S3Fifo`](crate::Policy::S3Fifo). Run order is FIFO order
    /// for a batch policy; after 65536 runs it wraps, which costs order,
    /// never correctness. Two bytes, so that an entry stays 24.
    pub(crate) since: u16,
    /// In the main FIFO of [`Policy::S3Fifo`](crate::Policy::S3Fifo), not
    /// the small one that new pages enter.
    pub(crate) main: bool,
    /// A drop of the page is running (its inner drop outside the shard
    /// lock): the handle names it until that drop succeeds, but no move
    /// may switch it and no second drop may start.
    pub(crate) dropping: bool,
    /// The page also has a [`Kept`] copy in a lower tier (it was promoted
    /// and its copy below kept), in its shard table's side map.
    pub(crate) kept: bool,
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
        entry.kept.then(|| self.kept.get(&slot).copied()).flatten()
    }

    /// Takes the kept copy of the page at `slot` out of the side map, its
    /// entry's flag already cleared.
    pub(crate) fn take_settled(&mut self, slot: u32) -> Option<Kept> {
        self.kept.remove(&slot)
    }

    /// Takes the kept copy of the page at `slot` whose entry is `entry`
    /// out of the side map, if it has one.
    pub(crate) fn take_kept(&mut self, slot: u32, entry: &Entry) -> Option<Kept> {
        entry.kept.then(|| self.kept.remove(&slot)).flatten()
    }

    /// Every live entry with its slot and generation, or those of tier
    /// `tier` only: the tier is checked first, so that a scan of a small
    /// tier reads no generation of another tier's pages.
    pub(crate) fn live(&mut self, tier: Option<u8>) -> impl Iterator<Item = (u32, u32, &mut Entry)> + '_ {
        let slots = &self.slots;
        self.entries.iter_mut().enumerate().filter_map(move |(slot, entry)| {
            let entry = entry.as_mut().filter(|e| tier.is_none_or(|t| e.tier == t))?;
            let slot = slot as u32;
            Some((slot, slots.live_generation(slot)?, entry))
        })
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
#[derive(Debug)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock { start: Instant::now() }
    }

    /// Now, in milliseconds (saturating after 49 days: pages then all look
    /// equally recent, which costs ordering, never correctness).
    pub(crate) fn now(&self) -> u32 {
        u32::try_from(self.start.elapsed().as_millis()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Entry {
        Entry {
            inner: Handle::from_raw(n).unwrap(),
            tier: 0,
            huge: false,
            cost: 4096,
            last_use: 0,
            heat: 0,
            since: 0,
            main: false,
            dropping: false,
            kept: false,
        }
    }

    #[test]
    fn an_entry_takes_24_bytes() {
        assert_eq!(size_of::<Option<Entry>>(), 24);
    }

    #[test]
    fn entries_follow_their_slot_generation() {
        let mut t = Table::new(4);
        let (slot, generation) = t.insert(entry(1)).unwrap();
        assert_eq!(t.get(slot, generation).map(|e| e.inner), Handle::from_raw(1));
        assert_eq!(t.get(slot, generation + 1), None);
        assert_eq!(t.get(slot, 0), None);
        assert_eq!(t.live(None).count(), 1);
        assert_eq!(t.live(Some(1)).count(), 0);
        assert_eq!(t.remove(slot, generation), Some((entry(1), None)));
        assert_eq!(t.remove(slot, generation), None);
        let (again, next) = t.insert(entry(2)).unwrap();
        assert_eq!(again, slot);
        assert_ne!(next, generation);
        assert_eq!(t.get(slot, generation), None, "the old generation names nothing");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_kept_copy_follows_its_entry_out() {
        let mut t = Table::new(4);
        let (slot, generation) = t.insert(Entry { kept: true, ..entry(1) }).unwrap();
        let kept = Kept {
            inner: Handle::from_raw(9).unwrap(),
            tier: 1,
            cost: 700,
        };
        t.keep(slot, kept);
        let e = *t.get(slot, generation).unwrap();
        assert_eq!(t.kept(slot, &e), Some(kept));
        assert_eq!(t.kept(slot, &Entry { kept: false, ..e }), None, "no flag, no copy");
        assert_eq!(t.remove(slot, generation), Some((e, Some(kept))));
        assert_eq!(t.kept(slot, &e), None, "the copy left with its entry");
    }
}
