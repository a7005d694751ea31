//! Message connections: [`pipe`] and [`Connection`] (Python's
//! `multiprocessing.Pipe` and `multiprocessing.connection.Connection`).
//!
//! # Anatomy
//!
//! A `Connection` owns one descriptor: a Unix stream socket (duplex pipes,
//! and later the sockets of `Listener`/`Client`) or an OS pipe (one-way
//! pipes, as in Python). The descriptor stays in blocking mode; reads that
//! must not block say so per call (`MSG_DONTWAIT`, `RWF_NOWAIT`), a wait
//! without a deadline sleeps in the read itself, and only a wait with a
//! deadline uses `poll` (which on a pipe would make every later write wake
//! the reader).
//!
//! Messages are framed exactly as CPython frames them, so the byte layer is
//! wire-compatible with `multiprocessing.connection`:
//!
//! | header | meaning |
//! |---|---|
//! | `i32` big-endian `n ≥ 0` | `n` bytes of message follow |
//! | `-1`, then `u64` big-endian `n` | `n` bytes follow (messages over 2 GiB) |
//! | `-2`, then `u32` big-endian `k` | mpkit only: the next message carries `k` descriptors, sent as `SCM_RIGHTS` with this header's first byte |
//!
//! CPython never writes `-2`, and mpkit writes it only when a message
//! carries handles, which only mpkit peers can use.
//!
//! Receiving is buffered: one `read` may bring many small messages. Before
//! sleeping, the receiver keeps trying for a while (yielding the CPU between
//! attempts) because on these machines a blocking wake-up costs 20-30 µs.
//! How long adapts: a sleep that ended soon (the data came within about a
//! wake-up's cost) doubles the spin, up to 50 µs; a long sleep halves it;
//! single-CPU machines never spin. In a steady ping-pong both sides then
//! meet without sleeping (a round trip of a few µs instead of tens).
//!
//! # Limitations
//! - `send` has no timeout: it blocks while the peer's buffer is full.
//! - A descriptor someone else put in non-blocking mode is honoured (waits
//!   then use `poll`); on kernels without `RWF_NOWAIT` for pipes (before
//!   5.x), a pipe is switched to non-blocking mode, a flag other holders of
//!   the same open file description see too.
//! - At most 253 handles per message (the kernel's `SCM_MAX_FD`).
//!
//! # Errors
//!
//! - The peer closed its end or its process died: [`RecvError::Eof`] at a
//!   message boundary, [`RecvError::Truncated`] in the middle of one. Never
//!   a hang, never a truncated value.
//! - A message that does not decode as the requested type:
//!   [`RecvError::Decode`], naming the type; the message is consumed and the
//!   connection stays usable.
//! - A message over the caller's limit, or larger than the caller's buffer:
//!   [`RecvError::TooLarge`] / [`RecvError::BufferTooShort`]; the message is
//!   left unread, so nothing is lost.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Codec, CodecError, Postcard};
use crate::handle;
use crate::sys::{self, Deadline};

/// Frame header value announcing descriptors for the next message.
const FD_MARK: i32 = -2;
/// Frame header value announcing a 64-bit length.
const LONG_MARK: i32 = -1;
/// Default (and minimum) size of the receive buffer.
const RBUF_DEFAULT: usize = 64 * 1024;
/// Buffers that grew past this for one huge message are given back after it.
const BUF_KEEP: usize = 1024 * 1024;
/// The adaptive spin before sleeping: never longer than `SPIN_MAX`, grown
/// in steps from `SPIN_STEP`. A sleep shorter than `SHORT_SLEEP` (a wake-up
/// costs 20-30 µs on the target machines) grows it; one longer than
/// `LONG_SLEEP` shrinks it.
const SPIN_MAX: Duration = Duration::from_micros(50);
const SPIN_STEP: Duration = Duration::from_micros(4);
const SHORT_SLEEP: Duration = Duration::from_micros(150);
const LONG_SLEEP: Duration = Duration::from_millis(2);
/// Messages up to this size are copied behind their header and written
/// with one `write`; larger ones go as two pieces with `writev`.
const COPY_LIMIT: usize = 16 * 1024;

