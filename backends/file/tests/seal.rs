//! `seal=on` on the file backend: the file holds no plaintext, and a page
//! changed, swapped with another slot's, replayed (an older value of its
//! slot) or copied from another backend under the same key restores as
//! `Corrupt`, naming its handle; the key's sources and their errors.
#![cfg(feature = "seal")]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pagebackup_core::raw::seal::SealKeySource;
use pagebackup_core::{BackupBackend, BackupError, BackupFlags, ErrorKind, Handle, PAGE_SIZE, Page};
use pagebackup_file::{FileBackend, FileConfig, IoMode};

const PAGE: u64 = PAGE_SIZE as u64;
const KEY_HEX: &str = "3c1f0e5a9b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c3e5d7f9b2a4c6e8d0f13";

/// A path under the temporary directory, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Temp {
        let path = std::env::temp_dir().join(format!("pagebackup-seal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Temp(path)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A sealed backend in the named file `path`, checksums off (so that the
/// seal alone catches what changed), one shard, pages written by `pwritev`.
fn sealed_at(path: &Path, key: SealKeySource) -> FileBackend {
    FileBackend::new(
        FileConfig::new()
            .with_path(path)
            .with_io(IoMode::Sync)
            .with_checksum(false)
            .with_seal(Some(key)),
    )
    .unwrap()
}

fn page(fill: u8) -> Page {
    let mut page = Page::zeroed();
    for (i, b) in page.as_bytes_mut().iter_mut().enumerate() {
        *b = fill ^ (i as u8);
    }
    page
}

/// Backs up `pages` as consecutive `idx` (so consecutive slots from 0 in a
/// fresh backend) and writes them to the file.
fn backup(b: &FileBackend, pages: &[Page]) -> Vec<Handle> {
    let refs: Vec<&Page> = pages.iter().collect();
    let mut handles = Vec::new();
    b.backup_pages(&refs, 0, BackupFlags::NONE, &mut handles).unwrap();
    b.flush().unwrap();
    handles
}

fn slot_bytes(path: &Path, slot: u64) -> Vec<u8> {
    let mut bytes = vec![0; PAGE_SIZE];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut bytes, slot * PAGE)
        .unwrap();
    bytes
}

fn put_slot(path: &Path, slot: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, slot * PAGE).unwrap();
    file.sync_data().unwrap();
}

/// The page `h` restores, or the error.
fn restore(b: &FileBackend, h: Handle) -> Result<Page, BackupError> {
    let mut out = page(0xee);
    b.copy_page(&mut out, h, None).map(|()| out)
}

fn assert_corrupt(b: &FileBackend, h: Handle) {
    let mut out = page(0xee);
    match b.copy_page(&mut out, h, None) {
        Err(BackupError::Corrupt { handle, detail, .. }) => {
            assert_eq!(handle, h);
            assert!(detail.contains("fails authentication"), "{detail}");
        }
        other => panic!("{h:?}: expected Corrupt, got {other:?}"),
    }
    assert_ne!(out, page(0xee), "the destination is not left as it was");
    assert_eq!(out, Page::zeroed(), "a failed page leaves zeroes, never bytes");
}

#[test]
fn the_file_holds_no_plaintext() {
    let path = Temp::new("plain");
    let b = sealed_at(&path.0, SealKeySource::Random);
    let secret = page(0x42);
    let h = backup(&b, std::slice::from_ref(&secret));
    assert!(b.is_sealed());
    let stored = slot_bytes(&path.0, 0);
    assert_ne!(stored, secret.as_bytes());
    assert!(!stored.windows(16).any(|w| w == &secret.as_bytes()[..16]));
    assert_eq!(restore(&b, h[0]).unwrap(), secret);
}

