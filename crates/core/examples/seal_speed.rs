//! The sealing cipher's own speed on 4 KiB pages, on one core, beside a
//! plain copy of the same pages: what `seal=on` adds per page at best.
//!
//! `cargo run --release -p pagebackup-core --features seal --example seal_speed [MiB]`

use std::hint::black_box;
use std::time::Instant;

use pagebackup_core::Page;
use pagebackup_core::raw::seal::{Identity, SealKey, Sealer};

fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let pages = 64;
    let rounds = (mib << 20) / (pages * 4096);
    let sealer = Sealer::new(&SealKey::random().expect("a random key")).expect("a sealer");
    let mut src = Page::new_boxed_slice(pages);
    for (i, p) in src.iter_mut().enumerate() {
        p.as_bytes_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(k, b)| *b = (i * 31 + k) as u8);
    }
    let mut dst = Page::new_boxed_slice(pages);
    let mut tags = vec![[0u8; 16]; pages];
    let gbs = |secs: f64| (rounds * pages * 4096) as f64 / secs / 1e9;

    let t = Instant::now();
    for _ in 0..rounds {
        for (d, s) in dst.iter_mut().zip(src.iter()) {
            d.as_bytes_mut().copy_from_slice(black_box(s.as_bytes()));
        }
        black_box(&mut dst);
    }
    let copy = gbs(t.elapsed().as_secs_f64());

    let t = Instant::now();
    for r in 0..rounds {
        for (slot, (d, tag)) in dst.iter_mut().zip(&mut tags).enumerate() {
            let id = Identity {
                slot: slot as u32,
                generation: r as u64 + 1,
            };
            *tag = sealer.seal(id, d.as_bytes_mut());
        }
    }
    let seal = gbs(t.elapsed().as_secs_f64());
    let last = rounds as u64;
    let sealed = dst.clone();

    // A copy of the ciphertext, then the open in place: a restore's work
    // beyond reading the page.
    let t = Instant::now();
    for _ in 0..rounds {
        for (slot, ((d, s), tag)) in dst.iter_mut().zip(sealed.iter()).zip(&tags).enumerate() {
            d.as_bytes_mut().copy_from_slice(s.as_bytes());
            let id = Identity {
                slot: slot as u32,
                generation: last,
            };
            assert!(sealer.open(id, d.as_bytes_mut(), tag));
        }
    }
    let open = gbs(t.elapsed().as_secs_f64());

    // Out of place, as the sealed devices do: sealed from the page into
    // the store, opened from the store into the page.
    let mut out = Page::new_boxed_slice(pages);
    let t = Instant::now();
    for r in 0..rounds {
        for (slot, ((s, d), tag)) in src.iter().zip(dst.iter_mut()).zip(&mut tags).enumerate() {
            let id = Identity {
                slot: slot as u32,
                generation: last + 1 + r as u64,
            };
            *tag = sealer.seal_into(id, s.as_bytes(), d.as_bytes_mut());
        }
    }
    let seal_into = gbs(t.elapsed().as_secs_f64());
    let t = Instant::now();
    for _ in 0..rounds {
        for (slot, ((s, d), tag)) in dst.iter().zip(out.iter_mut()).zip(&tags).enumerate() {
            let id = Identity {
                slot: slot as u32,
                generation: 2 * last,
            };
            assert!(sealer.open_into(id, s.as_bytes(), d.as_bytes_mut(), tag));
        }
    }
    let open_into = gbs(t.elapsed().as_secs_f64());
    assert!(out.iter().zip(src.iter()).all(|(o, s)| o == s));
    println!(
        "{}, 4 KiB pages, one core, {mib} MiB: seal in place {seal:.2} GB/s, copy + open {open:.2} GB/s, \
         seal out of place {seal_into:.2} GB/s, open out of place {open_into:.2} GB/s, memcpy {copy:.2} GB/s \
         (out of place seal/memcpy {:.2}, open/memcpy {:.2})",
        sealer.cipher(),
        seal_into / copy,
        open_into / copy
    );
}
