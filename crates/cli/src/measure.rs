//! Running one adapter over the corpus: backup (with flush), restore
//! (verified against the corpus), drop; in batches or single pages, on one
//! thread or several.

use std::ops::Range;
use std::time::{Duration, Instant};

use pagebackup::{PAGE_SIZE, Page};

use crate::adapters::{Adapter, Error, Op, Stored};
use crate::report::{self, Role, Row, round_to};

/// How the pages are handed to the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode {
    /// Pages per call (1: single-page calls).
    pub batch: usize,
    /// Threads, each with its own share of the corpus.
    pub threads: usize,
}

/// Figures of one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OpFigures {
    /// The operation.
    pub op: Op,
    /// Corpus bytes per second of wall time, in GB/s.
    pub gbps: f64,
    /// Median time per page of a call, in microseconds.
    pub p50_us: f64,
    /// 99th percentile time per page of a call, in microseconds.
    pub p99_us: f64,
}

/// One adapter's figures in one mode.
#[derive(Debug, Clone)]
pub struct Run {
    /// The adapter's name.
    pub adapter: String,
    /// The mode.
    pub mode: Mode,
    /// Backup, restore and drop.
    pub ops: Vec<OpFigures>,
    /// Bytes the backed-up corpus took, if the adapter can tell.
    pub footprint: Option<u64>,
    /// Pages in the corpus.
    pub pages: usize,
    /// Wall time of the timed windows, over every round.
    pub windows: Duration,
    /// Time inside the adapter's calls, over every round: in each window,
    /// the calls of its busiest thread.
    pub in_calls: Duration,
}

impl Run {
    /// The figures of `op`.
    pub fn op(&self, op: Op) -> &OpFigures {
        self.ops.iter().find(|f| f.op == op).expect("every run times every op")
    }

    /// Original bytes per byte of footprint.
    pub fn effective_ratio(&self) -> Option<f64> {
        self.footprint
            .filter(|&f| f > 0)
            .map(|f| (self.pages * PAGE_SIZE) as f64 / f as f64)
    }
}

/// What one thread did in one operation.
#[derive(Default)]
struct Part {
    stored: Vec<(usize, Stored)>,
    per_page: Vec<Duration>,
    in_calls: Duration,
    unticked: u64,
}

/// What a run tells of its progress: pages done; an error asks it to stop.
type Tick<'a> = dyn Fn(u64) -> Result<(), Error> + Sync + 'a;

/// Pages between two calls of a run's [`Tick`]: often enough for a
/// progress bar and a prompt stop, rarely enough to cost nothing.
const TICK_PAGES: u64 = 1024;

impl Part {
    /// Counts a call of `pages` pages that took `took`, and tells `tick`
    /// every [`TICK_PAGES`] pages.
    fn record(&mut self, took: Duration, pages: usize, tick: &Tick<'_>) -> Result<(), Error> {
        self.per_page.push(took / pages as u32);
        self.in_calls += took;
        self.unticked += pages as u64;
        if self.unticked >= TICK_PAGES {
            tick(std::mem::take(&mut self.unticked))?;
        }
        Ok(())
    }

    /// Tells `tick` of the pages not yet told.
    fn done(mut self, tick: &Tick<'_>) -> Result<Part, Error> {
        tick(std::mem::take(&mut self.unticked))?;
        Ok(self)
    }
}

/// The time in calls of a window: its busiest thread's.
fn in_calls(parts: &[Part]) -> Duration {
    parts.iter().map(|p| p.in_calls).max().unwrap_or_default()
}

/// Pages of the corpus one later round verifies: one in this many (a
/// different share each round), so that checking does not cost as much as
/// what it checks. The first round verifies every page.
const SAMPLE: usize = 8;

/// A buffer of `pages` pages to restore into, every page faulted in, so
/// that no round's restores pay for its page faults.
pub fn restore_buffer(pages: usize) -> Box<[Page]> {
    let mut out = Page::new_boxed_slice(pages);
    for page in out.iter_mut() {
        page.0[0] = 1;
    }
    out
}

