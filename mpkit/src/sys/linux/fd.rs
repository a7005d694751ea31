//! Descriptors: waiting for readiness, file-status and descriptor flags,
//! plain reads and writes, and close-on-exec across `exec`.
//!
//! # References
//! - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
//! - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
//! - [`preadv2(2)`](https://man7.org/linux/man-pages/man2/preadv2.2.html)
//! - [`close_range(2)`](https://man7.org/linux/man-pages/man2/close_range.2.html)
//! - [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html)

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

use super::errno::io_err;
use super::time::{Deadline, remaining};

/// What [`wait_fds`] saw on one descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// Data (or end of file) can be read.
    pub readable: bool,
    /// Data can be written (or the peer is gone, which a write will report).
    pub writable: bool,
}

/// Waits until one of `fds` is ready for what its `want` asks, or `deadline`
/// passes. Returns one `Ready` per descriptor; all false means the deadline
/// passed. Interrupted waits are resumed with the time that is left.
///
/// # References
/// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
pub(crate) fn wait_fds(
    fds: &[(BorrowedFd<'_>, Ready)],
    deadline: Deadline,
) -> io::Result<Vec<Ready>> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, want)| {
            let mut flags = PollFlags::empty();
            if want.readable {
                flags |= PollFlags::IN;
            }
            if want.writable {
                flags |= PollFlags::OUT;
            }
            PollFd::from_borrowed_fd(*fd, flags)
        })
        .collect();
    loop {
        let timeout = remaining(deadline);
        match rustix::event::poll(&mut pfds, timeout.as_ref()) {
            Ok(_) => break,
            Err(Errno::INTR) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            }
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(pfds
        .iter()
        .map(|p| {
            let r = p.revents();
            let gone = r.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL);
            Ready {
                readable: r.contains(PollFlags::IN) || gone,
                writable: r.contains(PollFlags::OUT) || gone,
            }
        })
        .collect())
}

/// Waits until `fd` is readable (or at end of file). Returns false when the
/// deadline passed first.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, deadline: Deadline) -> io::Result<bool> {
    let want = Ready {
        readable: true,
        writable: false,
    };
    Ok(wait_fds(&[(fd, want)], deadline)?[0].readable)
}

/// Waits until `fd` is writable. Returns false when the deadline passed first.
pub(crate) fn wait_writable(fd: BorrowedFd<'_>, deadline: Deadline) -> io::Result<bool> {
    let want = Ready {
        readable: false,
        writable: true,
    };
    Ok(wait_fds(&[(fd, want)], deadline)?[0].writable)
}

/// Sets or clears `O_NONBLOCK` (a flag of the open file description, so
/// every process sharing it sees it).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use rustix::fs::OFlags;
    let mut flags = rustix::fs::fcntl_getfl(fd).map_err(io_err)?;
    flags.set(OFlags::NONBLOCK, on);
    rustix::fs::fcntl_setfl(fd, flags).map_err(io_err)
}

/// Opens `path` for reading without ever blocking in the open: a FIFO
/// (which anyone may put where a file was expected) opens at once instead
/// of waiting for a writer. Reads of a regular file are unaffected by the
/// flag.
///
/// # References
/// - [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html)
/// - [`fifo(7)`](https://man7.org/linux/man-pages/man7/fifo.7.html)
pub(crate) fn open_read_nonblocking(path: &std::path::Path) -> io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(io_err)?;
    Ok(std::fs::File::from(fd))
}

/// Whether `fd` is in `O_NONBLOCK` mode.
pub(crate) fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let flags = rustix::fs::fcntl_getfl(fd).map_err(io_err)?;
    Ok(flags.contains(rustix::fs::OFlags::NONBLOCK))
}

/// One read that never blocks, on a descriptor in blocking mode
/// (`preadv2(RWF_NOWAIT)`): `WouldBlock` when no data is ready,
/// `Unsupported` on kernels that lack `RWF_NOWAIT` for this file.
pub(crate) fn read_nowait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(buf)];
    loop {
        match rustix::io::preadv2(fd, &mut iov, u64::MAX, rustix::io::ReadWriteFlags::NOWAIT) {
            Err(Errno::INTR) => continue,
            Err(Errno::OPNOTSUPP) | Err(Errno::INVAL) | Err(Errno::NOSYS) => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, "RWF_NOWAIT"));
            }
            r => return r.map_err(io_err),
        }
    }
}

/// Sets or clears `FD_CLOEXEC` on `fd`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use rustix::io::FdFlags;
    let mut flags = rustix::io::fcntl_getfd(fd).map_err(io_err)?;
    flags.set(FdFlags::CLOEXEC, on);
    rustix::io::fcntl_setfd(fd, flags).map_err(io_err)
}

/// Duplicates `fd` (close-on-exec set on the copy).
pub(crate) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(io_err)
}

/// The kind of object behind a descriptor, as far as mpkit cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// A pipe or FIFO.
    Pipe,
    /// A socket.
    Socket,
    /// Anything else.
    Other,
}

/// Tells what kind of object `fd` refers to (`fstat`).
pub(crate) fn fd_kind(fd: BorrowedFd<'_>) -> io::Result<FdKind> {
    use rustix::fs::FileType;
    let st = rustix::fs::fstat(fd).map_err(io_err)?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => FdKind::Pipe,
        FileType::Socket => FdKind::Socket,
        _ => FdKind::Other,
    })
}

/// `read(2)` once. `Ok(0)` is end of file. `EINTR` is retried.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io_err),
        }
    }
}

/// `writev(2)` once; returns how many bytes went. `EINTR` is retried.
///
/// On a pipe whose reader is gone this raises `SIGPIPE`, which Rust programs
/// (and mpkit's children) ignore, so the caller sees `EPIPE`.
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        match rustix::io::writev(fd, bufs) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io_err),
        }
    }
}

/// Marks every descriptor from 3 upwards close-on-exec.
///
/// Async-signal-safe: called between `fork` and `exec`. Uses
/// `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11); on older kernels falls
/// back to `fcntl` over the descriptor numbers below the soft limit.
pub(crate) fn cloexec_all_from_3() {
    // SAFETY: close_range only changes descriptor flags; no memory is touched.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r == 0 {
        return;
    }
    let mut lim = MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit writes into the rlimit we own.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, lim.as_mut_ptr()) } == 0 {
        // SAFETY: getrlimit succeeded, so `lim` is initialised.
        (unsafe { lim.assume_init() }.rlim_cur).min(65536) as RawFd
    } else {
        1024
    };
    for fd in 3..max {
        // SAFETY: fcntl on a number that may not be open is harmless (EBADF).
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Clears close-on-exec on a raw descriptor number. Async-signal-safe.
pub(crate) fn clear_cloexec_raw(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number touches no memory.
    let ok = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == 0;
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
