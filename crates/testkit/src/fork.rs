//! [`in_forked_child`]: run a check in a `fork()` child, for the fork tests
//! of backends whose storage a child shares.

/// Runs `child` in a forked child of this process; returns whether it
/// returned `true` (a panic counts as `false`). The child sees a copy of
/// the caller's memory (the backends it captures included) and leaves with
/// `_exit`, never returning into the test harness.
///
/// Safe code cannot fork:
///
/// ```compile_fail,E0133
/// // error[E0133]: call to unsafe function requires unsafe block
/// let ok = pagebackup_testkit::in_forked_child(|| true);
/// ```
///
/// # Safety
///
/// Only the calling thread exists in the child, and locks other threads
/// held at the fork stay held there forever: `child` must not take a lock
/// (the allocator's included, in a C library whose `malloc` is not
/// fork-safe) or use state that another thread of the parent may have
/// been changing at the fork. A backend that no other thread is using is
/// fine: its locks are free.
pub unsafe fn in_forked_child(child: impl FnOnce() -> bool) -> bool {
    // SAFETY: the child only runs `child`, which the caller promises takes no lock another thread may hold, and leaves with _exit.
    match unsafe { libc::fork() } {
        -1 => panic!("fork failed: {}", std::io::Error::last_os_error()),
        0 => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(false);
            // SAFETY: ends the child without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for the child just forked, with a valid status pointer.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
    }
}
