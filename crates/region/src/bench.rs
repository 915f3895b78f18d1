//! The region's measuring harness: the four workloads of the region anchor
//! (random, hot, seq, scan) over a region filled with a corpus of pages,
//! returning typed figures for a report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use pagebackup_core::{PAGE_SIZE, Page};

use crate::{OffloadRegion, RegionStats};

/// One workload, as the region anchor runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// A uniformly chosen page: read one word, write one.
    Random,
    /// As random, with 90 % of the accesses on the first 10 % of the pages.
    Hot,
    /// Three passes reading every word of every page and writing one word a page.
    Seq,
    /// The same passes, read only.
    Scan,
}

impl Workload {
    /// All four, in the anchor's order.
    pub const ALL: [Workload; 4] = [Workload::Random, Workload::Hot, Workload::Seq, Workload::Scan];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Random => "random",
            Workload::Hot => "hot",
            Workload::Seq => "seq",
            Workload::Scan => "scan",
        }
    }

    /// The workload called `name`.
    pub fn from_name(name: &str) -> Option<Workload> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// What one run of a workload measured.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkloadResult {
    /// The workload.
    pub workload: Workload,
    /// Threads that ran it (random and hot; 1 for seq and scan).
    pub threads: usize,
    /// Accesses made (random, hot) or pages visited (seq, scan).
    pub accesses: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Accesses per second (random, hot).
    pub accesses_per_s: f64,
    /// Bytes of the region covered per second, in GB/s (seq, scan).
    pub gbps: f64,
    /// Median latency of one access (random, hot) or one page (seq, scan), µs.
    pub access_p50_us: f64,
    /// 99th percentile of the same, µs.
    pub access_p99_us: f64,
    /// CPU seconds of the evictor during the run.
    pub evictor_cpu_s: f64,
    /// Seconds spent serving faults during the run (on the faulting threads
    /// in signal mode, on the handler thread otherwise).
    pub fault_service_s: f64,
    /// Bytes of memory the region and its backend use at the end: resident
    /// pages plus the backend's `memory_used`.
    pub ram_bytes: u64,
    /// The region's figures at the end of the run.
    pub stats: RegionStats,
}

impl WorkloadResult {
    /// The replay's own figures.
    pub fn replay(&self) -> Replay {
        Replay {
            threads: self.threads,
            accesses: self.accesses,
            seconds: self.seconds,
            accesses_per_s: self.accesses_per_s,
            gbps: self.gbps,
            access_p50_us: self.access_p50_us,
            access_p99_us: self.access_p99_us,
        }
    }
}

/// Writes the corpus's pages (repeated) into every page of the region,
/// through the region (faults, eviction and backups included); returns
/// the seconds it took.
pub fn fill(region: &OffloadRegion, corpus: &[Page]) -> f64 {
    fill_words(region.words(), corpus)
}

/// Writes the corpus's pages (repeated) into `words`, page after page;
/// returns the seconds it took. The same fill over plain memory gives the
/// kernel's figure for the same contents.
pub fn fill_words(words: &[AtomicU64], corpus: &[Page]) -> f64 {
    let start = Instant::now();
    if corpus.is_empty() {
        return 0.0;
    }
    for (p, dst) in words.chunks_exact(PAGE_SIZE / 8).enumerate() {
        let src = &corpus[p % corpus.len()];
        for (d, s) in dst.iter().zip(src.words()) {
            d.store(s, Ordering::Relaxed);
        }
    }
    start.elapsed().as_secs_f64()
}

/// xorshift64*, per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(2685821657736338717)
    }
}

/// Most latencies kept (as the anchor keeps).
const MAX_SAMPLES: usize = 1_000_000;

fn random_worker(words: &[AtomicU64], accesses: u64, hot: bool, id: u64, lat: Option<&mut Vec<f64>>) -> u64 {
    let pages = (words.len() / (PAGE_SIZE / 8)) as u64;
    let hot_pages = (pages / 10).max(1);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ 0x0100_0000_01B3_u64.wrapping_mul(id + 1));
    let mut sum = 0u64;
    let mut lat = lat;
    for i in 0..accesses {
        let r = rng.next();
        let page = if hot && (r & 1023) < 922 {
            (r >> 10) % hot_pages
        } else {
            (r >> 10) % pages
        };
        let word = page as usize * (PAGE_SIZE / 8) + (rng.next() % (PAGE_SIZE as u64 / 8)) as usize;
        let timed = i % 2 == 0 && lat.as_ref().is_some_and(|l| l.len() < MAX_SAMPLES);
        let t = timed.then(Instant::now);
        let w = &words[word];
        sum = sum.wrapping_add(w.load(Ordering::Relaxed));
        w.store(w.load(Ordering::Relaxed) ^ i, Ordering::Relaxed);
        if let (Some(t), Some(l)) = (t, lat.as_deref_mut()) {
            l.push(t.elapsed().as_secs_f64());
        }
    }
    sum
}

