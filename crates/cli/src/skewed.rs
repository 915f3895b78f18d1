//! Skewed access replay (`bench --working-set N --hot 20/80` or `--zipf
//! 0.99`): a working set backed up once, then restores of which a hot share
//! of the pages takes most, so that a tiered backend's policy matters.
//! Every backend runs the same pages and the same restore sequence in the
//! same run, and a tiered stack runs beside each of its tiers alone, so
//! that its rows say whether stacking pays: hot restores against its first
//! tier alone, RAM against its last tier alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapters::Error;
use crate::report::{Mode, Role, Row, Skew, TierSplit, round_to, shown};
use pagebackup::raw::params::{Spec, split_top_level};
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
            warmup_passes: 1,
            zipf: None,
        })
    }

    /// `working_set` pages restored `restores` times following a Zipf law
    /// of exponent `exponent` over their popularity ranks; the hot pages
    /// are the most popular 20% of ranks, and `hot_restores` is their share
    /// of the restores.
    pub fn zipf(working_set: usize, exponent: f64, restores: usize) -> Result<Skew, Error> {
        if !(exponent.is_finite() && exponent > 0.0 && exponent <= 10.0) {
            return Err(format!("--zipf {exponent}: expected an exponent above 0 and at most 10, such as 0.99").into());
        }
        let mut skew = Skew {
            working_set,
            hot_pages: 0.2,
            hot_restores: 0.0,
            restores,
            warmup_passes: 1,
            zipf: Some(exponent),
        };
        let cdf = skew.zipf_cdf(exponent);
        skew.hot_restores = round_to(cdf.get(skew.hot_count() - 1).copied().unwrap_or(1.0), 4);
        Ok(skew)
    }

    fn hot_count(&self) -> usize {
        ((self.working_set as f64 * self.hot_pages) as usize).clamp(1, self.working_set.max(1))
    }

    /// The cumulative probability of ranks `0..=k` under the Zipf law.
    fn zipf_cdf(&self, exponent: f64) -> Vec<f64> {
        let mut sum = 0.0;
        let mut cdf: Vec<f64> = (0..self.working_set)
            .map(|k| {
                sum += ((k + 1) as f64).powf(-exponent);
                sum
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= sum);
        cdf
    }

    /// The restore sequence: page indices (`order[rank]`), hot for ranks
    /// below `hot_count`: with probability `hot_restores` a hot one for two
    /// classes, or a rank drawn by the Zipf law. Drawn as it is consumed,
    /// so that a long pass takes no memory.
    fn sequence<'a>(&self, order: &'a [usize], seed: u64) -> impl Iterator<Item = (usize, bool)> + 'a {
        let hot = self.hot_count();
        let cold = self.working_set - hot;
        let (working_set, hot_restores) = (self.working_set, self.hot_restores);
        let mut rng = SplitMix64::new(seed);
        let cdf = self.zipf.map(|s| self.zipf_cdf(s));
        (0..self.restores).map(move |_| {
            let rank = match &cdf {
                Some(cdf) => {
                    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    cdf.partition_point(|&c| c < u).min(working_set - 1)
                }
                None => {
                    let is_hot = cold == 0 || (rng.next_u64() % 10_000) as f64 / 10_000.0 < hot_restores;
                    if is_hot {
                        rng.next_u64() as usize % hot
                    } else {
                        hot + rng.next_u64() as usize % cold
                    }
                }
            };
            (order[rank], rank < hot)
        })
    }
}

/// A run the bench makes: a spec, whether it was asked for or is a tier of
/// a stack run alone beside it, and for a stack its first and last tiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The backend spec.
    pub spec: String,
    /// A backend asked for, or a tier of a stack run alone (a baseline).
    pub role: Role,
    /// For a tiered stack: the specs of its first and last tiers.
    pub first_last: Option<(String, String)>,
}

