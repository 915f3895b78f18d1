//! `BackupStats` of every backend of this build: the metadata it keeps is
//! counted, and the one-line summary shows what is stored.

mod support;

use pagebackup::{BackupBackend, BackupFlags, Page};

/// Pages that compress (text with a counter), so that every backend stores
/// objects rather than same-filled words.
fn page(i: u64) -> Box<Page> {
    let mut page = Page::new_boxed();
    for (n, chunk) in page.0.chunks_mut(64).enumerate() {
        let line = format!("{:<63}\n", format!("page {i:08} line {n:04} of a page that compresses"));
        chunk.copy_from_slice(line.as_bytes());
    }
    page
}

#[test]
fn every_backend_counts_its_metadata_when_pages_are_stored() {
    for spec in support::default_specs() {
        let backend = pagebackup::open(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        let handles: Vec<_> = (0..64)
            .map(|i| backend.backup_page(&page(i), i, BackupFlags::NONE).unwrap())
            .collect();
        backend.flush().unwrap();
        let stats = backend.stats();
        assert_eq!(stats.stored_pages, 64, "{spec}: {stats:?}");
        assert!(stats.metadata_bytes > 0, "{spec}: metadata not counted: {stats:?}");
        assert!(
            stats.metadata_bytes <= stats.memory_used,
            "{spec}: metadata outside the memory used: {stats:?}"
        );
        let line = stats.to_string();
        assert!(line.starts_with("64 pages (256.0 KiB) stored in "), "{spec}: {line}");
        assert!(!line.contains('\n'), "{spec}: {line}");
        backend.drop_handles(&handles).unwrap();
    }
}