/// What replaying a workload over memory measured, whatever memory it was.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Replay {
    /// Threads that ran it (random and hot; 1 for seq and scan).
    pub threads: usize,
    /// Accesses made (random, hot) or pages visited (seq, scan).
    pub accesses: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Accesses per second (random, hot; 0 for seq and scan).
    pub accesses_per_s: f64,
    /// Bytes covered per second, in GB/s (seq, scan; 0 for random and hot).
    pub gbps: f64,
    /// Median latency of one access (random, hot) or one page (seq, scan), µs.
    pub access_p50_us: f64,
    /// 99th percentile of the same, µs.
    pub access_p99_us: f64,
}

/// Replays `workload` over `words`, any memory (a region's, or plain memory
/// under the kernel's swap): `accesses` accesses on `threads` threads
/// (random, hot), or three passes over every page (seq, scan).
pub fn replay(words: &[AtomicU64], workload: Workload, accesses: u64, threads: usize) -> Replay {
    let mut lat = Vec::with_capacity(MAX_SAMPLES.min(accesses.max(3 * words.len() as u64 / 512) as usize));
    let start = Instant::now();
    let (visited, threads) = match workload {
        Workload::Random | Workload::Hot => {
            let hot = workload == Workload::Hot;
            let threads = threads.max(1);
            let per = accesses / threads as u64;
            std::thread::scope(|s| {
                for t in 1..threads {
                    s.spawn(move || random_worker(words, per, hot, t as u64, None));
                }
                std::hint::black_box(random_worker(words, per, hot, 0, Some(&mut lat)));
            });
            (per * threads as u64, threads)
        }
        Workload::Seq | Workload::Scan => {
            let mut sum = 0u64;
            let mut pages = 0;
            for _pass in 0..3 {
                for page in words.chunks_exact(PAGE_SIZE / 8) {
                    let timed = lat.len() < MAX_SAMPLES;
                    let t = timed.then(Instant::now);
                    for w in page {
                        sum = sum.wrapping_add(w.load(Ordering::Relaxed));
                    }
                    if workload == Workload::Seq {
                        page[0].store(page[0].load(Ordering::Relaxed) ^ 1, Ordering::Relaxed);
                    }
                    if let Some(t) = t {
                        lat.push(t.elapsed().as_secs_f64());
                    }
                    pages += 1;
                }
            }
            std::hint::black_box(sum);
            (pages, 1)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    lat.sort_unstable_by(f64::total_cmp);
    let pct = |q: usize| lat.get(lat.len() * q / 100).map_or(0.0, |s| s * 1e6);
    let seq = matches!(workload, Workload::Seq | Workload::Scan);
    let bytes = (words.len() * 8) as f64;
    Replay {
        threads,
        accesses: visited,
        seconds,
        accesses_per_s: if seq { 0.0 } else { visited as f64 / seconds },
        gbps: if seq { 3.0 * bytes / seconds / 1e9 } else { 0.0 },
        access_p50_us: pct(50),
        access_p99_us: pct(99),
    }
}

/// Runs `workload` over the region: `accesses` accesses on `threads`
/// threads (random, hot), or three passes over every page (seq, scan).
pub fn run(region: &OffloadRegion, workload: Workload, accesses: u64, threads: usize) -> WorkloadResult {
    let before = region.stats();
    let r = replay(region.words(), workload, accesses, threads);
    let after = region.stats();
    WorkloadResult {
        workload,
        threads: r.threads,
        accesses: r.accesses,
        seconds: r.seconds,
        accesses_per_s: r.accesses_per_s,
        gbps: r.gbps,
        access_p50_us: r.access_p50_us,
        access_p99_us: r.access_p99_us,
        evictor_cpu_s: (after.evictor_cpu_ns.saturating_sub(before.evictor_cpu_ns)) as f64 / 1e9,
        fault_service_s: (after.fault_ns.saturating_sub(before.fault_ns)) as f64 / 1e9,
        ram_bytes: after.resident_pages * PAGE_SIZE as u64 + after.backend_bytes,
        stats: after,
    }
}
