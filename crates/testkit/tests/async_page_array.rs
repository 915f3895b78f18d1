//! `AsyncPageArray` on the reference backend through the adapter: the sync
//! array's partial states and resumption, with async calls.
#![cfg(feature = "async")]

use std::sync::Arc;

use pagebackup_async::{AsyncBackupBackend, AsyncPageArray, Execution, SyncAdapter};
use pagebackup_core::layers::{FaultConfig, FaultInjection};
use pagebackup_core::{BackupBackend, BackupFlags, Counts, ErrorKind, Interrupt, MemoryBackend, PAGE_SIZE, Page, Slot};
use pagebackup_testkit::{PageSpec, within_polls};

const SEED: u64 = 0xa57a;

fn adapted(backend: Arc<dyn BackupBackend>) -> Arc<dyn AsyncBackupBackend> {
    Arc::new(SyncAdapter::with_execution(backend, Execution::Blocking))
}

async fn filled(n: usize, backend: Arc<dyn AsyncBackupBackend>) -> AsyncPageArray {
    let mut array = AsyncPageArray::new(n, backend);
    for i in 0..n {
        array.set(i, PageSpec::mixed(SEED, i as u64).page()).await.unwrap();
    }
    array
}

fn verify(array: &AsyncPageArray) {
    for i in 0..array.len() {
        let page = array
            .get(i)
            .unwrap_or_else(|| panic!("page {i} is not resident: {:?}", array.slot(i)));
        PageSpec::mixed(SEED, i as u64).verify(page).unwrap();
    }
}

fn counts(resident: usize, backed: usize, empty: usize) -> Counts {
    Counts {
        resident,
        backed,
        empty,
    }
}

#[tokio::test]
async fn backup_and_restore_in_place() {
    let memory = Arc::new(MemoryBackend::new());
    let mut array = filled(200, adapted(memory.clone())).await;
    assert_eq!(array.backup(BackupFlags::NONE).await.unwrap(), 200);
    assert_eq!(array.counts(), counts(0, 200, 0));
    assert!(array.get(0).is_none());
    assert_eq!(memory.stats().stored_pages, 200);
    assert_eq!(
        array.backup(BackupFlags::NONE).await.unwrap(),
        0,
        "nothing left to back up"
    );
    assert_eq!(array.restore(None).await.unwrap(), 200);
    assert_eq!(memory.stats().stored_pages, 0, "restore drops each handle");
    verify(&array);
}

#[tokio::test]
async fn a_full_backend_leaves_a_partly_backed_up_array_that_continues() {
    let memory = Arc::new(MemoryBackend::with_limit(70 * PAGE_SIZE as u64));
    let mut array = filled(100, adapted(memory)).await;
    let stopped = array.backup(BackupFlags::NONE).await.unwrap_err();
    assert_eq!((stopped.completed, stopped.error.kind()), (70, ErrorKind::NoSpace));
    assert_eq!(array.counts(), counts(30, 70, 0));
    array.get_mut(99).unwrap().0[0] ^= 0xff;
    assert_eq!(array.restore(None).await.unwrap(), 70);
    assert_eq!(array.backup(BackupFlags::NONE).await.unwrap_err().completed, 70);
    array.restore(None).await.unwrap();
    array.get_mut(99).unwrap().0[0] ^= 0xff;
    verify(&array);
}

#[tokio::test]
async fn an_interrupted_restore_resumes_where_it_stopped() {
    let memory = Arc::new(MemoryBackend::new());
    let mut array = filled(150, adapted(memory.clone())).await;
    array.backup(BackupFlags::WRITEBACK).await.unwrap();
    let intr = Interrupt::new();
    intr.interrupt();
    let stopped = array.restore(Some(&intr)).await.unwrap_err();
    assert_eq!((stopped.completed, stopped.error.kind()), (0, ErrorKind::Interrupted));
    assert_eq!(array.counts().backed, 150);
    intr.clear();
    assert_eq!(array.restore(Some(&intr)).await.unwrap(), 150);
    verify(&array);
    assert_eq!(memory.stats().stored_pages, 0);
}

