//! Under `RLIMIT_FSIZE`, backups that are dropped again never run out of
//! space: the file does not grow past what is held. (A binary of its own:
//! the limit applies to the whole process.)

use pagebackup_core::{BackupBackend, BackupFlags, Page};
use pagebackup_file::{FileBackend, FileConfig};
use pagebackup_testkit::{PageClass, PageSpec};
use rustix::process::{Resource, Rlimit};

#[test]
fn a_16_mib_file_size_limit_is_never_reached_with_nothing_held() {
    const LIMIT: u64 = 16 << 20;
    rustix::process::setrlimit(
        Resource::Fsize,
        Rlimit {
            current: Some(LIMIT),
            maximum: None,
        },
    )
    .unwrap();
    let b = FileBackend::new(FileConfig::new()).unwrap();
    let pages: Vec<Box<Page>> = (0..1024)
        .map(|i| PageSpec::new(4, i, PageClass::Random).page())
        .collect();
    let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
    let mut handles = Vec::new();
    // 100 rounds of 4 MiB: 400 MiB written through a 16 MiB limit.
    for round in 0..100u64 {
        handles.clear();
        b.backup_pages(&refs, round * 1024, BackupFlags::NONE, &mut handles)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for (k, p) in refs.iter().enumerate().take(64) {
            handles.push(
                b.backup_page(p, round * 1024 + 5000 + k as u64, BackupFlags::NONE)
                    .unwrap(),
            );
        }
        b.flush().unwrap();
        b.drop_handles(&handles).unwrap();
    }
    assert_eq!(b.stats().stored_pages, 0);
}
