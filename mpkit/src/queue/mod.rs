//! Queues in shared memory: [`Queue`], [`JoinableQueue`], [`SimpleQueue`]
//! and [`ByteQueue`] (Python's `multiprocessing.Queue`, `JoinableQueue`,
//! `SimpleQueue`).
//!
//! ```
//! use mpkit::{Process, queue::Queue};
//!
//! let q: Queue<(u32, String)> = Queue::new(2)?; // Python: Queue(2)
//! let producer = Process::spawn(|q: Queue<(u32, String)>| {
//!     for i in 0..5 {
//!         q.put((i, format!("item {i}"))).unwrap(); // blocks while 2 are queued
//!     }
//! }, q.try_clone()?)?;
//! for i in 0..5 {
//!     assert_eq!(q.get()?, (i, format!("item {i}")));
//! }
//! producer.join()?;
//! assert!(matches!(q.try_get(), Err(mpkit::queue::TryGetError::Empty)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Code generic over where its queue lives uses the traits [`QueueOps`] and
//! [`JoinableOps`] ([`generic`]), which these queues and the Redis-stream
//! queue (`redis_queue::RedisQueue`, feature `redis`) implement.
//!
//! # Anatomy
//! A queue is one segment holding a byte ring (see `queue/ring.rs` and
//! ARCHITECTURE.md for the layout). Producers are one critical section,
//! consumers another, and the two sides meet only through one commit store
//! each. A side is *leased* to the thread that keeps using it, which then
//! enters and leaves with plain stores (no atomic read-modify-write, no
//! fence) to an in-section flag of its own (so a thread acting on a stale
//! view of the lease never disturbs the next holder's); any other thread takes the side's robust lock and revokes the
//! lease, paying for the ordering with `membarrier(2)` on that rare path
//! (SeqCst fences where `membarrier` is unavailable, or with
//! `MPKIT_NO_MEMBARRIER=1` set when the queue is created). There is no
//! feeder thread: `put` returns once the message is in the queue, so nothing
//! is silently dropped at exit and `join` of a child never deadlocks on
//! undrained data. In steady state a message costs no system call: a side
//! sleeps on a process-shared futex only after a short spin, and the other
//! side wakes it only if someone sleeps. A producer that finds the queue
//! full first waits up to 10 µs for room for a batch (64 KiB, a quarter of
//! `maxsize`) before it settles for room for its one message: a consumer
//! that keeps up then works through a batch undisturbed, instead of handing
//! a cache line back and forth with the producer for every message.
//!
//! # Crash safety
//! Any producer or consumer may be killed at any instruction. Messages are
//! never seen half-written, no lock or lease stays held (locks are robust;
//! a lease held by a dead process is taken over), and a
//! message whose `put` returned is delivered exactly once — unless the
//! consumer that took it was killed after taking it and before its `get`
//! returned. A [`JoinableQueue`] knows which process holds which
//! unfinished tasks, so a consumer killed before its `task_done` is
//! reported by `join` ([`JoinError::TasksLost`]) instead of blocking it
//! for good (see [When a consumer dies](JoinableQueue#when-a-consumer-dies)).
//!
//! # Capacity
//! A queue holds at most `maxsize` messages (0: no limit, as in Python) and
//! at most its byte capacity (default 1 MiB, rounded up to a power of two,
//! at most 64 GiB; each message costs its length plus a 16-byte header,
//! rounded up to a 64-byte cache line). A message larger than the capacity
//! minus 16 bytes is [`PutError::TooLarge`] (and its kin in the other put
//! errors) at once, never a hang.
//!
//! # Errors
//! Each family of operations has its own error type, naming only what that
//! family can report: a blocking [`get`](Queue::get) has no "empty" to
//! report, a [`try_get`](Queue::try_get) no "timed out":
//!
//! | operation | error | beyond the blocking one's variants |
//! |---|---|---|
//! | `put`, `put_many` | [`PutError<T>`] | — |
//! | `try_put` | [`TryPutError<T>`] | `Full` |
//! | `put_timeout` | [`PutTimeoutError<T>`] | `Timeout` |
//! | `get`, `get_many`, `get_into` | [`GetError`] | — |
//! | `try_get` | [`TryGetError`] | `Empty` |
//! | `get_timeout`, `get_many_timeout` | [`GetTimeoutError`] | `Timeout` |
//! | `join` | [`JoinError`] | — |
//! | `join_timeout` | [`JoinTimeoutError`] | `Timeout` (with what is still unfinished) |
//!
//! Put errors hand back what was not put. The blocking operations' errors
//! convert into the others' (`From`), so `?` passes them up. A
//! [`ByteQueue`] has no codec: it never returns the `Encode`, `Decode` or
//! `Reentered` variants.

