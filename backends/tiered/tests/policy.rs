//! Each policy, with the automatic mode off unless the test is about it:
//! watermarks and coldest first, huge pages, writeback, the rate limit,
//! promotion, drops, and the per-page cost of the slot-store backends.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pagebackup_core::layers::Instrumented;
use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, MemoryBackend, PAGE_SIZE, Page};
use pagebackup_testkit::{PageClass, PageSpec};
use pagebackup_tiered::{HugePolicy, Policy, RateLimit, Stop, Tier, Tiered, TieredConfig, WritebackFilter};

const PAGE: u64 = PAGE_SIZE as u64;

fn manual() -> TieredConfig {
    TieredConfig::new().with_auto(None)
}

fn two_memory(budget_pages: u64, config: TieredConfig) -> Tiered {
    Tiered::new(
        vec![
            Tier::new(MemoryBackend::new()).with_budget(budget_pages * PAGE),
            Tier::new(MemoryBackend::new()),
        ],
        config,
    )
    .unwrap()
}

fn backup_n(t: &Tiered, seed: u64, n: u64) -> Vec<(Handle, PageSpec)> {
    (0..n)
        .map(|i| {
            let spec = PageSpec::mixed(seed, i);
            (t.backup_page(&spec.page(), i, BackupFlags::NONE).unwrap(), spec)
        })
        .collect()
}

fn verify(t: &Tiered, pages: &[(Handle, PageSpec)]) {
    let mut dst = Page::new_boxed();
    for &(h, spec) in pages {
        t.copy_page(&mut dst, h, None).unwrap();
        spec.verify(&dst).unwrap();
    }
}

fn drop_all_and_check_empty(t: &Tiered, pages: &[(Handle, PageSpec)]) {
    for &(h, _) in pages {
        t.drop_handle(h).unwrap();
    }
    assert_eq!(t.stats().stored_pages, 0);
    for (k, tier) in t.tier_stats().iter().enumerate() {
        assert_eq!(
            (tier.pages, tier.held_bytes, tier.backend.stored_pages),
            (0, 0, 0),
            "tier {k} holds pages after every drop: {tier:?}"
        );
    }
}

#[test]
fn fewer_than_two_tiers_and_bad_watermarks_are_refused() {
    let one = Tiered::new(vec![Tier::new(MemoryBackend::new())], manual()).unwrap_err();
    assert_eq!(one.kind(), ErrorKind::InvalidInput);
    assert!(one.to_string().contains("1 tiers given"), "{one}");
    let tiers = || vec![Tier::new(MemoryBackend::new()), Tier::new(MemoryBackend::new())];
    let inverted = Tiered::new(tiers(), manual().with_watermarks(0.5, 0.7)).unwrap_err();
    assert!(inverted.to_string().contains("0 <= low <= high <= 1"), "{inverted}");
}

#[test]
fn backups_past_the_budget_go_below_and_the_policy_moves_coldest_first_from_high_to_low() {
    let t = two_memory(100, manual());
    let pages = backup_n(&t, 1, 120);
    let s = t.tier_stats();
    assert_eq!((s[0].pages, s[1].pages, s[1].direct_backups), (100, 20, 20));
    // The first 25 pages upstairs become hot; the rest stay cold.
    support::tick();
    verify(&t, &pages[..25]);
    let report = t.run_policy_step();
    let s = t.tier_stats();
    // 100 pages > 90% of the budget: moved until at 70%.
    assert_eq!((report.moved_pages, report.stopped), (30, None));
    assert_eq!((s[0].pages, s[0].held_bytes, s[1].pages), (70, 70 * PAGE, 50));
    assert_eq!((s[0].moved_down, s[1].written_back_bytes), (30, 30 * PAGE));
    for &(h, _) in &pages[..25] {
        assert_eq!(t.tier_of(h), Some(0), "a hot page moved down");
    }
    // Under the high watermark nothing moves.
    assert_eq!(t.run_policy_step().moved_pages, 0);
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn writeback_flag_sends_the_page_to_the_last_tier() {
    let t = two_memory(100, manual());
    let spec = PageSpec::new(2, 0, PageClass::Text);
    let h = t.backup_page(&spec.page(), 0, BackupFlags::WRITEBACK).unwrap();
    assert_eq!(t.tier_of(h), Some(1));
    assert_eq!(t.stats().writeback_pages, 1);
    verify(&t, &[(h, spec)]);
    drop_all_and_check_empty(&t, &[(h, spec)]);
}

#[test]
fn explicit_writeback_by_idle_time_and_all() {
    let t = two_memory(100, manual());
    let pages = backup_n(&t, 3, 40);
    std::thread::sleep(Duration::from_millis(600));
    verify(&t, &pages[..10]);
    let idle = t.writeback(WritebackFilter::Idle(Duration::from_millis(500)));
    assert_eq!((idle.moved_pages, idle.stopped), (30, None));
    for (k, &(h, _)) in pages.iter().enumerate() {
        assert_eq!(t.tier_of(h), Some(usize::from(k >= 10)), "page {k}");
    }
    assert_eq!(
        t.writeback(WritebackFilter::Huge).moved_pages,
        0,
        "no huge policy, no huge pages"
    );
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 10);
    assert_eq!(t.tier_stats()[0].pages, 0);
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn the_rate_limit_stops_moves_for_the_period() {
    let limit = RateLimit {
        bytes: 10 * PAGE,
        period: Duration::from_secs(3600),
    };
    let t = two_memory(100, manual().with_rate_limit(limit));
    let pages = backup_n(&t, 4, 100);
    let report = t.run_policy_step();
    assert_eq!((report.moved_pages, report.stopped), (10, Some(Stop::RateLimited)));
    assert_eq!(t.policy_state().rate_remaining, Some(0));
    assert_eq!(t.policy_state().last_stop, Some(Stop::RateLimited));
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 0);
    // Backups still go below directly once the upper tier is full.
    let more = backup_n(&t, 5, 20);
    assert_eq!(t.tier_stats()[1].pages, 10 + 10);
    verify(&t, &pages);
    verify(&t, &more);
    drop_all_and_check_empty(&t, &[pages, more].concat());
}

