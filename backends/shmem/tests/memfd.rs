//! What the shmem backend does with its memfd: capacity, hole punching,
//! sealing and writeback to swap.

use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, PAGE_SIZE, Page};
use pagebackup_shmem::{ShmemBackend, ShmemConfig};
use pagebackup_testkit::{PageClass, PageSpec};

const PAGE: u64 = PAGE_SIZE as u64;

fn allocated(backend: &ShmemBackend) -> u64 {
    backend
        .memfds()
        .unwrap()
        .iter()
        .map(|fd| rustix::fs::fstat(fd).unwrap().st_blocks as u64 * 512)
        .sum()
}

/// A backend that releases memory at every drop and allocates none ahead.
fn releasing(capacity: u64) -> ShmemBackend {
    let config = ShmemConfig::new().with_capacity(capacity).with_reuse(0).with_reserve(0);
    ShmemBackend::with_config(config).unwrap()
}

fn random_pages(seed: u64, n: u64) -> (Vec<PageSpec>, Vec<Box<Page>>) {
    let specs: Vec<PageSpec> = (0..n).map(|i| PageSpec::new(seed, i, PageClass::Random)).collect();
    let pages = specs.iter().map(PageSpec::page).collect();
    (specs, pages)
}

fn verify_all(backend: &ShmemBackend, handles: &[Handle], specs: &[PageSpec]) {
    let mut page = Page::new_boxed();
    for (&h, spec) in handles.iter().zip(specs) {
        backend.copy_page(&mut page, h, None).unwrap();
        spec.verify(&page).unwrap();
    }
}

#[test]
fn capacity_is_exact_and_exhaustion_loses_nothing() {
    let backend = releasing(16 * PAGE + 100);
    assert_eq!(backend.capacity(), 16 * PAGE);
    let (specs, pages) = random_pages(1, 20);
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    let err = backend
        .backup_pages(&refs, 0, BackupFlags::NONE, &mut handles)
        .unwrap_err();
    assert_eq!((err.kind(), err.completed, handles.len()), (ErrorKind::NoSpace, 16, 16));
    assert!(
        err.error
            .to_string()
            .contains("shmem backend: backup_pages: no space left"),
        "{err:?}"
    );
    let single = backend.backup_page(&pages[19], 19, BackupFlags::NONE).unwrap_err();
    assert_eq!(single.kind(), ErrorKind::NoSpace);
    assert_eq!(backend.stats().stored_pages, 16);
    assert_eq!(backend.stats().failed_backups, 2);
    verify_all(&backend, &handles, &specs);
    backend.drop_handles(&handles).unwrap();
    assert_eq!(allocated(&backend), 0);
}

#[test]
fn a_capacity_below_one_page_is_refused() {
    let err = ShmemBackend::with_capacity(4095).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("capacity 4095 is less than one page"), "{err}");
}

#[test]
fn drops_release_the_memory() {
    let backend = releasing(1 << 30);
    let (specs, pages) = random_pages(2, 256);
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    backend.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
    assert_eq!(
        allocated(&backend),
        256 * PAGE,
        "consecutive idx fill 256 slots exactly"
    );
    // Single drops, scattered.
    for h in handles.iter().step_by(2) {
        backend.drop_handle(*h).unwrap();
    }
    assert_eq!(allocated(&backend), 128 * PAGE);
    let rest: Vec<Handle> = handles.iter().skip(1).step_by(2).copied().collect();
    let rest_specs: Vec<PageSpec> = specs.iter().skip(1).step_by(2).copied().collect();
    verify_all(&backend, &rest, &rest_specs);
    backend.drop_handles(&rest).unwrap();
    assert_eq!(allocated(&backend), 0);
    assert_eq!(backend.stats().stored_bytes, 0);
}

#[test]
fn freed_slots_are_refilled_contiguously() {
    let backend = releasing(1 << 20);
    let (specs, pages) = random_pages(3, 64);
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut first = Vec::new();
    backend.backup_pages(&refs, 0, BackupFlags::NONE, &mut first).unwrap();
    backend.drop_handles(&first).unwrap();
    let mut second = Vec::new();
    backend.backup_pages(&refs, 0, BackupFlags::NONE, &mut second).unwrap();
    // The same 64 slots, in order: the memfd holds exactly 64 pages, and
    // the old handles stay invalid.
    assert_eq!(allocated(&backend), 64 * PAGE);
    let mut page = Page::new_boxed();
    assert_eq!(
        backend.copy_page(&mut page, first[0], None).unwrap_err().kind(),
        ErrorKind::InvalidHandle
    );
    verify_all(&backend, &second, &specs);
    backend.drop_handles(&second).unwrap();
}

