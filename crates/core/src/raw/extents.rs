//! [`FreeExtents`]: the free slots of one shard as runs, for extent
//! placement: lowest address first, near the object's previous page.

use std::collections::BTreeMap;
use std::ops::Range;

/// How many free runs placement looks through for one that fits a whole
/// batch, before it takes the lowest free slots piecewise.
const FIT_SCAN: usize = 64;

/// Free slots `0..limit` of one shard, kept as disjoint, non-adjacent runs.
///
/// Slots at and above `end` have never been handed out; placement extends
/// `end` only when no free slot is left below it, so `end` never exceeds the
/// peak number of slots taken at once: the storage behind the slots (a
/// file's apparent size, a memfd's touched range) and the tables indexed by
/// slot stay within the peak.
#[derive(Debug, Clone)]
pub struct FreeExtents {
    runs: BTreeMap<u32, u32>,
    free_below_end: u64,
    end: u32,
    limit: u32,
}

impl FreeExtents {
    /// Slots `0..limit`, all free.
    pub fn new(limit: u32) -> Self {
        FreeExtents {
            runs: BTreeMap::new(),
            free_below_end: 0,
            end: 0,
            limit,
        }
    }

    /// One past the highest slot ever handed out.
    pub fn end(&self) -> u32 {
        self.end
    }

    /// Free slots that can still be handed out.
    pub fn free(&self) -> u64 {
        self.free_below_end + u64::from(self.limit - self.end)
    }

    /// Takes up to `n` slots, as runs in the order to use them: first from
    /// `near` onwards if that slot is free below `end` (the slot after the
    /// object's previous page), then the lowest free run that holds the rest whole,
    /// else the lowest free slots piecewise, then never-used slots. Fewer
    /// than `n` only when the shard is full.
    pub fn take(&mut self, near: Option<u32>, n: u32) -> Vec<Range<u32>> {
        let mut out = Vec::new();
        let mut want = n;
        // Continuing at `end` while slots below it are free would let
        // `end` creep past the peak: only a free run is continued.
        if let Some(slot) = near.filter(|&s| s < self.end) {
            want -= self.take_at(slot, want, &mut out);
        }
        if want > 0
            && let Some(start) = self
                .runs
                .iter()
                .take(FIT_SCAN)
                .find(|&(_, &len)| len >= want)
                .map(|(&s, _)| s)
        {
            want -= self.take_at(start, want, &mut out);
        }
        while want > 0 {
            let Some((&start, _)) = self.runs.first_key_value() else {
                break;
            };
            want -= self.take_at(start, want, &mut out);
        }
        if want > 0 {
            let end = self.end;
            want -= self.take_at(end, want, &mut out);
        }
        debug_assert!(want == 0 || self.free() == 0);
        out
    }

    /// Takes up to `want` slots from `slot` on, if `slot` is free (in a run)
    /// or is `end`; appends the range taken (merged with the previous one
    /// when contiguous) and returns its length.
    fn take_at(&mut self, slot: u32, want: u32, out: &mut Vec<Range<u32>>) -> u32 {
        let got = if slot == self.end {
            let got = want.min(self.limit - self.end);
            self.end += got;
            got
        } else if let Some((&start, &len)) = self.runs.range(..=slot).next_back()
            && slot < start + len
        {
            self.runs.remove(&start);
            if start < slot {
                self.runs.insert(start, slot - start);
            }
            let avail = start + len - slot;
            let got = want.min(avail);
            if got < avail {
                self.runs.insert(slot + got, avail - got);
            }
            self.free_below_end -= u64::from(got);
            got
        } else {
            0
        };
        if got > 0 {
            match out.last_mut() {
                Some(last) if last.end == slot => last.end += got,
                _ => out.push(slot..slot + got),
            }
        }
        got
    }

    /// Takes exactly `range`, which must be free (below `end` in a free
    /// run, or at or above `end`). Returns `false`, changing nothing, if
    /// some slot of it is not free.
    pub fn take_range(&mut self, range: Range<u32>) -> bool {
        if range.is_empty() || range.end > self.limit {
            return false;
        }
        let below = range.start..range.end.min(self.end);
        let containing = if below.is_empty() {
            None
        } else {
            match self.runs.range(..=below.start).next_back() {
                Some((&start, &len)) if start + len >= below.end => Some((start, len)),
                _ => return false,
            }
        };
        if let Some((start, len)) = containing {
            self.runs.remove(&start);
            if start < below.start {
                self.runs.insert(start, below.start - start);
            }
            if below.end < start + len {
                self.runs.insert(below.end, start + len - below.end);
            }
            self.free_below_end -= u64::from(below.end - below.start);
        }
        if range.end > self.end {
            if range.start > self.end {
                self.runs.insert(self.end, range.start - self.end);
                self.free_below_end += u64::from(range.start - self.end);
            }
            self.end = range.end;
        }
        true
    }

