//! [`Entry`]: the 8-byte record of one handle-table slot: what the slot
//! holds, how many times it was allocated in its segment's current
//! incarnation, and where and how its page is kept. With the 4-byte header
//! an arena object carries, 12 bytes of metadata per stored page.
//!
//! The word, from the low bits up:
//!
//! | bits  | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 0–1   | kind: [`FREE`], [`OBJECT`], [`SAME`], [`WORD`]               |
//! | 2–14  | count: allocations of the slot since its segment was made     |
//! | 15–63 | contents: a location, a same-filled word, or the next free slot |
//!
//! A location is the object's length (13 bits: up to 8191, a raw page with
//! a seal's tag included), its header's offset in the chunk (16 bits) and
//! the chunk (20 bits: [`MAX_CHUNKS`] per shard).
//!
//! The count is local to a segment's incarnation: a handle's generation is
//! the segment's base plus the count (see [`Table`](crate::table::Table)),
//! and a slot whose count reaches [`COUNT_MAX`] is retired, so no count
//! repeats within an incarnation and no generation repeats until the
//! 30-bit generation space wraps.

/// How a page is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// One 8-byte word repeated over the page; no arena space. Only words
    /// [`holds_word`] accepts.
    Same(u64),
    /// An arena object: compressed (`len < PAGE_SIZE`) or raw (`len == PAGE_SIZE`).
    Object(Location),
    /// A page filled with a word an entry cannot hold: the word is an
    /// 8-byte arena object.
    Word(Location),
}

impl Stored {
    /// Where the arena object is, for a page that has one.
    pub(crate) fn location(self) -> Option<Location> {
        match self {
            Stored::Same(_) => None,
            Stored::Object(at) | Stored::Word(at) => Some(at),
        }
    }
}

/// Where an arena object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// The chunk its header starts in: below [`MAX_CHUNKS`].
    pub chunk: u32,
    /// The header's offset in that chunk.
    pub offset: u16,
    /// Bytes stored after the header: at most [`MAX_LEN`].
    pub len: u16,
}

/// A slot's kind, count and contents, packed in one word (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry(u64);

const KIND: u64 = 3;
const FREE: u64 = 0;
const OBJECT: u64 = 1;
const SAME: u64 = 2;
const WORD: u64 = 3;
const COUNT_SHIFT: u32 = 2;
const COUNT_BITS: u32 = 13;
const CONTENTS_SHIFT: u32 = COUNT_SHIFT + COUNT_BITS;
const LEN_BITS: u32 = 13;
const OFFSET_BITS: u32 = 16;
const CHUNK_BITS: u32 = 20;
const _: () = assert!(CONTENTS_SHIFT + LEN_BITS + OFFSET_BITS + CHUNK_BITS == 64);

/// The most allocations a slot takes in one incarnation of its segment;
/// a slot that reaches it is retired until the segment is made anew.
pub(crate) const COUNT_MAX: u32 = (1 << COUNT_BITS) - 1;
/// Chunk numbers a location can hold, per shard: 2^20 chunks of 64 KiB,
/// 64 GiB of arena.
pub(crate) const MAX_CHUNKS: u32 = 1 << CHUNK_BITS;
/// The longest object a location can hold.
pub(crate) const MAX_LEN: usize = (1 << LEN_BITS) - 1;
/// The low 30 bits: generations count in them, above the kind.
pub(crate) const GENERATION_COUNTS: u32 = u32::MAX >> COUNT_SHIFT;

/// A same-filled word's contents (a page filled with any other word is
/// [`Stored::Word`]): the low 48 bits of a word whose upper
/// 16 bits repeat bit 47 (zero, small integers, canonical pointers, all
/// ones), or with [`HALVES`] set, the low 32 bits of a word whose halves
/// are equal (any repeated byte, 16-bit or 32-bit pattern).
const HALVES: u64 = 1 << 48;

/// Whether an entry can keep `word` as a same-filled page; a page filled
/// with another word is stored as an object.
pub(crate) fn holds_word(word: u64) -> bool {
    same_contents(word).is_some()
}

fn same_contents(word: u64) -> Option<u64> {
    if ((word as i64) << 16 >> 16) as u64 == word {
        Some(word & (HALVES - 1))
    } else if word >> 32 == word & 0xffff_ffff {
        Some(HALVES | (word & 0xffff_ffff))
    } else {
        None
    }
}

fn word_of(contents: u64) -> u64 {
    if contents & HALVES != 0 {
        let half = contents & 0xffff_ffff;
        half | half << 32
    } else {
        ((contents << 16) as i64 >> 16) as u64
    }
}

impl Entry {
    /// A free entry whose allocations so far are `count`, linked to the
    /// free entry `next`.
    pub(crate) fn free(count: u32, next: u32) -> Self {
        Entry(u64::from(next) << CONTENTS_SHIFT | u64::from(count) << COUNT_SHIFT | FREE)
    }

    /// The allocation count: bumped by [`fill`](Self::fill).
    pub(crate) fn count(self) -> u32 {
        (self.0 >> COUNT_SHIFT) as u32 & COUNT_MAX
    }

    /// Whether the count is used up: the slot must not be allocated again
    /// in this incarnation of its segment.
    pub(crate) fn spent(self) -> bool {
        self.count() == COUNT_MAX
    }

    /// The next free entry, for a free entry.
    pub(crate) fn next_free(self) -> u32 {
        (self.0 >> CONTENTS_SHIFT) as u32
    }

    /// The generation while live, counted from `base` (the segment's);
    /// `None` when free. Its low two bits are the kind, so a handle matches
    /// one allocation of one kind.
    pub(crate) fn live_generation(self, base: u32) -> Option<u32> {
        let kind = self.0 & KIND;
        (kind != FREE).then(|| (base.wrapping_add(self.count()) & GENERATION_COUNTS) << COUNT_SHIFT | kind as u32)
    }

