//! `write_overlapped` on the file device: the caller's work runs once, the
//! pages land whole on every path, and a panic in the work neither
//! returns with writes in flight nor breaks the device.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pagebackup_core::Page;
use pagebackup_core::raw::{Device, ReadRun, WriteRun};
use pagebackup_file::raw::FileDevice;
use pagebackup_file::{FileConfig, IoMode};

fn page(byte: u8) -> Box<Page> {
    let mut p = Page::new_boxed();
    p.0.fill(byte);
    p.0[0] = byte.wrapping_add(1);
    p
}

/// Reads `count` slots from `slot` and checks they hold `pages`.
fn check_slots(device: &FileDevice, slot: u32, pages: &[Box<Page>]) {
    let mut out: Vec<Box<Page>> = pages.iter().map(|_| Page::new_boxed()).collect();
    let mut refs: Vec<&mut Page> = out.iter_mut().map(|p| &mut **p).collect();
    // SAFETY: the test owns the device; the slots were written above.
    unsafe { device.read(&mut [ReadRun { slot, pages: &mut refs }]) }.unwrap();
    for (k, (got, want)) in out.iter().zip(pages).enumerate() {
        assert!(got.0 == want.0, "slot {} holds another page", slot + k as u32);
    }
}

fn overlapped(name: &str, config: FileConfig) {
    let device = match FileDevice::open(&config) {
        Ok(d) => d,
        Err(e) => {
            println!("skipped ({name}): {e}");
            return;
        }
    };
    // Two runs of 8 pages, then a single page (staged).
    let a: Vec<Box<Page>> = (0..8).map(page).collect();
    let b: Vec<Box<Page>> = (8..16).map(page).collect();
    let (ra, rb): (Vec<&Page>, Vec<&Page>) = (a.iter().map(|p| &**p).collect(), b.iter().map(|p| &**p).collect());
    let runs = [
        WriteRun {
            slot: 0,
            pages: &ra,
            resident: false,
        },
        WriteRun {
            slot: 100,
            pages: &rb,
            resident: false,
        },
    ];
    let mut calls = 0;
    // SAFETY: the test owns the device and every slot it writes.
    unsafe { device.write_overlapped(&runs, &mut || calls += 1) }.unwrap();
    assert_eq!(calls, 1, "{name}: the work runs once");
    check_slots(&device, 0, &a);
    check_slots(&device, 100, &b);
    let one = [page(0x40)];
    let r1: Vec<&Page> = one.iter().map(|p| &**p).collect();
    let mut calls = 0;
    // SAFETY: as above.
    unsafe {
        device.write_overlapped(
            &[WriteRun {
                slot: 50,
                pages: &r1,
                resident: false,
            }],
            &mut || calls += 1,
        )
    }
    .unwrap();
    assert_eq!(calls, 1, "{name}: the work runs once for a staged page");
    check_slots(&device, 50, &one);
    // A panic in the work comes back to the caller once the writes are in;
    // the device goes on working.
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as above.
        unsafe { device.write_overlapped(&runs, &mut || panic!("the caller's work failed")) }
    }));
    assert!(panicked.is_err(), "{name}: the panic reaches the caller");
    let c: Vec<Box<Page>> = (32..40).map(page).collect();
    let rc: Vec<&Page> = c.iter().map(|p| &**p).collect();
    // SAFETY: as above.
    unsafe {
        device.write_overlapped(
            &[WriteRun {
                slot: 0,
                pages: &rc,
                resident: false,
            }],
            &mut || {},
        )
    }
    .unwrap();
    check_slots(&device, 0, &c);
    check_slots(&device, 100, &b);
}

#[test]
fn overlapped_writes_with_pwritev() {
    overlapped("pwritev", FileConfig::new().with_io(IoMode::Sync));
}

#[test]
fn overlapped_writes_with_io_uring() {
    overlapped("io_uring", FileConfig::new().with_io(IoMode::Uring));
}

#[test]
fn overlapped_writes_with_o_direct() {
    overlapped("O_DIRECT", FileConfig::new().with_direct(true));
}
