//! A device for the store's unit tests: slots in a vector.

use std::io;
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::Page;
use crate::raw::device::{Device, ReadRun, RunError, WriteRun};

/// Slots in a vector; a released slot reads as zeros. With `slow`, an
/// allocation ahead says so on the sender, then takes that long.
#[derive(Debug, Default)]
pub(super) struct VecDevice(
    pub(super) Mutex<Vec<Box<Page>>>,
    pub(super) Option<(Sender<()>, Duration)>,
);

// SAFETY: every call touches only its runs' pages and the vector, behind the lock.
unsafe impl Device for VecDevice {
    unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        let mut slots = self.0.lock().unwrap();
        for run in runs {
            for (k, page) in run.pages.iter().enumerate() {
                let slot = run.slot as usize + k;
                while slots.len() <= slot {
                    slots.push(Page::new_boxed());
                }
                slots[slot].0.copy_from_slice(&page.0);
            }
        }
        Ok(())
    }

    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        let slots = self.0.lock().unwrap();
        for run in runs {
            for (k, page) in run.pages.iter_mut().enumerate() {
                page.0.copy_from_slice(&slots[run.slot as usize + k].0);
            }
        }
        Ok(())
    }

    unsafe fn release(&self, slot: u32, count: u32) -> io::Result<()> {
        let mut slots = self.0.lock().unwrap();
        for s in slot..slot + count {
            if let Some(page) = slots.get_mut(s as usize) {
                page.0.fill(0);
            }
        }
        Ok(())
    }

    unsafe fn preallocate(&self, _slot: u32, _count: u32) -> io::Result<()> {
        if let Some((started, took)) = &self.1 {
            let _ = started.send(());
            std::thread::sleep(*took);
        }
        Ok(())
    }

    fn resident_bytes(&self) -> u64 {
        0
    }
}
