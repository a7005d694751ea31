//! Readiness flags: an `eventfd` that becomes readable once raised and
//! stays readable until lowered, so `poll` can wait on something that
//! happens in this process (a pool result arriving, work for the pool's
//! dispatcher) together with descriptors. Raising one wakes a waiter
//! without the *synchronous* hint a pipe's or socket's write gives the
//! scheduler (that the writer is about to sleep, so the woken thread may
//! as well run on the writer's CPU).
//!
//! # References
//! - [`eventfd(2)`](https://man7.org/linux/man-pages/man2/eventfd.2.html)

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::EventfdFlags;
use rustix::io::Errno;

use super::errno::io_err;

/// A new, lowered readiness flag (an `eventfd` with counter 0,
/// close-on-exec and non-blocking).
pub(crate) fn ready_flag() -> io::Result<OwnedFd> {
    rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(io_err)
}

/// Raises a flag made by [`ready_flag`]: it is readable from now on.
/// Raising it again adds 1 to the counter, which only a reader (there is
/// none) would ever bring back down: a counter near `u64::MAX` (`EAGAIN`)
/// is as raised as any other.
pub(crate) fn raise_ready_flag(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match rustix::io::write(fd, &1u64.to_ne_bytes()) {
            Err(Errno::INTR) => continue,
            Ok(_) | Err(Errno::AGAIN) => return Ok(()),
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Lowers a flag made by [`ready_flag`] (reads its counter back to 0), for
/// a flag used as a wake-up that is raised again and again. A flag already
/// lowered stays so.
pub(crate) fn lower_ready_flag(fd: BorrowedFd<'_>) {
    let mut counter = [0u8; 8];
    // Only `EAGAIN` (already 0) or `EINTR` can come back from an eventfd
    // read into 8 bytes; after `EINTR` the flag is still raised, and
    // whoever lowers it polls it again first.
    let _ = rustix::io::read(fd, &mut counter);
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::time::Instant;

    use super::*;
    use crate::sys::wait_readable;

    #[test]
    fn a_raised_flag_stays_readable() {
        let flag = ready_flag().unwrap();
        assert!(!wait_readable(flag.as_fd(), Some(Instant::now())).unwrap());
        raise_ready_flag(flag.as_fd()).unwrap();
        raise_ready_flag(flag.as_fd()).unwrap();
        assert!(wait_readable(flag.as_fd(), Some(Instant::now())).unwrap());
        assert!(wait_readable(flag.as_fd(), Some(Instant::now())).unwrap());
    }

    #[test]
    fn a_lowered_flag_waits_for_the_next_raise() {
        let flag = ready_flag().unwrap();
        raise_ready_flag(flag.as_fd()).unwrap();
        raise_ready_flag(flag.as_fd()).unwrap();
        lower_ready_flag(flag.as_fd());
        assert!(!wait_readable(flag.as_fd(), Some(Instant::now())).unwrap());
        lower_ready_flag(flag.as_fd());
        assert!(!wait_readable(flag.as_fd(), Some(Instant::now())).unwrap());
        raise_ready_flag(flag.as_fd()).unwrap();
        assert!(wait_readable(flag.as_fd(), Some(Instant::now())).unwrap());
    }
}
