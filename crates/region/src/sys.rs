//! Everything unsafe in the crate, in one place: the userfaultfd descriptor
//! and its ioctls, the region's mapping, batched release, the `SIGBUS`
//! handler and the table of live regions it searches.
//!
//! Invariants the rest of the crate relies on:
//!
//! - A [`Uffd`] has exactly one range registered with it: the [`Mapping`]
//!   of the region that owns both. Its ioctls therefore write only into that
//!   mapping, never into memory Rust owns otherwise, which is why they are
//!   safe functions here.
//! - A [`Mapping`] is private anonymous memory of its own (`MADV_DONTFORK`,
//!   no huge pages), unmapped only when the mapping is dropped, after the
//!   region's threads have ended and its [`Registration`] is gone.
//! - The `SIGBUS` handler reaches a region only through [`REGIONS`], as a
//!   [`SignalFaults`] (the module knows regions by that trait alone), under
//!   a per-entry count of handlers inside it; a [`Registration`] is dropped
//!   only once that count is zero, so a region is never freed under a
//!   handler.
//!
//! System calls go through rustix's raw-syscall backend (no `errno`, no
//! allocation): safe to make in a signal handler.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use linux_raw_sys::general as uapi;
use linux_raw_sys::ioctl as nr;
use pagebackup_core::{PAGE_SIZE, Page};
use rustix::io::Errno;
use rustix::ioctl::{Updater, ioctl, opcode};

use crate::fault::{Fault, SignalFaults};

/// `UFFDIO_POISON`, which linux-raw-sys gives the structure of but not the number.
const UFFDIO_POISON: rustix::ioctl::Opcode = opcode::read_write::<uapi::uffdio_poison>(uapi::UFFDIO as u8, 8);
/// `UFFDIO_WRITEPROTECT_MODE_WP` (a macro linux-raw-sys does not carry).
const UFFDIO_WRITEPROTECT_MODE_WP: u32 = 1;
/// `USERFAULTFD_IOC_NEW` on `/dev/userfaultfd`.
const USERFAULTFD_IOC_NEW: rustix::ioctl::Opcode = opcode::none(uapi::USERFAULTFD_IOC as u8, 0);

/// A userfaultfd descriptor, non-blocking and close-on-exec. Closing it
/// unregisters the range and wakes every thread waiting on a fault in it.
#[derive(Debug)]
pub(crate) struct Uffd {
    fd: OwnedFd,
}

/// A page fault read from a [`Uffd`] (handler-thread mode).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FaultMsg {
    /// The faulting address.
    pub(crate) addr: usize,
    /// The access was a write.
    pub(crate) write: bool,
    /// A write-protect fault rather than a missing page.
    pub(crate) wp: bool,
}