mod builder;
mod bytes;
mod error;
pub mod generic;
mod ring;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::base::segment::{Elem, ObjectKind, Segment, ShmError};
use crate::codec::{Codec, Postcard};
pub use builder::Builder;
#[cfg(test)]
pub(crate) use bytes::bytes_elem;
pub use bytes::{ByteQueue, ByteQueueKind};
pub use error::{
    GetError, GetTimeoutError, JoinError, JoinPending, JoinTimeoutError, MemberTasks, PutError,
    PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use error::{GetFamily, PutFamily};
pub use generic::{JoinableOps, QueueOps};
use ring::{Forever, NoWait, Ring, Until, Waiting};

/// What [`admin`](crate::admin) reports of a queue found in `file`: the
/// messages it holds, or `None` when `kind` is not a queue or the file is
/// too short to be one (its header was written by something else).
pub(crate) fn depth_in(kind: ObjectKind, file: &std::fs::File) -> std::io::Result<Option<u64>> {
    match kind {
        ObjectKind::Queue | ObjectKind::JoinableQueue | ObjectKind::SimpleQueue => {
            match ring::depth_in(file) {
                Ok(depth) => Ok(Some(depth)),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                Err(e) => Err(e),
            }
        }
        _ => Ok(None),
    }
}

/// The byte capacity of a queue made with `new`.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

thread_local! {
    /// Encoding buffer reused by every queue on this thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The typed layer shared by `Queue`, `JoinableQueue` and `SimpleQueue`.
struct Typed<T, C> {
    ring: Ring,
    /// The element's name when the user chose one (`Builder::element_name`),
    /// else the type's short name is used.
    element: Option<String>,
    _t: PhantomData<fn(T) -> T>,
    _c: PhantomData<C>,
}

impl<T: Serialize + DeserializeOwned, C: Codec> Typed<T, C> {
    /// The element: `T`'s short name and the codec, or the name chosen.
    fn elem(element: Option<&str>) -> Elem {
        match element {
            Some(name) => Elem::named_message(name, C::NAME),
            None => Elem::message::<T>(C::NAME),
        }
    }

    fn create(
        kind: ObjectKind,
        name: Option<&str>,
        maxsize: usize,
        capacity: usize,
        element: Option<String>,
    ) -> Result<Self, ShmError> {
        let elem = Self::elem(element.as_deref());
        let ring = Ring::create(kind, elem, name, maxsize, capacity)?;
        Ok(Typed::wrap(ring, element))
    }

    fn open(kind: ObjectKind, name: &str, element: Option<String>) -> Result<Self, ShmError> {
        let elem = Self::elem(element.as_deref());
        let seg = Segment::open(name, |h| ring::spec(kind, elem, h.len))?;
        Ok(Typed::wrap(Ring::from_segment(seg)?, element))
    }

    fn wrap(ring: Ring, element: Option<String>) -> Self {
        Typed {
            ring,
            element,
            _t: PhantomData,
            _c: PhantomData,
        }
    }

    fn try_clone(&self) -> Result<Self, ShmError> {
        let seg = self.ring.segment().try_clone()?;
        Ok(Typed::wrap(Ring::from_segment(seg)?, self.element.clone()))
    }

    fn put<W: Waiting, E: PutFamily<T, GaveUp = W::GaveUp>>(
        &self,
        item: T,
        wait: W,
    ) -> Result<(), E> {
        SCRATCH.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            if let Err(source) = C::encode(&item, &mut buf) {
                return Err(E::encode(item, std::any::type_name::<T>(), source));
            }
            match self.ring.put_one(&buf, wait) {
                Ok(()) => Ok(()),
                Err(f) => Err(E::refused(f, item)),
            }
        })
    }

    fn put_many(&self, items: Vec<T>) -> Result<(), PutError<Vec<T>>> {
        let mut encoded = Vec::with_capacity(items.len());
        for item in &items {
            let mut buf = Vec::new();
            if let Err(source) = C::encode(item, &mut buf) {
                return Err(PutError::encode(items, std::any::type_name::<T>(), source));
            }
            encoded.push(buf);
        }
        let mut done = 0;
        while done < encoded.len() {
            let slices: Vec<&[u8]> = encoded[done..].iter().map(Vec::as_slice).collect();
            match self.ring.put(&slices, Forever) {
                Ok(n) => done += n,
                Err(f) => {
                    let rest = items.into_iter().skip(done).collect();
                    return Err(PutError::refused(f, rest));
                }
            }
        }
        Ok(())
    }

    fn get_many<W: Waiting, E: GetFamily<GaveUp = W::GaveUp>>(
        &self,
        max: usize,
        wait: W,
    ) -> Result<Vec<T>, E> {
        let mut out = Vec::new();
        let mut failure = None;
        self.ring
            .get(max, wait, &mut |bytes| {
                if failure.is_some() {
                    return false;
                }
                match C::decode::<T>(bytes) {
                    Ok(v) => {
                        out.push(v);
                        true
                    }
                    // The first message of the batch: taken, and reported.
                    Err(source) if out.is_empty() => {
                        failure = Some(source);
                        true
                    }
                    // Left first in the queue: the next get reports it.
                    Err(_) => false,
                }
            })
            .map_err(E::refused)?;
        match failure {
            Some(source) => Err(E::decode(std::any::type_name::<T>(), source)),
            None => Ok(out),
        }
    }

    fn get<W: Waiting, E: GetFamily<GaveUp = W::GaveUp>>(&self, wait: W) -> Result<T, E> {
        let mut out = None;
        self.ring
            .get_one(wait, |bytes| out = Some(C::decode::<T>(bytes)))
            .map_err(E::refused)?;
        match out.expect("a get that returns has taken one message") {
            Ok(v) => Ok(v),
            Err(source) => Err(E::decode(std::any::type_name::<T>(), source)),
        }
    }
}

