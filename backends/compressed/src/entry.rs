//! [`Entry`]: the 12-byte record of one handle-table slot: the slot's
//! generation and where and how its page is kept. With the 4-byte header
//! an arena object carries, 16 bytes of metadata per stored page.

/// How a page is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// One 8-byte word repeated over the page; no arena space.
    Same(u64),
    /// An arena object: compressed (`len < PAGE_SIZE`) or raw (`len == PAGE_SIZE`).
    Object(Location),
}

/// Where an arena object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// The chunk its header starts in.
    pub chunk: u32,
    /// The header's offset in that chunk.
    pub offset: u16,
    /// Bytes stored after the header.
    pub len: u16,
}

/// A slot's generation and contents. The generation's low two bits say what
/// the slot holds ([`FREE`], [`OBJECT`], [`SAME`]); the upper 30 bits count
/// the slot's allocations. A handle carries the whole word, so it matches
/// one allocation of one kind and nothing after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    generation: u32,
    word: [u32; 2],
}

const KIND: u32 = 3;
const FREE: u32 = 0;
const OBJECT: u32 = 1;
const SAME: u32 = 2;

impl Entry {
    /// A free entry whose next allocation counts from `counter`, linked to
    /// the free entry `next`.
    pub(crate) fn free(counter: u32, next: u32) -> Self {
        Entry {
            generation: counter << 2 | FREE,
            word: [next, 0],
        }
    }

    /// The allocation count: bumped by [`fill`](Self::fill).
    pub(crate) fn counter(self) -> u32 {
        self.generation >> 2
    }

    /// The next free entry, for a free entry.
    pub(crate) fn next_free(self) -> u32 {
        self.word[0]
    }

    /// The generation while live, `None` when free.
    pub(crate) fn live_generation(self) -> Option<u32> {
        (self.generation & KIND != FREE).then_some(self.generation)
    }

    /// This free entry allocated to `stored`, with a new generation.
    pub(crate) fn fill(self, stored: Stored) -> Self {
        let counter = self.counter().wrapping_add(1) & (u32::MAX >> 2);
        let (kind, word) = encode(stored);
        Entry {
            generation: counter << 2 | kind,
            word,
        }
    }

    /// This live entry moved to `stored`, of the same kind, same generation.
    pub(crate) fn moved(self, stored: Stored) -> Self {
        let (kind, word) = encode(stored);
        debug_assert_eq!(kind, self.generation & KIND, "a move keeps the kind");
        Entry { word, ..self }
    }

    /// This entry freed and linked to `next`: its generation no longer
    /// matches any handle.
    pub(crate) fn release(self, next: u32) -> Self {
        Entry::free(self.counter(), next)
    }

    /// What a live entry stores; `None` when free.
    pub(crate) fn stored(self) -> Option<Stored> {
        let [a, b] = self.word;
        match self.generation & KIND {
            SAME => Some(Stored::Same(u64::from(a) | u64::from(b) << 32)),
            OBJECT => Some(Stored::Object(Location {
                chunk: b,
                offset: a as u16,
                len: (a >> 16) as u16,
            })),
            _ => None,
        }
    }
}

fn encode(stored: Stored) -> (u32, [u32; 2]) {
    match stored {
        Stored::Same(word) => (SAME, [word as u32, (word >> 32) as u32]),
        Stored::Object(l) => (OBJECT, [u32::from(l.offset) | u32::from(l.len) << 16, l.chunk]),
    }
}

/// Bytes of one entry.
pub(crate) const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

const _: () = assert!(ENTRY_BYTES == 12);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_generations_move_on() {
        let free = Entry::free(7, 42);
        assert_eq!(
            (free.stored(), free.live_generation(), free.next_free()),
            (None, None, 42)
        );
        let mut seen = std::collections::HashSet::new();
        for stored in [
            Stored::Same(0),
            Stored::Same(u64::MAX),
            Stored::Same(0x0123_4567_89ab_cdef),
            Stored::Object(Location {
                chunk: u32::MAX,
                offset: u16::MAX,
                len: 4096,
            }),
            Stored::Object(Location {
                chunk: 0,
                offset: 0,
                len: 1,
            }),
        ] {
            let live = free.fill(stored);
            assert_eq!(live.stored(), Some(stored));
            assert_eq!(live.counter(), 8);
            let generation = live.live_generation().unwrap();
            let freed = live.release(3);
            assert_eq!((freed.stored(), freed.live_generation()), (None, None));
            let again = freed.fill(stored);
            assert_ne!(
                again.live_generation(),
                Some(generation),
                "a reused slot has a new generation"
            );
            seen.insert(generation);
        }
        assert_eq!(seen.len(), 2, "one generation per kind for the same count");
        let max = Entry::free(u32::MAX >> 2, 0).fill(Stored::Same(1));
        assert_eq!(max.counter(), 0, "the counter wraps within its 30 bits");
    }
}