/// Runs `adapter` over `corpus` in `mode`, `rounds` times, restoring into
/// `out` (a [`restore_buffer`] as long as the corpus), and keeps each
/// operation's best round. The first round verifies every restored page
/// and takes the footprint; later rounds verify one page in `SAMPLE` (8).
/// `tick` is told of every batch done; an error from it (a request to
/// stop) ends the run with that error.
pub fn run(
    adapter: &dyn Adapter,
    corpus: &[Page],
    out: &mut [Page],
    mode: Mode,
    rounds: usize,
    tick: &Tick<'_>,
) -> Result<Run, Error> {
    if out.len() < corpus.len() {
        return Err(format!("a restore buffer of {} pages for {} pages", out.len(), corpus.len()).into());
    }
    let mut best: Option<Run> = None;
    for n in 0..rounds.max(1) {
        let run = round(adapter, corpus, out, mode, n, tick)?;
        best = Some(match best {
            None => run,
            Some(mut b) => {
                for (kept, new) in b.ops.iter_mut().zip(run.ops) {
                    if new.gbps > kept.gbps {
                        *kept = new;
                    }
                }
                b.windows += run.windows;
                b.in_calls += run.in_calls;
                b
            }
        });
    }
    Ok(best.expect("at least one round"))
}

fn shares(n: usize, threads: usize) -> Vec<Range<usize>> {
    let threads = threads.clamp(1, n.max(1));
    (0..threads).map(|t| t * n / threads..(t + 1) * n / threads).collect()
}

fn figures(op: Op, bytes: usize, wall: Duration, parts: &[Part]) -> OpFigures {
    let mut per_page: Vec<f64> = parts
        .iter()
        .flat_map(|p| &p.per_page)
        .map(|d| d.as_secs_f64() * 1e6)
        .collect();
    // A selection, not a sort: the bench's own time stays small.
    let mut pct = |q: f64| match per_page.len() {
        0 => 0.0,
        n => {
            *per_page
                .select_nth_unstable_by(((n - 1) as f64 * q).round() as usize, f64::total_cmp)
                .1
        }
    };
    let (p50, p99) = (pct(0.5), pct(0.99));
    OpFigures {
        op,
        gbps: bytes as f64 / wall.as_secs_f64().max(1e-9) / 1e9,
        p50_us: p50,
        p99_us: p99,
    }
}

/// Runs `work` on each share, the first on this thread and each other on a
/// thread of its own (so that a single-threaded run stays on one thread,
/// as a real caller would); returns the parts and the wall time.
fn timed<T: Send>(
    shares: Vec<T>,
    work: impl Fn(T) -> Result<Part, Error> + Sync,
) -> Result<(Vec<Part>, Duration), Error> {
    let start = Instant::now();
    let parts: Vec<Result<Part, Error>> = std::thread::scope(|s| {
        let mut shares = shares.into_iter();
        let first = shares.next();
        let others: Vec<_> = shares.map(|share| s.spawn(|| work(share))).collect();
        let mut parts: Vec<Result<Part, Error>> = first.into_iter().map(&work).collect();
        parts.extend(
            others
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a benchmark thread panicked".into()))),
        );
        parts
    });
    let wall = start.elapsed();
    Ok((parts.into_iter().collect::<Result<_, _>>()?, wall))
}

fn round(
    adapter: &dyn Adapter,
    corpus: &[Page],
    out: &mut [Page],
    mode: Mode,
    n: usize,
    tick: &Tick<'_>,
) -> Result<Run, Error> {
    let bytes = corpus.len() * PAGE_SIZE;
    let batch = mode.batch.max(1);
    let (backed, mut wall) = timed(shares(corpus.len(), mode.threads), |share| {
        let mut part = Part::default();
        let mut refs: Vec<&Page> = Vec::with_capacity(batch);
        for start in share.clone().step_by(batch) {
            let end = (start + batch).min(share.end);
            refs.clear();
            refs.extend(&corpus[start..end]);
            let t = Instant::now();
            let stored = adapter.backup(&refs, start as u64)?;
            part.record(t.elapsed(), end - start, tick)?;
            part.stored.push((start, stored));
        }
        part.done(tick)
    })?;
    let flush = Instant::now();
    adapter.flush()?;
    let flushed = flush.elapsed();
    wall += flushed;
    let mut windows = wall;
    let mut calls = in_calls(&backed) + flushed;
    let backup = figures(Op::Backup, bytes, wall, &backed);
    // A backend's stats can be costly (shmem reads smaps): once per run.
    let footprint = if n == 0 { adapter.footprint() } else { None };

    // Each thread restores its own batches into its own stretch of `out`.
    let mut rest = &mut out[..];
    let mut jobs = Vec::new();
    let mut offset = 0;
    for part in &backed {
        let len = part.stored.iter().map(|(_, s)| stored_len(s)).sum::<usize>();
        let (mine, tail) = rest.split_at_mut(len);
        jobs.push((offset, mine, part));
        rest = tail;
        offset += len;
    }
    let (restored, wall) = timed(jobs, |(base, dsts, part)| {
        let mut timing = Part::default();
        for (start, stored) in &part.stored {
            let len = stored_len(stored);
            let mut refs: Vec<&mut Page> = dsts[start - base..start - base + len].iter_mut().collect();
            let t = Instant::now();
            adapter.restore(stored, &mut refs)?;
            timing.record(t.elapsed(), len, tick)?;
        }
        timing.done(tick)
    })?;
    windows += wall;
    calls += in_calls(&restored);
    let restore = figures(Op::Restore, bytes, wall, &restored);
    let (first, step) = if n == 0 { (0, 1) } else { (n % SAMPLE, SAMPLE) };
    if let Some(i) = (first..corpus.len()).step_by(step).find(|&i| out[i] != corpus[i]) {
        return Err(format!("{}: restored page {i} differs from the original", adapter.name()).into());
    }

    let (dropped, wall) = timed(backed, |part| {
        let mut timing = Part::default();
        for (_, stored) in part.stored {
            let len = stored_len(&stored);
            let t = Instant::now();
            adapter.release(stored)?;
            timing.record(t.elapsed(), len, tick)?;
        }
        timing.done(tick)
    })?;
    windows += wall;
    calls += in_calls(&dropped);
    let drop = figures(Op::Drop, bytes, wall, &dropped);
    Ok(Run {
        adapter: adapter.name().to_string(),
        mode,
        ops: vec![backup, restore, drop],
        footprint,
        pages: corpus.len(),
        windows,
        in_calls: calls,
    })
}