#[test]
fn a_handle_twice_in_one_drop_batch_is_dropped_once() {
    let backend = ShmemBackend::with_capacity(1 << 20).unwrap();
    let (specs, pages) = random_pages(4, 3);
    let handles: Vec<Handle> = pages
        .iter()
        .enumerate()
        .map(|(i, p)| backend.backup_page(p, i as u64, BackupFlags::NONE).unwrap())
        .collect();
    let err = backend
        .drop_handles(&[handles[0], handles[1], handles[0], handles[2]])
        .unwrap_err();
    assert_eq!((err.kind(), err.completed), (ErrorKind::InvalidHandle, 2));
    verify_all(&backend, &handles[2..], &specs[2..]);
    assert_eq!(backend.stats().stored_pages, 1);
    backend.drop_handle(handles[2]).unwrap();
}

#[test]
fn the_seal_holds_against_another_holder_of_the_fd() {
    let backend = ShmemBackend::with_capacity(64 * PAGE).unwrap();
    let (specs, pages) = random_pages(5, 8);
    let handles: Vec<Handle> = pages
        .iter()
        .enumerate()
        .map(|(i, p)| backend.backup_page(p, i as u64, BackupFlags::NONE).unwrap())
        .collect();
    // SAFETY: nothing is written through the clone (the calls below are refused), and no backend call runs meanwhile.
    let other = unsafe { backend.writable_memfds() }
        .next()
        .unwrap()
        .try_clone_to_owned()
        .unwrap();
    for len in [0, PAGE, 63 * PAGE] {
        assert_eq!(
            rustix::fs::ftruncate(&other, len),
            Err(rustix::io::Errno::PERM),
            "shrinking to {len} was allowed"
        );
    }
    assert_eq!(
        rustix::fs::ftruncate(&other, 65 * PAGE),
        Err(rustix::io::Errno::PERM),
        "growing was allowed"
    );
    assert_eq!(
        rustix::fs::fcntl_add_seals(&other, rustix::fs::SealFlags::WRITE),
        Err(rustix::io::Errno::PERM),
        "further seals were allowed"
    );
    let seals = rustix::fs::fcntl_get_seals(&other).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW | rustix::fs::SealFlags::SEAL));
    drop(other);
    verify_all(&backend, &handles, &specs);
    let h = backend.backup_page(&pages[0], 99, BackupFlags::NONE).unwrap();
    backend.drop_handle(h).unwrap();
    backend.drop_handles(&handles).unwrap();
}

