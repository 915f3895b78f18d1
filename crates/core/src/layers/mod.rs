//! Layers: backends that wrap another backend and are backends themselves.
//!
//! A layer implements [`Layer`]: it names its inner backend once, in
//! [`Layer::inner`], and writes only the methods it changes; every other
//! method of [`BackupBackend`] forwards to the inner backend, batch forms
//! included. Every `Layer` is a `BackupBackend` through one impl beside the
//! trait, so a method added to `BackupBackend` is added there once and
//! reaches every layer's inner backend without touching any layer; a layer
//! cannot implement `BackupBackend` by hand as well (rustc refuses the two
//! impls), so none can miss it.
//!
//! Implement it by its path (`impl layers::Layer for ...`) rather than with
//! `Layer` imported: where both traits are in scope (inside an `impl Layer`
//! too), a method call on a value that is a layer finds the method in each
//! and rustc asks which is meant; write `BackupBackend::method(&value, ..)`
//! there. A layer generic over `B: BackupBackend` calls its inner backend's
//! methods plainly.
//!
//! The same trait serves backends that are a thin shell over another
//! (a slot store) and the smart pointers `&T`, `Box<T>` and `Arc<T>`.
//!
//! ```
//! use pagebackup_core::layers;
//! use pagebackup_core::{BackupBackend, BackupFlags, Handle, MemoryBackend, Page, Result};
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! /// Counts backups; everything else goes straight to the inner backend.
//! #[derive(Debug)]
//! struct Counting<B> {
//!     inner: B,
//!     backups: AtomicU64,
//! }
//!
//! impl<B: BackupBackend> layers::Layer for Counting<B> {
//!     type Inner = B;
//!     fn inner(&self) -> &B {
//!         &self.inner
//!     }
//!     fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
//!         self.backups.fetch_add(1, Ordering::Relaxed);
//!         self.inner.backup_page(page, idx, flags)
//!     }
//! }
//!
//! let b = Counting { inner: MemoryBackend::new(), backups: AtomicU64::new(0) };
//! let h = b.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE)?;
//! assert_eq!(b.backups.load(Ordering::Relaxed), 1);
//! b.drop_handle(h)?;
//! assert_eq!(b.stats().stored_pages, 0);
//! # Ok::<(), pagebackup_core::BackupError>(())
//! ```

use std::fmt::Debug;
use std::sync::Arc;

use crate::{BackupBackend, BackupFlags, BackupStats, BatchError, Handle, Interrupt, Page, Result};

mod fault;
mod instrumented;

pub use fault::{FaultConfig, FaultCounts, FaultInjection};
pub use instrumented::{Instrumented, InstrumentedStats, OpStats};

/// A backend over another: [`inner`](Layer::inner) names it, and every
/// method the layer does not write forwards to it (see the [module
/// documentation](self)). Each method means what the
/// [`BackupBackend`] method of the same name means.
pub trait Layer: Send + Sync + Debug {
    /// The wrapped backend's type.
    type Inner: BackupBackend + ?Sized;

    /// The wrapped backend.
    fn inner(&self) -> &Self::Inner;