#[test]
fn a_changed_page_is_corrupt_and_others_restore() {
    let path = Temp::new("tamper");
    let b = sealed_at(&path.0, SealKeySource::Random);
    let pages = [page(1), page(2), page(3)];
    let h = backup(&b, &pages);
    let mut bytes = slot_bytes(&path.0, 1);
    bytes[4000] ^= 0x01;
    put_slot(&path.0, 1, &bytes);
    assert_corrupt(&b, h[1]);
    assert_eq!(restore(&b, h[0]).unwrap(), pages[0]);
    assert_eq!(restore(&b, h[2]).unwrap(), pages[2]);
    // A batch stops at the changed page, naming it.
    let mut outs = [page(0), page(0), page(0)];
    let [a, c, d] = &mut outs;
    let error = b.copy_pages(&h, &mut [a, c, d], None).unwrap_err();
    assert_eq!(error.completed, 1);
    assert_eq!(error.error.kind(), ErrorKind::Corrupt);
    assert_eq!(outs[0], pages[0]);
}

#[test]
fn swapped_pages_are_corrupt() {
    let path = Temp::new("swap");
    let b = sealed_at(&path.0, SealKeySource::Random);
    let h = backup(&b, &[page(1), page(2)]);
    let (first, second) = (slot_bytes(&path.0, 0), slot_bytes(&path.0, 1));
    put_slot(&path.0, 0, &second);
    put_slot(&path.0, 1, &first);
    assert_corrupt(&b, h[0]);
    assert_corrupt(&b, h[1]);
}

#[test]
fn a_replayed_page_is_corrupt() {
    let path = Temp::new("replay");
    let b = sealed_at(&path.0, SealKeySource::Random);
    let old = backup(&b, &[page(1)]);
    let old_bytes = slot_bytes(&path.0, 0);
    b.drop_handle(old[0]).unwrap();
    // Lowest slot first: the new page takes slot 0 again.
    let new = backup(&b, &[page(2)]);
    assert_eq!(restore(&b, new[0]).unwrap(), page(2));
    put_slot(&path.0, 0, &old_bytes);
    assert_corrupt(&b, new[0]);
}

#[test]
fn another_backends_page_under_the_same_key_is_corrupt() {
    let key = Temp::new("key");
    std::fs::write(&key.0, KEY_HEX).unwrap();
    let (pa, pb) = (Temp::new("instance-a"), Temp::new("instance-b"));
    let a = sealed_at(&pa.0, SealKeySource::File(key.0.clone()));
    let b = sealed_at(&pb.0, SealKeySource::File(key.0.clone()));
    let ha = backup(&a, &[page(1)]);
    let hb = backup(&b, &[page(2)]);
    put_slot(&pb.0, 0, &slot_bytes(&pa.0, 0));
    assert_corrupt(&b, hb[0]);
    assert_eq!(restore(&a, ha[0]).unwrap(), page(1));
}

#[test]
fn spec_keys_name_the_key_source() {
    let key = Temp::new("spec-key");
    std::fs::write(&key.0, KEY_HEX).unwrap();
    let file_spec = format!("file:{}", key.0.display());
    let config = FileConfig::from_params(&[("seal", "on"), ("seal_key", &file_spec)]).unwrap();
    assert_eq!(config.seal, Some(SealKeySource::File(key.0.clone())));
    let b = FileBackend::new(config.with_io(IoMode::Sync)).unwrap();
    let h = backup(&b, &[page(9)]);
    assert_eq!(restore(&b, h[0]).unwrap(), page(9));

    let config = FileConfig::from_params(&[("seal", "on")]).unwrap();
    assert_eq!(config.seal, Some(SealKeySource::Random));
    assert_eq!(FileConfig::from_params(&[]).unwrap().seal, None);
    let config = FileConfig::from_params(&[("seal", "on"), ("seal_key", "env:PAGEBACKUP_TEST_SEAL_KEY")]).unwrap();
    assert_eq!(config.seal, Some(SealKeySource::Env("PAGEBACKUP_TEST_SEAL_KEY".into())));

    for bad in [
        vec![("seal_key", file_spec.as_str())],
        vec![("seal", "on"), ("seal_key", KEY_HEX)],
        vec![("seal", "on"), ("seal_key", "file:")],
        vec![("seal", "yes")],
    ] {
        let error = FileConfig::from_params(&bad).unwrap_err().to_string();
        assert!(error.contains("seal"), "{bad:?}: {error}");
    }
}