/// The runs for `specs`: each tiered stack preceded by each of its tiers
/// alone (once, unless asked for anyway), and run at each of `budgets`
/// (the first tier's budget; the spec's own without any). Other specs
/// ignore `budgets`.
pub fn plan(specs: &[String], budgets: &[u64]) -> Result<Vec<Planned>, Error> {
    let mut planned: Vec<Planned> = Vec::new();
    let mut add = |spec: String, role: Role, first_last: Option<(String, String)>| match planned
        .iter_mut()
        .find(|p| p.spec == spec)
    {
        Some(p) if role == Role::Backend => p.role = Role::Backend,
        Some(_) => {}
        None => planned.push(Planned { spec, role, first_last }),
    };
    for spec in specs {
        let Some(tiers) = tier_specs(spec)? else {
            add(spec.clone(), Role::Backend, None);
            continue;
        };
        for tier in &tiers {
            add(tier.clone(), Role::Baseline, None);
        }
        let first_last = Some((tiers[0].clone(), tiers[tiers.len() - 1].clone()));
        if budgets.is_empty() {
            add(spec.clone(), Role::Backend, first_last.clone());
        }
        for &budget in budgets {
            add(with_budget(spec, budget)?, Role::Backend, first_last.clone());
        }
    }
    Ok(planned)
}

/// The tier specs of a `tiered:` spec (its `tiers=[...]`, or the tiers it
/// opens with by default); `None` for any other backend.
fn tier_specs(spec: &str) -> Result<Option<Vec<String>>, Error> {
    let parsed = Spec::parse(spec)?;
    if parsed.name != "tiered" {
        return Ok(None);
    }
    let listed = parsed.params.iter().find(|(k, _)| *k == "tiers").and_then(|(_, v)| {
        let inner = v.strip_prefix('[')?.strip_suffix(']')?;
        Some(
            split_top_level('|')(inner)
                .into_iter()
                .map(|t| t.trim().to_string())
                .collect(),
        )
    });
    Ok(Some(match listed {
        Some(tiers) => tiers,
        None => pagebackup::open_tiered(spec)?
            .tiers()
            .iter()
            .map(|t| t.backend().name().to_string())
            .collect(),
    }))
}

/// `spec` (a `tiered:` one) with its first tier's budget set to `bytes`.
fn with_budget(spec: &str, bytes: u64) -> Result<String, Error> {
    let parsed = Spec::parse(spec)?;
    let size = if bytes.is_multiple_of(1024) {
        format!("{}KiB", bytes / 1024)
    } else {
        bytes.to_string()
    };
    let mut params: Vec<String> = parsed
        .params
        .iter()
        .filter(|(k, _)| *k != "budget")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    params.push(format!("budget={size}"));
    Ok(format!("{}:{}", parsed.name, params.join(",")))
}

/// One backend's figures on the skewed replay.
#[derive(Debug, Clone)]
pub struct SkewRun {
    /// The backend spec.
    pub backend: String,
    /// A backend asked for, or a tier of a stack run alone.
    pub role: Role,
    /// For a tiered stack: the specs of its first and last tiers.
    pub first_last: Option<(String, String)>,
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
    /// Pages moved down and up during the measured pass (tiered specs
    /// only): the moves the policy CPU went to.
    pub moved: Option<(u64, u64)>,
    /// Pages per tier at the end (tiered specs only).
    pub tier_pages: Vec<u64>,
    /// Bytes of RAM per tier at the end (tiered specs only).
    pub tier_ram_bytes: Vec<u64>,
    /// Copies each tier keeps of pages promoted above it, at the end
    /// (tiered specs only).
    pub tier_kept: Vec<u64>,
    /// Bytes of the tiered stack's own table at the end (tiered specs only).
    pub table_bytes: Option<u64>,
    /// The share of the measured restores each tier served (tiered specs only).
    pub tier_restores: Vec<f64>,
    /// The mean time of a measured restore each tier served, µs (tiered
    /// specs only).
    pub tier_restore_us: Vec<f64>,
    /// The share of measured hot restores served by the first tier
    /// (tiered specs only).
    pub hot_from_first: Option<f64>,
    /// Restores per second in the measured pass, hot and cold together.
    pub restores_per_s: f64,
    /// Measured restores during which the thread was preempted (another
    /// process ran): left out of the times, so that a loaded machine's
    /// other work is not counted as the backend's.
    pub preempted_restores: u64,
    /// CPU time of the tiered policy thread during the measured pass, in
    /// percent of one core over the pass (tiered specs only, where
    /// `/proc/self/task/*/schedstat` tells it).
    pub policy_cpu_percent: Option<f64>,
    /// Restores verified against the corpus.
    pub verified: u64,
}