#[test]
fn promotion_is_off_by_default_and_brings_pages_restored_twice_up_when_on() {
    for promote in [false, true] {
        let t = two_memory(100, manual().with_promote(promote));
        let pages = backup_n(&t, 6, 4);
        t.writeback(WritebackFilter::All);
        // A page restored once while down stays down; the second restore promotes.
        verify(&t, &pages[..2]);
        assert!(pages.iter().all(|&(h, _)| t.tier_of(h) == Some(1)));
        verify(&t, &pages[..2]);
        for (k, &(h, _)) in pages.iter().enumerate() {
            let expected = if promote && k < 2 { 0 } else { 1 };
            assert_eq!(t.tier_of(h), Some(expected), "promote={promote}, page {k}");
        }
        assert_eq!(t.tier_stats()[1].moved_up, if promote { 2 } else { 0 });
        verify(&t, &pages);
        drop_all_and_check_empty(&t, &pages);
    }
}

#[test]
fn a_promoted_page_keeps_its_copy_below_and_moves_down_again_by_a_drop() {
    let t = two_memory(100, manual().with_promote(true));
    let pages = backup_n(&t, 12, 4);
    t.writeback(WritebackFilter::All);
    assert_eq!(t.tier_stats()[1].written_back_bytes, 4 * PAGE);
    restore_times(&t, &pages[..2], 2);
    let s = t.tier_stats();
    assert_eq!((t.tier_of(pages[0].0), t.tier_of(pages[1].0)), (Some(0), Some(0)));
    // Both promoted pages are served from above and still held below.
    assert_eq!((s[0].pages, s[1].pages, s[1].kept_pages), (2, 2, 2));
    assert_eq!((s[0].backend.stored_pages, s[1].backend.stored_pages), (2, 4));
    assert_eq!(
        s[1].held_bytes,
        4 * PAGE,
        "the kept copies still take their tier's space"
    );
    // The tiered backend holds four pages, whatever copies they have.
    let stats = t.stats();
    assert_eq!((stats.stored_pages, stats.original_bytes), (4, 4 * PAGE));
    // Moving them down again copies nothing: their kept copies serve them.
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 2);
    let s = t.tier_stats();
    assert_eq!((s[0].moved_down, s[0].moved_down_to_kept), (6, 2));
    assert_eq!(s[1].written_back_bytes, 4 * PAGE, "no page was written below again");
    assert_eq!((s[0].pages, s[1].pages, s[1].kept_pages), (0, 4, 0));
    assert_eq!((s[0].backend.stored_pages, s[1].backend.stored_pages), (0, 4));
    verify(&t, &pages);
    // Up again and dropped there: both copies go.
    restore_times(&t, &pages[2..], 2);
    assert_eq!(t.tier_stats()[1].kept_pages, 2);
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn a_promoted_page_restored_often_settles_and_its_kept_copy_is_released() {
    let t = two_memory(2, manual().with_promote(true));
    let pages = backup_n(&t, 18, 3);
    t.writeback(WritebackFilter::All);
    restore_times(&t, &pages[..2], 2);
    assert_eq!(t.tier_stats()[1].kept_pages, 2);
    // Page 0 restored six more times (eight lately): settled above. The
    // run over the full tier releases its copy below and moves page 1
    // down to its own.
    restore_times(&t, &pages[..1], 6);
    assert_eq!(t.run_policy_step().moved_pages, 1);
    let s = t.tier_stats();
    assert_eq!((s[0].moved_down, s[0].moved_down_to_kept), (3, 1), "{s:?}");
    assert_eq!(
        (s[1].kept_pages, s[1].pages, s[1].backend.stored_pages),
        (0, 2, 2),
        "{s:?}"
    );
    assert_eq!(s[1].held_bytes, 2 * PAGE);
    assert_eq!(t.tier_of(pages[0].0), Some(0));
    // Moved down again, the settled page is copied (two pages were before).
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 1);
    assert_eq!(t.tier_stats()[1].written_back_bytes, 3 * PAGE);
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn without_keep_lower_a_promotion_releases_the_copy_below_and_a_move_down_copies_again() {
    let t = two_memory(100, manual().with_promote(true).with_keep_lower(false));
    let pages = backup_n(&t, 13, 4);
    t.writeback(WritebackFilter::All);
    restore_times(&t, &pages[..2], 2);
    let s = t.tier_stats();
    assert_eq!((s[0].pages, s[1].pages, s[1].kept_pages), (2, 2, 0));
    assert_eq!((s[0].backend.stored_pages, s[1].backend.stored_pages), (2, 2));
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 2);
    let s = t.tier_stats();
    assert_eq!(s[0].moved_down_to_kept, 0);
    assert_eq!(
        s[1].written_back_bytes,
        6 * PAGE,
        "the two pages were copied down again"
    );
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn a_page_with_a_kept_copy_dropped_while_above_frees_both_copies_and_its_handle() {
    let t = two_memory(100, manual().with_promote(true));
    let pages = backup_n(&t, 14, 3);
    t.writeback(WritebackFilter::All);
    restore_times(&t, &pages[..1], 2);
    let (h, _) = pages[0];
    assert_eq!((t.tier_of(h), t.tier_stats()[1].kept_pages), (Some(0), 1));
    t.drop_handle(h).unwrap();
    let s = t.tier_stats();
    assert_eq!((s[0].backend.stored_pages, s[1].backend.stored_pages), (0, 2));
    assert_eq!((s[1].pages, s[1].kept_pages, s[1].held_bytes), (2, 0, 2 * PAGE));
    let mut dst = Page::new_boxed();
    assert_eq!(
        t.copy_page(&mut dst, h, None).unwrap_err().kind(),
        ErrorKind::InvalidHandle
    );
    assert_eq!(t.drop_handle(h).unwrap_err().kind(), ErrorKind::InvalidHandle);
    verify(&t, &pages[1..]);
    drop_all_and_check_empty(&t, &pages[1..]);
}