/// The methods every typed queue has.
macro_rules! queue_methods {
    () => {
        /// Puts `item`, waiting while the queue is full (Python's `put`).
        pub fn put(&self, item: T) -> Result<(), PutError<T>> {
            self.inner.put(item, Forever)
        }

        /// Puts `item`, waiting at most `timeout` while full
        /// ([`PutTimeoutError::Timeout`] hands it back then).
        pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
            self.inner.put(item, Until::after(timeout))
        }

        /// Puts `item` if there is room now (Python's `put_nowait`);
        /// [`TryPutError::Full`] hands it back otherwise.
        pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
            self.inner.put(item, NoWait)
        }

        /// Puts every item, in order, waiting for room as needed. On error
        /// the items not put are handed back.
        pub fn put_many(&self, items: Vec<T>) -> Result<(), PutError<Vec<T>>> {
            self.inner.put_many(items)
        }

        /// Takes the next item, waiting while the queue is empty (Python's
        /// `get`). After [`close`](Self::close), the remaining items are
        /// still delivered, then [`GetError::Closed`].
        pub fn get(&self) -> Result<T, GetError> {
            self.inner.get(Forever)
        }

        /// Takes the next item, waiting at most `timeout`
        /// ([`GetTimeoutError::Timeout`] then).
        pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
            self.inner.get(Until::after(timeout))
        }

        /// Takes the next item if there is one (Python's `get_nowait`;
        /// [`TryGetError::Empty`] if not).
        pub fn try_get(&self) -> Result<T, TryGetError> {
            self.inner.get(NoWait)
        }

        /// Takes up to `max` items at once (waiting for the first): every
        /// item queued when it looks, up to `max`, for one entry into the
        /// consumers' side. `max == 0` returns an empty `Vec` at once.
        ///
        /// Nothing is dropped: the batch ends before an item that does not
        /// decode, which stays first in the queue, and the next get takes
        /// it and reports it ([`GetError::Decode`]). So `[a, bad, b]` comes
        /// out as `Ok([a])`, then `Err(Decode)`, then `Ok([b])`.
        pub fn get_many(&self, max: usize) -> Result<Vec<T>, GetError> {
            self.inner.get_many(max, Forever)
        }

        /// Like [`get_many`](Self::get_many), waiting at most `timeout` for
        /// the first item.
        pub fn get_many_timeout(
            &self,
            max: usize,
            timeout: Duration,
        ) -> Result<Vec<T>, GetTimeoutError> {
            self.inner.get_many(max, Until::after(timeout))
        }

        /// Number of items in the queue now (Python's `qsize`).
        pub fn len(&self) -> usize {
            self.inner.ring.len()
        }

        /// True when the queue holds no item.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// True when `maxsize` items are queued (Python's `full`).
        pub fn is_full(&self) -> bool {
            let max = self.inner.ring.maxsize();
            max != 0 && self.len() >= max
        }

        /// The item limit (0: none).
        pub fn maxsize(&self) -> usize {
            self.inner.ring.maxsize()
        }

        /// The ring's capacity in bytes.
        pub fn capacity(&self) -> usize {
            self.inner.ring.capacity()
        }

        /// Closes the queue for everyone: puts fail with `Closed`
        /// ([`PutError::Closed`] and its kin), gets drain what is left and
        /// then fail with `Closed` ([`GetError::Closed`] and its kin);
        /// sleepers are woken.
        pub fn close(&self) {
            self.inner.ring.close()
        }

        /// Whether [`close`](Self::close) was called.
        pub fn is_closed(&self) -> bool {
            self.inner.ring.is_closed()
        }

        /// The name, for a named queue.
        pub fn name(&self) -> Option<&str> {
            self.inner.ring.segment().name()
        }

        /// Keeps the name when this creating handle is dropped, so that
        /// processes started later can still open the queue.
        pub fn keep(&mut self) {
            self.inner.ring.segment_mut().set_owns_name(false);
        }

        /// Removes the name now; processes that have the queue keep it.
        pub fn unlink(&mut self) -> Result<(), ShmError> {
            self.inner.ring.segment_mut().unlink()
        }

        /// Another handle to the same queue (it never removes the name).
        pub fn try_clone(&self) -> Result<Self, ShmError> {
            Ok(Self {
                inner: self.inner.try_clone()?,
            })
        }
    };
}