impl Uffd {
    /// A new descriptor, through `userfaultfd(2)` or, where that is refused
    /// (`vm.unprivileged_userfaultfd=0` without `CAP_SYS_PTRACE`, seccomp),
    /// through `/dev/userfaultfd`.
    fn new_fd() -> io::Result<OwnedFd> {
        use rustix::mm::UserfaultfdFlags as F;
        // SAFETY: creating a userfaultfd has no memory effect; the descriptor is owned here.
        match unsafe { rustix::mm::userfaultfd(F::CLOEXEC | F::NONBLOCK) } {
            Ok(fd) => Ok(fd),
            Err(first) => {
                let dev = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/userfaultfd")
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("userfaultfd(2) failed ({first}) and /dev/userfaultfd cannot be opened ({e})"),
                        )
                    })?;
                let flags = (uapi::O_CLOEXEC | uapi::O_NONBLOCK) as libc::c_int;
                // SAFETY: USERFAULTFD_IOC_NEW takes an int of open flags and returns a new descriptor, which is owned from here on.
                let fd = unsafe { libc::ioctl(dev.as_raw_fd(), USERFAULTFD_IOC_NEW as _, flags) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: the ioctl returned a fresh descriptor nobody else owns.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        }
    }

    /// The features this kernel's userfaultfd offers (`UFFD_FEATURE_*`).
    pub(crate) fn supported_features() -> io::Result<u64> {
        let probe = Self::new_fd()?;
        let mut api = uapi::uffdio_api {
            api: uapi::UFFD_API as u64,
            features: 0,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes a uffdio_api, which `api` is.
        unsafe { ioctl(&probe, Updater::<{ nr::UFFDIO_API }, _>::new(&mut api)) }?;
        Ok(api.features)
    }

    /// A descriptor with `features` enabled (all of them must be supported).
    pub(crate) fn open(features: u64) -> io::Result<Uffd> {
        let fd = Self::new_fd()?;
        let mut api = uapi::uffdio_api {
            api: uapi::UFFD_API as u64,
            features,
            ioctls: 0,
        };
        // SAFETY: as in supported_features.
        unsafe { ioctl(&fd, Updater::<{ nr::UFFDIO_API }, _>::new(&mut api)) }?;
        Ok(Uffd { fd })
    }

    /// Registers `mapping` for missing-page and write-protect faults.
    /// Returns the ioctls the range supports (`1 << _UFFDIO_*`).
    pub(crate) fn register(&self, mapping: &Mapping) -> io::Result<u64> {
        let mut reg = uapi::uffdio_register {
            range: range(mapping.addr(), mapping.len()),
            mode: u64::from(uapi::UFFDIO_REGISTER_MODE_MISSING | uapi::UFFDIO_REGISTER_MODE_WP),
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes a uffdio_register, which `reg` is.
        unsafe { ioctl(&self.fd, Updater::<{ nr::UFFDIO_REGISTER }, _>::new(&mut reg)) }?;
        Ok(reg.ioctls)
    }

    /// Maps `src` (whole pages) at `dst` in the registered range, write-protected
    /// if `wp`, and wakes the threads waiting there.
    pub(crate) fn copy(&self, dst: usize, src: &[Page], wp: bool) -> Result<(), Errno> {
        let total = src.len() * PAGE_SIZE;
        let mut done = 0usize;
        while done < total {
            let mut c = uapi::uffdio_copy {
                dst: (dst + done) as u64,
                src: src.as_ptr() as u64 + done as u64,
                len: (total - done) as u64,
                mode: if wp { u64::from(uapi::UFFDIO_COPY_MODE_WP) } else { 0 },
                copy: 0,
            };
            // SAFETY: UFFDIO_COPY reads `len` bytes at `src` (inside the borrowed pages) and writes only into the registered range (the module's first invariant).
            let result = unsafe { ioctl(&self.fd, Updater::<{ nr::UFFDIO_COPY }, _>::new(&mut c)) };
            match result {
                Ok(()) => return Ok(()),
                // A partial copy (the address space changed under it): go on from there.
                Err(Errno::AGAIN) if c.copy > 0 => done += c.copy as usize,
                Err(Errno::AGAIN) => std::thread::yield_now(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Maps the zero page at `dst` (one page) and wakes the threads waiting there.
    pub(crate) fn zeropage(&self, dst: usize) -> Result<(), Errno> {
        let mut z = uapi::uffdio_zeropage {
            range: range(dst, PAGE_SIZE),
            mode: 0,
            zeropage: 0,
        };
        loop {
            // SAFETY: UFFDIO_ZEROPAGE maps the zero page in the registered range only.
            match unsafe { ioctl(&self.fd, Updater::<{ nr::UFFDIO_ZEROPAGE }, _>::new(&mut z)) } {
                Err(Errno::AGAIN) => std::thread::yield_now(),
                other => return other,
            }
        }
    }

    /// Write-protects `[start, start + len)` (`on`) or lifts the protection and
    /// wakes the threads waiting there.
    pub(crate) fn write_protect(&self, start: usize, len: usize, on: bool) -> Result<(), Errno> {
        let mut w = uapi::uffdio_writeprotect {
            range: range(start, len),
            mode: if on { u64::from(UFFDIO_WRITEPROTECT_MODE_WP) } else { 0 },
        };
        loop {
            // SAFETY: UFFDIO_WRITEPROTECT changes protections in the registered range only.
            match unsafe { ioctl(&self.fd, Updater::<{ nr::UFFDIO_WRITEPROTECT }, _>::new(&mut w)) } {
                Err(Errno::AGAIN) => std::thread::yield_now(),
                other => return other,
            }
        }
    }

    /// Marks `[start, start + len)` poisoned: an access raises `SIGBUS`
    /// (`BUS_MCEERR_AR`), a system call gets `EFAULT`, until it is released.
    pub(crate) fn poison(&self, start: usize, len: usize) -> Result<(), Errno> {
        let mut p = uapi::uffdio_poison {
            range: range(start, len),
            mode: 0,
            updated: 0,
        };
        // SAFETY: UFFDIO_POISON installs poison markers in the registered range only.
        unsafe { ioctl(&self.fd, Updater::<{ UFFDIO_POISON }, _>::new(&mut p)) }
    }

    /// Wakes the threads waiting on a fault in `[start, start + len)`, to retry.
    pub(crate) fn wake(&self, start: usize, len: usize) -> Result<(), Errno> {
        let r = range(start, len);
        // SAFETY: UFFDIO_WAKE reads a uffdio_range and wakes waiters; no memory changes.
        unsafe { ioctl(&self.fd, rustix::ioctl::Setter::<{ nr::UFFDIO_WAKE }, _>::new(r)) }
    }

    /// Reads the pending page faults into `out` (non-blocking); returns how many.
    pub(crate) fn read_faults(&self, out: &mut [FaultMsg; 16]) -> Result<usize, Errno> {
        // SAFETY: uffd_msg is plain data; an all-zero value is valid.
        let mut msgs: [uapi::uffd_msg; 16] = unsafe { std::mem::zeroed() };
        let bytes =
            // SAFETY: the buffer is `size_of_val(&msgs)` writable bytes of plain data.
            unsafe { std::slice::from_raw_parts_mut(msgs.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&msgs)) };
        let n = match rustix::io::read(&self.fd, bytes) {
            Ok(n) => n / std::mem::size_of::<uapi::uffd_msg>(),
            Err(Errno::AGAIN) => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut count = 0;
        for msg in &msgs[..n] {
            if u32::from(msg.event) != uapi::UFFD_EVENT_PAGEFAULT {
                continue;
            }
            // SAFETY: the kernel fills the pagefault member for UFFD_EVENT_PAGEFAULT.
            let (flags, addr) = unsafe { (msg.arg.pagefault.flags, msg.arg.pagefault.address) };
            out[count] = FaultMsg {
                addr: addr as usize,
                write: flags & u64::from(uapi::UFFD_PAGEFAULT_FLAG_WRITE) != 0,
                wp: flags & u64::from(uapi::UFFD_PAGEFAULT_FLAG_WP) != 0,
            };
            count += 1;
        }
        Ok(count)
    }

    /// Waits until a fault is pending or `timeout_ms` passed.
    pub(crate) fn wait(&self, timeout_ms: i32) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: i64::from(timeout_ms / 1000),
            tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
        };
        let _ = poll(&mut fds, Some(&timeout));
    }
}

fn range(start: usize, len: usize) -> uapi::uffdio_range {
    uapi::uffdio_range {
        start: start as u64,
        len: len as u64,
    }
}

/// The region's memory: private anonymous pages, not inherited by a child
/// (`MADV_DONTFORK`) and never huge.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; the region coordinates access to it.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (a multiple of the page size).
    pub(crate) fn new(len: usize) -> io::Result<Mapping> {
        use rustix::mm::{Advice, MapFlags, ProtFlags};
        // SAFETY: a fresh anonymous mapping at an address the kernel picks aliases nothing.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }?;
        let mapping = Mapping {
            ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        };
        for advice in [Advice::LinuxDontFork, Advice::LinuxNoHugepage] {
            // SAFETY: advice on the mapping just made, which holds no data yet.
            unsafe { rustix::mm::madvise(ptr, len, advice) }?;
        }
        Ok(mapping)
    }

    /// The first address.
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte, for callers that share the region between threads.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The whole mapping. Reading a page that is not resident faults it in.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Page `index`, for the evictor: the page must be resident and
    /// write-protected (or otherwise kept from writers) while the reference lives.
    pub(crate) fn page(&self, index: usize) -> &Page {
        debug_assert!(index < self.len / PAGE_SIZE);
        // SAFETY: the page lies inside the mapping and is page-aligned; its bytes are plain data, stable while write-protected (the caller's condition).
        unsafe { &*self.ptr.as_ptr().add(index * PAGE_SIZE).cast::<Page>() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing refers to it any more (the module's second invariant).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Releases runs of pages with one `process_madvise(MADV_DONTNEED)` per
/// batch (one TLB flush), falling back to one `madvise` per run where the
/// kernel refuses it.
#[derive(Debug)]
pub(crate) struct Releaser {
    pidfd: Option<OwnedFd>,
    vectored: AtomicBool,
}

/// Most iovecs one `process_madvise` takes (`UIO_MAXIOV`).
const MAX_IOV: usize = 1024;

impl Releaser {
    pub(crate) fn new() -> Releaser {
        let pidfd = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty()).ok();
        Releaser {
            vectored: AtomicBool::new(pidfd.is_some()),
            pidfd,
        }
    }

    /// Whether releases are batched into one `process_madvise` call.
    pub(crate) fn vectored(&self) -> bool {
        self.vectored.load(Ordering::Relaxed)
    }

    /// Drops the contents of the page runs `(first_page, pages)` of `mapping`;
    /// returns the number of system calls made.
    pub(crate) fn release(&self, mapping: &Mapping, runs: &[(usize, usize)]) -> io::Result<u64> {
        let mut calls = 0;
        if let Some(pidfd) = self.pidfd.as_ref().filter(|_| self.vectored()) {
            for chunk in runs.chunks(MAX_IOV) {
                let iov: Vec<libc::iovec> = chunk
                    .iter()
                    .map(|&(first, pages)| libc::iovec {
                        iov_base: mapping.as_ptr().wrapping_add(first * PAGE_SIZE).cast(),
                        iov_len: pages * PAGE_SIZE,
                    })
                    .collect();
                // SAFETY: every iovec lies inside the mapping, whose pages are all backed up or zero (the caller's condition); dropping them only makes the next access fault, which the region serves.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_process_madvise,
                        pidfd.as_fd().as_raw_fd(),
                        iov.as_ptr(),
                        iov.len(),
                        libc::MADV_DONTNEED,
                        0u32,
                    )
                };
                calls += 1;
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if calls == 1 && matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM | libc::EINVAL)) {
                        self.vectored.store(false, Ordering::Relaxed);
                        return self.release(mapping, runs);
                    }
                    return Err(e);
                }
            }
            return Ok(calls);
        }
        for &(first, pages) in runs {
            // SAFETY: as above, one run at a time.
            unsafe {
                rustix::mm::madvise(
                    mapping.as_ptr().add(first * PAGE_SIZE).cast(),
                    pages * PAGE_SIZE,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            }?;
            calls += 1;
        }
        Ok(calls)
    }
}

// ---- the table of live regions the signal handler searches ------------------

/// Most regions alive at once in a process in signal mode.
pub(crate) const MAX_REGIONS: usize = 64;

struct Entry {
    claimed: AtomicBool,
    start: AtomicUsize,
    end: AtomicUsize,
    /// The region, boxed by its [`Registration`] (a thin pointer to the
    /// `Arc` of the trait object, which the atomic cannot hold itself).
    target: AtomicPtr<Arc<dyn SignalFaults>>,
    /// Handlers inside this entry's region right now.
    users: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // the initialiser of each entry of REGIONS
const EMPTY_ENTRY: Entry = Entry {
    claimed: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    target: AtomicPtr::new(ptr::null_mut()),
    users: AtomicUsize::new(0),
};

static REGIONS: [Entry; MAX_REGIONS] = [EMPTY_ENTRY; MAX_REGIONS];

/// A region's place in [`REGIONS`]; dropping it waits for handlers inside.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: usize,
    /// Keeps the region alive for as long as a handler may find it; the
    /// entry points into this box.
    _target: Box<Arc<dyn SignalFaults>>,
}

/// Makes `region` (mapped at `[start, start + len)`) findable by the `SIGBUS` handler.
pub(crate) fn register_region(region: Arc<dyn SignalFaults>, start: usize, len: usize) -> Option<Registration> {
    let slot = REGIONS.iter().position(|e| {
        e.claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    let e = &REGIONS[slot];
    e.start.store(start, Ordering::SeqCst);
    e.end.store(start + len, Ordering::SeqCst);
    let target = Box::new(region);
    e.target.store(ptr::from_ref(&*target).cast_mut(), Ordering::SeqCst);
    Some(Registration { slot, _target: target })
}

impl Drop for Registration {
    fn drop(&mut self) {
        let e = &REGIONS[self.slot];
        e.target.store(ptr::null_mut(), Ordering::SeqCst);
        while e.users.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        e.claimed.store(false, Ordering::Release);
    }
}

/// Runs `f` on the region holding `addr`, if any; async-signal-safe.
fn with_region<R>(addr: usize, f: impl Fn(&dyn SignalFaults) -> R) -> Option<R> {
    for e in &REGIONS {
        if e.target.load(Ordering::Relaxed).is_null() {
            continue;
        }
        e.users.fetch_add(1, Ordering::SeqCst);
        let p = e.target.load(Ordering::SeqCst);
        let inside = !p.is_null() && (e.start.load(Ordering::SeqCst)..e.end.load(Ordering::SeqCst)).contains(&addr);
        let result = inside.then(|| {
            // SAFETY: `p` is non-null after `users` was raised, so its Registration (which owns the box it points into) waits for `users` to fall before letting it go.
            f(unsafe { &**p })
        });
        e.users.fetch_sub(1, Ordering::SeqCst);
        if result.is_some() {
            return result;
        }
    }
    None
}

// ---- the SIGBUS handler -------------------------------------------------------

/// The `SIGBUS` disposition found when ours was installed, to chain to.
struct Previous(libc::sigaction);
// SAFETY: a sigaction is plain data (a handler address, a mask, flags).
unsafe impl Sync for Previous {}
// SAFETY: as above.
unsafe impl Send for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

/// Installs the region's `SIGBUS` handler once per process; later calls do
/// nothing. Faults outside every region go to the handler found then.
pub(crate) fn install_sigbus_handler() -> io::Result<()> {
    let mut error = None;
    PREVIOUS.get_or_init(|| {
        // SAFETY: zeroed sigaction structs are valid (no handler, empty mask).
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_sigbus as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: the mask pointer is valid; an empty mask blocks nothing extra.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: both pointers are valid sigaction structs; the handler is async-signal-safe.
        if unsafe { libc::sigaction(libc::SIGBUS, &new, &mut old) } != 0 {
            error = Some(io::Error::last_os_error());
        }
        Previous(old)
    });
    error.map_or(Ok(()), Err)
}

/// Whether the faulting access was a write, from the page-fault error code
/// the kernel leaves in the signal context (x86-64); `None` where unknown.
fn fault_was_write(ctx: *mut libc::c_void) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        if ctx.is_null() {
            return None;
        }
        // SAFETY: for an SA_SIGINFO handler the third argument is the thread's ucontext.
        let uc = unsafe { &*ctx.cast::<libc::ucontext_t>() };
        Some(uc.uc_mcontext.gregs[libc::REG_ERR as usize] & 2 != 0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ctx;
        None
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let write = fault_was_write(ctx);
    let outcome = with_region(addr, |region| region.on_signal(addr, write));
    if matches!(outcome, Some(Fault::Served)) {
        return;
    }
    // Not ours, or a page the region could not restore: what would have
    // happened without the region.
    // SAFETY: chaining with the arguments this handler received.
    unsafe { chain(sig, info, ctx) }
}

/// Hands the signal to the disposition found at install time; for the
/// default (or ignore), restores it so that the access, re-executed, ends
/// the process as a bus error would have.
///
/// # Safety
///
/// Only from the `SIGBUS` handler, with its own arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some(Previous(prev)) = PREVIOUS.get() else { return };
    match prev.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => {
            // SAFETY: a zeroed sigaction with SIG_DFL is valid.
            let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
            dfl.sa_sigaction = libc::SIG_DFL;
            // SAFETY: valid pointer; restoring the default disposition.
            unsafe { libc::sigaction(sig, &dfl, ptr::null_mut()) };
        }
        handler if prev.sa_flags & libc::SA_SIGINFO != 0 => {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this type.
                unsafe { std::mem::transmute(handler) };
            f(sig, info, ctx);
        }
        handler => {
            // SAFETY: a handler installed without SA_SIGINFO takes the signal number only.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            f(sig);
        }
    }
}

/// CPU time this thread has used, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The whole mapping of `owner`, writable, for as long as `owner` is
/// borrowed mutably: the region's `&mut self` accessor, whose mapping
/// `mapping` finds.
pub(crate) fn exclusive_slice<T>(owner: &mut T, mapping: impl FnOnce(&T) -> &Mapping) -> &mut [u8] {
    let m = mapping(owner);
    let (ptr, len) = (m.as_ptr(), m.len());
    // SAFETY: the mapping is `len` writable bytes while its owner lives, and the owner is borrowed mutably for as long as the slice lives, so no other reference reaches it through the owner.
    unsafe { std::slice::from_raw_parts_mut(ptr, len) }
}

/// The whole mapping as words that many threads may read and write at once.
pub(crate) fn words(mapping: &Mapping) -> &[std::sync::atomic::AtomicU64] {
    // SAFETY: the mapping is page-aligned, `len` bytes long (a multiple of 8), and every bit pattern is a valid AtomicU64; all access through the view is atomic.
    unsafe { std::slice::from_raw_parts(mapping.as_ptr().cast(), mapping.len() / 8) }
}
