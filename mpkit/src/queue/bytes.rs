//! [`ByteQueue`]: a queue of raw byte messages, of any of the three kinds.

use std::time::Duration;

use super::error::{GetFamily, PutFamily};
use super::ring::{self, Forever, NoWait, Ring, Until, Waiting};
use super::{
    DEFAULT_CAPACITY, GetError, GetTimeoutError, JoinError, JoinTimeoutError, PutError,
    PutTimeoutError, TaskDoneError, TryGetError, TryPutError, join_error, join_timeout_error,
};
use crate::base::segment::{Elem, ObjectKind, Segment, ShmError};

/// Which of Python's queues a [`ByteQueue`] is: the segment's kind, which
/// a program opening it by name must ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ByteQueueKind {
    /// `multiprocessing.Queue` (what [`ByteQueue::new`] makes).
    #[default]
    Queue,
    /// `multiprocessing.JoinableQueue`: each process's gets are recorded,
    /// so [`ByteQueue::join`] reports a consumer that died holding tasks
    /// (see [`JoinableQueue`](super::JoinableQueue#when-a-consumer-dies)).
    Joinable,
    /// `multiprocessing.SimpleQueue`.
    Simple,
}

impl ByteQueueKind {
    fn object(self) -> ObjectKind {
        match self {
            ByteQueueKind::Queue => ObjectKind::Queue,
            ByteQueueKind::Joinable => ObjectKind::JoinableQueue,
            ByteQueueKind::Simple => ObjectKind::SimpleQueue,
        }
    }

    fn from_object(kind: ObjectKind) -> Option<ByteQueueKind> {
        match kind {
            ObjectKind::Queue => Some(ByteQueueKind::Queue),
            ObjectKind::JoinableQueue => Some(ByteQueueKind::Joinable),
            ObjectKind::SimpleQueue => Some(ByteQueueKind::Simple),
            _ => None,
        }
    }
}

/// A queue of raw byte messages, for other languages and shell tools:
/// no codec, the bytes put are the bytes got.
///
/// ```
/// use mpkit::queue::ByteQueue;
/// let q = ByteQueue::new(0)?;
/// q.put(b"hello")?;
/// assert_eq!(q.get()?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// It is a plain queue unless made as another [`ByteQueueKind`]
/// ([`create_kind`](Self::create_kind)): a joinable one counts tasks
/// ([`task_done`](Self::task_done), [`join`](Self::join)) as
/// [`JoinableQueue`](super::JoinableQueue) does.
///
/// ```
/// use std::time::Duration;
/// use mpkit::queue::{ByteQueue, ByteQueueKind};
/// let name = format!("doc-bytes-joinable-{}", std::process::id());
/// let q = ByteQueue::create_kind(ByteQueueKind::Joinable, Some(&name), 0, 4096)?;
/// let other = ByteQueue::open_kind(ByteQueueKind::Joinable, &name)?;
/// q.put_many(&[b"a", b"b"])?;
/// assert_eq!(other.get_many_timeout(10, Duration::from_secs(1))?, [b"a", b"b"]);
/// assert_eq!(q.unfinished_tasks(), 2);
/// other.task_done()?;
/// other.task_done()?;
/// q.join_timeout(Duration::from_secs(1))?;
/// assert!(ByteQueue::open(&name).is_err()); // not a plain queue
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ByteQueue {
    ring: Ring,
    kind: ByteQueueKind,
}

pub(crate) fn bytes_elem() -> Elem {
    Elem::message::<[u8]>("bytes")
}

impl ByteQueue {
    /// A new anonymous byte queue; see [`Queue::new`](super::Queue::new).
    pub fn new(maxsize: usize) -> Result<ByteQueue, ShmError> {
        ByteQueue::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new anonymous byte queue with a byte capacity.
    pub fn with_capacity(maxsize: usize, capacity: usize) -> Result<ByteQueue, ShmError> {
        ByteQueue::create_kind(ByteQueueKind::Queue, None, maxsize, capacity)
    }

    /// A new named byte queue.
    pub fn create(name: &str, maxsize: usize, capacity: usize) -> Result<ByteQueue, ShmError> {
        ByteQueue::create_kind(ByteQueueKind::Queue, Some(name), maxsize, capacity)
    }

    /// A new byte queue of `kind`, named (this handle removes the name
    /// when dropped, unless [`keep`](Self::keep)) or anonymous.
    pub fn create_kind(
        kind: ByteQueueKind,
        name: Option<&str>,
        maxsize: usize,
        capacity: usize,
    ) -> Result<ByteQueue, ShmError> {
        let ring = Ring::create(kind.object(), bytes_elem(), name, maxsize, capacity)?;
        Ok(ByteQueue { ring, kind })
    }

    /// Attaches to a named byte queue.
    pub fn open(name: &str) -> Result<ByteQueue, ShmError> {
        ByteQueue::open_kind(ByteQueueKind::Queue, name)
    }

    /// Attaches to a named byte queue of `kind` (another kind is
    /// [`ShmError::WrongKind`]).
    pub fn open_kind(kind: ByteQueueKind, name: &str) -> Result<ByteQueue, ShmError> {
        let seg = Segment::open(name, |h| ring::spec(kind.object(), bytes_elem(), h.len))?;
        Ok(ByteQueue {
            ring: Ring::from_segment(seg)?,
            kind,
        })
    }

    /// Which kind of queue this is.
    pub fn kind(&self) -> ByteQueueKind {
        self.kind
    }

    fn put_wait<W: Waiting, E: PutFamily<(), GaveUp = W::GaveUp>>(
        &self,
        msg: &[u8],
        wait: W,
    ) -> Result<(), E> {
        self.ring.put_one(msg, wait).map_err(|f| E::refused(f, ()))
    }

    /// Puts one message, waiting while full.
    pub fn put(&self, msg: &[u8]) -> Result<(), PutError<()>> {
        self.put_wait(msg, Forever)
    }

    /// Puts one message, waiting at most `timeout`.
    pub fn put_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), PutTimeoutError<()>> {
        self.put_wait(msg, Until::after(timeout))
    }