/// Why a receive failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Every sending end is closed (or its process exited) and no message is
    /// left: Python's `EOFError`.
    #[error("end of file: the sending end was closed or its process exited")]
    Eof,
    /// The peer went away in the middle of a message; the partial message
    /// was discarded.
    #[error(
        "the peer closed the connection in the middle of a message \
         ({received} of {expected} bytes arrived)"
    )]
    Truncated {
        /// Bytes the frame header announced (header included).
        expected: u64,
        /// Bytes that arrived before end of file.
        received: u64,
    },
    /// No whole message arrived before the deadline. Any partial message
    /// stays buffered; the next receive continues it.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The next message is longer than the limit given to
    /// [`Connection::recv_bytes_max`]. It was left unread.
    #[error("message of {len} bytes exceeds the limit of {max} bytes; it was left unread")]
    TooLarge {
        /// The message's length.
        len: u64,
        /// The caller's limit.
        max: usize,
    },
    /// The next message does not fit the buffer given to
    /// [`Connection::recv_bytes_into`]. It was left unread.
    #[error("message of {len} bytes does not fit a {capacity}-byte buffer; it was left unread")]
    BufferTooShort {
        /// The message's length.
        len: usize,
        /// The buffer's length.
        capacity: usize,
    },
    /// The message arrived whole but is not a valid encoding of the
    /// requested type. It was consumed; the connection stays usable.
    #[error("could not decode a message as `{type_name}`: {source}")]
    Decode {
        /// The type the receiver asked for.
        type_name: &'static str,
        /// What the codec said.
        source: CodecError,
    },
    /// The byte stream is not framed as a Connection expects (the peer does
    /// not speak this protocol). The connection cannot be used further.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// This is the sending end of a one-way pipe.
    #[error("this end of a one-way pipe can only send")]
    NotReadable,
    /// The message arrived, but the descriptors sent with it were lost in
    /// transit (this process is at its open-file limit, or a security
    /// module refused them). The message was consumed; the connection stays
    /// usable.
    #[error(
        "the handles sent with this message were lost (too many open files?); \
         the message was dropped"
    )]
    HandlesLost,
    /// The operating system reported an error.
    #[error("receive failed: {0}")]
    Io(#[from] io::Error),
}

impl RecvError {
    /// True when the peer is gone ([`Eof`](Self::Eof) or
    /// [`Truncated`](Self::Truncated)).
    pub fn is_eof(&self) -> bool {
        matches!(self, RecvError::Eof | RecvError::Truncated { .. })
    }
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The receiving end is closed (or its process exited): `EPIPE`.
    #[error("the receiving end is closed (or its process exited)")]
    Disconnected,
    /// The value could not be encoded. Nothing was sent.
    #[error("could not encode a value of type `{type_name}`: {source}")]
    Encode {
        /// The type of the value.
        type_name: &'static str,
        /// What the codec said.
        source: CodecError,
    },
    /// The value contains mpkit handles, but this connection is an OS pipe,
    /// which cannot carry descriptors. Use a duplex pipe or a socket.
    #[error(
        "the value contains mpkit handles, which need a socket-backed connection \
         (a duplex pipe, Listener or Client), not a one-way OS pipe"
    )]
    HandlesNeedSocket,
    /// The value contains more handles than one message can carry.
    #[error("the value contains {0} handles; one message can carry at most 253")]
    TooManyHandles(usize),
    /// This is the receiving end of a one-way pipe.
    #[error("this end of a one-way pipe can only receive")]
    NotWritable,
    /// An earlier send failed after writing part of a message, so the peer
    /// would misread anything sent after it. The connection is unusable for
    /// sending.
    #[error("an earlier send failed in the middle of a message; the connection cannot send")]
    Broken,
    /// The operating system reported an error.
    #[error("send failed: {0}")]
    Io(#[from] io::Error),
}

/// Creates a pipe: two connected [`Connection`]s (Python's
/// `multiprocessing.Pipe(duplex)`).
///
/// With `duplex`, both ends send and receive (a Unix socket pair). Without
/// it, the first end only receives and the second only sends, in Python's
/// order (an OS pipe: the fastest path, but it cannot carry handles).
///
/// Uses the default [`Postcard`] codec; see [`Connection::pair`] for others.
///
/// ```
/// let (mut a, mut b) = mpkit::pipe(true)?;
/// a.send(&("ping", 1))?;
/// let (word, n): (String, i32) = b.recv()?;
/// assert_eq!((word.as_str(), n), ("ping", 1));
///
/// let (mut rx, mut tx) = mpkit::pipe(false)?;
/// tx.send(&vec![1u8, 2, 3])?;
/// assert_eq!(rx.recv::<Vec<u8>>()?, [1, 2, 3]);
/// assert!(rx.send(&0).is_err()); // the first end of a one-way pipe only receives
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe(duplex: bool) -> io::Result<(Connection, Connection)> {
    Connection::pair(duplex)
}

/// One end of a message channel between processes.
///
/// `C` is the [`Codec`] typed messages use ([`Postcard`] unless named).
/// A `Connection` can be moved into a child's arguments
/// ([`Process::spawn`](crate::Process::spawn)) or sent over another
/// socket-backed `Connection`; it arrives ready to use.
pub struct Connection<C = Postcard> {
    raw: RawConnection,
    _codec: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for Connection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.raw.fd.as_raw_fd())
            .field("socket", &self.raw.socket)
            .field("readable", &self.raw.readable)
            .field("writable", &self.raw.writable)
            .field("buffered", &(self.raw.rend - self.raw.rstart))
            .finish()
    }
}

