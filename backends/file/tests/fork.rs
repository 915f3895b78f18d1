//! fork(): a child that uses an inherited backend gets a clear error and
//! changes nothing of the parent's; a child that drops it removes nothing.

use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, Page};
use pagebackup_file::{FileBackend, FileConfig};
use pagebackup_testkit::{PageClass, PageSpec, in_forked_child};

#[test]
fn a_child_gets_an_error_and_the_parent_keeps_every_page() {
    let dir = std::env::temp_dir().join(format!("pagebackup-fork-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("pages");
    let b = FileBackend::new(FileConfig::new().with_path(&path)).unwrap();
    let specs: Vec<PageSpec> = (0..64).map(|i| PageSpec::new(9, i, PageClass::Heap)).collect();
    let pages: Vec<Box<Page>> = specs.iter().map(PageSpec::page).collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles: Vec<Handle> = Vec::new();
    b.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
    let cell = std::cell::RefCell::new(Some(b));
    // SAFETY: no other thread uses the backend, so its locks are free in the child; the child prints nothing and allocates only through glibc, whose malloc is fork-safe.
    let ok = unsafe {
        in_forked_child(|| {
            let b = cell.borrow_mut().take().unwrap();
            let other = PageSpec::new(10, 0, PageClass::Random).page();
            let backup = b.backup_page(&other, 0, BackupFlags::NONE).unwrap_err();
            let mut dst = Page::new_boxed();
            let copy = b.copy_page(&mut dst, handles[0], None).unwrap_err();
            let dropped = b.drop_handles(&handles).unwrap_err();
            let message = backup.to_string();
            let fine = [backup.kind(), copy.kind(), dropped.kind()] == [ErrorKind::Unsupported; 3]
                && dropped.completed == 0
                && message.contains("fork() child");
            // Dropping the inherited backend must not remove the parent's file.
            drop(b);
            fine && path.exists()
        })
    };
    assert!(
        ok,
        "the child saw something other than a clear error, or removed the file"
    );
    assert!(path.exists(), "the child removed the parent's file");
    // The child's memory was its own: the parent still holds the backend.
    let b = cell.into_inner().unwrap();
    let mut page = Page::new_boxed();
    for (h, spec) in handles.iter().zip(&specs) {
        b.copy_page(&mut page, *h, None).unwrap();
        spec.verify(&page).unwrap();
    }
    b.drop_handles(&handles).unwrap();
    drop(b);
    assert!(!path.exists(), "the parent removes its file");
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn a_file_put_at_the_path_afterwards_is_not_removed() {
    let dir = std::env::temp_dir().join(format!("pagebackup-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("pages");
    let b = FileBackend::new(FileConfig::new().with_path(&path)).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"someone else's").unwrap();
    drop(b);
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
    std::fs::remove_dir_all(&dir).unwrap();
}