/// Runs the replay for each planned run, `rounds` times each, round by
/// round (every run once, then every run again), so that a change in the
/// machine's load touches every row alike; the best hot and cold figures
/// are kept, RAM and ratio are from the last round.
pub fn bench(plan: &[Planned], corpus: &[Page], skew: Skew, rounds: usize) -> Result<Vec<SkewRun>, Error> {
    let mut best: Vec<Option<SkewRun>> = vec![None; plan.len()];
    for round in 0..rounds.max(1) {
        for (planned, best) in plan.iter().zip(best.iter_mut()) {
            let spec = &planned.spec;
            let run = replay(spec, corpus, skew, round as u64)
                .map_err(|e| format!("--backend {}: {}", shown(spec), shown(&crate::adapters::report(&*e))))?;
            let run = SkewRun {
                role: planned.role,
                first_last: planned.first_last.clone(),
                ..run
            };
            *best = Some(match best.take() {
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
    }
    Ok(best.into_iter().flatten().collect())
}

/// The report rows of `runs`, a tiered stack's with its figures over its
/// first and last tiers' alone.
pub fn rows(runs: &[SkewRun], skew: &Skew) -> Vec<Row> {
    let alone = |spec: &str| runs.iter().find(|r| r.backend == spec && r.first_last.is_none());
    runs.iter()
        .map(|run| {
            let mut row = run.row(skew);
            if let Some((first, last)) = &run.first_last {
                let over = |a: f64, b: f64| (b > 0.0).then(|| round_to(a / b, 3));
                if let Some(first) = alone(first) {
                    row.hot_vs_first = over(run.hot_gbps, first.hot_gbps);
                    row.restores_vs_first = over(run.restores_per_s, first.restores_per_s);
                }
                if let (Some(first), Some(last), [from_first, from_last]) =
                    (alone(first), alone(last), run.tier_restores.as_slice())
                {
                    // Time per restore at the split, over the first tier's alone.
                    let ideal = |split: f64, first: f64, last: f64| {
                        (first > 0.0 && last > 0.0).then(|| round_to(1.0 / (split + (1.0 - split) * first / last), 3))
                    };
                    let hot = run.hot_from_first.unwrap_or(0.0);
                    row.ideal_hot_vs_first = ideal(hot, first.hot_gbps, last.hot_gbps);
                    let split = from_first / (from_first + from_last).max(f64::MIN_POSITIVE);
                    row.ideal_restores_vs_first = ideal(split, first.restores_per_s, last.restores_per_s);
                }
                if let Some(last) = alone(last) {
                    row.ram_vs_last = over(run.ram_bytes as f64, last.ram_bytes as f64);
                }
                if let (Some(first), Some(last), [in_first, in_last], Some(table)) =
                    (alone(first), alone(last), run.tier_pages.as_slice(), run.table_bytes)
                {
                    // Each page at its cost in its tier alone, plus the table.
                    let per_page = |r: &SkewRun| r.ram_bytes as f64 / skew.working_set.max(1) as f64;
                    let floor = *in_first as f64 * per_page(first) + *in_last as f64 * per_page(last) + table as f64;
                    row.ideal_ram_vs_last = over(floor, last.ram_bytes as f64);
                }
            }
            row
        })
        .collect()
}

/// The replay on one fresh backend: back up the working set, warm up with
/// `skew.warmup_passes` passes of the sequence (each followed by a policy
/// run and a pause, so that the policy settles), then time one more pass,
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
    let mut timed = [0u64; 2];
    let mut preempted_restores = 0;
    let mut hot_from_first = 0u64;
    let tier_count = tiered.as_ref().map_or(0, |t| t.tiers().len());
    let mut served = vec![0u64; tier_count];
    let mut tier_times = vec![Duration::ZERO; tier_count];
    let mut tier_timed = vec![0u64; tier_count];
    let mut policy_cpu = None;
    let moved = || {
        tiered.as_ref().map(|t| {
            let s = t.tier_stats();
            let down: u64 = s.iter().map(|s| s.moved_down).sum();
            (down, s.iter().map(|s| s.moved_up).sum::<u64>())
        })
    };
    let mut moved_in_pass = None;
    let measured = skew.warmup_passes as u64;
    for pass in 0..=measured {
        let measured_pass = pass == measured;
        let moved_before = moved();
        let sequence = skew.sequence(&order, (seed << 32) + pass);
        let pass_start = (Instant::now(), policy_thread_cpu());
        for (n, (k, hot)) in sequence.enumerate() {
            let tier = tiered.as_ref().and_then(|t| t.tier_of(handles[k]));
            if measured_pass && let Some(tier) = tier {
                served[tier] += 1;
                hot_from_first += u64::from(hot && tier == 0);
            }
            let switches = involuntary_switches();
            let start = Instant::now();
            backend.copy_page(&mut dst, handles[k], None)?;
            let took = start.elapsed();
            let preempted = involuntary_switches() != switches;
            if dst.0 != page(k).0 {
                return Err(format!("page {k} restored wrong bytes").into());
            }
            verified += 1;
            if measured_pass {
                counts[usize::from(hot)] += 1;
                if preempted {
                    // The time another process ran is not the backend's.
                    preempted_restores += 1;
                } else {
                    times[usize::from(hot)] += took;
                    timed[usize::from(hot)] += 1;
                    if let Some(tier) = tier {
                        tier_times[tier] += took;
                        tier_timed[tier] += 1;
                    }
                }
            }
            if n % 4096 == 0 {
                peak = peak.max(backend.stats().memory_used);
            }
        }
        if measured_pass && tiered.is_some() {
            moved_in_pass = moved_before
                .zip(moved())
                .map(|(before, after)| (after.0 - before.0, after.1 - before.1));
            let wall = pass_start.0.elapsed().as_nanos().max(1) as f64;
            policy_cpu = pass_start
                .1
                .zip(policy_thread_cpu())
                .map(|(before, after)| round_to(after.saturating_sub(before) as f64 / wall * 100.0, 2));
        }
        if let Some(t) = tiered.as_ref().filter(|_| !measured_pass) {
            // Let the policy act on what the pass made hot and cold.
            t.run_policy_step();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let stats = backend.stats();
    peak = peak.max(stats.memory_used);
    let original = (skew.working_set * PAGE_SIZE) as f64;
    let gbps = |i: usize| (timed[i] * PAGE_SIZE as u64) as f64 / times[i].as_secs_f64().max(1e-9) / 1e9;
    let tier_stats = tiered.as_ref().map(|t| t.tier_stats()).unwrap_or_default();
    let run = SkewRun {
        backend: spec.to_string(),
        role: Role::Backend,
        first_last: None,
        ram_bytes: stats.memory_used,
        budget_bytes: tiered
            .is_some()
            .then(|| tier_stats.iter().filter_map(|s| s.budget).sum()),
        peak_ram_bytes: peak,
        ram_ratio: original / stats.memory_used.max(1) as f64,
        ratio: original / stats.memory_used.max(stats.stored_bytes).max(1) as f64,
        hot_gbps: gbps(1),
        cold_gbps: gbps(0),
        moved: moved_in_pass,
        tier_pages: tier_stats.iter().map(|s| s.pages).collect(),
        tier_ram_bytes: tier_stats.iter().map(|s| s.backend.memory_used).collect(),
        tier_kept: tier_stats.iter().map(|s| s.kept_pages).collect(),
        table_bytes: tiered.is_some().then(|| {
            let tiers: u64 = tier_stats.iter().map(|s| s.backend.metadata_bytes).sum();
            stats.metadata_bytes.saturating_sub(tiers)
        }),
        tier_restores: served
            .iter()
            .map(|&n| n as f64 / (counts[0] + counts[1]).max(1) as f64)
            .collect(),
        tier_restore_us: tier_times
            .iter()
            .zip(&tier_timed)
            .map(|(t, &n)| t.as_secs_f64() * 1e6 / n.max(1) as f64)
            .collect(),
        hot_from_first: tiered
            .is_some()
            .then(|| hot_from_first as f64 / counts[1].max(1) as f64),
        restores_per_s: (timed[0] + timed[1]) as f64 / (times[0] + times[1]).as_secs_f64().max(1e-9),
        preempted_restores,
        policy_cpu_percent: policy_cpu,
        verified,
    };
    backend.drop_handles(&handles)?;
    let left = backend.stats().stored_pages;
    if left != 0 {
        return Err(format!("{left} pages held after every drop").into());
    }
    Ok(run)
}

/// Times the calling thread was preempted so far (involuntary context
/// switches), 0 where the kernel does not tell.
fn involuntary_switches() -> u64 {
    // SAFETY: rusage is plain integers and timevals, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call to fill.
    let filled = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } == 0;
    if filled { usage.ru_nivcsw as u64 } else { 0 }
}

/// Nanoseconds the tiered policy threads of this process (named
/// `pagebackup-tiered`, which the kernel cuts to 15 bytes) have run, from
/// the scheduler's per-thread figures; `None` where `/proc` does not tell them.
fn policy_thread_cpu() -> Option<u64> {
    let mut total = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let is_policy = std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "pagebackup-tier");
        if !is_policy {
            continue;
        }
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()?;
        total = Some(total.unwrap_or(0) + ns);
    }
    total
}

impl SkewRun {
    /// The report row of this run.
    pub fn row(&self, skew: &Skew) -> Row {
        let mut row = Row::new(&self.backend, self.role, Mode::WorkingSet);
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
        row.preempted_restores = Some(self.preempted_restores);
        row.moved_down = self.moved.map(|m| m.0);
        row.moved_up = self.moved.map(|m| m.1);
        row.hot_from_first = self.hot_from_first.map(|f| round_to(f, 3));
        row.policy_cpu_percent = self.policy_cpu_percent;
        row.tiers = (!self.tier_pages.is_empty()).then(|| {
            self.tier_pages
                .iter()
                .zip(&self.tier_ram_bytes)
                .zip(&self.tier_restores)
                .zip(&self.tier_restore_us)
                .zip(&self.tier_kept)
                .map(|((((&pages, &ram_bytes), &restores), &us), &kept)| TierSplit {
                    pages,
                    ram_bytes,
                    kept_pages: Some(kept),
                    restores: Some(round_to(restores, 4)),
                    restore_us: Some(round_to(us, 3)),
                })
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
        let sequence: Vec<_> = skew.sequence(&order, 1).collect();
        assert_eq!(sequence.len(), 20_000);
        let hot = sequence.iter().filter(|(_, hot)| *hot).count() as f64 / 20_000.0;
        assert!((0.78..0.82).contains(&hot), "{hot}");
        // Hot pages are the first 200 of the order: pages 999 down to 800.
        assert!(sequence.iter().all(|&(k, hot)| hot == (k >= 800)));
    }

    #[test]
    fn a_zipf_sequence_follows_its_law() {
        let skew = Skew::zipf(1000, 0.99, 50_000).unwrap();
        assert_eq!((skew.zipf, skew.hot_pages), (Some(0.99), 0.2));
        // The top 200 of 1000 ranks hold sum(1/k^0.99, k=1..200)/sum(..1000) of the mass.
        let mass = |n: usize| (1..=n).map(|k| (k as f64).powf(-0.99)).sum::<f64>();
        assert!((skew.hot_restores - mass(200) / mass(1000)).abs() < 1e-3, "{skew:?}");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 11.0] {
            assert!(Skew::zipf(1000, bad, 1).is_err(), "{bad}");
        }
        let order: Vec<usize> = (0..1000).collect();
        let sequence: Vec<_> = skew.sequence(&order, 3).collect();
        let count = |k: usize| sequence.iter().filter(|&&(p, _)| p == k).count() as f64;
        // Rank 0 takes 1/mass(1000) of restores, rank 1 about half as many.
        let top = count(0) / 50_000.0;
        assert!((top - 1.0 / mass(1000)).abs() < 0.01, "{top}");
        assert!((1.6..2.4).contains(&(count(0) / count(1))), "{} {}", count(0), count(1));
        let hot = sequence.iter().filter(|(_, hot)| *hot).count() as f64 / 50_000.0;
        assert!((hot - skew.hot_restores).abs() < 0.02, "{hot}");
        assert!(sequence.iter().all(|&(k, hot)| hot == (k < 200)));
    }

    fn run(backend: &str, ram_bytes: u64) -> SkewRun {
        SkewRun {
            backend: backend.into(),
            role: Role::Baseline,
            first_last: None,
            ram_bytes,
            budget_bytes: None,
            peak_ram_bytes: ram_bytes,
            ram_ratio: 1.0,
            ratio: 1.0,
            hot_gbps: 1.0,
            cold_gbps: 1.0,
            moved: None,
            tier_pages: Vec::new(),
            tier_ram_bytes: Vec::new(),
            tier_kept: Vec::new(),
            table_bytes: None,
            tier_restores: Vec::new(),
            tier_restore_us: Vec::new(),
            hot_from_first: None,
            restores_per_s: 1.0,
            preempted_restores: 0,
            policy_cpu_percent: None,
            verified: 0,
        }
    }

    #[test]
    fn the_ram_floor_prices_each_tier_s_pages_as_that_tier_alone_plus_the_table() {
        let skew = Skew::parse(400, "20/80", 1).unwrap();
        // 10 bytes a page in the first tier alone, 5 in the last.
        let (first, last) = (run("a", 4000), run("b", 2000));
        let stack = SkewRun {
            first_last: Some(("a".into(), "b".into())),
            tier_pages: vec![100, 300],
            tier_ram_bytes: vec![1000, 1600],
            tier_restores: vec![0.8, 0.2],
            tier_restore_us: vec![1.0, 3.0],
            tier_kept: vec![0, 40],
            table_bytes: Some(400),
            ..run("tiered", 3000)
        };
        let rows = rows(&[first, last, stack], &skew);
        // 100 * 10 + 300 * 5 + 400 = 2900 bytes, against 2000 for the last alone.
        assert_eq!(
            (rows[2].ram_vs_last, rows[2].ideal_ram_vs_last),
            (Some(1.5), Some(1.45))
        );
        let kept: Vec<_> = rows[2].tiers.iter().flatten().map(|t| t.kept_pages).collect();
        assert_eq!(kept, [Some(0), Some(40)]);
        assert_eq!(rows[0].ideal_ram_vs_last, None, "a tier alone has no floor");
    }

    #[test]
    fn a_stack_runs_beside_its_tiers_alone_at_each_budget() {
        let stack = "tiered:tiers=[compressed:algo=lz4 | compressed:algo=zstd,level=9],budget=1MiB".to_string();
        let plan = plan(&[stack.clone(), "compressed:algo=lz4".into()], &[]).unwrap();
        let shown: Vec<_> = plan.iter().map(|p| (p.spec.as_str(), p.role)).collect();
        assert_eq!(
            shown,
            [
                ("compressed:algo=lz4", Role::Backend),
                ("compressed:algo=zstd,level=9", Role::Baseline),
                (stack.as_str(), Role::Backend),
            ]
        );
        assert_eq!(
            plan[2].first_last,
            Some(("compressed:algo=lz4".into(), "compressed:algo=zstd,level=9".into()))
        );
        let swept = super::plan(&[stack], &[512 << 10, 3000]).unwrap();
        let specs: Vec<_> = swept.iter().skip(2).map(|p| p.spec.as_str()).collect();
        assert_eq!(
            specs,
            [
                "tiered:tiers=[compressed:algo=lz4 | compressed:algo=zstd,level=9],budget=512KiB",
                "tiered:tiers=[compressed:algo=lz4 | compressed:algo=zstd,level=9],budget=3000",
            ]
        );
    }

    #[test]
    fn each_warm_up_pass_replays_the_sequence_before_the_measured_one() {
        let corpus: Vec<Page> = (0..8u8)
            .map(|i| {
                let mut p = Page::zeroed();
                p.0.iter_mut().enumerate().for_each(|(k, b)| *b = i ^ k as u8);
                p
            })
            .collect();
        let stack = "tiered:tiers=[memory|memory],budget=64KiB";
        for warmup_passes in [0, 1, 3] {
            let skew = Skew {
                warmup_passes,
                ..Skew::parse(64, "20/80", 500).unwrap()
            };
            let run = replay(stack, &corpus, skew, 0).unwrap();
            assert_eq!(run.verified, 500 * (warmup_passes as u64 + 1), "{warmup_passes}");
        }
    }
}
