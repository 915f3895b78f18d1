//! SIGINT and SIGTERM as a request to stop: the run in progress ends at the
//! next batch, through the normal error path, so that whatever the command
//! set up (`/dev/zram0`, a half-written output file) is undone by its
//! destructor. A second signal ends the process at once.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::adapters::Error;

/// The first signal received, 0 before any.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Blocks SIGINT and SIGTERM in this thread, and so in every thread it
/// starts afterwards, and hands them to a thread of their own. Call it
/// first thing in `main`, before any other thread exists.
pub fn install() {
    let set = signals();
    // SAFETY: `set` is an initialised signal set; a null old mask is allowed.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    assert_eq!(blocked, 0, "pthread_sigmask with a valid set cannot fail");
    std::thread::spawn(move || {
        loop {
            let mut signal = 0;
            // SAFETY: `set` is an initialised signal set, `signal` a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                continue;
            }
            if RECEIVED
                .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                eprintln!("pagebackup: stopped at once on a second signal; what it set up is left as it is");
                std::process::exit(128 + signal);
            }
            eprintln!("pagebackup: stopping after the current batch (signal again to stop at once)");
        }
    });
}

fn signals() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; sigaddset then adds valid signal numbers to the initialised set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        set.assume_init()
    }
}

/// An error once SIGINT or SIGTERM has been received: called between
/// batches, it unwinds the run through the callers' normal error paths.
pub fn check() -> Result<(), Error> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => Ok(()),
        signal => Err(Interrupted(signal).into()),
    }
}

/// The exit status for an error: 128 + the signal for a run stopped by
/// one, as a shell reports it, 1 otherwise.
pub fn exit_status(error: &Error) -> u8 {
    error
        .downcast_ref::<Interrupted>()
        .map_or(1, |&Interrupted(signal)| 128 + signal as u8)
}

/// The run was stopped by a signal.
#[derive(Debug, Clone, Copy)]
struct Interrupted(i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.0 == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
        write!(f, "stopped by {name}; everything it set up was undone")
    }
}

impl std::error::Error for Interrupted {}