impl<C: Codec> Connection<C> {
    /// Creates a pipe whose ends use codec `C`; see [`pipe`].
    ///
    /// ```
    /// use mpkit::{Connection, codec::Json};
    /// let (mut a, mut b) = Connection::<Json>::pair(true)?;
    /// a.send(&serde_json::json!({"message": "hi", "n": [1, 2]}))?;
    /// assert_eq!(b.recv_bytes()?, br#"{"message":"hi","n":[1,2]}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pair(duplex: bool) -> io::Result<(Connection<C>, Connection<C>)> {
        if duplex {
            let (a, b) = sys::socketpair()?;
            Ok((
                Connection::from_parts(a, true, true, true)?,
                Connection::from_parts(b, true, true, true)?,
            ))
        } else {
            let (r, w) = sys::pipe()?;
            Ok((
                Connection::from_parts(r, false, true, false)?,
                Connection::from_parts(w, false, false, true)?,
            ))
        }
    }

    pub(crate) fn from_raw(raw: RawConnection) -> Connection<C> {
        Connection {
            raw,
            _codec: PhantomData,
        }
    }

    pub(crate) fn from_parts(
        fd: OwnedFd,
        socket: bool,
        readable: bool,
        writable: bool,
    ) -> io::Result<Connection<C>> {
        Ok(Connection {
            raw: RawConnection::new(fd, socket, readable, writable),
            _codec: PhantomData,
        })
    }

    /// Sends a value, encoded with the connection's codec.
    ///
    /// Returns when the whole message is in the kernel's buffer (it blocks
    /// while the buffer is full). Handles inside `value` (another
    /// `Connection`, …) travel as descriptors; the sender keeps its own.
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        self.raw.send_value::<C, T>(value)
    }

    /// Receives the next message and decodes it as a `T`.
    ///
    /// Blocks until a whole message arrives. A message that does not decode
    /// as `T` is consumed and reported as [`RecvError::Decode`].
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.raw.recv_value::<C, T>(None)
    }

    /// Like [`recv`](Self::recv), giving up with [`RecvError::Timeout`]
    /// after `timeout` (a partial message stays buffered for the next call).
    pub fn recv_timeout<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, RecvError> {
        self.raw
            .recv_value::<C, T>(sys::deadline_after(Some(timeout)))
    }

    /// Changes the codec of this connection. Already buffered messages are
    /// kept.
    pub fn with_codec<D: Codec>(self) -> Connection<D> {
        Connection {
            raw: self.raw,
            _codec: PhantomData,
        }
    }
}

impl<C> Connection<C> {
    /// Sends `bytes` as one message, as is (Python's `send_bytes`).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.raw.send_message(bytes, &[])
    }

    /// Receives the next message as bytes (Python's `recv_bytes`).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, RecvError> {
        self.raw.recv_bytes(None, None)
    }

    /// Receives the next message as bytes, refusing messages longer than
    /// `max` with [`RecvError::TooLarge`] (the message is left unread).
    ///
    /// ```
    /// let (mut a, mut b) = mpkit::pipe(true)?;
    /// a.send_bytes(&[7; 100])?;
    /// assert!(matches!(b.recv_bytes_max(10), Err(mpkit::RecvError::TooLarge { len: 100, .. })));
    /// assert_eq!(b.recv_bytes()?.len(), 100); // still there
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_bytes_max(&mut self, max: usize) -> Result<Vec<u8>, RecvError> {
        self.raw.recv_bytes(Some(max), None)
    }

    /// Receives the next message as bytes, waiting at most `timeout`.
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.raw
            .recv_bytes(None, sys::deadline_after(Some(timeout)))
    }

    /// Receives the next message into `buf`, returning its length (Python's
    /// `recv_bytes_into`). A message longer than `buf` is left unread and
    /// reported as [`RecvError::BufferTooShort`] with its length.
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.raw.recv_into(buf)
    }

    /// Tells whether there is data to read (or end of file) (Python's
    /// `poll`). Waits up to `timeout`; `Some(Duration::ZERO)` only checks,
    /// `None` waits as long as it takes.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut a, mut b) = mpkit::pipe(true)?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send(&1u8)?;
    /// assert!(b.poll(Some(Duration::from_secs(5)))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        self.raw.poll(sys::deadline_after(timeout))
    }

    /// True when received data is already buffered (a receive may not need
    /// the kernel).
    pub(crate) fn has_buffered(&self) -> bool {
        self.raw.rend > self.raw.rstart
    }

    /// True when this end can receive.
    pub fn readable(&self) -> bool {
        self.raw.readable
    }

    /// True when this end can send.
    pub fn writable(&self) -> bool {
        self.raw.writable
    }

    /// Closes this end (Python's `close`). Dropping it does the same; `close`
    /// exists to say so explicitly. The peer's `recv` then reports
    /// [`RecvError::Eof`] once everything sent before is received.
    pub fn close(self) {
        drop(self);
    }

    /// Another handle to the same connection (`dup`), to give one copy away
    /// and keep the other. Buffered, not yet received data stays with
    /// `self`, so clone before receiving.
    pub fn try_clone(&self) -> io::Result<Connection<C>> {
        Ok(Connection {
            raw: RawConnection::new(
                sys::dup(self.raw.fd.as_fd())?,
                self.raw.socket,
                self.raw.readable,
                self.raw.writable,
            ),
            _codec: PhantomData,
        })
    }
}

