//! A page as a stored value: its 4096 bytes, then a CRC-32 if checksums are
//! on, or, sealed, its 4096 encrypted bytes then their 16-byte tag. Both
//! the CRC and the seal cover the page's identity (instance, slot,
//! generation) as well as its bytes, so that another page's value, copied
//! over this one's key, fails the check.
//!
//! # Nonces of sealed values
//!
//! An instance seals under one [`Sealer`](pagebackup_core::raw::seal::Sealer)
//! with a salt of 128 bits from the system's random source, which is in
//! every value's associated data and derives its subkey: a value of another
//! instance (or of an earlier run with the same supplied key) fails
//! authentication, and no two instances share a subkey. Under it, the
//! nonce is (slot, generation), and a slot's generation only grows (a
//! new one per allocation, and per drop; a slot at `u32::MAX` is worn out
//! and never taken again), each generation's value is sealed once, when its
//! backup is prepared (a resend sends those same bytes), so no nonce seals
//! two values.

use pagebackup_core::raw::seal::SealKeySource;
use pagebackup_core::{BackupError, Origin, PAGE_SIZE, Page};

/// Bytes of the checksum after the page.
const CHECKSUM_BYTES: usize = 4;

/// Bytes of the seal's tag after the encrypted page.
#[cfg(feature = "seal")]
const TAG_BYTES: usize = 16;

/// How pages are stored.
#[derive(Debug)]
pub(crate) struct ValueFormat {
    pub(crate) checksum: bool,
    /// The instance's sealer, with `seal=on`: the tag then authenticates and
    /// `checksum` is not used.
    #[cfg(feature = "seal")]
    pub(crate) sealer: Option<pagebackup_core::raw::seal::Sealer>,
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

    /// The identity the sealer binds (its salt holds the instance).
    #[cfg(feature = "seal")]
    fn sealed(self) -> pagebackup_core::raw::seal::Identity {
        pagebackup_core::raw::seal::Identity {
            slot: self.slot,
            generation: u64::from(self.generation),
        }
    }
}

impl ValueFormat {
    /// The format of an instance: checksums or not, sealed under a key
    /// from `seal` or not. A key that cannot be loaded, a random source
    /// that fails, or `seal` asked of a build without the `seal` feature is
    /// an error at `origin`.
    pub(crate) fn new(checksum: bool, seal: Option<&SealKeySource>, origin: Origin) -> Result<Self, BackupError> {
        #[cfg(feature = "seal")]
        {
            use pagebackup_core::raw::seal::{SealKey, Sealer};
            let sealer = match seal {
                None => None,
                Some(source) => {
                    let key = SealKey::load(source, origin)?;
                    Some(Sealer::new(&key).map_err(|source| BackupError::Io { origin, source })?)
                }
            };
            Ok(ValueFormat { checksum, sealer })
        }
        #[cfg(not(feature = "seal"))]
        match seal {
            None => Ok(ValueFormat { checksum }),
            Some(_) => Err(pagebackup_core::raw::seal::not_compiled_in(origin)),
        }
    }

    /// The length of every value.
    pub(crate) fn len(&self) -> usize {
        #[cfg(feature = "seal")]
        if self.sealer.is_some() {
            return PAGE_SIZE + TAG_BYTES;
        }
        PAGE_SIZE + if self.checksum { CHECKSUM_BYTES } else { 0 }
    }

    /// Calls `with` on the value of `page` stored as `id`: the page itself,
    /// a copy with its checksum appended, or the page sealed.
    pub(crate) fn encode<T>(&self, page: &Page, id: Identity, with: impl FnOnce(&[u8]) -> T) -> T {
        #[cfg(feature = "seal")]
        if let Some(sealer) = &self.sealer {
            let mut value = Vec::with_capacity(self.len());
            value.extend_from_slice(&page.0);
            let tag = sealer.seal(id.sealed(), &mut value);
            value.extend_from_slice(&tag);
            return with(&value);
        }
        if !self.checksum {
            return with(&page.0);
        }
        let mut value = Vec::with_capacity(self.len());
        value.extend_from_slice(&page.0);
        value.extend_from_slice(&id.checksum(&page.0).to_le_bytes());
        with(&value)
    }

