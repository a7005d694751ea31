//! Kernel message queues (seed 002): System V queues, whose messages carry a
//! type the receiver selects by ([`SysvQueue`]), and POSIX queues with
//! priorities ([`PosixQueue`]). Both talk to any other program using the
//! same mechanism, and what mpkit creates shows in `ipcs -q` or
//! `/dev/mqueue`.
//!
//! ```
//! use mpkit::msgq::{Selector, SysvQueue};
//!
//! let q = SysvQueue::private(0o600)?; // removed below
//! q.send(3, b"low priority chore")?;
//! q.send(1, b"urgent")?;
//! q.send(2, b"type two")?;
//! assert_eq!(q.recv(Selector::Type(2))?, (2, b"type two".to_vec()));
//! assert_eq!(q.recv(Selector::UpTo(3))?.1, b"urgent"); // the lowest type first
//! assert_eq!(q.stat()?.messages, 1);
//! q.remove()?;
//! # Ok::<(), mpkit::msgq::MsgError>(())
//! ```

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Why a message-queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MsgError {
    /// A queue with this key or name already exists.
    #[error("a message queue {0} already exists")]
    Exists(String),
    /// No queue has this key or name.
    #[error("no message queue {0}")]
    NotFound(String),
    /// The message is larger than the limit.
    #[error("a message of {size} bytes exceeds {limit_name} = {limit} bytes")]
    TooLarge {
        /// The message's size.
        size: usize,
        /// The limit.
        limit: usize,
        /// Where the limit comes from (`kernel.msgmax`, the queue's `mq_msgsize`).
        limit_name: &'static str,
    },
    /// System V message types are positive.
    #[error("message type {0} is not positive")]
    InvalidType(i64),
    /// Non-blocking receive: nothing matching is queued.
    #[error("no matching message")]
    Empty,
    /// Non-blocking send: the queue is full.
    #[error("the queue is full")]
    Full,
    /// The timeout passed.
    #[error("timed out")]
    Timeout,
    /// The queue was removed while in use.
    #[error("the queue was removed")]
    Removed,
    /// Not allowed by the queue's mode.
    #[error("permission denied on message queue {0}")]
    PermissionDenied(String),
    /// The attributes asked for exceed the system's limits.
    #[error("{0}")]
    Limits(String),
    /// The operating system refused.
    #[error("message queue: {0}")]
    Io(#[from] io::Error),
}

fn last_error(what: impl Fn() -> String) -> MsgError {
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => MsgError::Exists(what()),
        Some(libc::ENOENT) => MsgError::NotFound(what()),
        Some(libc::EACCES) | Some(libc::EPERM) => MsgError::PermissionDenied(what()),
        Some(libc::EIDRM) => MsgError::Removed,
        _ => MsgError::Io(e),
    }
}

/// Reads a number from a file under `/proc/sys`.
fn proc_limit(path: &str, default: usize) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// Which message a System V receive takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The first message of any type.
    Any,
    /// The first message of exactly this type.
    Type(i64),
    /// The first message of the lowest type ≤ n.
    UpTo(i64),
    /// The first message of any type but this one.
    Except(i64),
}

impl Selector {
    fn raw(self) -> (libc::c_long, libc::c_int) {
        match self {
            Selector::Any => (0, 0),
            Selector::Type(n) => (n as libc::c_long, 0),
            Selector::UpTo(n) => (-(n.abs()) as libc::c_long, 0),
            Selector::Except(n) => (n as libc::c_long, libc::MSG_EXCEPT),
        }
    }
}

/// What [`SysvQueue::stat`] reports (`msgctl(IPC_STAT)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysvStat {
    /// Messages in the queue.
    pub messages: u64,
    /// Bytes in the queue.
    pub bytes: u64,
    /// The most bytes the queue may hold (`msg_qbytes`).
    pub max_bytes: u64,
    /// The last process that sent.
    pub last_sender: i32,
    /// The last process that received.
    pub last_receiver: i32,
    /// Permission bits.
    pub mode: u32,
}

/// A System V message queue (`msgget`): messages with a type > 0 that
/// receivers select by.
///
/// Queues live in the kernel until removed ([`remove`](Self::remove), or
/// `ipcrm -q`), even after every process using them has exited.
///
/// # Timeouts
/// System V receives have no timeout. [`recv_timeout`](Self::recv_timeout)
/// retries a non-blocking receive, sleeping between tries with a backoff
/// from 50 µs to 5 ms: it never busy-waits, and it answers at most 5 ms
/// after a matching message arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvQueue {
    id: i32,
    key: i32,
}

