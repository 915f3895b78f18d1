//! The model-based checker: a seeded random sequence of operations run
//! against a backend and a simple model, stopping at the first divergence.

use std::fmt;

use pagebackup_core::{BackupBackend, BackupError, BackupFlags, ErrorKind, Handle, Interrupt, Page};

use crate::{PageSpec, SplitMix64};

/// How long and how wide a model run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// Seed of the operation sequence and of the page contents.
    pub seed: u64,
    /// Operations to run.
    pub ops: usize,
    /// Live pages above which the run drops pages rather than adding more.
    pub max_live: usize,
}

/// What a model run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelReport {
    /// Operations run.
    pub ops: usize,
    /// Pages backed up (single and batch).
    pub backups: u64,
    /// Pages restored and verified.
    pub restores: u64,
    /// Pages dropped.
    pub drops: u64,
    /// Stale handles checked to be rejected.
    pub stale_rejected: u64,
    /// Backups refused with `NoSpace`.
    pub no_space: u64,
    /// Restores stopped by an interrupt.
    pub interrupted: u64,
}

impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations: {} backups, {} restores verified, {} drops, {} stale handles rejected, {} NoSpace, {} interrupted",
            self.ops, self.backups, self.restores, self.drops, self.stale_rejected, self.no_space, self.interrupted
        )
    }
}

/// The first point where the backend and the model disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The backend's name.
    pub backend: &'static str,
    /// The run's seed: rerun with it to reproduce.
    pub seed: u64,
    /// Index of the diverging operation.
    pub op_index: usize,
    /// The operation.
    pub op: String,
    /// What differed.
    pub detail: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} backend diverged from the model at operation #{} ({}) of seed {:#x}: {}",
            self.backend, self.op_index, self.op, self.seed, self.detail
        )
    }
}

impl std::error::Error for Divergence {}

struct Run<'a> {
    b: &'a dyn BackupBackend,
    rng: SplitMix64,
    config: ModelConfig,
    live: Vec<(Handle, PageSpec)>,
    stale: Vec<Handle>,
    next_page: u64,
    base_pages: u64,
    report: ModelReport,
    op_index: usize,
    op: &'static str,
    scratch: Box<[Page]>,
}

const MAX_BATCH: usize = 16;
const STALE_KEPT: usize = 256;

/// Runs `config.ops` random operations (single and batch backups, restores
/// and drops, interrupted restores, uses of dropped handles, flushes, stats)
/// against `b` and a model of what it should hold, verifying every restored
/// byte. Drops every page it backed up before it returns.
///
/// The backend may hold other pages; they are left alone. `NoSpace` is
/// accepted from a backup (a limited backend) if it left nothing behind.
pub fn check_model(b: &dyn BackupBackend, config: &ModelConfig) -> Result<ModelReport, Divergence> {
    let mut run = Run {
        b,
        rng: SplitMix64::new(config.seed),
        config: *config,
        live: Vec::new(),
        stale: Vec::new(),
        next_page: 0,
        base_pages: b.stats().stored_pages,
        report: ModelReport::default(),
        op_index: 0,
        op: "start",
        scratch: Page::new_boxed_slice(MAX_BATCH),
    };
    for i in 0..config.ops {
        run.op_index = i;
        run.step()?;
    }
    run.op_index = config.ops;
    run.op = "final drop";
    let handles: Vec<Handle> = run.live.drain(..).map(|(h, _)| h).collect();
    let dropped = handles.len() as u64;
    b.drop_handles(&handles)
        .map_err(|e| run.diverge(format!("dropping the remaining pages: {e}")))?;
    run.report.drops += dropped;
    run.check_count()?;
    run.report.ops = config.ops;
    Ok(run.report)
}

