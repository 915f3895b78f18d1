//! For backend authors: the pieces the crate's own backends are built from.
//!
//! A user of backends needs none of this; it is what a new backend needs to
//! keep the contract the way the crate's backends do:
//!
//! - [`SlotStore`] over a [`Device`]: placement, handles, batches, the
//!   failure rules, checksums, deferred release and `fork()` detection for
//!   any store of page-sized slots (a memfd, a file, a block device). A
//!   backend is then a device and a constructor. [`DeviceLayer`] wraps a
//!   device in another (sealing, fault injection) that writes only what it
//!   changes.
//! - [`HandleCodec`], [`Generations`], [`SlotTable`] and [`FreeExtents`]:
//!   handle encoding and slot bookkeeping, for backends that keep their own
//!   storage per slot.
//! - [`Shards`], a backend's state in per-thread shards with the slot
//!   numbering that names a slot's shard; [`thread_index`] underneath, and
//!   [`check_batch_lengths`], the error of `copy_pages` with mismatched slices.
//! - [`copy_in_order`], the outline of `copy_pages`' default for a backend
//!   that keeps state from one page of a batch to the next.
//! - [`Backoff`], how a thread waits for another that is running: spin,
//!   then yield.
//! - [`params`]: a backend's spec parameters (`NAME:key=value,...`), one
//!   [`ParamDoc`](params::ParamDoc) table per backend, typed getters and
//!   the errors that say what is valid.
//! - [`seal`]: pages sealed (encrypted and authenticated) before they reach
//!   a device, for backends whose bytes leave the process (feature `seal`
//!   for the cipher).

mod backoff;
mod codec;
mod device;
mod epoch;
mod extents;
mod generations;
pub mod params;
pub mod seal;
mod shards;
mod slot_runs;
mod store;
#[cfg(test)]
mod test_device;
mod thread_index;

pub use crate::backend::{check_batch_lengths, copy_in_order};
pub use crate::slots::SlotTable;
pub use backoff::Backoff;
pub use codec::HandleCodec;
pub use device::{Arrived, Device, DeviceLayer, ReadRun, RunError, WriteRun, hand_over};
pub use epoch::ProcessEpoch;
pub use extents::FreeExtents;
pub use generations::Generations;
pub use shards::Shards;
pub use slot_runs::{ARRAY_BATCH, next_slot_run, tally_slots};
pub use store::{PlannedRun, ReadPlan, ReadSegment, Reservation, SlotStore, StoreConfig};
pub use thread_index::thread_index;
