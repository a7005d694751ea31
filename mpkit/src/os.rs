//! The kernel's byte pipes: anonymous pipes (Python's `os.pipe`) and named
//! pipes in the file system (Python's `os.mkfifo`), as `std::io::Read` /
//! `Write` ends that also pass to child processes.
//!
//! ```
//! use std::io::{Read, Write};
//! use mpkit::{Process, os};
//!
//! let (mut reader, writer) = os::pipe()?;
//! let child = Process::spawn(|mut w: os::PipeWriter| {
//!     w.write_all(b"bytes, not messages").unwrap();
//! }, writer)?; // the parent's write end moves to the child
//! let mut text = String::new();
//! reader.read_to_string(&mut text)?; // end of file once the child's end closes
//! assert_eq!(text, "bytes, not messages");
//! child.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Unlike a [`Connection`](crate::Connection), these carry a byte stream
//! with no message boundaries, and talk to any program (`cat`, a shell,
//! Python's `open(fifo)`).
//!
//! Writing to a pipe whose readers are all gone is an error
//! (`ErrorKind::BrokenPipe`), never a killed process: mpkit blocks
//! `SIGPIPE` around the write where the program has not ignored it.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::handle;
use crate::sys;

/// An anonymous pipe: `(reader, writer)`, both close-on-exec (they reach a
/// child only as `Process` arguments).
pub fn pipe() -> io::Result<(PipeReader, PipeWriter)> {
    let (r, w) = sys::pipe()?;
    Ok((PipeReader(r), PipeWriter::new(w)))
}

/// The reading end of a pipe or FIFO.
#[derive(Debug)]
pub struct PipeReader(OwnedFd);

/// The writing end of a pipe or FIFO.
#[derive(Debug)]
pub struct PipeWriter {
    fd: OwnedFd,
    /// `SIGPIPE` was not ignored when this end was made (a C host, say).
    guard_sigpipe: bool,
}

impl PipeWriter {
    fn new(fd: OwnedFd) -> PipeWriter {
        PipeWriter {
            fd,
            guard_sigpipe: !sys::sigpipe_ignored(),
        }
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.0.as_fd(), buf)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.guard_sigpipe {
            sys::writev_no_sigpipe(self.fd.as_fd(), bufs)
        } else {
            sys::writev(self.fd.as_fd(), bufs)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! pipe_end_traits {
    ($ty:ident, $fd:tt, $make:expr) => {
        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.$fd.as_fd()
            }
        }

        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.$fd.as_raw_fd()
            }
        }

        impl From<$ty> for OwnedFd {
            fn from(end: $ty) -> OwnedFd {
                end.$fd
            }
        }

        impl Serialize for $ty {
            /// Passes as a handle to a child or over a connection.
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                handle::BorrowedHandle(self.$fd.as_fd()).serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                handle::FdHandle::deserialize(d).map(|h| $make(h.0))
            }
        }
    };
}

pipe_end_traits!(PipeReader, 0, PipeReader);
pipe_end_traits!(PipeWriter, fd, PipeWriter::new);

/// Why a FIFO operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FifoError {
    /// Something already exists at the path (Python's `FileExistsError`).
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// Nothing exists at the path.
    #[error("no FIFO at {0}")]
    NotFound(PathBuf),
    /// The path exists but is not a FIFO.
    #[error("{0} is not a FIFO")]
    NotAFifo(PathBuf),
    /// A non-blocking open for writing found no reader (`ENXIO`).
    #[error("no process has {0} open for reading")]
    NoReader(PathBuf),
    /// The other side did not open within the timeout.
    #[error("nobody opened the other end of {0} in time")]
    Timeout(PathBuf),
    /// The operating system refused.
    #[error("{path}: {source}")]
    Io {
        /// The FIFO.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// How to open a FIFO: opening one side normally waits until the other
/// side opens too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// Wait as long as it takes for the other side.
    Blocking,
    /// Do not wait: a reader opens at once (and reads end of file while no
    /// writer is there); a writer fails with [`FifoError::NoReader`].
    NonBlocking,
    /// Wait at most this long, then [`FifoError::Timeout`].
    Timeout(Duration),
}

