//! [`SlotBits`]: a set of slots as a bitmap.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A set of slots as a bitmap, with its count, also added to a total
/// shared by the store's shards.
#[derive(Debug, Default)]
pub(super) struct SlotBits {
    words: Vec<u64>,
    pub(super) count: u64,
    total: Arc<AtomicU64>,
}

impl SlotBits {
    /// An empty set whose changes are also counted in `total`.
    pub(super) fn counting_in(total: Arc<AtomicU64>) -> Self {
        SlotBits {
            words: Vec::new(),
            count: 0,
            total,
        }
    }

    pub(super) fn set_range(&mut self, range: Range<u32>) {
        for slot in range {
            let (w, bit) = (slot as usize / 64, 1u64 << (slot % 64));
            if self.words.len() <= w {
                self.words.resize(w + 1, 0);
            }
            if self.words[w] & bit == 0 {
                self.words[w] |= bit;
                self.count += 1;
                self.total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether `slot` is in the set.
    pub(super) fn contains(&self, slot: u32) -> bool {
        self.words
            .get(slot as usize / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }

    /// Removes `range`; returns how many of its slots were in the set.
    pub(super) fn clear_range(&mut self, range: Range<u32>) -> u32 {
        if self.count == 0 {
            return 0;
        }
        let mut cleared = 0;
        for slot in range {
            let (w, bit) = (slot as usize / 64, 1u64 << (slot % 64));
            if let Some(word) = self.words.get_mut(w)
                && *word & bit != 0
            {
                *word &= !bit;
                self.count -= 1;
                self.total.fetch_sub(1, Ordering::Relaxed);
                cleared += 1;
            }
        }
        cleared
    }

    /// Removes up to `n` of the lowest slots; returns them as ascending runs.
    pub(super) fn take_lowest(&mut self, mut n: u64) -> Vec<Range<u32>> {
        let mut runs: Vec<Range<u32>> = Vec::new();
        for (w, word) in self.words.iter_mut().enumerate() {
            while n > 0 && *word != 0 {
                let bit = word.trailing_zeros();
                *word &= *word - 1;
                self.count -= 1;
                self.total.fetch_sub(1, Ordering::Relaxed);
                n -= 1;
                let slot = (w as u32) * 64 + bit;
                match runs.last_mut() {
                    Some(last) if last.end == slot => last.end += 1,
                    _ => runs.push(slot..slot + 1),
                }
            }
            if n == 0 {
                break;
            }
        }
        runs
    }

    /// Removes up to `n` of the highest slots; returns them as ascending
    /// runs, highest run first.
    pub(super) fn take_highest(&mut self, mut n: u64) -> Vec<Range<u32>> {
        let mut runs: Vec<Range<u32>> = Vec::new();
        let mut w = self.words.len();
        while n > 0 && w > 0 {
            w -= 1;
            while n > 0 && self.words[w] != 0 {
                let bit = 63 - self.words[w].leading_zeros();
                self.words[w] &= !(1 << bit);
                self.count -= 1;
                self.total.fetch_sub(1, Ordering::Relaxed);
                n -= 1;
                let slot = (w as u32) * 64 + bit;
                match runs.last_mut() {
                    Some(last) if last.start == slot + 1 => last.start = slot,
                    _ => runs.push(slot..slot + 1),
                }
            }
        }
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
        runs
    }

    pub(super) fn metadata_bytes(&self) -> u64 {
        (self.words.capacity() * 8) as u64
    }
}
