//! Linux backend of the platform layer.
//!
//! Each function is a thin front over one system call (or a short, fixed
//! sequence of them), named after what it does. `rustix` is used wherever it
//! has the call; `libc` only for `close_range`, `dladdr` and the
//! async-signal-safe calls made between `fork` and `exec`.
//!
//! # References
//! - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
//! - [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html)
//! - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html) (`SCM_RIGHTS`)
//! - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html),
//!   [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html),
//!   [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Most descriptors one `sendmsg` may carry (`SCM_MAX_FD` in the kernel).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// Converts a rustix error into a `std::io::Error`.
#[inline]
pub(crate) fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

// ---------------------------------------------------------------------------
// Time and waiting for descriptors
// ---------------------------------------------------------------------------

/// A deadline on the monotonic clock; `None` waits forever.
pub(crate) type Deadline = Option<Instant>;

/// The deadline `timeout` from now (`None` for no timeout). A timeout too
/// large to represent is treated as no timeout.
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Deadline {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Time left until `deadline`, as a `Timespec` for the kernel; `None` means
/// forever. An expired deadline gives zero.
fn remaining(deadline: Deadline) -> Option<rustix::time::Timespec> {
    deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        }
    })
}

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

// ---------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------

/// Sets or clears `O_NONBLOCK` (a flag of the open file description, so
/// every process sharing it sees it).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use rustix::fs::OFlags;
    let mut flags = rustix::fs::fcntl_getfl(fd).map_err(io_err)?;
    flags.set(OFlags::NONBLOCK, on);
    rustix::fs::fcntl_setfl(fd, flags).map_err(io_err)
}

/// Whether `fd` is in `O_NONBLOCK` mode.
pub(crate) fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let flags = rustix::fs::fcntl_getfl(fd).map_err(io_err)?;
    Ok(flags.contains(rustix::fs::OFlags::NONBLOCK))
}

/// Whether this process may run on more than one CPU (spinning while
/// waiting for another process only pays off then).
pub(crate) fn several_cpus() -> bool {
    static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // Online CPUs, not this process's affinity: a process pinned to one CPU
    // still meets a peer running on another.
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    *SEVERAL.get_or_init(|| unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } > 1)
}

/// Gives the CPU to another runnable thread, if any (`sched_yield`).
pub(crate) fn yield_now() {
    rustix::thread::sched_yield();
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

/// An anonymous pipe, both ends close-on-exec: `(read end, write end)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io_err)
}

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

/// `sendmsg(2)` once on a socket, attaching `fds` as `SCM_RIGHTS` (at most
/// [`MAX_FDS_PER_MESSAGE`]). `MSG_NOSIGNAL`: a vanished peer is `EPIPE`, not a
/// signal. Returns how many bytes went; the descriptors go with the first byte.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
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
        match rustix::net::sendmsg(sock, bufs, &mut control, SendFlags::NOSIGNAL) {
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
    fds: &mut VecDeque<OwnedFd>,
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

/// Whether `SIGPIPE` is ignored in this process (as the Rust runtime sets it
/// before `main`; C hosts and some Rust configurations leave the default,
/// which kills the process on a write to a pipe without readers).
pub(crate) fn sigpipe_ignored() -> bool {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries the current one into `old`.
    let ok = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), old.as_mut_ptr()) } == 0;
    // SAFETY: zero-initialised, and filled in on success.
    ok && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// [`writev`] for a process where `SIGPIPE` is not ignored: blocks it for
