//! [`FileDevice`]: one shard's backing file as a slot store device.

use std::os::fd::BorrowedFd;

use pagebackup_core::raw::{Arrived, Device, ReadRun, RunError, WriteRun, hand_over};
use pagebackup_core::{BackupError, Operation, Origin, PAGE_SIZE, Page};

use crate::file::BackingFile;
use crate::io::Io;
use crate::mapping::FileMap;
use crate::staging::{STAGE_FLUSH, Staging};
use crate::uring::Ring;
use crate::{FileConfig, IoMode};

const PAGE: u64 = PAGE_SIZE as u64;

/// The most pages of a run read by one operation when the reader checks
/// each part as it arrives ([`Device::read_arriving`]): a batch of 64
/// goes out in two halves, so the first half's checksums are computed
/// while the second half is read.
const ARRIVING_PART: usize = 32;

/// One file of page slots, written through `pwritev` or io_uring, with
/// single-page writes staged in memory: the staged pages are written (runs
/// of contiguous slots coalesced) when a single page arrives with 64
/// already staged, at writeback and at flush. The native async backend
/// stages its buffered backups here too, and its writers write them
/// ([`AsyncFileBackend`](crate::AsyncFileBackend), feature `async`). Reads
/// of staged slots copy from memory. Sealed and without `direct`, it lends its pages
/// ([`Device::lend`]) through a shared mapping of the file (made at the
/// first lend), so that the sealing layer decrypts from the page cache
/// straight into the caller's page; unsealed, nothing would borrow them,
/// so it keeps no mapping and its writes populate none.
#[derive(Debug)]
pub struct FileDevice {
    pub(crate) file: BackingFile,
    pub(crate) io: Io,
    /// Why io_uring is not used, when it is not.
    pub(crate) fallback: Option<String>,
    staging: Staging,
    /// The file's mapping, for lending to the sealing layer; `None`
    /// unsealed, and with `direct`, whose pages are not meant to stay in
    /// the page cache.
    map: Option<FileMap>,
}