    /// Puts one message if there is room now.
    pub fn try_put(&self, msg: &[u8]) -> Result<(), TryPutError<()>> {
        self.put_wait(msg, NoWait)
    }

    fn put_many_wait<W: Waiting, E: PutFamily<usize, GaveUp = W::GaveUp>>(
        &self,
        msgs: &[&[u8]],
        wait: W,
    ) -> Result<(), E> {
        let mut done = 0;
        while done < msgs.len() {
            match self.ring.put(&msgs[done..], wait) {
                Ok(n) => done += n,
                Err(f) => return Err(E::refused(f, done)),
            }
        }
        Ok(())
    }

    /// Puts every message in order (batched under one lock where they fit);
    /// on error, hands back how many were put.
    pub fn put_many(&self, msgs: &[&[u8]]) -> Result<(), PutError<usize>> {
        self.put_many_wait(msgs, Forever)
    }

    /// [`put_many`](Self::put_many), waiting at most `timeout` in all;
    /// [`PutTimeoutError::Timeout`] hands back how many were put, the
    /// first ones.
    pub fn put_many_timeout(
        &self,
        msgs: &[&[u8]],
        timeout: Duration,
    ) -> Result<(), PutTimeoutError<usize>> {
        self.put_many_wait(msgs, Until::after(timeout))
    }

    /// Puts as many of the messages, in order, as there is room for now;
    /// [`TryPutError::Full`] hands back how many that was.
    pub fn try_put_many(&self, msgs: &[&[u8]]) -> Result<(), TryPutError<usize>> {
        self.put_many_wait(msgs, NoWait)
    }

    fn get_one<W: Waiting, E: GetFamily<GaveUp = W::GaveUp>>(&self, wait: W) -> Result<Vec<u8>, E> {
        let mut out = Vec::new();
        self.ring
            .get_one(wait, |b| out = b.to_vec())
            .map_err(E::refused)?;
        Ok(out)
    }

    /// Takes the next message, waiting while empty.
    pub fn get(&self) -> Result<Vec<u8>, GetError> {
        self.get_one(Forever)
    }

