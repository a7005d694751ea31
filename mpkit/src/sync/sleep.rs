//! How the sync objects sleep: a futex wait in slices of [`WAKE_SLICE`],
//! which notices a file another process truncated.
//!
//! # Files truncated under a sleeper
//! Truncating an object's file takes its pages out of every mapping at
//! once, but wakes nobody: a thread asleep on a futex word of the file
//! stays queued on a key (the file and page) that no wake can name again,
//! since a `FUTEX_WAKE` on that address now faults (`EFAULT`) in the kernel,
//! and in a process whose `SIGBUS` handler has put private zeros there
//! (`sys/linux/fault.rs`) the address names a private page instead. The
//! handler cannot wake the sleepers either, for the same reason, and those
//! of other processes are beyond its reach altogether.
//!
//! So a waiter never sleeps longer than [`WAKE_SLICE`] at a time: after
//! each slice it reads its word again. In a truncated segment that read
//! faults, this process's handler maps zeros and raises the mapping's
//! `truncated` flag, and [`sleep_on`] reports [`WaitError::Truncated`]
//! before sleeping again. This holds in every process: each has its own
//! handler and finds out at its own next read, so every waiter, in any
//! process, learns of a truncation within one slice, a waiter with a
//! deadline at that deadline at the latest, and then fails with its
//! object's corrupt error instead of a timeout. The slices cost a wake-up
//! per waiter every 100 ms, nothing on paths that do not sleep.
//!
//! What is not noticed: a file cut to a length that still covers the
//! object's page (every sync object fits in one page) faults nowhere. The
//! kernel zeroes the bytes past the new end, in every process at once,
//! which is what another process writing zeros there would do, and is
//! treated as such (the slices also keep such a rewrite from stranding a
//! waiter whose wake-up it swallowed).

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::base::segment::{Segment, ShmError, TRUNCATED};
use crate::sys::{self, Deadline, FutexWait};

/// The longest a waiter sleeps before it reads its object's memory again,
/// to notice a file truncated under it (see the module docs).
pub(super) const WAKE_SLICE: Duration = crate::base::segment::WAKE_SLICE;

/// Why [`sleep_on`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slept {
    /// Woken, spuriously or not, or the word had changed: check again.
    Woken,
    /// A slice passed with nothing heard: check again, then sleep again.
    Slice,
    /// The deadline passed.
    TimedOut,
}

/// Why [`sleep_on`] did not sleep.
#[derive(Debug)]
pub(super) enum WaitError {
    /// Another process truncated the object's file.
    Truncated,
    /// The OS refused the futex wait.
    Io(io::Error),
}

impl From<WaitError> for io::Error {
    fn from(e: WaitError) -> io::Error {
        match e {
            WaitError::Truncated => truncated_io(),
            WaitError::Io(e) => e,
        }
    }
}

/// What a method returning `io::Result` reports for a truncated object:
/// [`io::ErrorKind::InvalidData`] around [`ShmError::Corrupt`] (recover it
/// with `get_ref()` and `downcast_ref::<ShmError>()`).
pub(super) fn truncated_io() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        ShmError::Corrupt(TRUNCATED.to_string()),
    )
}

/// Sleeps while `word` (in `seg`) holds `expected`, until woken, until
/// `deadline`, or for one [`WAKE_SLICE`] at most.
///
/// Reads the word first and refuses to sleep once the segment was found
/// truncated: a private zero page is woken by nobody. A failed sleep is
/// `Truncated` too when the word's page turns out gone (a futex wait on a
/// page past the file's end is `EFAULT`).
#[cold]
pub(super) fn sleep_on(
    seg: &Segment,
    word: &AtomicU32,
    expected: u32,
    deadline: Deadline,
) -> Result<Slept, WaitError> {
    let gone = || {
        // Touch the word: if its page is gone this faults, and the handler
        // raises the flag read next.
        let _ = word.load(Ordering::Relaxed);
        seg.truncated()
    };
    if gone() {
        return Err(WaitError::Truncated);
    }
    let slice = Instant::now() + WAKE_SLICE;
    let last = deadline.is_some_and(|d| d <= slice);
    match sys::futex_wait(word, expected, if last { deadline } else { Some(slice) }) {
        Ok(FutexWait::Woken) => Ok(Slept::Woken),
        Ok(FutexWait::TimedOut) if last => Ok(Slept::TimedOut),
        Ok(FutexWait::TimedOut) => Ok(Slept::Slice),
        Err(_) if gone() => Err(WaitError::Truncated),
        Err(e) => Err(WaitError::Io(e)),
    }
}
