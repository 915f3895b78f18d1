//! What the slot store gives the shmem backend: bounded metadata, fork()
//! safety, checksums that catch a changed memfd.

use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, PAGE_SIZE, Page};
use pagebackup_shmem::{ShmemBackend, ShmemConfig};
use pagebackup_testkit::{PageClass, PageSpec, in_forked_child};

#[test]
fn two_hundred_thousand_backups_and_drops_leave_bounded_metadata() {
    let b = ShmemBackend::with_config(ShmemConfig::new().with_capacity(1 << 30).with_shards(1)).unwrap();
    let page = PageSpec::new(1, 0, PageClass::Random).page();
    for idx in 0..200_000u64 {
        let h = b.backup_page(&page, idx, BackupFlags::NONE).unwrap();
        b.drop_handle(h).unwrap();
    }
    let s = b.stats();
    assert_eq!(s.stored_pages, 0);
    assert!(s.metadata_bytes <= 64 << 10, "metadata grew to {}", s.metadata_bytes);
    assert!(s.stored_bytes <= PAGE_SIZE as u64, "{s:?}");
}

#[test]
fn a_child_gets_an_error_and_the_parent_keeps_every_page() {
    let b = ShmemBackend::with_capacity(1 << 24).unwrap();
    let specs: Vec<PageSpec> = (0..64).map(|i| PageSpec::new(2, i, PageClass::Heap)).collect();
    let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles: Vec<Handle> = Vec::new();
    b.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
    // SAFETY: no other thread uses the backend, so its locks are free in the child; the child prints nothing and allocates only through glibc, whose malloc is fork-safe.
    let ok = unsafe {
        in_forked_child(|| {
            // Without the check, this backup would land in a slot the parent
            // reuses, and the shared memfd would give the parent its bytes.
            let other = PageSpec::new(3, 0, PageClass::Random).page();
            let backup = b.backup_page(&other, 0, BackupFlags::NONE).unwrap_err();
            let dropped = b.drop_handles(&handles).unwrap_err();
            let mut dst = Page::new_boxed();
            let copy = b.copy_page(&mut dst, handles[0], None).unwrap_err();
            [backup.kind(), dropped.kind(), copy.kind()] == [ErrorKind::Unsupported; 3]
                && backup.to_string().contains("fork() child")
        })
    };
    assert!(ok, "the child was not refused with a clear error");
    let mut page = Page::new_boxed();
    for (h, spec) in handles.iter().zip(&specs) {
        b.copy_page(&mut page, *h, None).unwrap();
        spec.verify(&page).unwrap();
    }
    b.drop_handles(&handles).unwrap();
}

#[test]
fn a_changed_memfd_gives_corrupt_with_checksums_and_wrong_bytes_without() {
    for checksum in [true, false] {
        let config = ShmemConfig::new()
            .with_capacity(1 << 20)
            .with_shards(1)
            .with_checksum(checksum);
        let b = ShmemBackend::with_config(config).unwrap();
        let spec = PageSpec::new(4, 0, PageClass::Text);
        let h = b.backup_page(&spec.page(), 0, BackupFlags::NONE).unwrap();
        // The first backup of the one shard is in slot 0: flip a byte there.
        // SAFETY: the byte is changed while no call of the backend runs (one thread, between calls).
        let memfd = unsafe { b.writable_memfds() }.next().unwrap();
        let mut byte = [0u8];
        rustix::io::pread(memfd, &mut byte, 100).unwrap();
        rustix::io::pwrite(memfd, &[byte[0] ^ 0x40], 100).unwrap();
        let mut page = Page::new_boxed();
        let result = b.copy_page(&mut page, h, None);
        if checksum {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
            assert!(err.to_string().contains("checksum"), "{err}");
        } else {
            result.unwrap();
            assert!(spec.verify(&page).is_err(), "without checksums the change goes unseen");
        }
        b.drop_handle(h).unwrap();
    }
}
