//! The hot path and drops: a drop runs its tier's drop outside the tiered
//! backend's locks, so a slow tier never stalls restores, backups or drops
//! of other pages; a drop in flight keeps moves off its page, and a failed
//! one leaves the handle live.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pagebackup_core::{BackupBackend, BackupFlags, ErrorKind, Handle, MemoryBackend, PAGE_SIZE, Page};
use pagebackup_testkit::PageSpec;
use pagebackup_tiered::{Tier, Tiered, TieredConfig, WritebackFilter};

const PAGE: u64 = PAGE_SIZE as u64;
/// How long a gated drop waits before giving up (so that a regression
/// fails the test instead of hanging it).
const GIVE_UP: Duration = Duration::from_secs(20);

/// What a gated drop does once let through.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    Drop,
    Fail,
}

/// Holds the first drop after it is shut until it opens.
#[derive(Debug, Default)]
struct Gate {
    /// (shut, drops waiting, a wait gave up, a drop is still to be held)
    state: Mutex<(bool, u32, bool, bool)>,
    changed: Condvar,
}

impl Gate {
    fn shut(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        state.3 = true;
    }
    fn open(&self) {
        self.state.lock().unwrap().0 = false;
        self.changed.notify_all();
    }
    /// Waits until a drop is waiting at the gate.
    fn wait_for_a_drop(&self) {
        let state = self.state.lock().unwrap();
        let (state, timeout) = self.changed.wait_timeout_while(state, GIVE_UP, |s| s.1 == 0).unwrap();
        assert!(!timeout.timed_out() && state.1 == 1, "no drop reached the gate");
    }
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        if !std::mem::take(&mut state.3) {
            return;
        }
        state.1 += 1;
        self.changed.notify_all();
        let (mut state, timeout) = self.changed.wait_timeout_while(state, GIVE_UP, |s| s.0).unwrap();
        state.1 -= 1;
        state.2 |= timeout.timed_out();
    }
    fn gave_up(&self) -> bool {
        self.state.lock().unwrap().2
    }
}

#[derive(Debug)]
struct Gated {
    inner: MemoryBackend,
    gate: Arc<Gate>,
    then: Arc<Mutex<Then>>,
}

impl BackupBackend for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn backup_page(&self, page: &Page, idx: u64, flags: BackupFlags) -> pagebackup_core::Result<Handle> {
        self.inner.backup_page(page, idx, flags)
    }
    fn copy_page(
        &self,
        dst: &mut Page,
        handle: Handle,
        intr: Option<&pagebackup_core::Interrupt>,
    ) -> pagebackup_core::Result<()> {
        self.inner.copy_page(dst, handle, intr)
    }
    fn drop_handle(&self, handle: Handle) -> pagebackup_core::Result<()> {
        self.gate.pass();
        match *self.then.lock().unwrap() {
            Then::Drop => self.inner.drop_handle(handle),
            Then::Fail => Err(pagebackup_core::BackupError::Io {
                origin: pagebackup_core::Origin::new("gated", pagebackup_core::Operation::DropHandle),
                source: std::io::Error::other("the gated tier fails drops"),
            }),
        }
    }
    fn bytes_avail(&self) -> u64 {
        self.inner.bytes_avail()
    }
    fn stats(&self) -> pagebackup_core::BackupStats {
        self.inner.stats()
    }
}

fn gated(budget_pages: u64) -> (Tiered, Arc<Gate>, Arc<Mutex<Then>>) {
    let gate = Arc::new(Gate::default());
    let then = Arc::new(Mutex::new(Then::Drop));
    let upper = Gated {
        inner: MemoryBackend::new(),
        gate: Arc::clone(&gate),
        then: Arc::clone(&then),
    };
    let t = Tiered::new(
        vec![
            Tier::new(upper).with_budget(budget_pages * PAGE),
            Tier::new(MemoryBackend::new()),
        ],
        TieredConfig::new().with_auto(None),
    )
    .unwrap();
    (t, gate, then)
}

