//! [`Entry`]: the 12-byte record of where and how one stored page is kept.
//! With the slot's 4-byte generation, 16 bytes of metadata per page.

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
    /// Size class.
    pub class: u8,
    /// Slab within the class.
    pub slab: u32,
    /// Object within the slab.
    pub obj: u16,
    /// Bytes stored.
    pub len: u16,
}

/// A packed [`Stored`]: three 32-bit words, so a table of them has no padding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Entry([u32; 3]);

const SAME: u32 = 1;
const OBJECT: u32 = 2;

impl Entry {
    pub(crate) fn pack(stored: Stored) -> Self {
        match stored {
            Stored::Same(word) => Entry([SAME, word as u32, (word >> 32) as u32]),
            Stored::Object(l) => Entry([
                OBJECT | u32::from(l.len) << 2 | u32::from(l.class) << 16,
                l.slab,
                u32::from(l.obj),
            ]),
        }
    }

    /// The stored form; `None` for a default (never written) entry.
    pub(crate) fn unpack(self) -> Option<Stored> {
        let [meta, a, b] = self.0;
        match meta & 3 {
            SAME => Some(Stored::Same(u64::from(a) | u64::from(b) << 32)),
            OBJECT => Some(Stored::Object(Location {
                class: (meta >> 16) as u8,
                slab: a,
                obj: b as u16,
                len: ((meta >> 2) & 0x3fff) as u16,
            })),
            _ => None,
        }
    }
}

const _: () = assert!(std::mem::size_of::<Entry>() == 12);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for stored in [
            Stored::Same(0),
            Stored::Same(u64::MAX),
            Stored::Same(0x0123_4567_89ab_cdef),
            Stored::Object(Location {
                class: 96,
                slab: u32::MAX,
                obj: u16::MAX,
                len: 4096,
            }),
            Stored::Object(Location {
                class: 0,
                slab: 0,
                obj: 0,
                len: 1,
            }),
        ] {
            assert_eq!(Entry::pack(stored).unpack(), Some(stored));
        }
        assert_eq!(Entry::default().unpack(), None);
    }
}
