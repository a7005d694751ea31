//! Kernel message queues: System V (`msgget`, typed messages selected by
//! type) and POSIX (`mq_open`, priorities, absolute timeouts), plus the
//! limits Linux puts on them.
//!
//! Every call that can be interrupted by a signal is retried here, with the
//! same absolute deadline, so callers only see real outcomes.
//!
//! # References
//! - [`sysvipc(7)`](https://man7.org/linux/man-pages/man7/sysvipc.7.html),
//!   [`msgget(2)`](https://man7.org/linux/man-pages/man2/msgget.2.html),
//!   [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)
//!   (`msgsnd`, `msgrcv`), [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html),
//!   [`ftok(3)`](https://man7.org/linux/man-pages/man3/ftok.3.html)
//! - [`mq_overview(7)`](https://man7.org/linux/man-pages/man7/mq_overview.7.html)
//!   (and the limits under `/proc/sys/fs/mqueue`),
//!   [`mq_open(3)`](https://man7.org/linux/man-pages/man3/mq_open.3.html),
//!   [`mq_send(3)`](https://man7.org/linux/man-pages/man3/mq_send.3.html),
//!   [`mq_receive(3)`](https://man7.org/linux/man-pages/man3/mq_receive.3.html),
//!   [`mq_getattr(3)`](https://man7.org/linux/man-pages/man3/mq_getattr.3.html),
//!   [`mq_unlink(3)`](https://man7.org/linux/man-pages/man3/mq_unlink.3.html)

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::time::ClockId;

use super::time::abs_timespec;

/// Reads a number from a file under `/proc/sys`; `default` when it cannot.
fn proc_limit(path: &str, default: usize) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// Turns a C-style `-1` result into the `errno` it left.
fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

// System V ------------------------------------------------------------------

/// The key of a System V queue with no key: reachable by its id only.
pub(crate) const IPC_PRIVATE: i32 = libc::IPC_PRIVATE;

/// What [`msgget`] does when the key has no queue (or has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MsgGet {
    /// Open the existing queue (`ENOENT` if there is none).
    Open,
    /// Open the existing queue or create one (`IPC_CREAT`).
    OpenOrCreate,
    /// Create a queue; `EEXIST` if there is one (`IPC_CREAT | IPC_EXCL`).
    Create,
}

/// The id of the System V queue of `key` ([`IPC_PRIVATE`]: a new queue);
/// `mode` (permission bits) applies to a queue this call creates.
pub(crate) fn msgget(key: i32, how: MsgGet, mode: u32) -> io::Result<i32> {
    let flags = match how {
        MsgGet::Open => 0,
        MsgGet::OpenOrCreate => libc::IPC_CREAT,
        MsgGet::Create => libc::IPC_CREAT | libc::IPC_EXCL,
    } | (mode & 0o777) as libc::c_int;
    // SAFETY: msgget takes plain integers.
    check(unsafe { libc::msgget(key, flags) })
}

/// The System V key for `path` (which must exist) and a project id
/// (`ftok(3)`). A path containing NUL is `InvalidInput`.
pub(crate) fn ftok(path: &Path, project: u8) -> io::Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(project)) })
}

/// The largest System V message the kernel accepts (`kernel.msgmax`).
pub(crate) fn sysv_msgmax() -> usize {
    proc_limit("/proc/sys/kernel/msgmax", 8192)
}

/// Sends `data` with type `mtype` to queue `id` (`msgsnd`); with `nowait`,
/// a full queue is `EAGAIN` instead of a wait. `EINTR` is retried.
pub(crate) fn msgsnd(id: i32, mtype: i64, data: &[u8], nowait: bool) -> io::Result<()> {
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // The kernel wants a `long` type directly followed by the text.
    let mut buf = Vec::with_capacity(std::mem::size_of::<libc::c_long>() + data.len());
    buf.extend_from_slice(&(mtype as libc::c_long).to_ne_bytes());
    buf.extend_from_slice(data);
    loop {
        // SAFETY: buf holds a long mtype followed by data.len() bytes.
        let r = unsafe { libc::msgsnd(id, buf.as_ptr().cast(), data.len(), flags) };
        match check(r) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r.map(drop),
        }
    }
}

