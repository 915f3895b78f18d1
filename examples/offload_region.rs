//! A hash table four times larger than its memory budget, in an offload
//! region paged to compressed RAM (or any backend spec).
//!
//! ```text
//! cargo run --release --example offload_region --features region,compressed-lz4 -- [SPEC] [TABLE_MIB] [BUDGET_MIB]
//! ```
//!
//! The table is open addressing over 64-bit words of the region: each slot
//! holds a key and a count. Keys arrive in a skewed stream (most of them
//! from a small hot set), as a log aggregator's or a join's would; the
//! region keeps the hot slots resident and the rest in the backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use pagebackup::region::{FaultMode, RegionConfig};

/// A key of the stream: 90 % from the first tenth of the key space.
fn key(i: u64, distinct: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let hot = x % 10 != 0;
    1 + if hot {
        (x >> 8) % (distinct / 10)
    } else {
        (x >> 8) % distinct
    }
}

fn slot_of(key: u64, slots: usize) -> usize {
    (key.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 17) as usize % slots
}

/// Adds one to `key`'s count in the table (pairs of words: key, count).
fn bump(table: &[AtomicU64], key: u64) {
    let slots = table.len() / 2;
    let mut s = slot_of(key, slots);
    loop {
        let k = &table[2 * s];
        match k.compare_exchange(0, key, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break,
            Err(found) if found == key => break,
            Err(_) => s = (s + 1) % slots,
        }
    }
    table[2 * s + 1].fetch_add(1, Ordering::Relaxed);
}

fn count(table: &[AtomicU64], key: u64) -> u64 {
    let slots = table.len() / 2;
    let mut s = slot_of(key, slots);
    loop {
        match table[2 * s].load(Ordering::Relaxed) {
            0 => return 0,
            k if k == key => return table[2 * s + 1].load(Ordering::Relaxed),
            _ => s = (s + 1) % slots,
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let spec = args.get(1).map_or("compressed:algo=lz4", String::as_str);
    let table_mib: usize = args.get(2).map_or(Ok(256), |s| s.parse())?;
    let budget_mib: usize = args.get(3).map_or(Ok(table_mib / 4), |s| s.parse())?;
    let region = pagebackup::open_region(
        spec,
        table_mib << 20,
        budget_mib << 20,
        RegionConfig::new().with_mode(FaultMode::Signal),
    )?;
    let table = region.words();
    // Half the slots filled: a load factor of 0.5.
    let distinct = (table.len() / 4) as u64;
    let inserts = 4 * distinct;
    let start = Instant::now();
    for i in 0..inserts {
        bump(table, key(i, distinct));
    }
    let built = start.elapsed();
    // Check against a count of a sample of keys made outside the region.
    let sample: Vec<u64> = (0..1000).map(|i| key(i * 7919, distinct)).collect();
    let mut expected = std::collections::HashMap::new();
    for i in 0..inserts {
        let k = key(i, distinct);
        if sample.contains(&k) {
            *expected.entry(k).or_insert(0u64) += 1;
        }
    }
    for (&k, &n) in &expected {
        assert_eq!(count(table, k), n, "key {k}");
    }
    let s = region.stats();
    println!(
        "{inserts} inserts of {distinct} distinct keys into a {table_mib} MiB table, {budget_mib} MiB budget, backend {spec}"
    );
    println!(
        "built in {:.2} s ({:.2} M inserts/s); {} sampled counts match",
        built.as_secs_f64(),
        inserts as f64 / built.as_secs_f64() / 1e6,
        expected.len()
    );
    println!(
        "faults {} ({:.1} µs each on average), pages restored {}, evicted {} ({} written, {} clean, {} zero), \
         evictor CPU {:.2} s, resident {} MiB, backend holds {} MiB",
        s.faults,
        s.fault_ns as f64 / s.faults.max(1) as f64 / 1e3,
        s.restored_pages,
        s.evicted_pages,
        s.written_back,
        s.clean_drops,
        s.zero_drops,
        s.evictor_cpu_ns as f64 / 1e9,
        s.resident_pages * 4096 >> 20,
        s.backend_bytes >> 20
    );
    Ok(())
}
