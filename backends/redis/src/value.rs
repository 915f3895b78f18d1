//! A page as a stored value: its 4096 bytes, then a CRC-32 if checksums are
//! on. The CRC covers the page's identity (instance, slot, generation) as
//! well as its bytes, so that another page's value, copied over this one's
//! key, fails the check.

use pagebackup_core::{PAGE_SIZE, Page};

/// Bytes of the checksum after the page.
const CHECKSUM_BYTES: usize = 4;

/// How pages are stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueFormat {
    pub(crate) checksum: bool,
}

/// Who a value belongs to: the instance id, the slot and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) instance: u64,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl Identity {
    /// The CRC-32 of the identity, then of `page`.
    fn checksum(self, page: &[u8]) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.instance.to_le_bytes());
        hasher.update(&self.slot.to_le_bytes());
        hasher.update(&self.generation.to_le_bytes());
        hasher.update(page);
        hasher.finalize()
    }
}

impl ValueFormat {
    /// The length of every value.
    pub(crate) fn len(self) -> usize {
        PAGE_SIZE + if self.checksum { CHECKSUM_BYTES } else { 0 }
    }

    /// Calls `with` on the value of `page` stored as `id`: the page itself,
    /// or a copy with its checksum appended.
    pub(crate) fn encode<T>(self, page: &Page, id: Identity, with: impl FnOnce(&[u8]) -> T) -> T {
        if !self.checksum {
            return with(&page.0);
        }
        let mut value = Vec::with_capacity(self.len());
        value.extend_from_slice(&page.0);
        value.extend_from_slice(&id.checksum(&page.0).to_le_bytes());
        with(&value)
    }

    /// Copies the page of `value`, read as `id`'s, into `dst`, or says why
    /// the value is not that page (`dst` is then untouched).
    pub(crate) fn decode(self, value: &[u8], id: Identity, dst: &mut Page) -> Result<(), String> {
        if value.len() != self.len() {
            return Err(format!(
                "the value on the server is {} bytes, not {}: it was changed by another client",
                value.len(),
                self.len()
            ));
        }
        let (page, sum) = value.split_at(PAGE_SIZE);
        if self.checksum {
            let stored = u32::from_le_bytes(sum.try_into().expect("4 checksum bytes"));
            let actual = id.checksum(page);
            if stored != actual {
                return Err(format!(
                    "checksum mismatch (stored {stored:08x}, computed {actual:08x} for slot {} generation {}): \
                     the value was changed on the server or is another page's",
                    id.slot, id.generation
                ));
            }
        }
        dst.0.copy_from_slice(page);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Identity = Identity {
        instance: 0xfeed,
        slot: 3,
        generation: 7,
    };

    #[test]
    fn values_round_trip_and_bad_ones_are_refused() {
        let mut page = Page::new_boxed();
        page.0[7] = 9;
        for checksum in [false, true] {
            let format = ValueFormat { checksum };
            let value = format.encode(&page, ID, <[u8]>::to_vec);
            assert_eq!(value.len(), format.len());
            let mut back = Page::new_boxed();
            format.decode(&value, ID, &mut back).unwrap();
            assert_eq!(back, page);
            let err = format.decode(&value[..100], ID, &mut back).unwrap_err();
            assert!(err.contains("100 bytes"), "{err}");
        }
        let format = ValueFormat { checksum: true };
        let mut value = format.encode(&page, ID, <[u8]>::to_vec);
        value[3] ^= 1;
        let mut back = Page::new_boxed();
        back.0.fill(0xee);
        let err = format.decode(&value, ID, &mut back).unwrap_err();
        assert!(err.starts_with("checksum mismatch"), "{err}");
        assert!(
            back.0.iter().all(|&b| b == 0xee),
            "a refused value must not reach the page"
        );
    }

    #[test]
    fn a_value_read_under_another_identity_is_refused() {
        let page = Page::new_boxed();
        let format = ValueFormat { checksum: true };
        let value = format.encode(&page, ID, <[u8]>::to_vec);
        let others = [
            Identity { instance: 1, ..ID },
            Identity { slot: 4, ..ID },
            Identity { generation: 8, ..ID },
        ];
        for other in others {
            let mut back = Page::new_boxed();
            back.0.fill(0xee);
            let err = format.decode(&value, other, &mut back).unwrap_err();
            assert!(err.starts_with("checksum mismatch"), "{other:?}: {err}");
            assert!(back.0.iter().all(|&b| b == 0xee));
        }
    }
}
