//! The queue's shared-memory layout: where each block lies, what it
//! holds, and the record format.
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
//! | 1216 | task journal: `member: u32` (slot + 1; 0: none), `seq_after: u64`, `taken_after: u64` (joinable only) | consumers |
//! | 1280 | members: 24 × 32 bytes, who holds which unfinished tasks (joinable only) | consumers, joiners |
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
//! A member slot (`JoinableQueue` only) is `owner: u64` (a process token:
//! start time above pid, see `sys::process_token`; 0: free), `taken: u64`
//! (messages taken by its owners, ever, less those whose tasks were marked
//! done before they were taken), `done: u64` (their tasks marked
//! done, ever, by anyone, or cleared when the owner died), and 8 reserved
//! bytes; its owner holds `taken - done` unfinished tasks. The journal
//! names the member whose `taken` a consumer is about to move with the
//! commit it is making, so that whoever repairs a consumer that died
//! between the two sets `taken` from it (see `tasks.rs`).
//!
//! Positions are monotonic counts (`pos % capacity` is the offset in the
//! ring). A record starts on a 64-byte boundary: a 16-byte header `len:
//! u32`, `tag: u32` (`pos / 64`, truncated), `seq: u64` (its message
//! number), then `len` bytes, the whole padded to a multiple of 64. Whole
//! cache lines per record keep a producer writing one record off the line a
//! consumer is reading the previous one from. A record may wrap around the
//! end of the ring; its header never does.

use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::base::cell::{CELL_SIZE, MutexType};
use crate::base::segment::{Elem, HEADER_SIZE, ObjectKind, Spec};

pub(super) const CONTROL: usize = HEADER_SIZE;
pub(super) const PRODUCER_CELL: usize = 128;
pub(super) const CONSUMER_CELL: usize = 256;
pub(super) const PRODUCER_COMMIT: usize = 384;
pub(super) const PRODUCER_LEASE: usize = 512;
pub(super) const CONSUMER_COMMIT: usize = 640;
pub(super) const CONSUMER_LEASE: usize = 768;
pub(super) const NOT_EMPTY: usize = 896;
pub(super) const NOT_FULL: usize = 1024;
pub(super) const JOIN: usize = 1152;
pub(super) const JOURNAL: usize = 1216;
pub(super) const MEMBERS: usize = 1280;
pub(super) const PRODUCER_SLOTS: usize = 2048;
pub(super) const CONSUMER_SLOTS: usize = 3072;
pub(super) const RING: usize = 4096;
/// Member slots of a `JoinableQueue` (see [`Member`]), 32 bytes each.
pub(super) const MEMBER_SLOTS: usize = 24;
/// Lease slots per side (see [`Slot`]), 64 bytes each.
pub(super) const SLOTS: usize = 16;
/// Where a lease word keeps its slot number (plus one): above the thread
/// id, which Linux keeps below 2^22, and below the process nonce.
pub(super) const SLOT_SHIFT: u32 = 24;
pub(super) const SLOT_MASK: u64 = 0xff << SLOT_SHIFT;
/// Record header: `len: u32`, `tag: u32`, `seq: u64`.
pub(super) const RECORD_HEADER: usize = 16;
/// Records start on cache lines.
pub(super) const RECORD_ALIGN: usize = 64;
/// The smallest ring.
pub(super) const MIN_CAPACITY: usize = 64;
/// The largest ring: the header's `tag` (`pos / 64` as a `u32`) must tell
/// apart two positions one capacity apart.
pub(super) const MAX_CAPACITY: usize = 1 << 36;
/// Control flag: the queue uses asymmetric barriers (`membarrier`).
pub(super) const FLAG_ASYMMETRIC: u32 = 1;

const _: () =
    assert!(CELL_SIZE <= 128 && CONTROL + std::mem::size_of::<Control>() <= PRODUCER_CELL);
const _: () = assert!(std::mem::size_of::<Lease>() <= 128);
const _: () = assert!(JOIN + std::mem::size_of::<Join>() <= JOURNAL);
const _: () = assert!(JOURNAL + std::mem::size_of::<TaskJournal>() <= MEMBERS);
const _: () = assert!(std::mem::size_of::<Member>() == 32);
const _: () = assert!(MEMBERS + MEMBER_SLOTS * 32 <= PRODUCER_SLOTS);
const _: () = assert!(std::mem::size_of::<Slot>() <= 64 && SLOTS < 0xff);
const _: () = assert!(PRODUCER_SLOTS + SLOTS * 64 <= CONSUMER_SLOTS);
const _: () = assert!(CONSUMER_SLOTS + SLOTS * 64 <= RING);

