//! The shared-memory message ring behind every mpkit queue.
//!
//! # Layout
//!
//! After the 64-byte segment header (kind `Queue`, `JoinableQueue` or
//! `SimpleQueue`; `len` = ring capacity in bytes), each group of fields
//! has a 128-byte block of its own (a cache line and the neighbour that
//! Intel's adjacent-line prefetcher pulls in with it), so that what
//! producers write and what consumers write never share a line:
//!
//! | offset | what | written by |
//! |---|---|---|
//! | 64 | control: `capacity: u64`, `maxsize: u64`, `closed: u32`, `flags: u32` (bit 0: asymmetric barriers) | creator, `close` |
//! | 128 | producers' lock cell (error-checking robust mutex) | producers |
//! | 256 | consumers' lock cell | consumers |
//! | 384 | producers' commit: `seq: u64` (messages ever put), `pos: u64` (bytes ever put) | producers |
//! | 512 | producers' lease (below) | producers |
//! | 640 | consumers' commit: `seq: u64` (messages ever taken), `pos: u64` (bytes) | consumers |
//! | 768 | consumers' lease | consumers |
//! | 896 | not-empty wait word: `epoch: u32` (futex), `armed: u32` | both |
//! | 1024 | not-full wait word | both |
//! | 1152 | join: `done: u64`, `epoch: u32` (futex), `waiters: u32` (joinable only) | consumers, joiners |
//! | 2048 | producers' lease slots: 16 × 64 bytes | producers |
//! | 3072 | consumers' lease slots | consumers |
//! | 4096 | the ring: `capacity` bytes (a power of two, at least 64) | |
//!
//! A lease block is `holder: u64` (the thread biased to this side: its
//! token, process nonce << 32 | thread id, with the number of its slot plus
//! one in bits 24-31; 0 for none), `revoke: u32`, `revocations: u32`,
//! `cached_seq: u64` and `cached_pos: u64` (the other side's commit as last
//! read), `streak_tid: u64`, `streak: u32`. A lease slot is `owner: u64` (a
//! thread token; 0: free), `busy: u32`, `pid: u32`, `start: u64` (the
//! owner's process start time).
//!
//! Positions are monotonic counts (`pos % capacity` is the offset in the
//! ring). A record starts on a 64-byte boundary: a 16-byte header `len:
//! u32`, `tag: u32` (`pos / 64`, truncated), `seq: u64` (its message
//! number), then `len` bytes, the whole padded to a multiple of 64. Whole
//! cache lines per record keep a producer writing one record off the line a
//! consumer is reading the previous one from. A record may wrap around the
//! end of the ring; its header never does.
//!
//! # Exclusion: a lease with a lock behind it
//!
//! Each side (producers, consumers) is one critical section at a time.
//! The common case, one thread doing all of a side's work, pays no atomic
//! read-modify-write and no fence: the side is *leased* (biased) to that
//! thread, which enters by storing `busy = 1` in its slot, re-reading
//! `holder` and `revoke`, and leaves by storing `busy = 0`. Any other thread takes the
//! side's robust mutex instead; if the side is leased to someone else, it
//! revokes the lease: it stores `revoke = 1`, runs the heavy half of an
//! asymmetric barrier (`membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which
//! makes every running thread of every registered process execute a full
//! fence), then waits for the holder's `busy == 0` and clears `holder`.
//! Either the holder's `busy = 1` is visible to the revoker after the
//! barrier (it waits for the section to end), or the holder's re-read sees
//! `revoke` (it steps out and takes the mutex too): the classic Dekker
//! pair, with the fence moved from the hot side to the rare one. A thread
//! that takes the mutex for the same side many times in a row (64, doubling
//! with every revocation, up to 64 Ki) is given the lease, and a slot: the
//! one it already owns, else a free one or one whose thread is gone (with
//! all 16 owned by live threads, it stays on the mutex).
//!
//! Each thread has a `busy` flag of its own because a thread may act on a
//! stale `holder`: it read its own token, was preempted, and meanwhile the
//! lease was revoked and granted to another thread. Its `busy = 1` and the
//! `busy = 0` of its step-out then land late; on one shared flag they
//! would clear the new holder's, and that holder's revoker would go in
//! beside it. In its own slot they touch nothing anyone else reads. Where `membarrier` is not
//! available, the queue is created in symmetric mode and both halves are
//! `SeqCst` fences (slower, same protocol).
//!
//! Waking works the same way: a sleeper reads the wait word's `epoch`,
//! *arms* the word (`armed = epoch + 1`), runs the heavy barrier, checks
//! once more, then sleeps on `epoch`. A side that commits reads `armed`
//! after a light barrier and, only when it equals `epoch + 1`, moves the
//! epoch on (compare-and-swap) and wakes the futex. A wake thus disarms the
//! word: commits made while woken sleepers are still on their way skip the
//! system call, and a late wake for an old commit cannot swallow a newer
//! sleeper's (it moves the epoch, and that sleeper looks again).
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
//!   died, or a revoker finds the lease holder dead) finds the header at
//!   `pos` naming message `seq - 1` at that very position, and moves `pos`
//!   past it;
//!   consumers never look at the producers' `pos`;
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
//! For a `JoinableQueue`, the number of unfinished tasks is `seq - done`:
//! it is updated by the same commit store as the message itself, so no
//! crash can make it disagree with what is in the queue.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence, fence};
use std::time::{Duration, Instant};

use crate::shm::{Elem, HEADER_SIZE, ObjectKind, Segment, ShmError, Spec};
use crate::sync::cell::{CELL_SIZE, MutexCell};
use crate::sys::{self, Deadline, FutexWait};