impl FileDevice {
    /// A new backing file as `config` says (its directory or path, the I/O
    /// path, `direct`, and `seal` for whether to lend through a mapping);
    /// `max_size`, `checksum` and `shards` are the store's, and sealing is
    /// the layer's above.
    pub fn open(config: &FileConfig) -> pagebackup_core::Result<Self> {
        let origin = Origin::new(crate::NAME, Operation::Open);
        let file = BackingFile::create(config).map_err(|source| BackupError::Io { origin, source })?;
        let (io, fallback) = match (config.io, config.direct) {
            (IoMode::Sync, _) => (Io::Sync, Some("io=sync was asked for".to_string())),
            (IoMode::Auto, false) => (
                Io::Sync,
                Some("buffered writes measure faster through pwritev than through io_uring".to_string()),
            ),
            (IoMode::Auto, true) | (IoMode::Uring, _) => match Ring::new(file.fd()) {
                // One operation per run: splitting runs so that more are in
                // flight measured slower here (virtio disk, ext4: 0.49-0.59
                // GB/s in 4- or 16-page operations against 0.96 whole).
                // Auto sends a batch of one run through the syscall (see `Io::Uring`).
                Ok(ring) => (Io::Uring(Box::new(ring), usize::MAX, config.io == IoMode::Auto), None),
                Err(reason) if config.io == IoMode::Auto => (Io::Sync, Some(reason.reason())),
                Err(reason) => return Err(reason.into_error()),
            },
        };
        Ok(FileDevice {
            file,
            io,
            fallback,
            staging: Staging::default(),
            map: (!config.direct && config.seal.is_some()).then(FileMap::default),
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.fd()
    }

    /// The pages staged until they are written: single pages of the sync
    /// backend, and the native backend's write-behind.
    pub(crate) fn staging(&self) -> &Staging {
        &self.staging
    }

    /// Writes the staged pages, runs of contiguous slots coalesced.
    pub(crate) fn flush_staged(&self) -> std::io::Result<()> {
        self.staging.flush(|slots, pages| {
            let mut runs: Vec<crate::runs::WriteRun<'_>> = Vec::new();
            let mut start = 0;
            for end in 1..=slots.len() {
                if end == slots.len() || slots[end - 1] + 1 != slots[end] {
                    runs.push((u64::from(slots[start]) * PAGE, &pages[start..end]));
                    start = end;
                }
            }
            self.write_runs(&runs).map_err(|e| e.error)
        })
    }

    /// Forgets the staged pages of the slots of `runs`, about to be written
    /// straight to the file: a slot kept for reuse (never released) may
    /// still have an older page staged, which reads would otherwise prefer
    /// and a flush would write over the new one.
    fn unstage(&self, runs: &[WriteRun<'_>]) {
        for run in runs {
            self.staging.discard(run.slot..run.slot + run.pages.len() as u32);
        }
    }

    /// Writes `runs` to the file; the pages written are populated into the
    /// file's mapping, if there is one, for the reads lent from it.
    fn write_runs(&self, runs: &[crate::runs::WriteRun<'_>]) -> Result<(), RunError> {
        self.io.write(self.fd(), runs)?;
        if let Some(map) = &self.map {
            for &(offset, pages) in runs {
                map.populate(offset, pages.len() * PAGE_SIZE);
            }
        }
        Ok(())
    }
}

/// The file's runs (byte offsets) of the device's `runs` (slots).
fn file_runs<'a>(runs: &[WriteRun<'a>]) -> Vec<crate::runs::WriteRun<'a>> {
    runs.iter().map(|r| (u64::from(r.slot) * PAGE, r.pages)).collect()
}

// SAFETY: a call touches only its runs' pages (through positioned syscalls
// or io_uring operations it waits for before returning) and the file's and
// staging buffer's slots it is given; a staged page is copied in and out
// under the staging lock.
unsafe impl Device for FileDevice {
    /// A single page is staged (the caller's page is free at once), after
    /// the staged pages are written if 64 are; anything larger is written
    /// straight from the caller's pages, whatever is staged.
    unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        if let [run] = runs
            && let [page] = run.pages
        {
            if self.staging.len() >= STAGE_FLUSH {
                // A failed write fails this backup; the staged pages stay
                // in memory for a later flush.
                self.flush_staged().map_err(|error| RunError { done: 0, error })?;
            }
            self.staging.stage(run.slot, page);
            return Ok(());
        }
        self.unstage(runs);
        self.write_runs(&file_runs(runs))
    }

