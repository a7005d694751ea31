//! The shared-memory message ring behind every mpkit queue.
//!
//!
//! - [`layout`]: where each block lies in the segment, and the record format;
//! - [`lease`]: exclusion, a lease with a lock behind it;
//! - [`wait`]: sleeping and waking;
//! - [`ops`]: putting and getting;
//! - [`tasks`]: a `JoinableQueue`'s unfinished tasks, who holds them, `join`.
//!
//! # Crash safety
//!
//! The commit points are one store each: a producer's release store of
//! `seq` (after writing whole records), a consumer's release store of its
//! `seq` (after copying records out). The byte positions are stored right
//! after and are repairable, so a process killed anywhere leaves either
//! the whole record or nothing:
//! - a producer killed before its `seq` store: the half-written bytes lie
//!   beyond the published records, invisible; the next producer writes
//!   over them;
//! - a producer killed between its `seq` and `pos` stores: the next
//!   producer to learn of the death (the robust mutex reports its owner
//!   died, or a revoker finds the lease holder dead) finds the headers
//!   from `pos` on naming the messages of its batch up to `seq - 1`, and
//!   moves `pos` past them; a consumer that finds a record ending past the
//!   producers' `pos` enters the producers' side (so repairing it) before
//!   it judges the record;
//! - a consumer killed before its `seq` store: the record is still first
//!   and the next consumer delivers it (the dead one never returned it);
//!   after its `seq` store: the next consumer moves `pos` on, as above;
//! - a process killed holding a side's mutex: the mutex is robust, so the
//!   next one to lock gets it;
//! - a lease holder killed inside its section (`busy` stays 1): the
//!   revoker sees that the holder's thread is gone (`/proc/<pid>/stat`
//!   missing, or its start time differs: the pid was reused; or
//!   `/proc/<pid>/task/<tid>/stat` missing or a zombie; a read error counts
//!   as alive) and takes over; the slot is reclaimed by a later grant;
//! - a thread killed between a stale lease check and its step out leaves
//!   `busy = 1` in its own slot, which no revoker reads.
//!
//! A message whose `put` returned is delivered exactly once, unless the
//! consumer that took it dies after its `seq` store and before its `get`
//! returned.
//!
//! For a `JoinableQueue`, the number of unfinished tasks is the
//! producers' `seq` minus the tasks done: a put counts by the same commit
//! store as the message itself, so no crash can make it disagree with
//! what is in the queue. Which member holds the tasks taken and not done
//! is kept per process ([`tasks`]), so a member's death is reported
//! instead of blocking `join` for good.

mod layout;
mod lease;
mod ops;
mod tasks;
mod wait;

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, compiler_fence, fence};
use std::time::Duration;

use crate::base::cell::MutexCell;
use crate::base::segment::{Elem, ObjectKind, Segment, ShmError, TRUNCATED};
use crate::sys::{self, Deadline};
use layout::*;
pub(crate) use layout::{ring_capacity, spec};
pub(crate) use tasks::{JoinFail, MemberTasks, Pending};

/// How long an operation waits, as a type. What the operation reports when
/// it stops waiting ([`GaveUp`](Waiting::GaveUp)) is part of the type, so
/// that a blocking put or get has no "full", "empty" or "timed out" to
/// report, and the queue's public error types need no variant that cannot
/// happen.
pub(crate) trait Waiting: Copy {
    /// What giving up is reported as.
    type GaveUp;
    /// The deadline to sleep until (`None`: forever), or what to report
    /// instead of sleeping.
    fn deadline(self) -> Result<Deadline, Self::GaveUp>;
    /// What to report when a sleep ended with nothing ready; `None`: look
    /// again.
    fn timed_out(self) -> Option<Self::GaveUp>;
    /// How long to wait for a member inside the side one is entering.
    fn enter_deadline(self) -> Deadline;
}

/// Waits as long as it takes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Forever;

/// Does not wait: gives up with [`NotNow`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct NoWait;

/// Waits until the deadline (`None`: forever); gives up with [`TimedOut`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Until(pub(crate) Deadline);