    /// [`BackupBackend::name`]; the inner backend's by default.
    fn name(&self) -> &'static str {
        self.inner().name()
    }

    /// [`BackupBackend::backup_page`].
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        self.inner().backup_page(page, idx, flags)
    }

    /// [`BackupBackend::copy_page`].
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        self.inner().copy_page(dst, handle, intr)
    }

    /// [`BackupBackend::drop_handle`].
    fn drop_handle(&self, handle: Handle) -> Result<()> {
        self.inner().drop_handle(handle)
    }

    /// [`BackupBackend::bytes_avail`].
    fn bytes_avail(&self) -> u64 {
        self.inner().bytes_avail()
    }

    /// [`BackupBackend::stats`].
    fn stats(&self) -> BackupStats {
        self.inner().stats()
    }

    /// [`BackupBackend::flush`].
    fn flush(&self) -> Result<()> {
        self.inner().flush()
    }

    /// [`BackupBackend::maintain`].
    fn maintain(&self) -> Result<()> {
        self.inner().maintain()
    }

    /// [`BackupBackend::maintain_step`].
    fn maintain_step(&self) -> Result<bool> {
        self.inner().maintain_step()
    }

    /// [`BackupBackend::never_blocks`]: a layer that only counts and
    /// decides blocks where its inner backend does.
    fn never_blocks(&self) -> bool {
        self.inner().never_blocks()
    }

    /// [`BackupBackend::cpu_bound`]: a layer that only counts and decides
    /// computes where its inner backend does.
    fn cpu_bound(&self) -> bool {
        self.inner().cpu_bound()
    }

    /// [`BackupBackend::stored_size`].
    fn stored_size(&self, handle: Handle) -> Option<u64> {
        self.inner().stored_size(handle)
    }

    /// [`BackupBackend::backup_pages`]: the inner backend's batch, not a
    /// loop over this layer's `backup_page` (a layer that changes single
    /// backups changes batches too, or says why not).
    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        self.inner().backup_pages(pages, first_idx, flags, handles)
    }

    /// [`BackupBackend::copy_pages`]: the inner backend's batch.
    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        self.inner().copy_pages(handles, dsts, intr)
    }

    /// [`BackupBackend::drop_handles`]: the inner backend's batch.
    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        self.inner().drop_handles(handles)
    }
}

// The one place a layer becomes a backend: every method is the layer's own,
// which forwards unless the layer wrote it.
#[deny(clippy::missing_trait_methods)]
impl<L: Layer> BackupBackend for L {
    fn name(&self) -> &'static str {
        Layer::name(self)
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> Result<Handle> {
        Layer::backup_page(self, page, idx, flags)
    }
    fn copy_page(&self, dst: &mut Page, handle: Handle, intr: Option<&Interrupt>) -> Result<()> {
        Layer::copy_page(self, dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> Result<()> {
        Layer::drop_handle(self, handle)
    }
    fn bytes_avail(&self) -> u64 {
        Layer::bytes_avail(self)
    }
    fn stats(&self) -> BackupStats {
        Layer::stats(self)
    }
    fn flush(&self) -> Result<()> {
        Layer::flush(self)
    }
    fn maintain(&self) -> Result<()> {
        Layer::maintain(self)
    }
    fn maintain_step(&self) -> Result<bool> {
        Layer::maintain_step(self)
    }
    fn never_blocks(&self) -> bool {
        Layer::never_blocks(self)
    }
    fn cpu_bound(&self) -> bool {
        Layer::cpu_bound(self)
    }
    fn stored_size(&self, handle: Handle) -> Option<u64> {
        Layer::stored_size(self, handle)
    }
    fn backup_pages(
        &self,
        pages: &[&Page],
        first_idx: u64,
        flags: BackupFlags,
        handles: &mut Vec<Handle>,
    ) -> Result<(), BatchError> {
        Layer::backup_pages(self, pages, first_idx, flags, handles)
    }
    fn copy_pages(
        &self,
        handles: &[Handle],
        dsts: &mut [&mut Page],
        intr: Option<&Interrupt>,
    ) -> Result<(), BatchError> {
        Layer::copy_pages(self, handles, dsts, intr)
    }
    fn drop_handles(&self, handles: &[Handle]) -> Result<(), BatchError> {
        Layer::drop_handles(self, handles)
    }
}

impl<T: BackupBackend + ?Sized> Layer for &T {
    type Inner = T;
    fn inner(&self) -> &T {
        self
    }
}

impl<T: BackupBackend + ?Sized> Layer for Box<T> {
    type Inner = T;
    fn inner(&self) -> &T {
        self
    }
}

impl<T: BackupBackend + ?Sized> Layer for Arc<T> {
    type Inner = T;
    fn inner(&self) -> &T {
        self
    }
}