const CONTROL: usize = HEADER_SIZE;
const PRODUCER_CELL: usize = 128;
const CONSUMER_CELL: usize = 256;
const PRODUCER_COMMIT: usize = 384;
const PRODUCER_LEASE: usize = 512;
const CONSUMER_COMMIT: usize = 640;
const CONSUMER_LEASE: usize = 768;
const NOT_EMPTY: usize = 896;
const NOT_FULL: usize = 1024;
const JOIN: usize = 1152;
const PRODUCER_SLOTS: usize = 2048;
const CONSUMER_SLOTS: usize = 3072;
const RING: usize = 4096;
/// Lease slots per side (see [`Slot`]), 64 bytes each.
const SLOTS: usize = 16;
/// Where a lease word keeps its slot number (plus one): above the thread
/// id, which Linux keeps below 2^22, and below the process nonce.
const SLOT_SHIFT: u32 = 24;
const SLOT_MASK: u64 = 0xff << SLOT_SHIFT;
/// Where the producers' and consumers' `seq` counters lie (for `mpkit ls`,
/// which reads them from the file).
pub(crate) const SEQ_OFFSETS: (u64, u64) = (PRODUCER_COMMIT as u64, CONSUMER_COMMIT as u64);
/// Record header: `len: u32`, `tag: u32`, `seq: u64`.
const RECORD_HEADER: usize = 16;
/// Records start on cache lines.
const RECORD_ALIGN: usize = 64;
/// The smallest ring.
const MIN_CAPACITY: usize = 64;
/// The largest ring: the header's `tag` (`pos / 64` as a `u32`) must tell
/// apart two positions one capacity apart.
const MAX_CAPACITY: usize = 1 << 36;
/// How long a waiter spins before sleeping (on machines with several CPUs).
const SPIN: Duration = Duration::from_micros(20);
/// How long a producer facing a full ring first waits for room for a batch
/// (see [`Ring::sleep`]), and how much room that is: [`PATIENT_BYTES`] (at
/// most a quarter of the ring) and a quarter of `maxsize` messages. The wait
/// ends early on a deadline and never outlasts `PATIENCE`, so a put still
/// goes in once one message fits.
const PATIENCE: Duration = Duration::from_micros(10);
/// The batch a patient producer waits for room for, in bytes.
const PATIENT_BYTES: u64 = 64 << 10;
/// How often a patient wait polls.
const PATIENT_POLL: Duration = Duration::from_micros(1);
/// How far ahead of the record it copies a consumer asks for the lines it
/// will read next. Each record's header names where the next one starts,
/// so without this every message would wait for a cache miss of its own.
const PREFETCH_AHEAD: u64 = 512;
/// Consecutive mutex entries by one thread that earn it the lease.
const LEASE_STREAK: u32 = 64;
thread_local! {
    /// Whether this thread has woken a peer or slept since its last spin
    /// began (see [`Ring::sleep`]).
    static SWITCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Control flag: the queue uses asymmetric barriers (`membarrier`).
const FLAG_ASYMMETRIC: u32 = 1;

const _: () =
    assert!(CELL_SIZE <= 128 && CONTROL + std::mem::size_of::<Control>() <= PRODUCER_CELL);
const _: () = assert!(std::mem::size_of::<Lease>() <= 128);
const _: () = assert!(JOIN + std::mem::size_of::<Join>() <= PRODUCER_SLOTS);
const _: () = assert!(std::mem::size_of::<Slot>() <= 64 && SLOTS < 0xff);
const _: () = assert!(PRODUCER_SLOTS + SLOTS * 64 <= CONSUMER_SLOTS);
const _: () = assert!(CONSUMER_SLOTS + SLOTS * 64 <= RING);

#[repr(C)]
struct Control {
    capacity: u64,
    maxsize: u64,
    closed: AtomicU32,
    flags: u32,
}

/// A side's commit point (see the module docs).
#[repr(C)]
struct Commit {
    seq: AtomicU64,
    pos: AtomicU64,
}

/// A side's lease (see the module docs).
#[repr(C)]
struct Lease {
    /// The holder's thread token with its slot number (plus one) at
    /// [`SLOT_SHIFT`]; 0: none.
    holder: AtomicU64,
    revoke: AtomicU32,
    revocations: AtomicU32,
    cached_seq: AtomicU64,
    cached_pos: AtomicU64,
    streak_tid: AtomicU64,
    streak: AtomicU32,
}

/// A lease slot: where one thread says it is inside a side's section
/// while it holds the lease. A slot stays its thread's until that thread
/// is gone, so a thread acting on a stale view of the lease only ever
/// writes its own `busy`, never the flag a later holder's revoker reads.
#[repr(C)]
struct Slot {
    /// The thread token of the owner; 0: free.
    owner: AtomicU64,
    /// 1 while the owner is inside a leased section.
    busy: AtomicU32,
    /// The owner's process, and its start time (to tell a reused pid).
    pid: AtomicU32,
    start: AtomicU64,
}

#[repr(C)]
struct WaitWord {
    /// Moves on with every wake (the futex word).
    epoch: AtomicU32,
    /// One more than the latest epoch a sleeper is about to sleep on
    /// (0: never armed); a commit wakes only while it equals `epoch + 1`.
    armed: AtomicU32,
}

#[repr(C)]
struct Join {
    done: AtomicU64,
    epoch: AtomicU32,
    waiters: AtomicU32,
}

/// Why a put did not happen.
#[derive(Debug)]
pub(crate) enum PutFail {
    Full,
    Timeout,
    Closed,
    TooLarge { size: usize, max: usize },
    Io(io::Error),
}

/// Why a get did not happen.
#[derive(Debug)]
pub(crate) enum GetFail {
    Empty,
    Timeout,
    Closed,
    Corrupt(String),
    Io(io::Error),
}

/// How long to wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until the deadline (`None`: forever).
    Until(Deadline),
}

impl Wait {
    pub(crate) fn from_timeout(timeout: Option<Duration>) -> Wait {
        Wait::Until(sys::deadline_after(timeout))
    }
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
}

// SAFETY: `base` points into the mapping owned by `seg`, which is shared
// memory designed for concurrent use; every shared field is an atomic or is
// written only before publication, and ring bytes are accessed under the
// side's exclusion (see the module docs).
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

/// Rounds a requested byte capacity to the ring's actual one.
pub(crate) fn ring_capacity(requested: usize) -> usize {
    requested.max(MIN_CAPACITY).next_power_of_two()
}

/// The segment layout of a queue.
pub(crate) fn spec(kind: ObjectKind, elem: Elem, capacity: u64) -> Spec {
    Spec {
        kind,
        elem,
        len: capacity,
        size: RING.saturating_add(capacity as usize),
    }
}