    /// As [`write`](Device::write), with `meanwhile` run while the ring
    /// writes: a batch's checksums are computed during its transfer. One
    /// run goes through the ring too, where `write` sends it through the
    /// syscall: with `direct=on`, 64-page backups measured 0.75–1.04x
    /// `dd oflag=direct bs=256K` where the write allocates blocks (as
    /// 0.84–0.89x through the syscall with the checksums before it) and
    /// 1.33–1.74x where it rewrites blocks kept by `reuse`. A single page
    /// is staged, and without a ring (or with a mapping to populate)
    /// `meanwhile` runs first.
    unsafe fn write_overlapped(&self, runs: &[WriteRun<'_>], meanwhile: &mut dyn FnMut()) -> Result<(), RunError> {
        let one_page = matches!(runs, [run] if run.pages.len() == 1);
        match self.io.ring(false) {
            Some((ring, op_pages)) if !one_page && self.map.is_none() => {
                self.unstage(runs);
                ring.write(self.fd(), &file_runs(runs), op_pages, meanwhile)
            }
            _ => {
                meanwhile();
                // SAFETY: the caller's runs, under the caller's promise.
                unsafe { self.write(runs) }
            }
        }
    }

    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        if self.staging.len() == 0 {
            let mut file_runs: Vec<crate::runs::ReadRun<'_, '_>> = runs
                .iter_mut()
                .map(|r| (u64::from(r.slot) * PAGE, &mut *r.pages))
                .collect();
            return self.io.read(self.fd(), &mut file_runs);
        }
        // Some pages may be staged: those come from memory, the rest of a
        // run from the file (whole, where none of it is staged).
        for (done, run) in runs.iter_mut().enumerate() {
            let staged: Vec<bool> = (run.slot..)
                .zip(run.pages.iter_mut())
                .map(|(slot, dst)| self.staging.copy_out(slot, dst))
                .collect();
            let fail = |e: RunError| RunError { done, error: e.error };
            if !staged.contains(&true) {
                let mut whole = [(u64::from(run.slot) * PAGE, &mut *run.pages)];
                self.io.read(self.fd(), &mut whole).map_err(fail)?;
                continue;
            }
            for ((slot, dst), _) in (run.slot..)
                .zip(run.pages.iter_mut())
                .zip(&staged)
                .filter(|(_, s)| !**s)
            {
                let mut one = [(u64::from(slot) * PAGE, std::slice::from_mut(dst))];
                self.io.read(self.fd(), &mut one).map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Through io_uring (and nothing staged), each run in parts of at most
    /// `ARRIVING_PART` (32) pages, all in flight at once, each handed over as
    /// it completes: the store checks a part's checksums while the device
    /// reads the next. Otherwise (or for one run of one part, where a ring
    /// that sends one run through the syscall would do so: there is
    /// nothing to overlap) as [`read`](Device::read), then handed over.
    unsafe fn read_arriving(&self, runs: &mut [ReadRun<'_, '_>], arrived: &mut Arrived<'_>) -> Result<(), RunError> {
        let one_part = runs.len() == 1 && runs[0].pages.len() <= ARRIVING_PART;
        match self.io.ring(one_part) {
            // Nothing staged: every slot of the runs is on the file (see `read`).
            Some((ring, _)) if self.staging.len() == 0 => {
                let mut file_runs: Vec<crate::runs::ReadRun<'_, '_>> = runs
                    .iter_mut()
                    .map(|r| (u64::from(r.slot) * PAGE, &mut *r.pages))
                    .collect();
                ring.read_arriving(self.fd(), &mut file_runs, ARRIVING_PART, arrived)
            }
            _ => {
                // SAFETY: the caller's runs, under the caller's promise.
                let result = unsafe { self.read(runs) };
                hand_over(runs, result, arrived)
            }
        }
    }

    /// Staged pages from memory, the others through the file's mapping
    /// (mapped anew if the file grew past it); nothing without a mapping
    /// (unsealed, `direct`), or where the file cannot be mapped.
    unsafe fn lend(&self, slot: u32, count: usize, visit: &mut dyn FnMut(usize, &Page)) -> std::io::Result<bool> {
        let Some(map) = &self.map else { return Ok(false) };
        let end = (slot as usize + count) * PAGE_SIZE;
        let Ok(mapped) = map.covering(self.fd(), end) else {
            return Ok(false);
        };
        for (page, slot) in (slot..).take(count).enumerate() {
            match self.staging.staged(slot) {
                Some(staged) => visit(page, &staged),
                // SAFETY: not staged, so written to the file (a staged page leaves staging once its write has completed), within the mapping (`covering`), and neither written nor released meanwhile (the caller's promise).
                None => visit(page, unsafe { mapped.page(slot) }),
            }
        }
        Ok(true)
    }

    unsafe fn release(&self, slot: u32, count: u32) -> std::io::Result<()> {
        self.staging.discard(slot..slot + count);
        self.file.punch_hole(u64::from(slot) * PAGE, u64::from(count) * PAGE)
    }

    fn writeback(&self, _slot: u32, count: u32) -> u64 {
        // Staged pages are written now; a failure is retried by the next
        // flush, which reports it.
        match self.flush_staged() {
            Ok(()) => u64::from(count),
            Err(_) => 0,
        }
    }

    fn flush(&self) -> std::io::Result<()> {
        self.flush_staged()
    }

    fn resident_bytes(&self) -> u64 {
        self.staging.bytes()
    }

    /// The staging buffer's spare buffers: its staged pages are the
    /// storage held in RAM ([`resident_bytes`](Device::resident_bytes)),
    /// counted once.
    fn buffered_bytes(&self) -> u64 {
        self.staging.spare_bytes()
    }

    fn space_avail(&self) -> u64 {
        self.file.free_space().unwrap_or(0).saturating_sub(self.staging.bytes())
    }

    fn io_path(&self) -> Option<&'static str> {
        Some(self.io.name())
    }
}
