//! The raw framed transport under [`Connection`](super::Connection): byte
//! messages in CPython's framing over one descriptor, with the descriptors
//! that travel beside them, and no codec. `process` (the bootstrap and the
//! result) and `net` (the handshakes) use it directly.
//!
//! The wire format and the receiver's invariants are described in the
//! [module docs](super) and in ARCHITECTURE.md ("Connection wire format").

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{RecvError, SendError};
use crate::base::spin::{Poll, Spin};
use crate::sys::{self, Deadline};

mod fds;

use fds::FdBatch;

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
    pub(super) fd: OwnedFd,
    /// A socket (can carry descriptors, sends with `MSG_NOSIGNAL`) or a pipe.
    pub(super) socket: bool,
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// Receive buffer; always fully initialised (`len` is its capacity).
    pub(super) rbuf: Vec<u8>,
    /// Unconsumed data is `rbuf[rstart..rend]`.
    pub(super) rstart: usize,
    pub(super) rend: usize,
    /// Stream offset of `rbuf[rend]`: how many bytes were ever read.
    abs_end: u64,
    /// Descriptors received and not yet assigned to a message, in stream
    /// order; only batches an announcement may still claim are kept (see
    /// `settle_fds`), at most [`fds::MAX_QUEUED_FDS`] descriptors in all.
    fds_in: VecDeque<FdBatch>,
    /// Descriptors announced (by a `-2` header) for the next message.
    pub(super) frame_fds: Vec<OwnedFd>,
    /// The next message's descriptors were lost; it is reported as
    /// [`RecvError::HandlesLost`] when taken.
    pub(super) lost_frame: bool,
    /// A send failed mid-message: no further sends.
    pub(super) broken: bool,
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
            abs_end: 0,
            fds_in: VecDeque::new(),
            frame_fds: Vec::new(),
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

    pub(super) fn preload(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.rbuf = data.to_vec();
            self.rbuf.resize(data.len().max(RBUF_DEFAULT), 0);
            self.rend = data.len();
            self.abs_end = data.len() as u64;
        }
    }

    // ----- sending -------------------------------------------------------

    /// Sends one message that `fill` appends to the buffer it is given
    /// (leaving what the buffer already holds, the frame header's room),
    /// with the descriptors `fill` returns attached. Nothing is sent when
    /// `fill` fails. The typed front encodes straight into the send buffer
    /// this way, so a message is written with one copy.
    pub(crate) fn send_built(
        &mut self,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<Vec<OwnedFd>, SendError>,
    ) -> Result<(), SendError> {
        if !self.writable {
            return Err(SendError::NotWritable);
        }
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        let result = fill(&mut buf).and_then(|fds| {
            let len = buf.len() - 4;
            if let Ok(n) = i32::try_from(len) {
                buf[..4].copy_from_slice(&n.to_be_bytes());
                self.send_framed(&[&buf], &fds)
            } else {
                self.send_framed(&[&long_header(len as u64), &buf[4..]], &fds)
            }
        });
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

    /// Sends as much of one message (`bytes`, with `fds` on its first
    /// byte) as the socket takes now, never waiting: `Ok(true)` once all of
    /// it went, `Ok(false)` when the socket is full (wait until it is
    /// writable and call again, with the same `out`, `bytes` and `fds`).
    /// The message is framed as [`send_message`](Self::send_message) frames
    /// it. Sockets only. A failure after part of the message went leaves
    /// the connection broken, as a blocking send does.
    pub(crate) fn send_nowait(
        &mut self,
        out: &mut Outgoing,
        bytes: &[u8],
        fds: &[OwnedFd],
    ) -> Result<bool, SendError> {
        if !self.writable {
            return Err(SendError::NotWritable);
        }
        if !self.socket {
            return Err(SendError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "a send that never waits needs a socket",
            )));
        }
        if self.broken {
            return Err(SendError::Broken);
        }
        if fds.len() > sys::MAX_FDS_PER_MESSAGE {
            return Err(SendError::TooManyHandles(fds.len()));
        }
        let head = &out.head[..out.head_len];
        let total = head.len() + bytes.len();
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        while out.sent < total {
            let iov = io_slices_from(&[head, bytes], out.sent);
            let attach: &[BorrowedFd<'_>] = if out.sent == 0 { &borrowed } else { &[] };
            let failure = match sys::try_send_with_fds(self.fd.as_fd(), &iov, attach) {
                Ok(n) => {
                    out.sent += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if is_disconnect(&e) => SendError::Disconnected,
                Err(e) => SendError::Io(e),
            };
            if out.sent > 0 {
                self.broken = true;
            }
            return Err(failure);
        }
        Ok(true)
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

    /// Receives one message and hands it to `read` with the descriptors that
    /// came with it; the message is consumed whatever `read` returns. A
    /// message whose descriptors were lost is [`RecvError::HandlesLost`]
    /// (and consumed too).
    pub(crate) fn recv_with<R>(
        &mut self,
        deadline: Deadline,
        read: impl FnOnce(&[u8], Vec<OwnedFd>) -> R,
    ) -> Result<R, RecvError> {
        let (start, len, total) = self.next_frame(None, deadline)?;
        let fds = std::mem::take(&mut self.frame_fds);
        if std::mem::take(&mut self.lost_frame) {
            self.consume(total);
            return Err(RecvError::HandlesLost);
        }
        let out = read(&self.rbuf[start..start + len], fds);
        self.consume(total);
        Ok(out)
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

    pub(super) fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
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
            // Batches wholly before this header were never announced.
            let here = self.abs_at(self.rstart);
            while self.fds_in.front().is_some_and(|b| b.to <= here) {
                self.fds_in.pop_front();
            }
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
                    self.claim_fds(count)?;
                    self.rstart += 8;
                }
                n => return Err(RecvError::Malformed(format!("invalid frame header {n}"))),
            }
        }
    }

    /// Stream offset of `rbuf[i]`.
    fn abs_at(&self, i: usize) -> u64 {
        self.abs_end - (self.rend - i) as u64
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
        let mut spin = Spin::with_limit(Poll::Syscall, self.spin, deadline);
        while spin.pause() {
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
        let mut fds = Vec::new();
        let mut truncated = false;
        let r = if self.socket {
            sys::recv_with_fds(self.fd.as_fd(), buf, &mut fds, nowait).map(|(n, t)| {
                truncated = t;
                n
            })
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
                self.abs_end += n as u64;
                self.queue_fds(n, fds, truncated);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if is_disconnect(&e) => Err(RecvError::Eof),
            Err(e) => Err(RecvError::Io(e)),
        }
    }

    pub(super) fn poll(&mut self, deadline: Deadline) -> io::Result<bool> {
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
/// A message on its way out through [`RawConnection::send_nowait`]: its
/// frame header (the descriptor announcement, if any, then the length) and
/// how many bytes of header and message have gone.
pub(crate) struct Outgoing {
    head: [u8; 20],
    head_len: usize,
    sent: usize,
}

impl Outgoing {
    /// Nothing sent yet of a message of `len` bytes carrying `fds`
    /// descriptors.
    pub(crate) fn new(len: usize, fds: usize) -> Outgoing {
        let mut head = [0u8; 20];
        let mut at = 0;
        if fds > 0 {
            head[..4].copy_from_slice(&FD_MARK.to_be_bytes());
            head[4..8].copy_from_slice(&(fds as u32).to_be_bytes());
            at = 8;
        }
        if let Ok(n) = i32::try_from(len) {
            head[at..at + 4].copy_from_slice(&n.to_be_bytes());
            at += 4;
        } else {
            head[at..at + 12].copy_from_slice(&long_header(len as u64));
            at += 12;
        }
        Outgoing {
            head,
            head_len: at,
            sent: 0,
        }
    }
}

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
    use crate::connection::pipe;

    /// A message larger than the socket buffer goes out in pieces, resumed
    /// where the full socket stopped, with its descriptor and framing whole
    /// for a reader that uses the ordinary receive, and a message after it.
    #[test]
    fn send_nowait_resumes_where_the_full_socket_stopped() {
        let (a, b) = sys::socketpair().unwrap();
        let mut tx = RawConnection::new(a, true, true, true);
        let mut rx = RawConnection::new(b, true, true, true);
        let big: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
        let fds = vec![sys::pipe().unwrap().0];
        let mut out = Outgoing::new(big.len(), fds.len());
        assert!(
            !tx.send_nowait(&mut out, &big, &fds).unwrap(),
            "4 MiB fit at once"
        );
        let reader = std::thread::spawn(move || {
            let first = rx.recv_with_fds(None).unwrap();
            (first, rx.recv_with_fds(None).unwrap())
        });
        while !tx.send_nowait(&mut out, &big, &fds).unwrap() {
            sys::wait_writable(tx.as_fd(), None).unwrap();
        }
        let mut small = Outgoing::new(3, 0);
        assert!(tx.send_nowait(&mut small, b"end", &[]).unwrap());
        let ((msg, got), (end, none)) = reader.join().unwrap();
        assert!(msg == big, "the message came back changed");
        assert_eq!(got.len(), 1);
        assert_eq!((end.as_slice(), none.len()), (&b"end"[..], 0));
    }

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
}