#[tokio::test]
async fn injected_faults_stop_backup_and_restore_part_way_and_both_resume() {
    let memory = Arc::new(MemoryBackend::new());
    let config = FaultConfig {
        half_batches: true,
        interrupt_rate: 0.2,
        ..FaultConfig::none(7)
    };
    let mut array = filled(300, adapted(Arc::new(FaultInjection::new(memory.clone(), config)))).await;
    let mut calls = 0;
    while array.counts().resident > 0 {
        calls += 1;
        if let Err(stopped) = array.backup(BackupFlags::NONE).await {
            assert_eq!(stopped.error.kind(), ErrorKind::NoSpace);
        }
        assert_eq!(memory.stats().stored_pages as usize, array.counts().backed);
    }
    assert!(calls > 1, "half batches must stop the backup part-way");
    let mut interruptions = 0;
    while array.counts().backed > 0 {
        if let Err(stopped) = array.restore(None).await {
            assert_eq!(stopped.error.kind(), ErrorKind::Interrupted);
            interruptions += 1;
        }
        assert_eq!(
            memory.stats().stored_pages as usize,
            array.counts().backed,
            "a handle leaked or was dropped early"
        );
    }
    assert!(interruptions > 0);
    verify(&array);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_leaves_its_batch_in_flight_and_the_next_call_lands_it() {
    let memory = Arc::new(MemoryBackend::new());
    let mut array = filled(100, adapted(memory.clone())).await;
    let mut in_flight = 0;
    for round in 0..20 {
        // One poll starts a batch on the blocking pool; the future is
        // usually dropped before the batch lands. A dropped restore
        // interrupts its batch, which lands part-way or whole.
        let dropped = if round % 2 == 0 {
            within_polls(array.backup(BackupFlags::NONE), Some(1)).await.is_none()
        } else {
            within_polls(array.restore(None), Some(1)).await.is_none()
        };
        if dropped {
            in_flight += 1;
            assert!(
                array.counts().empty > 0,
                "a dropped call's batch reads as empty until it lands"
            );
        }
        array.settle().await;
        let after = array.counts();
        assert_eq!(after.resident + after.backed, 100, "round {round}: {after:?}");
        assert_eq!(memory.stats().stored_pages as usize, after.backed, "round {round}");
        for i in 0..100 {
            if let Some(page) = array.get(i) {
                PageSpec::mixed(SEED, i as u64).verify(page).unwrap();
            }
        }
    }
    assert!(in_flight > 0, "no call was dropped with its batch in flight");
    array.restore(None).await.unwrap();
    verify(&array);
    assert_eq!(memory.stats().stored_pages, 0);
}

#[tokio::test]
async fn purge_frees_pages_and_drops_backups() {
    let memory = Arc::new(MemoryBackend::with_limit(40 * PAGE_SIZE as u64));
    let mut array = filled(64, adapted(memory.clone())).await;
    array.backup(BackupFlags::NONE).await.unwrap_err();
    assert_eq!(array.purge().await.unwrap(), 64);
    assert_eq!(array.counts(), counts(0, 0, 64));
    assert_eq!(memory.stats().stored_pages, 0);
    assert_eq!(array.restore(None).await.unwrap(), 0);
}

#[test]
fn dropping_the_array_drops_its_handles_outside_and_inside_a_runtime() {
    let memory = Arc::new(MemoryBackend::new());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let array = runtime.block_on(async {
        let mut array = filled(80, adapted(memory.clone())).await;
        array.backup(BackupFlags::NONE).await.unwrap();
        array
    });
    assert_eq!(memory.stats().stored_pages, 80);
    drop(array);
    assert_eq!(memory.stats().stored_pages, 0, "dropped outside a runtime");
    runtime.block_on(async {
        let mut array = filled(80, adapted(memory.clone())).await;
        array.backup(BackupFlags::NONE).await.unwrap();
        drop(array);
        // The handles are dropped by a task of this runtime.
        while memory.stats().stored_pages > 0 {
            tokio::task::yield_now().await;
        }
    });
}

#[tokio::test]
async fn set_replaces_a_page_and_drops_its_backup() {
    let memory = Arc::new(MemoryBackend::new());
    let mut array = AsyncPageArray::new(4, adapted(memory.clone()));
    assert_eq!(array.slot(0), Some(Slot::Empty));
    assert_eq!(array.slot(4), None);
    array.set(1, PageSpec::mixed(SEED, 1).page()).await.unwrap();
    assert_eq!(array.backup(BackupFlags::NONE).await.unwrap(), 1);
    assert_eq!(array.slot(1), Some(Slot::Backed));
    array.set(1, Page::new_boxed()).await.unwrap();
    assert_eq!(memory.stats().stored_pages, 0);
    assert_eq!(array.get(1).unwrap().0, [0; PAGE_SIZE]);
    let err = array.set(9, Page::new_boxed()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("position 9 is past the end of a 4-page array"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_restore_sets_the_interrupt_it_was_given() {
    let memory = Arc::new(MemoryBackend::new());
    let mut array = filled(64, adapted(memory.clone())).await;
    array.backup(BackupFlags::NONE).await.unwrap();
    let intr = Interrupt::new();
    for _ in 0..20 {
        if within_polls(array.restore(Some(&intr)), Some(1)).await.is_none() {
            assert!(intr.is_interrupted(), "a dropped restore counts as an interrupt");
            break;
        }
        // The restore finished within one poll: back up again and retry.
        array.backup(BackupFlags::NONE).await.unwrap();
    }
    assert!(intr.is_interrupted(), "no restore was dropped part-way in 20 tries");
    array.settle().await;
    intr.clear();
    array.restore(Some(&intr)).await.unwrap();
    verify(&array);
    assert_eq!(memory.stats().stored_pages, 0);
}
