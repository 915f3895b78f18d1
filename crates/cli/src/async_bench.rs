//! `pagebackup bench --async`: every backend through the async API
//! (`open_async`) with N operations in flight, against the sync backend
//! itself and `baseline:spawn_blocking-pwrite`, and the runtime's
//! responsiveness while they work, against its floor: `baseline:memcpy`,
//! the same tasks copying the same bytes with no backend.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pagebackup::{AsyncBackupBackend, BackupBackend, BackupFlags, Handle, PAGE_SIZE, Page, open_async};

use crate::adapters::Error;
use crate::async_baseline::{Memcpy, SpawnBlockingPwrite};
use crate::report::{AsyncSetup, Mode, Op, Role, Row, round_to, shown};

/// Worker threads of the runtime every run uses: two, as on the machine the
/// targets are set for.
const WORKERS: usize = 2;
/// The ticker's period in the responsiveness runs.
const TICK: Duration = Duration::from_millis(1);
/// Tasks backing up and restoring in the responsiveness runs.
const LOAD_TASKS: usize = 64;

/// What the async benchmark runs.
#[derive(Debug, Clone)]
pub struct AsyncBench {
    /// Backend specs, each opened with `open_async`.
    pub specs: Vec<String>,
    /// Operations in flight: tasks, each with its share of the pages.
    pub depth: usize,
    /// Pages per call in the batched runs.
    pub batch: usize,
    /// Rounds of each run; the best is kept.
    pub rounds: usize,
}

/// How the pages are handed to an async backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncMode {
    /// Pages per call (1: single-page calls).
    pub batch: usize,
    /// Calls in flight.
    pub depth: usize,
}

/// GB/s of backup (with flush), restore (verified) and drop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Backup and flush.
    pub backup: f64,
    /// Restore.
    pub restore: f64,
    /// Drop.
    pub drop: f64,
}

/// One async subject in one mode.
#[derive(Debug, Clone)]
pub struct AsyncRun {
    /// The spec, or the baseline's name.
    pub name: String,
    /// The mode.
    pub mode: AsyncMode,
    /// Its figures.
    pub gbps: Throughput,
    /// The sync backend's figures with the same batch on one thread.
    pub sync: Option<Throughput>,
}

/// A 2-worker runtime's timer lateness while tasks work.
#[derive(Debug, Clone)]
pub struct Responsiveness {
    /// The spec, or the baseline's name.
    pub name: String,
    /// Pages per call of the load.
    pub batch: usize,
    /// Tasks of the load.
    pub depth: usize,
    /// Median lateness of a 1 ms ticker, in microseconds.
    pub p50_us: f64,
    /// 99th percentile lateness of a 1 ms ticker, in microseconds.
    pub p99_us: f64,
    /// Largest lateness, in microseconds.
    pub max_us: f64,
}

/// The whole async benchmark.
#[derive(Debug, Clone)]
pub struct AsyncReport {
    /// Throughput runs.
    pub runs: Vec<AsyncRun>,
    /// Responsiveness runs.
    pub responsiveness: Vec<Responsiveness>,
    /// The ticker's p99 lateness on the idle runtime, in microseconds.
    pub idle_p99_us: f64,
    /// Per subject, the median time of a single-page restore on the idle
    /// runtime, in microseconds.
    pub ttfb_us: Vec<(String, f64)>,
}

/// The runtime every run uses.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()?)
}

fn shares(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts).map(|t| t * n / parts..(t + 1) * n / parts).collect()
}

fn owned(pages: &[Page]) -> Vec<Box<Page>> {
    pages
        .iter()
        .map(|p| {
            let mut copy = Page::new_boxed();
            (*copy).clone_from(p);
            copy
        })
        .collect()
}

fn gbps(bytes: usize, wall: Duration) -> f64 {
    bytes as f64 / wall.as_secs_f64().max(1e-9) / 1e9
}

