//! A fault taken inside the allocator, with its lock held: the fault
//! service must neither allocate (which would deadlock) nor corrupt, also
//! when it is the thread's first restore from a backend whose decoder
//! keeps state (zstd).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use pagebackup_core::{BackupBackend, MemoryBackend, PAGE_SIZE};
use pagebackup_region::RegionConfig;
use support::{MODES, region};

/// The system allocator behind one lock, which, when armed, reads a word of
/// the region while holding it (an allocator whose metadata lives there).
struct LockedAllocator;

static LOCK: AtomicBool = AtomicBool::new(false);
static TARGET: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());
static SEEN: AtomicU64 = AtomicU64::new(0);
static REENTERED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

impl LockedAllocator {
    fn locked<R>(f: impl FnOnce() -> R) -> R {
        if INSIDE.get() {
            // Called again from inside: the fault service allocated.
            REENTERED.store(true, Ordering::SeqCst);
            return f();
        }
        while LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        INSIDE.set(true);
        let target = TARGET.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !target.is_null() {
            // SAFETY: the test points TARGET at a word of a region that outlives the access.
            SEEN.store(unsafe { (*target).load(Ordering::Relaxed) }, Ordering::SeqCst);
        }
        let r = f();
        INSIDE.set(false);
        LOCK.store(false, Ordering::Release);
        r
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for LockedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        Self::locked(|| unsafe { System.alloc(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        Self::locked(|| unsafe { System.dealloc(ptr, layout) })
    }
}

#[global_allocator]
static ALLOCATOR: LockedAllocator = LockedAllocator;

#[test]
fn a_fault_inside_the_allocator_neither_deadlocks_nor_allocates() {
    fault_inside_the_allocator(|| Box::new(MemoryBackend::new()));
}

/// The fault inside the allocator is the first restore of its thread (the
/// test's in signal mode, a new handler thread's otherwise) from zstd,
/// whose decoding context is made before any restore.
#[test]
fn a_first_zstd_restore_inside_the_allocator_neither_deadlocks_nor_allocates() {
    fault_inside_the_allocator(|| pagebackup::open("compressed:algo=zstd").expect("a zstd backend"));
}

/// The tests arm one allocator: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn fault_inside_the_allocator(backend: impl Fn() -> Box<dyn BackupBackend>) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    for mode in MODES {
        let budget = 64 * PAGE_SIZE;
        let config = RegionConfig::new().with_mode(mode);
        let Some(r) = region(8 * budget, budget, backend(), config) else {
            return;
        };
        let words = r.words();
        let per_page = PAGE_SIZE / 8;
        for p in 0..r.len() / PAGE_SIZE {
            words[p * per_page + 7].store(p as u64 + 1000, Ordering::Relaxed);
        }
        // The evictor runs in the background: wait for its first batches,
        // then aim at a page it has evicted (not resident, as `mincore`
        // says), so that the next allocation faults on it with the
        // allocator's lock held.
        let pages = r.len() / PAGE_SIZE;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let evicted = loop {
            let evicted = first_evicted(r.as_ptr(), pages);
            if evicted.is_some() || std::time::Instant::now() > deadline {
                break evicted.expect("the evictor keeps the region within its budget");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let expected = evicted as u64 + 1000;
        let faults_before = r.stats().faults;
        TARGET.store(
            (&words[evicted * per_page + 7] as *const AtomicU64).cast_mut(),
            Ordering::SeqCst,
        );
        let v: Vec<u64> = Vec::with_capacity(64);
        drop(v);
        assert!(
            TARGET.load(Ordering::SeqCst).is_null(),
            "{mode}: the allocator did not run"
        );
        assert_eq!(
            SEEN.load(Ordering::SeqCst),
            expected,
            "{mode}: the word read inside the allocator"
        );
        assert!(!REENTERED.load(Ordering::SeqCst), "{mode}: the fault service allocated");
        // A handler thread counts the fault once it has served it, after
        // its copy has woken this thread: wait for the count a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while r.stats().faults == faults_before && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(
            r.stats().faults > faults_before,
            "{mode}: the access inside the allocator took no fault"
        );
    }
}

/// The first page of the `pages` at `base` that is not resident.
fn first_evicted(base: *mut u8, pages: usize) -> Option<usize> {
    let mut resident = vec![0u8; pages];
    // SAFETY: `base` is the page-aligned start of a mapping of `pages` pages, and `resident` has one byte per page for the kernel to fill.
    let rc = unsafe { libc::mincore(base.cast(), pages * PAGE_SIZE, resident.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    resident.iter().position(|&r| r & 1 == 0)
}