/// Serde and `Debug` for a typed queue: it passes as a handle, with the
/// element name chosen for it, if any (the receiver cannot know it).
macro_rules! queue_handle {
    ($ty:ident, $kind:expr) => {
        impl<T, C> serde::Serialize for $ty<T, C> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let seg = self.inner.ring.segment();
                let fd = crate::handle::BorrowedHandle(seg.as_fd());
                (fd, seg.name(), &self.inner.element).serialize(s)
            }
        }

        impl<'de, T: Serialize + DeserializeOwned, C: Codec> serde::Deserialize<'de> for $ty<T, C> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let (fd, name, element) =
                    <(crate::handle::FdHandle, Option<String>, Option<String>)>::deserialize(d)?;
                let elem = Typed::<T, C>::elem(element.as_deref());
                let seg = Segment::attach(fd.0, name, |h| ring::spec($kind, elem, h.len))
                    .map_err(D::Error::custom)?;
                let ring = Ring::from_segment(seg).map_err(D::Error::custom)?;
                Ok($ty {
                    inner: Typed::wrap(ring, element),
                })
            }
        }

        impl<T, C> fmt::Debug for $ty<T, C> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("type", &std::any::type_name::<T>())
                    .field("name", &self.inner.ring.segment().name())
                    .field("len", &self.inner.ring.len())
                    .field("maxsize", &self.inner.ring.maxsize())
                    .field("capacity", &self.inner.ring.capacity())
                    .finish()
            }
        }
    };
}

/// A multi-producer, multi-consumer queue of `T` between processes
/// (Python's `multiprocessing.Queue`), encoded with codec `C`.
pub struct Queue<T, C = Postcard> {
    inner: Typed<T, C>,
}

queue_handle!(Queue, ObjectKind::Queue);