impl Until {
    pub(crate) fn after(timeout: Duration) -> Until {
        Until(sys::deadline_after(Some(timeout)))
    }
}

/// The queue was full (or empty) and the operation was not to wait.
#[derive(Debug)]
pub(crate) struct NotNow;

/// The deadline passed.
#[derive(Debug)]
pub(crate) struct TimedOut;

impl Waiting for Forever {
    type GaveUp = std::convert::Infallible;
    fn deadline(self) -> Result<Deadline, Self::GaveUp> {
        Ok(None)
    }
    fn timed_out(self) -> Option<Self::GaveUp> {
        None
    }
    fn enter_deadline(self) -> Deadline {
        None
    }
}

impl Waiting for NoWait {
    type GaveUp = NotNow;
    fn deadline(self) -> Result<Deadline, NotNow> {
        Err(NotNow)
    }
    fn timed_out(self) -> Option<NotNow> {
        Some(NotNow)
    }
    fn enter_deadline(self) -> Deadline {
        Some(std::time::Instant::now() + lease::TRY_ENTER)
    }
}

impl Waiting for Until {
    type GaveUp = TimedOut;
    fn deadline(self) -> Result<Deadline, TimedOut> {
        Ok(self.0)
    }
    fn timed_out(self) -> Option<TimedOut> {
        Some(TimedOut)
    }
    fn enter_deadline(self) -> Deadline {
        self.0
    }
}

/// Why a put did not happen; `G` is what giving up on a full queue is
/// (see [`Waiting`]).
#[derive(Debug)]
pub(crate) enum PutFail<G> {
    GaveUp(G),
    Closed,
    TooLarge { size: usize, max: usize },
    Corrupt(String),
    Io(io::Error),
}

/// Why a get did not happen; `G` as for [`PutFail`].
#[derive(Debug)]
pub(crate) enum GetFail<G> {
    GaveUp(G),
    Closed,
    Corrupt(String),
    /// A sink (a decoder) used the queue it was called from.
    Reentered,
    Io(io::Error),
}

/// Why a side's critical section was not entered.
#[derive(Debug)]
pub(crate) enum EnterFail {
    /// A member stayed inside its section (or held the side's lock) past
    /// the deadline: stopped, or named by a lease word a hostile process
    /// wrote.
    Busy,
    /// This thread is inside the same side already (a decoder that uses
    /// its own queue).
    Reentered,
    /// The side's lock cell was rewritten by another process (see
    /// `LockError::Corrupt`): its mutex was not handed to glibc.
    Corrupt(String),
    Io(io::Error),
}

/// The byte ring in a segment; see the module docs.
#[derive(Debug)]
pub(crate) struct Ring {
    seg: Segment,
    /// The mapping's base (the segment keeps it mapped).
    base: NonNull<u8>,
    capacity: usize,
    maxsize: u64,
    asymmetric: bool,
    /// A `JoinableQueue`: gets record who took what.
    joinable: bool,
    /// This process's member slot plus one, as last found (checked
    /// against the slot's owner before use); `u32::MAX`: the table was
    /// full, this handle takes untracked until a slot is free.
    member_hint: std::sync::atomic::AtomicU32,
}

// SAFETY: `base` points into the mapping owned by `seg`, which is shared
// memory designed for concurrent use; every shared field is an atomic or is
// written only before publication, and ring bytes are accessed under the
// side's exclusion (see the module docs).
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

/// Which side of the queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SideId {
    Producers,
    Consumers,
}