fn restore(t: &Tiered, h: Handle, spec: PageSpec) {
    let mut dst = Page::new_boxed();
    t.copy_page(&mut dst, h, None).unwrap();
    spec.verify(&dst).unwrap();
}

#[test]
fn a_drop_stalled_in_its_tier_holds_no_lock_others_need() {
    let (t, gate, _) = gated(64);
    // Backed up from one thread: the same shard of the handle table.
    let specs: Vec<PageSpec> = (0..4).map(|i| PageSpec::mixed(3, i)).collect();
    let handles: Vec<Handle> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| t.backup_page(&s.page(), i as u64, BackupFlags::NONE).unwrap())
        .collect();
    gate.shut();
    std::thread::scope(|scope| {
        let stalled = scope.spawn(|| t.drop_handle(handles[0]));
        gate.wait_for_a_drop();
        // While that drop waits in its tier: the page it drops still reads
        // as itself, a second drop of it is refused, other pages of the
        // shard restore, a new page backs up, and a move skips the page.
        restore(&t, handles[0], specs[0]);
        restore(&t, handles[1], specs[1]);
        assert_eq!(t.drop_handle(handles[0]).unwrap_err().kind(), ErrorKind::InvalidHandle);
        let extra = PageSpec::mixed(3, 9);
        let h = t.backup_page(&extra.page(), 9, BackupFlags::NONE).unwrap();
        restore(&t, h, extra);
        let moved = t.writeback(WritebackFilter::All);
        assert_eq!(
            moved.moved_pages, 4,
            "every page but the one being dropped moves: {moved:?}"
        );
        assert_eq!(t.tier_of(handles[0]), Some(0));
        gate.open();
        stalled.join().unwrap().unwrap();
        t.drop_handle(h).unwrap();
    });
    assert!(!gate.gave_up(), "a drop waited for the test's gate until it gave up");
    let mut dst = Page::new_boxed();
    assert_eq!(
        t.copy_page(&mut dst, handles[0], None).unwrap_err().kind(),
        ErrorKind::InvalidHandle
    );
    for (&h, &spec) in handles.iter().zip(&specs).skip(1) {
        assert_eq!(t.tier_of(h), Some(1));
        restore(&t, h, spec);
        t.drop_handle(h).unwrap();
    }
    assert_eq!(t.stats().stored_pages, 0);
    assert!(
        t.tier_stats()
            .iter()
            .all(|s| s.pages == 0 && s.held_bytes == 0 && s.backend.stored_pages == 0)
    );
}

#[test]
fn a_failed_drop_leaves_the_handle_live_and_movable() {
    let (t, gate, then) = gated(64);
    let spec = PageSpec::mixed(4, 0);
    let h = t.backup_page(&spec.page(), 0, BackupFlags::NONE).unwrap();
    *then.lock().unwrap() = Then::Fail;
    assert_eq!(t.drop_handle(h).unwrap_err().kind(), ErrorKind::Io);
    restore(&t, h, spec);
    // No longer marked as dropping: it moves (its copy above, whose drop
    // fails, is kept for release), and that copy goes once the tier drops.
    assert_eq!(t.writeback(WritebackFilter::All).moved_pages, 1);
    assert_eq!(t.tier_of(h), Some(1));
    assert_eq!(t.tier_stats()[0].backend.stored_pages, 1);
    *then.lock().unwrap() = Then::Drop;
    t.run_policy_step();
    assert_eq!(t.tier_stats()[0].backend.stored_pages, 0);
    restore(&t, h, spec);
    t.drop_handle(h).unwrap();
    assert!(!gate.gave_up());
    assert_eq!(t.stats().stored_pages, 0);
    assert!(
        t.tier_stats()
            .iter()
            .all(|s| s.pages == 0 && s.backend.stored_pages == 0)
    );
}