/// Backs up `pages` (page `k` at index `first + k`) in calls of `batch`;
/// gives back the handles, and the pages to be freed after the clock stops.
async fn backup_share(
    b: Arc<dyn AsyncBackupBackend>,
    first: usize,
    pages: Vec<Box<Page>>,
    batch: usize,
) -> Result<(Vec<Handle>, Vec<Box<Page>>), Error> {
    let mut handles = Vec::with_capacity(pages.len());
    let mut back = Vec::with_capacity(pages.len());
    let mut pages = pages.into_iter();
    let mut idx = first as u64;
    loop {
        let chunk: Vec<Box<Page>> = pages.by_ref().take(batch).collect();
        if chunk.is_empty() {
            return Ok((handles, back));
        }
        let len = chunk.len() as u64;
        if batch == 1 {
            let page = chunk.into_iter().next().expect("one page");
            let (handle, page) = b.backup_page(page, idx, BackupFlags::NONE).await;
            handles.push(handle?);
            back.push(page);
        } else {
            let backed = b.backup_pages(chunk, idx, BackupFlags::NONE).await;
            backed.result?;
            handles.extend(backed.handles);
            back.extend(backed.pages);
        }
        idx += len;
    }
}

/// Restores `handles` into `dsts` in calls of `batch`.
async fn restore_share(
    b: Arc<dyn AsyncBackupBackend>,
    handles: Arc<[Handle]>,
    dsts: Vec<Box<Page>>,
    batch: usize,
) -> Result<Vec<Box<Page>>, Error> {
    let mut back = Vec::with_capacity(dsts.len());
    let mut dsts = dsts.into_iter();
    for chunk in handles.chunks(batch) {
        let pages: Vec<Box<Page>> = dsts.by_ref().take(chunk.len()).collect();
        if batch == 1 {
            let page = pages.into_iter().next().expect("one page");
            let (restored, page) = b.copy_page(page, chunk[0], None).await;
            restored?;
            back.push(page);
        } else {
            let (restored, pages) = b.copy_pages(chunk, pages, None).await;
            restored?;
            back.extend(pages);
        }
    }
    Ok(back)
}

/// Drops `handles` in calls of `batch`.
async fn drop_share(b: Arc<dyn AsyncBackupBackend>, handles: Arc<[Handle]>, batch: usize) -> Result<(), Error> {
    for chunk in handles.chunks(batch) {
        match chunk {
            [one] => b.drop_handle(*one).await?,
            _ => b.drop_handles(chunk).await?,
        }
    }
    Ok(())
}

/// Awaits every task; the first error wins.
async fn join<T>(tasks: Vec<tokio::task::JoinHandle<Result<T, Error>>>) -> Result<Vec<T>, Error> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.map_err(|e| format!("a benchmark task failed: {e}"))??);
    }
    Ok(out)
}

/// One round: back up, restore (checked against `corpus`) and drop every
/// page, `mode.depth` tasks at once, each on its share of the pages.
async fn round(b: &Arc<dyn AsyncBackupBackend>, corpus: &[Page], mode: AsyncMode) -> Result<Throughput, Error> {
    let bytes = corpus.len() * PAGE_SIZE;
    let batch = mode.batch.max(1);
    let parts = shares(corpus.len(), mode.depth);
    let inputs: Vec<(usize, Vec<Box<Page>>)> = parts.iter().map(|r| (r.start, owned(&corpus[r.clone()]))).collect();
    let start = Instant::now();
    let tasks = inputs
        .into_iter()
        .map(|(first, pages)| tokio::spawn(backup_share(Arc::clone(b), first, pages, batch)))
        .collect();
    let backed = join(tasks).await?;
    b.flush().await?;
    let backup = gbps(bytes, start.elapsed());
    let (handles, freed): (Vec<Arc<[Handle]>>, Vec<_>) = backed.into_iter().map(|(h, p)| (h.into(), p)).unzip();
    drop(freed);

    let dsts: Vec<Vec<Box<Page>>> = parts
        .iter()
        .map(|r| r.clone().map(|_| Page::new_boxed()).collect())
        .collect();
    let start = Instant::now();
    let tasks = handles
        .iter()
        .zip(dsts)
        .map(|(h, dsts)| tokio::spawn(restore_share(Arc::clone(b), Arc::clone(h), dsts, batch)))
        .collect();
    let restored = join(tasks).await?;
    let restore = gbps(bytes, start.elapsed());
    for (range, pages) in parts.iter().zip(&restored) {
        if let Some(k) = (0..range.len()).find(|&k| *pages[k] != corpus[range.start + k]) {
            return Err(format!(
                "{}: restored page {} differs from the original",
                b.name(),
                range.start + k
            )
            .into());
        }
    }

    let start = Instant::now();
    let tasks = handles
        .iter()
        .map(|h| tokio::spawn(drop_share(Arc::clone(b), Arc::clone(h), batch)))
        .collect();
    join(tasks).await?;
    let drop = gbps(bytes, start.elapsed());
    Ok(Throughput { backup, restore, drop })
}