/// this thread around the write and consumes the one the write raised, so a
/// vanished reader is `EPIPE` instead of death (as curl and OpenSSL do).
pub(crate) fn writev_no_sigpipe(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: the sigset functions only touch the local sets passed to them;
    // pthread_sigmask and sigtimedwait read/write those sets and the thread's
    // mask, which is restored before returning.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        let set = set.assume_init();
        let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr());
        let mut pending = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigpending(pending.as_mut_ptr());
        let already = libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1;
        let r = writev(fd, bufs);
        if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) && !already {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == -1
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
        r
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

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Exit {
    /// It called `exit(code)` (or returned from `main`).
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It exited, but someone else collected its status (`SIGCHLD` set to
    /// ignore, or a `waitpid(-1)` reaper elsewhere in the program).
    Unknown,
}

/// The id of the calling process.
pub(crate) fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// The id of the calling process's parent (0 when it has none).
pub(crate) fn getppid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

fn pid(p: i32) -> io::Result<rustix::process::Pid> {
    rustix::process::Pid::from_raw(p).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
}

/// Opens a pidfd for `pid`: a descriptor that stays tied to that process even
/// after its id is reused, becomes readable when it exits, and lets us signal
/// and reap it without races.
pub(crate) fn pidfd_open(p: i32) -> io::Result<OwnedFd> {
    rustix::process::pidfd_open(pid(p)?, rustix::process::PidfdFlags::empty()).map_err(io_err)
}

/// Sends signal number `sig` to the process behind `pidfd`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let sig = signal(sig)?;
    rustix::process::pidfd_send_signal(pidfd, sig).map_err(io_err)
}

/// Sends signal number `sig` to process `p` (`kill(2)`).
pub(crate) fn kill(p: i32, sig: i32) -> io::Result<()> {
    rustix::process::kill_process(pid(p)?, signal(sig)?).map_err(io_err)
}

fn signal(sig: i32) -> io::Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// True when the process behind `pidfd` has exited (it may not be reaped).
pub(crate) fn pidfd_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    wait_readable(pidfd, Some(Instant::now()))
}

/// Reaps the child behind `pidfd` if it has exited (`waitid(P_PIDFD)`).
/// With `block`, waits for it to exit.
pub(crate) fn reap(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<Exit>> {
    use rustix::process::{WaitId, WaitIdOptions};
    let mut opts = WaitIdOptions::EXITED;
    if !block {
        opts |= WaitIdOptions::NOHANG;
    }
    let status = loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
            Err(Errno::INTR) => continue,
            // Already reaped by someone else: once the pidfd says it exited,
            // that is all there is to know.
            Err(Errno::CHILD) if pidfd_exited(pidfd)? => return Ok(Some(Exit::Unknown)),
            r => break r.map_err(io_err)?,
        }
    };
    Ok(status.and_then(|s| {
        if let Some(code) = s.exit_status() {
            Some(Exit::Code(code))
        } else {
            s.terminating_signal().map(Exit::Signal)
        }
    }))
}

/// A child's current state as `waitid(P_PIDFD, … | WNOWAIT)` sees it,
/// without consuming the event: `None` while it runs normally.
pub(crate) fn peek_state(pidfd: BorrowedFd<'_>) -> io::Result<Option<ChildState>> {
    use rustix::process::{WaitId, WaitIdOptions};
    let opts = WaitIdOptions::EXITED
        | WaitIdOptions::STOPPED
        | WaitIdOptions::CONTINUED
        | WaitIdOptions::NOHANG
        | WaitIdOptions::NOWAIT;
    let status = loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
            Err(Errno::INTR) => continue,
            Err(Errno::CHILD) => return Ok(Some(ChildState::Exited)),
            r => break r.map_err(io_err)?,
        }
    };
    Ok(status.map(|s| {
        if s.stopped() {
            ChildState::Stopped(s.stopping_signal().unwrap_or(libc::SIGSTOP))
        } else if s.continued() {
            ChildState::Continued
        } else {
            ChildState::Exited
        }
    }))
}

/// What [`peek_state`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildState {
    Stopped(i32),
    Continued,
    Exited,
}

/// Sets the disposition of `SIGPIPE` to "ignore", as the Rust runtime does
/// before `main`, so writes to a vanished reader fail with `EPIPE`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: SIG_IGN is a valid disposition and installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The base address of the loaded object (executable or shared library)
/// that contains `addr`, from `dladdr(3)`.
pub(crate) fn object_base(addr: usize) -> Option<usize> {
    let mut info = MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) } != 0;
    // SAFETY: zero-initialised, and filled in when dladdr returned non-zero.
    let info = unsafe { info.assume_init() };
    (found && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

/// The base address of the main executable (not of a shared library),
/// found from the program headers the kernel passed in the auxiliary vector.
pub(crate) fn main_executable_base() -> Option<usize> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as usize;
    if phdr == 0 { None } else { object_base(phdr) }
}

/// True when this process runs set-user-id, set-group-id or with file
/// capabilities (`AT_SECURE`): its environment is not to be trusted.
pub(crate) fn is_secure_exec() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The pid and uid of the process at the other end of a Unix socket
/// (`SO_PEERCRED`, as it was when the socket was made).
pub(crate) fn peer_credentials(sock: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    let cred = rustix::net::sockopt::socket_peercred(sock).map_err(io_err)?;
    Ok((cred.pid.as_raw_nonzero().get(), cred.uid.as_raw()))
}