#[test]
fn the_policy_moves_a_promoted_page_down_to_its_kept_copy_when_it_cools() {
    let t = two_memory(8, manual().with_promote(true));
    let hot = backup_n(&t, 15, 8);
    let cold = backup_n(&t, 16, 8);
    // The first eight cool down below; the last eight come up, hot.
    assert_eq!(t.run_policy_step().moved_pages, 3);
    t.writeback(WritebackFilter::All);
    // Every page has been copied down once; each copy up keeps its copy below.
    let written = t.tier_stats()[1].written_back_bytes;
    assert_eq!(written, 8 * PAGE);
    restore_times(&t, &cold[..6], 4);
    assert_eq!(t.tier_stats()[0].pages, 6);
    // Now the first eight turn hot and the promoted ones cold (the hot
    // ones restored under eight times lately, so none settles and drops
    // its copy below).
    restore_times(&t, &hot, 5);
    for _ in 0..2 {
        t.run_policy_step();
        restore_times(&t, &hot, 1);
    }
    let s = t.tier_stats();
    assert!(s[0].moved_down_to_kept > 0, "{s:?}");
    assert_eq!(s[0].moved_down - s[0].moved_down_to_kept, 8, "{s:?}");
    assert_eq!(
        s[1].written_back_bytes, written,
        "no promoted page was copied down again: {s:?}"
    );
    verify(&t, &hot);
    verify(&t, &cold);
    drop_all_and_check_empty(&t, &[hot, cold].concat());
}

