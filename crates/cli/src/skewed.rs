//! Skewed access replay (`bench --working-set N --hot 20/80`): a working set
//! backed up once, then restores of which a hot share of the pages takes
//! most, so that a tiered backend's policy matters. Every backend runs the
//! same pages and the same restore sequence in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapters::Error;
use crate::report::{Mode, Role, Row, Skew, TierSplit, round_to, shown};
use pagebackup::tiered::Tiered;
use pagebackup::{BackupBackend, BackupFlags, Handle, PAGE_SIZE, Page};
use pagebackup_testkit::SplitMix64;

impl Skew {
    /// `working_set` pages with the pattern `HOT/RESTORES` in percent
    /// (`20/80`: 20% of pages take 80% of restores), and `restores` restores.
    pub fn parse(working_set: usize, pattern: &str, restores: usize) -> Result<Skew, Error> {
        let bad = || format!("--hot {pattern}: expected HOT/RESTORES in percent, such as 20/80");
        let (pages, share) = pattern.split_once('/').ok_or_else(bad)?;
        let percent = |s: &str| {
            s.trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| (1..=100).contains(&p))
                .map(|p| f64::from(p) / 100.0)
        };
        Ok(Skew {
            working_set,
            hot_pages: percent(pages).ok_or_else(bad)?,
            hot_restores: percent(share).ok_or_else(bad)?,
            restores,
        })
    }

    fn hot_count(&self) -> usize {
        ((self.working_set as f64 * self.hot_pages) as usize).clamp(1, self.working_set)
    }

    /// The restore sequence: page indices, hot ones (below `hot_count`
    /// after the shuffle `order`) with probability `hot_restores`.
    fn sequence(&self, order: &[usize], seed: u64) -> Vec<(usize, bool)> {
        let hot = self.hot_count();
        let cold = self.working_set - hot;
        let mut rng = SplitMix64::new(seed);
        (0..self.restores)
            .map(|_| {
                let is_hot = cold == 0 || (rng.next_u64() % 10_000) as f64 / 10_000.0 < self.hot_restores;
                let k = if is_hot {
                    rng.next_u64() as usize % hot
                } else {
                    hot + rng.next_u64() as usize % cold
                };
                (order[k], is_hot)
            })
            .collect()
    }
}

/// One backend's figures on the skewed replay.
#[derive(Debug, Clone)]
pub struct SkewRun {
    /// The backend spec.
    pub backend: String,
    /// Bytes of RAM the backend used after the replay (`memory_used`).
    pub ram_bytes: u64,
    /// The sum of the upper tiers' budgets (tiered specs only).
    pub budget_bytes: Option<u64>,
    /// The highest `memory_used` seen in samples during the replay.
    pub peak_ram_bytes: u64,
    /// Original bytes per byte of RAM.
    pub ram_ratio: f64,
    /// Original bytes per byte of RAM and storage (`max(memory_used, stored_bytes)`).
    pub ratio: f64,
    /// Hot-page restores, GB/s of pages.
    pub hot_gbps: f64,
    /// Cold-page restores, GB/s of pages.
    pub cold_gbps: f64,
    /// Pages moved down and up during the whole run (tiered specs only).
    pub moved: Option<(u64, u64)>,
    /// Pages per tier at the end (tiered specs only).
    pub tier_pages: Vec<u64>,
    /// Bytes of RAM per tier at the end (tiered specs only).
    pub tier_ram_bytes: Vec<u64>,
    /// The share of measured hot restores served by the first tier
    /// (tiered specs only).
    pub hot_from_first: Option<f64>,
    /// Restores per second in the measured pass, hot and cold together.
    pub restores_per_s: f64,
    /// Restores verified against the corpus.
    pub verified: u64,
}

/// Runs the replay for each spec, `rounds` times each (the best hot and
/// cold figures are kept; RAM and ratio are from the last round).
pub fn bench(specs: &[String], corpus: &[Page], skew: Skew, rounds: usize) -> Result<Vec<SkewRun>, Error> {
    let mut runs = Vec::new();
    for spec in specs {
        let mut best: Option<SkewRun> = None;
        for round in 0..rounds.max(1) {
            let run = replay(spec, corpus, skew, round as u64)
                .map_err(|e| format!("--backend {}: {}", shown(spec), shown(&crate::adapters::report(&*e))))?;
            best = Some(match best {
                Some(b) => SkewRun {
                    hot_gbps: b.hot_gbps.max(run.hot_gbps),
                    cold_gbps: b.cold_gbps.max(run.cold_gbps),
                    peak_ram_bytes: b.peak_ram_bytes.max(run.peak_ram_bytes),
                    restores_per_s: b.restores_per_s.max(run.restores_per_s),
                    ..run
                },
                None => run,
            });
        }
        runs.extend(best);
    }
    Ok(runs)
}