impl Ring {
    /// A new ring of at least `capacity` bytes holding at most `maxsize`
    /// messages (0: no limit but bytes).
    pub(crate) fn create(
        kind: ObjectKind,
        elem: Elem,
        name: Option<&str>,
        maxsize: usize,
        capacity: usize,
    ) -> Result<Ring, ShmError> {
        if capacity > MAX_CAPACITY {
            return Err(ShmError::TooLarge {
                what: "a queue capacity in bytes",
                requested: capacity as u64,
                max: MAX_CAPACITY as u64,
            });
        }
        let capacity = ring_capacity(capacity);
        let flags = if sys::membarrier_registered() {
            FLAG_ASYMMETRIC
        } else {
            0
        };
        let seg = Segment::create(spec(kind, elem, capacity as u64), name, 0o600, |base| {
            // SAFETY: the segment is fresh, zero-filled (ftruncate), and sized
            // for this layout; nothing else can see it before it is published.
            unsafe {
                MutexCell::init(base.as_ptr().add(PRODUCER_CELL).cast(), SIDE_LOCK)?;
                MutexCell::init(base.as_ptr().add(CONSUMER_CELL).cast(), SIDE_LOCK)?;
                let control = base.as_ptr().add(CONTROL).cast::<Control>();
                std::ptr::addr_of_mut!((*control).capacity).write(capacity as u64);
                std::ptr::addr_of_mut!((*control).maxsize).write(maxsize as u64);
                std::ptr::addr_of_mut!((*control).flags).write(flags);
            }
            Ok(())
        })?;
        Ring::from_segment(seg)
    }

    /// Wraps an attached segment, checking the control block against the
    /// header.
    pub(crate) fn from_segment(seg: Segment) -> Result<Ring, ShmError> {
        let base = seg.base();
        // SAFETY: the segment is at least `RING` bytes (its spec), and the
        // control block is written before publication and never again
        // (except `closed`, an atomic).
        let control = unsafe { base.add(CONTROL).cast::<Control>().as_ref() };
        let cap = control.capacity;
        if cap != seg.object_len()
            || !cap.is_power_of_two()
            || (cap as usize) < MIN_CAPACITY
            || (cap as usize) > MAX_CAPACITY
        {
            return Err(ShmError::Corrupt(format!(
                "queue capacity {cap} in a segment of {}",
                seg.object_len()
            )));
        }
        let asymmetric = control.flags & FLAG_ASYMMETRIC != 0;
        if asymmetric && !sys::membarrier_registered() {
            return Err(ShmError::MembarrierUnavailable);
        }
        Ok(Ring {
            base,
            capacity: cap as usize,
            maxsize: control.maxsize,
            asymmetric,
            joinable: seg.header().kind == ObjectKind::JoinableQueue as u32,
            member_hint: std::sync::atomic::AtomicU32::new(0),
            seg,
        })
    }

    /// Why every operation fails from now on, when another process
    /// truncated the segment (whatever the operation did, it did on zeros).
    #[inline(always)]
    pub(super) fn truncated(&self) -> Option<String> {
        self.seg.truncated().then(|| TRUNCATED.to_string())
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    pub(crate) fn segment_mut(&mut self) -> &mut Segment {
        &mut self.seg
    }

    /// The block at `offset`.
    fn at<T>(&self, offset: usize) -> &T {
        // SAFETY: every caller passes one of the layout's offsets, checked
        // against the segment's size on attach; those blocks hold atomics
        // (or a mutex designed for sharing), initialised before publication.
        unsafe { self.base.add(offset).cast::<T>().as_ref() }
    }

    fn control(&self) -> &Control {
        self.at(CONTROL)
    }

    fn cell(&self, side: SideId) -> &MutexCell {
        self.at(match side {
            SideId::Producers => PRODUCER_CELL,
            SideId::Consumers => CONSUMER_CELL,
        })
    }

    fn lease(&self, side: SideId) -> &Lease {
        self.at(match side {
            SideId::Producers => PRODUCER_LEASE,
            SideId::Consumers => CONSUMER_LEASE,
        })
    }

    fn commit(&self, side: SideId) -> &Commit {
        self.at(match side {
            SideId::Producers => PRODUCER_COMMIT,
            SideId::Consumers => CONSUMER_COMMIT,
        })
    }

    fn not_empty(&self) -> &WaitWord {
        self.at(NOT_EMPTY)
    }

    fn not_full(&self) -> &WaitWord {
        self.at(NOT_FULL)
    }

    fn join_block(&self) -> &Join {
        self.at(JOIN)
    }

    /// Lease slot `index` (taken modulo [`SLOTS`]) of `side`.
    fn slot(&self, side: SideId, index: usize) -> &Slot {
        let table = match side {
            SideId::Producers => PRODUCER_SLOTS,
            SideId::Consumers => CONSUMER_SLOTS,
        };
        self.at(table + (index % SLOTS) * 64)
    }

    /// Ring capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The message limit (0: none).
    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize as usize
    }

