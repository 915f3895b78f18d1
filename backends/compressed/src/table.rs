//! [`Table`]: one shard's handle table, in segments of [`SEGMENT_SLOTS`]
//! entries that are allocated when first needed and freed when their last
//! page is dropped, so the table's memory follows the pages it holds
//! rather than the most it ever held.

use crate::budget::Budget;
use crate::entry::{ENTRY_BYTES, Entry, GENERATION_COUNTS, Location, Stored};

/// Entries per segment: a small segment keeps little room unused at the
/// end of a shard's table.
pub(crate) const SEGMENT_SLOTS: usize = 256;
/// Bytes of one segment's entries.
pub(crate) const SEGMENT_BYTES: u64 = (SEGMENT_SLOTS * ENTRY_BYTES) as u64;
/// Segments the directory grows by at least (and by an eighth of its size
/// beyond that, so that growing stays linear in time and leaves at most an
/// eighth unused).
const DIRECTORY_STEP: usize = 16;
/// Bytes of the directory's first step.
pub(crate) const DIRECTORY_STEP_BYTES: u64 = (DIRECTORY_STEP * std::mem::size_of::<Segment>()) as u64;
/// No entry: the end of a free list.
const NONE: u32 = u32::MAX;

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every slot the shard can address is live (or retired).
    Full,
    /// A new segment or chunk would pass the memory limit.
    Limit,
    /// The shard's arena has as many chunks as an entry can address.
    Chunks,
    /// The slot's sealing counter is spent (`seal=on`): sealing it again
    /// would repeat a nonce.
    #[cfg_attr(not(feature = "seal"), expect(dead_code, reason = "only sealing wears slots out"))]
    Worn,
}

struct Segment {
    entries: Option<Box<[Entry]>>,
    live: u32,
    /// The first free entry (freed entries, last freed first; a spent
    /// entry is never on the list).
    free: u32,
    /// Entries from here on were never used since the segment was made.
    fresh: u32,
    /// The generation count its entries' counts add to: for a new
    /// incarnation of the segment, above every count the last one reached,
    /// so no old handle matches.
    base: u32,
}

impl Segment {
    fn has_room(&self) -> bool {
        self.entries.is_none() || self.free != NONE || (self.fresh as usize) < SEGMENT_SLOTS
    }
}

/// A shard's entries, by local slot number.
pub(crate) struct Table {
    segments: Vec<Segment>,
    max_segments: usize,
    /// No segment below this one has a free slot.
    open: usize,
    live: u64,
    /// Bytes charged: live segments and the directory.
    bytes: u64,
}

impl Table {
    /// An empty table addressing at most `max_slots` slots.
    pub(crate) fn new(max_slots: u32) -> Self {
        Table {
            segments: Vec::new(),
            max_segments: max_slots as usize / SEGMENT_SLOTS,
            open: 0,
            live: 0,
            bytes: 0,
        }
    }

    /// Allocates a slot holding `stored`: its number and generation. A new
    /// segment is charged to `budget` with `keep` bytes to spare.
    pub(crate) fn alloc(&mut self, stored: Stored, budget: &Budget, keep: u64) -> Result<(u32, u32), Refused> {
        let mut s = self.open;
        while s < self.segments.len() && !self.segments[s].has_room() {
            s += 1;
        }
        if s == self.segments.len() {
            if s == self.max_segments {
                return Err(Refused::Full);
            }
            if self.segments.len() == self.segments.capacity() {
                let step = DIRECTORY_STEP.max(self.segments.len() / 8);
                let bytes = (step * std::mem::size_of::<Segment>()) as u64;
                if !budget.reserve(bytes, keep) {
                    return Err(Refused::Limit);
                }
                self.segments.reserve_exact(step);
                self.bytes += bytes;
            }
            self.segments.push(Segment {
                entries: None,
                live: 0,
                free: NONE,
                fresh: 0,
                base: 0,
            });
        }
        self.open = s;
        let segment = &mut self.segments[s];
        let entries = match &mut segment.entries {
            Some(entries) => entries,
            None => {
                if !budget.reserve(SEGMENT_BYTES, keep) {
                    return Err(Refused::Limit);
                }
                self.bytes += SEGMENT_BYTES;
                segment.fresh = 0;
                segment.free = NONE;
                segment
                    .entries
                    .insert(vec![Entry::free(0, NONE); SEGMENT_SLOTS].into_boxed_slice())
            }
        };
        let i = if segment.free != NONE {
            let i = segment.free;
            segment.free = entries[i as usize].next_free();
            i
        } else {
            segment.fresh += 1;
            segment.fresh - 1
        };
        let entry = entries[i as usize].fill(stored);
        entries[i as usize] = entry;
        segment.live += 1;
        self.live += 1;
        let generation = entry.live_generation(segment.base).expect("a filled entry is live");
        Ok(((s * SEGMENT_SLOTS) as u32 + i, generation))
    }

    /// The generation and contents of a live slot.
    pub(crate) fn get(&self, slot: u32) -> Option<(u32, Stored)> {
        let (s, i) = (slot as usize / SEGMENT_SLOTS, slot as usize % SEGMENT_SLOTS);
        let segment = self.segments.get(s)?;
        let entry = segment.entries.as_ref()?[i];
        Some((entry.live_generation(segment.base)?, entry.stored()?))
    }

    /// Points a live slot at the new place of its object.
    pub(crate) fn moved(&mut self, slot: u32, to: Location) {
        let (s, i) = (slot as usize / SEGMENT_SLOTS, slot as usize % SEGMENT_SLOTS);
        if let Some(entries) = self.segments.get_mut(s).and_then(|s| s.entries.as_mut()) {
            entries[i] = entries[i].moved(to);
        }
    }

