//! A device for the unit tests below `raw`: slots in a vector. Tests that
//! need more (a log, lending, marked answers) wrap it in a layer.

use std::io;
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::Page;
use crate::raw::device::{Device, ReadRun, RunError, WriteRun};

/// Slots in a vector; a released slot reads as zeros. With its second
/// field, an allocation ahead says so on the sender, then takes that long.
#[derive(Debug, Default)]
pub(crate) struct VecDevice(
    pub(crate) Mutex<Vec<Box<Page>>>,
    pub(crate) Option<(Sender<()>, Duration)>,
);

impl VecDevice {
    /// The page stored in `slot`.
    pub(crate) fn stored(&self, slot: u32) -> Page {
        (*self.0.lock().unwrap()[slot as usize]).clone()
    }

    /// Overwrites what `slot` holds with `page`, under the device's user.
    pub(crate) fn put(&self, slot: u32, page: &Page) {
        (*self.0.lock().unwrap()[slot as usize]).clone_from(page);
    }

    /// Hands `visit` the pages of slots `slot..slot + count`, as a lending
    /// device would.
    pub(crate) fn visit(&self, slot: u32, count: usize, visit: &mut dyn FnMut(usize, &Page)) {
        let slots = self.0.lock().unwrap();
        for (k, stored) in slots[slot as usize..slot as usize + count].iter().enumerate() {
            visit(k, stored);
        }
    }
}

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