#[test]
fn with_a_policy_thread_promotions_are_left_to_it() {
    let t = two_memory(100, TieredConfig::new().with_promote(true));
    let pages = backup_n(&t, 17, 4);
    t.writeback(WritebackFilter::All);
    restore_times(&t, &pages[..2], 2);
    // The policy thread copies them up on its wake-up, not the restore.
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.tier_stats()[1].moved_up < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = t.tier_stats();
    assert_eq!((s[1].moved_up, s[0].pages, s[1].kept_pages), (2, 2, 2), "{s:?}");
    assert!(pages[..2].iter().all(|&(h, _)| t.tier_of(h) == Some(0)));
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

/// Promotions left to the policy thread are read from below in one batch:
/// the 64th page waiting wakes the thread, which reads the 64 with one call.
#[test]
fn deferred_promotions_are_read_from_below_in_one_batch() {
    let lower = Arc::new(Instrumented::new(MemoryBackend::new()));
    let t = Tiered::new(
        vec![
            Tier::new(MemoryBackend::new()).with_budget(200 * PAGE),
            Tier::new(Arc::clone(&lower)),
        ],
        TieredConfig::new()
            .with_promote(true)
            .with_auto(Some(Duration::from_secs(3600))),
    )
    .unwrap();
    let pages = backup_n(&t, 18, 64);
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 64);
    restore_times(&t, &pages, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.tier_stats()[1].moved_up < 64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(t.tier_stats()[1].moved_up, 64);
    let read = lower.op_stats().restore;
    assert_eq!(
        (read.calls, read.pages),
        (2 * 64 + 1, 3 * 64),
        "the restores one by one, then the promotions' one read"
    );
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

/// A memory backend that says pages starting with 0xff cost a whole page
/// and others a quarter: a stand-in for a compressing tier.
#[derive(Debug)]
struct Costed {
    inner: MemoryBackend,
    huge: std::sync::Mutex<std::collections::HashSet<Handle>>,
}

impl Costed {
    fn new() -> Self {
        Costed {
            inner: MemoryBackend::new(),
            huge: Default::default(),
        }
    }
}

#[derive(Debug)]
struct CostedBackend(Costed);

impl BackupBackend for CostedBackend {
    fn name(&self) -> &'static str {
        "costed"
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        let h = self.0.inner.backup_page(page, idx, flags)?;
        if page.0[0] == 0xff {
            self.0.huge.lock().unwrap().insert(h);
        }
        Ok(h)
    }
    fn copy_page(
        &self,
        dst: &mut Page,
        handle: Handle,
        intr: Option<&pagebackup_core::Interrupt>,
    ) -> pagebackup_core::Result<()> {
        self.0.inner.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.0.inner.drop_handle(handle)?;
        self.0.huge.lock().unwrap().remove(&handle);
        Ok(())
    }
    fn bytes_avail(&self) -> u64 {
        self.0.inner.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.0.inner.stats()
    }
    fn stored_size(&self, handle: Handle) -> Option<u64> {
        self.0.inner.stored_size(handle)?;
        Some(if self.0.huge.lock().unwrap().contains(&handle) {
            PAGE
        } else {
            PAGE / 4
        })
    }
}

/// A layer that overrides nothing forwards `stored_size` too.
#[derive(Debug)]
struct Forwarded(MemoryBackend);
impl pagebackup_core::layers::Layer for Forwarded {
    type Inner = MemoryBackend;
    fn inner(&self) -> &MemoryBackend {
        &self.0
    }
}

fn page_costing(huge: bool, n: u64) -> Box<Page> {
    let mut page = PageSpec::new(7, n, PageClass::Text).page();
    page.0[0] = if huge { 0xff } else { 0 };
    page
}

#[test]
fn huge_pages_go_down_first_or_at_once() {
    for at_once in [false, true] {
        let huge = HugePolicy {
            threshold: PAGE / 2,
            at_once,
        };
        let t = Tiered::new(
            vec![
                Tier::new(CostedBackend(Costed::new())).with_budget(40 * PAGE),
                Tier::new(Forwarded(MemoryBackend::new())),
            ],
            manual().with_huge(huge),
        )
        .unwrap();
        // 140 small pages (35 pages' worth) and 4 huge ones.
        let mut handles = Vec::new();
        for n in 0..144 {
            let page = page_costing(n % 36 == 35, n);
            handles.push((t.backup_page(&page, n, BackupFlags::NONE).unwrap(), page));
        }
        let huge_handles: Vec<Handle> = handles
            .iter()
            .filter(|(_, p)| p.0[0] == 0xff)
            .map(|&(h, _)| h)
            .collect();
        assert_eq!(huge_handles.len(), 4);
        if at_once {
            assert!(
                huge_handles.iter().all(|&h| t.tier_of(h) == Some(1)),
                "huge pages stayed up"
            );
            assert_eq!(t.tier_stats()[0].held_bytes, 140 * PAGE / 4);
        } else {
            // 39 pages' worth > 90% of 40: the 4 huge pages move first (35
            // pages' worth left), then 28 small ones, down to 70% (28 pages' worth).
            assert_eq!(t.tier_stats()[0].held_bytes, 140 * PAGE / 4 + 4 * PAGE);
            let report = t.run_policy_step();
            assert!(
                huge_handles.iter().all(|&h| t.tier_of(h) == Some(1)),
                "huge pages stayed up"
            );
            assert_eq!(report.moved_pages, 4 + 28);
            assert_eq!(t.tier_stats()[0].held_bytes, 28 * PAGE);
        }
        assert_eq!(t.stored_size(huge_handles[0]), Some(PAGE), "the lower tier's cost");
        let mut dst = Page::new_boxed();
        for &(h, ref page) in &handles {
            t.copy_page(&mut dst, h, None).unwrap();
            assert_eq!(dst.0, page.0);
            t.drop_handle(h).unwrap();
        }
        assert!(
            t.tier_stats()
                .iter()
                .all(|s| s.pages == 0 && s.backend.stored_pages == 0)
        );
    }
}

#[test]
fn the_automatic_mode_brings_the_tier_under_its_low_watermark_by_itself() {
    let t = two_memory(100, TieredConfig::new().with_auto(Some(Duration::from_secs(3600))));
    // The interval is an hour: passing the high watermark wakes the thread.
    let mut pages = backup_n(&t, 8, 90);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        t.tier_stats()[0].pages,
        90,
        "at the high watermark, not past it: nothing moves"
    );
    pages.extend(backup_n(&t, 18, 1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.tier_stats()[0].pages > 70 {
        assert!(
            Instant::now() < deadline,
            "the policy thread did not run: {:?}",
            t.tier_stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let state = t.policy_state();
    assert!(state.automatic && state.runs >= 1, "{state:?}");
    assert_eq!(t.tier_stats()[0].pages, 70);
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn slot_store_backends_say_a_live_page_costs_a_page() {
    let shmem = pagebackup_shmem::ShmemBackend::with_capacity(1 << 20).unwrap();
    let file = pagebackup_file::FileBackend::new(pagebackup_file::FileConfig::new()).unwrap();
    for b in [&shmem as &dyn BackupBackend, &file] {
        let h = b.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE).unwrap();
        assert_eq!(b.stored_size(h), Some(PAGE), "{}", b.name());
        b.drop_handle(h).unwrap();
        assert_eq!(b.stored_size(h), None, "{}", b.name());
    }
}

#[test]
fn pages_restored_often_outrank_pages_restored_once_lately() {
    let t = two_memory(100, manual());
    let pages = backup_n(&t, 9, 100);
    for _ in 0..3 {
        verify(&t, &pages[..25]);
    }
    support::tick();
    verify(&t, &pages[25..]);
    assert_eq!(t.run_policy_step().moved_pages, 30);
    for (k, &(h, _)) in pages.iter().enumerate().take(25) {
        assert_eq!(t.tier_of(h), Some(0), "page {k}, restored three times, moved down");
    }
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn maintenance_runs_after_a_step_that_vacated_the_tier() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let t = Tiered::new(
        vec![
            Tier::new(MemoryBackend::new())
                .with_budget(10 * PAGE)
                .with_maintenance(move || {
                    counted.fetch_add(1, Ordering::Relaxed);
                }),
            Tier::new(MemoryBackend::new()),
        ],
        manual(),
    )
    .unwrap();
    let pages = backup_n(&t, 10, 5);
    t.run_policy_step();
    assert_eq!(runs.load(Ordering::Relaxed), 0, "nothing left the tier");
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 5);
    assert_eq!(runs.load(Ordering::Relaxed), 1);
    t.run_policy_step();
    assert_eq!(runs.load(Ordering::Relaxed), 1, "nothing left since");
    drop_all_and_check_empty(&t, &pages);
}

/// A memory backend that cannot tell its pages' sizes and reports twice
/// their bytes as its memory, like a compressing store with overhead.
#[derive(Debug)]
struct Opaque(MemoryBackend);

impl BackupBackend for Opaque {
    fn name(&self) -> &'static str {
        "opaque"
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        self.0.backup_page(page, idx, flags)
    }
    fn copy_page(
        &self,
        dst: &mut Page,
        handle: Handle,
        intr: Option<&pagebackup_core::Interrupt>,
    ) -> pagebackup_core::Result<()> {
        self.0.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.0.drop_handle(handle)
    }
    fn bytes_avail(&self) -> u64 {
        self.0.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        let mut stats = self.0.stats();
        stats.memory_used = 2 * stats.stored_bytes;
        stats
    }
}

#[test]
fn a_tier_that_cannot_tell_sizes_is_held_to_the_memory_it_reports() {
    let t = Tiered::new(
        vec![
            Tier::new(Opaque(MemoryBackend::new())).with_budget(100 * PAGE),
            Tier::new(MemoryBackend::new()),
        ],
        manual(),
    )
    .unwrap();
    // 60 pages counted at a page each fit the budget, but take 120 pages' worth.
    let pages = backup_n(&t, 11, 60);
    assert_eq!(t.tier_stats()[0].pages, 60);
    // From 120 pages' worth down to the low watermark, 70: 50 pages' worth
    // of the estimate (a page each) are moved.
    assert_eq!(t.run_policy_step().moved_pages, 50);
    assert_eq!(t.tier_stats()[0].pages, 10);
    // The estimate is now two pages a page: backups reserve that much.
    let more = backup_n(&t, 12, 40);
    assert_eq!(t.tier_stats()[0].pages, 10 + 40);
    assert_eq!(t.tier_stats()[0].held_bytes, 10 * PAGE + 40 * 2 * PAGE);
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &[pages, more].concat());
}

fn restore_times(t: &Tiered, pages: &[(Handle, PageSpec)], times: usize) {
    for _ in 0..times {
        verify(t, pages);
    }
}

#[test]
fn promotion_admits_only_pages_twice_as_hot_as_the_next_victim() {
    let t = two_memory(8, manual().with_promote(true));
    let hot = backup_n(&t, 7, 8);
    restore_times(&t, &hot, 4);
    let cold = backup_n(&t, 8, 16);
    assert!(
        cold.iter().all(|&(h, _)| t.tier_of(h) == Some(1)),
        "past the budget, backups go below"
    );
    // 8 of 8 pages is past the high watermark (0.9): down to the low (0.7),
    // leaving 5 hot pages restored 4 times each; the next victim has heat 4.
    assert_eq!(t.run_policy_step().moved_pages, 3);
    // Restored 3 times each: no hotter than the victim, they stay down,
    // however often this repeats (room under the watermarks or not).
    restore_times(&t, &cold, 3);
    let up = |t: &Tiered| t.tier_stats()[1].moved_up;
    assert_eq!(up(&t), 0);
    assert!(cold.iter().all(|&(h, _)| t.tier_of(h) == Some(1)));
    // Hotter, but not by the margin: 9 restores against 2 * (4 + 1).
    restore_times(&t, &cold[5..7], 6);
    assert_eq!(up(&t), 0);
    // Two restored once more (heat 10) prove hotter and come up, within
    // the budget.
    restore_times(&t, &cold[5..7], 1);
    assert_eq!(up(&t), 2);
    assert_eq!((t.tier_of(cold[5].0), t.tier_of(cold[6].0)), (Some(0), Some(0)));
    assert_eq!(t.tier_stats()[0].pages, 7);
    verify(&t, &hot);
    verify(&t, &cold);
    drop_all_and_check_empty(&t, &[hot, cold].concat());
}

#[test]
fn promotions_take_from_the_rate_limit() {
    let limit = RateLimit {
        bytes: 2 * PAGE,
        period: Duration::from_secs(3600),
    };
    let t = two_memory(100, manual().with_promote(true).with_rate_limit(limit));
    let pages = backup_n(&t, 9, 4);
    assert_eq!(
        t.writeback(WritebackFilter::All).moved_pages,
        2,
        "the period's allowance"
    );
    restore_times(&t, &pages, 3);
    assert_eq!(
        t.tier_stats()[1].moved_up,
        0,
        "nothing left in the period to promote with"
    );
    assert_eq!(t.policy_state().rate_remaining, Some(0));
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn zero_and_tiny_budgets_make_the_tier_a_last_resort() {
    for budget in [0, 100, PAGE - 1] {
        let t = Tiered::new(
            vec![
                Tier::new(MemoryBackend::new()).with_budget(budget),
                Tier::new(MemoryBackend::with_limit(4 * PAGE)),
            ],
            manual().with_promote(true),
        )
        .unwrap();
        let pages = backup_n(&t, 10, 4);
        let s = t.tier_stats();
        assert_eq!(
            (s[0].pages, s[1].pages, s[1].direct_backups),
            (0, 4, 4),
            "budget {budget}"
        );
        // Restored often: nothing is promoted into a tier that cannot hold a
        // page, and the rate limit is not spent on trying.
        restore_times(&t, &pages, 4);
        assert_eq!(t.tier_stats()[1].moved_up, 0, "budget {budget}");
        // With the tier below full, the first tier takes the page past its
        // budget rather than failing the backup; the policy cannot move it.
        let over = backup_n(&t, 11, 1);
        assert_eq!(t.tier_of(over[0].0), Some(0), "budget {budget}");
        let report = t.run_policy_step();
        assert_eq!(
            (report.moved_pages, report.stopped),
            (0, Some(Stop::NoSpaceBelow)),
            "budget {budget}"
        );
        verify(&t, &pages);
        verify(&t, &over);
        drop_all_and_check_empty(&t, &[pages, over].concat());
    }
}

/// S3-FIFO: new pages enter the small FIFO and, unless restored before the
/// next run, go down oldest first; a page restored there goes to the main
/// FIFO and stays while it is restored between runs; a page restored twice
/// below comes up.
#[test]
fn s3fifo_moves_pages_never_restored_oldest_first_and_keeps_those_restored() {
    let t = two_memory(100, manual().with_policy(Policy::S3Fifo).with_promote(true));
    let old = backup_n(&t, 30, 40);
    // FIFO order is the order pages came (by the millisecond); a run
    // between them (40 pages of 100) moves nothing.
    assert_eq!(t.run_policy_step().moved_pages, 0);
    support::tick();
    let young = backup_n(&t, 31, 60);
    // Restored once in the small FIFO: to the main one at the next run.
    verify(&t, &young[..20]);
    // 100 pages of 100 is past the high watermark: down to the low one,
    // 30 pages, the oldest of the small FIFO: all of them older ones.
    assert_eq!(t.run_policy_step().moved_pages, 30);
    let tiers = |pages: &[(Handle, PageSpec)]| pages.iter().map(|&(h, _)| t.tier_of(h).unwrap()).collect::<Vec<_>>();
    assert_eq!(tiers(&old).iter().filter(|&&k| k == 1).count(), 30);
    assert!(tiers(&young).iter().all(|&k| k == 0));
    // The main FIFO's pages restored again keep their place; 30 new pages
    // take the tier past its high watermark once more, and the small
    // FIFO's oldest go: the 10 old pages left, then 20 young ones never
    // restored.
    verify(&t, &young[..20]);
    support::tick();
    let new = backup_n(&t, 32, 30);
    assert_eq!(t.run_policy_step().moved_pages, 30);
    assert!(tiers(&old).iter().all(|&k| k == 1));
    assert!(
        tiers(&young[..20]).iter().all(|&k| k == 0),
        "restored, in the main FIFO"
    );
    assert_eq!(tiers(&young[20..]).iter().filter(|&&k| k == 1).count(), 20);
    assert!(tiers(&new).iter().all(|&k| k == 0));
    // A page restored twice below comes up (the ghost hit), within the budget.
    restore_times(&t, &old[..1], 2);
    assert_eq!(t.tier_stats()[1].moved_up, 1);
    assert_eq!(t.tier_of(old[0].0), Some(0));
    let all = [old, young, new].concat();
    verify(&t, &all);
    drop_all_and_check_empty(&t, &all);
}

/// Heat halves once ten restores per page of the tier have passed, as
/// TinyLFU's counts do at the end of its window: a page restored once
/// before that needs two restores after it to prove hot.
#[test]
fn heat_halves_after_ten_restores_per_page_of_the_tier() {
    let t = two_memory(10, manual().with_promote(true));
    let up = backup_n(&t, 40, 10);
    let down = backup_n(&t, 41, 2);
    assert!(down.iter().all(|&(h, _)| t.tier_of(h) == Some(1)), "past the budget");
    restore_times(&t, &down[..1], 1);
    // 100 more restores: 101, past the window of 10 per page of the tier.
    restore_times(&t, &up[..5], 20);
    // 10 pages of 10 is past the high watermark: the 3 coldest go down.
    assert_eq!(t.run_policy_step().moved_pages, 3);
    // Its one restore was halved away: one more is not the two of a promotion.
    restore_times(&t, &down[..1], 1);
    assert_eq!(t.tier_of(down[0].0), Some(1));
    restore_times(&t, &down[..1], 1);
    assert_eq!(t.tier_of(down[0].0), Some(0), "two restores since the halving");
    drop_all_and_check_empty(&t, &[up, down].concat());
}

/// S3-FIFO's order is the time pages came, not a count of policy runs
/// that would wrap: a page that came before 65535 runs is still the older.
#[test]
fn s3fifo_order_holds_past_65536_policy_runs() {
    let t = two_memory(2, manual().with_policy(Policy::S3Fifo).with_watermarks(0.9, 0.5));
    let first = backup_n(&t, 50, 1);
    for _ in 0..65_535 {
        t.run_policy_step();
    }
    support::tick();
    let second = backup_n(&t, 51, 1);
    // 2 pages of 2 is past the high watermark: the older goes down.
    assert_eq!(t.run_policy_step().moved_pages, 1);
    assert_eq!((t.tier_of(first[0].0), t.tier_of(second[0].0)), (Some(1), Some(0)));
    drop_all_and_check_empty(&t, &[first, second].concat());
}

/// In a stack of three, a budgeted middle tier that holds kept copies (of
/// pages promoted from it) releases them before it moves its own pages
/// down: dropping a kept copy loses nothing but a cheap move down later.
#[test]
fn a_middle_tier_past_its_budget_releases_kept_copies_before_moving_pages_down() {
    let t = Tiered::new(
        vec![
            Tier::new(MemoryBackend::new()).with_budget(64 * PAGE),
            Tier::new(MemoryBackend::new()).with_budget(8 * PAGE),
            Tier::new(MemoryBackend::new()),
        ],
        manual().with_promote(true).with_watermarks(0.9, 0.5),
    )
    .unwrap();
    let top = backup_n(&t, 60, 64);
    let middle = backup_n(&t, 61, 8);
    assert!(middle.iter().all(|&(h, _)| t.tier_of(h) == Some(1)));
    for &(h, _) in &top[..12] {
        t.drop_handle(h).unwrap();
    }
    restore_times(&t, &middle[..4], 2);
    let s = t.tier_stats();
    assert_eq!((s[0].pages, s[1].pages, s[1].kept_pages), (56, 4, 4), "{s:?}");
    // The middle tier holds 8 pages' bytes of 8, 4 of them kept copies:
    // past its high watermark, down to its low one (4 pages).
    let report = t.run_policy_step();
    let s = t.tier_stats();
    assert_eq!(
        (
            s[1].pages,
            s[1].kept_pages,
            s[1].held_bytes,
            s[1].moved_down,
            report.moved_pages
        ),
        (4, 0, 4 * PAGE, 0, 0),
        "{s:?}"
    );
    let all = [&top[12..], &middle[..]].concat();
    verify(&t, &all);
    drop_all_and_check_empty(&t, &all);
}

/// With `trim`, a tier under its watermark keeps only what its last window
/// restored more than once: the rest moves down, and a page below must
/// then be clearly hotter than the coldest page left above to come up.
/// Without it, nothing moves under the watermark and a page restored
/// twice below comes up.
#[test]
fn trim_keeps_a_tier_under_its_watermark_to_its_hot_pages() {
    for trim in [false, true] {
        let t = two_memory(100, manual().with_trim(trim).with_promote(true));
        let pages = backup_n(&t, 12, 40);
        // A window of 400 restores (ten per page above): ten pages hot, ten
        // restored once, twenty never.
        for _ in 0..39 {
            verify(&t, &pages[..10]);
        }
        verify(&t, &pages[10..20]);
        let report = t.run_policy_step();
        let below: Vec<usize> = (0..40).filter(|&k| t.tier_of(pages[k].0) == Some(1)).collect();
        if trim {
            assert_eq!(report.moved_pages, 30, "trim: {report:?}");
            assert_eq!(below, (10..40).collect::<Vec<_>>(), "trim");
        } else {
            assert_eq!((report.moved_pages, below.len()), (0, 0), "no trim: {report:?}");
            t.writeback(WritebackFilter::Idle(Duration::ZERO));
        }
        // Page 20, restored twice below: up without trim, where nothing above
        // is restored more than once a window; with trim it stays down, the
        // coldest page above having been restored 39 times.
        verify(&t, &pages[20..21]);
        verify(&t, &pages[20..21]);
        let expected = if trim { 1 } else { 0 };
        assert_eq!(t.tier_of(pages[20].0), Some(expected), "trim={trim}");
        verify(&t, &pages);
        drop_all_and_check_empty(&t, &pages);
    }
}

/// A trim waits for a window of restores: a run over the watermark that
/// turned the tier over (as many pages moved out as are left) does not
/// make the next run take the pages left, which nothing has restored.
#[test]
fn trim_waits_for_restores_not_for_the_tier_to_turn_over() {
    let t = two_memory(4, manual());
    let pages = backup_n(&t, 13, 4);
    assert_eq!(t.run_policy_step().moved_pages, 2);
    assert_eq!(t.run_policy_step().moved_pages, 0);
    assert_eq!(t.tier_stats()[0].pages, 2);
    verify(&t, &pages);
    drop_all_and_check_empty(&t, &pages);
}

#[test]
fn trim_is_refused_beside_s3fifo() {
    let tiers = || vec![Tier::new(MemoryBackend::new()), Tier::new(MemoryBackend::new())];
    let e = Tiered::new(tiers(), manual().with_trim(true).with_policy(Policy::S3Fifo)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("trim with policy s3fifo"), "{e}");
}

/// A tiered stack passes a caller's idle-time upkeep to its tiers: over a
/// compressed first tier left with garbage by drops, `maintain_step`
/// works until that tier's arena is compact, then says there is nothing
/// left, and every page comes back.
#[test]
fn idle_upkeep_reaches_a_compressed_tier() {
    use pagebackup_compressed::{Algorithm, CompressedBackend, CompressedConfig};
    let compressed = CompressedBackend::new(CompressedConfig::new(Algorithm::Lz4)).unwrap();
    let t = Tiered::new(
        vec![
            Tier::new(compressed).with_budget(1 << 30),
            Tier::new(MemoryBackend::new()),
        ],
        manual(),
    )
    .unwrap();
    let pages = backup_n(&t, 41, 40_000);
    let kept: Vec<_> = pages
        .iter()
        .enumerate()
        .filter_map(|(k, &(h, spec))| {
            if k % 8 == 3 {
                t.drop_handle(h).unwrap();
                None
            } else {
                Some((h, spec))
            }
        })
        .collect();
    let before = t.tier_stats()[0].backend.memory_used;
    let mut steps = 0;
    while t.maintain_step().unwrap() {
        steps += 1;
        assert!(steps < 1_000_000, "upkeep does not end");
    }
    let after = t.tier_stats()[0].backend.memory_used;
    assert!(steps > 0 && after < before, "{steps} steps: {before} -> {after} bytes");
    assert!(!t.maintain_step().unwrap());
    verify(&t, &kept);
    drop_all_and_check_empty(&t, &kept);
}