/// The real user id of this process.
pub(crate) fn getuid() -> u32 {
    rustix::process::getuid().as_raw()
}

// ---------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------

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

/// Accepts a connection (close-on-exec). `EINTR` and `ECONNABORTED` (a peer
/// that gave up while queued) are retried.
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

/// Fills `buf` from the kernel's random number generator.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Shared memory
// ---------------------------------------------------------------------------

/// An anonymous shared-memory file (`memfd_create`, close-on-exec, sealable)
/// of `len` bytes. The kernel frees it when the last descriptor and mapping
/// are gone, even if every holder was killed.
pub(crate) fn memfd(name: &str, len: u64) -> io::Result<OwnedFd> {
    use rustix::fs::MemfdFlags;
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(io_err)?;
    rustix::fs::ftruncate(&fd, len).map_err(io_err)?;
    Ok(fd)
}

/// Creates (exclusively) or opens a named POSIX shared-memory object.
/// `name` starts with `/`, as `shm_open(3)` wants.
pub(crate) fn shm_open(name: &str, create: bool, mode: u32) -> io::Result<OwnedFd> {
    use rustix::shm::{Mode, OFlags};
    let mut flags = OFlags::RDWR;
    if create {
        flags |= OFlags::CREATE | OFlags::EXCL;
    }
    rustix::shm::open(name, flags, Mode::from_raw_mode(mode)).map_err(io_err)
}

/// Removes a named POSIX shared-memory object.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    rustix::shm::unlink(name).map_err(io_err)
}

/// Sets the size of a shared-memory file.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, len).map_err(io_err)
}

/// The size of a file.
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd).map_err(io_err)?.st_size as u64)
}

/// A shared, read-write mapping of a file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes; all access
// to it goes through atomics or through types that synchronise it themselves.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared with every other mapping
    /// of the same file.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        use rustix::mm::{MapFlags, ProtFlags};
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map 0 bytes",
            ));
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases no
        // Rust object; it is unmapped only in Drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(io_err)?;
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }

    /// The start of the mapping (page-aligned).
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// ---------------------------------------------------------------------------
// Futexes (process-shared: never FUTEX_PRIVATE_FLAG)
// ---------------------------------------------------------------------------

/// Why [`futex_wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken, spuriously woken, or the word no longer held `expected`:
    /// the caller re-checks its condition.
    Woken,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or `deadline`.
///
/// Uses a *shared* futex (no `FUTEX_PRIVATE_FLAG`), so a wake from any
/// process that maps the same memory reaches it.
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    deadline: Deadline,
) -> io::Result<FutexWait> {
    use rustix::thread::futex;
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(FutexWait::TimedOut);
    }
    let timeout = remaining(deadline);
    match futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref()) {
        Ok(()) | Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(FutexWait::Woken),
        Err(Errno::TIMEDOUT) => Ok(FutexWait::TimedOut),
        Err(e) => Err(io_err(e)),
    }
}

/// Wakes up to `n` waiters sleeping on `word` in any process. Returns how
/// many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    use rustix::thread::futex;
    // The kernel reads the count as a signed int: "all" is i32::MAX.
    let n = n.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The child entry point
// ---------------------------------------------------------------------------

/// Runs before `main` in every binary that links mpkit's process module.
///
/// When this process is an mpkit child (the bootstrap variable is set), it
/// runs the requested function and exits without ever reaching `main`; in
/// any other process it returns at once. Being in `.init_array` is what lets
/// test binaries, doctests, examples and benchmarks spawn without any code
/// of their own.
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static CHILD_ENTRY: extern "C" fn(i32, *const *const u8, *const *const u8) = child_entry;

extern "C" fn child_entry(_argc: i32, _argv: *const *const u8, _envp: *const *const u8) {
    crate::process::child::run_if_child();
}

/// Keeps [`CHILD_ENTRY`] in the link: called from `Process::spawn`, so any
/// binary that can spawn a child can also be one.
#[inline]
pub(crate) fn keep_child_entry() {
    std::hint::black_box(&CHILD_ENTRY);
}

// ---------------------------------------------------------------------------
// Robust process-shared mutexes
// ---------------------------------------------------------------------------