impl<T: Serialize + DeserializeOwned, C: Codec> Queue<T, C> {
    /// A new anonymous queue holding at most `maxsize` items (0: no limit
    /// on their number, as in Python).
    ///
    /// Its byte capacity is [`DEFAULT_CAPACITY`] (1 MiB), and that bounds
    /// each message too, whatever `maxsize` says: unlike Python's `Queue`,
    /// whose pipe streams a message of any size, a message here must fit
    /// the shared ring whole, so one whose encoding is larger than the
    /// capacity less 16 bytes is [`PutError::TooLarge`]. For larger
    /// messages, give the capacity with [`with_capacity`](Self::with_capacity).
    pub fn new(maxsize: usize) -> Result<Self, ShmError> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new anonymous queue with a byte capacity (rounded up to a power of
    /// two).
    pub fn with_capacity(maxsize: usize, capacity: usize) -> Result<Self, ShmError> {
        Ok(Queue {
            inner: Typed::create(ObjectKind::Queue, None, maxsize, capacity, None)?,
        })
    }

    /// A new named queue that unrelated processes can [`open`](Self::open).
    /// This handle removes the name when dropped.
    pub fn create(name: &str, maxsize: usize, capacity: usize) -> Result<Self, ShmError> {
        Ok(Queue {
            inner: Typed::create(ObjectKind::Queue, Some(name), maxsize, capacity, None)?,
        })
    }

    /// Attaches to a named queue of `T` (checked: a queue of another
    /// element is [`ShmError::WrongElement`]). `T` is known by its name
    /// without module paths, so another program's `Queue<Job>` opens as
    /// this one's if both define `Job`; a queue created under a chosen
    /// element name opens with [`Builder::element_name`].
    pub fn open(name: &str) -> Result<Self, ShmError> {
        Ok(Queue {
            inner: Typed::open(ObjectKind::Queue, name, None)?,
        })
    }

    queue_methods!();
}

/// A [`Queue`] that also counts unfinished tasks (Python's
/// `JoinableQueue`): every `put` adds one, [`task_done`](Self::task_done)
/// removes one, and [`join`](Self::join) waits for zero.
///
/// ```
/// use std::time::Duration;
/// use mpkit::{Process, queue::JoinableQueue};
/// let q: JoinableQueue<u32> = JoinableQueue::new(0)?;
/// let worker = Process::spawn(|q: JoinableQueue<u32>| {
///     while let Ok(_job) = q.get() {
///         q.task_done().unwrap();
///     }
/// }, q.try_clone()?)?;
/// for job in 0..10 {
///     q.put(job).unwrap();
/// }
/// q.join_timeout(Duration::from_secs(10))?;
/// q.close();
/// worker.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # When a consumer dies
/// In Python, a consumer killed between `get` and `task_done` leaves its
/// task unfinished for good, and `join` blocks forever. Here the queue
/// records which process took which tasks (per process, in a table of 24
/// in its shared memory): a `join` that finds a process dead holding
/// unfinished tasks (it looks before sleeping, and every 100 ms while
/// tasks are held) clears them, counting them as done, and returns
/// [`JoinError::TasksLost`] with the process and the count; the next
/// `join` waits for the rest. [`join_timeout`](Self::join_timeout) that
/// times out says what it was waiting for ([`JoinPending`]: how many
/// tasks are queued, held by which live processes, and untracked).
///
/// The dead process's messages are not put back: the queue keeps no copy
/// of a message once it is taken. Redo the lost tasks if they matter.
///
/// A `task_done` counts against the calling process's own tasks, else any
/// process's (a task handed on), else against none (marked done before it
/// was taken); one call more than there were items is an error, however
/// many processes call at once. Processes beyond the table's 24, while
/// all 24 live, take untracked: a `join` waits for their tasks as
/// Python's does. A `task_done` that counts against no process's tasks
/// enters the consumers' side of the queue, so it waits, as a `get`
/// does, while another consumer is stopped inside it.
pub struct JoinableQueue<T, C = Postcard> {
    inner: Typed<T, C>,
}

queue_handle!(JoinableQueue, ObjectKind::JoinableQueue);

impl<T: Serialize + DeserializeOwned, C: Codec> JoinableQueue<T, C> {
    /// A new anonymous joinable queue; see [`Queue::new`].
    pub fn new(maxsize: usize) -> Result<Self, ShmError> {
        Self::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A new anonymous joinable queue with a byte capacity.
    pub fn with_capacity(maxsize: usize, capacity: usize) -> Result<Self, ShmError> {
        Ok(JoinableQueue {
            inner: Typed::create(ObjectKind::JoinableQueue, None, maxsize, capacity, None)?,
        })
    }

    /// A new named joinable queue.
    pub fn create(name: &str, maxsize: usize, capacity: usize) -> Result<Self, ShmError> {
        Ok(JoinableQueue {
            inner: Typed::create(
                ObjectKind::JoinableQueue,
                Some(name),
                maxsize,
                capacity,
                None,
            )?,
        })
    }

    /// Attaches to a named joinable queue of `T`.
    pub fn open(name: &str) -> Result<Self, ShmError> {
        Ok(JoinableQueue {
            inner: Typed::open(ObjectKind::JoinableQueue, name, None)?,
        })
    }

    queue_methods!();

    /// Marks one task taken from the queue as done. One call more than
    /// there were items is an error.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        if self.inner.ring.task_done() {
            Ok(())
        } else {
            Err(TaskDoneError)
        }
    }

