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
    /// Time spent verifying restored pages, over every round.
    pub verifying: Duration,
    /// Time spent reading the adapter's footprint.
    pub stats: Duration,
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

impl Part {
    /// A part for `calls` calls, its lists allocated once, before the
    /// window's clock starts counting them.
    fn with_calls(calls: usize) -> Part {
        Part {
            stored: Vec::with_capacity(calls),
            per_page: Vec::with_capacity(calls),
            ..Part::default()
        }
    }
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

/// A buffer of `pages` pages to restore into, every page faulted in, so
/// that no round's restores pay for its page faults.
pub fn restore_buffer(pages: usize) -> Box<[Page]> {
    let mut out = Page::new_boxed_slice(pages);
    for page in out.iter_mut() {
        page.0[0] = 1;
    }
    out
}

/// The pages a run backs up: the corpus, `times` times over, so that the
/// store holds more than memory would (page `i` is the corpus's page
/// `i % corpus.len()`). Restores go into a buffer as long as the corpus,
/// each thread's batches wrapping around its own stretch of it.
#[derive(Debug, Clone, Copy)]
pub struct Repeated<'a> {
    /// The corpus.
    pub corpus: &'a [Page],
    /// How many times over (at least 1).
    pub times: usize,
}

impl<'a> Repeated<'a> {
    /// The corpus once.
    pub fn once(corpus: &'a [Page]) -> Self {
        Repeated { corpus, times: 1 }
    }

    /// Pages backed up in all.
    pub fn len(&self) -> usize {
        self.corpus.len() * self.times.max(1)
    }

    /// Whether there is nothing to back up.
    pub fn is_empty(&self) -> bool {
        self.corpus.is_empty()
    }

    /// Page `i`.
    fn page(&self, i: usize) -> &'a Page {
        &self.corpus[i % self.corpus.len()]
    }
}

/// Which restored pages a run verifies: the `index`-th of an adapter's `of`
/// runs (one per mode) checks a different `1/of` of the pages, so that
/// every page is verified once per adapter, over all its modes, and every
/// mode's restore path on a share of the pages. Comparing a page reads
/// twice what restoring it from the fastest backends does: verifying each
/// page in every mode cost more than the bench's whole budget of time
/// outside the measured calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// This run's place among the adapter's runs.
    pub index: usize,
    /// The adapter's runs.
    pub of: usize,
}

impl Checks {
    /// Every page, in one run.
    pub const ALL: Checks = Checks { index: 0, of: 1 };
}

/// Round `n` of `rounds` of `adapter` over `pages` in `mode`, restoring
/// into `out` (a [`restore_buffer`] as long as the corpus); [`Best`] keeps
/// each operation's best round. The restored pages `checks` gives the
/// adapter's run in this mode are verified against the corpus, each once
/// over the rounds (each round a different `1/rounds` of them); round 0
/// takes the footprint. `tick` is told of every batch done; an error from
/// it (a request to stop) ends the round with that error. The bench
/// interleaves the rounds of every adapter, so that a slow spell of the
/// machine falls on one round of each rather than on every round of one;
/// writes the round left dirty in the page cache (file baselines and
/// backends) are written back before it returns, untimed, rather than by
/// the kernel's flusher during a later round.
#[expect(clippy::too_many_arguments, reason = "run's arguments and the round's place")]
pub fn round_of(
    adapter: &dyn Adapter,
    pages: Repeated<'_>,
    out: &mut [Page],
    mode: Mode,
    n: usize,
    rounds: usize,
    checks: Checks,
    tick: &Tick<'_>,
) -> Result<Round, Error> {
    if out.len() < pages.corpus.len() {
        return Err(format!(
            "a restore buffer of {} pages for {} pages",
            out.len(),
            pages.corpus.len()
        )
        .into());
    }
    let rounds = rounds.max(1);
    let verify = Checks {
        index: checks.index * rounds + n,
        of: checks.of.max(1) * rounds,
    };
    let (run, times) = round(adapter, pages, out, mode, n, verify, tick)?;
    rustix::fs::sync();
    Ok(Round { run, times })
}

/// One round's figures and per-page times.
pub struct Round {
    run: Run,
    times: Vec<Vec<Duration>>,
}