impl<C> AsFd for Connection<C> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.raw.fd.as_fd()
    }
}

impl<C> AsRawFd for Connection<C> {
    fn as_raw_fd(&self) -> RawFd {
        self.raw.fd.as_raw_fd()
    }
}

impl<C: Codec> From<std::os::unix::net::UnixStream> for Connection<C> {
    /// Wraps a connected Unix stream socket. Both sides must frame messages
    /// as described in the module docs.
    fn from(s: std::os::unix::net::UnixStream) -> Self {
        Connection {
            raw: RawConnection::new(OwnedFd::from(s), true, true, true),
            _codec: PhantomData,
        }
    }
}

/// What a Connection looks like inside a message or Process arguments: its
/// descriptor, plus whatever it had received but not yet delivered (bytes,
/// the descriptors announced for the next message, and descriptors queued
/// for later messages), so that nothing is lost in the move.
#[derive(Serialize)]
struct WireOut<'a> {
    fd: handle::BorrowedHandle<'a>,
    socket: bool,
    readable: bool,
    writable: bool,
    buffered: &'a [u8],
    frame_fds: Vec<handle::BorrowedHandle<'a>>,
    queued_fds: Vec<handle::BorrowedHandle<'a>>,
}

#[derive(Deserialize)]
struct WireIn {
    fd: handle::FdHandle,
    socket: bool,
    readable: bool,
    writable: bool,
    buffered: Vec<u8>,
    frame_fds: Vec<handle::FdHandle>,
    queued_fds: Vec<handle::FdHandle>,
}

impl<C> Serialize for Connection<C> {
    /// A connection serializes as a handle: its descriptor travels beside the
    /// message, together with any data it had buffered but not yet received.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = &self.raw;
        if r.lost_frame || r.fds_lost {
            return Err(S::Error::custom(
                "cannot pass a Connection whose received handles were lost in transit",
            ));
        }
        fn borrow(fd: &OwnedFd) -> handle::BorrowedHandle<'_> {
            handle::BorrowedHandle(fd.as_fd())
        }
        WireOut {
            fd: handle::BorrowedHandle(r.fd.as_fd()),
            socket: r.socket,
            readable: r.readable,
            writable: r.writable && !r.broken,
            buffered: &r.rbuf[r.rstart..r.rend],
            frame_fds: r.frame_fds.iter().map(borrow).collect(),
            queued_fds: r.fds_in.iter().map(borrow).collect(),
        }
        .serialize(s)
    }
}

impl<'de, C> Deserialize<'de> for Connection<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(d)?;
        let mut raw = RawConnection::new(w.fd.0, w.socket, w.readable, w.writable);
        raw.preload(&w.buffered);
        raw.frame_fds = w.frame_fds.into_iter().map(|h| h.0).collect();
        raw.fds_in = w.queued_fds.into_iter().map(|h| h.0).collect();
        Ok(Connection {
            raw,
            _codec: PhantomData,
        })
    }
}

/// A parsed frame header.
enum Header {
    /// More bytes (this many from `rstart`) are needed to parse it.
    Need(usize),
    /// A message of `len` bytes starting `hdr` bytes after `rstart`.
    Frame { hdr: usize, len: u64 },
}

/// The codec-independent engine behind [`Connection`], also used for the
/// private channel between a parent and its child processes.
pub(crate) struct RawConnection {
    fd: OwnedFd,
    /// A socket (can carry descriptors, sends with `MSG_NOSIGNAL`) or a pipe.
    socket: bool,
    readable: bool,
    writable: bool,
    /// Receive buffer; always fully initialised (`len` is its capacity).
    rbuf: Vec<u8>,
    /// Unconsumed data is `rbuf[rstart..rend]`.
    rstart: usize,
    rend: usize,
    /// Descriptors received and not yet assigned to a message.
    fds_in: VecDeque<OwnedFd>,
    /// Descriptors announced (by a `-2` header) for the next message.
    frame_fds: Vec<OwnedFd>,
    /// Some received descriptors were lost (`MSG_CTRUNC`): the next
    /// announcement that finds too few is the message they belonged to.
    fds_lost: bool,
    /// The next message's descriptors were lost; it is reported as
    /// [`RecvError::HandlesLost`] when taken.
    lost_frame: bool,
    /// A send failed mid-message: no further sends.
    broken: bool,
    /// `SIGPIPE` was not ignored when this pipe connection was made, so
    /// writes block it around the call (see `sys::writev_no_sigpipe`).
    guard_sigpipe: bool,
    /// Send buffer, reused between messages.
    wbuf: Vec<u8>,
    /// Current spin budget before sleeping.
    spin: Duration,
    /// The descriptor is in `O_NONBLOCK` mode (someone else's choice, or the
    /// fallback on kernels without `RWF_NOWAIT` for pipes): waits use poll.
    nonblocking_fd: bool,
}