    /// This free entry allocated to `stored`, its count bumped. The entry
    /// must not be [`spent`](Self::spent).
    pub(crate) fn fill(self, stored: Stored) -> Self {
        debug_assert!(!self.spent(), "a spent slot is never allocated");
        let (kind, contents) = encode(stored);
        Entry(contents << CONTENTS_SHIFT | u64::from(self.count() + 1) << COUNT_SHIFT | kind)
    }

    /// This live entry's object moved to `to`: same kind, same count.
    pub(crate) fn moved(self, to: Location) -> Self {
        debug_assert!(matches!(self.0 & KIND, OBJECT | WORD), "only an object moves");
        Entry(locate(to) << CONTENTS_SHIFT | (self.0 & ((1 << CONTENTS_SHIFT) - 1)))
    }

    /// This entry freed and linked to `next`: its generation no longer
    /// matches any handle.
    pub(crate) fn release(self, next: u32) -> Self {
        Entry::free(self.count(), next)
    }

    /// What a live entry stores; `None` when free.
    pub(crate) fn stored(self) -> Option<Stored> {
        let contents = self.0 >> CONTENTS_SHIFT;
        match self.0 & KIND {
            SAME => Some(Stored::Same(word_of(contents))),
            OBJECT => Some(Stored::Object(location(contents))),
            WORD => Some(Stored::Word(location(contents))),
            _ => None,
        }
    }
}

fn encode(stored: Stored) -> (u64, u64) {
    match stored {
        Stored::Same(word) => (SAME, same_contents(word).expect("a same-filled word the entry holds")),
        Stored::Object(at) => (OBJECT, locate(at)),
        Stored::Word(at) => (WORD, locate(at)),
    }
}

fn locate(l: Location) -> u64 {
    debug_assert!(l.chunk < MAX_CHUNKS && usize::from(l.len) <= MAX_LEN, "{l:?}");
    u64::from(l.len) | u64::from(l.offset) << LEN_BITS | u64::from(l.chunk) << (LEN_BITS + OFFSET_BITS)
}

fn location(contents: u64) -> Location {
    Location {
        len: (contents & MAX_LEN as u64) as u16,
        offset: (contents >> LEN_BITS) as u16,
        chunk: (contents >> (LEN_BITS + OFFSET_BITS)) as u32,
    }
}

/// Bytes of one entry.
pub(crate) const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

const _: () = assert!(ENTRY_BYTES == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_generations_move_on() {
        let free = Entry::free(7, 42);
        assert_eq!(
            (free.stored(), free.live_generation(0), free.next_free()),
            (None, None, 42)
        );
        let mut seen = std::collections::HashSet::new();
        for stored in [
            Stored::Same(0),
            Stored::Same(u64::MAX),
            Stored::Same(0x0000_7f12_3456_789a),
            Stored::Same(0xffff_8000_0000_0000),
            Stored::Same(0xa5a5_a5a5_a5a5_a5a5),
            Stored::Same(0x1234_5678_1234_5678),
            Stored::Object(Location {
                chunk: MAX_CHUNKS - 1,
                offset: u16::MAX,
                len: MAX_LEN as u16,
            }),
            Stored::Object(Location {
                chunk: 0,
                offset: 0,
                len: 1,
            }),
            Stored::Word(Location {
                chunk: 5,
                offset: 7,
                len: 8,
            }),
        ] {
            let live = free.fill(stored);
            assert_eq!(live.stored(), Some(stored));
            assert_eq!(live.count(), 8);
            let generation = live.live_generation(100).unwrap();
            assert_eq!(generation >> 2, 108, "the base plus the count");
            let freed = live.release(3);
            assert_eq!(
                (freed.stored(), freed.live_generation(100), freed.next_free()),
                (None, None, 3)
            );
            let again = freed.fill(stored);
            assert_ne!(
                again.live_generation(100),
                Some(generation),
                "a reused slot has a new generation"
            );
            if let Some(at) = stored.location() {
                let to = Location {
                    chunk: at.chunk ^ 1,
                    ..at
                };
                let moved = live.moved(to);
                assert_eq!(
                    moved.live_generation(100),
                    Some(generation),
                    "a move keeps the generation"
                );
                assert_eq!(moved.stored().and_then(Stored::location), Some(to));
                assert_eq!(
                    std::mem::discriminant(&moved.stored().unwrap()),
                    std::mem::discriminant(&stored)
                );
            }
            seen.insert(generation);
        }
        assert_eq!(seen.len(), 3, "one generation per kind for the same count");
        let last = Entry::free(COUNT_MAX - 1, 0).fill(Stored::Same(1));
        assert!(
            last.spent() && last.release(0).spent(),
            "the last count spends the slot"
        );
        assert_eq!(
            last.live_generation(GENERATION_COUNTS).unwrap() >> 2,
            COUNT_MAX - 1,
            "generations wrap within their 30 bits"
        );
    }

    #[test]
    fn same_filled_words_an_entry_holds() {
        for word in [
            0,
            1,
            u64::MAX,
            0x0101_0101_0101_0101,
            0x0000_7fff_ffff_ffff,
            0xffff_8000_0000_0001,
        ] {
            assert!(holds_word(word), "{word:#x}");
            assert_eq!(word_of(same_contents(word).unwrap()), word, "{word:#x}");
        }
        for word in [0x3ff0_0000_0000_0000, 0x0000_8000_0000_0000, 0x0001_0000_0000_0002] {
            assert!(!holds_word(word), "{word:#x}");
        }
    }
}
