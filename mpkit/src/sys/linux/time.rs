//! Time: deadlines on the monotonic clock, and the kernel's time values.
//!
//! A deadline is an `Instant` (or none): every wait in mpkit takes one and
//! converts it at the last moment into what the call wants, a relative
//! timeout ([`remaining`]) or an absolute time on a chosen clock
//! ([`abs_timespec`]), so retries after `EINTR` never stretch the wait.
//!
//! # References
//! - [`clock_gettime(2)`](https://man7.org/linux/man-pages/man2/clock_gettime.2.html)

use std::time::{Duration, Instant};

use rustix::time::ClockId;

/// A deadline on the monotonic clock; `None` waits forever.
pub(crate) type Deadline = Option<Instant>;

/// The deadline `timeout` from now (`None` for no timeout). A timeout too
/// large to represent is treated as no timeout.
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Deadline {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Time left until `deadline`, as a `Timespec` for the kernel; `None` means
/// forever. An expired deadline gives zero.
pub(super) fn remaining(deadline: Deadline) -> Option<rustix::time::Timespec> {
    deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        }
    })
}

/// The absolute time `left` from now on `clock`, as the `timespec` that
/// the `*_timed*` calls take (`pthread_mutex_clocklock`, `mq_timedsend`).
/// Saturates instead of overflowing.
pub(super) fn abs_timespec(clock: ClockId, left: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(clock);
    let mut sec = now.tv_sec.saturating_add(left.as_secs() as i64);
    let mut nsec = now.tv_nsec + i64::from(left.subsec_nanos());
    if nsec >= 1_000_000_000 {
        sec = sec.saturating_add(1);
        nsec -= 1_000_000_000;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}
