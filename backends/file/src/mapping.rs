//! [`FileMap`]: a read-only shared mapping of a backing file, through which
//! the file device lends its pages where they lie in the page cache, so that
//! a sealing layer decrypts them straight into the caller's page instead of
//! reading them into it and decrypting there (a copy and a cipher pass).

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::{Arc, PoisonError, RwLock};

use pagebackup_core::{PAGE_SIZE, Page};
use rustix::mm::{Advice, MapFlags, ProtFlags};

/// The smallest mapping made: 1 MiB of address space (nothing is
/// allocated or read until a page of it is touched); each new one is at
/// least twice the last, so a file mapped up to N bytes was mapped
/// log2(N / 1 MiB) times.
pub(crate) const MIN_LEN: usize = 1 << 20;

/// A mapping of the file grown as the file grows: a read past the current
/// mapping maps the file anew, at least twice as long, and the old mapping
/// stays until the last read through it is over (it is shared).
///
/// A page is only ever read through it once its write has completed, so it
/// lies within the file (a shared mapping raises `SIGBUS` past the end of
/// the file). Pages just written are populated into the mapping's page
/// tables ([`populate`](Self::populate)), so that a restore takes no page
/// fault.
#[derive(Debug, Default)]
pub(crate) struct FileMap {
    current: RwLock<Option<Arc<Mapped>>>,
}

impl FileMap {
    /// The mapping covering the first `end` bytes of the file `fd`.
    pub(crate) fn covering(&self, fd: BorrowedFd<'_>, end: usize) -> io::Result<Arc<Mapped>> {
        if let Some(mapped) = self.current.read().unwrap_or_else(PoisonError::into_inner).as_ref()
            && mapped.len >= end
        {
            return Ok(Arc::clone(mapped));
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let old = current.as_ref().map_or(0, |m| m.len);
        if old >= end {
            return Ok(Arc::clone(current.as_ref().expect("a mapping as long as asked")));
        }
        let len = end.max(old.saturating_mul(2)).max(MIN_LEN).next_multiple_of(PAGE_SIZE);
        let mapped = Arc::new(Mapped::new(fd, len)?);
        *current = Some(Arc::clone(&mapped));
        Ok(mapped)
    }

    /// Populates the page tables of `len` bytes from `offset` where they
    /// are mapped (`MADV_POPULATE_READ`, Linux 5.14), so that a read of
    /// them takes no page fault. Pages just written are in the page cache,
    /// so this reads nothing from the disk. Best effort: a kernel without
    /// it, or a range not yet mapped, is left to fault on first read.
    pub(crate) fn populate(&self, offset: u64, len: usize) {
        let Some(mapped) = self.current.read().unwrap_or_else(PoisonError::into_inner).clone() else {
            return;
        };
        let Ok(offset) = usize::try_from(offset) else { return };
        if offset.saturating_add(len) > mapped.len {
            return;
        }
        // SAFETY: the range lies within the mapping, which `mapped` keeps alive; populating reads the file's pages and changes no memory.
        let _ = unsafe { rustix::mm::madvise(mapped.ptr.as_ptr().add(offset).cast(), len, Advice::LinuxPopulateRead) };
    }
}

/// One mapping of the file, unmapped when dropped.
#[derive(Debug)]
pub(crate) struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and only read through shared
// references: any thread may read it, and unmap it when the last one goes.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        // SAFETY: a new mapping at an address the kernel picks, aliasing no Rust object; it is read only through `page`, under its rules.
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::SHARED, fd, 0) }?;
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Mapped { ptr, len })
    }

    /// The file's page `slot` as the page cache holds it.
    ///
    /// # Safety
    ///
    /// The page lies within the mapping and within the file, its write has
    /// completed, and nothing in the process writes it while the reference
    /// lives (the caller holds the slot as a device read does).
    pub(crate) unsafe fn page(&self, slot: u32) -> &Page {
        let offset = slot as usize * PAGE_SIZE;
        debug_assert!(offset + PAGE_SIZE <= self.len, "slot {slot} is past the mapping");
        // SAFETY: within the mapping (the caller's promise), page-aligned (the mapping is, and `Page` is 4096 bytes), initialised (file bytes), and not written meanwhile by this process (the caller's promise). Another process with write access to the file could change the bytes under the reference, as with any shared mapping; a sealed page changed so fails authentication.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<Page>() }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of this length; no reference into it outlives `self` (`page` borrows it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;

    use super::*;

    /// A read past the mapping maps the file anew, at least twice as long;
    /// a read still holding the old mapping reads on through it.
    #[test]
    fn a_read_past_the_mapping_remaps_and_the_old_one_stays_readable() {
        let file = tempfile_in_tmp();
        let page = |fill: u8| [fill; PAGE_SIZE];
        file.write_all_at(&page(1), 0).unwrap();
        let map = FileMap::default();
        let first = map.covering(file.as_fd(), PAGE_SIZE).unwrap();
        assert_eq!(first.len, MIN_LEN);
        let far = (MIN_LEN / PAGE_SIZE + 3) as u32;
        file.write_all_at(&page(2), u64::from(far) * PAGE_SIZE as u64).unwrap();
        map.populate(u64::from(far) * PAGE_SIZE as u64, PAGE_SIZE);
        let second = map.covering(file.as_fd(), (far as usize + 1) * PAGE_SIZE).unwrap();
        assert_eq!(second.len, 2 * MIN_LEN);
        assert!(Arc::ptr_eq(&second, &map.covering(file.as_fd(), PAGE_SIZE).unwrap()));
        // SAFETY: both slots were written, within the file and the mappings, and nothing writes them meanwhile.
        let (old, new) = unsafe { (first.page(0), second.page(far)) };
        assert_eq!(old.as_bytes(), &page(1));
        assert_eq!(new.as_bytes(), &page(2));
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("pagebackup-map-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }
}
