//! Bounded space: whatever the sequence of backups and drops, the files'
//! apparent size and allocated blocks and the store's metadata stay within
//! a small bound over the peak number of pages held at once.

use pagebackup_core::{BackupBackend, BackupFlags, Handle, PAGE_SIZE, Page};
use pagebackup_file::{FileBackend, FileConfig};
use pagebackup_testkit::{PageClass, PageSpec, SplitMix64};

const PAGE: u64 = PAGE_SIZE as u64;

fn one_shard() -> FileBackend {
    FileBackend::new(FileConfig::new().with_shards(1)).unwrap()
}

/// Bytes of blocks allocated to the files.
fn allocated(b: &FileBackend) -> u64 {
    b.fds()
        .map(|fd| rustix::fs::fstat(fd).unwrap().st_blocks as u64 * 512)
        .sum()
}

/// The file's apparent size in bytes.
fn apparent(b: &FileBackend) -> u64 {
    b.fds().map(|fd| rustix::fs::fstat(fd).unwrap().st_size as u64).sum()
}

#[test]
fn a_million_single_backups_and_drops_leave_nothing_behind() {
    let b = one_shard();
    let page = PageSpec::new(1, 0, PageClass::Random).page();
    for idx in 0..1_000_000u64 {
        let h = b.backup_page(&page, idx, BackupFlags::NONE).unwrap();
        b.drop_handle(h).unwrap();
    }
    let s = b.stats();
    assert_eq!((s.stored_pages, s.stored_bytes), (0, 0), "{s:?}");
    assert!(
        s.metadata_bytes <= 64 << 10,
        "metadata grew to {} bytes",
        s.metadata_bytes
    );
    assert!(apparent(&b) <= PAGE, "apparent size {}", apparent(&b));
}

#[test]
fn ten_thousand_batches_dropped_at_once_reuse_the_same_slots() {
    let b = one_shard();
    let pages: Vec<Box<Page>> = (0..64).map(|i| PageSpec::new(2, i, PageClass::Random).page()).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    for batch in 0..10_000u64 {
        handles.clear();
        b.backup_pages(&refs, batch * 64, BackupFlags::NONE, &mut handles)
            .unwrap();
        b.drop_handles(&handles).unwrap();
    }
    let s = b.stats();
    assert_eq!((s.stored_pages, s.stored_bytes), (0, 0), "{s:?}");
    assert!(apparent(&b) <= 64 * PAGE, "apparent size {}", apparent(&b));
    assert!(s.metadata_bytes <= 64 << 10, "metadata {}", s.metadata_bytes);
}

#[test]
fn random_churn_stays_within_the_peak() {
    let b = one_shard();
    let mut rng = SplitMix64::new(0x5bace);
    let mut live: Vec<(Handle, PageSpec)> = Vec::new();
    let mut peak = 0u64;
    let mut next = 0u64;
    for step in 0..3000 {
        if rng.below(3) != 0 || live.is_empty() {
            let n = rng.below(48) + 1;
            let specs: Vec<PageSpec> = (0..n).map(|i| PageSpec::new(3, next + i, PageClass::Text)).collect();
            let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
            let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
            let mut handles = Vec::new();
            // Sometimes one object, sometimes pages of many.
            let idx = if rng.below(2) == 0 { next } else { rng.next_u64() >> 2 };
            b.backup_pages(&refs, idx, BackupFlags::NONE, &mut handles).unwrap();
            live.extend(handles.into_iter().zip(specs));
            next += n;
        } else {
            let k = rng.below(live.len() as u64) as usize;
            let n = (rng.below(64) as usize + 1).min(live.len() - k);
            let dropped: Vec<Handle> = live.drain(k..k + n).map(|(h, _)| h).collect();
            b.drop_handles(&dropped).unwrap();
        }
        peak = peak.max(live.len() as u64);
        let s = b.stats();
        assert!(
            apparent(&b) <= peak * PAGE,
            "step {step}: apparent {} over peak {peak} pages",
            apparent(&b)
        );
        // Blocks are the file system's to count (ext4's delayed allocation
        // may lag a page behind); the bound is what matters.
        assert!(
            allocated(&b) <= peak * PAGE,
            "step {step}: {} bytes allocated over peak {peak} pages",
            allocated(&b)
        );
        // Per slot up to the peak: a generation, a checksum, a live bit, and
        // at most one free run per two slots; tables grow in 4096-slot steps.
        let bound = 24 * peak.next_multiple_of(4096);
        assert!(
            s.metadata_bytes <= bound,
            "step {step}: metadata {} over {bound}",
            s.metadata_bytes
        );
    }
    let mut page = Page::new_boxed();
    for (h, spec) in &live {
        b.copy_page(&mut page, *h, None).unwrap();
        spec.verify(&page).unwrap();
    }
    let handles: Vec<Handle> = live.iter().map(|(h, _)| *h).collect();
    b.drop_handles(&handles).unwrap();
    assert_eq!(b.stats().stored_bytes, 0);
    assert_eq!(allocated(&b), 0);
}

