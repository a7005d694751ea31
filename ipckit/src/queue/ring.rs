//! The shared-memory message ring behind every ipckit queue.
//!
//! # Layout
//!
//! After the 64-byte segment header (kind `Queue`, `JoinableQueue` or
//! `SimpleQueue`; `len` = ring capacity in bytes), every field on its own
//! 64-byte line so producers and consumers do not share cache lines:
//!
//! | offset | what |
//! |---|---|
//! | 64 | producers' lock cell (error-checking robust mutex) |
//! | 128 | consumers' lock cell |
//! | 192 | producer line: `tail: u64` (bytes), `tail_seq: u64` (messages), `cached_head: u64`, `cached_head_seq: u64` |
//! | 256 | consumer line: `head: u64`, `head_seq: u64`, `cached_tail: u64`, `cached_tail_seq: u64` |
//! | 320 | not-empty wait word: `epoch: u32` (futex), `waiters: u32`, `pending: u32` |
//! | 384 | not-full wait word: `epoch: u32` (futex), `waiters: u32`, `pending: u32` |
//! | 448 | control: `capacity: u64`, `maxsize: u64`, `closed: u32`, `join_epoch: u32` (futex), `join_waiters: u32`, `done: u64` (joinable only) |
//! | 512 | the ring: `capacity` bytes (a power of two) |
//!
//! Positions are monotonic byte counts (`pos % capacity` is the offset in
//! the ring); they never wrap in practice (2^64 bytes). A record is
//! `len: u32`, 4 reserved bytes, then `len` bytes of message, padded to a
//! multiple of 8. A record may wrap around the end of the ring; its 8-byte
//! header never does (positions and capacity are multiples of 8).
//!
//! # Crash safety
//!
//! Producers take the producers' lock, write a record beyond `tail`, then
//! publish it with one release store of `tail` (and `tail_seq`). Consumers
//! take the consumers' lock, copy the record at `head` out, then free it
//! with one release store of `head`. Those two stores are the only commit
//! points, so a process killed anywhere leaves either the whole record or
//! nothing:
//! - a producer killed before its store: the half-written bytes lie beyond
//!   `tail`, invisible, and the next producer writes over them;
//! - a consumer killed before its store: the record is still at `head` and
//!   the next consumer delivers it (the dead one never returned it);
//! - a process killed holding either lock: the lock is robust, so the next
//!   one to lock gets it (with owner-died, which needs no repair here:
//!   shared state is only ever changed by the commit stores).
//!
//! A message whose `put` returned is delivered exactly once, unless the
//! consumer that took it dies after the `head` store and before its `get`
//! returned.
//!
//! For a `JoinableQueue`, the number of unfinished tasks is `tail_seq -
//! done`: it is updated by the same commit store as the message itself, so
//! no crash can make it disagree with what is in the queue.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use crate::shm::{Elem, HEADER_SIZE, ObjectKind, Segment, ShmError, Spec};
use crate::sync::cell::{CELL_SIZE, MutexCell};
use crate::sys::{self, Deadline, FutexWait};

const PRODUCER_CELL: usize = HEADER_SIZE;
const CONSUMER_CELL: usize = PRODUCER_CELL + CELL_SIZE;
const PRODUCER_LINE: usize = 192;
const CONSUMER_LINE: usize = 256;
const NOT_EMPTY: usize = 320;
const NOT_FULL: usize = 384;
const CONTROL: usize = 448;
const RING: usize = 512;
/// Record header: `len: u32` and 4 reserved bytes.
const RECORD_HEADER: usize = 8;
/// The smallest ring.
const MIN_CAPACITY: usize = 64;
/// How long a waiter spins before sleeping (on machines with several CPUs).
const SPIN: Duration = Duration::from_micros(20);

#[repr(C)]
struct Side {
    pos: AtomicU64,
    seq: AtomicU64,
    cached_other_pos: AtomicU64,
    cached_other_seq: AtomicU64,
}

