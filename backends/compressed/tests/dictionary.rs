//! Dictionaries: identities that never collide, and files that are read
//! safely or refused.

use std::sync::mpsc;
use std::time::Duration;

use pagebackup_compressed::{
    Algorithm, CompressedBackend, CompressedConfig, Dictionary, MAX_DICTIONARY_BYTES, train_dictionary,
};
use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, PAGE_SIZE, Page};
use pagebackup_testkit::{PageClass, PageSpec};

/// `bytes` with the 4 bytes at `at` chosen so that its CRC-32 is `target`.
/// CRC-32 is affine over GF(2): with the length fixed, the CRC changes by a
/// linear function of the patch, so 32 probes and an elimination solve it.
fn patch_crc(mut bytes: Vec<u8>, at: usize, target: u32) -> Vec<u8> {
    let crc_with = |bytes: &mut Vec<u8>, patch: u32| {
        bytes[at..at + 4].copy_from_slice(&patch.to_le_bytes());
        crc32fast::hash(bytes)
    };
    let base = crc_with(&mut bytes, 0);
    // Row i: the CRC change of patch bit i, with bit i itself kept alongside.
    let mut rows: Vec<(u32, u32)> = (0..32)
        .map(|i| (crc_with(&mut bytes, 1 << i) ^ base, 1u32 << i))
        .collect();
    let mut want = target ^ base;
    let mut patch = 0;
    for bit in 0..32 {
        let pivot = (bit..32)
            .find(|&r| rows[r].0 >> bit & 1 == 1)
            .expect("CRC-32 over 4 consecutive bytes is invertible");
        rows.swap(bit, pivot);
        let (pivot_crc, pivot_patch) = rows[bit];
        for (r, row) in rows.iter_mut().enumerate() {
            if r != bit && row.0 >> bit & 1 == 1 {
                row.0 ^= pivot_crc;
                row.1 ^= pivot_patch;
            }
        }
    }
    for (bit, &(_, p)) in rows.iter().enumerate() {
        if want >> bit & 1 == 1 {
            patch ^= p;
            want ^= 1 << bit;
        }
    }
    assert_eq!(want, 0);
    crc_with(&mut bytes, patch);
    bytes
}

fn text(seed: u64, index: u64) -> Box<Page> {
    PageSpec::new(seed, index, PageClass::Text).page()
}

#[test]
fn dictionaries_with_the_same_length_and_crc_never_share_contexts() {
    // Two 8 KiB dictionaries of raw content: the second's first 4 KiB
    // replaced, and 4 bytes patched so that the CRC-32 matches.
    let a: Vec<u8> = [text(1, 0).as_bytes().as_slice(), text(1, 1).as_bytes()].concat();
    let mut b = a.clone();
    b[..PAGE_SIZE].copy_from_slice(text(2, 0).as_bytes());
    let b = patch_crc(b, 100, crc32fast::hash(&a));
    assert_eq!((a.len(), crc32fast::hash(&a)), (b.len(), crc32fast::hash(&b)));
    assert_ne!(a, b);
    let (da, db) = (Dictionary::from_bytes(&a).unwrap(), Dictionary::from_bytes(&b).unwrap());
    assert_ne!(da.id(), db.id());
    assert_ne!(da, db);
    let backend = |d: Dictionary| {
        CompressedBackend::new(CompressedConfig::new(Algorithm::Zstd { level: 3 }).with_dictionary(d)).unwrap()
    };
    let (ba, bb) = (backend(da), backend(db));
    // Pages that are each dictionary's own first 4 KiB: each encodes to a
    // reference into its dictionary, so the wrong one would decode wrongly.
    let pa = text(1, 0);
    let mut pb = Page::new_boxed();
    pb.as_bytes_mut().copy_from_slice(&b[..PAGE_SIZE]);
    let mut dst = Page::new_boxed();
    for round in 0..3 {
        let ha = ba.backup_page(&pa, 0, BackupFlags::NONE).unwrap();
        let hb = bb.backup_page(&pb, 0, BackupFlags::NONE).unwrap();
        assert!(ba.stats().stored_bytes < 200, "round {round}: {:?}", ba.stats());
        for _ in 0..2 {
            ba.copy_page(&mut dst, ha, None).unwrap();
            assert_eq!(dst, pa, "round {round}: a page decoded with the other dictionary");
            bb.copy_page(&mut dst, hb, None).unwrap();
            assert_eq!(dst, pb, "round {round}: a page decoded with the other dictionary");
        }
        ba.drop_handle(ha).unwrap();
        bb.drop_handle(hb).unwrap();
    }
}

