//! Process-shared futexes: sleep while a 32-bit word in shared memory
//! holds a value, wake sleepers from any process mapping it.
//!
//! Never `FUTEX_PRIVATE_FLAG`: a private futex is keyed on the process's
//! own address space, so a wake from another process would never reach it.
//!
//! # References
//! - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use rustix::io::Errno;

use super::errno::io_err;
use super::time::{Deadline, remaining};

/// Why [`futex_wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken, spuriously woken, or the word no longer held `expected`:
    /// the caller re-checks its condition.
    Woken,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or `deadline`.
///
/// Uses a *shared* futex (no `FUTEX_PRIVATE_FLAG`), so a wake from any
/// process that maps the same memory reaches it.
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    deadline: Deadline,
) -> io::Result<FutexWait> {
    use rustix::thread::futex;
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(FutexWait::TimedOut);
    }
    let timeout = remaining(deadline);
    match futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref()) {
        Ok(()) | Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(FutexWait::Woken),
        Err(Errno::TIMEDOUT) => Ok(FutexWait::TimedOut),
        Err(e) => Err(io_err(e)),
    }
}

/// Wakes up to `n` waiters sleeping on `word` in any process. Returns how
/// many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    use rustix::thread::futex;
    // The kernel reads the count as a signed int: "all" is i32::MAX.
    let n = n.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(0)
}