/// The best round of each operation over the rounds added.
#[derive(Default)]
pub struct Best {
    best: Option<Round>,
}

impl Best {
    /// Keeps the operations of `round` that beat those kept.
    pub fn add(&mut self, round: Round) {
        let Some(kept) = &mut self.best else {
            self.best = Some(round);
            return;
        };
        let Round { run, times } = round;
        for ((op, op_times), (new, new_times)) in kept
            .run
            .ops
            .iter_mut()
            .zip(&mut kept.times)
            .zip(run.ops.into_iter().zip(times))
        {
            if new.gbps > op.gbps {
                (*op, *op_times) = (new, new_times);
            }
        }
        kept.run.windows += run.windows;
        kept.run.in_calls += run.in_calls;
        kept.run.verifying += run.verifying;
        kept.run.stats += run.stats;
    }

    /// The run of the best rounds, with the percentiles of those rounds
    /// (of the kept rounds only: the bench's own time stays small).
    ///
    /// # Panics
    /// If no round was added.
    pub fn finish(self) -> Run {
        let Round { mut run, times } = self.best.expect("at least one round");
        for (f, mut t) in run.ops.iter_mut().zip(times) {
            (f.p50_us, f.p99_us) = percentiles(&mut t);
        }
        run
    }
}

fn shares(n: usize, threads: usize) -> Vec<Range<usize>> {
    let threads = threads.clamp(1, n.max(1));
    (0..threads).map(|t| t * n / threads..(t + 1) * n / threads).collect()
}

/// An operation's throughput over `wall`; its percentiles come later, from
/// the per-page times of the round kept ([`percentiles`]).
fn figures(op: Op, bytes: usize, wall: Duration) -> OpFigures {
    OpFigures {
        op,
        gbps: bytes as f64 / wall.as_secs_f64().max(1e-9) / 1e9,
        p50_us: 0.0,
        p99_us: 0.0,
    }
}

/// Every part's per-page times, in one list.
fn per_page(parts: &mut [Part]) -> Vec<Duration> {
    parts.iter_mut().flat_map(|p| std::mem::take(&mut p.per_page)).collect()
}