#[test]
fn the_memfd_is_close_on_exec() {
    let backend = ShmemBackend::with_capacity(PAGE).unwrap();
    // SAFETY: only the descriptor flags are read; nothing is written.
    for fd in unsafe { backend.writable_memfds() } {
        let flags = rustix::io::fcntl_getfd(fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }
    for fd in backend.memfds().unwrap() {
        let flags = rustix::io::fcntl_getfd(&fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }
}

#[test]
fn dropped_memory_is_kept_for_reuse_within_the_budget() {
    let budget = 32;
    let config = ShmemConfig::new()
        .with_capacity(1 << 20)
        .with_reuse(budget * PAGE)
        .with_reserve(0)
        .with_shards(1);
    let backend = ShmemBackend::with_config(config).unwrap();
    let (specs, pages) = random_pages(7, 64);
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    backend.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
    backend.drop_handles(&handles[..16]).unwrap();
    let stats = backend.stats();
    assert_eq!((stats.stored_pages, stats.unreleased_bytes), (48, 16 * PAGE));
    assert_eq!(allocated(&backend), 64 * PAGE, "kept for reuse");
    // Over the budget: released down to half of it.
    backend.drop_handles(&handles[16..48]).unwrap();
    assert_eq!(backend.stats().unreleased_bytes, budget / 2 * PAGE);
    assert_eq!(allocated(&backend), (16 + budget / 2) * PAGE);
    // Backups reuse the kept slots first: no new memory.
    let mut again = Vec::new();
    backend
        .backup_pages(&refs[..16], 0, BackupFlags::NONE, &mut again)
        .unwrap();
    assert_eq!(backend.stats().unreleased_bytes, 0);
    assert_eq!(allocated(&backend), 32 * PAGE);
    verify_all(&backend, &again, &specs[..16]);
    verify_all(&backend, &handles[48..], &specs[48..]);
    backend.drop_handles(&again).unwrap();
    assert_eq!(backend.stats().unreleased_bytes, 16 * PAGE);
    backend.release_unused();
    assert_eq!(backend.stats().unreleased_bytes, 0);
    assert_eq!(allocated(&backend), 16 * PAGE);
    backend.drop_handles(&handles[48..]).unwrap();
    // A writeback backup releases whatever is kept.
    let h = backend.backup_page(&pages[0], 0, BackupFlags::WRITEBACK).unwrap();
    assert_eq!(backend.stats().unreleased_bytes, 0);
    backend.drop_handle(h).unwrap();
}

/// A reserve of 64 pages, filled by `maintain` (the thread does the same
/// off the backup path): its slots are allocated, free and where the next
/// backups go, which then allocate nothing; drops with `reuse=0` still
/// release at once; `release_unused` gives the reserve back; pages read
/// back exactly throughout, and a dropped handle stays invalid.
#[test]
fn the_reserve_is_allocated_ahead_and_backups_fill_it_without_allocating() {
    let reserve = 64;
    let config = ShmemConfig::new()
        .with_capacity(1 << 20)
        .with_reuse(0)
        .with_reserve(reserve * PAGE)
        .with_shards(1);
    let backend = ShmemBackend::with_config(config).unwrap();
    backend.maintain().unwrap();
    let stats = backend.stats();
    assert_eq!((stats.stored_pages, stats.unreleased_bytes), (0, reserve * PAGE));
    assert_eq!(allocated(&backend), reserve * PAGE, "allocated ahead");
    // 16 pages leave 48 of the reserve, above half of it: the thread is
    // not asked to refill, so the figures below are exact.
    let (specs, pages) = random_pages(11, 16);
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    backend.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
    assert_eq!(backend.stats().unreleased_bytes, (reserve - 16) * PAGE);
    assert_eq!(allocated(&backend), reserve * PAGE, "the backups allocated nothing");
    verify_all(&backend, &handles, &specs);
    backend.drop_handles(&handles[..8]).unwrap();
    let mut page = Page::new_boxed();
    assert_eq!(
        backend.copy_page(&mut page, handles[0], None).unwrap_err().kind(),
        ErrorKind::InvalidHandle
    );
    assert_eq!(
        allocated(&backend),
        (reserve - 8) * PAGE,
        "reuse=0 releases at the drop"
    );
    backend.maintain().unwrap();
    assert_eq!(backend.stats().unreleased_bytes, reserve * PAGE);
    assert_eq!(allocated(&backend), (8 + reserve) * PAGE);
    backend.release_unused();
    assert_eq!(backend.stats().unreleased_bytes, 0);
    assert_eq!(allocated(&backend), 8 * PAGE);
    verify_all(&backend, &handles[8..], &specs[8..]);
}

fn swap_free() -> u64 {
    let info = rustix::system::sysinfo();
    info.freeswap as u64 * u64::from(info.mem_unit)
}

#[test]
fn writeback_moves_pages_to_swap_and_they_come_back_exact() {
    const PAGES: u64 = 1024;
    if swap_free() < 2 * PAGES * PAGE {
        println!("SKIP: the machine has no free swap (run .ci/run as root to set up a temporary swap file)");
        return;
    }
    let backend = releasing(1 << 30);
    assert!(backend.bytes_avail() > 0);
    let (specs, pages) = random_pages(6, PAGES);
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    backend
        .backup_pages(&refs[..PAGES as usize / 2], 0, BackupFlags::WRITEBACK, &mut handles)
        .unwrap();
    for (i, page) in refs[PAGES as usize / 2..].iter().enumerate() {
        handles.push(
            backend
                .backup_page(page, PAGES / 2 + i as u64, BackupFlags::WRITEBACK)
                .unwrap(),
        );
    }
    let swapped = backend.swapped_bytes().unwrap();
    let stats = backend.stats();
    println!(
        "swapped after writeback: {swapped} of {} bytes; {stats:?}",
        PAGES * PAGE
    );
    assert_eq!(stats.writeback_pages, PAGES);
    assert!(
        swapped >= PAGES * PAGE / 2,
        "only {swapped} bytes of {} reached swap",
        PAGES * PAGE
    );
    assert_eq!(
        stats.resident_bytes,
        PAGES * PAGE - swapped,
        "what is swapped out is not resident"
    );
    verify_all(&backend, &handles, &specs);
    assert_eq!(
        backend.stats().resident_bytes,
        PAGES * PAGE - backend.swapped_bytes().unwrap(),
        "what is swapped out is not resident"
    );
    backend.drop_handles(&handles).unwrap();
    assert_eq!(
        backend.swapped_bytes().unwrap(),
        0,
        "dropping swapped pages frees their swap"
    );
}

#[test]
fn memfds_for_inspection_cannot_write() {
    let backend = ShmemBackend::with_capacity(4 * PAGE).unwrap();
    let h = backend
        .backup_page(&PageSpec::new(6, 0, PageClass::Random).page(), 0, BackupFlags::NONE)
        .unwrap();
    let fds = backend.memfds().unwrap();
    assert!(!fds.is_empty());
    for fd in &fds {
        let mut byte = [0u8];
        assert_eq!(rustix::io::pread(fd, &mut byte, 0), Ok(1), "it reads");
        assert_eq!(rustix::io::pwrite(fd, &[1], 0), Err(rustix::io::Errno::BADF));
        assert_eq!(
            rustix::fs::fallocate(
                fd,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                0,
                PAGE
            ),
            Err(rustix::io::Errno::BADF)
        );
    }
    backend.drop_handle(h).unwrap();
}
