//! What each column of the bench's tables means, for `bench --explain`.
//!
//! Every table the renderer draws takes its headers from here (a header
//! without an entry is refused when the table is made), so a new column
//! cannot appear unexplained.

use std::fmt::Write as _;

/// Each column header, in the order `--explain` prints them, and what it means.
pub const COLUMNS: &[(&str, &str)] = &[
    // The plain summary.
    (
        "backend",
        "the backend spec measured (passwords shown as ***), or a baseline (baseline:...) or the kernel's zram (kernel:...)",
    ),
    (
        "backup GB/s",
        "corpus bytes backed up per second of wall time, batches on one thread, flush included",
    ),
    (
        "restore GB/s",
        "corpus bytes restored per second of wall time, batches on one thread; restored pages are verified outside the timed calls",
    ),
    (
        "effective ratio",
        "original bytes / bytes the stored pages take (RAM and storage, metadata included); 2.00 means half the memory",
    ),
    (
        "memory saved",
        "the share and MiB of the corpus's size not taken by the stored pages (negative: more than the corpus)",
    ),
    (
        "p99 µs/page backup/restore",
        "99th percentile of a call's time divided by its pages, for backup and for restore",
    ),
    (
        "backup speed vs baseline",
        "backup GB/s over that of the baseline named (the simplest store of the same kind, same batch and threads)",
    ),
    // The full table (--full).
    (
        "role",
        "backend (asked for) or baseline (what backends are compared with)",
    ),
    ("mode", "plain, async, working-set, redis or region"),
    ("op", "backup, restore or drop (or a region workload's access)"),
    (
        "workload",
        "the access pattern replayed on an offload region: random, hot, seq or scan",
    ),
    ("threads", "threads calling at once, each on its own share of the pages"),
    ("batch", "pages per call (1: single-page calls)"),
    ("depth", "async calls in flight at once"),
    (
        "throughput",
        "GB/s of pages, or millions of operations per second for drops",
    ),
    ("p50 µs/page", "median of a call's time divided by its pages"),
    ("p99 µs/page", "99th percentile of a call's time divided by its pages"),
    (
        "speed vs baseline",
        "this row's throughput over the named baseline's in the same batch and threads",
    ),
    (
        "vs sync",
        "async GB/s over the sync backend's with the same batch on one thread",
    ),
    (
        "vs spawn_blocking",
        "async GB/s over baseline:spawn_blocking-pwrite's (one spawn_blocking and one pwrite/pread per page) at the same depth",
    ),
    (
        "ticker p50/p99/max µs",
        "how late a 1 ms ticker on the same runtime fired while this load ran: median, 99th percentile and worst",
    ),
    (
        "idle p99 µs",
        "the same ticker's 99th-percentile lateness on the idle runtime",
    ),
    ("hot/cold GB/s", "restores of hot pages and of cold pages, GB/s"),
    (
        "restores/s",
        "restores per second, hot and cold together (restores during which the thread was preempted left out)",
    ),
    ("accesses/s", "page accesses per second on the offload region"),
    (
        "fault p50/p99 µs",
        "time of an access that faulted (restored its page), median and 99th percentile",
    ),
    (
        "vs kernel",
        "accesses per second over the kernel's (swap on zram in a memory cgroup) on the same workload",
    ),
    ("CPU s", "CPU seconds, user and system, the run took"),
    (
        "evictor/faults s",
        "of a region's run: CPU seconds of its evictor thread / seconds spent serving faults",
    ),
    ("memory MiB", "MiB the stored pages take (RAM and storage)"),
    ("RAM MiB", "MiB of RAM the backend used at the end of the run"),
    ("budget MiB", "the RAM budget: the sum of the upper tiers' budgets"),
    (
        "moved dn/up",
        "pages moved down a tier / up a tier during the measured pass",
    ),
    (
        "pages per tier",
        "pages in each tier at the end, first (fastest) tier first",
    ),
    // The async summary.
    ("subject", "the backend spec or baseline measured through the async API"),
    ("backup", "GB/s backed up"),
    ("restore", "GB/s restored"),
    ("drop", "millions of handles dropped per second"),
    (
        "bk vs sync",
        "backup GB/s over the sync backend's, same batch, one thread",
    ),
    (
        "rs vs sync",
        "restore GB/s over the sync backend's, same batch, one thread",
    ),
    ("bk vs spawn_b", "backup GB/s over baseline:spawn_blocking-pwrite's"),
    ("rs vs spawn_b", "restore GB/s over baseline:spawn_blocking-pwrite's"),
    ("p99 µs", "the ticker's 99th-percentile lateness"),
    ("p50 µs", "the ticker's median lateness"),
    ("max µs", "the ticker's largest lateness"),
    (
        "ttfb µs",
        "time to first byte: median time of one single-page restore on the idle runtime",
    ),
    // The working-set summary.
    ("peak MiB", "the most RAM the backend used during the run"),
    ("RAM x", "original bytes per byte of RAM"),
    (
        "ratio",
        "the effective ratio: original bytes / bytes used in RAM and storage",
    ),
    (
        "hot GB/s",
        "restores of hot pages, GB/s (restores during which the thread was preempted left out)",
    ),
    (
        "cold GB/s",
        "restores of cold pages, GB/s (restores during which the thread was preempted left out)",
    ),
    (
        "RAM MiB per tier",
        "MiB of RAM each tier used at the end, first tier first",
    ),
    ("hot up", "the share of hot restores the first tier served"),
    (
        "restores per tier",
        "the share of the measured restores each tier served, first tier first",
    ),
    (
        "hot vs 1st",
        "hot GB/s over that of the stack's first tier alone on the same trace",
    ),
    (
        "restores vs 1st",
        "restores/s over that of the stack's first tier alone on the same trace",
    ),
    (
        "ideal hot vs 1st",
        "the hot vs 1st a two-tier stack would reach if each hot restore cost what it costs in its tier alone, at the stack's measured split: the bound its policy's hit split sets",
    ),
    (
        "ideal restores vs 1st",
        "the same bound for restores vs 1st, at the measured split of all restores",
    ),
    (
        "RAM vs last",
        "RAM used over that of the stack's last tier alone on the same trace (1.00x: no more RAM than the densest tier)",
    ),
    (
        "ideal RAM vs last",
        "the RAM vs last a two-tier stack would use at its measured split of pages if each page cost what it costs in its tier alone, plus the stack's own table, with no kept copies: the floor its split sets",
    ),
    (
        "policy CPU",
        "CPU time of the tiering policy's thread during the measured pass, in % of one core",
    ),
    // The redis comparison.
    ("GB/s", "GB/s of pages backed up or restored"),
    (
        "reference",
        "what the row is compared with (redis-benchmark on the same server)",
    ),
    (
        "reference GB/s",
        "the reference's GB/s with pipelines as deep as the batches",
    ),
    ("speed vs reference", "GB/s over the reference's"),
];

/// What `header` means, if it is a column the bench draws.
pub fn meaning(header: &str) -> Option<&'static str> {
    COLUMNS.iter().find(|(h, _)| *h == header).map(|&(_, m)| m)
}

/// The text `bench --explain` prints: every column and what it means.
pub fn explain() -> String {
    let width = COLUMNS.iter().map(|(h, _)| h.chars().count()).max().unwrap_or(0);
    let mut out = String::from(
        "What the bench's columns mean (summary tables, then --full, async, --working-set and redis tables):\n\n",
    );
    for (header, meaning) in COLUMNS {
        let pad = width - header.chars().count();
        let _ = writeln!(out, "  {header}{:pad$}  {meaning}", "");
    }
    out.push_str(
        "\nThe last line of a plain run says how much of it the bench spent outside the measured calls \
         (verifying pages, timing, threads).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_explained_once() {
        for (i, (header, meaning)) in COLUMNS.iter().enumerate() {
            assert!(!meaning.is_empty(), "{header}");
            assert_eq!(COLUMNS.iter().position(|(h, _)| h == header), Some(i), "{header} twice");
        }
        let text = explain();
        assert!(text.contains("  effective ratio  "), "{text}");
        assert_eq!(meaning("nonsense"), None);
    }
}