/// The report rows of `runs`: one per adapter, mode and operation.
/// `is_baseline` tells baselines from the backends asked for; `baseline`
/// names each backend's baseline for an op, whose figures in the same mode
/// the row is compared with.
pub fn rows(
    runs: &[Run],
    is_baseline: impl Fn(&str) -> bool,
    baseline: impl Fn(&str, Op) -> Option<String>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for run in runs {
        for f in &run.ops {
            let vs = baseline(&run.adapter, f.op);
            let base = vs.as_ref().and_then(|name| {
                runs.iter()
                    .find(|r| r.adapter == *name && r.mode == run.mode)
                    .map(|r| r.op(f.op).gbps)
            });
            let (backup, drop) = (f.op == Op::Backup, f.op == Op::Drop);
            let role = match is_baseline(&run.adapter) {
                true => Role::Baseline,
                false => Role::Backend,
            };
            let mut row = Row::new(&run.adapter, role, report::Mode::Plain);
            row.op = Some(f.op);
            row.threads = Some(run.mode.threads);
            row.batch = Some(run.mode.batch);
            row.pages = Some(run.pages);
            row.gbps = (!drop).then(|| round_to(f.gbps, 3));
            row.ops_per_s = drop.then(|| (f.gbps * 1e9 / PAGE_SIZE as f64).round());
            row.p50_us = Some(round_to(f.p50_us, 3));
            row.p99_us = Some(round_to(f.p99_us, 3));
            row.effective_ratio = run.effective_ratio().filter(|_| backup).map(|r| round_to(r, 3));
            row.memory_bytes = run.footprint.filter(|_| backup);
            row.speed_ratio = base.filter(|&b| b > 0.0).map(|b| round_to(f.gbps / b, 3));
            row.vs = base.and(vs).map(|v| report::shown(&v));
            rows.push(row);
        }
    }
    rows
}

fn stored_len(stored: &Stored) -> usize {
    match stored {
        Stored::Handles(h) => h.len(),
        Stored::Slots { count, .. } => *count,
        Stored::Compressed { lens, .. } => lens.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::{Prefaulted, RawCodec};

    #[test]
    fn every_op_is_timed_and_every_page_verified() {
        let corpus = crate::corpus::Corpus::built_in(256);
        for adapter in [
            Box::new(Prefaulted::new(256)) as Box<dyn Adapter>,
            Box::new(RawCodec::zstd(1)),
        ] {
            for mode in [
                Mode { batch: 64, threads: 1 },
                Mode { batch: 1, threads: 2 },
                Mode { batch: 7, threads: 3 },
            ] {
                let mut out = restore_buffer(256);
                let run = run(&*adapter, &corpus.pages, &mut out, mode, 3, &|_| Ok(())).unwrap();
                assert_eq!(run.ops.len(), 3);
                for f in &run.ops {
                    assert!(f.gbps > 0.0 && f.p99_us >= f.p50_us, "{f:?}");
                }
                assert!(run.effective_ratio().is_some());
            }
        }
    }

    #[test]
    fn shares_cover_the_corpus() {
        assert_eq!(shares(10, 3), [0..3, 3..6, 6..10]);
        assert_eq!(shares(2, 8), [0..1, 1..2]);
    }
}
