//! Anonymous pipes and named pipes (FIFOs).
//!
//! # References
//! - [`pipe(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html)
//! - [`mkfifo(3)`](https://man7.org/linux/man-pages/man3/mkfifo.3.html),
//!   [`fifo(7)`](https://man7.org/linux/man-pages/man7/fifo.7.html)

use std::io;
use std::os::fd::OwnedFd;

use rustix::io::Errno;

use super::errno::io_err;

/// An anonymous pipe, both ends close-on-exec: `(read end, write end)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io_err)
}

/// Creates a FIFO (`mkfifo(3)`).
pub(crate) fn mkfifo(path: &std::path::Path, mode: u32) -> io::Result<()> {
    use rustix::fs::{CWD, FileType, Mode};
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(mode), 0).map_err(io_err)
}

/// Opens a FIFO (close-on-exec) for reading or writing; `nonblock` makes
/// the open itself not wait for the other side.
pub(crate) fn open_fifo(
    path: &std::path::Path,
    write: bool,
    nonblock: bool,
) -> io::Result<OwnedFd> {
    use rustix::fs::{CWD, Mode, OFlags};
    let mut flags = OFlags::CLOEXEC
        | if write {
            OFlags::WRONLY
        } else {
            OFlags::RDONLY
        };
    if nonblock {
        flags |= OFlags::NONBLOCK;
    }
    loop {
        match rustix::fs::openat(CWD, path, flags, Mode::empty()) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io_err),
        }
    }
}
