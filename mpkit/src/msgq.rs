//! Kernel message queues, the ones Python reaches through the `sysv_ipc`
//! and `posix_ipc` packages: System V queues, whose messages carry a type
//! the receiver selects by ([`SysvQueue`]), and POSIX queues with
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
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys;

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
    /// Not a POSIX queue name: one `/` followed by 1 to 255 bytes, none of
    /// them `/` or NUL (a missing leading `/` is added).
    #[error("invalid message queue name {0:?}")]
    InvalidName(String),
    /// A path for [`SysvQueue::key_from_path`] that contains NUL.
    #[error("path {0:?} contains NUL")]
    InvalidPath(PathBuf),
    /// The size asked of a new POSIX queue is outside what the system
    /// allows without privileges (zero, or above `fs.mqueue.msg_max` or
    /// `fs.mqueue.msgsize_max`).
    #[error(
        "a queue of {max_messages} messages of {max_size} bytes is outside the system's limits \
         (1 to fs.mqueue.msg_max = {system_max_messages} messages, \
         1 to fs.mqueue.msgsize_max = {system_max_size} bytes)"
    )]
    OutsideLimits {
        /// The messages asked for.
        max_messages: usize,
        /// The message size asked for.
        max_size: usize,
        /// `fs.mqueue.msg_max`.
        system_max_messages: usize,
        /// `fs.mqueue.msgsize_max`.
        system_max_size: usize,
    },
    /// The system's limit on the number of queues is reached
    /// (`kernel.msgmni` for System V, `fs.mqueue.queues_max` for POSIX).
    #[error("the system's limit on message queues is reached")]
    TooManyQueues,
    /// A queued System V message is larger than `kernel.msgmax` now allows
    /// (the limit was lowered after it was sent); it was left queued.
    #[error("a queued message is larger than kernel.msgmax = {limit} bytes; it was left queued")]
    QueuedTooLarge {
        /// `kernel.msgmax` now.
        limit: usize,
    },
    /// A value for [`SysvQueue::send_json`] or [`SysvQueue::recv_json`]
    /// that does not encode or decode as JSON.
    #[error("message queue JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The operating system refused.
    #[error("message queue: {0}")]
    Io(#[from] io::Error),
}