/// The better of two figures, per operation.
fn better(best: Option<Throughput>, t: Throughput) -> Throughput {
    best.map_or(t, |b| Throughput {
        backup: b.backup.max(t.backup),
        restore: b.restore.max(t.restore),
        drop: b.drop.max(t.drop),
    })
}

/// The best of `rounds` rounds of `b` in `mode`, and of the sync backend
/// `sync` (if any) with the same batch on one thread, their rounds taken in
/// turn so that both see the same machine; each after a warm-up round (the
/// allocator's and the backend's first touches).
fn measure(
    runtime: &tokio::runtime::Runtime,
    b: &Arc<dyn AsyncBackupBackend>,
    sync: Option<&dyn BackupBackend>,
    corpus: &[Page],
    mode: AsyncMode,
    rounds: usize,
) -> Result<(Throughput, Option<Throughput>), Error> {
    let (mut best, mut best_sync) = (None, None);
    for warm_up in std::iter::once(true).chain(std::iter::repeat_n(false, rounds.max(1))) {
        let s = sync.map(|s| sync_round(s, corpus, mode.batch.max(1))).transpose()?;
        let t = runtime.block_on(round(b, corpus, mode))?;
        if !warm_up {
            best = Some(better(best, t));
            best_sync = s.map(|s| better(best_sync, s));
        }
    }
    Ok((best.expect("at least one round"), best_sync))
}

/// One round of the sync backend `b` on owned pages like the async runs',
/// `batch` pages per call, on this thread.
fn sync_round(b: &dyn BackupBackend, corpus: &[Page], batch: usize) -> Result<Throughput, Error> {
    let bytes = corpus.len() * PAGE_SIZE;
    let pages = owned(corpus);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(pages.len());
    for (k, chunk) in pages.chunks(batch).enumerate() {
        let idx = (k * batch) as u64;
        match chunk {
            [page] => handles.push(b.backup_page(page, idx, BackupFlags::NONE)?),
            _ => {
                let refs: Vec<&Page> = chunk.iter().map(|p| &**p).collect();
                b.backup_pages(&refs, idx, BackupFlags::NONE, &mut handles)?;
            }
        }
    }
    b.flush()?;
    let backup = gbps(bytes, start.elapsed());
    let mut dsts: Vec<Box<Page>> = corpus.iter().map(|_| Page::new_boxed()).collect();
    let start = Instant::now();
    for (chunk, dsts) in handles.chunks(batch).zip(dsts.chunks_mut(batch)) {
        match (chunk, dsts) {
            ([handle], [dst]) => b.copy_page(dst, *handle, None)?,
            (chunk, dsts) => {
                let mut refs: Vec<&mut Page> = dsts.iter_mut().map(|p| &mut **p).collect();
                b.copy_pages(chunk, &mut refs, None)?;
            }
        }
    }
    let restore = gbps(bytes, start.elapsed());
    if let Some(k) = (0..corpus.len()).find(|&k| *dsts[k] != corpus[k]) {
        return Err(format!("{}: restored page {k} differs from the original", b.name()).into());
    }
    let start = Instant::now();
    for chunk in handles.chunks(batch) {
        match chunk {
            [handle] => b.drop_handle(*handle)?,
            _ => b.drop_handles(chunk)?,
        }
    }
    Ok(Throughput {
        backup,
        restore,
        drop: gbps(bytes, start.elapsed()),
    })
}

