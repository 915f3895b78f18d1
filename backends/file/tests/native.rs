//! The async conformance suite on the native io_uring file backend,
//! buffered and with `O_DIRECT`.
#![cfg(feature = "async")]

use std::sync::Arc;

use pagebackup_async::AsyncBackupBackend;
use pagebackup_file::{AsyncFileBackend, FileConfig};
use pagebackup_testkit::{AsyncCheck, AsyncSubject, async_conformance};
use rstest::rstest;
use rstest_reuse::apply;

fn subject(name: &str, base: FileConfig) -> AsyncSubject {
    let limited = base.clone();
    AsyncSubject::new(name, move || -> Arc<dyn AsyncBackupBackend> {
        Arc::new(AsyncFileBackend::new(base.clone()).unwrap())
    })
    .with_limit(
        move |bytes| Arc::new(AsyncFileBackend::new(limited.clone().with_max_size(bytes)).unwrap()),
        true,
    )
}

#[apply(async_conformance)]
fn native_buffered(#[case] check: AsyncCheck) {
    check.run(&subject("native file", FileConfig::new()));
}

#[apply(async_conformance)]
fn native_direct(#[case] check: AsyncCheck) {
    if let Err(e) = AsyncFileBackend::new(FileConfig::new().with_direct(true)) {
        println!("SKIP: native file backend with direct=on: {e}");
        return;
    }
    check.run(&subject("native file direct=on", FileConfig::new().with_direct(true)));
}

#[test]
fn open_async_gives_the_native_backend_and_its_handles_work_through_the_sync_view() {
    use pagebackup_core::{BackupBackend, BackupFlags, Page};
    let b = AsyncFileBackend::new(FileConfig::new()).unwrap();
    assert_eq!(b.stats().io_path, Some("io_uring"));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut page = Page::new_boxed();
    page.0.fill(0x5a);
    let (handle, _page) = runtime.block_on(b.backup_page(page, 0, BackupFlags::NONE));
    let handle = handle.unwrap();
    let mut back = Page::new_boxed();
    b.blocking().copy_page(&mut back, handle, None).unwrap();
    assert_eq!(back.0, [0x5a; 4096]);
    b.blocking().drop_handle(handle).unwrap();
    assert_eq!(b.stats().stored_pages, 0);
}