#[test]
fn key_errors_say_what_failed_and_never_show_a_key() {
    let open = |source: SealKeySource| FileBackend::new(FileConfig::new().with_seal(Some(source))).unwrap_err();
    let missing = open(SealKeySource::File("/nonexistent/pagebackup-key".into()));
    assert_eq!(missing.kind(), ErrorKind::Config);
    assert!(
        missing
            .to_string()
            .contains("cannot read the key file /nonexistent/pagebackup-key")
    );

    let short = Temp::new("short-key");
    std::fs::write(&short.0, &KEY_HEX[..40]).unwrap();
    let error = open(SealKeySource::File(short.0.clone())).to_string();
    assert!(
        error.contains("does not hold a key (32 bytes, or 64 hex digits)"),
        "{error}"
    );
    assert!(!error.contains(&KEY_HEX[..40]), "{error}");

    let unset = open(SealKeySource::Env("PAGEBACKUP_TEST_SEAL_KEY_UNSET".into()));
    assert!(
        unset.to_string().contains("PAGEBACKUP_TEST_SEAL_KEY_UNSET is not set"),
        "{unset}"
    );
}

#[cfg(feature = "async")]
#[test]
fn the_native_async_backend_refuses_sealing() {
    let Err(error) = pagebackup_file::AsyncFileBackend::new(FileConfig::new().with_seal(Some(SealKeySource::Random)))
    else {
        panic!("seal=on is refused");
    };
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert!(error.to_string().contains("seal=on"), "{error}");
}

#[test]
fn stats_count_the_seals_in_metadata_and_no_crc() {
    // The sealed backend keeps no CRC (its checksum=on is the seal's tag):
    // against a plain one without checksums, the difference is the seals.
    let plain = FileBackend::new(
        FileConfig::new()
            .with_shards(1)
            .with_io(IoMode::Sync)
            .with_checksum(false),
    )
    .unwrap();
    let sealed = FileBackend::new(
        FileConfig::new()
            .with_shards(1)
            .with_io(IoMode::Sync)
            .with_seal(Some(SealKeySource::Random)),
    )
    .unwrap();
    let pages: Vec<Page> = (0..64).map(page).collect();
    backup(&plain, &pages);
    backup(&sealed, &pages);
    let extra = sealed.stats().metadata_bytes - plain.stats().metadata_bytes;
    // A counter and a tag per slot: 24 bytes, in a vector that may hold spare room.
    assert!((64 * 24..=128 * 24).contains(&extra), "{extra}");
}

/// Restores decrypt from the file's mapping: one made at the first
/// restore (1 MiB), which later backups outgrow, so that a restore of a
/// page past it maps the file anew; every page, old and new, written in
/// batches or staged one at a time, restores exactly, and a page changed
/// in the file after it was mapped is still `Corrupt`.
#[test]
fn restores_through_the_mapping_after_the_file_grew_past_it() {
    let path = Temp::new("grown");
    let b = sealed_at(&path.0, SealKeySource::Random);
    let first: Vec<Page> = (0..8).map(|i| page(i as u8)).collect();
    let mut handles = backup(&b, &first);
    for (h, p) in handles.iter().zip(&first) {
        assert_eq!(&restore(&b, *h).unwrap(), p);
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.contains(path.0.to_str().unwrap()),
        "sealed restores read through a mapping"
    );
    // 600 more pages (2.4 MiB of file) in batches, and 100 one at a time
    // (staged, then written by the batches of 64 behind them).
    let mut pages = first;
    for batch in 0..10u8 {
        let more: Vec<Page> = (0..60).map(|i| page(batch.wrapping_mul(61).wrapping_add(i))).collect();
        let refs: Vec<&Page> = more.iter().collect();
        b.backup_pages(&refs, 1000 * u64::from(batch + 1), BackupFlags::NONE, &mut handles)
            .unwrap();
        pages.extend(more);
    }
    for i in 0..100u8 {
        let p = page(i ^ 0xa5);
        handles.push(b.backup_page(&p, 20_000 + u64::from(i), BackupFlags::NONE).unwrap());
        pages.push(p);
    }
    assert!(
        std::fs::metadata(&path.0).unwrap().len() > 2 << 20,
        "the file grew past the first mapping"
    );
    for (h, p) in handles.iter().zip(&pages).rev() {
        assert_eq!(&restore(&b, *h).unwrap(), p);
    }
    b.flush().unwrap();
    for (h, p) in handles.iter().zip(&pages) {
        assert_eq!(&restore(&b, *h).unwrap(), p);
    }
    // A page changed in the file under the mapping.
    let mut bytes = slot_bytes(&path.0, 500);
    bytes[17] ^= 0x40;
    put_slot(&path.0, 500, &bytes);
    let changed = (0..handles.len())
        .find(|&i| restore(&b, handles[i]).is_err())
        .expect("the changed slot fails");
    assert_corrupt(&b, handles[changed]);
}

