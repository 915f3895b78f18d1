//! What the compressed backend does with pages: same-filled and
//! incompressible paths, compaction, limits, dictionaries, threads.

use pagebackup_compressed::{
    Algorithm, CHUNK_BYTES, CompressedBackend, CompressedConfig, Dictionary, METADATA_BYTES_PER_PAGE, train_dictionary,
};
use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, PAGE_SIZE, Page};
use pagebackup_testkit::{ConcurrentConfig, PageClass, PageSpec, check_concurrent};

const PAGE: u64 = PAGE_SIZE as u64;

fn lz4() -> CompressedBackend {
    CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4)).unwrap()
}

fn backup_all(b: &CompressedBackend, specs: &[PageSpec]) -> Vec<Handle> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| b.backup_page(&s.page(), i as u64, BackupFlags::NONE).unwrap())
        .collect()
}

fn verify_all(b: &CompressedBackend, handles: &[Handle], specs: &[PageSpec]) {
    let mut page = Page::new_boxed();
    for (&h, spec) in handles.iter().zip(specs) {
        b.copy_page(&mut page, h, None).unwrap();
        spec.verify(&page).unwrap();
    }
}

#[test]
fn same_filled_and_incompressible_pages_take_their_paths() {
    let b = lz4();
    let specs: Vec<PageSpec> = [
        PageClass::Zero,
        PageClass::SameFilled,
        PageClass::Random,
        PageClass::Text,
    ]
    .into_iter()
    .flat_map(|class| (0..10).map(move |i| PageSpec::new(5, i, class)))
    .collect();
    let handles = backup_all(&b, &specs);
    let s = b.stats();
    assert_eq!(
        (s.stored_pages, s.same_filled_pages, s.incompressible_pages),
        (40, 20, 10),
        "{s:?}"
    );
    // Raw pages take a page each; text compresses (to about half, with
    // lz4); zero pages take nothing, pages filled with a random word that
    // word.
    let text_bytes = s.stored_bytes - 10 * PAGE - 10 * 8;
    assert!(text_bytes > 0 && text_bytes < 10 * PAGE * 3 / 4, "{s:?}");
    let arena = b.arena_stats();
    assert_eq!((arena.raw_pages, arena.raw_bytes), (10, 10 * (PAGE + 4)), "{arena:?}");
    assert_eq!(arena.live_bytes, s.stored_bytes + 30 * 4, "objects and their headers");
    assert_eq!(
        s.memory_used,
        arena.fixed_bytes + arena.table_bytes + arena.chunks * CHUNK_BYTES,
        "{arena:?}"
    );
    verify_all(&b, &handles, &specs);
    b.drop_handles(&handles).unwrap();
    let s = b.stats();
    assert_eq!(
        (
            s.stored_pages,
            s.stored_bytes,
            s.same_filled_pages,
            s.incompressible_pages
        ),
        (0, 0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn zero_pages_alone_use_only_metadata() {
    let b = lz4();
    let handles = backup_all(&b, &vec![PageSpec::new(1, 0, PageClass::Zero); 1000]);
    let s = b.stats();
    assert_eq!(s.stored_bytes, 0);
    assert!(s.memory_used < 1000 * 2 * METADATA_BYTES_PER_PAGE + (64 << 10), "{s:?}");
    b.drop_handles(&handles).unwrap();
}

/// Memory the live pages need: their objects and their metadata.
fn needed(b: &CompressedBackend) -> u64 {
    let s = b.stats();
    s.stored_bytes + s.stored_pages * METADATA_BYTES_PER_PAGE
}

#[test]
fn compaction_returns_memory_by_itself_and_keeps_every_page() {
    let b = lz4();
    // One page in twenty (a quarter of those kept) is filled with a random
    // word, kept as an 8-byte object that compaction moves like the others.
    let class = |i| {
        if i % 20 == 3 {
            PageClass::SameFilled
        } else {
            PageClass::Heap
        }
    };
    let specs: Vec<PageSpec> = (0..4000).map(|i| PageSpec::new(6, i, class(i))).collect();
    let handles = backup_all(&b, &specs);
    let full = b.stats().memory_used;
    // Drop nine pages of every ten: the chunks are left sparse, and the
    // drops move their objects out as they go.
    let (keep, drop): (Vec<usize>, Vec<usize>) = (0..specs.len()).partition(|i| i % 10 == 3);
    b.drop_handles(&drop.iter().map(|&i| handles[i]).collect::<Vec<_>>())
        .unwrap();
    let after = b.stats();
    println!(
        "memory used {full} -> {} for {} bytes of objects; {} objects moved",
        after.memory_used, after.stored_bytes, after.compacted_pages
    );
    assert!(after.compacted_pages > 0, "{after:?}");
    // Left over: garbage under the threshold (a chunk here), the head's
    // room, and the chunk the last drop was moving out, half moved.
    assert!(
        after.memory_used * 100 <= needed(&b) * 110 + 3 * CHUNK_BYTES * 100,
        "{after:?}"
    );
    let kept_handles: Vec<Handle> = keep.iter().map(|&i| handles[i]).collect();
    let kept_specs: Vec<PageSpec> = keep.iter().map(|&i| specs[i]).collect();
    verify_all(&b, &kept_handles, &kept_specs);
    let done = b.compact();
    let compacted = b.stats();
    assert!(compacted.memory_used <= after.memory_used, "{done:?}");
    assert_eq!(compacted.compacted_pages, after.compacted_pages + done.moved_pages);
    verify_all(&b, &kept_handles, &kept_specs);
    assert_eq!(b.compact().moved_pages, 0, "a compact arena has nothing to move");
    b.drop_handles(&kept_handles).unwrap();
    let empty = b.stats();
    assert_eq!(
        (empty.stored_bytes, empty.memory_used),
        (0, b.arena_stats().fixed_bytes + b.arena_stats().table_bytes)
    );
}

#[test]
fn explicit_compaction_frees_sparse_chunks() {
    let b = lz4();
    // Few drops leave chunks sparse, yet not sparse enough to move by themselves.
    let specs: Vec<PageSpec> = (0..2000).map(|i| PageSpec::new(16, i, PageClass::Heap)).collect();
    let handles = backup_all(&b, &specs);
    let dropped: Vec<Handle> = handles.iter().copied().step_by(3).collect();
    b.drop_handles(&dropped).unwrap();
    let before = b.stats();
    let done = b.compact();
    let after = b.stats();
    println!(
        "compaction: {done:?}; memory used {} -> {}",
        before.memory_used, after.memory_used
    );
    assert!(done.moved_pages > 0 && done.released_bytes > 0, "{done:?}");
    assert_eq!(after.memory_used, before.memory_used - done.released_bytes);
    assert!(
        after.memory_used * 100 <= needed(&b) * 103 + 2 * CHUNK_BYTES * 100,
        "{after:?}"
    );
    let kept: Vec<usize> = (0..specs.len()).filter(|i| i % 3 != 0).collect();
    verify_all(
        &b,
        &kept.iter().map(|&i| handles[i]).collect::<Vec<_>>(),
        &kept.iter().map(|&i| specs[i]).collect::<Vec<_>>(),
    );
}

#[test]
fn the_limit_counts_memory_and_bytes_avail_counts_the_ratio() {
    let limit = 1 << 20;
    let b = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4).with_limit(limit)).unwrap();
    // The class tables are charged from the start (some tens of KiB).
    let empty = b.stats().memory_used;
    assert!(
        empty < 128 << 10 && b.bytes_avail() <= limit - empty,
        "{} {empty}",
        b.bytes_avail()
    );
    let specs: Vec<PageSpec> = (0..100).map(|i| PageSpec::new(7, i, PageClass::Text)).collect();
    let handles = backup_all(&b, &specs);
    let s = b.stats();
    let room = limit - s.memory_used.min(limit);
    assert!(
        b.bytes_avail() > room,
        "text compresses, so more than the raw room fits: {} vs {room}",
        b.bytes_avail()
    );
    // Fill with text until the limit: more pages fit than 1 MiB holds raw (256).
    let mut more = Vec::new();
    let err = loop {
        match b.backup_page(
            &PageSpec::new(8, more.len() as u64, PageClass::Text).page(),
            0,
            BackupFlags::NONE,
        ) {
            Ok(h) => more.push(h),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::NoSpace);
    assert!(
        err.to_string()
            .contains("compressed backend: backup_page: no space left"),
        "{err}"
    );
    assert!(
        handles.len() + more.len() > 3 * (limit / PAGE) as usize / 2,
        "{} pages",
        handles.len() + more.len()
    );
    assert!(b.stats().memory_used <= limit, "{:?}", b.stats());
    verify_all(&b, &handles, &specs);
    b.drop_handles(&handles).unwrap();
    b.drop_handles(&more).unwrap();
}

#[test]
fn a_dictionary_shrinks_similar_pages_and_survives_a_file() {
    let samples: Vec<Box<Page>> = (0..300).map(|i| PageSpec::new(9, i, PageClass::Heap).page()).collect();
    let refs: Vec<&Page> = samples.iter().map(|p| &**p).collect();
    let dict = train_dictionary(&refs, 16 << 10).unwrap();
    let path = std::env::temp_dir().join(format!("pagebackup-dict-{}", std::process::id()));
    std::fs::write(&path, dict.bytes()).unwrap();
    let loaded = Dictionary::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded, dict, "the file holds the same bytes");
    assert_ne!(
        loaded.id(),
        dict.id(),
        "each loaded dictionary has an identity of its own"
    );

    let specs: Vec<PageSpec> = (1000..1200).map(|i| PageSpec::new(9, i, PageClass::Heap)).collect();
    let zstd = |d: Option<Dictionary>| {
        let config = CompressedConfig::new(Algorithm::Zstd { level: 1 });
        CompressedBackend::new(match d {
            Some(d) => config.with_dictionary(d),
            None => config,
        })
        .unwrap()
    };
    let (plain, with_dict) = (zstd(None), zstd(Some(loaded)));
    let (hp, hd) = (backup_all(&plain, &specs), backup_all(&with_dict, &specs));
    let (sp, sd) = (plain.stats().stored_bytes, with_dict.stats().stored_bytes);
    println!("zstd-1 on heap pages: {sp} bytes without a dictionary, {sd} with");
    assert!(sd < sp, "{sd} >= {sp}");
    // Interleaved restores on one thread: each backend decodes with its own dictionary.
    for k in 0..specs.len() {
        verify_all(&plain, &hp[k..k + 1], &specs[k..k + 1]);
        verify_all(&with_dict, &hd[k..k + 1], &specs[k..k + 1]);
    }
}

#[test]
fn bad_configurations_are_refused_with_reasons() {
    let dict = Dictionary::from_bytes(&[1, 2, 3]).unwrap();
    let cases = [
        (
            CompressedConfig::new(Algorithm::Lz4).with_dictionary(dict),
            "dictionaries are for zstd",
        ),
        (
            CompressedConfig::new(Algorithm::Zstd { level: 99 }),
            "zstd level 99 is outside",
        ),
        (
            CompressedConfig::new(Algorithm::Lz4).with_huge_threshold(10),
            "huge threshold 10 is outside 64..=4095",
        ),
        (
            CompressedConfig::new(Algorithm::Lz4).with_huge_threshold(4096),
            "huge threshold 4096",
        ),
    ];
    for (config, expected) in cases {
        let err = CompressedBackend::new(config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert_eq!(Dictionary::from_bytes(&[]).unwrap_err().kind(), ErrorKind::Config);
    let missing = Dictionary::load("/nonexistent/pagebackup.dict")
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("cannot read dictionary /nonexistent/pagebackup.dict"),
        "{missing}"
    );
}

#[test]
fn a_lower_threshold_stores_more_pages_raw() {
    let b = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4).with_huge_threshold(64)).unwrap();
    let specs: Vec<PageSpec> = (0..20).map(|i| PageSpec::new(10, i, PageClass::Text)).collect();
    let handles = backup_all(&b, &specs);
    assert_eq!(b.stats().incompressible_pages, 20);
    verify_all(&b, &handles, &specs);
    b.drop_handles(&handles).unwrap();
}