fn load_error(path: &std::path::Path) -> String {
    let err = Dictionary::load(path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    err.to_string()
}

#[test]
fn dictionary_files_must_be_regular_bounded_and_accepted_by_zstd() {
    let dir = std::env::temp_dir().join(format!("pagebackup-dicts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A FIFO with no writer: refused at once, not waited on.
    let fifo = dir.join("fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
    let (tx, rx) = mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || tx.send(load_error(&path)).unwrap());
    let err = rx.recv_timeout(Duration::from_secs(10)).expect("loading a FIFO hangs");
    assert!(err.contains("a FIFO; a dictionary must be a regular file"), "{err}");

    let err = load_error("/dev/zero".as_ref());
    assert!(err.contains("cannot read dictionary /dev/zero: a device"), "{err}");
    let err = load_error(&dir);
    assert!(err.contains("a directory"), "{err}");

    let big = dir.join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_DICTIONARY_BYTES as u64 + 1)
        .unwrap();
    let err = load_error(&big);
    assert!(
        err.contains(&format!("more than the {MAX_DICTIONARY_BYTES} bytes accepted")),
        "{err}"
    );

    // The zstd dictionary magic, then garbage: zstd rejects it.
    let garbage = dir.join("garbage");
    let mut bytes = vec![0x37, 0xa4, 0x30, 0xec];
    bytes.extend((0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&garbage, &bytes).unwrap();
    let err = load_error(&garbage);
    assert!(err.contains("zstd refuses the dictionary"), "{err}");

    // A good one loads, and equals the dictionary it was saved from.
    let samples: Vec<Box<Page>> = (0..200).map(|i| PageSpec::new(4, i, PageClass::Heap).page()).collect();
    let refs: Vec<&Page> = samples.iter().map(|p| &**p).collect();
    let trained = train_dictionary(&refs, 16 << 10).unwrap();
    let good = dir.join("good");
    std::fs::write(&good, trained.bytes()).unwrap();
    assert_eq!(Dictionary::load(&good).unwrap(), trained);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_dictionary_that_does_not_help_on_the_samples_is_refused_at_open() {
    let heap: Vec<Box<Page>> = (0..64).map(|i| PageSpec::new(5, i, PageClass::Heap).page()).collect();
    let refs: Vec<&Page> = heap.iter().map(|p| &**p).collect();
    let helps = train_dictionary(&refs, 8 << 10).unwrap();
    let config = |d: Dictionary, samples: &[Box<Page>]| {
        CompressedConfig::new(Algorithm::Zstd { level: 1 })
            .with_dictionary(d)
            .with_dictionary_samples(samples.to_vec())
    };
    let (with, without) = helps.check_on(1, &refs).unwrap();
    assert!(with < without, "{with} >= {without}");
    CompressedBackend::new(config(helps.clone(), &heap)).unwrap();
    // On pages nothing can compress, a dictionary only costs its id in
    // every frame.
    let noise: Vec<Box<Page>> = (0..64).map(|i| PageSpec::new(6, i, PageClass::Random).page()).collect();
    let err = CompressedBackend::new(config(helps, &noise)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("the dictionary does not help: 64 sample pages take"),
        "{err}"
    );
}
