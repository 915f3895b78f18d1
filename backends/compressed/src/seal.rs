//! [`ObjectSeal`]: a shard's objects sealed before they are stored
//! (`seal=on`), with [`raw::seal`](pagebackup_core::raw::seal)'s cipher
//! and nonce scheme.
//!
//! Pages are compressed first (sealed bytes do not compress), then the
//! object (compressed bytes, or the raw page) is encrypted in place and its
//! 16-byte tag appended (a restore opens it out of place, from the arena
//! into a buffer of the thread's, where it lies in one piece): the arena holds ciphertext and tag, counted in the
//! stored bytes. Each shard seals under its own
//! [`Sealer`](pagebackup_core::raw::seal::Sealer) (a random instance salt),
//! and each of the shard's slots keeps a write counter that only grows: a
//! backup takes the slot's next value, a dropped slot keeps its counter for
//! its next page, so the nonce (slot, counter) never repeats under a
//! subkey. The counters (8 bytes per slot the shard ever used, grown in
//! steps charged to the limit) are the per-page metadata sealing adds. The
//! associated data binds the instance salt, the slot and the counter: an
//! object changed, moved to another slot, an older object of the same slot,
//! or another instance's object restores as `Corrupt`.

/// Bytes a sealed object carries beyond its payload: the AEAD tag.
pub(crate) const TAG_BYTES: usize = 16;

#[cfg(feature = "seal")]
mod sealed {
    use pagebackup_core::raw::seal::{Identity, SealKey, Sealer, Tag};
    use pagebackup_core::{BackupError, Origin};

    use super::TAG_BYTES;
    use crate::budget::Budget;
    use crate::table::Refused;

    /// Counters the counter table grows by: 8 KiB, charged to the limit.
    const COUNTER_STEP: usize = 1024;

    /// One shard's sealer and its slots' write counters.
    pub(crate) struct ObjectSeal {
        sealer: Sealer,
        /// The counter of each slot's last sealed object (0: never sealed).
        counters: Vec<u64>,
    }

    impl ObjectSeal {
        /// A shard's sealing under `key`, with a fresh instance salt; a
        /// failing random source is `Io` at `origin`.
        pub(crate) fn new(key: &SealKey, origin: Origin) -> pagebackup_core::Result<Self> {
            let sealer = Sealer::new(key).map_err(|source| BackupError::Io { origin, source })?;
            Ok(ObjectSeal {
                sealer,
                counters: Vec::new(),
            })
        }

        /// Bytes a sealed object adds to its payload.
        pub(crate) fn tag_len(&self) -> usize {
            TAG_BYTES
        }

        /// Bytes of the counter table, charged to the limit.
        pub(crate) fn bytes(&self) -> u64 {
            (self.counters.len() * std::mem::size_of::<u64>()) as u64
        }

        /// Seals `object` (its payload, then [`TAG_BYTES`] of room for the
        /// tag) for `slot` under the slot's next counter. Growing the counter
        /// table is charged to `budget` with `keep` bytes to spare; on
        /// `Refused`, nothing is sealed.
        pub(crate) fn seal(&mut self, slot: u32, object: &mut [u8], budget: &Budget, keep: u64) -> Result<(), Refused> {
            let slot_index = slot as usize;
            if slot_index >= self.counters.len() {
                let grown = (slot_index / COUNTER_STEP + 1) * COUNTER_STEP;
                let bytes = ((grown - self.counters.len()) * std::mem::size_of::<u64>()) as u64;
                if !budget.reserve(bytes, keep) {
                    return Err(Refused::Limit);
                }
                self.counters.reserve_exact(grown - self.counters.len());
                self.counters.resize(grown, 0);
            }
            let counter = &mut self.counters[slot_index];
            // At 64 bits a slot sealed every nanosecond lasts 584 years; a
            // spent counter refuses rather than repeat a nonce.
            let next = counter.checked_add(1).ok_or(Refused::Worn)?;
            *counter = next;
            let (payload, tag) = object.split_at_mut(object.len() - TAG_BYTES);
            let id = Identity { slot, generation: next };
            tag.copy_from_slice(&self.sealer.seal(id, payload));
            Ok(())
        }

        /// Opens `object` (payload and tag) in place if it is the last
        /// object sealed for `slot`: its payload, or `None` (the payload
        /// zeroed) if it fails authentication.
        pub(crate) fn open<'o>(&self, slot: u32, object: &'o mut [u8]) -> Option<&'o [u8]> {
            let counter = self.counters.get(slot as usize).copied().unwrap_or(0);
            let at = object.len().checked_sub(TAG_BYTES)?;
            let (payload, tag) = object.split_at_mut(at);
            let tag: Tag = (&*tag).try_into().ok()?;
            // Counter 0 was never sealed under: no object authenticates.
            let id = Identity {
                slot,
                generation: counter,
            };
            (counter != 0 && self.sealer.open(id, payload, &tag)).then_some(&*payload)
        }

        /// Opens `object` (payload and tag, left as it is) into `out` if
        /// it is the last object sealed for `slot`: its payload, the first
        /// bytes of `out`, or `None` (those bytes zeroed) if it fails
        /// authentication. One pass, where copying it out and opening it in
        /// place takes two.
        pub(crate) fn open_into<'o>(&self, slot: u32, object: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
            let counter = self.counters.get(slot as usize).copied().unwrap_or(0);
            let at = object.len().checked_sub(TAG_BYTES)?;
            let (payload, tag) = object.split_at(at);
            let tag: Tag = tag.try_into().ok()?;
            let out = out.get_mut(..at)?;
            let id = Identity {
                slot,
                generation: counter,
            };
            (counter != 0 && self.sealer.open_into(id, payload, out, &tag)).then_some(&*out)
        }
    }
}

#[cfg(feature = "seal")]
pub(crate) use sealed::ObjectSeal;

/// Sealing is not compiled in: no shard has an `ObjectSeal`.
#[cfg(not(feature = "seal"))]
pub(crate) enum ObjectSeal {}

#[cfg(not(feature = "seal"))]
impl ObjectSeal {
    pub(crate) fn tag_len(&self) -> usize {
        match *self {}
    }
    pub(crate) fn bytes(&self) -> u64 {
        match *self {}
    }
    pub(crate) fn seal(
        &mut self,
        _: u32,
        _: &mut [u8],
        _: &crate::budget::Budget,
        _: u64,
    ) -> Result<(), crate::table::Refused> {
        match *self {}
    }
    pub(crate) fn open<'o>(&self, _: u32, _: &'o mut [u8]) -> Option<&'o [u8]> {
        match *self {}
    }
    pub(crate) fn open_into<'o>(&self, _: u32, _: &[u8], _: &'o mut [u8]) -> Option<&'o [u8]> {
        match *self {}
    }
}