    /// Copies the page of `value`, read as `id`'s, into `dst`, or says why
    /// the value is not that page (`dst` is then untouched). A sealed value
    /// is opened in place, in `value`.
    pub(crate) fn decode(&self, value: &mut [u8], id: Identity, dst: &mut Page) -> Result<(), String> {
        if value.len() != self.len() {
            return Err(self.wrong_length(value.len()));
        }
        let (page, sum) = value.split_at_mut(PAGE_SIZE);
        #[cfg(feature = "seal")]
        if let Some(sealer) = &self.sealer {
            let tag: &pagebackup_core::raw::seal::Tag = (&*sum).try_into().expect("16 tag bytes");
            if !sealer.open(id.sealed(), page, tag) {
                return Err(format!(
                    "the sealed value fails authentication as slot {} generation {} of this instance: it was \
                     changed on the server, is another page's or another instance's, or an older value of this key",
                    id.slot, id.generation
                ));
            }
            dst.0.copy_from_slice(page);
            return Ok(());
        }
        if self.checksum {
            let stored = u32::from_le_bytes((&*sum).try_into().expect("4 checksum bytes"));
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

    /// Why a value of `len` bytes is not a page.
    pub(crate) fn wrong_length(&self, len: usize) -> String {
        format!(
            "the value on the server is {len} bytes, not {}: it was changed by another client",
            self.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ValueFormat {
        fn plain(checksum: bool) -> Self {
            ValueFormat::new(checksum, None, ORIGIN).unwrap()
        }
    }

    const ORIGIN: Origin = Origin::new(crate::NAME, pagebackup_core::Operation::Open);

    #[cfg(not(feature = "seal"))]
    #[test]
    fn sealing_without_the_feature_is_a_config_error() {
        let err = ValueFormat::new(false, Some(&SealKeySource::Random), ORIGIN).unwrap_err();
        assert_eq!(err.kind(), pagebackup_core::ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("enable the `seal` feature"), "{err}");
    }

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
            let format = ValueFormat::plain(checksum);
            let value = format.encode(&page, ID, <[u8]>::to_vec);
            assert_eq!(value.len(), format.len());
            let mut back = Page::new_boxed();
            format.decode(&mut value.clone(), ID, &mut back).unwrap();
            assert_eq!(back, page);
            let err = format.decode(&mut value[..100].to_vec(), ID, &mut back).unwrap_err();
            assert!(err.contains("100 bytes"), "{err}");
        }
        let format = ValueFormat::plain(true);
        let mut value = format.encode(&page, ID, <[u8]>::to_vec);
        value[3] ^= 1;
        let mut back = Page::new_boxed();
        back.0.fill(0xee);
        let err = format.decode(&mut value, ID, &mut back).unwrap_err();
        assert!(err.starts_with("checksum mismatch"), "{err}");
        assert!(
            back.0.iter().all(|&b| b == 0xee),
            "a refused value must not reach the page"
        );
    }

    #[test]
    fn a_value_read_under_another_identity_is_refused() {
        let page = Page::new_boxed();
        let format = ValueFormat::plain(true);
        let value = format.encode(&page, ID, <[u8]>::to_vec);
        let others = [
            Identity { instance: 1, ..ID },
            Identity { slot: 4, ..ID },
            Identity { generation: 8, ..ID },
        ];
        for other in others {
            let mut back = Page::new_boxed();
            back.0.fill(0xee);
            let err = format.decode(&mut value.clone(), other, &mut back).unwrap_err();
            assert!(err.starts_with("checksum mismatch"), "{other:?}: {err}");
            assert!(back.0.iter().all(|&b| b == 0xee));
        }
    }
}

#[cfg(all(test, feature = "seal"))]
mod sealed_tests {
    use pagebackup_core::Operation;

    use super::*;

    const ID: Identity = Identity {
        instance: 0xfeed,
        slot: 3,
        generation: 7,
    };

    fn sealed() -> ValueFormat {
        ValueFormat::new(
            false,
            Some(&SealKeySource::Random),
            Origin::new(crate::NAME, Operation::Open),
        )
        .unwrap()
    }

    fn refused(format: &ValueFormat, value: &[u8], id: Identity) -> String {
        let mut back = Page::new_boxed();
        back.0.fill(0xee);
        let err = format.decode(&mut value.to_vec(), id, &mut back).unwrap_err();
        assert!(
            back.0.iter().all(|&b| b == 0xee),
            "a refused value must not reach the page"
        );
        err
    }

    #[test]
    fn sealed_values_hide_the_page_and_round_trip() {
        let format = sealed();
        let mut page = Page::new_boxed();
        page.0[..5].copy_from_slice(b"hello");
        let value = format.encode(&page, ID, <[u8]>::to_vec);
        assert_eq!(value.len(), PAGE_SIZE + TAG_BYTES);
        assert!(!value.windows(5).any(|w| w == b"hello"), "the page is in clear");
        let mut back = Page::new_boxed();
        format.decode(&mut value.clone(), ID, &mut back).unwrap();
        assert_eq!(back, page);
    }

    #[test]
    fn sealed_values_changed_moved_or_of_another_instance_are_refused() {
        let format = sealed();
        let page = Page::new_boxed();
        let value = format.encode(&page, ID, <[u8]>::to_vec);
        for byte in [0, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + TAG_BYTES - 1] {
            let mut changed = value.clone();
            changed[byte] ^= 1;
            let err = refused(&format, &changed, ID);
            assert!(err.contains("fails authentication"), "{err}");
        }
        for other in [Identity { slot: 4, ..ID }, Identity { generation: 8, ..ID }] {
            refused(&format, &value, other);
        }
        // Another instance, even under the same supplied key, has its own salt.
        let dir = std::env::temp_dir().join(format!("pagebackup-redis-seal-{}", std::process::id()));
        std::fs::write(&dir, [7u8; 32]).unwrap();
        let source = SealKeySource::File(dir.clone());
        let origin = Origin::new(crate::NAME, Operation::Open);
        let (a, b) = (
            ValueFormat::new(false, Some(&source), origin).unwrap(),
            ValueFormat::new(false, Some(&source), origin).unwrap(),
        );
        std::fs::remove_file(&dir).unwrap();
        let value = a.encode(&page, ID, <[u8]>::to_vec);
        refused(&b, &value, ID);
        let err = refused(&a, &value[..PAGE_SIZE], ID);
        assert!(err.contains("4096 bytes, not 4112"), "{err}");
    }
}
