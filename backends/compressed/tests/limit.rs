//! The limit is hard: whatever the mix of backups, drops and compactions,
//! `memory_used` never passes it, and every page backed up comes back.

use pagebackup_compressed::{Algorithm, CompressedBackend, CompressedConfig};
use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, Page};
use pagebackup_testkit::{PageClass, PageSpec};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Backup(PageClass, u64),
    Drop(usize),
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::sample::select(PageClass::ALL.to_vec()), any::<u64>()).prop_map(|(c, i)| Op::Backup(c, i)),
        3 => any::<usize>().prop_map(Op::Drop),
        1 => Just(Op::Compact),
    ]
}

fn algorithm() -> impl Strategy<Value = (Algorithm, bool)> {
    (
        prop::sample::select(vec![
            Algorithm::Lz4,
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { level: 3 },
        ]),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn memory_used_never_passes_the_limit(
        extra in 0u64..600_000,
        (algorithm, checksum) in algorithm(),
        ops in prop::collection::vec(op(), 1..400),
    ) {
        let limit = CompressedBackend::min_limit() + extra;
        let b = CompressedBackend::new(
            CompressedConfig::new(algorithm).with_limit(limit).with_checksum(checksum),
        ).unwrap();
        prop_assert!(b.stats().memory_used <= limit);
        let mut live: Vec<(Handle, PageSpec)> = Vec::new();
        let mut dst = Page::new_boxed();
        for op in ops {
            match op {
                Op::Backup(class, index) => {
                    let spec = PageSpec::new(0x1117, index, class);
                    match b.backup_page(&spec.page(), index, BackupFlags::NONE) {
                        Ok(h) => live.push((h, spec)),
                        Err(e) => prop_assert_eq!(e.kind(), ErrorKind::NoSpace, "{}", e),
                    }
                }
                Op::Drop(k) if !live.is_empty() => {
                    let (h, _) = live.swap_remove(k % live.len());
                    b.drop_handle(h).unwrap();
                }
                Op::Drop(_) => {}
                Op::Compact => {
                    b.compact();
                }
            }
            let s = b.stats();
            prop_assert!(s.memory_used <= limit, "{} > {limit}: {:?}", s.memory_used, s);
            prop_assert_eq!(s.stored_pages, live.len() as u64);
            // Compaction moves objects around: one live page checked each time.
            if let Some(&(h, spec)) = live.get(s.compacted_pages as usize % live.len().max(1)) {
                b.copy_page(&mut dst, h, None).unwrap();
                prop_assert!(spec.verify(&dst).is_ok());
            }
        }
        for &(h, spec) in &live {
            b.copy_page(&mut dst, h, None).unwrap();
            prop_assert!(spec.verify(&dst).is_ok());
        }
        for &(h, _) in &live {
            b.drop_handle(h).unwrap();
        }
        prop_assert_eq!(b.stats().stored_bytes, 0);
    }
}

#[test]
fn a_full_backend_takes_pages_again_after_drops() {
    let limit = CompressedBackend::min_limit() + (256 << 10);
    let b = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4).with_limit(limit)).unwrap();
    let mut live = Vec::new();
    let mut index = 0;
    // Fill with text, drop every other page, fill again: the dead space is
    // reused, through compaction, without passing the limit.
    for round in 0..4 {
        loop {
            let spec = PageSpec::new(0xf111, index, PageClass::Text);
            index += 1;
            match b.backup_page(&spec.page(), 0, BackupFlags::NONE) {
                Ok(h) => live.push((h, spec)),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
                    break;
                }
            }
            assert!(b.stats().memory_used <= limit);
        }
        let held = live.len();
        println!("round {round}: {held} pages held, {:?}", b.stats());
        assert!(held > 100, "{held} pages in a limit of {limit}");
        let mut k = 0;
        live.retain(|&(h, _)| {
            k += 1;
            k % 2 == 0 || b.drop_handle(h).is_err()
        });
    }
    let mut dst = Page::new_boxed();
    for &(h, spec) in &live {
        b.copy_page(&mut dst, h, None).unwrap();
        spec.verify(&dst).unwrap();
    }
}

#[test]
fn a_limit_below_the_fixed_cost_is_refused_with_the_minimum() {
    let min = CompressedBackend::min_limit();
    let err = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4).with_limit(min - 1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let expected = format!("limit {} is below the minimum of {min} bytes", min - 1);
    assert!(err.to_string().contains(&expected), "{err}");
    let b = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4).with_limit(min)).unwrap();
    let h = b
        .backup_page(&PageSpec::new(3, 0, PageClass::Text).page(), 0, BackupFlags::NONE)
        .unwrap();
    assert!(b.stats().memory_used <= min);
    b.drop_handle(h).unwrap();
}