#[test]
fn four_and_eight_threads_at_once() {
    for algorithm in [Algorithm::Lz4, Algorithm::Zstd { level: 1 }] {
        for threads in [4, 8] {
            let b = CompressedBackend::new(CompressedConfig::new(algorithm).with_checksum(threads == 8)).unwrap();
            let config = ConcurrentConfig {
                seed: 0x7ead,
                threads,
                ops_per_thread: 5_000,
            };
            let report = check_concurrent(&b, &config).unwrap_or_else(|e| panic!("{e}"));
            println!("{algorithm}, {threads} threads: {report}");
            assert_eq!(b.stats().stored_pages, 0);
            assert_eq!(b.stats().stored_bytes, 0);
        }
    }
}

#[test]
fn stored_size_is_what_a_page_costs_in_the_arena() {
    let b = lz4();
    let zero = b
        .backup_page(&PageSpec::new(1, 0, PageClass::Zero).page(), 0, BackupFlags::NONE)
        .unwrap();
    let text = b
        .backup_page(&PageSpec::new(1, 1, PageClass::Text).page(), 1, BackupFlags::NONE)
        .unwrap();
    let random = b
        .backup_page(&PageSpec::new(1, 2, PageClass::Random).page(), 2, BackupFlags::NONE)
        .unwrap();
    assert_eq!(b.stored_size(zero), Some(8), "a zero page costs its table entry");
    let word = b
        .backup_page(&PageSpec::new(1, 3, PageClass::SameFilled).page(), 3, BackupFlags::NONE)
        .unwrap();
    assert_eq!(
        b.stored_size(word),
        Some(8 + 4 + 8),
        "a page of a random word costs its entry, and the word behind a header"
    );
    let text_cost = b.stored_size(text).unwrap();
    assert!(text_cost > 12 && text_cost < 4096, "{text_cost}");
    assert_eq!(
        b.stored_size(random),
        Some(4096 + 12),
        "a raw page, its header and entry"
    );
    b.drop_handles(&[zero, word, text, random]).unwrap();
    assert_eq!(b.stored_size(text), None, "a dropped handle");
}

#[test]
fn only_the_slow_zstd_levels_may_hold_a_thread() {
    for (algorithm, never_blocks) in [
        (Algorithm::Lz4, true),
        (Algorithm::Zstd { level: -5 }, true),
        (Algorithm::Zstd { level: 1 }, true),
        (Algorithm::Zstd { level: 3 }, false),
        (Algorithm::Zstd { level: 19 }, false),
    ] {
        let b = CompressedBackend::new(CompressedConfig::new(algorithm)).unwrap();
        assert_eq!(b.never_blocks(), never_blocks, "{algorithm}");
    }
}