#[repr(C)]
pub(super) struct Control {
    pub(super) capacity: u64,
    pub(super) maxsize: u64,
    pub(super) closed: AtomicU32,
    pub(super) flags: u32,
}

/// A side's commit point (see the module docs).
#[repr(C)]
pub(super) struct Commit {
    pub(super) seq: AtomicU64,
    pub(super) pos: AtomicU64,
}

/// A side's lease (see the module docs).
#[repr(C)]
pub(super) struct Lease {
    /// The holder's thread token with its slot number (plus one) at
    /// [`SLOT_SHIFT`]; 0: none.
    pub(super) holder: AtomicU64,
    pub(super) revoke: AtomicU32,
    pub(super) revocations: AtomicU32,
    pub(super) cached_seq: AtomicU64,
    pub(super) cached_pos: AtomicU64,
    pub(super) streak_tid: AtomicU64,
    pub(super) streak: AtomicU32,
}

/// A lease slot: where one thread says it is inside a side's section
/// while it holds the lease. A slot stays its thread's until that thread
/// is gone, so a thread acting on a stale view of the lease only ever
/// writes its own `busy`, never the flag a later holder's revoker reads.
#[repr(C)]
pub(super) struct Slot {
    /// The thread token of the owner; 0: free.
    pub(super) owner: AtomicU64,
    /// 1 while the owner is inside a leased section.
    pub(super) busy: AtomicU32,
    /// The owner's process, and its start time (to tell a reused pid).
    pub(super) pid: AtomicU32,
    pub(super) start: AtomicU64,
}

#[repr(C)]
pub(super) struct WaitWord {
    /// Moves on with every wake (the futex word).
    pub(super) epoch: AtomicU32,
    /// One more than the latest epoch a sleeper is about to sleep on
    /// (0: never armed); a commit wakes only while it equals `epoch + 1`.
    pub(super) armed: AtomicU32,
}

#[repr(C)]
pub(super) struct Join {
    /// Tasks marked done that no member held, ever; with every member's
    /// `taken`, never above the messages put (see `tasks.rs`).
    pub(super) done: AtomicU64,
    pub(super) epoch: AtomicU32,
    pub(super) waiters: AtomicU32,
}

/// A consumer's commit in progress (see the module docs).
#[repr(C)]
pub(super) struct TaskJournal {
    /// The member slot (plus one) whose `taken` moves; 0: none.
    pub(super) member: AtomicU32,
    pub(super) _reserved: u32,
    /// The consumers' `seq` once the commit is made.
    pub(super) seq_after: AtomicU64,
    /// The member's `taken` once the commit is made.
    pub(super) taken_after: AtomicU64,
}

/// Who holds a `JoinableQueue`'s unfinished tasks: one process per slot.
#[repr(C)]
pub(super) struct Member {
    /// A process token (`sys::process_token`); 0: free.
    pub(super) owner: AtomicU64,
    /// Messages taken through this slot, ever, less those whose tasks
    /// were marked done before they were taken (written inside the
    /// consumers' section only).
    pub(super) taken: AtomicU64,
    /// Tasks of this slot marked done (or cleared after its owner died),
    /// ever; never above `taken`.
    pub(super) done: AtomicU64,
    pub(super) _reserved: u64,
}

/// Rounds a requested byte capacity to the ring's actual one.
pub(crate) fn ring_capacity(requested: usize) -> usize {
    requested.max(MIN_CAPACITY).next_power_of_two()
}

/// The mutex type of each side's lock cell.
pub(super) const SIDE_LOCK: MutexType = MutexType::ErrorCheck;

/// The segment layout of a queue.
pub(crate) fn spec(kind: ObjectKind, elem: Elem, capacity: u64) -> Spec {
    Spec {
        kind,
        elem,
        len: capacity,
        size: RING.saturating_add(capacity as usize),
        cells: &[(PRODUCER_CELL, SIDE_LOCK), (CONSUMER_CELL, SIDE_LOCK)],
    }
}

pub(super) fn record_size(len: usize) -> u64 {
    (RECORD_HEADER + len).next_multiple_of(RECORD_ALIGN) as u64
}

pub(super) fn tag(pos: u64) -> u32 {
    (pos / RECORD_ALIGN as u64) as u32
}

/// The slot number a lease word names, if it names a valid one.
pub(super) fn slot_of(word: u64) -> Option<usize> {
    let n = ((word & SLOT_MASK) >> SLOT_SHIFT) as usize;
    (1..=SLOTS).contains(&n).then(|| n - 1)
}