impl RawConnection {
    /// Wraps a descriptor. Its blocking mode is left as it is (it belongs to
    /// the open file description, which other processes may share): reads
    /// that must not block say so per call.
    pub(crate) fn new(fd: OwnedFd, socket: bool, readable: bool, writable: bool) -> RawConnection {
        let nonblocking_fd = sys::is_nonblocking(fd.as_fd()).unwrap_or(true);
        RawConnection {
            fd,
            socket,
            readable,
            writable,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            fds_in: VecDeque::new(),
            frame_fds: Vec::new(),
            fds_lost: false,
            lost_frame: false,
            broken: false,
            guard_sigpipe: !socket && !sys::sigpipe_ignored(),
            wbuf: Vec::new(),
            spin: SPIN_STEP,
            nonblocking_fd,
        }
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn preload(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.rbuf = data.to_vec();
            self.rbuf.resize(data.len().max(RBUF_DEFAULT), 0);
            self.rend = data.len();
        }
    }

    // ----- sending -------------------------------------------------------

    /// Encodes `value` with codec `C` and sends it, with its handles.
    pub(crate) fn send_value<C: Codec, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), SendError> {
        if !self.writable {
            return Err(SendError::NotWritable);
        }
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        let (encoded, fds) = handle::collect(|| C::encode(value, &mut buf));
        let result = match encoded {
            Err(source) => Err(SendError::Encode {
                type_name: std::any::type_name::<T>(),
                source,
            }),
            Ok(()) => {
                let len = buf.len() - 4;
                if let Ok(n) = i32::try_from(len) {
                    buf[..4].copy_from_slice(&n.to_be_bytes());
                    self.send_framed(&[&buf], &fds)
                } else {
                    let header = long_header(len as u64);
                    self.send_framed(&[&header, &buf[4..]], &fds)
                }
            }
        };
        if buf.capacity() <= BUF_KEEP {
            self.wbuf = buf;
        }
        result
    }

    /// Sends `bytes` as one message, with `fds` attached.
    pub(crate) fn send_message(&mut self, bytes: &[u8], fds: &[OwnedFd]) -> Result<(), SendError> {
        if !self.writable {
            return Err(SendError::NotWritable);
        }
        if bytes.len() <= COPY_LIMIT {
            // One contiguous write is measurably cheaper than two pieces.
            let mut buf = std::mem::take(&mut self.wbuf);
            buf.clear();
            buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            buf.extend_from_slice(bytes);
            let r = self.send_framed(&[&buf], fds);
            self.wbuf = buf;
            r
        } else if let Ok(n) = i32::try_from(bytes.len()) {
            self.send_framed(&[&n.to_be_bytes(), bytes], fds)
        } else {
            self.send_framed(&[&long_header(bytes.len() as u64), bytes], fds)
        }
    }

    /// Writes `parts` (an already framed message) completely; `fds` go with
    /// the first byte, announced by a `-2` header.
    fn send_framed(&mut self, parts: &[&[u8]], fds: &[OwnedFd]) -> Result<(), SendError> {
        if self.broken {
            return Err(SendError::Broken);
        }
        let mut mark = [0u8; 8];
        let mut slices: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        if !fds.is_empty() {
            if !self.socket {
                return Err(SendError::HandlesNeedSocket);
            }
            if fds.len() > sys::MAX_FDS_PER_MESSAGE {
                return Err(SendError::TooManyHandles(fds.len()));
            }
            mark[..4].copy_from_slice(&FD_MARK.to_be_bytes());
            mark[4..].copy_from_slice(&(fds.len() as u32).to_be_bytes());
            slices.push(&mark);
        }
        slices.extend_from_slice(parts);
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut sent = 0usize;
        while sent < total {
            let iov = io_slices_from(&slices, sent);
            let attach: &[BorrowedFd<'_>] = if sent == 0 { &borrowed } else { &[] };
            let r = if self.socket {
                sys::send_with_fds(self.fd.as_fd(), &iov, attach)
            } else if self.guard_sigpipe {
                sys::writev_no_sigpipe(self.fd.as_fd(), &iov)
            } else {
                sys::writev(self.fd.as_fd(), &iov)
            };
            let failure = match r {
                Ok(n) => {
                    sent += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match sys::wait_writable(self.fd.as_fd(), None) {
                        Ok(_) => continue,
                        Err(e) => SendError::Io(e),
                    }
                }
                Err(e) if is_disconnect(&e) => SendError::Disconnected,
                Err(e) => SendError::Io(e),
            };
            if sent > 0 {
                self.broken = true;
            }
            return Err(failure);
        }
        Ok(())
    }

    // ----- receiving -----------------------------------------------------

    /// Receives and decodes one message with codec `C`.
    pub(crate) fn recv_value<C: Codec, T: DeserializeOwned>(
        &mut self,
        deadline: Deadline,
    ) -> Result<T, RecvError> {
        let (start, len, total) = self.next_frame(None, deadline)?;
        let fds = std::mem::take(&mut self.frame_fds);
        if std::mem::take(&mut self.lost_frame) {
            self.consume(total);
            return Err(RecvError::HandlesLost);
        }
        let body = &self.rbuf[start..start + len];
        let decoded = handle::provide(fds, || C::decode::<T>(body));
        self.consume(total);
        decoded.map_err(|source| RecvError::Decode {
            type_name: std::any::type_name::<T>(),
            source,
        })
    }

    /// Receives one message as bytes; descriptors sent with it are closed.
    pub(crate) fn recv_bytes(
        &mut self,
        max: Option<usize>,
        deadline: Deadline,
    ) -> Result<Vec<u8>, RecvError> {
        let (start, len, total) = self.next_frame(max, deadline)?;
        self.frame_fds.clear();
        self.lost_frame = false;
        let out = self.rbuf[start..start + len].to_vec();
        self.consume(total);
        Ok(out)
    }

    /// Receives one message with the descriptors that came with it.
    pub(crate) fn recv_with_fds(
        &mut self,
        deadline: Deadline,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
        let (start, len, total) = self.next_frame(None, deadline)?;
        let fds = std::mem::take(&mut self.frame_fds);
        let out = self.rbuf[start..start + len].to_vec();
        self.consume(total);
        if std::mem::take(&mut self.lost_frame) {
            return Err(RecvError::HandlesLost);
        }
        Ok((out, fds))
    }

    fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        // Peek at the header first, so that a message too long for `buf` is
        // reported before its body is read (and stays unread).
        let (start, len, total) = self
            .next_frame(Some(buf.len()), None)
            .map_err(|e| match e {
                RecvError::TooLarge { len, max } => RecvError::BufferTooShort {
                    len: len as usize,
                    capacity: max,
                },
                e => e,
            })?;
        self.frame_fds.clear();
        self.lost_frame = false;
        buf[..len].copy_from_slice(&self.rbuf[start..start + len]);
        self.consume(total);
        Ok(len)
    }

    /// Makes the next whole message available in `rbuf`.
    /// Returns `(body start, body length, bytes to consume)`.
    fn next_frame(
        &mut self,
        max: Option<usize>,
        deadline: Deadline,
    ) -> Result<(usize, usize, usize), RecvError> {
        if !self.readable {
            return Err(RecvError::NotReadable);
        }
        loop {
            match self.parse_header()? {
                Header::Need(n) => self.fill_to(n as u64, deadline)?,
                Header::Frame { hdr, len } => {
                    if let Some(max) = max {
                        if len > max as u64 {
                            return Err(RecvError::TooLarge { len, max });
                        }
                    }
                    let total = (hdr as u64)
                        .checked_add(len)
                        .filter(|&t| t <= isize::MAX as u64);
                    let Some(total) = total else {
                        return Err(RecvError::Malformed(format!(
                            "message length {len} is impossible"
                        )));
                    };
                    if self.buffered() as u64 >= total {
                        let total = total as usize;
                        return Ok((self.rstart + hdr, total - hdr, total));
                    }
                    self.fill_to(total, deadline)?;
                }
            }
        }
    }

    fn buffered(&self) -> usize {
        self.rend - self.rstart
    }

    /// Parses the header at `rstart`, taking any descriptor announcement
    /// that precedes it.
    fn parse_header(&mut self) -> Result<Header, RecvError> {
        loop {
            let avail = &self.rbuf[self.rstart..self.rend];
            if avail.len() < 4 {
                return Ok(Header::Need(4));
            }
            let n = i32::from_be_bytes(avail[..4].try_into().expect("4 bytes"));
            match n {
                n if n >= 0 => {
                    return Ok(Header::Frame {
                        hdr: 4,
                        len: n as u64,
                    });
                }
                LONG_MARK => {
                    if avail.len() < 12 {
                        return Ok(Header::Need(12));
                    }
                    let len = u64::from_be_bytes(avail[4..12].try_into().expect("8 bytes"));
                    return Ok(Header::Frame { hdr: 12, len });
                }
                FD_MARK => {
                    if avail.len() < 8 {
                        return Ok(Header::Need(8));
                    }
                    let count =
                        u32::from_be_bytes(avail[4..8].try_into().expect("4 bytes")) as usize;
                    if !self.frame_fds.is_empty() || self.lost_frame {
                        return Err(RecvError::Malformed(
                            "two descriptor announcements for one message".into(),
                        ));
                    }
                    if count > self.fds_in.len() {
                        if !self.fds_lost {
                            return Err(RecvError::Malformed(format!(
                                "a message announced {count} descriptors but {} arrived",
                                self.fds_in.len()
                            )));
                        }
                        // These are the descriptors the kernel could not
                        // deliver: this message reports it, the next ones
                        // are unaffected.
                        self.fds_in.clear();
                        self.fds_lost = false;
                        self.lost_frame = true;
                    } else {
                        self.frame_fds = self.fds_in.drain(..count).collect();
                    }
                    self.rstart += 8;
                }
                n => return Err(RecvError::Malformed(format!("invalid frame header {n}"))),
            }
        }
    }

    /// Reads until at least `need` bytes are buffered from `rstart`.
    fn fill_to(&mut self, need: u64, deadline: Deadline) -> Result<(), RecvError> {
        while (self.buffered() as u64) < need {
            self.make_room(need);
            self.fill(deadline).map_err(|e| match e {
                RecvError::Eof if self.buffered() > 0 => RecvError::Truncated {
                    expected: need,
                    received: self.buffered() as u64,
                },
                e => e,
            })?;
        }
        Ok(())
    }

    /// Ensures there is free space after `rend`, growing the buffer towards
    /// `need` bytes — but only as data actually arrives, so a peer that
    /// announces a huge message cannot make us allocate it up front.
    fn make_room(&mut self, need: u64) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        let len = self.rbuf.len();
        if self.rend < len && (len - self.rstart) as u64 >= need {
            return;
        }
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == len {
            // Full of real data: at most double, never past the frame's size,
            // never below the default.
            let target = need.min((2 * len).max(RBUF_DEFAULT) as u64) as usize;
            self.rbuf.resize(target.max(RBUF_DEFAULT), 0);
        }
    }

    /// Drops `n` consumed bytes; gives back a buffer grown for a huge message.
    fn consume(&mut self, n: usize) {
        self.rstart += n;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
            if self.rbuf.len() > BUF_KEEP {
                self.rbuf = vec![0; RBUF_DEFAULT];
            }
        }
    }

    /// Reads once into the free space, spinning briefly and then sleeping
    /// while no data is available.
    fn fill(&mut self, deadline: Deadline) -> Result<(), RecvError> {
        loop {
            if self.read_once(true)? {
                return Ok(());
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(RecvError::Timeout);
            }
            if self.spin_read(deadline)? {
                return Ok(());
            }
            let slept_from = Instant::now();
            let got = if deadline.is_none() && !self.nonblocking_fd {
                // Sleep in the read itself: no `poll`, which on a pipe would
                // make every later write wake us (`pipe->poll_usage`).
                self.read_once(false)?
            } else {
                if !sys::wait_readable(self.fd.as_fd(), deadline)? {
                    return Err(RecvError::Timeout);
                }
                self.read_once(true)?
            };
            self.learn_from_sleep(slept_from.elapsed());
            if got {
                return Ok(());
            }
        }
    }

    /// Before sleeping, keeps retrying non-blocking reads for up to the
    /// adaptive spin budget, yielding the CPU between attempts (so a peer
    /// sharing this CPU still runs). Only on machines with several CPUs.
    fn spin_read(&mut self, deadline: Deadline) -> Result<bool, RecvError> {
        if self.spin.is_zero() || !sys::several_cpus() {
            return Ok(false);
        }
        let start = Instant::now();
        let mut until = start + self.spin;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        while Instant::now() < until {
            sys::yield_now();
            if self.read_once(true)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Adapts the spin budget to how long the last sleep lasted: a short
    /// sleep (the data came within about a wake-up's cost) means spinning
    /// would have been cheaper, so spin longer; a long one means the peer is
    /// slow or idle, so spin less.
    fn learn_from_sleep(&mut self, slept: Duration) {
        if slept <= SHORT_SLEEP {
            self.spin = (self.spin * 2).clamp(SPIN_STEP, SPIN_MAX);
        } else if slept >= LONG_SLEEP {
            self.spin /= 2;
            if self.spin < SPIN_STEP {
                self.spin = Duration::ZERO;
            }
        }
    }

    /// One read. With `nowait`, never blocks (`MSG_DONTWAIT` on sockets,
    /// `RWF_NOWAIT` on pipes); otherwise it sleeps until data or end of
    /// file. `Ok(true)`: data arrived; `Ok(false)`: none yet; end of file is
    /// `Err(Eof)`.
    fn read_once(&mut self, nowait: bool) -> Result<bool, RecvError> {
        let buf = &mut self.rbuf[self.rend..];
        let r = if self.socket {
            sys::recv_with_fds(self.fd.as_fd(), buf, &mut self.fds_in, nowait).map(
                |(n, truncated)| {
                    self.fds_lost |= truncated;
                    n
                },
            )
        } else if nowait && !self.nonblocking_fd {
            match sys::read_nowait(self.fd.as_fd(), buf) {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    // An old kernel without RWF_NOWAIT on pipes: fall back to
                    // a non-blocking descriptor, waited on with poll.
                    sys::set_nonblocking(self.fd.as_fd(), true)?;
                    self.nonblocking_fd = true;
                    sys::read(self.fd.as_fd(), buf)
                }
                r => r,
            }
        } else {
            sys::read(self.fd.as_fd(), buf)
        };
        match r {
            Ok(0) => Err(RecvError::Eof),
            Ok(n) => {
                self.rend += n;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if is_disconnect(&e) => Err(RecvError::Eof),
            Err(e) => Err(RecvError::Io(e)),
        }
    }

    fn poll(&mut self, deadline: Deadline) -> io::Result<bool> {
        if !self.readable {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "poll on the sending end of a one-way pipe",
            ));
        }
        if self.buffered() > 0 {
            return Ok(true);
        }
        sys::wait_readable(self.fd.as_fd(), deadline)
    }
}