/// Backups that grow the file (so that the mapping is remapped) run while
/// other threads restore, and drop and restore again: every restore gives
/// its own page's bytes.
#[test]
fn concurrent_backups_growing_the_file_while_restores_read() {
    use std::sync::Mutex;
    let b = FileBackend::new(
        FileConfig::new()
            .with_shards(1)
            .with_io(IoMode::Sync)
            .with_seal(Some(SealKeySource::Random)),
    )
    .unwrap();
    let live: Mutex<Vec<(Handle, u8)>> = Mutex::new(Vec::new());
    let verified = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for writer in 0..2u64 {
            let (b, live) = (&b, &live);
            s.spawn(move || {
                for round in 0..40u64 {
                    let fills: Vec<u8> = (0..16).map(|i| (writer * 97 + round * 16 + i) as u8).collect();
                    let pages: Vec<Page> = fills.iter().map(|&f| page(f)).collect();
                    let refs: Vec<&Page> = pages.iter().collect();
                    let mut handles = Vec::new();
                    if round % 2 == 0 {
                        b.backup_pages(&refs, (writer << 20) + round * 16, BackupFlags::NONE, &mut handles)
                            .unwrap();
                    } else {
                        for (i, p) in pages.iter().enumerate() {
                            handles.push(
                                b.backup_page(p, (writer << 20) + round * 16 + i as u64, BackupFlags::NONE)
                                    .unwrap(),
                            );
                        }
                    }
                    live.lock().unwrap().extend(handles.into_iter().zip(fills));
                }
            });
        }
        for reader in 0..2usize {
            let (b, live, verified) = (&b, &live, &verified);
            s.spawn(move || {
                for i in 0..3000usize {
                    let picked = {
                        let mut live = live.lock().unwrap();
                        if live.is_empty() {
                            None
                        } else {
                            let at = (i * 7919 + reader) % live.len();
                            // A quarter of the picks are dropped after the restore.
                            Some((live[at], (i % 4 == 0).then(|| live.swap_remove(at))))
                        }
                    };
                    let Some(((h, fill), dropped)) = picked else {
                        std::thread::yield_now();
                        continue;
                    };
                    match restore(b, h) {
                        Ok(out) => {
                            assert_eq!(out, page(fill), "handle {h:?}");
                            verified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        // Dropped meanwhile by the other reader: never bytes.
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::InvalidHandle, "{e}");
                            assert!(!live.lock().unwrap().iter().any(|&(l, _)| l == h));
                        }
                    }
                    if dropped.is_some() {
                        b.drop_handle(h).unwrap();
                    }
                }
            });
        }
    });
    assert!(verified.load(std::sync::atomic::Ordering::Relaxed) > 1000);
    for (h, fill) in live.into_inner().unwrap() {
        assert_eq!(restore(&b, h).unwrap(), page(fill));
    }
}