    /// Tasks put and not yet marked done.
    pub fn unfinished_tasks(&self) -> u64 {
        self.inner.ring.unfinished()
    }

    /// Waits until every task put so far is done. Returns
    /// [`JoinError::TasksLost`] as soon as it finds processes that died
    /// holding unfinished tasks (those are then cleared; call again to
    /// wait for the rest). See [When a consumer dies](Self#when-a-consumer-dies).
    /// Task counts another process overwrote (more done than were ever
    /// put) are [`JoinError::Corrupt`], never a `join` that returns with
    /// tasks unfinished.
    pub fn join(&self) -> Result<(), JoinError> {
        self.inner.ring.join(None).map_err(join_error)
    }

    /// [`join`](Self::join), waiting at most `timeout`:
    /// [`JoinTimeoutError::Timeout`] then says what is still unfinished
    /// and who holds it.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        let deadline = crate::sys::deadline_after(Some(timeout));
        self.inner.ring.join(deadline).map_err(join_timeout_error)
    }
}

/// What a `join` without a deadline reports.
fn join_error(e: ring::JoinFail) -> JoinError {
    match e {
        ring::JoinFail::Lost(lost) => {
            JoinError::TasksLost(lost.into_iter().map(MemberTasks::from).collect())
        }
        ring::JoinFail::Corrupt(why) => JoinError::Corrupt(why),
        ring::JoinFail::Io(e) => JoinError::Io(e),
        // No deadline: never.
        ring::JoinFail::TimedOut(_) => JoinError::Io(std::io::ErrorKind::TimedOut.into()),
    }
}

/// What a `join` with a deadline reports.
fn join_timeout_error(e: ring::JoinFail) -> JoinTimeoutError {
    match e {
        ring::JoinFail::Lost(lost) => {
            JoinTimeoutError::TasksLost(lost.into_iter().map(MemberTasks::from).collect())
        }
        ring::JoinFail::Corrupt(why) => JoinTimeoutError::Corrupt(why),
        ring::JoinFail::Io(e) => JoinTimeoutError::Io(e),
        ring::JoinFail::TimedOut(p) => JoinTimeoutError::Timeout(p.into()),
    }
}

/// The minimal unbounded queue (Python's `SimpleQueue`): `put`, `get`,
/// `is_empty`, `close`, bounded only by its byte capacity.
///
/// Its calls have no timeout: besides waiting while the ring is full
/// (`put`) or empty (`get`), they wait for a member that is inside its
/// side's critical section for as long as it stays there: a member stopped
/// by a signal or a debugger, or one that a lease word rewritten by another
/// process names as inside. Use a [`Queue`] and its `_timeout` calls where
/// that wait must be bounded.
pub struct SimpleQueue<T, C = Postcard> {
    inner: Typed<T, C>,
}

queue_handle!(SimpleQueue, ObjectKind::SimpleQueue);

impl<T: Serialize + DeserializeOwned, C: Codec> SimpleQueue<T, C> {
    /// A new anonymous simple queue of [`DEFAULT_CAPACITY`] bytes.
    pub fn new() -> Result<Self, ShmError> {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A new anonymous simple queue with a byte capacity.
    pub fn with_capacity(capacity: usize) -> Result<Self, ShmError> {
        Ok(SimpleQueue {
            inner: Typed::create(ObjectKind::SimpleQueue, None, 0, capacity, None)?,
        })
    }

    /// A new named simple queue.
    pub fn create(name: &str, capacity: usize) -> Result<Self, ShmError> {
        Ok(SimpleQueue {
            inner: Typed::create(ObjectKind::SimpleQueue, Some(name), 0, capacity, None)?,
        })
    }

    /// Attaches to a named simple queue of `T`.
    pub fn open(name: &str) -> Result<Self, ShmError> {
        Ok(SimpleQueue {
            inner: Typed::open(ObjectKind::SimpleQueue, name, None)?,
        })
    }

    /// Puts `item`, waiting while the ring is full.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.inner.put(item, Forever)
    }

    /// Takes the next item, waiting while empty.
    pub fn get(&self) -> Result<T, GetError> {
        self.inner.get(Forever)
    }

    /// True when the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.inner.ring.len() == 0
    }

    /// Closes the queue; see [`Queue::close`].
    pub fn close(&self) {
        self.inner.ring.close()
    }

    /// Another handle to the same queue.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(SimpleQueue {
            inner: self.inner.try_clone()?,
        })
    }
}
