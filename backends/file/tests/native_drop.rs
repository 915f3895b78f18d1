//! Dropping the native io_uring backend with cancelled operations in flight:
//! in a child process (the kernel's writes into freed memory are invisible
//! to Miri and to the allocator), rounds of `direct=on` restores and backups
//! whose futures are dropped after one poll, then the backend dropped, then
//! fresh pages allocated and watched. None may change, and no thread of the
//! backend may panic.
#![cfg(feature = "async")]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pagebackup_async::AsyncBackupBackend;
use pagebackup_core::{BackupFlags, Handle, Interrupt, Page};
use pagebackup_file::{AsyncFileBackend, FileConfig};
use pagebackup_testkit::{PageSpec, within_polls};

const CHILD: &str = "PAGEBACKUP_NATIVE_DROP_CHILD";
const ROUNDS: u64 = 100;
const FILL: u8 = 0xe5;

#[test]
fn dropping_the_backend_with_cancelled_operations_leaves_fresh_memory_alone() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    if let Err(e) = AsyncFileBackend::new(FileConfig::new().with_direct(true)) {
        println!("SKIP: native file backend with direct=on: {e}");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dropping_the_backend_with_cancelled_operations_leaves_fresh_memory_alone",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success() && stdout.contains("fresh pages changed: 0 in") && stdout.contains("; panics: 0"),
        "the child failed ({}): {stdout}{stderr}",
        out.status
    );
}

/// Panics in the child, on any thread.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// In the child: counts the pages changed and the panics, on any thread.
fn child() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic in the child: {info}");
        PANICS.fetch_add(1, Ordering::SeqCst);
    }));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut changed = 0;
    for round in 0..ROUNDS {
        let b = AsyncFileBackend::new(FileConfig::new().with_direct(true)).unwrap();
        runtime.block_on(async {
            let specs: Vec<PageSpec> = (0..256).map(|k| PageSpec::mixed(round, k)).collect();
            let backed = b
                .backup_pages(specs.iter().map(PageSpec::page).collect(), 0, BackupFlags::NONE)
                .await;
            backed.result.unwrap();
            let handles: Vec<Handle> = backed.handles;
            for chunk in handles.chunks(64) {
                let dsts = chunk.iter().map(|_| Page::new_boxed()).collect();
                within_polls(b.copy_pages(chunk, dsts, Some(Interrupt::new())), Some(1)).await;
            }
            // Every other round, a backup in flight too: its completion then
            // holds the last reference to the backend, on the reaper thread.
            if round % 2 == 1 {
                let pages = (0..64).map(|k| PageSpec::mixed(round, 1000 + k).page()).collect();
                within_polls(b.backup_pages(pages, 1000, BackupFlags::NONE), Some(1)).await;
            }
        });
        drop(b);
        let fresh: Vec<Box<Page>> = (0..512)
            .map(|_| {
                let mut page = Page::new_boxed();
                page.0.fill(FILL);
                page
            })
            .collect();
        std::thread::sleep(Duration::from_millis(10));
        changed += fresh.iter().filter(|p| p.0.iter().any(|&b| b != FILL)).count();
    }
    // Reapers left to finish on their own have had time to panic, if they would.
    std::thread::sleep(Duration::from_millis(100));
    let panics = PANICS.load(Ordering::SeqCst);
    println!("fresh pages changed: {changed} in {ROUNDS} rounds; panics: {panics}");
}