    /// The largest message that fits.
    pub(crate) fn max_message(&self) -> usize {
        (self.capacity - RECORD_HEADER).min(u32::MAX as usize)
    }

    /// Messages in the queue now.
    pub(crate) fn len(&self) -> usize {
        let head = self.commit(SideId::Consumers).seq.load(Ordering::Acquire);
        let tail = self.commit(SideId::Producers).seq.load(Ordering::Acquire);
        tail.saturating_sub(head) as usize
    }

    /// Whether `bytes` more bytes of records and `items` more messages fit
    /// now.
    fn has_room(&self, bytes: u64, items: u64) -> bool {
        let tail = self.commit(SideId::Producers).pos.load(Ordering::Acquire);
        let head = self.commit(SideId::Consumers).pos.load(Ordering::Acquire);
        // Saturating: the positions and counts are other processes' words.
        (self.maxsize == 0 || (self.len() as u64).saturating_add(items) <= self.maxsize)
            && tail.saturating_sub(head).saturating_add(bytes) <= self.capacity as u64
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.control().closed.load(Ordering::SeqCst) != 0
    }

    /// Closes the queue: puts fail from now on, gets drain what is left.
    pub(crate) fn close(&self) {
        self.control().closed.store(1, Ordering::SeqCst);
        for w in [self.not_empty(), self.not_full()] {
            w.epoch.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&w.epoch, u32::MAX);
        }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the ring starts at `RING`, inside the segment.
        unsafe { self.base.as_ptr().add(RING) }
    }

    /// The light half of an asymmetric barrier (see the module docs).
    #[inline(always)]
    fn light_barrier(&self) {
        if self.asymmetric {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The heavy half.
    fn heavy_barrier(&self) -> io::Result<()> {
        if self.asymmetric {
            sys::heavy_barrier()
        } else {
            fence(Ordering::SeqCst);
            Ok(())
        }
    }
}

impl<G> From<io::Error> for PutFail<G> {
    fn from(e: io::Error) -> PutFail<G> {
        PutFail::Io(e)
    }
}

impl<G> From<EnterFail> for PutFail<G> {
    fn from(e: EnterFail) -> PutFail<G> {
        match e {
            EnterFail::Io(e) => PutFail::Io(e),
            EnterFail::Corrupt(why) => PutFail::Corrupt(why),
            // Callers handle a busy side themselves (it means giving up).
            EnterFail::Busy => PutFail::Io(io::Error::from(io::ErrorKind::TimedOut)),
            // No caller code runs inside a producers' section (messages are
            // encoded before it is entered), so a put never finds itself
            // inside one; were it to, it is refused like any entry the OS
            // refuses.
            EnterFail::Reentered => PutFail::Io(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the queue's producers' side was entered twice by one thread",
            )),
        }
    }
}

impl<G> From<io::Error> for GetFail<G> {
    fn from(e: io::Error) -> GetFail<G> {
        GetFail::Io(e)
    }
}

impl<G> From<EnterFail> for GetFail<G> {
    fn from(e: EnterFail) -> GetFail<G> {
        match e {
            EnterFail::Io(e) => GetFail::Io(e),
            EnterFail::Corrupt(why) => GetFail::Corrupt(why),
            // Callers handle a busy side themselves (it means giving up).
            EnterFail::Busy => GetFail::Io(io::Error::from(io::ErrorKind::TimedOut)),
            EnterFail::Reentered => GetFail::Reentered,
        }
    }
}

/// Messages queued in the queue stored in `file`, read from the file
/// without attaching (for [`admin`](crate::admin)): the producers' `seq`
/// minus the consumers'.
pub(crate) fn depth_in(file: &std::fs::File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut seq = [0u8; 8];
    file.read_exact_at(&mut seq, PRODUCER_COMMIT as u64)?;
    let put = u64::from_le_bytes(seq);
    file.read_exact_at(&mut seq, CONSUMER_COMMIT as u64)?;
    Ok(put.saturating_sub(u64::from_le_bytes(seq)))
}
