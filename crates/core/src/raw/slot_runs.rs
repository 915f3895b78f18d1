//! How page arrays walk their positions: [`next_slot_run`] and
//! [`tally_slots`], shared by the sync [`PageArray`](crate::PageArray) and
//! its async twin.

use std::ops::Range;

use crate::{Counts, Slot};

/// Positions a page array hands to one batch call.
pub const ARRAY_BATCH: usize = 64;

/// The next run of at most [`ARRAY_BATCH`] consecutive positions of `len`
/// in state `want`, from `start`, where `slot(i)` is position `i`'s state.
pub fn next_slot_run(
    len: usize,
    start: usize,
    want: Slot,
    slot: impl Fn(usize) -> Option<Slot>,
) -> Option<Range<usize>> {
    let first = (start..len).find(|&i| slot(i) == Some(want))?;
    let limit = len.min(first + ARRAY_BATCH);
    let end = (first..limit).find(|&i| slot(i) != Some(want)).unwrap_or(limit);
    Some(first..end)
}

/// How many of `slots` are in each state (a position without one counts as empty).
pub fn tally_slots(slots: impl IntoIterator<Item = Option<Slot>>) -> Counts {
    let mut counts = Counts::default();
    for slot in slots {
        match slot {
            Some(Slot::Resident) => counts.resident += 1,
            Some(Slot::Backed) => counts.backed += 1,
            _ => counts.empty += 1,
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_stop_at_a_change_of_state_or_a_full_batch() {
        let states = [Slot::Backed, Slot::Resident, Slot::Resident, Slot::Backed];
        let slot = |i: usize| states.get(i).copied();
        assert_eq!(next_slot_run(4, 0, Slot::Resident, slot), Some(1..3));
        assert_eq!(next_slot_run(4, 3, Slot::Resident, slot), None);
        assert_eq!(
            next_slot_run(200, 0, Slot::Empty, |_| Some(Slot::Empty)),
            Some(0..ARRAY_BATCH)
        );
        let counts = tally_slots((0..5).map(slot));
        assert_eq!((counts.resident, counts.backed, counts.empty), (2, 2, 1));
    }
}
