//! Sorting a data set four times larger than its memory budget, in offload
//! regions paged to compressed RAM (or any backend spec).
//!
//! ```text
//! cargo run --release --example offload_region --features region,compressed-lz4 -- [SPEC] [DATA_MIB] [BUDGET_MIB]
//! ```
//!
//! The keys are plain memory to the program: it fills a region with
//! 64-bit keys, sorts runs that fit the budget in place with the standard
//! library's sort, then merges the runs into a second region. The regions
//! page themselves: the runs, read once by the merge, are restored clean
//! and dropped again without being written back.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use pagebackup::region::{OffloadRegion, RegionConfig};

/// The keys of a byte slice (little-endian words).
fn keys(bytes: &mut [u8]) -> &mut [[u8; 8]] {
    bytes.as_chunks_mut::<8>().0
}

fn key(word: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*word)
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
    let data_mib: usize = args.get(2).map_or(Ok(256), |s| s.parse())?;
    let budget_mib: usize = args.get(3).map_or(Ok(data_mib / 4), |s| s.parse())?;
    let (len, budget) = (data_mib << 20, budget_mib << 20);
    let mut input = pagebackup::open_region(spec, len, budget, RegionConfig::new())?;
    let mut output = pagebackup::open_region(spec, len, budget, RegionConfig::new())?;

    // Keys with some structure (a tenth of the values repeat), as real keys have.
    let start = Instant::now();
    let (mut x, mut checksum) = (0x9E37_79B9_7F4A_7C15u64, 0u64);
    for word in keys(input.as_mut_slice()) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let k = if x % 10 == 0 { x % 1000 } else { x >> 20 };
        checksum = checksum.wrapping_add(k);
        *word = k.to_le_bytes();
    }
    let filled = start.elapsed();

    // Runs of half the budget, each sorted in place.
    let run_len = budget / 2;
    let start = Instant::now();
    for chunk in input.as_mut_slice().chunks_mut(run_len) {
        keys(chunk).sort_unstable_by_key(key);
    }
    let sorted = start.elapsed();

    // A k-way merge of the runs into the output region.
    let start = Instant::now();
    let runs: Vec<&[[u8; 8]]> = input.as_slice().chunks(run_len).map(|c| c.as_chunks::<8>().0).collect();
    let mut cursors = vec![0usize; runs.len()];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(i, r)| Reverse((key(&r[0]), i)))
        .collect();
    let mut out = keys(output.as_mut_slice()).iter_mut();
    let (mut previous, mut out_checksum, mut in_order) = (0u64, 0u64, true);
    while let Some(Reverse((k, i))) = heap.pop() {
        if let Some(slot) = out.next() {
            *slot = k.to_le_bytes();
        }
        in_order &= k >= previous;
        previous = k;
        out_checksum = out_checksum.wrapping_add(k);
        cursors[i] += 1;
        if let Some(next) = runs[i].get(cursors[i]) {
            heap.push(Reverse((key(next), i)));
        }
    }
    let merged = start.elapsed();
    if !in_order || out_checksum != checksum {
        return Err("the merged keys are out of order or differ from the input".into());
    }
    println!("sorted {data_mib} MiB of keys with a {budget_mib} MiB budget per region, backend {spec}");
    println!(
        "fill {:.2} s, {} runs sorted in place {:.2} s, merge {:.2} s; order and checksum verified",
        filled.as_secs_f64(),
        runs.len(),
        sorted.as_secs_f64(),
        merged.as_secs_f64()
    );
    for (name, region) in [("input", &input), ("output", &output)] {
        report(name, region);
    }
    Ok(())
}

fn report(name: &str, region: &OffloadRegion) {
    let s = region.stats();
    println!(
        "{name}: faults {} ({:.1} µs each), pages restored {}, evicted {} ({} written back, {} clean dropped), \
         evictor CPU {:.2} s, backend holds {} MiB for {} MiB of pages",
        s.faults,
        s.fault_ns as f64 / s.faults.max(1) as f64 / 1e3,
        s.restored_pages,
        s.evicted_pages,
        s.written_back,
        s.clean_drops,
        s.evictor_cpu_ns as f64 / 1e9,
        s.backend_bytes >> 20,
        s.backend_original_bytes >> 20
    );
}
