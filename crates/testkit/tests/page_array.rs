//! `PageArray` on the reference backend: in-place backup, partial states,
//! resumable restore, purge, and nothing left behind.

use std::sync::Arc;

use pagebackup_core::layers::{FaultConfig, FaultInjection};
use pagebackup_core::{
    BackupBackend, BackupFlags, Counts, ErrorKind, Interrupt, MemoryBackend, PAGE_SIZE, Page, PageArray, PageState,
    Slot,
};
use pagebackup_testkit::PageSpec;

const SEED: u64 = 0xa77a;

fn filled(n: usize, backend: Arc<dyn BackupBackend>) -> PageArray {
    let mut array = PageArray::new_zeroed(n, backend);
    for (i, page) in array.iter_mut() {
        PageSpec::mixed(SEED, i as u64).fill(page);
    }
    array
}

fn verify(array: &PageArray) {
    for i in 0..array.len() {
        let page = array
            .get(i)
            .unwrap_or_else(|| panic!("page {i} is not resident: {:?}", array.slot(i)));
        PageSpec::mixed(SEED, i as u64).verify(page).unwrap();
    }
}

#[test]
fn backup_and_restore_in_place() {
    let backend: Arc<dyn BackupBackend> = Arc::new(MemoryBackend::new());
    let mut array = filled(200, backend.clone());
    assert_eq!(
        array.counts(),
        Counts {
            resident: 200,
            backed: 0,
            empty: 0
        }
    );
    assert_eq!(array.backup(BackupFlags::NONE).unwrap(), 200);
    assert_eq!(
        array.counts(),
        Counts {
            resident: 0,
            backed: 200,
            empty: 0
        }
    );
    assert!(array.words().iter().all(|w| matches!(w.view(), PageState::Backed(_))));
    assert!(array.get(0).is_none());
    assert_eq!(backend.stats().stored_pages, 200);
    assert_eq!(array.backup(BackupFlags::NONE).unwrap(), 0, "nothing left to back up");
    assert_eq!(array.restore(None).unwrap(), 200);
    assert_eq!(backend.stats().stored_pages, 0, "restore drops each handle");
    verify(&array);
    assert_eq!(array.restore(None).unwrap(), 0);
}

#[test]
fn a_full_backend_leaves_a_partly_backed_up_array_that_continues() {
    let backend: Arc<dyn BackupBackend> = Arc::new(MemoryBackend::with_limit(70 * PAGE_SIZE as u64));
    let mut array = filled(100, backend.clone());
    let stopped = array.backup(BackupFlags::NONE).unwrap_err();
    assert_eq!((stopped.completed, stopped.error.kind()), (70, ErrorKind::NoSpace));
    assert_eq!(
        array.counts(),
        Counts {
            resident: 30,
            backed: 70,
            empty: 0
        }
    );
    // The owner changes a resident page while the array is partly backed up.
    array.get_mut(99).unwrap().0[0] ^= 0xff;
    // Restoring frees backend space; the next backup continues.
    assert_eq!(array.restore(None).unwrap(), 70);
    assert_eq!(array.backup(BackupFlags::NONE).unwrap_err().completed, 70);
    array.restore(None).unwrap();
    array.get_mut(99).unwrap().0[0] ^= 0xff;
    verify(&array);
}

#[test]
fn an_interrupted_restore_resumes_where_it_stopped() {
    let backend: Arc<dyn BackupBackend> = Arc::new(MemoryBackend::new());
    let mut array = filled(150, backend.clone());
    array.backup(BackupFlags::WRITEBACK).unwrap();
    let intr = Interrupt::new();
    intr.interrupt();
    let stopped = array.restore(Some(&intr)).unwrap_err();
    assert_eq!((stopped.completed, stopped.error.kind()), (0, ErrorKind::Interrupted));
    assert_eq!(array.counts().backed, 150);
    intr.clear();
    assert_eq!(array.restore(Some(&intr)).unwrap(), 150);
    verify(&array);
    assert_eq!(backend.stats().stored_pages, 0);
}

#[test]
fn injected_faults_stop_backup_and_restore_part_way_and_both_resume() {
    let memory = Arc::new(MemoryBackend::new());
    let config = FaultConfig {
        half_batches: true,
        interrupt_rate: 0.2,
        ..FaultConfig::none(7)
    };
    let faulty = Arc::new(FaultInjection::new(memory.clone(), config));
    let mut array = filled(300, faulty.clone());
    let mut calls = 0;
    while array.counts().resident > 0 {
        calls += 1;
        match array.backup(BackupFlags::NONE) {
            Ok(_) => {}
            Err(stopped) => assert_eq!(stopped.error.kind(), ErrorKind::NoSpace),
        }
        assert_eq!(memory.stats().stored_pages as usize, array.counts().backed);
    }
    assert!(calls > 1, "half batches must stop the backup part-way");
    let mut interruptions = 0;
    while array.counts().backed > 0 {
        match array.restore(None) {
            Ok(_) => {}
            Err(stopped) => {
                assert_eq!(stopped.error.kind(), ErrorKind::Interrupted);
                interruptions += 1;
            }
        }
        assert_eq!(
            memory.stats().stored_pages as usize,
            array.counts().backed,
            "a handle leaked or was dropped early"
        );
    }
    println!(
        "backup calls: {calls}, restore interruptions: {interruptions}, faults: {:?}",
        faulty.counts()
    );
    assert!(interruptions > 0);
    verify(&array);
}

#[test]
fn purge_frees_pages_and_drops_backups() {
    let backend: Arc<dyn BackupBackend> = Arc::new(MemoryBackend::with_limit(40 * PAGE_SIZE as u64));
    let mut array = filled(64, backend.clone());
    array.backup(BackupFlags::NONE).unwrap_err();
    assert_eq!(array.purge().unwrap(), 64);
    assert_eq!(
        array.counts(),
        Counts {
            resident: 0,
            backed: 0,
            empty: 64
        }
    );
    assert_eq!(backend.stats().stored_pages, 0);
    assert_eq!(array.restore(None).unwrap(), 0);
}

#[test]
fn dropping_the_array_drops_its_handles() {
    let backend: Arc<dyn BackupBackend> = Arc::new(MemoryBackend::new());
    let mut array = filled(80, backend.clone());
    array.backup(BackupFlags::NONE).unwrap();
    array.restore(None).unwrap();
    array.backup(BackupFlags::NONE).unwrap();
    assert_eq!(backend.stats().stored_pages, 80);
    drop(array);
    assert_eq!(backend.stats().stored_pages, 0);
}

#[test]
fn set_replaces_a_page_and_drops_its_backup() {
    let backend: Arc<dyn BackupBackend> = Arc::new(MemoryBackend::new());
    let mut array = PageArray::new(4, backend.clone());
    assert_eq!(array.slot(0), Some(Slot::Empty));
    assert_eq!(array.slot(4), None);
    array.set(1, PageSpec::mixed(SEED, 1).page()).unwrap();
    assert_eq!(array.backup(BackupFlags::NONE).unwrap(), 1);
    assert_eq!(array.slot(1), Some(Slot::Backed));
    array.set(1, Page::new_boxed()).unwrap();
    assert_eq!(backend.stats().stored_pages, 0);
    assert_eq!(array.get(1).unwrap().0, [0; PAGE_SIZE]);
    let err = array.set(9, Page::new_boxed()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "memory backend: PageArray::set: invalid input: position 9 is past the end of a 4-page array"
    );
}
