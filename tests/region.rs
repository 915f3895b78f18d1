//! The offload region over every backend of this build, by spec, in both
//! fault modes: byte-exact contents after random reads and writes over a
//! region eight times its budget.
#![cfg(feature = "region")]

mod support;

use pagebackup::PAGE_SIZE;
use pagebackup::region::{FaultMode, RegionConfig, RegionError};

const BUDGET: usize = 64 * PAGE_SIZE;
const LEN: usize = 8 * BUDGET;

#[test]
fn every_backend_spec_reads_back_exactly_in_both_fault_modes() {
    for spec in support::default_specs() {
        for mode in [FaultMode::Signal, FaultMode::HandlerThread] {
            let config = RegionConfig::new().with_mode(mode);
            let mut r = match pagebackup::open_region(spec, LEN, BUDGET, config) {
                Ok(r) => r,
                Err(e @ RegionError::Unsupported { .. }) => {
                    println!("SKIP: {e}");
                    return;
                }
                Err(e) => panic!("{spec} {mode}: {e}"),
            };
            let mut model = vec![0u8; LEN];
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ spec.len() as u64;
            let mut next = move || {
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                rng.wrapping_mul(2685821657736338717)
            };
            let bytes = r.as_mut_slice();
            for step in 0..4000 {
                let off = (next() % LEN as u64) as usize;
                let n = (1 + (next() % (2 * PAGE_SIZE as u64)) as usize).min(LEN - off);
                if step % 3 == 0 {
                    assert_eq!(bytes[off..off + n], model[off..off + n], "{spec} {mode} step {step}");
                } else {
                    let v = next();
                    for (k, (b, m)) in bytes[off..off + n].iter_mut().zip(&mut model[off..off + n]).enumerate() {
                        *b = (v >> (k % 8 * 8)) as u8 ^ (k / 64) as u8;
                        *m = *b;
                    }
                }
            }
            assert!(bytes == &model[..], "{spec} {mode}: the region differs from the model");
            let s = r.stats();
            assert!(s.evicted_pages > 0 && s.restored_pages > 0, "{spec} {mode}: {s:?}");
            assert!(r.last_error().is_none(), "{spec} {mode}");
        }
    }
}

#[test]
fn a_spec_that_cannot_be_opened_says_so() {
    let err = pagebackup::open_region("nosuch", LEN, BUDGET, RegionConfig::new()).unwrap_err();
    assert!(matches!(err, RegionError::Open(_)), "{err}");
    assert!(err.to_string().contains("opening its backend"), "{err}");
}
