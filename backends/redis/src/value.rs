//! A page as a stored value: its 4096 bytes, then a CRC-32 if checksums are on.

use pagebackup_core::{PAGE_SIZE, Page};

/// Bytes of the checksum after the page.
const CHECKSUM_BYTES: usize = 4;

/// How pages are stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueFormat {
    pub(crate) checksum: bool,
}

impl ValueFormat {
    /// The length of every value.
    pub(crate) fn len(self) -> usize {
        PAGE_SIZE + if self.checksum { CHECKSUM_BYTES } else { 0 }
    }

    /// Calls `with` on the value of `page`: the page itself, or a copy with
    /// its checksum appended.
    pub(crate) fn encode<T>(self, page: &Page, with: impl FnOnce(&[u8]) -> T) -> T {
        if !self.checksum {
            return with(&page.0);
        }
        let mut value = Vec::with_capacity(self.len());
        value.extend_from_slice(&page.0);
        value.extend_from_slice(&crc32fast::hash(&page.0).to_le_bytes());
        with(&value)
    }

    /// Copies the page of `value` into `dst`, or says why the value is not a page.
    pub(crate) fn decode(self, value: &[u8], dst: &mut Page) -> Result<(), String> {
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
            let actual = crc32fast::hash(page);
            if stored != actual {
                return Err(format!(
                    "checksum mismatch (stored {stored:08x}, computed {actual:08x}): the value was changed on the server"
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

    #[test]
    fn values_round_trip_and_bad_ones_are_refused() {
        let mut page = Page::new_boxed();
        page.0[7] = 9;
        for checksum in [false, true] {
            let format = ValueFormat { checksum };
            let value = format.encode(&page, <[u8]>::to_vec);
            assert_eq!(value.len(), format.len());
            let mut back = Page::new_boxed();
            format.decode(&value, &mut back).unwrap();
            assert_eq!(back, page);
            let err = format.decode(&value[..100], &mut back).unwrap_err();
            assert!(err.contains("100 bytes"), "{err}");
        }
        let format = ValueFormat { checksum: true };
        let mut value = format.encode(&page, <[u8]>::to_vec);
        value[3] ^= 1;
        let mut back = Page::new_boxed();
        back.0.fill(0xee);
        let err = format.decode(&value, &mut back).unwrap_err();
        assert!(err.starts_with("checksum mismatch"), "{err}");
        assert!(
            back.0.iter().all(|&b| b == 0xee),
            "a refused value must not reach the page"
        );
    }
}