/// Named pipes (FIFOs) in the file system, for unrelated processes.
///
/// ```
/// use std::io::{Read, Write};
/// use mpkit::os::{Fifo, Open};
///
/// let path = std::env::temp_dir().join(format!("mpkit-doc-{}.fifo", std::process::id()));
/// Fifo::create(&path, 0o600)?;
/// let writer = std::thread::spawn({
///     let path = path.clone();
///     move || Fifo::open_writer(&path, Open::Blocking).unwrap().write_all(b"through the file system").unwrap()
/// });
/// let mut text = String::new();
/// Fifo::open_reader(&path, Open::Blocking)?.read_to_string(&mut text)?;
/// writer.join().unwrap();
/// assert_eq!(text, "through the file system");
/// Fifo::remove(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Fifo;

fn io_error(path: &Path, e: io::Error) -> FifoError {
    match e.raw_os_error() {
        Some(sys::EEXIST) => FifoError::Exists(path.to_path_buf()),
        Some(sys::ENOENT) => FifoError::NotFound(path.to_path_buf()),
        Some(sys::ENXIO) => FifoError::NoReader(path.to_path_buf()),
        _ => FifoError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

impl Fifo {
    /// Creates a FIFO with permission bits `mode` (Python's `os.mkfifo`).
    pub fn create(path: impl AsRef<Path>, mode: u32) -> Result<(), FifoError> {
        let path = path.as_ref();
        sys::mkfifo(path, mode).map_err(|e| io_error(path, e))
    }

    /// Removes a FIFO; refuses anything that is not one.
    pub fn remove(path: impl AsRef<Path>) -> Result<(), FifoError> {
        let path = path.as_ref();
        Fifo::check(path)?;
        std::fs::remove_file(path).map_err(|e| io_error(path, e))
    }

    fn check(path: &Path) -> Result<(), FifoError> {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::symlink_metadata(path).map_err(|e| io_error(path, e))?;
        if meta.file_type().is_fifo() {
            Ok(())
        } else {
            Err(FifoError::NotAFifo(path.to_path_buf()))
        }
    }

    /// Opens the FIFO for reading.
    pub fn open_reader(path: impl AsRef<Path>, open: Open) -> Result<PipeReader, FifoError> {
        Fifo::open(path.as_ref(), false, open).map(PipeReader)
    }

    /// Opens the FIFO for writing.
    pub fn open_writer(path: impl AsRef<Path>, open: Open) -> Result<PipeWriter, FifoError> {
        Fifo::open(path.as_ref(), true, open).map(PipeWriter::new)
    }

    fn open(path: &Path, write: bool, open: Open) -> Result<OwnedFd, FifoError> {
        Fifo::check(path)?;
        let err = |e| io_error(path, e);
        match open {
            Open::Blocking => sys::open_fifo(path, write, false).map_err(err),
            Open::NonBlocking => {
                let fd = sys::open_fifo(path, write, true).map_err(err)?;
                // Non-blocking only for the open: reads and writes block as
                // the Read/Write traits expect.
                sys::set_nonblocking(fd.as_fd(), false).map_err(err)?;
                Ok(fd)
            }
            Open::Timeout(t) => Fifo::open_within(path, write, t),
        }
    }

    /// A blocking open in a helper thread; at the deadline, this side opens
    /// the other end itself (non-blocking), which completes the helper's
    /// open at once, and both are closed. No polling.
    fn open_within(path: &Path, write: bool, timeout: Duration) -> Result<OwnedFd, FifoError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("mpkit-fifo-open".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = tx.send(sys::open_fifo(&owned, write, false));
            })
            .map_err(|e| io_error(path, e))?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r.map_err(|e| io_error(path, e)),
            Err(_) => {
                // Unblock the helper: be its missing peer for a moment (a
                // non-blocking open of the other side always succeeds while
                // the helper waits), then close both. A real peer arriving
                // at that very moment is refused with the helper's end.
                let _peer = sys::open_fifo(path, !write, true);
                let _ = rx.recv_timeout(Duration::from_secs(1));
                Err(FifoError::Timeout(path.to_path_buf()))
            }
        }
    }
}