thread_local! {
    /// This thread's id, once asked for (0: not yet).
    static TID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// This thread's token (see [`thread_token`]), once asked for.
    static TOKEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A number naming the calling thread among all live threads of all
/// processes, and telling it apart from an earlier thread of another
/// process with the same id: the process's random nonce above the thread
/// id. Cached per thread (new after `fork`).
#[inline]
pub(crate) fn thread_token() -> u64 {
    TOKEN.with(|t| {
        let cached = t.get();
        if cached != 0 {
            return cached;
        }
        let token = (u64::from(process_nonce()) << 32) | u64::from(gettid());
        t.set(token);
        token
    })
}

/// After `fork`, the child's only thread has a new id: forget the cached one
/// (and the process-wide facts that belong to the parent).
extern "C" fn forget_tid_after_fork() {
    TID.with(|t| t.set(0));
    TOKEN.with(|t| t.set(0));
    MEMBARRIER.store(MEMBARRIER_UNKNOWN, std::sync::atomic::Ordering::Relaxed);
    SELF_START.store(0, std::sync::atomic::Ordering::Relaxed);
    NONCE.store(0, std::sync::atomic::Ordering::Relaxed);
}

fn register_atfork() {
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only writes a thread-local and
        // atomics.
        unsafe { libc::pthread_atfork(None, None, Some(forget_tid_after_fork)) };
    });
}

// ---------------------------------------------------------------------------
// Asymmetric memory barriers (membarrier(2))
// ---------------------------------------------------------------------------

const MEMBARRIER_UNKNOWN: u8 = 0;
const MEMBARRIER_YES: u8 = 1;
const MEMBARRIER_NO: u8 = 2;
static MEMBARRIER: std::sync::atomic::AtomicU8 =
    std::sync::atomic::AtomicU8::new(MEMBARRIER_UNKNOWN);

/// Whether this process can take part in asymmetric barriers: registered
/// for `MEMBARRIER_CMD_GLOBAL_EXPEDITED` (Linux 4.16+), so that a
/// [`heavy_barrier`] in any registered process orders this process's
/// memory accesses as a full fence would. Registers on the first call (and
/// again after `fork`). `MPKIT_NO_MEMBARRIER=1` in the environment makes it
/// false, to exercise the symmetric fallback.
pub(crate) fn membarrier_registered() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match MEMBARRIER.load(Relaxed) {
        MEMBARRIER_YES => return true,
        MEMBARRIER_NO => return false,
        _ => {}
    }
    register_atfork();
    use rustix::thread::{MembarrierCommand, MembarrierQuery, membarrier, membarrier_query};
    let wanted = MembarrierQuery::GLOBAL_EXPEDITED | MembarrierQuery::REGISTER_GLOBAL_EXPEDITED;
    let ok = std::env::var_os("MPKIT_NO_MEMBARRIER").is_none_or(|v| v.is_empty() || v == "0")
        && membarrier_query().contains(wanted)
        && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
    MEMBARRIER.store(if ok { MEMBARRIER_YES } else { MEMBARRIER_NO }, Relaxed);
    ok
}

/// The heavy side of an asymmetric barrier: when it returns, every thread
/// of every registered process has executed a full memory barrier (or was
/// not running, which implies one). Costs an inter-processor interrupt per
/// CPU running such a thread (about 15 µs on a 2-CPU VM): for rare paths
/// only. The light side is a compiler fence.
pub(crate) fn heavy_barrier() -> io::Result<()> {
    rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).map_err(io_err)
}

/// A hint to fetch the cache line holding `p` (no fault if it is unmapped;
/// nothing on targets without a prefetch instruction).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

// ---------------------------------------------------------------------------
// Process identity and liveness
// ---------------------------------------------------------------------------

static SELF_START: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static NONCE: AtomicU32 = AtomicU32::new(0);

/// State and start time (clock ticks after boot) of process `pid`, from
/// `/proc/<pid>/stat`; `None` when it does not exist or cannot be read.
pub(crate) fn proc_stat(pid: i32) -> Option<(char, u64)> {
    stat_file(&format!("/proc/{pid}/stat")).ok().flatten()
}