fn record_size(len: usize) -> u64 {
    (RECORD_HEADER + len).next_multiple_of(RECORD_ALIGN) as u64
}

fn tag(pos: u64) -> u32 {
    (pos / RECORD_ALIGN as u64) as u32
}

/// The slot number a lease word names, if it names a valid one.
fn slot_of(word: u64) -> Option<usize> {
    let n = ((word & SLOT_MASK) >> SLOT_SHIFT) as usize;
    (1..=SLOTS).contains(&n).then(|| n - 1)
}

/// Which side of the queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SideId {
    Producers,
    Consumers,
}

/// Exclusive access to one side, by lease or by mutex; left on drop
/// (also when a sink panics).
enum Section<'a> {
    Leased(#[allow(dead_code)] Busy<'a>),
    Locked(#[allow(dead_code)] Locked<'a>),
}

/// A section entered through the side's mutex.
struct Locked<'a> {
    ring: &'a Ring,
    side: SideId,
    me: u64,
}

/// A leased section: leaving it is one store.
struct Busy<'a>(&'a AtomicU32);

impl Drop for Busy<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.ring.maybe_lease(self.side, self.me);
        let _ = self.ring.cell(self.side).release();
    }
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
            return Err(ShmError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "queue capacity above 64 GiB",
            )));
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
                MutexCell::init(base.as_ptr().add(PRODUCER_CELL).cast(), false)?;
                MutexCell::init(base.as_ptr().add(CONSUMER_CELL).cast(), false)?;
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
        if cap != seg.header().len
            || !cap.is_power_of_two()
            || (cap as usize) < MIN_CAPACITY
            || (cap as usize) > MAX_CAPACITY
        {
            return Err(ShmError::Corrupt(format!(
                "queue capacity {cap} in a segment of {}",
                seg.header().len
            )));
        }
        let asymmetric = control.flags & FLAG_ASYMMETRIC != 0;
        if asymmetric && !sys::membarrier_registered() {
            return Err(ShmError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "the queue's creator uses membarrier(2) barriers, which this process cannot \
                 (seccomp, or MPKIT_NO_MEMBARRIER set here but not there)",
            )));
        }
        Ok(Ring {
            base,
            capacity: cap as usize,
            maxsize: control.maxsize,
            asymmetric,
            seg,
        })
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
        (self.maxsize == 0 || self.len() as u64 + items <= self.maxsize)
            && tail.saturating_sub(head) + bytes <= self.capacity as u64
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

    // ----- exclusion ---------------------------------------------------------

    /// Enters `side`'s critical section: through the lease when this thread
    /// holds it, else through the mutex.
    #[inline]
    fn enter(&self, side: SideId) -> io::Result<Section<'_>> {
        match self.enter_leased(side) {
            Some(busy) => Ok(Section::Leased(busy)),
            None => self.enter_locked(side).map(Section::Locked),
        }
    }

    #[cold]
    fn enter_locked(&self, side: SideId) -> io::Result<Locked<'_>> {
        let me = sys::thread_token();
        let owner_died = self
            .cell(side)
            .acquire(true, None)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // From here on, dropping the section releases the mutex.
        let section = Locked {
            ring: self,
            side,
            me,
        };
        let lease = self.lease(side);
        let holder = lease.holder.load(Ordering::Acquire);
        if holder & !SLOT_MASK == me
            && slot_of(holder).is_some_and(|i| self.slot(side, i).busy.load(Ordering::Relaxed) != 0)
        {
            // This thread is inside a leased section of this side already:
            // a sink (a decoder) used the queue it is being called from.
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the queue was used from inside one of its own operations (by a decoder?)",
            ));
        }
        let mut holder_died = false;
        if holder != 0 && holder & !SLOT_MASK != me {
            holder_died = self.revoke(side, holder)?;
        } else if lease.revoke.load(Ordering::Relaxed) != 0 {
            // A revoker died halfway (the mutex was robust): finish for it.
            lease.revoke.store(0, Ordering::Relaxed);
        }
        // Only a member that died inside its section can leave a commit
        // halfway.
        if owner_died || holder_died {
            self.repair(side);
        }
        Ok(section)
    }

    /// Takes the lease back from its holder, named by the lease word
    /// `holder` (the caller holds the mutex). True when the holder had died
    /// inside its section.
    #[cold]
    fn revoke(&self, side: SideId, holder: u64) -> io::Result<bool> {
        let lease = self.lease(side);
        lease.revoke.store(1, Ordering::SeqCst);
        if let Err(e) = self.heavy_barrier() {
            lease.revoke.store(0, Ordering::SeqCst);
            return Err(e);
        }
        let mut died = false;
        // A word without a valid slot was never written by a grant: there
        // is no section to wait for.
        if let Some(slot) = slot_of(holder).map(|i| self.slot(side, i)) {
            let start = Instant::now();
            let mut nap = Duration::from_micros(20);
            let mut i = 0u32;
            while slot.busy.load(Ordering::Acquire) != 0 {
                // The holder is inside a section: usually for nanoseconds.
                i += 1;
                if start.elapsed() < SPIN && sys::several_cpus() {
                    if i % 64 == 0 {
                        sys::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                let pid = slot.pid.load(Ordering::Relaxed) as i32;
                let started = slot.start.load(Ordering::Relaxed);
                let tid = slot.owner.load(Ordering::Relaxed) as u32 as i32;
                if !sys::thread_alive(pid, started, tid) {
                    died = true; // killed inside its section: nothing to wait for
                    break;
                }
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(1));
            }
        }
        lease.holder.store(0, Ordering::Release);
        lease.revoke.store(0, Ordering::Release);
        let r = lease.revocations.load(Ordering::Relaxed);
        lease
            .revocations
            .store(r.saturating_add(1), Ordering::Relaxed);
        lease.streak.store(0, Ordering::Relaxed);
        Ok(died)
    }

    /// Counts a mutex entry by `me`, leasing `side` to it after a long
    /// enough streak (the caller still holds the mutex).
    fn maybe_lease(&self, side: SideId, me: u64) {
        let lease = self.lease(side);
        let holder = lease.holder.load(Ordering::Relaxed);
        if holder & !SLOT_MASK == me {
            return;
        }
        let streak = if lease.streak_tid.load(Ordering::Relaxed) == me {
            lease.streak.load(Ordering::Relaxed).saturating_add(1)
        } else {
            lease.streak_tid.store(me, Ordering::Relaxed);
            1
        };
        lease.streak.store(streak, Ordering::Relaxed);
        let needed = LEASE_STREAK << lease.revocations.load(Ordering::Relaxed).min(10);
        // A thread id too large to leave room for the slot number (Linux
        // keeps them below 2^22) just never gets the lease.
        if streak < needed || holder != 0 || me & SLOT_MASK != 0 {
            return;
        }
        // Revokers must be able to tell whether we died mid-section.
        let Some(started) = sys::self_start_time() else {
            return;
        };
        let Some(index) = self.claim_slot(side, me, started) else {
            // Every slot belongs to a live thread: stay on the mutex, and
            // look again only after another full streak (a look reads
            // /proc for each slot).
            lease.streak.store(0, Ordering::Relaxed);
            return;
        };
        lease
            .holder
            .store(me | ((index as u64 + 1) << SLOT_SHIFT), Ordering::Release);
    }

    /// The lease slot of thread `me` (started at `started`): the one it
    /// already owns, else a free one or one whose owner is gone, made its
    /// own. The caller holds `side`'s mutex, so it is the only one writing
    /// slot owners; a thread that is gone writes nothing more.
    fn claim_slot(&self, side: SideId, me: u64, started: u64) -> Option<usize> {
        if let Some(i) =
            (0..SLOTS).find(|&i| self.slot(side, i).owner.load(Ordering::Relaxed) == me)
        {
            return Some(i);
        }
        let free = (0..SLOTS).find(|&i| {
            let slot = self.slot(side, i);
            let owner = slot.owner.load(Ordering::Acquire);
            owner == 0
                || !sys::thread_alive(
                    slot.pid.load(Ordering::Relaxed) as i32,
                    slot.start.load(Ordering::Relaxed),
                    owner as u32 as i32,
                )
        })?;
        let slot = self.slot(side, free);
        // The owner last: a claimant killed halfway leaves a free slot or
        // one whose owner is gone.
        slot.busy.store(0, Ordering::Relaxed);
        slot.pid.store(sys::getpid() as u32, Ordering::Relaxed);
        slot.start.store(started, Ordering::Relaxed);
        slot.owner.store(me, Ordering::Release);
        Some(free)
    }

    /// Finishes a commit a dead member of `side` left halfway: `seq` stored,
    /// `pos` not yet (the caller has the side to itself).
    fn repair(&self, side: SideId) {
        let commit = self.commit(side);
        let seq = commit.seq.load(Ordering::Acquire);
        let pos = commit.pos.load(Ordering::Acquire);
        if seq == 0 {
            return;
        }
        let (len, t, s) = self.header_at(pos);
        if s == seq - 1 && t == tag(pos) && len <= self.max_message() {
            commit.pos.store(pos + record_size(len), Ordering::Release);
        }
    }

    /// The record header at `pos`: `(len, tag, seq)`.
    fn header_at(&self, pos: u64) -> (usize, u32, u64) {
        let off = (pos as usize) & (self.capacity - 1);
        // SAFETY: records start on 64-byte boundaries, so the 16-byte header
        // lies inside the ring, 8-aligned; it is read atomically because a
        // producer may be writing it (then it names a newer message).
        unsafe {
            let p = self.data().add(off);
            let len = (*p.cast::<AtomicU32>()).load(Ordering::Relaxed);
            let t = (*p.add(4).cast::<AtomicU32>()).load(Ordering::Relaxed);
            let s = (*p.add(8).cast::<AtomicU64>()).load(Ordering::Relaxed);
            (len as usize, t, s)
        }
    }

    // ----- the single-message fast paths --------------------------------------

    /// Enters `side` through its lease, if this thread holds it: the
    /// returned guard leaves on drop (also when a sink panics). `None`:
    /// take the general path.
    #[inline(always)]
    fn enter_leased(&self, side: SideId) -> Option<Busy<'_>> {
        let lease = self.lease(side);
        let me = sys::thread_token();
        let word = lease.holder.load(Ordering::Relaxed);
        if word & !SLOT_MASK != me {
            return None;
        }
        // A word naming this thread names its own slot (grants write no
        // other), and the slot stays its own while it lives: even if the
        // word is stale by now, this store touches no one else's flag.
        self.enter_as(side, word)
    }

    /// The rest of [`enter_leased`](Self::enter_leased), once `word` (this
    /// thread's token and slot) has been read from the lease.
    #[inline(always)]
    fn enter_as(&self, side: SideId, word: u64) -> Option<Busy<'_>> {
        let lease = self.lease(side);
        let slot = self.slot(side, slot_of(word)?);
        if slot.busy.load(Ordering::Relaxed) != 0 {
            // Already inside (a decoder that uses the same queue): the
            // inner exit would end the outer section early.
            // `enter_locked` reports the re-entry instead.
            return None;
        }
        slot.busy.store(1, Ordering::Relaxed);
        let busy = Busy(&slot.busy);
        self.light_barrier();
        (lease.revoke.load(Ordering::Acquire) == 0 && lease.holder.load(Ordering::Acquire) == word)
            .then_some(busy)
    }

    /// Whether a record of `size` bytes fits at `tail` as message `seq`:
    /// judged from the producers' cached view of the consumers first, then
    /// (one cache miss) from where they really are, which is cached for
    /// next time. The caller has the producers' side.
    #[inline(always)]
    fn room(&self, tail: u64, seq: u64, size: u64) -> bool {
        let lease = self.lease(SideId::Producers);
        let cap = self.capacity as u64;
        let fits = |head: u64, head_seq: u64| {
            tail + size <= head + cap && (self.maxsize == 0 || seq - head_seq < self.maxsize)
        };
        if fits(
            lease.cached_pos.load(Ordering::Relaxed),
            lease.cached_seq.load(Ordering::Relaxed),
        ) {
            return true;
        }
        let consumers = self.commit(SideId::Consumers);
        let head = consumers.pos.load(Ordering::Acquire);
        let head_seq = consumers.seq.load(Ordering::Acquire);
        lease.cached_pos.store(head, Ordering::Relaxed);
        lease.cached_seq.store(head_seq, Ordering::Relaxed);
        fits(head, head_seq)
    }

    /// The producers' `seq` as the consumers know it: the cached value while
    /// it is ahead of `seq`, else re-read (and cached). The caller has the
    /// consumers' side.
    #[inline(always)]
    fn published(&self, seq: u64) -> u64 {
        let lease = self.lease(SideId::Consumers);
        let cached = lease.cached_seq.load(Ordering::Relaxed);
        if cached > seq {
            return cached;
        }
        self.reload_published()
    }

    /// The producers' `seq`, read now (and cached for
    /// [`published`](Self::published)). The caller has the consumers' side.
    fn reload_published(&self) -> u64 {
        let tail_seq = self.commit(SideId::Producers).seq.load(Ordering::Acquire);
        self.lease(SideId::Consumers)
            .cached_seq
            .store(tail_seq, Ordering::Relaxed);
        tail_seq
    }

    /// Puts one message, waiting per `wait` while it does not fit. The
    /// common case (this thread holds the producers' lease, the message
    /// fits without wrapping) is a handful of loads and stores and one copy.
    #[inline]
    pub(crate) fn put_one(&self, msg: &[u8], wait: Wait) -> Result<(), PutFail> {
        if self.try_put_leased(msg) {
            return Ok(());
        }
        self.put(&[msg], wait).map(|_| ())
    }

    #[inline(always)]
    fn try_put_leased(&self, msg: &[u8]) -> bool {
        if msg.len() > self.max_message() {
            return false;
        }
        let Some(busy) = self.enter_leased(SideId::Producers) else {
            return false;
        };
        if self.is_closed() {
            return false;
        }
        let commit = self.commit(SideId::Producers);
        let size = record_size(msg.len());
        let seq = commit.seq.load(Ordering::Relaxed);
        let tail = commit.pos.load(Ordering::Relaxed);
        if !self.room(tail, seq, size) {
            return false;
        }
        // SAFETY: we have the producers' side (leased, `busy` set and the
        // lease re-checked after the barrier) and the space is free.
        unsafe { self.write_record(tail, seq, msg) };
        // The commit point.
        commit.seq.store(seq + 1, Ordering::Release);
        commit.pos.store(tail + size, Ordering::Release);
        drop(busy);
        self.wake(self.not_empty());
        true
    }

    /// Takes one message, passing it to `sink`, waiting per `wait`; the
    /// counterpart of [`put_one`](Self::put_one).
    #[inline]
    pub(crate) fn get_one(&self, wait: Wait, mut sink: impl FnMut(&[u8])) -> Result<(), GetFail> {
        if self.try_get_leased(&mut sink) {
            return Ok(());
        }
        self.get(1, wait, &mut sink).map(|_| ())
    }

    #[inline(always)]
    fn try_get_leased(&self, sink: &mut impl FnMut(&[u8])) -> bool {
        let Some(busy) = self.enter_leased(SideId::Consumers) else {
            return false;
        };
        let commit = self.commit(SideId::Consumers);
        let seq = commit.seq.load(Ordering::Relaxed);
        if self.published(seq) <= seq {
            return false;
        }
        let head = commit.pos.load(Ordering::Relaxed);
        let (len, t, s) = self.header_at(head);
        let cap = self.capacity;
        let off = (head as usize + RECORD_HEADER) & (cap - 1);
        if s != seq || t != tag(head) || off + len > cap {
            // A wrapped body, or a bad header: the general path deals.
            return false;
        }
        let size = record_size(len);
        self.prefetch_after(head, size);
        // SAFETY: published (before the producers' `seq`, read with
        // acquire), in bounds (checked), and stable while we have the side.
        sink(unsafe { std::slice::from_raw_parts(self.data().add(off), len) });
        // The commit point.
        commit.seq.store(seq + 1, Ordering::Release);
        commit.pos.store(head + size, Ordering::Release);
        drop(busy);
        self.wake(self.not_full());
        true
    }

    /// Asks for the lines that the records after the one at `head` (of
    /// `size` bytes) will use, [`PREFETCH_AHEAD`] bytes on: one line per
    /// line of this record, up to two (longer runs are sequential enough
    /// for the hardware prefetcher).
    #[inline(always)]
    fn prefetch_after(&self, head: u64, size: u64) {
        let mask = self.capacity - 1;
        let at = (head + PREFETCH_AHEAD) as usize;
        // SAFETY: the offset is masked into the ring.
        sys::prefetch(unsafe { self.data().add(at & mask) });
        if size > RECORD_ALIGN as u64 {
            // SAFETY: as above.
            sys::prefetch(unsafe { self.data().add((at + RECORD_ALIGN) & mask) });
        }
    }

    // ----- putting -----------------------------------------------------------

    /// Puts messages, in order, as many as fit at once; waits (per `wait`)
    /// while not even the first fits. Returns how many were put.
    #[inline]
    pub(crate) fn put(&self, messages: &[&[u8]], wait: Wait) -> Result<usize, PutFail> {
        let max = self.max_message();
        if let Some(big) = messages.iter().find(|m| m.len() > max) {
            return Err(PutFail::TooLarge {
                size: big.len(),
                max,
            });
        }
        if messages.is_empty() {
            return Ok(0);
        }
        loop {
            if self.is_closed() {
                return Err(PutFail::Closed);
            }
            let put = self.try_put(messages)?;
            if put > 0 {
                return Ok(put);
            }
            let deadline = match wait {
                Wait::No => return Err(PutFail::Full),
                Wait::Until(d) => d,
            };
            // Patient: room for a batch, not just for this message (see
            // `PATIENCE`).
            let size = record_size(messages[0].len());
            let (bytes, items) = (
                size.max(PATIENT_BYTES.min(self.capacity as u64 / 4)),
                (self.maxsize / 4).max(1),
            );
            if !self.sleep(
                self.not_full(),
                deadline,
                || self.is_closed() || self.has_room(size, 1),
                Some(&|| self.is_closed() || self.has_room(bytes, items)),
            )? {
                return Err(PutFail::Timeout);
            }
        }
    }

    /// One attempt with the producers' side entered.
    #[inline]
    fn try_put(&self, messages: &[&[u8]]) -> Result<usize, PutFail> {
        let section = self.enter(SideId::Producers)?;
        let commit = self.commit(SideId::Producers);
        let start_seq = commit.seq.load(Ordering::Relaxed);
        let mut seq = start_seq;
        let mut tail = commit.pos.load(Ordering::Relaxed);
        for m in messages {
            let size = record_size(m.len());
            if !self.room(tail, seq, size) {
                break;
            }
            // SAFETY: we have the producers' side and `tail..tail + size` is
            // free (checked against the consumers' position just above).
            unsafe { self.write_record(tail, seq, m) };
            tail += size;
            seq += 1;
        }
        if seq != start_seq {
            // The commit point: the records become visible, whole.
            commit.seq.store(seq, Ordering::Release);
            commit.pos.store(tail, Ordering::Release);
        }
        drop(section);
        if seq != start_seq {
            self.wake(self.not_empty());
        }
        Ok((seq - start_seq) as usize)
    }

    /// Writes the record of message `seq` at `pos`.
    ///
    /// # Safety
    /// The caller has the producers' side and `pos..pos + record_size` is
    /// free space (beyond the published records, before `head + capacity`).
    #[inline]
    unsafe fn write_record(&self, pos: u64, seq: u64, msg: &[u8]) {
        let cap = self.capacity;
        let off = (pos as usize) & (cap - 1);
        // SAFETY: the header lies inside the ring, 8-aligned (records start
        // on 64-byte boundaries); consumers may read it (atomically) while
        // it is unpublished, never the body.
        unsafe {
            let p = self.data().add(off);
            (*p.cast::<AtomicU32>()).store(msg.len() as u32, Ordering::Relaxed);
            (*p.add(4).cast::<AtomicU32>()).store(tag(pos), Ordering::Relaxed);
            (*p.add(8).cast::<AtomicU64>()).store(seq, Ordering::Relaxed);
            let body = off + RECORD_HEADER;
            if body + msg.len() <= cap {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), self.data().add(body), msg.len());
            } else {
                let first = cap - body;
                std::ptr::copy_nonoverlapping(msg.as_ptr(), self.data().add(body), first);
                std::ptr::copy_nonoverlapping(
                    msg.as_ptr().add(first),
                    self.data(),
                    msg.len() - first,
                );
            }
        }
    }

    // ----- getting -----------------------------------------------------------

    /// Takes up to `max` messages (at least one, waiting per `wait`), passing
    /// each to `sink` in order, with the consumers' side entered (the sink
    /// copies or decodes; it must not block). Returns how many were taken.
    #[inline]
    pub(crate) fn get(
        &self,
        max: usize,
        wait: Wait,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, GetFail> {
        if max == 0 {
            // Nothing asked for: nothing to wait for.
            return Ok(0);
        }
        loop {
            let got = self.try_get(max, sink)?;
            if got > 0 {
                return Ok(got);
            }
            if self.is_closed() && self.len() == 0 {
                return Err(GetFail::Closed);
            }
            let deadline = match wait {
                Wait::No => return Err(GetFail::Empty),
                Wait::Until(d) => d,
            };
            if !self.sleep(
                self.not_empty(),
                deadline,
                || self.len() > 0 || self.is_closed(),
                None,
            )? {
                return Err(GetFail::Timeout);
            }
        }
    }

    /// One attempt with the consumers' side entered.
    #[inline]
    fn try_get(&self, max: usize, sink: &mut dyn FnMut(&[u8])) -> Result<usize, GetFail> {
        let section = self.enter(SideId::Consumers)?;
        let result = self.take(max, sink);
        drop(section);
        if matches!(result, Ok(n) if n > 0) {
            self.wake(self.not_full());
        }
        result
    }

    #[inline]
    fn take(&self, max: usize, sink: &mut dyn FnMut(&[u8])) -> Result<usize, GetFail> {
        let commit = self.commit(SideId::Consumers);
        let mut seq = commit.seq.load(Ordering::Relaxed);
        let mut head = commit.pos.load(Ordering::Relaxed);
        // The cached count first: the loop re-reads the real one when it
        // runs out.
        let mut tail_seq = self
            .lease(SideId::Consumers)
            .cached_seq
            .load(Ordering::Relaxed);
        let cap = self.capacity;
        let mut taken = 0;
        let mut buf = Vec::new();
        // A long batch frees its space as it goes, so producers can refill
        // the ring while it is drained.
        let commit_every = (cap / 4) as u64;
        let mut committed = head;
        while taken < max {
            if seq >= tail_seq {
                // The cached count ran out: messages put since count too.
                tail_seq = self.reload_published();
                if seq >= tail_seq {
                    break;
                }
            }
            let (len, t, s) = self.header_at(head);
            if s != seq || t != tag(head) || len > self.max_message() {
                return Err(GetFail::Corrupt(format!(
                    "message {seq} at byte {head} has a bad header (seq {s}, tag {t}, {len} bytes)"
                )));
            }
            let size = record_size(len);
            self.prefetch_after(head, size);
            let off = (head as usize + RECORD_HEADER) & (cap - 1);
            if off + len <= cap {
                // Contiguous: hand the ring's own bytes to the sink. They are
                // published (before the producers' `seq`, read with acquire)
                // and no producer writes them until our commit.
                // SAFETY: in bounds (checked); stable while we have the side.
                sink(unsafe { std::slice::from_raw_parts(self.data().add(off), len) });
            } else {
                buf.resize(len, 0);
                let first = cap - off;
                // SAFETY: as above; both pieces are inside the ring.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.data().add(off), buf.as_mut_ptr(), first);
                    std::ptr::copy_nonoverlapping(
                        self.data(),
                        buf.as_mut_ptr().add(first),
                        len - first,
                    );
                }
                sink(&buf);
            }
            head += size;
            seq += 1;
            taken += 1;
            if head - committed >= commit_every {
                commit.seq.store(seq, Ordering::Release);
                commit.pos.store(head, Ordering::Release);
                committed = head;
                self.wake(self.not_full());
            }
        }
        if taken > 0 {
            // The commit point: the records are consumed.
            commit.seq.store(seq, Ordering::Release);
            commit.pos.store(head, Ordering::Release);
        }
        Ok(taken)
    }

    // ----- sleeping and waking -----------------------------------------------

    /// Wakes the sleepers of `word`, if there are any (a syscall only then).
    #[inline]
    fn wake(&self, word: &WaitWord) {
        self.light_barrier();
        // Only a sleeper that read the current epoch can block on it: wake
        // when one has armed the word at this epoch. Moving the epoch on
        // disarms it, so until a sleeper arms again later commits skip the
        // system call (a woken process may take tens of µs to run on these
        // VMs).
        let armed = word.armed.load(Ordering::Acquire);
        let epoch = word.epoch.load(Ordering::Relaxed);
        if armed == epoch.wrapping_add(1)
            && word
                .epoch
                .compare_exchange(
                    epoch,
                    epoch.wrapping_add(1),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            sys::futex_wake(&word.epoch, u32::MAX);
            SWITCHED.set(true);
        }
    }

    /// Waits until `ready()` (or a wake on `word`): first a short spin, then
    /// a futex sleep. False when the deadline passed.
    ///
    /// With `patient`, a stronger condition than `ready`, the spin starts
    /// with up to [`PATIENCE`] of waiting for `patient()`, polled once every
    /// [`PATIENT_POLL`]: a producer facing a full ring waits for room for a
    /// batch. Polling for room for one message, it would take the
    /// consumers' commit line away after every message they take, and each
    /// of their commits would wait for the line to come back (a put plus an
    /// allocating get across processes: 70-110 ns a message this way, 19-22
    /// ns with patience).
    fn sleep(
        &self,
        word: &WaitWord,
        deadline: Deadline,
        ready: impl Fn() -> bool,
        patient: Option<&dyn Fn() -> bool>,
    ) -> io::Result<bool> {
        if sys::several_cpus() {
            // The CPU is offered away first when this thread has just woken
            // a peer or been woken, and then with every clock read in the
            // spin (every 64th round: the clock may cost more than the
            // wait): the peer it woke, or the one whose wake brought it
            // here, may be queued on this CPU (waking it on another costs
            // 20 µs on the target VMs), and two spinners may share one CPU.
            // A round trip with both sides asleep took 21 µs yielding every
            // 1024th round, 5.3 µs every 64th, 3.0 µs (a bare futex pair's
            // time) yielding first after a wake; a busy one 0.6 µs in all
            // three. Without a wake there is no one to make way for, and a
            // first yield would only slow a busy stream down.
            if SWITCHED.replace(false) {
                sys::yield_now();
            }
            if let Some(patient) = patient {
                let patience = Instant::now() + PATIENCE;
                let until = deadline.map_or(patience, |d| d.min(patience));
                while !patient() {
                    let next = Instant::now() + PATIENT_POLL;
                    if next > until {
                        break;
                    }
                    while Instant::now() < next {
                        std::hint::spin_loop();
                    }
                }
            }
            let mut until = None;
            let mut i = 0u32;
            loop {
                if ready() {
                    return Ok(true);
                }
                i = i.wrapping_add(1);
                if i % 64 == 0 {
                    let now = Instant::now();
                    let until = *until.get_or_insert_with(|| {
                        let spin = now + SPIN;
                        deadline.map_or(spin, |d| d.min(spin))
                    });
                    if now >= until {
                        break;
                    }
                    sys::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        let epoch = word.epoch.load(Ordering::SeqCst);
        // Arm the word at this epoch (never back: another sleeper may have
        // armed it at a later one), then check once more after the heavy
        // barrier: a commit we do not see is followed by its committer
        // seeing the arming, and moving the epoch past the value we sleep on.
        let want = epoch.wrapping_add(1);
        let mut armed = word.armed.load(Ordering::Relaxed);
        while (want.wrapping_sub(armed) as i32) > 0 {
            match word
                .armed
                .compare_exchange_weak(armed, want, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => armed = now,
            }
        }
        self.heavy_barrier()?;
        if ready() {
            return Ok(true);
        }
        let woken = sys::futex_wait(&word.epoch, epoch, deadline)?;
        SWITCHED.set(true);
        match woken {
            FutexWait::Woken => Ok(true),
            FutexWait::TimedOut => Ok(ready()),
        }
    }

    // ----- JoinableQueue ---------------------------------------------------

    /// Unfinished tasks: messages ever put minus `task_done` calls.
    pub(crate) fn unfinished(&self) -> u64 {
        let done = self.join_block().done.load(Ordering::SeqCst);
        self.commit(SideId::Producers)
            .seq
            .load(Ordering::SeqCst)
            .saturating_sub(done)
    }

    /// Marks one task done; false if there was none unfinished.
    pub(crate) fn task_done(&self) -> bool {
        let ctl = self.join_block();
        let mut done = ctl.done.load(Ordering::SeqCst);
        loop {
            if done >= self.commit(SideId::Producers).seq.load(Ordering::SeqCst) {
                return false;
            }
            match ctl
                .done
                .compare_exchange_weak(done, done + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => done = now,
            }
        }
        if self.unfinished() == 0 && ctl.waiters.load(Ordering::SeqCst) > 0 {
            ctl.epoch.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&ctl.epoch, u32::MAX);
        }
        true
    }

    /// Waits until every task put so far is done; false on timeout.
    pub(crate) fn join(&self, deadline: Deadline) -> Result<bool, io::Error> {
        let ctl = self.join_block();
        loop {
            let epoch = ctl.epoch.load(Ordering::SeqCst);
            if self.unfinished() == 0 {
                return Ok(true);
            }
            ctl.waiters.fetch_add(1, Ordering::SeqCst);
            let r = if self.unfinished() == 0 {
                Ok(FutexWait::Woken)
            } else {
                sys::futex_wait(&ctl.epoch, epoch, deadline)
            };
            ctl.waiters.fetch_sub(1, Ordering::SeqCst);
            if r? == FutexWait::TimedOut {
                return Ok(self.unfinished() == 0);
            }
        }
    }
}

impl From<io::Error> for PutFail {
    fn from(e: io::Error) -> PutFail {
        PutFail::Io(e)
    }
}

impl From<io::Error> for GetFail {
    fn from(e: io::Error) -> GetFail {
        GetFail::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn ring() -> Ring {
        Ring::create(ObjectKind::Queue, super::super::bytes_elem(), None, 0, 4096).unwrap()
    }

    /// Takes `side`'s mutex until this thread is granted the lease (the
    /// streak a busy thread builds up); the lease word, if it was granted.
    fn try_lease(ring: &Ring, side: SideId) -> Option<u64> {
        let me = sys::thread_token();
        for _ in 0..=LEASE_STREAK {
            let section = ring.enter_locked(side).unwrap();
            // Streaks of 64, not 64 Ki after many handovers.
            ring.lease(side).revocations.store(0, Ordering::Relaxed);
            drop(section);
            let word = ring.lease(side).holder.load(Ordering::Relaxed);
            if word & !SLOT_MASK == me {
                return Some(word);
            }
        }
        None
    }

    fn lease_to_me(ring: &Ring, side: SideId) -> u64 {
        try_lease(ring, side).expect("a lease after a full streak")
    }

    fn busy(ring: &Ring, side: SideId, word: u64) -> u32 {
        ring.slot(side, slot_of(word).unwrap())
            .busy
            .load(Ordering::SeqCst)
    }

    /// A thread reads its own token from the lease and is preempted; its
    /// lease is revoked and granted to B, who enters. The stale thread's
    /// `busy = 1` and step-out `busy = 0` land now: they must not clear
    /// B's flag, and a revoker must still wait for B to leave. (With one
    /// `busy` per side they did, and the revoker went in beside B.)
    #[test]
    fn a_stale_lease_check_leaves_the_new_holders_flag_alone() {
        let ring = &ring();
        let side = SideId::Producers;
        std::thread::scope(|s| {
            let (to_a, a_hears) = mpsc::channel::<()>();
            let (to_b, b_hears) = mpsc::channel::<u64>();
            let a = s.spawn(move || {
                let stale = lease_to_me(ring, side);
                to_b.send(stale).unwrap();
                a_hears.recv().unwrap(); // B holds the lease and is inside
                assert!(
                    ring.enter_as(side, stale).is_none(),
                    "a revoked lease let A in"
                );
                to_b.send(0).unwrap();
                // A as a revoker: it may only get in once B is out.
                let section = ring.enter_locked(side).unwrap();
                to_b.send(1).unwrap();
                drop(section);
            });
            let stale = b_hears.recv().unwrap();
            let word = lease_to_me(ring, side);
            assert_ne!(slot_of(word), slot_of(stale), "two threads share a slot");
            let inside = ring.enter_leased(side).expect("B holds the lease");
            assert_eq!(busy(ring, side, word), 1);
            to_a.send(()).unwrap();
            assert_eq!(b_hears.recv().unwrap(), 0);
            assert_eq!(busy(ring, side, word), 1, "A's step-out cleared B's flag");
            // The revoker is waiting for B (it cannot have got in: B's flag
            // is set and B is alive); B leaves and it goes in.
            assert!(b_hears.try_recv().is_err(), "A got in beside B");
            drop(inside);
            assert_eq!(b_hears.recv().unwrap(), 1);
            a.join().unwrap();
        });
    }

    /// A thread inside its leased section that enters the same side again
    /// (a decoder using its own queue) gets an error, not a second section.
    #[test]
    fn reentering_a_side_is_an_error() {
        let ring = ring();
        let side = SideId::Consumers;
        lease_to_me(&ring, side);
        let outer = ring.enter_leased(side).expect("the holder enters");
        assert!(ring.enter_leased(side).is_none());
        let inner = ring.enter(side).map(|_| ());
        assert_eq!(inner.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(outer);
        assert!(ring.enter_leased(side).is_some());
    }

    /// A thread keeps its slot from one grant to the next, and the slots of
    /// threads that are gone are handed out again, so threads that come and
    /// go never run the table out.
    #[test]
    fn lease_slots_are_kept_and_reclaimed() {
        let ring = ring();
        let side = SideId::Consumers;
        let first = lease_to_me(&ring, side);
        std::thread::scope(|s| {
            s.spawn(|| lease_to_me(&ring, side)).join().unwrap();
        });
        assert_eq!(slot_of(lease_to_me(&ring, side)), slot_of(first));
        // Threads that each take the lease and exit: more than there are
        // slots, each one finds a slot.
        for _ in 0..2 * SLOTS {
            let tid = std::thread::scope(|s| {
                s.spawn(|| {
                    lease_to_me(&ring, side);
                    sys::gettid()
                })
                .join()
                .unwrap()
            });
            // `join` returns a little before the kernel removes the thread
            // from /proc, which is what reclaiming its slot looks at.
            let task = format!("/proc/self/task/{tid}");
            while std::path::Path::new(&task).exists() {
                std::thread::yield_now();
            }
        }
        // Live threads holding slots: with ours and 15 more, the table is
        // full, and the next thread stays on the mutex (no lease, and no
        // one else's slot).
        std::thread::scope(|s| {
            let mut holders = Vec::new();
            let mut words = vec![lease_to_me(&ring, side)];
            for _ in 1..SLOTS {
                let (release, wait) = mpsc::channel::<()>();
                let (tell, word) = mpsc::channel::<u64>();
                let ring = &ring;
                holders.push((
                    release,
                    s.spawn(move || {
                        tell.send(lease_to_me(ring, side)).unwrap();
                        let _ = wait.recv();
                    }),
                ));
                words.push(word.recv().unwrap());
            }
            let mut slots: Vec<_> = words.iter().map(|&w| slot_of(w).unwrap()).collect();
            slots.sort_unstable();
            slots.dedup();
            assert_eq!(slots.len(), SLOTS, "live threads share a slot");
            let left_over = s.spawn(|| {
                let word = try_lease(&ring, side);
                // It still gets in, through the mutex.
                drop(ring.enter(side).unwrap());
                word
            });
            assert_eq!(left_over.join().unwrap(), None);
            for (release, h) in holders {
                drop(release);
                h.join().unwrap();
            }
        });
    }
}