/// The 12-byte header CPython uses for messages over 2 GiB.
fn long_header(len: u64) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&LONG_MARK.to_be_bytes());
    h[4..].copy_from_slice(&len.to_be_bytes());
    h
}

/// `IoSlice`s for `parts` with the first `skip` bytes left out.
fn io_slices_from<'a>(parts: &[&'a [u8]], mut skip: usize) -> Vec<IoSlice<'a>> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        if skip >= p.len() {
            skip -= p.len();
            continue;
        }
        out.push(IoSlice::new(&p[skip..]));
        skip = 0;
    }
    out
}

/// Errors that mean the peer is gone.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(sys::EPIPE) | Some(sys::ECONNRESET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cpython_compatible() {
        let (mut a, b) = pipe(true).unwrap();
        a.send_bytes(b"hello").unwrap();
        let mut raw = [0u8; 9];
        let n = sys::read(b.as_fd(), &mut raw).unwrap();
        assert_eq!(&raw[..n], b"\0\0\0\x05hello");
    }

    #[test]
    fn long_headers_parse() {
        let (mut a, mut b) = pipe(true).unwrap();
        let mut msg = long_header(3).to_vec();
        msg.extend_from_slice(b"abc");
        a.raw.send_framed(&[&msg], &[]).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"abc");
    }

    #[test]
    fn garbage_headers_are_malformed() {
        let (mut a, mut b) = pipe(true).unwrap();
        a.raw.send_framed(&[&(-7i32).to_be_bytes()], &[]).unwrap();
        assert!(matches!(b.recv_bytes(), Err(RecvError::Malformed(_))));
    }

    #[test]
    fn a_huge_announced_length_does_not_allocate_it() {
        let (mut a, mut b) = pipe(true).unwrap();
        a.raw
            .send_framed(&[&i32::MAX.to_be_bytes(), b"xy"], &[])
            .unwrap();
        assert!(matches!(
            b.recv_bytes_timeout(Duration::from_millis(50)),
            Err(RecvError::Timeout)
        ));
        assert!(b.raw.rbuf.len() <= 2 * RBUF_DEFAULT);
        drop(a);
        assert!(matches!(b.recv_bytes(), Err(RecvError::Truncated { .. })));
    }

    #[test]
    fn decode_errors_name_the_type_and_keep_the_connection() {
        let (mut a, mut b) = pipe(true).unwrap();
        a.send(&"text").unwrap();
        a.send(&5u16).unwrap();
        let err = b.recv::<(u64, u64, u64, u64, u64, u64)>().unwrap_err();
        assert!(
            err.to_string().contains("(u64, u64, u64, u64, u64, u64)"),
            "{err}"
        );
        assert_eq!(b.recv::<u16>().unwrap(), 5);
    }

    #[test]
    fn buffer_too_short_leaves_the_message() {
        let (mut a, mut b) = pipe(false).unwrap();
        let _ = &mut a;
        b.send_bytes(b"0123456789").unwrap();
        let mut small = [0u8; 4];
        assert!(matches!(
            a.recv_bytes_into(&mut small),
            Err(RecvError::BufferTooShort {
                len: 10,
                capacity: 4
            })
        ));
        let mut big = [0u8; 16];
        assert_eq!(a.recv_bytes_into(&mut big).unwrap(), 10);
        assert_eq!(&big[..10], b"0123456789");
    }

    #[test]
    fn one_way_ends_refuse_the_other_direction() {
        let (mut rx, mut tx) = pipe(false).unwrap();
        assert!(matches!(rx.send(&1), Err(SendError::NotWritable)));
        assert!(matches!(tx.recv::<i32>(), Err(RecvError::NotReadable)));
    }

    #[test]
    fn connections_travel_over_connections() {
        let (mut a, mut b) = pipe(true).unwrap();
        let (mut x, y) = pipe(true).unwrap();
        a.send(&("here", &y)).unwrap();
        drop(y);
        let (word, mut y2): (String, Connection) = b.recv().unwrap();
        assert_eq!(word, "here");
        x.send(&42u32).unwrap();
        assert_eq!(y2.recv::<u32>().unwrap(), 42);
    }

    #[test]
    fn handles_cannot_cross_an_os_pipe() {
        let (_rx, mut tx) = pipe(false).unwrap();
        let (x, _y) = pipe(true).unwrap();
        assert!(matches!(tx.send(&x), Err(SendError::HandlesNeedSocket)));
    }

    #[test]
    fn eof_after_the_last_message() {
        let (mut rx, mut tx) = pipe(false).unwrap();
        tx.send(&1u8).unwrap();
        tx.close();
        assert_eq!(rx.recv::<u8>().unwrap(), 1);
        assert!(matches!(rx.recv::<u8>(), Err(RecvError::Eof)));
    }
}