/// State and start time from a `/proc` `stat` file: `Ok(None)` when the
/// file does not exist (the process or thread is gone), an error when it
/// cannot be read or parsed (out of descriptors, `hidepid`, ...), which
/// says nothing about the process.
fn stat_file(path: &str) -> io::Result<Option<(char, u64)>> {
    let stat = match std::fs::read_to_string(path) {
        Ok(stat) => stat,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let parse = || {
        let (_, after_comm) = stat.rsplit_once(')')?;
        let mut fields = after_comm.split_whitespace();
        let state = fields.next()?.chars().next()?;
        // Field 22 (starttime) is the 20th after the command name, the
        // 19th after the state.
        let start = fields.nth(18)?.parse::<u64>().ok()?;
        Some((state, start))
    };
    parse()
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: unparsable")))
}

/// This process's start time (see [`proc_stat`]), read once; `None` when
/// `/proc` cannot tell.
pub(crate) fn self_start_time() -> Option<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    let cached = SELF_START.load(Relaxed);
    if cached != 0 {
        return Some(cached);
    }
    register_atfork();
    let (_, start) = proc_stat(getpid())?;
    // Start times are ticks after boot: a process started in the first
    // tick reads as 0, so store it as 1 (comparisons use the same rule).
    let start = start.max(1);
    SELF_START.store(start, Relaxed);
    Some(start)
}

/// True unless thread `tid` of process `pid`, started at `start` (as from
/// [`self_start_time`]), is known to be gone: the process missing, or its
/// pid now used by a later process, or the thread missing or a zombie. When
/// `/proc` cannot tell (a read error), it counts as alive: waiting is safe,
/// declaring a live thread dead is not. The process's own state is not
/// asked: a process whose main thread exited shows as a zombie while its
/// other threads run.
pub(crate) fn thread_alive(pid: i32, start: u64, tid: i32) -> bool {
    let Some(process) = rustix::process::Pid::from_raw(pid).filter(|_| tid > 0) else {
        return false;
    };
    let gone = |state: char| matches!(state, 'Z' | 'X' | 'x');
    match stat_file(&format!("/proc/{pid}/stat")) {
        // The leader's start time stays readable while it is a zombie.
        Ok(Some((_, started))) if started.max(1) != start => false,
        Ok(Some(_)) => match stat_file(&format!("/proc/{pid}/task/{tid}/stat")) {
            Ok(Some((state, _))) => !gone(state),
            Ok(None) => false,
            Err(_) => true,
        },
        // /proc is there and the process is not: gone.
        Ok(None) if std::path::Path::new("/proc/self/stat").exists() => false,
        // No /proc: all a signal test can say is whether the pid exists.
        Ok(None) => !rustix::process::test_kill_process(process).is_err_and(|e| e == Errno::SRCH),
        Err(_) => true,
    }
}

/// A random number fixed for this process (new after `fork`), never 0: told
/// apart from other processes whose threads may later reuse a thread id.
fn process_nonce() -> u32 {
    use std::sync::atomic::Ordering::Relaxed;
    let cached = NONCE.load(Relaxed);
    if cached != 0 {
        return cached;
    }
    register_atfork();
    let mut b = [0u8; 4];
    let n = match random_bytes(&mut b) {
        Ok(()) => u32::from_ne_bytes(b),
        // No random bytes (seccomp, an early-boot kernel): the pid alone
        // would repeat when the pid is reused, so mix in the clock.
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let mixed =
                (nanos ^ (getpid() as u64).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (mixed >> 32) as u32
        }
    }
    .max(1);
    NONCE.store(n, Relaxed);
    n
}

/// The id of the calling thread (unique among live threads system-wide).
/// Cached per thread: locks ask for it on every acquire and release, and
/// `gettid` is a real system call.
#[inline]
pub(crate) fn gettid() -> u32 {
    TID.with(|t| {
        let cached = t.get();
        if cached != 0 {
            return cached;
        }
        register_atfork();
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        t.set(tid);
        tid
    })
}

/// The kernel-backed robust mutex mpkit's locks are built on: a glibc
/// `pthread_mutex_t` initialised process-shared and robust. When its owner
/// thread dies, the kernel (walking the thread's robust list at exit) marks
/// it and wakes a waiter, whose lock call then reports
/// [`MutexLock::OwnerDied`]. Death detection is the kernel's, so pid reuse
/// cannot fool it.
pub(crate) type RawMutex = libc::pthread_mutex_t;