impl SysvQueue {
    /// Creates a queue for `key`; fails with [`MsgError::Exists`] if there
    /// is one.
    pub fn create(key: i32, mode: u32) -> Result<SysvQueue, MsgError> {
        Self::get(
            key,
            libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32,
        )
    }

    /// Opens the queue of `key`.
    pub fn open(key: i32) -> Result<SysvQueue, MsgError> {
        Self::get(key, 0)
    }

    /// Opens the queue of `key`, creating it if needed.
    pub fn open_or_create(key: i32, mode: u32) -> Result<SysvQueue, MsgError> {
        Self::get(key, libc::IPC_CREAT | (mode & 0o777) as i32)
    }

    /// A new queue with no key (`IPC_PRIVATE`): reachable by its id only
    /// (pass the `SysvQueue` to children).
    pub fn private(mode: u32) -> Result<SysvQueue, MsgError> {
        Self::get(libc::IPC_PRIVATE, libc::IPC_CREAT | (mode & 0o777) as i32)
    }

    fn get(key: i32, flags: i32) -> Result<SysvQueue, MsgError> {
        // SAFETY: msgget takes plain integers.
        let id = unsafe { libc::msgget(key, flags) };
        if id < 0 {
            return Err(last_error(|| format!("with key {key:#x}")));
        }
        Ok(SysvQueue { id, key })
    }