    /// Returns `range` (taken before) to the free slots, merging neighbours;
    /// a run that reaches `end` lowers it.
    pub fn give(&mut self, range: Range<u32>) {
        debug_assert!(range.end <= self.end);
        let (mut start, mut end) = (range.start, range.end);
        if let Some((&s, &len)) = self.runs.range(..start).next_back()
            && s + len == start
        {
            self.runs.remove(&s);
            self.free_below_end -= u64::from(len);
            start = s;
        }
        if let Some(len) = self.runs.remove(&end) {
            self.free_below_end -= u64::from(len);
            end += len;
        }
        if end == self.end {
            self.end = start;
        } else {
            self.runs.insert(start, end - start);
            self.free_below_end += u64::from(end - start);
        }
    }

    /// The free slots as ascending runs: the free runs below `end`, then
    /// the never-used slots from `end` to the limit.
    pub fn free_runs(&self) -> impl Iterator<Item = Range<u32>> + '_ {
        let tail = (self.end < self.limit).then_some(self.end..self.limit);
        self.runs.iter().map(|(&start, &len)| start..start + len).chain(tail)
    }

    /// Bytes of heap the runs take, about.
    pub fn metadata_bytes(&self) -> u64 {
        // A B-tree node holds up to 11 (u32, u32) entries in about 140 bytes.
        (self.runs.len() as u64).div_ceil(11) * 140
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // expected runs, one of them
mod tests {
    use super::*;

    fn slots(runs: &[Range<u32>]) -> Vec<u32> {
        runs.iter().flat_map(|r| r.clone()).collect()
    }

    #[test]
    fn takes_lowest_first_and_continues_an_object() {
        let mut f = FreeExtents::new(100);
        assert_eq!(f.take(None, 4), [0..4]);
        assert_eq!(f.take(None, 4), [4..8]);
        f.give(1..3);
        // A batch of 2 fits the hole exactly.
        assert_eq!(f.take(None, 2), [1..3]);
        f.give(0..2);
        // Continuing at 8 (the slot after the object's last page) is
        // continuing at `end` while slots 0..2 are free: lowest first.
        assert_eq!(f.take(Some(8), 3), [0..2, 8..9]);
        f.give(0..2);
        f.give(8..9);
        // Continuing inside a free run.
        assert_eq!(f.take(Some(1), 1), [1..2]);
        f.give(1..2);
        // No run holds 5 whole below end: the hole, then fresh slots.
        assert_eq!(f.take(Some(50), 5), [0..2, 8..11]);
        assert_eq!(f.end(), 11);
    }

    #[test]
    fn giving_back_the_top_lowers_end_and_full_means_fewer() {
        let mut f = FreeExtents::new(10);
        assert_eq!(f.take(None, 6), [0..6]);
        f.give(4..6);
        assert_eq!(f.end(), 4);
        f.give(1..2);
        f.give(2..4);
        assert_eq!(f.end(), 1, "merged down to the top");
        assert_eq!(slots(&f.take(None, 20)), (1..10).collect::<Vec<_>>());
        assert_eq!(f.free(), 0);
        assert!(f.take(None, 1).is_empty());
    }

    #[test]
    fn take_range_splits_a_run() {
        let mut f = FreeExtents::new(10);
        f.take(None, 10);
        f.give(2..8);
        assert!(f.take_range(4..6));
        assert!(!f.take_range(5..7), "5 is taken");
        assert_eq!(f.free(), 4);
        f.give(4..6);
        assert_eq!(f.take(None, 6), [2..8]);
        // Above `end`: the gap below it becomes free, and giving it back
        // lowers `end` again.
        let mut f = FreeExtents::new(10);
        f.take(None, 2);
        assert!(f.take_range(5..7));
        assert_eq!((f.end(), f.free()), (7, 3 + 3));
        f.give(5..7);
        assert_eq!(f.end(), 2);
    }

    #[test]
    fn random_churn_never_exceeds_the_peak() {
        let mut f = FreeExtents::new(1 << 20);
        let mut held: Vec<u32> = Vec::new();
        let mut x = 1u64;
        let mut peak = 0;
        for _ in 0..20_000 {
            x = crate::mix::mix64(x);
            if !x.is_multiple_of(3) || held.is_empty() {
                for r in f.take(None, (x >> 8) as u32 % 64 + 1) {
                    held.extend(r);
                }
            } else {
                let n = ((x >> 8) as usize % held.len()) + 1;
                for s in held.drain(..n) {
                    f.give(s..s + 1);
                }
            }
            peak = peak.max(held.len());
            assert!(f.end() as usize <= peak, "end {} above peak {peak}", f.end());
            let mut sorted = held.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), held.len(), "a slot handed out twice");
        }
    }
}