/// What a lock attempt on a [`RawMutex`] gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MutexLock {
    /// Acquired.
    Acquired,
    /// Acquired, and the previous owner died holding it (already made
    /// consistent again: the caller repairs the protected data).
    OwnerDied,
    /// Not acquired before the deadline (or, for `try`, it is held).
    Busy,
    /// This thread already holds this (non-recursive) mutex.
    Deadlock,
}

unsafe extern "C" {
    /// glibc ≥ 2.30: `pthread_mutex_timedlock` on a chosen clock.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

fn errno_result(r: libc::c_int, what: &str) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        let e = io::Error::from_raw_os_error(r);
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Initialises a robust, process-shared mutex at `m`; `recursive` makes it
/// re-entrant for its owner thread, otherwise it is error-checking (a second
/// lock by the owner is [`MutexLock::Deadlock`], unlock by another thread
/// fails).
///
/// # Safety
/// `m` points to writable memory for a `pthread_mutex_t` that no thread is
/// using (it is being created).
pub(crate) unsafe fn mutex_init(m: *mut RawMutex, recursive: bool) -> io::Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: attr is initialised by pthread_mutexattr_init before any other
    // use and destroyed at the end; m is valid per the caller's contract.
    unsafe {
        errno_result(
            libc::pthread_mutexattr_init(attr.as_mut_ptr()),
            "pthread_mutexattr_init",
        )?;
        let a = attr.as_mut_ptr();
        let kind = if recursive {
            libc::PTHREAD_MUTEX_RECURSIVE
        } else {
            libc::PTHREAD_MUTEX_ERRORCHECK
        };
        let r = errno_result(libc::pthread_mutexattr_settype(a, kind), "settype")
            .and_then(|()| {
                errno_result(
                    libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED),
                    "setpshared",
                )
            })
            .and_then(|()| {
                errno_result(
                    libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST),
                    "setrobust",
                )
            })
            .and_then(|()| errno_result(libc::pthread_mutex_init(m, a), "pthread_mutex_init"));
        libc::pthread_mutexattr_destroy(a);
        r
    }
}

fn classify_lock(r: libc::c_int, m: *mut RawMutex) -> io::Result<MutexLock> {
    match r {
        0 => Ok(MutexLock::Acquired),
        libc::EOWNERDEAD => {
            // SAFETY: we own the mutex now (EOWNERDEAD hands it over).
            let r = unsafe { libc::pthread_mutex_consistent(m) };
            errno_result(r, "pthread_mutex_consistent")?;
            Ok(MutexLock::OwnerDied)
        }
        libc::EBUSY | libc::ETIMEDOUT => Ok(MutexLock::Busy),
        libc::EDEADLK => Ok(MutexLock::Deadlock),
        e => errno_result(e, "locking a robust mutex").map(|()| MutexLock::Busy),
    }
}

/// Tries to lock `m` without waiting.
///
/// # Safety
/// `m` points to a mutex initialised by [`mutex_init`] and stays mapped.
pub(crate) unsafe fn mutex_trylock(m: *mut RawMutex) -> io::Result<MutexLock> {
    // SAFETY: per the caller's contract.
    classify_lock(unsafe { libc::pthread_mutex_trylock(m) }, m)
}

/// Locks `m`, waiting until `deadline` (on the monotonic clock).
///
/// # Safety
/// As for [`mutex_trylock`].
pub(crate) unsafe fn mutex_lock(m: *mut RawMutex, deadline: Deadline) -> io::Result<MutexLock> {
    let r = match deadline {
        // SAFETY: per the caller's contract.
        None => unsafe { libc::pthread_mutex_lock(m) },
        Some(d) => {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let left = d.saturating_duration_since(Instant::now());
            let mut sec = now.tv_sec + left.as_secs() as i64;
            let mut nsec = now.tv_nsec + left.subsec_nanos() as i64;
            if nsec >= 1_000_000_000 {
                sec += 1;
                nsec -= 1_000_000_000;
            }
            let abs = libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            };
            // SAFETY: per the caller's contract; abs is a valid timespec.
            unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &abs) }
        }
    };
    classify_lock(r, m)
}

/// Unlocks `m`. Fails with `EPERM` when this thread does not hold it.
///
/// # Safety
/// As for [`mutex_trylock`].
pub(crate) unsafe fn mutex_unlock(m: *mut RawMutex) -> io::Result<()> {
    // SAFETY: per the caller's contract.
    errno_result(
        unsafe { libc::pthread_mutex_unlock(m) },
        "pthread_mutex_unlock",
    )
}
