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

mod transport;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Codec, CodecError, Postcard};
use crate::handle;
use crate::sys::{self, Deadline};
pub(crate) use transport::{Outgoing, RawConnection};

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

    /// The transport under this connection (the pool drives it directly,
    /// with descriptors beside raw messages).
    pub(crate) fn into_raw(self) -> RawConnection {
        self.raw
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
    queued_fds: Vec<(u64, u64, Vec<handle::BorrowedHandle<'a>>)>,
}

#[derive(Deserialize)]
struct WireIn {
    fd: handle::FdHandle,
    socket: bool,
    readable: bool,
    writable: bool,
    buffered: Vec<u8>,
    frame_fds: Vec<handle::FdHandle>,
    queued_fds: Vec<(u64, u64, Vec<handle::FdHandle>)>,
}

impl<C> Serialize for Connection<C> {
    /// A connection serializes as a handle: its descriptor travels beside the
    /// message, together with any data it had buffered but not yet received.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = &self.raw;
        if r.fds_lost() {
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
            queued_fds: r
                .queued_fds()
                .into_iter()
                .map(|(from, to, fds)| {
                    (
                        from,
                        to,
                        fds.into_iter().map(handle::BorrowedHandle).collect(),
                    )
                })
                .collect(),
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
        raw.restore_queued_fds(
            w.queued_fds
                .into_iter()
                .map(|(from, to, fds)| (from, to, fds.into_iter().map(|h| h.0).collect()))
                .collect(),
        );
        Ok(Connection {
            raw,
            _codec: PhantomData,
        })
    }
}

/// The typed layer over the transport: values in, values out, with the
/// handles they carry.
impl RawConnection {
    /// Encodes `value` with codec `C` and sends it, with its handles.
    pub(crate) fn send_value<C: Codec, T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), SendError> {
        self.send_built(|buf| {
            let (encoded, fds) = handle::collect(|| C::encode(value, buf));
            encoded.map_err(|source| SendError::Encode {
                type_name: std::any::type_name::<T>(),
                source,
            })?;
            Ok(fds)
        })
    }

    /// Receives and decodes one message with codec `C`.
    pub(crate) fn recv_value<C: Codec, T: DeserializeOwned>(
        &mut self,
        deadline: Deadline,
    ) -> Result<T, RecvError> {
        self.recv_with(deadline, |body, fds| {
            handle::provide(fds, || C::decode::<T>(body))
        })?
        .map_err(|source| RecvError::Decode {
            type_name: std::any::type_name::<T>(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