impl Run<'_> {
    fn diverge(&self, detail: String) -> Divergence {
        Divergence {
            backend: self.b.name(),
            seed: self.config.seed,
            op_index: self.op_index,
            op: self.op.to_string(),
            detail,
        }
    }

    fn step(&mut self) -> Result<(), Divergence> {
        let full = self.live.len() >= self.config.max_live;
        let roll = self.rng.below(100);
        match roll {
            _ if self.live.is_empty() => self.backup_one(),
            0..=19 if !full => self.backup_one(),
            20..=29 if !full => self.backup_batch(),
            0..=29 => self.drop_batch(),
            30..=49 => self.copy_one(),
            50..=59 => self.copy_batch(),
            60..=74 => self.drop_one(),
            75..=79 => self.drop_batch(),
            80..=86 => self.use_stale(),
            87..=89 => self.interrupted_copy(),
            90..=91 => {
                self.op = "flush";
                self.b.flush().map_err(|e| self.diverge(format!("flush failed: {e}")))
            }
            _ => {
                self.op = "stats";
                self.check_count()
            }
        }
    }

    fn new_spec(&mut self) -> PageSpec {
        self.next_page += 1;
        PageSpec::mixed(self.config.seed, self.next_page)
    }

    fn flags(&mut self) -> BackupFlags {
        BackupFlags::NONE.with_writeback(self.rng.percent(20))
    }

    fn no_space_ok(&mut self, e: &BackupError) -> Result<(), Divergence> {
        if e.kind() != ErrorKind::NoSpace {
            return Err(self.diverge(format!("backup failed: {e}")));
        }
        self.report.no_space += 1;
        self.check_count()
    }

    fn backup_one(&mut self) -> Result<(), Divergence> {
        self.op = "backup_page";
        let spec = self.new_spec();
        spec.fill(&mut self.scratch[0]);
        let (idx, flags) = (self.rng.below(64), self.flags());
        match self.b.backup_page(&self.scratch[0], idx, flags) {
            Ok(h) => self.add_live(h, spec),
            Err(e) => self.no_space_ok(&e),
        }
    }

    fn backup_batch(&mut self) -> Result<(), Divergence> {
        self.op = "backup_pages";
        let n = 1 + self.rng.index(MAX_BATCH);
        let specs: Vec<PageSpec> = (0..n).map(|_| self.new_spec()).collect();
        for (page, spec) in self.scratch.iter_mut().zip(&specs) {
            spec.fill(page);
        }
        let (idx, flags) = (self.rng.below(64), self.flags());
        let refs: Vec<&Page> = self.scratch[..n].iter().collect();
        let mut handles = Vec::new();
        let result = self.b.backup_pages(&refs, idx, flags, &mut handles);
        if let Err(e) = &result
            && e.completed != handles.len()
        {
            let detail = format!(
                "batch reports {} completed but gave {} handles",
                e.completed,
                handles.len()
            );
            return Err(self.diverge(detail));
        }
        for (h, spec) in handles.into_iter().zip(specs) {
            self.add_live(h, spec)?;
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.no_space_ok(&e.error),
        }
    }

    fn add_live(&mut self, h: Handle, spec: PageSpec) -> Result<(), Divergence> {
        if let Some((_, other)) = self.live.iter().find(|(l, _)| *l == h) {
            return Err(self.diverge(format!("handle {h:?} issued for {spec:?} is still live for {other:?}")));
        }
        self.live.push((h, spec));
        self.report.backups += 1;
        Ok(())
    }

    fn copy_one(&mut self) -> Result<(), Divergence> {
        self.op = "copy_page";
        let (h, spec) = self.live[self.rng.index(self.live.len())];
        self.b
            .copy_page(&mut self.scratch[0], h, None)
            .map_err(|e| self.diverge(format!("copy of live {h:?}: {e}")))?;
        spec.verify(&self.scratch[0]).map_err(|m| self.diverge(m.to_string()))?;
        self.report.restores += 1;
        Ok(())
    }

    fn pick_live(&mut self) -> Vec<(Handle, PageSpec)> {
        let n = (1 + self.rng.index(MAX_BATCH)).min(self.live.len());
        (0..n).map(|_| self.live[self.rng.index(self.live.len())]).collect()
    }

    fn copy_batch(&mut self) -> Result<(), Divergence> {
        self.op = "copy_pages";
        let picked = self.pick_live();
        let handles: Vec<Handle> = picked.iter().map(|&(h, _)| h).collect();
        let mut dsts: Vec<&mut Page> = self.scratch[..picked.len()].iter_mut().collect();
        let result = self.b.copy_pages(&handles, &mut dsts, None);
        result.map_err(|e| self.diverge(format!("copy_pages of live handles: {e}")))?;
        for (page, (_, spec)) in self.scratch.iter().zip(&picked) {
            spec.verify(page).map_err(|m| self.diverge(m.to_string()))?;
        }
        self.report.restores += picked.len() as u64;
        Ok(())
    }

    fn retire(&mut self, pos: usize) -> Handle {
        let (h, _) = self.live.swap_remove(pos);
        if self.stale.len() == STALE_KEPT {
            self.stale.swap_remove(self.rng.index(STALE_KEPT));
        }
        self.stale.push(h);
        self.report.drops += 1;
        h
    }

    fn drop_one(&mut self) -> Result<(), Divergence> {
        self.op = "drop_handle";
        let pos = self.rng.index(self.live.len());
        let h = self.retire(pos);
        self.b
            .drop_handle(h)
            .map_err(|e| self.diverge(format!("drop of live {h:?}: {e}")))
    }

    fn drop_batch(&mut self) -> Result<(), Divergence> {
        self.op = "drop_handles";
        let n = (1 + self.rng.index(MAX_BATCH)).min(self.live.len());
        let handles: Vec<Handle> = (0..n)
            .map(|_| {
                let pos = self.rng.index(self.live.len());
                self.retire(pos)
            })
            .collect();
        self.b
            .drop_handles(&handles)
            .map_err(|e| self.diverge(format!("drop_handles of live handles: {e}")))
    }

    fn use_stale(&mut self) -> Result<(), Divergence> {
        self.op = "use of a dropped handle";
        if self.stale.is_empty() {
            return Ok(());
        }
        let h = self.stale[self.rng.index(self.stale.len())];
        let result = if self.rng.percent(50) {
            self.b.copy_page(&mut self.scratch[0], h, None)
        } else {
            self.b.drop_handle(h)
        };
        match result {
            Err(e) if e.kind() == ErrorKind::InvalidHandle => {
                self.report.stale_rejected += 1;
                Ok(())
            }
            Err(e) => Err(self.diverge(format!(
                "dropped {h:?} gave {:?} instead of InvalidHandle: {e}",
                e.kind()
            ))),
            Ok(()) => Err(self.diverge(format!("dropped {h:?} was accepted"))),
        }
    }

    fn interrupted_copy(&mut self) -> Result<(), Divergence> {
        self.op = "interrupted copy_pages";
        let picked = self.pick_live();
        let handles: Vec<Handle> = picked.iter().map(|&(h, _)| h).collect();
        let intr = Interrupt::new();
        intr.interrupt();
        let mut dsts: Vec<&mut Page> = self.scratch[..picked.len()].iter_mut().collect();
        match self.b.copy_pages(&handles, &mut dsts, Some(&intr)) {
            Err(e) if e.kind() == ErrorKind::Interrupted && e.completed < picked.len() => {
                self.report.interrupted += 1;
                for (page, (_, spec)) in self.scratch.iter().zip(&picked).take(e.completed) {
                    spec.verify(page).map_err(|m| self.diverge(m.to_string()))?;
                }
                Ok(())
            }
            Err(e) => Err(self.diverge(format!("expected Interrupted before the end of the batch: {e}"))),
            Ok(()) => Err(self.diverge("a set interrupt was ignored".into())),
        }
    }

    fn check_count(&self) -> Result<(), Divergence> {
        let held = self.b.stats().stored_pages;
        let expected = self.base_pages + self.live.len() as u64;
        if held != expected {
            return Err(self.diverge(format!("stats().stored_pages is {held}, the model holds {expected}")));
        }
        Ok(())
    }
}
