//! [`ProcessEpoch`]: tells, with one memory load, whether the process is a
//! `fork()` child of the one that made a backend.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The process a backend was made in.
///
/// One word per process lives in a page mapped with `MADV_WIPEONFORK`: the
/// kernel hands a `fork()` child that page zeroed, so the word no longer
/// holds the creator's process id and [`is_current`](Self::is_current) says
/// so. (Where the kernel lacks `MADV_WIPEONFORK`, before Linux 4.14, the
/// check falls back to `getpid`, a system call.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessEpoch {
    pid: u32,
}

impl ProcessEpoch {
    /// This process.
    pub fn current() -> Self {
        ProcessEpoch { pid: current_pid() }
    }

    /// Whether this is still the process the epoch was taken in.
    pub fn is_current(&self) -> bool {
        match marker() {
            Some(word) => word.load(Ordering::Relaxed) == self.pid,
            None => getpid() == self.pid,
        }
    }

    /// The id of the process the epoch was taken in.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The current pid, through the marker word when it holds it, setting it
/// in a fresh child (where the kernel zeroed it).
fn current_pid() -> u32 {
    let Some(word) = marker() else { return getpid() };
    // The word is only ever non-zero in the process that stored it: the
    // page is wiped in every child.
    match word.load(Ordering::Relaxed) {
        0 => {
            let pid = getpid();
            word.store(pid, Ordering::Relaxed);
            pid
        }
        seen => seen,
    }
}

/// The per-process marker word, in a page the kernel wipes on fork.
fn marker() -> Option<&'static AtomicU32> {
    static MARKER: OnceLock<Option<usize>> = OnceLock::new();
    let addr = (*MARKER.get_or_init(|| {
        // SAFETY: a fresh anonymous private mapping of one page; nothing else refers to it.
        let page = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                4096,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .ok()?;
        // SAFETY: the advice applies to the page just mapped and changes nothing in this process.
        if unsafe { rustix::mm::madvise(page, 4096, rustix::mm::Advice::LinuxWipeOnFork) }.is_err() {
            // SAFETY: the page was mapped above and is not referred to anywhere.
            let _ = unsafe { rustix::mm::munmap(page, 4096) };
            return None;
        }
        Some(page as usize)
    }))?;
    // SAFETY: the page is mapped for the life of the process (never unmapped once the advice took), aligned and zero-initialised; an AtomicU32 over it is valid, and a wiped page reads as 0.
    Some(unsafe { &*(addr as *const AtomicU32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_process_is_current() {
        let epoch = ProcessEpoch::current();
        assert!(epoch.is_current());
        assert_eq!(epoch.pid(), std::process::id());
        assert!(!ProcessEpoch { pid: epoch.pid() + 1 }.is_current());
    }
}