/// The replay on one fresh backend: back up the working set, warm up with
/// one pass of the sequence, let the policy settle, then time a second pass,
/// hot and cold restores apart. Every restore is verified; every page is
/// dropped in the end and the backend must hold nothing.
pub fn replay(spec: &str, corpus: &[Page], skew: Skew, seed: u64) -> Result<SkewRun, Error> {
    let (backend, tiered): (Box<dyn BackupBackend>, Option<Arc<Tiered>>) = if spec.starts_with("tiered") {
        let t = Arc::new(pagebackup::open_tiered(spec)?);
        (Box::new(Arc::clone(&t)), Some(t))
    } else {
        (pagebackup::open(spec)?, None)
    };
    let page = |i: usize| &corpus[i % corpus.len()];
    let mut handles: Vec<Handle> = Vec::with_capacity(skew.working_set);
    let mut peak = 0u64;
    for first in (0..skew.working_set).step_by(64) {
        let pages: Vec<&Page> = (first..skew.working_set.min(first + 64)).map(page).collect();
        backend.backup_pages(&pages, first as u64, BackupFlags::NONE, &mut handles)?;
        if first % 4096 == 0 {
            peak = peak.max(backend.stats().memory_used);
        }
    }
    backend.flush()?;
    let mut order: Vec<usize> = (0..skew.working_set).collect();
    let mut rng = SplitMix64::new(0x5ca1_ab1e);
    for k in (1..order.len()).rev() {
        order.swap(k, rng.next_u64() as usize % (k + 1));
    }
    let mut dst = Page::new_boxed();
    let mut verified = 0;
    let mut times = [Duration::ZERO; 2];
    let mut counts = [0u64; 2];
    let mut hot_from_first = 0u64;
    for pass in 0..2 {
        for (n, (k, hot)) in skew.sequence(&order, seed * 2 + pass).into_iter().enumerate() {
            if pass == 1 && hot && tiered.as_ref().is_some_and(|t| t.tier_of(handles[k]) == Some(0)) {
                hot_from_first += 1;
            }
            let start = Instant::now();
            backend.copy_page(&mut dst, handles[k], None)?;
            let took = start.elapsed();
            if dst.0 != page(k).0 {
                return Err(format!("page {k} restored wrong bytes").into());
            }
            verified += 1;
            if pass == 1 {
                times[usize::from(hot)] += took;
                counts[usize::from(hot)] += 1;
            }
            if n % 4096 == 0 {
                peak = peak.max(backend.stats().memory_used);
            }
        }
        if let Some(t) = &tiered {
            // Let the policy act on what the pass made hot and cold.
            t.run_policy_step();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let stats = backend.stats();
    peak = peak.max(stats.memory_used);
    let original = (skew.working_set * PAGE_SIZE) as f64;
    let gbps = |i: usize| (counts[i] * PAGE_SIZE as u64) as f64 / times[i].as_secs_f64().max(1e-9) / 1e9;
    let tier_stats = tiered.as_ref().map(|t| t.tier_stats()).unwrap_or_default();
    let run = SkewRun {
        backend: spec.to_string(),
        ram_bytes: stats.memory_used,
        budget_bytes: tiered
            .is_some()
            .then(|| tier_stats.iter().filter_map(|s| s.budget).sum()),
        peak_ram_bytes: peak,
        ram_ratio: original / stats.memory_used.max(1) as f64,
        ratio: original / stats.memory_used.max(stats.stored_bytes).max(1) as f64,
        hot_gbps: gbps(1),
        cold_gbps: gbps(0),
        moved: tiered.is_some().then(|| {
            let down = tier_stats.iter().map(|s| s.moved_down).sum();
            let up = tier_stats.iter().map(|s| s.moved_up).sum();
            (down, up)
        }),
        tier_pages: tier_stats.iter().map(|s| s.pages).collect(),
        tier_ram_bytes: tier_stats.iter().map(|s| s.backend.memory_used).collect(),
        hot_from_first: tiered
            .is_some()
            .then(|| hot_from_first as f64 / counts[1].max(1) as f64),
        restores_per_s: (counts[0] + counts[1]) as f64 / (times[0] + times[1]).as_secs_f64().max(1e-9),
        verified,
    };
    backend.drop_handles(&handles)?;
    let left = backend.stats().stored_pages;
    if left != 0 {
        return Err(format!("{left} pages held after every drop").into());
    }
    Ok(run)
}

impl SkewRun {
    /// The report row of this run.
    pub fn row(&self, skew: &Skew) -> Row {
        let mut row = Row::new(&self.backend, Role::Backend, Mode::WorkingSet);
        row.op = Some(crate::report::Op::Restore);
        row.batch = Some(1);
        row.pages = Some(skew.working_set);
        row.ram_bytes = Some(self.ram_bytes);
        row.peak_ram_bytes = Some(self.peak_ram_bytes);
        row.budget_bytes = self.budget_bytes;
        row.ram_ratio = Some(round_to(self.ram_ratio, 3));
        row.effective_ratio = Some(round_to(self.ratio, 3));
        row.hot_gbps = Some(round_to(self.hot_gbps, 3));
        row.cold_gbps = Some(round_to(self.cold_gbps, 3));
        row.restores_per_s = Some(self.restores_per_s.round());
        row.moved_down = self.moved.map(|m| m.0);
        row.moved_up = self.moved.map(|m| m.1);
        row.hot_from_first = self.hot_from_first.map(|f| round_to(f, 3));
        row.tiers = (!self.tier_pages.is_empty()).then(|| {
            self.tier_pages
                .iter()
                .zip(&self.tier_ram_bytes)
                .map(|(&pages, &ram_bytes)| TierSplit { pages, ram_bytes })
                .collect()
        });
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_parses_and_the_sequence_follows_it() {
        let skew = Skew::parse(1000, "20/80", 20_000).unwrap();
        assert_eq!((skew.hot_pages, skew.hot_restores), (0.2, 0.8));
        for bad in ["20", "0/80", "20/101", "a/b", "20/80/1"] {
            assert!(Skew::parse(1000, bad, 1).is_err(), "{bad}");
        }
        let order: Vec<usize> = (0..1000).rev().collect();
        let sequence = skew.sequence(&order, 1);
        assert_eq!(sequence.len(), 20_000);
        let hot = sequence.iter().filter(|(_, hot)| *hot).count() as f64 / 20_000.0;
        assert!((0.78..0.82).contains(&hot), "{hot}");
        // Hot pages are the first 200 of the order: pages 999 down to 800.
        assert!(sequence.iter().all(|&(k, hot)| hot == (k >= 800)));
    }
}