/// The median and 99th percentile of `times`, in microseconds.
fn percentiles(times: &mut [Duration]) -> (f64, f64) {
    // A selection, not a sort.
    let mut pct = |q: f64| match times.len() {
        0 => 0.0,
        n => {
            times
                .select_nth_unstable(((n - 1) as f64 * q).round() as usize)
                .1
                .as_secs_f64()
                * 1e6
        }
    };
    (pct(0.5), pct(0.99))
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

/// One round: the run's figures (percentiles still to come) and each
/// operation's per-page times.
fn round(
    adapter: &dyn Adapter,
    pages: Repeated<'_>,
    out: &mut [Page],
    mode: Mode,
    n: usize,
    verify: Checks,
    tick: &Tick<'_>,
) -> Result<(Run, Vec<Vec<Duration>>), Error> {
    let corpus = pages.corpus;
    let bytes = pages.len() * PAGE_SIZE;
    let batch = mode.batch.max(1);
    // Thread t backs up `share` of the pages and restores them into
    // `stretch` of `out`, wrapping (the same ranges when not repeated).
    let stretches = shares(corpus.len(), mode.threads);
    // A batch wraps at most once, onto pages of its own thread's stretch.
    if pages.times > 1 && corpus.len() < mode.threads * batch {
        return Err(format!(
            "a corpus repeated needs at least {batch} pages per thread ({} threads), not {}",
            mode.threads,
            corpus.len()
        )
        .into());
    }
    let (mut backed, mut wall) = timed(shares(pages.len(), mode.threads), |share| {
        let mut part = Part::with_calls(share.len().div_ceil(batch));
        let mut refs: Vec<&Page> = Vec::with_capacity(batch);
        for start in share.clone().step_by(batch) {
            let end = (start + batch).min(share.end);
            refs.clear();
            refs.extend((start..end).map(|i| pages.page(i)));
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
    let backup = figures(Op::Backup, bytes, wall);
    let backup_times = per_page(&mut backed);
    // A backend's stats can be costly (shmem reads smaps): once per run.
    let stats = Instant::now();
    let footprint = if n == 0 { adapter.footprint() } else { None };
    let stats = stats.elapsed();

    // Each thread restores its own batches into its own stretch of `out`.
    let mut rest = &mut out[..];
    let mut jobs = Vec::new();
    for (part, stretch) in backed.iter().zip(&stretches) {
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut(stretch.len());
        let base = part.stored.first().map_or(0, |(start, _)| *start);
        jobs.push((base, mine, part));
        rest = tail;
    }
    let (mut restored, wall) = timed(jobs, |(base, stretch, part)| {
        let mut timing = Part::with_calls(part.stored.len());
        let wrap = stretch.len();
        for (start, stored) in &part.stored {
            let len = stored_len(stored);
            let at = (start - base) % wrap;
            // A batch that passes the stretch's end goes on from its start.
            let (head, tail) = stretch.split_at_mut(at);
            let first = len.min(wrap - at);
            // A single page goes as a slice of one on the stack: no
            // allocation per call in single-page runs.
            let mut one: [&mut Page; 1];
            let mut many: Vec<&mut Page>;
            let refs: &mut [&mut Page] = match &mut tail[..first] {
                [page] if len == 1 => {
                    one = [page];
                    &mut one
                }
                dsts => {
                    many = dsts.iter_mut().chain(&mut head[..len - first]).collect();
                    &mut many
                }
            };
            let t = Instant::now();
            adapter.restore(stored, refs)?;
            timing.record(t.elapsed(), len, tick)?;
        }
        timing.done(tick)
    })?;
    windows += wall;
    calls += in_calls(&restored);
    let restore = figures(Op::Restore, bytes, wall);
    let restore_times = per_page(&mut restored);
    // Verified outside the timed window, so that checking never disturbs
    // what is timed: this round's share of the pages (`Checks`).
    let checking = Instant::now();
    let last = last_restored(&shares(pages.len(), mode.threads), &stretches);
    if let Some(i) = (verify.index..corpus.len())
        .step_by(verify.of)
        .find(|&i| out[i] != *pages.page(last(i)))
    {
        return Err(format!(
            "{}: restored page {} differs from the original",
            adapter.name(),
            last(i)
        )
        .into());
    }
    let verifying = checking.elapsed();

    let (mut dropped, wall) = timed(backed, |part| {
        let mut timing = Part::with_calls(part.stored.len());
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
    let drop = figures(Op::Drop, bytes, wall);
    let drop_times = per_page(&mut dropped);
    let run = Run {
        adapter: adapter.name().to_string(),
        mode,
        ops: vec![backup, restore, drop],
        footprint,
        pages: pages.len(),
        windows,
        in_calls: calls,
        verifying,
        stats,
    };
    Ok((run, vec![backup_times, restore_times, drop_times]))
}

/// Which page each place of the restore buffer holds after a round: the
/// last of its thread's `share` that wrapped onto it in the thread's
/// `stretch` (the place itself when not repeated).
fn last_restored(shares: &[Range<usize>], stretches: &[Range<usize>]) -> impl Fn(usize) -> usize + use<> {
    let pairs: Vec<(Range<usize>, Range<usize>)> = shares.iter().cloned().zip(stretches.iter().cloned()).collect();
    move |place| {
        let (share, stretch) = pairs
            .iter()
            .find(|(_, stretch)| stretch.contains(&place))
            .expect("the stretches cover the buffer");
        let (j, wrap) = (place - stretch.start, stretch.len());
        share.start + j + wrap * ((share.len() - 1 - j) / wrap)
    }
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

    /// All `rounds` rounds of `adapter`, one after the other, each
    /// operation's best kept.
    fn run(
        adapter: &dyn Adapter,
        pages: Repeated<'_>,
        out: &mut [Page],
        mode: Mode,
        rounds: usize,
        checks: Checks,
        tick: &Tick<'_>,
    ) -> Result<Run, Error> {
        let mut best = Best::default();
        for n in 0..rounds.max(1) {
            best.add(round_of(adapter, pages, out, mode, n, rounds, checks, tick)?);
        }
        Ok(best.finish())
    }

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
                let run = run(
                    &*adapter,
                    Repeated::once(&corpus.pages),
                    &mut out,
                    mode,
                    3,
                    Checks::ALL,
                    &|_| Ok(()),
                )
                .unwrap();
                assert_eq!(run.ops.len(), 3);
                for f in &run.ops {
                    assert!(f.gbps > 0.0 && f.p99_us >= f.p50_us, "{f:?}");
                }
                assert!(run.effective_ratio().is_some());
            }
        }
    }

    /// The prefaulted store, but restoring page `bad` with one byte changed.
    struct Corrupting {
        store: Prefaulted,
        bad: u64,
    }

    impl Adapter for Corrupting {
        fn name(&self) -> &str {
            "corrupting"
        }
        fn baseline(&self, _: Op) -> Option<String> {
            None
        }
        fn backup(&self, pages: &[&Page], first_idx: u64) -> Result<Stored, Error> {
            self.store.backup(pages, first_idx)
        }
        fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
            self.store.restore(stored, dsts)?;
            if let &Stored::Slots { first, count } = stored
                && (first..first + count as u64).contains(&self.bad)
            {
                dsts[(self.bad - first) as usize].0[100] ^= 1;
            }
            Ok(())
        }
        fn release(&self, stored: Stored) -> Result<(), Error> {
            self.store.release(stored)
        }
        fn footprint(&self) -> Option<u64> {
            None
        }
    }

    /// Every page is verified once per adapter: over its runs (modes) and
    /// their rounds, a page corrupted at any position is caught by exactly
    /// one run.
    #[test]
    fn every_page_is_verified_once_per_adapter() {
        let corpus = crate::corpus::Corpus::built_in(64);
        for (rounds, of) in [(1, 1), (2, 1), (3, 2), (3, 3), (5, 3)] {
            for bad in [0, 1, 2, 3, 4, 37, 63] {
                let adapter = Corrupting {
                    store: Prefaulted::new(64),
                    bad,
                };
                let caught: Vec<String> = (0..of)
                    .filter_map(|index| {
                        let mut out = restore_buffer(64);
                        let mode = Mode { batch: 8, threads: 1 };
                        run(
                            &adapter,
                            Repeated::once(&corpus.pages),
                            &mut out,
                            mode,
                            rounds,
                            Checks { index, of },
                            &|_| Ok(()),
                        )
                        .err()
                        .map(|e| e.to_string())
                    })
                    .collect();
                assert_eq!(
                    caught,
                    [format!("corrupting: restored page {bad} differs from the original")],
                    "{rounds} rounds, {of} runs"
                );
            }
        }
    }

    /// A corpus repeated is backed up whole (three times its pages), and
    /// each place of the restore buffer is checked against the page last
    /// restored into it: a page changed in the last pass is caught by its
    /// index among all the pages.
    #[test]
    fn a_repeated_corpus_is_backed_up_whole_and_its_last_pass_verified() {
        let corpus = crate::corpus::Corpus::built_in(256);
        let pages = Repeated {
            corpus: &corpus.pages,
            times: 3,
        };
        // The repeated corpus through a store of all its pages.
        let run_prefaulted = |mode, rounds| {
            let mut out = restore_buffer(256);
            run(
                &Prefaulted::new(768),
                pages,
                &mut out,
                mode,
                rounds,
                Checks::ALL,
                &|_| Ok(()),
            )
        };
        for mode in [
            Mode { batch: 64, threads: 1 },
            Mode { batch: 1, threads: 2 },
            Mode { batch: 7, threads: 3 },
        ] {
            assert_eq!(run_prefaulted(mode, 2).unwrap().pages, 768);
        }
        let adapter = Corrupting {
            store: Prefaulted::new(768),
            bad: 700,
        };
        let mut out = restore_buffer(256);
        let mode = Mode { batch: 8, threads: 1 };
        let error = run(&adapter, pages, &mut out, mode, 1, Checks::ALL, &|_| Ok(())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "corrupting: restored page 700 differs from the original"
        );
        let error = run_prefaulted(Mode { batch: 64, threads: 5 }, 1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "a corpus repeated needs at least 64 pages per thread (5 threads), not 256"
        );
    }

    #[test]
    fn shares_cover_the_corpus() {
        assert_eq!(shares(10, 3), [0..3, 3..6, 6..10]);
        assert_eq!(shares(2, 8), [0..1, 1..2]);
    }
}
