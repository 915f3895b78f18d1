//! [`Placement`]: where each page goes in a backend's file or memfd, so
//! that one object's pages stay together.

use std::ops::Range;

use crate::{Handle, HandleCodec, SlotTable};

/// Slots of a backend's storage, placed so that pages with consecutive `idx`
/// land in consecutive slots where those are free (one contiguous write, one
/// contiguous writeback or hole punch), otherwise in the most recently freed
/// slot.
#[derive(Debug)]
pub struct Placement {
    /// The slots and their generations.
    pub table: SlotTable,
    /// The `idx` and slot of the last page placed.
    last: Option<(u64, u32)>,
}

impl Placement {
    /// Placement over `capacity_pages` slots.
    pub fn new(capacity_pages: u32) -> Self {
        Placement {
            table: SlotTable::new(capacity_pages),
            last: None,
        }
    }

    /// A slot for the page at `idx`: `(slot, generation)`, or `None` when full.
    pub fn place(&mut self, idx: u64) -> Option<(u32, u32)> {
        let follow = self.last.and_then(|(last_idx, last_slot)| {
            let slot = last_slot.checked_add(1)?;
            (idx == last_idx.wrapping_add(1)).then_some(slot)
        });
        let placed = follow
            .and_then(|slot| self.table.alloc_at(slot).map(|generation| (slot, generation)))
            .or_else(|| self.table.alloc())?;
        self.last = Some((idx, placed.0));
        Some(placed)
    }
}

impl Placement {
    /// Slots for up to `n` pages at `first_idx, first_idx + 1, ...`: fewer
    /// when the slots run out.
    pub fn place_run(&mut self, first_idx: u64, n: usize) -> Vec<(u32, u32)> {
        (0..n)
            .map_while(|k| self.place(first_idx.wrapping_add(k as u64)))
            .collect()
    }

    /// The live slot `handle` names, if `codec` issued it for the slot's
    /// current generation.
    pub fn live_slot(&self, codec: &HandleCodec, handle: Handle) -> Option<u32> {
        let slot = codec.slot(handle);
        self.table
            .live_generation(slot)
            .filter(|&g| codec.matches(handle, g))
            .map(|_| slot)
    }

    /// The live slots of `handles`, in order, up to the first handle that is
    /// not live, whose index comes second (`None` when all are live).
    pub fn live_slots(&self, codec: &HandleCodec, handles: &[Handle]) -> (Vec<u32>, Option<usize>) {
        let mut slots = Vec::with_capacity(handles.len());
        for (k, &handle) in handles.iter().enumerate() {
            match self.live_slot(codec, handle) {
                Some(slot) => slots.push(slot),
                None => return (slots, Some(k)),
            }
        }
        (slots, None)
    }
}

/// Splits `slots` into index ranges whose slots ascend by one: each range is
/// one contiguous region of the memfd.
pub fn contiguous_runs(slots: &[u32]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    (1..=slots.len()).filter_map(move |end| {
        if end == slots.len() || slots[end - 1].checked_add(1) != Some(slots[end]) {
            let run = start..end;
            start = end;
            Some(run)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_indices_get_consecutive_slots() {
        let mut p = Placement::new(16);
        let slots: Vec<u32> = (10..14).map(|idx| p.place(idx).unwrap().0).collect();
        assert_eq!(slots, [0, 1, 2, 3]);
        // A page of another object goes elsewhere, then the first object resumes.
        assert_eq!(p.place(500).unwrap().0, 4);
        assert_eq!(p.place(501).unwrap().0, 5);
        for slot in [1, 2] {
            p.table.release(slot);
        }
        // idx 7 follows nothing: the most recently freed slot.
        assert_eq!(p.place(7).unwrap().0, 2);
        assert_eq!(
            p.place(8).unwrap().0,
            1,
            "slot 3 is live, so idx 8 takes the other freed slot"
        );
    }

    #[test]
    fn a_run_stops_where_the_slots_do_and_handles_name_live_slots() {
        let mut p = Placement::new(5);
        let codec = HandleCodec::new();
        let run = p.place_run(100, 8);
        assert_eq!(run.iter().map(|&(s, _)| s).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        let (slot, generation) = run[2];
        let handle = codec.encode(slot, generation);
        assert_eq!(p.live_slot(&codec, handle), Some(2));
        assert_eq!(p.live_slot(&HandleCodec::new(), handle), None, "another codec's handle");
        let first = codec.encode(run[0].0, run[0].1);
        assert_eq!(p.live_slots(&codec, &[first, handle, first]), (vec![0, 2, 0], None));
        p.table.release(2);
        assert_eq!(p.live_slot(&codec, handle), None, "a freed slot");
        assert_eq!(p.live_slots(&codec, &[first, handle, first]), (vec![0], Some(1)));
    }

    #[test]
    fn runs_split_where_slots_jump() {
        let runs: Vec<Range<usize>> = contiguous_runs(&[4, 5, 6, 9, 10, 3, 3]).collect();
        assert_eq!(runs, [0..3, 3..5, 5..6, 6..7]);
        assert_eq!(contiguous_runs(&[]).count(), 0);
        assert_eq!(contiguous_runs(&[u32::MAX, 0]).collect::<Vec<_>>(), [0..1, 1..2]);
    }
}