/// A 1 ms ticker's lateness on `runtime` while `work` runs, sorted, in
/// microseconds.
fn ticker_lateness(
    runtime: &tokio::runtime::Runtime,
    work: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<Vec<f64>, Error> {
    runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let ticker = tokio::spawn(async move {
            let mut late = Vec::new();
            let mut deadline = tokio::time::Instant::now() + TICK;
            while !stopped.load(Ordering::Relaxed) {
                tokio::time::sleep_until(deadline).await;
                let now = tokio::time::Instant::now();
                late.push((now - deadline).as_secs_f64() * 1e6);
                deadline = now + TICK;
            }
            late
        });
        let result = work.await;
        stop.store(true, Ordering::Relaxed);
        let mut late = ticker.await.map_err(|e| format!("the ticker failed: {e}"))?;
        result?;
        late.sort_by(f64::total_cmp);
        Ok(late)
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// How long each responsiveness run keeps its load going, in rounds over
/// the corpus: long enough for some 500 ticks, so that the 99th
/// percentile is not the largest of a handful.
const LOAD_TIME: Duration = Duration::from_millis(500);

/// The ticker's lateness while `mode.depth` tasks back up and restore the
/// corpus through `b` in calls of `mode.batch`, round after round for
/// [`LOAD_TIME`].
fn responsiveness(
    name: &str,
    runtime: &tokio::runtime::Runtime,
    b: &Arc<dyn AsyncBackupBackend>,
    corpus: &[Page],
    mode: AsyncMode,
) -> Result<Responsiveness, Error> {
    let late = ticker_lateness(runtime, async {
        let start = Instant::now();
        while start.elapsed() < LOAD_TIME {
            round(b, corpus, mode).await?;
        }
        Ok(())
    })?;
    Ok(Responsiveness {
        name: name.to_string(),
        batch: mode.batch,
        depth: mode.depth,
        p50_us: percentile(&late, 0.5),
        p99_us: percentile(&late, 0.99),
        max_us: late.last().copied().unwrap_or(0.0),
    })
}

/// Single-page restores timed on the idle runtime.
const TTFB_RESTORES: usize = 200;

/// The median time, in microseconds, from a single-page restore's call to
/// its page coming back, on the idle runtime: a page of the corpus backed
/// up once, restored `TTFB_RESTORES` times one after another (after as
/// many to warm up), each checked.
fn time_to_first_byte(
    runtime: &tokio::runtime::Runtime,
    b: &Arc<dyn AsyncBackupBackend>,
    corpus: &[Page],
) -> Result<f64, Error> {
    let original = corpus.first().ok_or("the corpus is empty")?;
    runtime.block_on(async {
        let (handle, _) = b
            .backup_page(owned(std::slice::from_ref(original)).remove(0), 0, BackupFlags::NONE)
            .await;
        let handle = handle?;
        b.flush().await?;
        let mut times = Vec::with_capacity(TTFB_RESTORES);
        let mut dst = Page::new_boxed();
        for k in 0..2 * TTFB_RESTORES {
            let start = Instant::now();
            let (restored, back) = b.copy_page(dst, handle, None).await;
            let took = start.elapsed();
            restored?;
            if *back != *original {
                return Err(format!("{}: a restored page differs from the original", b.name()).into());
            }
            if k >= TTFB_RESTORES {
                times.push(took.as_secs_f64() * 1e6);
            }
            dst = back;
        }
        b.drop_handle(handle).await?;
        times.sort_by(f64::total_cmp);
        Ok(percentile(&times, 0.5))
    })
}

/// What a subject of the async benchmark is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// A backend, opened with `open_async` and compared with its sync self.
    Backend,
    /// `baseline:spawn_blocking-pwrite`: single pages, one job each.
    SpawnBlocking,
    /// `baseline:memcpy`: the ticker's floor, in every mode of the
    /// backends' ticker rows, with no throughput rows.
    Floor,
}

/// Runs the async benchmark over `corpus`.
pub fn run_async(bench: &AsyncBench, corpus: &[Page]) -> Result<AsyncReport, Error> {
    let runtime = runtime()?;
    let mut subjects: Vec<(String, Arc<dyn AsyncBackupBackend>, Subject)> = Vec::new();
    for spec in &bench.specs {
        let backend = open_async(spec)
            .map_err(|e| format!("--backend {}: {}", shown(spec), shown(&crate::adapters::report(&e))))?;
        subjects.push((spec.clone(), backend, Subject::Backend));
    }
    subjects.push((
        "baseline:spawn_blocking-pwrite".into(),
        Arc::new(SpawnBlockingPwrite::new()?),
        Subject::SpawnBlocking,
    ));
    subjects.push(("baseline:memcpy".into(), Arc::new(Memcpy::default()), Subject::Floor));
    let modes = [
        AsyncMode {
            batch: 1,
            depth: bench.depth,
        },
        AsyncMode {
            batch: bench.batch,
            depth: bench.depth,
        },
        AsyncMode {
            batch: bench.batch,
            depth: 1,
        },
    ];
    let mut runs = Vec::new();
    let mut responsive = Vec::new();
    let mut ttfb_us = Vec::new();
    for (name, backend, subject) in &subjects {
        let is_backend = *subject == Subject::Backend;
        let sync = match is_backend {
            true => Some(pagebackup::open(name)?),
            false => None,
        };
        for mode in modes {
            // The floor's figure is its ticker; the spawn_blocking
            // baseline is one job per page, so single pages.
            if *subject == Subject::Floor || (!is_backend && mode.batch > 1) {
                continue;
            }
            let (gbps, sync) = measure(&runtime, backend, sync.as_deref(), corpus, mode, bench.rounds)?;
            runs.push(AsyncRun {
                name: name.clone(),
                mode,
                gbps,
                sync,
            });
        }
        for batch in [1, bench.batch] {
            for depth in [1, LOAD_TASKS] {
                if *subject != Subject::SpawnBlocking || batch == 1 {
                    let mode = AsyncMode { batch, depth };
                    responsive.push(responsiveness(name, &runtime, backend, corpus, mode)?);
                }
            }
        }
        ttfb_us.push((name.clone(), time_to_first_byte(&runtime, backend, corpus)?));
    }
    let idle = ticker_lateness(&runtime, async {
        tokio::time::sleep(LOAD_TIME).await;
        Ok(())
    })?;
    Ok(AsyncReport {
        runs,
        responsiveness: responsive,
        idle_p99_us: percentile(&idle, 0.99),
        ttfb_us,
    })
}

/// The specs the async mode runs: those given, or every backend of this
/// build but redis, which needs a server's URL and runs when named.
pub fn specs(backends: &[String]) -> Vec<String> {
    match backends.is_empty() {
        true => pagebackup::available_backends()
            .into_iter()
            .filter(|&b| b != "redis")
            .map(String::from)
            .collect(),
        false => backends.to_vec(),
    }
}

/// How the runs were set up, for the report.
pub fn setup() -> AsyncSetup {
    AsyncSetup {
        workers: WORKERS,
        tick_us: TICK.as_micros() as u64,
        load_tasks: LOAD_TASKS,
    }
}

impl AsyncReport {
    /// The report rows: a row per subject, mode and operation, with its
    /// ratios to the sync backend and to the spawn_blocking baseline (single
    /// pages at the same depth); then a ticker row per responsiveness run,
    /// the batch-1, depth-1 one with the subject's time to first byte.
    pub fn rows(&self) -> Vec<Row> {
        let baseline = self
            .runs
            .iter()
            .find(|r| r.name.starts_with("baseline:") && r.mode.batch == 1)
            .map(|r| r.gbps);
        let role = |name: &str| match name.starts_with("baseline:") {
            true => Role::Baseline,
            false => Role::Backend,
        };
        let ratio = |a: f64, b: Option<f64>| b.filter(|&b| b > 0.0).map(|b| round_to(a / b, 3));
        let mut rows = Vec::new();
        for r in &self.runs {
            let on_baseline = baseline.filter(|_| r.mode.depth > 1);
            let pick = |t: &Throughput, op: Op| match op {
                Op::Backup => t.backup,
                Op::Restore => t.restore,
                Op::Drop => t.drop,
            };
            for op in [Op::Backup, Op::Restore, Op::Drop] {
                let mut row = Row::new(&r.name, role(&r.name), Mode::Async);
                let gbps = pick(&r.gbps, op);
                row.op = Some(op);
                row.batch = Some(r.mode.batch);
                row.depth = Some(r.mode.depth);
                row.gbps = Some(round_to(gbps, 3));
                row.vs_sync = ratio(gbps, r.sync.as_ref().map(|s| pick(s, op)));
                row.vs_spawn_blocking = ratio(gbps, on_baseline.as_ref().map(|b| pick(b, op)));
                rows.push(row);
            }
        }
        for t in &self.responsiveness {
            let mut row = Row::new(&t.name, role(&t.name), Mode::Async);
            row.batch = Some(t.batch);
            row.depth = Some(t.depth);
            row.ticker_p50_us = Some(round_to(t.p50_us, 1));
            row.ticker_p99_us = Some(round_to(t.p99_us, 1));
            row.ticker_max_us = Some(round_to(t.max_us, 1));
            row.idle_p99_us = Some(round_to(self.idle_p99_us, 1));
            row.ttfb_us = self
                .ttfb_us
                .iter()
                .find(|(name, _)| *name == t.name && t.batch == 1 && t.depth == 1)
                .map(|&(_, us)| round_to(us, 1));
            rows.push(row);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subject_and_mode_is_measured_and_verified() {
        let corpus = crate::corpus::Corpus::built_in(256);
        let bench = AsyncBench {
            specs: vec!["memory".into(), "shmem".into()],
            depth: 8,
            batch: 16,
            rounds: 1,
        };
        let report = run_async(&bench, &corpus.pages).unwrap();
        // Three modes per backend, single pages for the baseline, none for the floor.
        assert_eq!(report.runs.len(), 2 * 3 + 1);
        assert!(report.runs.iter().all(|r| r.gbps.backup > 0.0 && r.gbps.restore > 0.0));
        assert_eq!(
            report
                .responsiveness
                .iter()
                .map(|r| (r.name.as_str(), r.batch, r.depth))
                .collect::<Vec<_>>(),
            [
                ("memory", 1, 1),
                ("memory", 1, LOAD_TASKS),
                ("memory", 16, 1),
                ("memory", 16, LOAD_TASKS),
                ("shmem", 1, 1),
                ("shmem", 1, LOAD_TASKS),
                ("shmem", 16, 1),
                ("shmem", 16, LOAD_TASKS),
                ("baseline:spawn_blocking-pwrite", 1, 1),
                ("baseline:spawn_blocking-pwrite", 1, LOAD_TASKS),
                ("baseline:memcpy", 1, 1),
                ("baseline:memcpy", 1, LOAD_TASKS),
                ("baseline:memcpy", 16, 1),
                ("baseline:memcpy", 16, LOAD_TASKS),
            ]
        );
        assert_eq!(
            report.ttfb_us.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
            ["memory", "shmem", "baseline:spawn_blocking-pwrite", "baseline:memcpy"]
        );
        assert!(report.ttfb_us.iter().all(|&(_, us)| us > 0.0), "{:?}", report.ttfb_us);
        let rows = report.rows();
        // Three ops per throughput run, one ticker row per responsiveness run.
        assert_eq!(rows.len(), 7 * 3 + 14);
        let memory = rows
            .iter()
            .find(|r| r.backend == "memory" && r.op == Some(Op::Restore) && r.batch == Some(1))
            .unwrap();
        assert!(
            memory.vs_sync.unwrap() > 0.0 && memory.vs_spawn_blocking.unwrap() > 0.0,
            "{memory:?}"
        );
        let tickers: Vec<&Row> = rows.iter().filter(|r| r.ticker_p99_us.is_some()).collect();
        assert_eq!(tickers.len(), 14);
        for t in &tickers {
            assert!(t.op.is_none() && t.idle_p99_us.is_some() && t.depth.is_some(), "{t:?}");
            assert!(
                t.ticker_p50_us <= t.ticker_p99_us && t.ticker_p99_us <= t.ticker_max_us,
                "{t:?}"
            );
            // The time to first byte is on the single-page, one-task row.
            assert_eq!(t.ttfb_us.is_some(), t.batch == Some(1) && t.depth == Some(1), "{t:?}");
        }
    }
}
