//! OS error numbers: what callers match `io::Error::raw_os_error()` against,
//! so that no module above `sys` names `libc`.
//!
//! # References
//! - [`errno(3)`](https://man7.org/linux/man-pages/man3/errno.3.html)

use std::io;

use rustix::io::Errno;

/// Converts a rustix error into a `std::io::Error`.
#[inline]
pub(crate) fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Argument list too long (a System V message larger than the receive
/// buffer).
pub(crate) const E2BIG: i32 = libc::E2BIG;
/// Permission denied.
pub(crate) const EACCES: i32 = libc::EACCES;
/// Resource temporarily unavailable (would block).
pub(crate) const EAGAIN: i32 = libc::EAGAIN;
/// Connection reset by peer.
pub(crate) const ECONNRESET: i32 = libc::ECONNRESET;
/// File exists.
pub(crate) const EEXIST: i32 = libc::EEXIST;
/// Identifier removed (a System V queue removed while in use).
pub(crate) const EIDRM: i32 = libc::EIDRM;
/// Invalid argument.
pub(crate) const EINVAL: i32 = libc::EINVAL;
/// Message too long.
pub(crate) const EMSGSIZE: i32 = libc::EMSGSIZE;
/// File name too long.
pub(crate) const ENAMETOOLONG: i32 = libc::ENAMETOOLONG;
/// No such file or directory.
pub(crate) const ENOENT: i32 = libc::ENOENT;
/// No message of the desired type.
pub(crate) const ENOMSG: i32 = libc::ENOMSG;
/// No space left on device (for queues: a system-wide count limit).
pub(crate) const ENOSPC: i32 = libc::ENOSPC;
/// No such device or address (a FIFO opened for writing without readers).
pub(crate) const ENXIO: i32 = libc::ENXIO;
/// Operation not permitted.
pub(crate) const EPERM: i32 = libc::EPERM;
/// Broken pipe.
pub(crate) const EPIPE: i32 = libc::EPIPE;
/// No such process.
pub(crate) const ESRCH: i32 = libc::ESRCH;
/// Timer expired.
pub(crate) const ETIMEDOUT: i32 = libc::ETIMEDOUT;

/// True for the errors that say the system (or this process) is short of
/// a resource for now, not that the call can never work: out of
/// descriptors (`EMFILE`, `ENFILE`), of processes or memory (`EAGAIN`,
/// `ENOMEM`, `ENOBUFS`). Trying again later may succeed.
pub(crate) fn is_resource_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM | libc::ENOBUFS)
    )
}