    /// The key for `path` and a project id, as `ftok(3)` makes it (the file
    /// must exist).
    pub fn key_from_path(path: impl AsRef<Path>, project: u8) -> Result<i32, MsgError> {
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_ref().as_os_str().as_bytes()).map_err(|_| {
            MsgError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path contains NUL",
            ))
        })?;
        // SAFETY: a valid NUL-terminated path.
        let key = unsafe { libc::ftok(c.as_ptr(), project as i32) };
        if key == -1 {
            Err(MsgError::Io(io::Error::last_os_error()))
        } else {
            Ok(key)
        }
    }

    /// The queue id (what `ipcs -q` lists).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The key it was opened with (0 for a private queue).
    pub fn key(&self) -> i32 {
        self.key
    }

    /// The largest message the kernel accepts (`kernel.msgmax`), read once
    /// per process: sends and receives size their buffers with it.
    pub fn max_message_size() -> usize {
        static MSGMAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *MSGMAX.get_or_init(|| proc_limit("/proc/sys/kernel/msgmax", 8192))
    }

    fn send_flags(&self, mtype: i64, data: &[u8], flags: i32) -> Result<(), MsgError> {
        if mtype <= 0 {
            return Err(MsgError::InvalidType(mtype));
        }
        let limit = Self::max_message_size();
        if data.len() > limit {
            return Err(MsgError::TooLarge {
                size: data.len(),
                limit,
                limit_name: "kernel.msgmax",
            });
        }
        let mut buf = Vec::with_capacity(std::mem::size_of::<libc::c_long>() + data.len());
        buf.extend_from_slice(&(mtype as libc::c_long).to_ne_bytes());
        buf.extend_from_slice(data);
        loop {
            // SAFETY: buf holds a long mtype followed by data.len() bytes.
            let r = unsafe { libc::msgsnd(self.id, buf.as_ptr().cast(), data.len(), flags) };
            if r == 0 {
                return Ok(());
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Err(MsgError::Full),
                Some(libc::EINVAL) if data.len() > limit => {
                    return Err(MsgError::TooLarge {
                        size: data.len(),
                        limit,
                        limit_name: "kernel.msgmax",
                    });
                }
                _ => return Err(last_error(|| format!("id {}", self.id))),
            }
        }
    }

    /// Sends `data` with type `mtype` (> 0), waiting while the queue is full.
    pub fn send(&self, mtype: i64, data: &[u8]) -> Result<(), MsgError> {
        self.send_flags(mtype, data, 0)
    }

    /// Sends without waiting: [`MsgError::Full`] if the queue is full.
    pub fn try_send(&self, mtype: i64, data: &[u8]) -> Result<(), MsgError> {
        self.send_flags(mtype, data, libc::IPC_NOWAIT)
    }

    /// Sends a serde value, encoded with [`Json`](crate::codec::Json) so
    /// that programs in other languages can read it.
    pub fn send_json<T: Serialize + ?Sized>(&self, mtype: i64, value: &T) -> Result<(), MsgError> {
        let data = serde_json::to_vec(value).map_err(|e| MsgError::Io(io::Error::other(e)))?;
        self.send(mtype, &data)
    }

    fn recv_flags(&self, sel: Selector, flags: i32) -> Result<(i64, Vec<u8>), MsgError> {
        let (msgtyp, extra) = sel.raw();
        let max = Self::max_message_size();
        let header = std::mem::size_of::<libc::c_long>();
        let mut buf = vec![0u8; header + max];
        loop {
            // SAFETY: buf has room for a long mtype and `max` bytes of text.
            let n = unsafe {
                libc::msgrcv(self.id, buf.as_mut_ptr().cast(), max, msgtyp, flags | extra)
            };
            if n >= 0 {
                let mtype = libc::c_long::from_ne_bytes(buf[..header].try_into().expect("long"));
                buf.truncate(header + n as usize);
                buf.drain(..header);
                return Ok((mtype as i64, buf));
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOMSG) | Some(libc::EAGAIN) => return Err(MsgError::Empty),
                Some(libc::E2BIG) => {
                    return Err(MsgError::Limits(
                        "a queued message is larger than kernel.msgmax now allows; it was left queued".into(),
                    ));
                }
                _ => return Err(last_error(|| format!("id {}", self.id))),
            }
        }
    }

    /// Receives the first message `sel` picks, waiting for one.
    pub fn recv(&self, sel: Selector) -> Result<(i64, Vec<u8>), MsgError> {
        self.recv_flags(sel, 0)
    }

    /// Receives without waiting: [`MsgError::Empty`] if nothing matches.
    pub fn try_recv(&self, sel: Selector) -> Result<(i64, Vec<u8>), MsgError> {
        self.recv_flags(sel, libc::IPC_NOWAIT)
    }

    /// Receives, waiting at most `timeout` (see the type's docs for how).
    pub fn recv_timeout(
        &self,
        sel: Selector,
        timeout: Duration,
    ) -> Result<(i64, Vec<u8>), MsgError> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(50);
        loop {
            match self.try_recv(sel) {
                Err(MsgError::Empty) => {}
                r => return r,
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(MsgError::Timeout);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Receives a message sent with [`send_json`](Self::send_json).
    pub fn recv_json<T: serde::de::DeserializeOwned>(
        &self,
        sel: Selector,
    ) -> Result<(i64, T), MsgError> {
        let (mtype, data) = self.recv(sel)?;
        let value = serde_json::from_slice(&data).map_err(|e| MsgError::Io(io::Error::other(e)))?;
        Ok((mtype, value))
    }

    /// The queue's counters and limits (`IPC_STAT`).
    pub fn stat(&self) -> Result<SysvStat, MsgError> {
        let mut ds = std::mem::MaybeUninit::<libc::msqid_ds>::zeroed();
        // SAFETY: IPC_STAT fills the msqid_ds we own.
        if unsafe { libc::msgctl(self.id, libc::IPC_STAT, ds.as_mut_ptr()) } != 0 {
            return Err(last_error(|| format!("id {}", self.id)));
        }
        // SAFETY: filled by a successful IPC_STAT.
        let ds = unsafe { ds.assume_init() };
        Ok(SysvStat {
            messages: ds.msg_qnum,
            bytes: ds.__msg_cbytes,
            max_bytes: ds.msg_qbytes,
            last_sender: ds.msg_lspid,
            last_receiver: ds.msg_lrpid,
            mode: ds.msg_perm.mode as u32 & 0o777,
        })
    }

    /// Removes the queue (`IPC_RMID`); waiting senders and receivers get
    /// [`MsgError::Removed`].
    pub fn remove(self) -> Result<(), MsgError> {
        // SAFETY: IPC_RMID takes no buffer.
        if unsafe { libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) } != 0 {
            return Err(last_error(|| format!("id {}", self.id)));
        }
        Ok(())
    }
}

/// The attributes of a [`PosixQueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PosixAttributes {
    /// Most messages it holds.
    pub max_messages: usize,
    /// Largest message.
    pub max_size: usize,
    /// Messages queued now.
    pub messages: usize,
}

