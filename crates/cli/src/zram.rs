//! `kernel:zram-ALGO`: the kernel's zram through `/dev/zram0`, as a baseline
//! for the compressed backend. Taken only when unused, and reset afterwards.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use pagebackup::{PAGE_SIZE, Page};

use crate::adapters::{Adapter, Error, Op, Stored};

const SYS: &str = "/sys/block/zram0";

/// `/dev/zram0` set up with one compression algorithm, written and read
/// with `O_DIRECT`, one page per call.
pub struct KernelZram {
    name: String,
    /// The open device; closed before the reset, which an open device refuses.
    dev: Option<File>,
}

impl KernelZram {
    /// Sets up `/dev/zram0` with `algo` and room for `pages` pages. Refuses
    /// when not root, when there is no zram0, or when it is in use
    /// (initialised, or swapped to).
    pub fn open(pages: usize, algo: &str) -> Result<KernelZram, Error> {
        check_free().map_err(|e| format!("--kernel-zram: {e}"))?;
        write(&format!("{SYS}/comp_algorithm"), algo).map_err(|e| {
            format!(
                "zram has no {algo} ({e}); it offers: {}",
                read(&format!("{SYS}/comp_algorithm")).unwrap_or_default().trim()
            )
        })?;
        write(&format!("{SYS}/disksize"), &(pages * PAGE_SIZE).to_string())?;
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open("/dev/zram0")
            .inspect_err(|_| reset())?;
        Ok(KernelZram {
            name: format!("kernel:zram-{algo}"),
            dev: Some(dev),
        })
    }

    fn dev(&self) -> &File {
        self.dev.as_ref().expect("open until dropped")
    }
}

/// Whether `/dev/zram0` may be taken: this process is root, the device
/// exists and is neither initialised nor swapped to.
pub fn check_free() -> Result<(), Error> {
    if !rustix::process::geteuid().is_root() {
        return Err("needs root (it configures /dev/zram0)".into());
    }
    if !Path::new(SYS).exists() {
        return Err("there is no /dev/zram0 (load the zram module: modprobe zram)".into());
    }
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let initialised = read(&format!("{SYS}/initstate"))?.trim() != "0";
    if initialised || swaps.contains("/dev/zram0") {
        return Err("/dev/zram0 is in use (initialised or swapped to); refusing to touch it".into());
    }
    Ok(())
}

fn read(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}").into())
}

fn write(path: &str, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|e| format!("cannot write {value} to {path}: {e}").into())
}

fn reset() {
    // Nothing to do about a failure here but leave the device initialised.
    let _ = std::fs::write(format!("{SYS}/reset"), "1");
}

impl Drop for KernelZram {
    fn drop(&mut self) {
        drop(self.dev.take());
        reset();
    }
}

impl Adapter for KernelZram {
    fn name(&self) -> &str {
        &self.name
    }
    fn baseline(&self, _: Op) -> Option<String> {
        None
    }
    fn backup(&self, pages: &[&Page], first_idx: u64) -> Result<Stored, Error> {
        for (i, page) in pages.iter().enumerate() {
            self.dev()
                .write_all_at(page.as_bytes(), (first_idx + i as u64) * PAGE_SIZE as u64)?;
        }
        Ok(Stored::Slots {
            first: first_idx,
            count: pages.len(),
        })
    }
    fn restore(&self, stored: &Stored, dsts: &mut [&mut Page]) -> Result<(), Error> {
        let &Stored::Slots { first, .. } = stored else {
            return Err("not a zram batch".into());
        };
        for (i, dst) in dsts.iter_mut().enumerate() {
            self.dev()
                .read_exact_at(dst.as_bytes_mut(), (first + i as u64) * PAGE_SIZE as u64)?;
        }
        Ok(())
    }
    fn release(&self, stored: Stored) -> Result<(), Error> {
        let Stored::Slots { first, count } = stored else {
            return Err("not a zram batch".into());
        };
        // Discarding frees zram's copies, as a swap entry's release does.
        let mode = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        let page = PAGE_SIZE as u64;
        rustix::fs::fallocate(self.dev(), mode, first * page, count as u64 * page)?;
        Ok(())
    }
    fn footprint(&self) -> Option<u64> {
        // mm_stat: orig_data_size compr_data_size mem_used_total ...
        let stat = std::fs::read_to_string(format!("{SYS}/mm_stat")).ok()?;
        stat.split_whitespace().nth(2)?.parse().ok()
    }
}