#[repr(C)]
struct WaitWord {
    epoch: AtomicU32,
    waiters: AtomicU32,
    /// A wake was issued and no sleeper has registered since: further
    /// commits need not wake again (the sleepers are already on their way).
    pending: AtomicU32,
}

#[repr(C)]
struct Control {
    capacity: u64,
    maxsize: u64,
    closed: AtomicU32,
    join_epoch: AtomicU32,
    join_waiters: AtomicU32,
    _pad: u32,
    done: AtomicU64,
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
}

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

fn record_size(len: usize) -> usize {
    RECORD_HEADER + len.next_multiple_of(8)
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
        if capacity > (1usize << 40) {
            return Err(ShmError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "queue capacity above 1 TiB",
            )));
        }
        let capacity = ring_capacity(capacity);
        let seg = Segment::create(spec(kind, elem, capacity as u64), name, 0o600, |base| {
            // SAFETY: the segment is fresh, zero-filled (ftruncate), and sized
            // for this layout; nothing else can see it before it is published.
            unsafe {
                MutexCell::init(base.as_ptr().add(PRODUCER_CELL).cast(), false)?;
                MutexCell::init(base.as_ptr().add(CONSUMER_CELL).cast(), false)?;
                let control = base.as_ptr().add(CONTROL).cast::<Control>();
                std::ptr::addr_of_mut!((*control).capacity).write(capacity as u64);
                std::ptr::addr_of_mut!((*control).maxsize).write(maxsize as u64);
            }
            Ok(())
        })?;
        Ring::from_segment(seg)
    }

    /// Wraps an attached segment, checking the control block against the
    /// header.
    pub(crate) fn from_segment(seg: Segment) -> Result<Ring, ShmError> {
        let ring = Ring { seg };
        let cap = ring.control().capacity;
        if cap != ring.seg.header().len || !cap.is_power_of_two() || (cap as usize) < MIN_CAPACITY {
            return Err(ShmError::Corrupt(format!(
                "queue capacity {cap} in a segment of {}",
                ring.seg.header().len
            )));
        }
        Ok(ring)
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    pub(crate) fn segment_mut(&mut self) -> &mut Segment {
        &mut self.seg
    }

    fn producer_cell(&self) -> &MutexCell {
        // SAFETY: the layout was checked on attach; the cell was initialised
        // before the segment was published.
        unsafe { self.seg.at::<MutexCell>(PRODUCER_CELL).as_ref() }
    }

    fn consumer_cell(&self) -> &MutexCell {
        // SAFETY: as above.
        unsafe { self.seg.at::<MutexCell>(CONSUMER_CELL).as_ref() }
    }

    fn producer(&self) -> &Side {
        // SAFETY: as above; all fields are atomics.
        unsafe { self.seg.at::<Side>(PRODUCER_LINE).as_ref() }
    }

    fn consumer(&self) -> &Side {
        // SAFETY: as above.
        unsafe { self.seg.at::<Side>(CONSUMER_LINE).as_ref() }
    }

    fn not_empty(&self) -> &WaitWord {
        // SAFETY: as above.
        unsafe { self.seg.at::<WaitWord>(NOT_EMPTY).as_ref() }
    }

    fn not_full(&self) -> &WaitWord {
        // SAFETY: as above.
        unsafe { self.seg.at::<WaitWord>(NOT_FULL).as_ref() }
    }

    fn control(&self) -> &Control {
        // SAFETY: as above; `capacity` and `maxsize` are written once before
        // publication and never again.
        unsafe { self.seg.at::<Control>(CONTROL).as_ref() }
    }

    /// Ring capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.control().capacity as usize
    }

    /// The message limit (0: none).
    pub(crate) fn maxsize(&self) -> usize {
        self.control().maxsize as usize
    }

    /// The largest message that fits.
    pub(crate) fn max_message(&self) -> usize {
        self.capacity() - RECORD_HEADER
    }

    /// Messages in the queue now.
    pub(crate) fn len(&self) -> usize {
        let head = self.consumer().seq.load(Ordering::Acquire);
        let tail = self.producer().seq.load(Ordering::Acquire);
        tail.saturating_sub(head) as usize
    }

    /// True when a put would have to wait for a message of `size` bytes.
    pub(crate) fn is_full_for(&self, size: usize) -> bool {
        let p = self.producer();
        let c = self.consumer();
        let used = p
            .pos
            .load(Ordering::Acquire)
            .saturating_sub(c.pos.load(Ordering::Acquire)) as usize;
        let count = self.len();
        (self.maxsize() != 0 && count >= self.maxsize())
            || used + record_size(size) > self.capacity()
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
        self.seg.at::<u8>(RING).as_ptr()
    }

    /// Copies `bytes` into the ring at `pos`, wrapping at the end.
    ///
    /// # Safety
    /// The caller holds the producers' lock and `pos..pos + bytes.len()` is
    /// free space (beyond `tail`, before `head + capacity`).
    unsafe fn write_at(&self, pos: u64, bytes: &[u8]) {
        let cap = self.capacity();
        let off = (pos as usize) & (cap - 1);
        let first = bytes.len().min(cap - off);
        // SAFETY: both pieces are inside the ring; nobody reads free space.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data().add(off), first);
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(first),
                self.data(),
                bytes.len() - first,
            );
        }
    }

    /// Copies `out.len()` bytes out of the ring from `pos`, wrapping.
    ///
    /// # Safety
    /// The caller holds the consumers' lock and the bytes are published
    /// (before `tail`, at or after `head`).
    unsafe fn read_at(&self, pos: u64, out: &mut [u8]) {
        let cap = self.capacity();
        let off = (pos as usize) & (cap - 1);
        let first = out.len().min(cap - off);
        // SAFETY: both pieces are inside the ring; no producer writes
        // published bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(off), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.data(),
                out.as_mut_ptr().add(first),
                out.len() - first,
            );
        }
    }

    /// Puts messages, in order, as many as fit at once; waits (per `wait`)
    /// while not even the first fits. Returns how many were put.
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
            let epoch = self.not_full().epoch.load(Ordering::SeqCst);
            let put = self.try_put(messages)?;
            if put > 0 {
                return Ok(put);
            }
            let deadline = match wait {
                Wait::No => return Err(PutFail::Full),
                Wait::Until(d) => d,
            };
            if !self.sleep(self.not_full(), epoch, deadline, || {
                self.is_closed() || !self.is_full_for(messages[0].len())
            })? {
                return Err(PutFail::Timeout);
            }
        }
    }

    /// One attempt under the producers' lock.
    fn try_put(&self, messages: &[&[u8]]) -> Result<usize, PutFail> {
        let cell = self.producer_cell();
        cell.acquire(true, None).map_err(lock_error_put)?;
        let p = self.producer();
        let c = self.consumer();
        let cap = self.capacity() as u64;
        let maxsize = self.maxsize() as u64;
        let start = p.pos.load(Ordering::Relaxed);
        let start_seq = p.seq.load(Ordering::Relaxed);
        let mut tail = start;
        let mut seq = start_seq;
        let mut head = p.cached_other_pos.load(Ordering::Relaxed);
        let mut head_seq = p.cached_other_seq.load(Ordering::Relaxed);
        let mut put = 0;
        for m in messages {
            let size = record_size(m.len()) as u64;
            let fits = |head: u64, head_seq: u64| {
                tail + size - head <= cap && (maxsize == 0 || seq - head_seq < maxsize)
            };
            if !fits(head, head_seq) {
                // Look at where the consumers really are (one cache miss).
                head = c.pos.load(Ordering::Acquire);
                head_seq = c.seq.load(Ordering::Acquire);
                if !fits(head, head_seq) {
                    break;
                }
            }
            let len = (m.len() as u32).to_le_bytes();
            // SAFETY: we hold the producers' lock and `tail..tail + size` is
            // free (checked against `head` just above).
            unsafe {
                self.write_at(tail, &[len[0], len[1], len[2], len[3], 0, 0, 0, 0]);
                self.write_at(tail + RECORD_HEADER as u64, m);
            }
            tail += size;
            seq += 1;
            put += 1;
        }
        p.cached_other_pos.store(head, Ordering::Relaxed);
        p.cached_other_seq.store(head_seq, Ordering::Relaxed);
        if put > 0 {
            // The commit point: the records become visible, whole.
            p.seq.store(seq, Ordering::Release);
            p.pos.store(tail, Ordering::Release);
        }
        let _ = cell.release();
        if put > 0 {
            self.wake(self.not_empty());
        }
        Ok(put)
    }

    /// Takes up to `max` messages (at least one, waiting per `wait`), passing
    /// each to `sink` in order, under the consumers' lock (the sink copies or
    /// decodes; it must not block). Returns how many were taken.
    pub(crate) fn get(
        &self,
        max: usize,
        wait: Wait,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, GetFail> {
        loop {
            let epoch = self.not_empty().epoch.load(Ordering::SeqCst);
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
            if !self.sleep(self.not_empty(), epoch, deadline, || {
                self.len() > 0 || self.is_closed()
            })? {
                return Err(GetFail::Timeout);
            }
        }
    }

    /// One attempt under the consumers' lock.
    fn try_get(&self, max: usize, sink: &mut dyn FnMut(&[u8])) -> Result<usize, GetFail> {
        let cell = self.consumer_cell();
        cell.acquire(true, None).map_err(lock_error_get)?;
        let result = self.take_locked(max, sink);
        let _ = cell.release();
        if matches!(result, Ok(n) if n > 0) {
            self.wake(self.not_full());
        }
        result
    }

    fn take_locked(&self, max: usize, sink: &mut dyn FnMut(&[u8])) -> Result<usize, GetFail> {
        let p = self.producer();
        let c = self.consumer();
        let mut head = c.pos.load(Ordering::Relaxed);
        let mut head_seq = c.seq.load(Ordering::Relaxed);
        let mut tail = c.cached_other_pos.load(Ordering::Relaxed);
        if tail <= head {
            tail = p.pos.load(Ordering::Acquire);
            c.cached_other_pos.store(tail, Ordering::Relaxed);
        }
        let mut taken = 0;
        let mut buf = Vec::new();
        // A long batch frees its space as it goes, so producers can refill
        // the ring while it is drained.
        let commit_every = (self.capacity() / 4) as u64;
        let mut committed = head;
        while taken < max && head < tail {
            let mut len = [0u8; RECORD_HEADER];
            // SAFETY: consumers' lock held; `head < tail`, so the record
            // header is published.
            unsafe { self.read_at(head, &mut len) };
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let size = record_size(len) as u64;
            if size > tail - head {
                return Err(GetFail::Corrupt(format!(
                    "a record of {len} bytes runs past the published end of the queue"
                )));
            }
            let body = head + RECORD_HEADER as u64;
            let off = (body as usize) & (self.capacity() - 1);
            if off + len <= self.capacity() {
                // Contiguous: hand the ring's own bytes to the sink. They are
                // published and no producer writes them until `head` moves.
                // SAFETY: in bounds (checked); stable while we hold the lock.
                sink(unsafe { std::slice::from_raw_parts(self.data().add(off), len) });
            } else {
                buf.resize(len, 0);
                // SAFETY: as above; the whole record is before `tail`.
                unsafe { self.read_at(body, &mut buf) };
                sink(&buf);
            }
            head += size;
            head_seq += 1;
            taken += 1;
            if head - committed >= commit_every {
                c.seq.store(head_seq, Ordering::Release);
                c.pos.store(head, Ordering::Release);
                committed = head;
                self.wake(self.not_full());
            }
        }
        if taken > 0 {
            // The commit point: the records are consumed.
            c.seq.store(head_seq, Ordering::Release);
            c.pos.store(head, Ordering::Release);
        }
        Ok(taken)
    }

    /// Wakes the sleepers of `word`, if there are any (a syscall only then).
    fn wake(&self, word: &WaitWord) {
        fence(Ordering::SeqCst);
        // One wake per sleep: until a sleeper registers again, `pending`
        // stays set and later commits skip the system call (a woken
        // process may take tens of µs to run on these VMs).
        if word.waiters.load(Ordering::Relaxed) > 0 && word.pending.swap(1, Ordering::SeqCst) == 0 {
            word.epoch.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&word.epoch, u32::MAX);
        }
    }

    /// Waits until `ready()` or `word`'s epoch moves past `epoch`: first a
    /// short spin, then a futex sleep. False when the deadline passed.
    fn sleep(
        &self,
        word: &WaitWord,
        epoch: u32,
        deadline: Deadline,
        ready: impl Fn() -> bool,
    ) -> Result<bool, io::Error> {
        if sys::several_cpus() {
            let until = Instant::now() + SPIN;
            let until = deadline.map_or(until, |d| d.min(until));
            let mut i = 0u32;
            while Instant::now() < until {
                if ready() || word.epoch.load(Ordering::Relaxed) != epoch {
                    return Ok(true);
                }
                i += 1;
                if i % 64 == 0 {
                    sys::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        word.waiters.fetch_add(1, Ordering::SeqCst);
        // A sleeper is about to sleep: the next commit must wake it.
        word.pending.store(0, Ordering::SeqCst);
        let r = if ready() {
            Ok(FutexWait::Woken)
        } else {
            sys::futex_wait(&word.epoch, epoch, deadline)
        };
        word.waiters.fetch_sub(1, Ordering::SeqCst);
        match r? {
            FutexWait::Woken => Ok(true),
            FutexWait::TimedOut => Ok(ready()),
        }
    }

    // ----- JoinableQueue ---------------------------------------------------

    /// Unfinished tasks: messages ever put minus `task_done` calls.
    pub(crate) fn unfinished(&self) -> u64 {
        let done = self.control().done.load(Ordering::SeqCst);
        self.producer()
            .seq
            .load(Ordering::SeqCst)
            .saturating_sub(done)
    }

    /// Marks one task done; false if there was none unfinished.
    pub(crate) fn task_done(&self) -> bool {
        let ctl = self.control();
        let mut done = ctl.done.load(Ordering::SeqCst);
        loop {
            if done >= self.producer().seq.load(Ordering::SeqCst) {
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
        if self.unfinished() == 0 && ctl.join_waiters.load(Ordering::SeqCst) > 0 {
            ctl.join_epoch.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&ctl.join_epoch, u32::MAX);
        }
        true
    }

    /// Waits until every task put so far is done; false on timeout.
    pub(crate) fn join(&self, deadline: Deadline) -> Result<bool, io::Error> {
        let ctl = self.control();
        loop {
            let epoch = ctl.join_epoch.load(Ordering::SeqCst);
            if self.unfinished() == 0 {
                return Ok(true);
            }
            ctl.join_waiters.fetch_add(1, Ordering::SeqCst);
            let r = if self.unfinished() == 0 {
                Ok(FutexWait::Woken)
            } else {
                sys::futex_wait(&ctl.join_epoch, epoch, deadline)
            };
            ctl.join_waiters.fetch_sub(1, Ordering::SeqCst);
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

fn lock_error_put(e: crate::sync::LockError) -> PutFail {
    PutFail::Io(io::Error::other(e.to_string()))
}

fn lock_error_get(e: crate::sync::LockError) -> GetFail {
    GetFail::Io(io::Error::other(e.to_string()))
}