/// Says what an OS error means for the queue `what` names.
fn os_error(e: io::Error, what: impl Fn() -> String) -> MsgError {
    match e.raw_os_error() {
        Some(sys::EEXIST) => MsgError::Exists(what()),
        Some(sys::ENOENT) => MsgError::NotFound(what()),
        Some(sys::EACCES) | Some(sys::EPERM) => MsgError::PermissionDenied(what()),
        Some(sys::EIDRM) => MsgError::Removed,
        Some(sys::ENOSPC) => MsgError::TooManyQueues,
        _ => MsgError::Io(e),
    }
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
    /// `msgrcv`'s type argument, and whether it is `MSG_EXCEPT`.
    fn raw(self) -> (i64, bool) {
        match self {
            Selector::Any => (0, false),
            Selector::Type(n) => (n, false),
            Selector::UpTo(n) => (-(n.abs()), false),
            Selector::Except(n) => (n, true),
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
        Self::get(key, sys::MsgGet::Create, mode)
    }

    /// Opens the queue of `key`.
    pub fn open(key: i32) -> Result<SysvQueue, MsgError> {
        Self::get(key, sys::MsgGet::Open, 0)
    }

    /// Opens the queue of `key`, creating it if needed.
    pub fn open_or_create(key: i32, mode: u32) -> Result<SysvQueue, MsgError> {
        Self::get(key, sys::MsgGet::OpenOrCreate, mode)
    }

    /// A new queue with no key (`IPC_PRIVATE`): reachable by its id only
    /// (pass the `SysvQueue` to children).
    pub fn private(mode: u32) -> Result<SysvQueue, MsgError> {
        Self::get(sys::IPC_PRIVATE, sys::MsgGet::OpenOrCreate, mode)
    }

    fn get(key: i32, how: sys::MsgGet, mode: u32) -> Result<SysvQueue, MsgError> {
        let id = sys::msgget(key, how, mode)
            .map_err(|e| os_error(e, || format!("with key {key:#x}")))?;
        Ok(SysvQueue { id, key })
    }

    /// The key for `path` and a project id, as `ftok(3)` makes it (the file
    /// must exist).
    pub fn key_from_path(path: impl AsRef<Path>, project: u8) -> Result<i32, MsgError> {
        use std::os::unix::ffi::OsStrExt;
        let path = path.as_ref();
        if path.as_os_str().as_bytes().contains(&0) {
            return Err(MsgError::InvalidPath(path.to_path_buf()));
        }
        Ok(sys::ftok(path, project)?)
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
        *MSGMAX.get_or_init(sys::sysv_msgmax)
    }

    fn send_flags(&self, mtype: i64, data: &[u8], nowait: bool) -> Result<(), MsgError> {
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
        sys::msgsnd(self.id, mtype, data, nowait).map_err(|e| match e.raw_os_error() {
            Some(sys::EAGAIN) => MsgError::Full,
            Some(sys::EINVAL) if data.len() > limit => MsgError::TooLarge {
                size: data.len(),
                limit,
                limit_name: "kernel.msgmax",
            },
            _ => os_error(e, || format!("id {}", self.id)),
        })
    }

    /// Sends `data` with type `mtype` (> 0), waiting while the queue is full.
    pub fn send(&self, mtype: i64, data: &[u8]) -> Result<(), MsgError> {
        self.send_flags(mtype, data, false)
    }

    /// Sends without waiting: [`MsgError::Full`] if the queue is full.
    pub fn try_send(&self, mtype: i64, data: &[u8]) -> Result<(), MsgError> {
        self.send_flags(mtype, data, true)
    }

    /// Sends a serde value, encoded with [`Json`](crate::codec::Json) so
    /// that programs in other languages can read it.
    pub fn send_json<T: Serialize + ?Sized>(&self, mtype: i64, value: &T) -> Result<(), MsgError> {
        let data = serde_json::to_vec(value)?;
        self.send(mtype, &data)
    }

    fn recv_flags(&self, sel: Selector, nowait: bool) -> Result<(i64, Vec<u8>), MsgError> {
        let (msgtyp, except) = sel.raw();
        let max = Self::max_message_size();
        sys::msgrcv(self.id, msgtyp, except, max, nowait).map_err(|e| match e.raw_os_error() {
            Some(sys::ENOMSG) | Some(sys::EAGAIN) => MsgError::Empty,
            Some(sys::E2BIG) => MsgError::QueuedTooLarge { limit: max },
            _ => os_error(e, || format!("id {}", self.id)),
        })
    }

    /// Receives the first message `sel` picks, waiting for one.
    pub fn recv(&self, sel: Selector) -> Result<(i64, Vec<u8>), MsgError> {
        self.recv_flags(sel, false)
    }

    /// Receives without waiting: [`MsgError::Empty`] if nothing matches.
    pub fn try_recv(&self, sel: Selector) -> Result<(i64, Vec<u8>), MsgError> {
        self.recv_flags(sel, true)
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
        let value = serde_json::from_slice(&data)?;
        Ok((mtype, value))
    }

    /// The queue's counters and limits (`IPC_STAT`).
    pub fn stat(&self) -> Result<SysvStat, MsgError> {
        let st =
            sys::msgctl_stat(self.id).map_err(|e| os_error(e, || format!("id {}", self.id)))?;
        Ok(SysvStat {
            messages: st.messages,
            bytes: st.bytes,
            max_bytes: st.max_bytes,
            last_sender: st.last_sender,
            last_receiver: st.last_receiver,
            mode: st.mode,
        })
    }

    /// Removes the queue (`IPC_RMID`); waiting senders and receivers get
    /// [`MsgError::Removed`].
    pub fn remove(self) -> Result<(), MsgError> {
        sys::msgctl_remove(self.id).map_err(|e| os_error(e, || format!("id {}", self.id)))
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
/// Made with [`PosixQueue::builder`], opened with [`PosixQueue::open`].
///
/// ```
/// use mpkit::msgq::PosixQueue;
/// let name = format!("/mpkit-doc-{}", std::process::id());
/// let q = PosixQueue::builder() // removed when dropped
///     .max_messages(8)
///     .max_size(256)
///     .create(&name)?;
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

/// The name as `mq_open` wants it: `/` added when missing, then checked.
fn mq_name(name: &str) -> Result<CString, MsgError> {
    let full = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    };
    if full.len() < 2 || full[1..].contains('/') {
        return Err(MsgError::InvalidName(name.to_string()));
    }
    CString::new(full).map_err(|_| MsgError::InvalidName(name.to_string()))
}

/// Says what an OS error from opening, creating or unlinking the queue
/// `name` means.
fn mq_error(e: io::Error, name: &str) -> MsgError {
    match e.raw_os_error() {
        Some(sys::ENAMETOOLONG) => MsgError::InvalidName(name.to_string()),
        _ => os_error(e, || name.to_string()),
    }
}

/// Options for a new [`PosixQueue`]: how many messages of what size it
/// holds, and its permission bits. Made by [`PosixQueue::builder`].
///
/// Without [`max_messages`](Self::max_messages) or
/// [`max_size`](Self::max_size), the system's defaults apply
/// (`fs.mqueue.msg_default`, `fs.mqueue.msgsize_default`: usually 10
/// messages of 8 KiB). Unprivileged processes may ask for at most
/// `fs.mqueue.msg_max` messages of `fs.mqueue.msgsize_max` bytes; more is
/// [`MsgError::OutsideLimits`].
///
/// ```
/// use mpkit::msgq::{MsgError, PosixQueue};
/// let name = format!("/mpkit-doc-builder-{}", std::process::id());
/// let q = PosixQueue::builder()
///     .max_messages(4)
///     .max_size(128)
///     .mode(0o640)
///     .create(&name)?;
/// let attributes = q.attributes()?;
/// assert_eq!((attributes.max_messages, attributes.max_size), (4, 128));
/// assert!(matches!(
///     PosixQueue::builder().create(&name),
///     Err(MsgError::Exists(_))
/// ));
/// assert!(matches!(
///     PosixQueue::builder().max_messages(1 << 30).create(&format!("{name}-huge")),
///     Err(MsgError::OutsideLimits { .. })
/// ));
/// # Ok::<(), MsgError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PosixQueueBuilder {
    max_messages: Option<usize>,
    max_size: Option<usize>,
    mode: u32,
}

impl Default for PosixQueueBuilder {
    fn default() -> Self {
        PosixQueueBuilder {
            max_messages: None,
            max_size: None,
            mode: 0o600,
        }
    }
}

impl PosixQueueBuilder {
    /// The most messages the queue holds (`mq_maxmsg`); a sender waits
    /// while it is full.
    pub fn max_messages(mut self, max_messages: usize) -> PosixQueueBuilder {
        self.max_messages = Some(max_messages);
        self
    }

    /// The largest message in bytes (`mq_msgsize`); larger sends are
    /// [`MsgError::TooLarge`].
    pub fn max_size(mut self, max_size: usize) -> PosixQueueBuilder {
        self.max_size = Some(max_size);
        self
    }

    /// Permission bits of the queue (0o600, owner only, by default).
    pub fn mode(mut self, mode: u32) -> PosixQueueBuilder {
        self.mode = mode;
        self
    }

    /// Creates the queue `name` (a leading `/` is added when missing);
    /// [`MsgError::Exists`] if there is one. The returned handle removes
    /// the name when dropped (unless [`keep`](PosixQueue::keep)).
    pub fn create(self, name: &str) -> Result<PosixQueue, MsgError> {
        let c = mq_name(name)?;
        let size = match (self.max_messages, self.max_size) {
            (None, None) => None,
            (messages, size) => {
                let defaults = sys::mq_limits();
                Some((
                    messages.unwrap_or(defaults.msg_default),
                    size.unwrap_or(defaults.msgsize_default),
                ))
            }
        };
        let fd = sys::mq_create(&c, self.mode, size).map_err(|e| match e.raw_os_error() {
            Some(sys::EINVAL) => {
                let limits = sys::mq_limits();
                let (max_messages, max_size) =
                    size.unwrap_or((limits.msg_default, limits.msgsize_default));
                MsgError::OutsideLimits {
                    max_messages,
                    max_size,
                    system_max_messages: limits.msg_max,
                    system_max_size: limits.msgsize_max,
                }
            }
            _ => mq_error(e, name),
        })?;
        Ok(PosixQueue {
            fd,
            name: c.to_string_lossy().into_owned(),
            owns_name: true,
            msg_size: std::sync::OnceLock::new(),
        })
    }
}

impl PosixQueue {
    /// Options for a new queue; [`PosixQueueBuilder::create`] makes it.
    pub fn builder() -> PosixQueueBuilder {
        PosixQueueBuilder::default()
    }

    /// Opens an existing queue for sending and receiving.
    pub fn open(name: &str) -> Result<PosixQueue, MsgError> {
        let c = mq_name(name)?;
        let fd = sys::mq_open(&c).map_err(|e| mq_error(e, name))?;
        Ok(PosixQueue {
            fd,
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
        sys::mq_unlink(&c).map_err(|e| mq_error(e, name))
    }

    /// The queue's limits and current depth.
    pub fn attributes(&self) -> Result<PosixAttributes, MsgError> {
        let attr = sys::mq_getattr(self.fd.as_fd())?;
        Ok(PosixAttributes {
            max_messages: attr.max_messages,
            max_size: attr.max_size,
            messages: attr.messages,
        })
    }

    fn send_within(
        &self,
        data: &[u8],
        priority: u32,
        timeout: Option<Duration>,
    ) -> Result<(), MsgError> {
        sys::mq_send(self.fd.as_fd(), data, priority, timeout).map_err(|e| match e.raw_os_error() {
            Some(sys::ETIMEDOUT) => MsgError::Timeout,
            Some(sys::EMSGSIZE) => MsgError::TooLarge {
                size: data.len(),
                limit: self.attributes().map_or(0, |a| a.max_size),
                limit_name: "the queue's mq_msgsize",
            },
            _ => MsgError::Io(e),
        })
    }

    /// Sends with a priority (higher is received first), waiting while full.
    pub fn send(&self, data: &[u8], priority: u32) -> Result<(), MsgError> {
        self.send_within(data, priority, None)
    }

    /// Sends, waiting at most `timeout` while full.
    pub fn send_timeout(
        &self,
        data: &[u8],
        priority: u32,
        timeout: Duration,
    ) -> Result<(), MsgError> {
        self.send_within(data, priority, Some(timeout))
    }

    /// Sends if there is room now ([`MsgError::Full`] otherwise).
    pub fn try_send(&self, data: &[u8], priority: u32) -> Result<(), MsgError> {
        match self.send_timeout(data, priority, Duration::ZERO) {
            Err(MsgError::Timeout) => Err(MsgError::Full),
            r => r,
        }
    }

    fn recv_within(&self, timeout: Option<Duration>) -> Result<(Vec<u8>, u32), MsgError> {
        let size = match self.msg_size.get() {
            Some(&size) => size,
            None => {
                let size = self.attributes()?.max_size;
                *self.msg_size.get_or_init(|| size)
            }
        };
        let mut buf = vec![0u8; size];
        let (n, priority) =
            sys::mq_receive(self.fd.as_fd(), &mut buf, timeout).map_err(|e| {
                match e.raw_os_error() {
                    Some(sys::ETIMEDOUT) => MsgError::Timeout,
                    _ => MsgError::Io(e),
                }
            })?;
        buf.truncate(n);
        Ok((buf, priority))
    }

    /// Receives the oldest message of the highest priority, waiting for one.
    pub fn recv(&self) -> Result<(Vec<u8>, u32), MsgError> {
        self.recv_within(None)
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Vec<u8>, u32), MsgError> {
        self.recv_within(Some(timeout))
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
