//! `tiered:` specs: nested tiers, budgets and policies, and errors that
//! point at the tier at fault.
#![cfg(all(feature = "tiered", feature = "compressed", feature = "file"))]

use pagebackup::{BackupBackend, BackupFlags, OpenError, PAGE_SIZE, Page, open, open_tiered};

#[test]
fn the_issue_spec_opens_a_compressed_over_file_stack() {
    let spec = "tiered:tiers=[compressed:algo=lz4,limit=256MiB | file:direct=on],high=90%,low=70%";
    let t = open_tiered(spec).unwrap();
    let stats = t.tier_stats();
    assert_eq!((stats[0].name, stats[1].name), ("compressed", "file"));
    assert!(
        stats[0].budget.is_some_and(|b| b <= 256 << 20 && b > 200 << 20),
        "{stats:?}"
    );
    assert_eq!(stats[1].budget, None);
    assert!(t.policy_state().automatic);
    let b = open(spec).unwrap();
    let mut page = Page::new_boxed();
    page.0[..5].copy_from_slice(b"tiers");
    let h = b.backup_page(&page, 0, BackupFlags::WRITEBACK).unwrap();
    page.0.fill(0);
    b.copy_page(&mut page, h, None).unwrap();
    assert_eq!(&page.0[..5], b"tiers");
    b.drop_handle(h).unwrap();
}

#[test]
fn budgets_policies_and_nested_tiers() {
    let t = open_tiered(
        "tiered:tiers=[memory | tiered:tiers=[compressed:algo=lz4 | compressed:algo=zstd,level=9],budget=1MiB,auto=off | memory],\
         budget=[64KiB | 2MiB],high=80%,low=50%,huge=3000,huge_mode=at_once,promote=on,rate=1MiB,auto=off",
    )
    .unwrap();
    let s = t.tier_stats();
    assert_eq!(
        s.iter().map(|s| s.name).collect::<Vec<_>>(),
        ["memory", "tiered", "memory"]
    );
    assert_eq!(
        s.iter().map(|s| s.budget).collect::<Vec<_>>(),
        [Some(64 << 10), Some(2 << 20), None]
    );
    let state = t.policy_state();
    assert!(!state.automatic);
    assert_eq!(state.rate_remaining, Some(1 << 20));
    for n in 0..40u8 {
        let mut page = Page::new_boxed();
        page.0.fill(n);
        t.backup_page(&page, u64::from(n), BackupFlags::NONE).unwrap();
    }
    // Every page costs 4096 in memory, above huge=3000: sent down at once.
    let s = t.tier_stats();
    assert_eq!((s[0].pages, s[0].moved_down, s[1].pages), (0, 40, 40));
    assert_eq!(t.stats().stored_pages, 40);
    assert_eq!(t.stats().original_bytes, 40 * PAGE_SIZE as u64);
}

/// Every message of an error's chain, outermost first.
fn chain(e: &dyn std::error::Error) -> Vec<String> {
    std::iter::successors(Some(e), |e| e.source())
        .map(|e| e.to_string())
        .collect()
}

/// The error of opening `spec`, its chain on one line as `anyhow`'s `{:#}`
/// prints it.
fn err(spec: &str) -> String {
    match open(spec) {
        Ok(b) => panic!("{spec:?} opened {b:?}"),
        Err(e) => chain(&e).join(": "),
    }
}

#[test]
fn a_report_of_a_tier_that_fails_to_open_prints_each_level_once() {
    let e = open("tiered:tiers=[memory | file:dir=/nonexistent/t]").unwrap_err();
    let enoent = std::io::Error::from_raw_os_error(2).to_string();
    assert_eq!(
        chain(&e),
        [
            "tiered: cannot open tier 1 'file:dir=/nonexistent/t'",
            "file backend: open: I/O error",
            "cannot create a temporary file in /nonexistent/t",
            &enoent,
        ]
    );
    // Through `?` into a BackupError: each level names its backend once.
    let backup: pagebackup::BackupError = e.into();
    assert_eq!(backup.origin().backend, "tiered");
    assert_eq!(backup.kind(), pagebackup::ErrorKind::Io);
    assert_eq!(
        chain(&backup),
        [
            "tiered backend: open: cannot open tier 1 'file:dir=/nonexistent/t'",
            "file backend: open: I/O error",
            "cannot create a temporary file in /nonexistent/t",
            &enoent,
        ]
    );
    let io = std::iter::successors(Some(&backup as &(dyn std::error::Error + 'static)), |e| e.source()).find_map(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
    });
    assert_eq!(io, Some(2), "{backup:?}");
}

#[test]
fn errors_point_at_the_tier_at_fault() {
    let e = open("tiered:tiers=[compressed:algo=lz4 | file:direct=maybe]").unwrap_err();
    assert!(matches!(&e, OpenError::Tier { index: 1, spec, .. } if spec == "file:direct=maybe"));
    assert_eq!(
        chain(&e),
        [
            "tiered: cannot open tier 1 'file:direct=maybe'",
            "backend 'file': bad value 'maybe' for 'direct': expected on or off"
        ]
    );
    assert_eq!(
        err("tiered:tiers=[memory | tape]"),
        format!(
            "tiered: cannot open tier 1 'tape': unknown backend 'tape'; this build has: {}",
            pagebackup::available_backends().join(", ")
        )
    );
    assert!(err("tiered:tiers=[memory]").contains("at least two tiers"));
    let bare = open_tiered("tiered").unwrap();
    let names: Vec<&str> = bare.tiers().iter().map(|t| t.backend().name()).collect();
    assert_eq!(names, ["compressed", "file"]);
    assert!(err("tiered:tiers=memory").contains("a bracketed list"));
    assert!(err("tiered:tiers=[memory | memory],high=101%").contains("'high'"));
    assert!(err("tiered:tiers=[memory | memory],high=50%,low=60%").contains("'low'"));
    assert!(err("tiered:tiers=[memory | memory],budget=[1MiB | 1MiB]").contains("one size per tier but the last"));
    assert!(err("tiered:tiers=[memory | memory],huge_mode=first").contains("huge=SIZE"));
}
