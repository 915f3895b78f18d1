//! [`Tier`]: one backend of a tiered stack, with its budget and counters.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use pagebackup_core::{BackupBackend, Handle, PAGE_SIZE};

use crate::stats::TierCounters;

pub(crate) const PAGE: u64 = PAGE_SIZE as u64;

/// One tier: a backend and, for every tier but the last, an optional budget.
pub struct Tier {
    pub(crate) backend: Box<dyn BackupBackend>,
    pub(crate) budget: Option<u64>,
    pub(crate) counters: TierCounters,
    /// The cost counted for a page whose backend cannot tell its
    /// [`stored_size`](BackupBackend::stored_size): the tier's memory per
    /// page at the last policy run (a page to begin with); for a backend
    /// that tells sizes, the average of those. Also the estimate reserved
    /// against the budget before a backup.
    pub(crate) average_cost: AtomicU64,
    /// Whether the backend tells its pages' sizes.
    pub(crate) sizes_known: AtomicBool,
    /// Run after a policy step when pages left the tier since the last.
    pub(crate) maintenance: Option<Box<dyn Fn() + Send + Sync>>,
    /// Pages left the tier (moved or dropped) since maintenance last ran.
    pub(crate) vacated: AtomicBool,
    /// Pages the policy moved out since it last halved the tier's heat.
    pub(crate) moved_since_aging: AtomicU64,
    /// The count of restores (all tiers) when the policy last halved the
    /// tier's heat.
    pub(crate) restores_at_aging: AtomicU64,
    /// The heat of the page the policy would move out next (its coldest
    /// left), as of its last run over the tier: a page below is let into
    /// it only if it is hotter (TinyLFU's admission test).
    pub(crate) victim_heat: AtomicU8,
    /// Pages in the main FIFO of [`Policy::S3Fifo`](crate::Policy::S3Fifo):
    /// as of its last run over the tier, plus promotions since.
    pub(crate) main_pages: AtomicU64,
}

impl Tier {
    /// A tier over `backend` (any backend, layers and tiered backends included).
    pub fn new(backend: impl BackupBackend + 'static) -> Self {
        Tier {
            backend: Box::new(backend),
            budget: None,
            counters: TierCounters::default(),
            average_cost: AtomicU64::new(PAGE),
            sizes_known: AtomicBool::new(false),
            maintenance: None,
            vacated: AtomicBool::new(false),
            moved_since_aging: AtomicU64::new(0),
            restores_at_aging: AtomicU64::new(0),
            victim_heat: AtomicU8::new(0),
            main_pages: AtomicU64::new(0),
        }
    }

    /// With a budget of `bytes`: the policy keeps the pages counted in this
    /// tier between the watermarks of it, and a backup that would take the
    /// tier past it goes to a tier below. Ignored on the last tier.
    ///
    /// A budget below one page's cost (zero included) makes the tier a
    /// last resort: backups go below, nothing is promoted into it, and it
    /// takes pages only when every tier below refuses them (full or
    /// failing), from where the policy moves them down again.
    pub fn with_budget(mut self, bytes: u64) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// With `maintenance` run by the policy after a step when pages left the
    /// tier since the last one: for a backend whose space comes back only
    /// when asked, its [`maintain`](BackupBackend::maintain) (the compaction
    /// of a compressed arena, for one). The policy thread, or the caller of
    /// [`Tiered::run_policy_step`](crate::Tiered::run_policy_step), runs it.
    pub fn with_maintenance(mut self, maintenance: impl Fn() + Send + Sync + 'static) -> Self {
        self.maintenance = Some(Box::new(maintenance));
        self
    }

    /// The tier's backend.
    pub fn backend(&self) -> &dyn BackupBackend {
        &*self.backend
    }

    /// The cost to count for `handle`, a page just stored in this tier, and
    /// whether that is its real size.
    pub(crate) fn cost_of(&self, handle: Handle) -> (u32, bool) {
        match self.backend.stored_size(handle) {
            Some(bytes) => {
                self.sizes_known.store(true, Ordering::Relaxed);
                (bytes.min(u64::from(u32::MAX)) as u32, true)
            }
            None => (self.average_cost.load(Ordering::Relaxed) as u32, false),
        }
    }

    /// Notes that a page left the tier (one shared write per maintenance run).
    pub(crate) fn vacate(&self) {
        if self.maintenance.is_some() && !self.vacated.load(Ordering::Relaxed) {
            self.vacated.store(true, Ordering::Relaxed);
        }
    }

    /// `fraction` of the budget in bytes (`None` without a budget).
    pub(crate) fn mark(&self, fraction: f64) -> Option<u64> {
        self.budget.map(|budget| (budget as f64 * fraction) as u64)
    }

    /// Whether the tier holds more than `fraction` of its budget.
    pub(crate) fn above(&self, fraction: f64) -> bool {
        self.mark(fraction).is_some_and(|mark| self.counters.held() > mark)
    }
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tier")
            .field("backend", &self.backend)
            .field("budget", &self.budget)
            .field("counters", &self.counters)
            .field("maintenance", &self.maintenance.is_some())
            .finish_non_exhaustive()
    }
}