/// Receives from queue `id` (`msgrcv`) a message of at most `max` bytes:
/// `msgtyp` as `msgrcv(2)` reads it (0 any, `n > 0` type `n`, `-n` the
/// lowest type ≤ n), or with `except` any type but `msgtyp`. With `nowait`,
/// nothing matching is `ENOMSG` instead of a wait; a larger message is
/// `E2BIG` and stays queued. Returns the type and the text. `EINTR` is
/// retried.
pub(crate) fn msgrcv(
    id: i32,
    msgtyp: i64,
    except: bool,
    max: usize,
    nowait: bool,
) -> io::Result<(i64, Vec<u8>)> {
    let mut flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    if except {
        flags |= libc::MSG_EXCEPT;
    }
    let header = std::mem::size_of::<libc::c_long>();
    let mut buf = vec![0u8; header + max];
    loop {
        // SAFETY: buf has room for a long mtype and `max` bytes of text.
        let n = unsafe {
            libc::msgrcv(
                id,
                buf.as_mut_ptr().cast(),
                max,
                msgtyp as libc::c_long,
                flags,
            )
        };
        if n >= 0 {
            let mtype = libc::c_long::from_ne_bytes(buf[..header].try_into().expect("long"));
            buf.truncate(header + n as usize);
            buf.drain(..header);
            return Ok((mtype as i64, buf));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// A System V queue's counters and limits, from `msgctl(IPC_STAT)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MsqStat {
    /// Messages queued (`msg_qnum`).
    pub messages: u64,
    /// Bytes queued (`msg_cbytes`).
    pub bytes: u64,
    /// The most bytes the queue may hold (`msg_qbytes`).
    pub max_bytes: u64,
    /// The last process that sent (`msg_lspid`).
    pub last_sender: i32,
    /// The last process that received (`msg_lrpid`).
    pub last_receiver: i32,
    /// Permission bits.
    pub mode: u32,
}

/// The counters and limits of queue `id` (`msgctl(IPC_STAT)`).
pub(crate) fn msgctl_stat(id: i32) -> io::Result<MsqStat> {
    let mut ds = std::mem::MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: IPC_STAT fills the msqid_ds we own.
    check(unsafe { libc::msgctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: filled by a successful IPC_STAT.
    let ds = unsafe { ds.assume_init() };
    Ok(MsqStat {
        messages: ds.msg_qnum,
        bytes: ds.__msg_cbytes,
        max_bytes: ds.msg_qbytes,
        last_sender: ds.msg_lspid,
        last_receiver: ds.msg_lrpid,
        mode: ds.msg_perm.mode as u32 & 0o777,
    })
}

/// Removes queue `id` (`msgctl(IPC_RMID)`); its waiters get `EIDRM`.
pub(crate) fn msgctl_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    check(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

// POSIX ---------------------------------------------------------------------

/// The attributes of a POSIX queue (`struct mq_attr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MqAttr {
    /// Most messages it holds (`mq_maxmsg`).
    pub max_messages: usize,
    /// Largest message in bytes (`mq_msgsize`).
    pub max_size: usize,
    /// Messages queued now (`mq_curmsgs`).
    pub messages: usize,
}

/// The system's limits and defaults for POSIX queues created without
/// privileges (`/proc/sys/fs/mqueue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MqLimits {
    /// `fs.mqueue.msg_max`: the most messages a queue may hold.
    pub msg_max: usize,
    /// `fs.mqueue.msgsize_max`: the largest message size.
    pub msgsize_max: usize,
    /// `fs.mqueue.msg_default`: messages when none is asked for.
    pub msg_default: usize,
    /// `fs.mqueue.msgsize_default`: message size when none is asked for.
    pub msgsize_default: usize,
}

/// Reads [`MqLimits`] (the kernel's built-in values where a file is
/// missing).
pub(crate) fn mq_limits() -> MqLimits {
    let dir = "/proc/sys/fs/mqueue";
    MqLimits {
        msg_max: proc_limit(&format!("{dir}/msg_max"), 10),
        msgsize_max: proc_limit(&format!("{dir}/msgsize_max"), 8192),
        msg_default: proc_limit(&format!("{dir}/msg_default"), 10),
        msgsize_default: proc_limit(&format!("{dir}/msgsize_default"), 8192),
    }
}

/// Creates a POSIX queue exclusively (`O_CREAT | O_EXCL`), open for
/// reading and writing, close-on-exec. `size` is `(max_messages,
/// max_size)`; `None` takes the system's defaults. `name` is `/` and a
/// name without further `/`.
pub(crate) fn mq_create(
    name: &CStr,
    mode: u32,
    size: Option<(usize, usize)>,
) -> io::Result<OwnedFd> {
    // SAFETY: mq_attr is plain integers; all-zero is valid.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    let attr_ptr: *const libc::mq_attr = match size {
        Some((max_messages, max_size)) => {
            attr.mq_maxmsg = max_messages as _;
            attr.mq_msgsize = max_size as _;
            &attr
        }
        None => std::ptr::null(),
    };
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: valid name; with O_CREAT mq_open takes the mode and a pointer
    // to our attributes (or null for the defaults).
    let mqd =
        check(unsafe { libc::mq_open(name.as_ptr(), flags, mode as libc::mode_t, attr_ptr) })?;
    // SAFETY: on Linux an mqd_t is a descriptor, and this one is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(mqd) })
}

/// Opens an existing POSIX queue for reading and writing, close-on-exec.
pub(crate) fn mq_open(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: valid name, no O_CREAT.
    let mqd = check(unsafe { libc::mq_open(name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: on Linux an mqd_t is a descriptor, and this one is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(mqd) })
}

/// Removes a POSIX queue's name; the queue lives on while open.
pub(crate) fn mq_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: valid name.
    check(unsafe { libc::mq_unlink(name.as_ptr()) }).map(drop)
}

/// The attributes of the POSIX queue behind `mq`.
pub(crate) fn mq_getattr(mq: BorrowedFd<'_>) -> io::Result<MqAttr> {
    // SAFETY: mq_attr is plain integers; all-zero is valid.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: a valid queue descriptor and our attr.
    check(unsafe { libc::mq_getattr(mq.as_raw_fd(), &mut attr) })?;
    Ok(MqAttr {
        max_messages: attr.mq_maxmsg as usize,
        max_size: attr.mq_msgsize as usize,
        messages: attr.mq_curmsgs as usize,
    })
}

/// Sends `data` with `priority` (`mq_send`), waiting while the queue is
/// full: forever, or at most `timeout` (`mq_timedsend`, then `ETIMEDOUT`).
/// A message larger than the queue's `mq_msgsize` is `EMSGSIZE`. `EINTR`
/// is retried until the same deadline.
pub(crate) fn mq_send(
    mq: BorrowedFd<'_>,
    data: &[u8],
    priority: u32,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let deadline = timeout.map(|t| abs_timespec(ClockId::Realtime, t));
    let mqd = mq.as_raw_fd();
    loop {
        // SAFETY: valid descriptor, data/len from a slice, optional timespec.
        let r = unsafe {
            match &deadline {
                Some(t) => libc::mq_timedsend(mqd, data.as_ptr().cast(), data.len(), priority, t),
                None => libc::mq_send(mqd, data.as_ptr().cast(), data.len(), priority),
            }
        };
        match check(r) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            r => return r.map(drop),
        }
    }
}

/// Receives the oldest message of the highest priority into `buf` (which
/// must hold the queue's `mq_msgsize` bytes), waiting for one: forever, or
/// at most `timeout` (then `ETIMEDOUT`). Returns its length and priority.
/// `EINTR` is retried until the same deadline.
pub(crate) fn mq_receive(
    mq: BorrowedFd<'_>,
    buf: &mut [u8],
    timeout: Option<Duration>,
) -> io::Result<(usize, u32)> {
    let deadline = timeout.map(|t| abs_timespec(ClockId::Realtime, t));
    let mqd = mq.as_raw_fd();
    let mut prio = 0u32;
    loop {
        // SAFETY: valid descriptor; buf is writable for buf.len() bytes.
        let n = unsafe {
            match &deadline {
                Some(t) => {
                    libc::mq_timedreceive(mqd, buf.as_mut_ptr().cast(), buf.len(), &mut prio, t)
                }
                None => libc::mq_receive(mqd, buf.as_mut_ptr().cast(), buf.len(), &mut prio),
            }
        };
        if n >= 0 {
            return Ok((n as usize, prio));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}
