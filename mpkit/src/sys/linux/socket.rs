//! Unix and TCP sockets: socket pairs, listeners, descriptor passing
//! (`SCM_RIGHTS`) and peer credentials.
//!
//! # References
//! - [`socketpair(2)`](https://man7.org/linux/man-pages/man2/socketpair.2.html)
//! - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
//!   (`SCM_RIGHTS`, `SO_PEERCRED`)
//! - [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html),
//!   [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html),
//!   [`cmsg(3)`](https://man7.org/linux/man-pages/man3/cmsg.3.html)
//! - [`tcp(7)`](https://man7.org/linux/man-pages/man7/tcp.7.html) (`TCP_NODELAY`)

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::errno::io_err;
use super::time::{Deadline, remaining};

/// Most descriptors one `sendmsg` may carry (`SCM_MAX_FD` in the kernel).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// A connected pair of Unix stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io_err)
}

/// `sendmsg(2)` once on a socket, attaching `fds` as `SCM_RIGHTS` (at most
/// [`MAX_FDS_PER_MESSAGE`]). `MSG_NOSIGNAL`: a vanished peer is `EPIPE`, not a
/// signal. Returns how many bytes went; the descriptors go with the first byte.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    send_fds_flags(sock, bufs, fds, SendFlags::NOSIGNAL)
}

/// [`send_with_fds`] that never waits (`MSG_DONTWAIT`, whatever the
/// socket's own mode): a full socket buffer is `WouldBlock` with nothing
/// sent.
pub(crate) fn try_send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    send_fds_flags(sock, bufs, fds, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
}

fn send_fds_flags(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    flags: SendFlags,
) -> io::Result<usize> {
    debug_assert!(fds.len() <= MAX_FDS_PER_MESSAGE);
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "descriptor list does not fit the control buffer",
        ));
    }
    loop {
        match rustix::net::sendmsg(sock, bufs, &mut control, flags) {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io_err),
        }
    }
}

/// `recvmsg(2)` once on a socket. Received descriptors (close-on-exec) are
/// appended to `fds`. Returns the byte count (0 is end of file) and whether
/// descriptors were lost (`MSG_CTRUNC`: at the open-file limit, or refused):
/// the bytes are kept either way, so the stream stays in step. `EINTR` is
/// retried.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nowait: bool,
) -> io::Result<(usize, bool)> {
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nowait {
        flags |= RecvFlags::DONTWAIT;
    }
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match rustix::net::recvmsg(sock, &mut iov, &mut control, flags) {
            Err(Errno::INTR) => continue,
            r => break r.map_err(io_err)?,
        }
    };
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    Ok((
        msg.bytes,
        msg.flags.contains(rustix::net::ReturnFlags::CTRUNC),
    ))
}

/// The pid and uid of the process at the other end of a Unix socket
/// (`SO_PEERCRED`, as it was when the socket was made).
pub(crate) fn peer_credentials(sock: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    let cred = rustix::net::sockopt::socket_peercred(sock).map_err(io_err)?;
    Ok((cred.pid.as_raw_nonzero().get(), cred.uid.as_raw()))
}

/// A listening Unix socket at `path` whose file has mode 0600 from the start:
/// the mode is set on the socket before `bind` creates the file (Linux
/// gives the file the socket inode's mode), so there is no window in which
/// others could connect.
pub(crate) fn unix_listener_0600(path: &std::path::Path, backlog: u32) -> io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io_err)?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600)).map_err(io_err)?;
    let addr = rustix::net::SocketAddrUnix::new(path).map_err(io_err)?;
    rustix::net::bind(&fd, &addr).map_err(io_err)?;
    rustix::net::listen(&fd, backlog.min(i32::MAX as u32) as i32).map_err(io_err)?;
    Ok(fd)
}

/// Whether a listener is behind the Unix socket file at `path`: a
/// non-blocking `connect` that is refused means nobody listens (the file
/// was left by a listener that died); one that is accepted, or that would
/// wait for room in a full backlog, means someone does. The probe
/// connection is closed at once (the listener sees a peer that left).
///
/// # References
/// - [`connect(2)`](https://man7.org/linux/man-pages/man2/connect.2.html)
pub(crate) fn unix_path_has_listener(path: &std::path::Path) -> io::Result<bool> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(io_err)?;
    let addr = rustix::net::SocketAddrUnix::new(path).map_err(io_err)?;
    loop {
        return match rustix::net::connect(&fd, &addr) {
            Ok(()) | Err(Errno::AGAIN) | Err(Errno::INPROGRESS) => Ok(true),
            Err(Errno::CONNREFUSED) => Ok(false),
            Err(Errno::INTR) => continue,
            Err(e) => Err(io_err(e)),
        };
    }
}

/// Accepts a connection (close-on-exec, blocking whatever the listener's
/// mode). `EINTR` and `ECONNABORTED` (a peer that gave up while queued) are
/// retried; a non-blocking listener with nobody queued is `WouldBlock`.
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        match rustix::net::accept_with(listener, rustix::net::SocketFlags::CLOEXEC) {
            Err(Errno::INTR) | Err(Errno::CONNABORTED) => continue,
            r => return r.map_err(io_err),
        }
    }
}

/// Turns off Nagle's algorithm on a TCP socket (small messages go at once).
pub(crate) fn set_nodelay(sock: BorrowedFd<'_>) {
    let _ = rustix::net::sockopt::set_tcp_nodelay(sock, true);
}

/// A new epoll instance (close-on-exec): readiness of many descriptors at
/// once, itself readable while any of them is ready, so it can be waited on
/// like one descriptor.
///
/// # References
/// - [`epoll(7)`](https://man7.org/linux/man-pages/man7/epoll.7.html)
pub(crate) fn epoll_new() -> io::Result<OwnedFd> {
    rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).map_err(io_err)
}

/// Watches `fd` for reading (level-triggered), reported as `token`.
pub(crate) fn epoll_watch(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
    use rustix::event::epoll;
    epoll::add(
        epoll,
        fd,
        epoll::EventData::new_u64(token),
        epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
    )
    .map_err(io_err)
}

/// Stops watching `fd` (closing it does the same).
pub(crate) fn epoll_unwatch(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::event::epoll::delete(epoll, fd).map_err(io_err)
}

/// Waits until some watched descriptor is ready or `deadline` passes;
/// returns the tokens of those ready (at most 64), empty at the deadline.
/// An interrupted wait returns empty too (callers loop on their deadline).
pub(crate) fn epoll_ready(epoll: BorrowedFd<'_>, deadline: Deadline) -> io::Result<Vec<u64>> {
    let mut events: Vec<rustix::event::epoll::Event> = Vec::with_capacity(64);
    let spare = rustix::buffer::spare_capacity(&mut events);
    match rustix::event::epoll::wait(epoll, spare, remaining(deadline).as_ref()) {
        Ok(_) | Err(Errno::INTR) => {}
        Err(e) => return Err(io_err(e)),
    }
    Ok(events.iter().map(|e| e.data.u64()).collect())
}