    /// Takes the next message, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, GetTimeoutError> {
        self.get_one(Until::after(timeout))
    }

    /// Takes the next message if there is one.
    pub fn try_get(&self) -> Result<Vec<u8>, TryGetError> {
        self.get_one(NoWait)
    }

    /// Takes the next message into `buf` (cleared first), reusing its
    /// allocation: the fastest way to drain a byte queue.
    pub fn get_into(&self, buf: &mut Vec<u8>) -> Result<(), GetError> {
        buf.clear();
        self.ring
            .get_one(Forever, |b| buf.extend_from_slice(b))
            .map_err(GetError::refused)
    }

    fn get_many_wait<W: Waiting, E: GetFamily<GaveUp = W::GaveUp>>(
        &self,
        max: usize,
        wait: W,
    ) -> Result<Vec<Vec<u8>>, E> {
        let mut out = Vec::new();
        self.ring
            .get(max, wait, &mut |b| {
                out.push(b.to_vec());
                true
            })
            .map_err(E::refused)?;
        Ok(out)
    }

    /// Takes up to `max` messages (waiting for the first): every message
    /// queued when it looks, up to `max`. `max == 0` returns an empty `Vec`
    /// at once.
    pub fn get_many(&self, max: usize) -> Result<Vec<Vec<u8>>, GetError> {
        self.get_many_wait(max, Forever)
    }

    /// [`get_many`](Self::get_many), waiting at most `timeout` for the
    /// first message.
    pub fn get_many_timeout(
        &self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Vec<u8>>, GetTimeoutError> {
        self.get_many_wait(max, Until::after(timeout))
    }

    /// [`get_many`](Self::get_many) without waiting:
    /// [`TryGetError::Empty`] when there is no message.
    pub fn try_get_many(&self, max: usize) -> Result<Vec<Vec<u8>>, TryGetError> {
        self.get_many_wait(max, NoWait)
    }

    fn get_with_wait<W: Waiting, E: GetFamily<GaveUp = W::GaveUp>>(
        &self,
        max: usize,
        wait: W,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, E> {
        self.ring.get(max, wait, sink).map_err(E::refused)
    }

    /// Takes up to `max` messages if there are any, handing each to
    /// `sink` (straight from the shared ring where it is contiguous) while
    /// the consumers' side is held: the sink must copy or look, and never
    /// block. Returning `false` ends the batch before that message, which
    /// stays first in the queue; the first message is taken whatever the
    /// sink returns. Returns how many were taken; [`TryGetError::Empty`]
    /// when there was none.
    ///
    /// ```
    /// use mpkit::queue::ByteQueue;
    /// let q = ByteQueue::new(0)?;
    /// q.put_many(&[b"ab", b"cd", b"ef"])?;
    /// let mut got = Vec::new();
    /// // At most 3 bytes a batch: the third message stays queued.
    /// q.try_get_with(10, &mut |m| {
    ///     if got.len() + m.len() > 4 { return false; }
    ///     got.extend_from_slice(m);
    ///     true
    /// })?;
    /// assert_eq!((got.as_slice(), q.len()), (&b"abcd"[..], 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get_with(
        &self,
        max: usize,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, TryGetError> {
        self.get_with_wait(max, NoWait, sink)
    }

    /// [`try_get_with`](Self::try_get_with), waiting at most `timeout` for
    /// the first message.
    pub fn get_with_timeout(
        &self,
        max: usize,
        timeout: Duration,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, GetTimeoutError> {
        self.get_with_wait(max, Until::after(timeout), sink)
    }

    /// Messages in the queue now.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `maxsize` messages are queued.
    pub fn is_full(&self) -> bool {
        let max = self.ring.maxsize();
        max != 0 && self.len() >= max
    }

    /// The item limit (0: none).
    pub fn maxsize(&self) -> usize {
        self.ring.maxsize()
    }

    /// The byte capacity.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The largest message that fits (the capacity less a record header).
    pub fn max_message(&self) -> usize {
        self.ring.max_message()
    }

    /// Marks one task taken from the queue as done, as
    /// [`JoinableQueue::task_done`](super::JoinableQueue::task_done) does.
    /// Any kind counts tasks; only a [`ByteQueueKind::Joinable`] one
    /// records who holds them.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        if self.ring.task_done() {
            Ok(())
        } else {
            Err(TaskDoneError)
        }
    }

    /// Tasks put and not yet marked done.
    pub fn unfinished_tasks(&self) -> u64 {
        self.ring.unfinished()
    }

    /// Waits until every task put so far is done; see
    /// [`JoinableQueue::join`](super::JoinableQueue::join).
    pub fn join(&self) -> Result<(), JoinError> {
        self.ring.join(None).map_err(join_error)
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        let deadline = crate::sys::deadline_after(Some(timeout));
        self.ring.join(deadline).map_err(join_timeout_error)
    }

    /// Closes the queue; see [`Queue::close`](super::Queue::close).
    pub fn close(&self) {
        self.ring.close()
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// The name, for a named queue.
    pub fn name(&self) -> Option<&str> {
        self.ring.segment().name()
    }

    /// Keeps the name when this creating handle is dropped, so that
    /// processes started later can still open the queue.
    pub fn keep(&mut self) {
        self.ring.segment_mut().set_owns_name(false);
    }

    /// Removes the name now; processes that have the queue keep it.
    pub fn unlink(&mut self) -> Result<(), ShmError> {
        self.ring.segment_mut().unlink()
    }

    /// Another handle to the same queue.
    pub fn try_clone(&self) -> Result<ByteQueue, ShmError> {
        Ok(ByteQueue {
            ring: Ring::from_segment(self.ring.segment().try_clone()?)?,
            kind: self.kind,
        })
    }
}

impl serde::Serialize for ByteQueue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ring.segment().serialize_handle(s)
    }
}

impl<'de> serde::Deserialize<'de> for ByteQueue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        // The handle carries no kind: the header says it, and the checks
        // hold it to any of the three (another kind fails them).
        let mut kind = ByteQueueKind::Queue;
        let seg = Segment::deserialize_handle(d, |h| {
            kind = ObjectKind::from_raw(h.kind)
                .and_then(ByteQueueKind::from_object)
                .unwrap_or_default();
            ring::spec(kind.object(), bytes_elem(), h.len)
        })?;
        Ok(ByteQueue {
            ring: Ring::from_segment(seg).map_err(D::Error::custom)?,
            kind,
        })
    }
}