    /// Frees a live slot; its segment goes when it was the last. A slot
    /// whose count is spent is retired rather than put on the free list
    /// (until its segment goes). Returns what the slot held, `None`
    /// (changing nothing) if it was not live.
    pub(crate) fn release(&mut self, slot: u32, budget: &Budget) -> Option<Stored> {
        let (s, i) = (slot as usize / SEGMENT_SLOTS, slot as usize % SEGMENT_SLOTS);
        let segment = self.segments.get_mut(s)?;
        let entries = segment.entries.as_mut()?;
        let stored = entries[i].stored()?;
        entries[i] = entries[i].release(segment.free);
        if !entries[i].spent() {
            segment.free = i as u32;
        }
        let mut room = !entries[i].spent();
        segment.live -= 1;
        self.live -= 1;
        if segment.live == 0 {
            room = true;
            let top = entries.iter().map(|e| e.count()).max().unwrap_or(0);
            segment.base = segment.base.wrapping_add(top + 1) & GENERATION_COUNTS;
            segment.entries = None;
            budget.release(SEGMENT_BYTES);
            self.bytes -= SEGMENT_BYTES;
        }
        if room {
            self.open = self.open.min(s);
        }
        Some(stored)
    }

    /// Live slots.
    pub(crate) fn live(&self) -> u64 {
        self.live
    }

    /// Bytes charged for the table.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::COUNT_MAX;

    #[test]
    fn segments_come_and_go_with_their_pages_and_generations_never_repeat() {
        let budget = Budget::new(None, 0);
        let mut table = Table::new(1 << 20);
        let slots: Vec<(u32, u32)> = (0..3000)
            .map(|i| table.alloc(Stored::Same(i), &budget, 0).unwrap())
            .collect();
        assert_eq!(slots[0].0, 0);
        assert_eq!(slots[2999].0, 2999, "slots are dense from 0");
        assert_eq!(
            table.bytes(),
            3000u64.div_ceil(SEGMENT_SLOTS as u64) * SEGMENT_BYTES + DIRECTORY_STEP_BYTES
        );
        assert_eq!(table.get(5).unwrap(), (slots[5].1, Stored::Same(5)));
        for &(slot, _) in &slots {
            assert!(table.release(slot, &budget).is_some());
        }
        assert_eq!(table.release(7, &budget), None, "a free slot is not freed twice");
        assert_eq!((table.live(), table.bytes()), (0, DIRECTORY_STEP_BYTES));
        assert_eq!(budget.used(), DIRECTORY_STEP_BYTES);
        // The segments come back with generations no old handle has.
        for &(slot, old) in &slots {
            let (again, generation) = table.alloc(Stored::Same(0), &budget, 0).unwrap();
            assert_eq!(again, slot);
            assert_ne!(generation, old);
            assert_eq!(table.get(slot).map(|g| g.0), Some(generation));
        }
    }

    #[test]
    fn a_spent_slot_is_retired_until_its_segment_comes_back() {
        let budget = Budget::new(None, 0);
        let mut table = Table::new(1 << 20);
        let (kept, kept_generation) = table.alloc(Stored::Same(1), &budget, 0).unwrap();
        let mut seen = std::collections::HashSet::from([(kept, kept_generation)]);
        let mut churned = None;
        for _ in 0..COUNT_MAX {
            let (slot, generation) = table.alloc(Stored::Same(2), &budget, 0).unwrap();
            assert!(
                seen.insert((slot, generation)),
                "a slot's generation is never given twice"
            );
            assert_eq!(*churned.get_or_insert(slot), slot, "the freed slot is reused first");
            table.release(slot, &budget).unwrap();
        }
        let churned = churned.unwrap();
        let (next, generation) = table.alloc(Stored::Same(2), &budget, 0).unwrap();
        assert_ne!(next, churned, "a spent slot is not allocated again");
        assert!(seen.insert((next, generation)));
        assert_eq!(table.get(churned), None);
        assert_eq!(
            table.get(kept),
            Some((kept_generation, Stored::Same(1))),
            "its neighbours are untouched"
        );
        // With its last page gone the segment is made anew, and the spent
        // slot is given out again under a generation above all those before.
        table.release(next, &budget).unwrap();
        table.release(kept, &budget).unwrap();
        assert_eq!(table.bytes(), DIRECTORY_STEP_BYTES);
        let slots: Vec<(u32, u32)> = (0..3)
            .map(|_| table.alloc(Stored::Same(3), &budget, 0).unwrap())
            .collect();
        assert!(slots.iter().any(|&(slot, _)| slot == churned), "{slots:?}");
        for pair in slots {
            assert!(seen.insert(pair), "no old handle matches the new incarnation");
        }
    }

    #[test]
    fn a_full_table_and_a_full_budget_refuse() {
        let mut table = Table::new(SEGMENT_SLOTS as u32);
        let budget = Budget::new(None, 0);
        for _ in 0..SEGMENT_SLOTS {
            table.alloc(Stored::Same(0), &budget, 0).unwrap();
        }
        assert_eq!(table.alloc(Stored::Same(0), &budget, 0), Err(Refused::Full));
        let tight = Budget::new(Some(SEGMENT_BYTES), 0);
        let mut table = Table::new(1 << 20);
        assert_eq!(table.alloc(Stored::Same(0), &tight, 0), Err(Refused::Limit));
        assert_eq!(table.live(), 0);
        assert_eq!(tight.used(), table.bytes(), "only what the table keeps is charged");
    }
}