#[test]
fn a_changed_file_gives_corrupt_with_checksums() {
    for checksum in [true, false] {
        let b = FileBackend::new(FileConfig::new().with_shards(1).with_checksum(checksum)).unwrap();
        let specs: Vec<PageSpec> = (0..4).map(|i| PageSpec::new(5, i, PageClass::Heap)).collect();
        let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
        let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
        let mut handles = Vec::new();
        b.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
        // Slots 0..4 of the one file: rot a byte of slot 2.
        let fd = b.fds().next().unwrap();
        let at = 2 * PAGE + 7;
        let mut byte = [0u8];
        rustix::io::pread(fd, &mut byte, at).unwrap();
        rustix::io::pwrite(fd, &[!byte[0]], at).unwrap();
        let mut out: Vec<Box<Page>> = (0..4).map(|_| Page::new_boxed()).collect();
        let mut dsts: Vec<&mut Page> = out.iter_mut().map(|p| &mut **p).collect();
        let result = b.copy_pages(&handles, &mut dsts, None);
        if checksum {
            let err = result.unwrap_err();
            assert_eq!(
                (err.kind(), err.completed),
                (pagebackup_core::ErrorKind::Corrupt, 2),
                "{err}"
            );
            for (page, spec) in out[..2].iter().zip(&specs) {
                spec.verify(page).unwrap();
            }
        } else {
            result.unwrap();
            assert!(specs[2].verify(&out[2]).is_err());
        }
        b.drop_handles(&handles).unwrap();
    }
}

/// With `reuse`, dropped pages keep their blocks up to the budget (the next
/// backups rewrite them, the file allocating nothing more), past it the
/// highest go down to half the budget, and `release_unused` gives back
/// the rest.
#[test]
fn blocks_kept_for_reuse_stay_within_the_budget_until_released() {
    let reuse = 256 * PAGE;
    let b = FileBackend::new(FileConfig::new().with_shards(1).with_reuse(reuse)).unwrap();
    let page = PageSpec::new(1, 0, PageClass::Random).page();
    let pages: Vec<&Page> = vec![&*page; 128];
    let mut handles: Vec<Handle> = Vec::new();
    b.backup_pages(&pages, 0, BackupFlags::NONE, &mut handles).unwrap();
    let full = allocated(&b);
    assert!(full >= 128 * PAGE, "{full} bytes allocated for 128 pages");
    b.drop_handles(&handles).unwrap();
    assert_eq!(allocated(&b), full, "dropped pages within the budget keep their blocks");
    assert_eq!(b.stats().unreleased_bytes, 128 * PAGE);
    for round in 0..4 {
        handles.clear();
        b.backup_pages(&pages, round, BackupFlags::NONE, &mut handles).unwrap();
        assert_eq!(allocated(&b), full, "a backup into kept blocks allocates nothing");
        b.drop_handles(&handles).unwrap();
    }
    // 384 pages dropped at once pass the budget of 256: down to 128 kept.
    let more: Vec<&Page> = vec![&*page; 384];
    handles.clear();
    b.backup_pages(&more, 0, BackupFlags::NONE, &mut handles).unwrap();
    b.drop_handles(&handles).unwrap();
    assert!(b.stats().unreleased_bytes <= reuse, "{:?}", b.stats());
    assert!(allocated(&b) <= reuse + full, "{} bytes allocated", allocated(&b));
    b.release_unused();
    assert_eq!(b.stats().unreleased_bytes, 0);
    assert_eq!(allocated(&b), 0, "every kept block released");
}