/// A POSIX message queue (`mq_open`): messages with a priority, the highest
/// received first; real timeouts; the queue's descriptor passes to children.
///
/// ```
/// use mpkit::msgq::PosixQueue;
/// let name = format!("/mpkit-doc-{}", std::process::id());
/// let q = PosixQueue::create(&name, 8, 256, 0o600)?; // removed when dropped
/// q.send(b"routine", 1)?;
/// q.send(b"urgent", 9)?;
/// assert_eq!(q.recv()?, (b"urgent".to_vec(), 9));
/// assert_eq!(q.attributes()?.messages, 1);
/// # Ok::<(), mpkit::msgq::MsgError>(())
/// ```
#[derive(Debug)]
pub struct PosixQueue {
    fd: OwnedFd,
    name: String,
    owns_name: bool,
    /// `mq_msgsize`, fixed when the queue was created: asked once.
    msg_size: std::sync::OnceLock<usize>,
}

fn mq_name(name: &str) -> Result<CString, MsgError> {
    let full = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    };
    if full.len() < 2 || full[1..].contains('/') {
        return Err(MsgError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid queue name {name:?}"),
        )));
    }
    CString::new(full).map_err(|_| {
        MsgError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "name contains NUL",
        ))
    })
}

/// An absolute `CLOCK_REALTIME` time `timeout` from now (what `mq_timed*`
/// want).
fn realtime_after(timeout: Duration) -> libc::timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let mut sec = now.tv_sec.saturating_add(timeout.as_secs() as i64);
    let mut nsec = now.tv_nsec + timeout.subsec_nanos() as i64;
    if nsec >= 1_000_000_000 {
        sec += 1;
        nsec -= 1_000_000_000;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

impl PosixQueue {
    /// Creates a queue holding at most `max_messages` of at most `max_size`
    /// bytes. This handle removes the name when dropped (unless
    /// [`keep`](Self::keep)).
    pub fn create(
        name: &str,
        max_messages: usize,
        max_size: usize,
        mode: u32,
    ) -> Result<PosixQueue, MsgError> {
        let c = mq_name(name)?;
        let mut attr: libc::mq_attr = {
            // SAFETY: mq_attr is plain integers; all-zero is valid.
            unsafe { std::mem::zeroed() }
        };
        attr.mq_maxmsg = max_messages as _;
        attr.mq_msgsize = max_size as _;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
        // SAFETY: valid name; with O_CREAT mq_open takes the mode and a
        // pointer to our attributes.
        let mqd = unsafe {
            libc::mq_open(
                c.as_ptr(),
                flags,
                mode as libc::mode_t,
                &attr as *const libc::mq_attr,
            )
        };
        if mqd < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Err(MsgError::Limits(format!(
                    "{max_messages} messages of {max_size} bytes exceed the system's limits \
                     (fs.mqueue.msg_max = {}, fs.mqueue.msgsize_max = {})",
                    proc_limit("/proc/sys/fs/mqueue/msg_max", 10),
                    proc_limit("/proc/sys/fs/mqueue/msgsize_max", 8192)
                )));
            }
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => MsgError::Exists(name.to_string()),
                Some(libc::EACCES) => MsgError::PermissionDenied(name.to_string()),
                _ => MsgError::Io(e),
            });
        }
        Ok(PosixQueue {
            // SAFETY: on Linux an mqd_t is a descriptor we now own.
            fd: unsafe { OwnedFd::from_raw_fd(mqd) },
            name: c.to_string_lossy().into_owned(),
            owns_name: true,
            msg_size: std::sync::OnceLock::new(),
        })
    }

    /// Opens an existing queue for sending and receiving.
    pub fn open(name: &str) -> Result<PosixQueue, MsgError> {
        let c = mq_name(name)?;
        // SAFETY: valid name, no O_CREAT.
        let mqd = unsafe { libc::mq_open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if mqd < 0 {
            return Err(last_error(|| name.to_string()));
        }
        Ok(PosixQueue {
            // SAFETY: as in `create`.
            fd: unsafe { OwnedFd::from_raw_fd(mqd) },
            name: c.to_string_lossy().into_owned(),
            owns_name: false,
            msg_size: std::sync::OnceLock::new(),
        })
    }

    /// The queue's name (with its leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the name when this creating handle is dropped.
    pub fn keep(&mut self) {
        self.owns_name = false;
    }

    /// Removes a queue's name (`mq_unlink`).
    pub fn unlink(name: &str) -> Result<(), MsgError> {
        let c = mq_name(name)?;
        // SAFETY: valid name.
        if unsafe { libc::mq_unlink(c.as_ptr()) } != 0 {
            return Err(last_error(|| name.to_string()));
        }
        Ok(())
    }

    /// The queue's limits and current depth.
    pub fn attributes(&self) -> Result<PosixAttributes, MsgError> {
        // SAFETY: mq_attr is plain integers.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        // SAFETY: a valid queue descriptor and our attr.
        if unsafe { libc::mq_getattr(std::os::fd::AsRawFd::as_raw_fd(&self.fd), &mut attr) } != 0 {
            return Err(MsgError::Io(io::Error::last_os_error()));
        }
        Ok(PosixAttributes {
            max_messages: attr.mq_maxmsg as usize,
            max_size: attr.mq_msgsize as usize,
            messages: attr.mq_curmsgs as usize,
        })
    }

    fn send_until(
        &self,
        data: &[u8],
        priority: u32,
        deadline: Option<libc::timespec>,
    ) -> Result<(), MsgError> {
        let mqd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        loop {
            // SAFETY: valid descriptor, data/len from a slice, optional timespec.
            let r = unsafe {
                match &deadline {
                    Some(t) => {
                        libc::mq_timedsend(mqd, data.as_ptr().cast(), data.len(), priority, t)
                    }
                    None => libc::mq_send(mqd, data.as_ptr().cast(), data.len(), priority),
                }
            };
            if r == 0 {
                return Ok(());
            }
            return Err(match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) => MsgError::Timeout,
                Some(libc::EMSGSIZE) => MsgError::TooLarge {
                    size: data.len(),
                    limit: self.attributes().map_or(0, |a| a.max_size),
                    limit_name: "the queue's mq_msgsize",
                },
                _ => MsgError::Io(io::Error::last_os_error()),
            });
        }
    }

    /// Sends with a priority (higher is received first), waiting while full.
    pub fn send(&self, data: &[u8], priority: u32) -> Result<(), MsgError> {
        self.send_until(data, priority, None)
    }

    /// Sends, waiting at most `timeout` while full.
    pub fn send_timeout(
        &self,
        data: &[u8],
        priority: u32,
        timeout: Duration,
    ) -> Result<(), MsgError> {
        self.send_until(data, priority, Some(realtime_after(timeout)))
    }

    /// Sends if there is room now ([`MsgError::Full`] otherwise).
    pub fn try_send(&self, data: &[u8], priority: u32) -> Result<(), MsgError> {
        match self.send_timeout(data, priority, Duration::ZERO) {
            Err(MsgError::Timeout) => Err(MsgError::Full),
            r => r,
        }
    }

    fn recv_until(&self, deadline: Option<libc::timespec>) -> Result<(Vec<u8>, u32), MsgError> {
        let size = match self.msg_size.get() {
            Some(&size) => size,
            None => {
                let size = self.attributes()?.max_size;
                *self.msg_size.get_or_init(|| size)
            }
        };
        let mut buf = vec![0u8; size];
        let mut prio = 0u32;
        let mqd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        loop {
            // SAFETY: valid descriptor; buf has mq_msgsize bytes as required.
            let n = unsafe {
                match &deadline {
                    Some(t) => {
                        libc::mq_timedreceive(mqd, buf.as_mut_ptr().cast(), size, &mut prio, t)
                    }
                    None => libc::mq_receive(mqd, buf.as_mut_ptr().cast(), size, &mut prio),
                }
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return Ok((buf, prio));
            }
            return Err(match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) => MsgError::Timeout,
                _ => MsgError::Io(io::Error::last_os_error()),
            });
        }
    }

    /// Receives the oldest message of the highest priority, waiting for one.
    pub fn recv(&self) -> Result<(Vec<u8>, u32), MsgError> {
        self.recv_until(None)
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Vec<u8>, u32), MsgError> {
        self.recv_until(Some(realtime_after(timeout)))
    }

    /// Receives if a message is queued ([`MsgError::Empty`] otherwise).
    pub fn try_recv(&self) -> Result<(Vec<u8>, u32), MsgError> {
        match self.recv_timeout(Duration::ZERO) {
            Err(MsgError::Timeout) => Err(MsgError::Empty),
            r => r,
        }
    }
}

impl Drop for PosixQueue {
    fn drop(&mut self) {
        if self.owns_name {
            let _ = PosixQueue::unlink(&self.name);
        }
    }
}

impl AsFd for PosixQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Serialize for PosixQueue {
    /// Passes as a handle (its descriptor) plus its name.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (crate::handle::BorrowedHandle(self.fd.as_fd()), &self.name).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PosixQueue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (fd, name) = <(crate::handle::FdHandle, String)>::deserialize(d)?;
        Ok(PosixQueue {
            fd: fd.0,
            name,
            owns_name: false,
            msg_size: std::sync::OnceLock::new(),
        })
    }
}
