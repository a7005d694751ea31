//! Readiness flags: an `eventfd` that becomes readable once raised and
//! stays readable (nobody reads it), so `poll` can wait on something that
//! happens in this process (a pool result arriving) together with
//! descriptors.
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
}
