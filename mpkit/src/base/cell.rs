//! The lock cell every locking mpkit object embeds.
//!
//! # Layout (64 bytes, at a 64-byte-aligned offset in the segment)
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | `size_of::<pthread_mutex_t>()` (40 on x86-64 glibc) | `mutex` | robust, process-shared `pthread_mutex_t` (recursive for RLock/Value/Array, error-checking otherwise) |
//! | 40 | 4 | `owner` | thread id of the holder, 0 when free (written only by the holder) |
//! | 44 | 4 | `depth` | recursion depth of the holder |
//! | 48 | 4 | `exclusive` | 1 while a guard hands out `&mut` to the protected data |
//!
//! # Crash safety
//! The mutex is robust: when its owner thread dies (SIGKILL included), the
//! kernel marks it and wakes a waiter, and the next `acquire` reports that
//! the previous owner died. The bookkeeping fields are then reset. Death is
//! detected by the kernel at thread exit, so pid reuse cannot fool it.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use super::spin::{Poll, Spin};
use crate::sys::{self, Deadline, MutexLock, RawMutex};

/// Bytes reserved for a [`MutexCell`] in a layout.
pub(crate) const CELL_SIZE: usize = 64;

/// A robust process-shared mutex plus owner bookkeeping; see the module docs.
#[repr(C)]
pub(crate) struct MutexCell {
    mutex: UnsafeCell<RawMutex>,
    owner: AtomicU32,
    depth: AtomicU32,
    exclusive: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<MutexCell>() <= CELL_SIZE);

// SAFETY: the mutex is designed for concurrent use from many threads and
// processes; the other fields are atomics.
unsafe impl Sync for MutexCell {}

impl MutexCell {
    /// Initialises a cell in fresh shared memory.
    ///
    /// # Safety
    /// `p` points to `CELL_SIZE` writable bytes that nothing else uses yet.
    pub(crate) unsafe fn init(p: *mut MutexCell, recursive: bool) -> io::Result<()> {
        // SAFETY: per the contract; the atomics are written before the object
        // is published, and mutex_init gets memory for one pthread_mutex_t.
        unsafe {
            std::ptr::addr_of_mut!((*p).owner).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).depth).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).exclusive).write(AtomicU32::new(0));
            sys::mutex_init(std::ptr::addr_of_mut!((*p).mutex).cast(), recursive)
        }
    }

    /// Acquires the mutex, waiting until `deadline` (or not at all with
    /// `wait == false`). Returns whether the previous owner died holding it.
    pub(crate) fn acquire(&self, wait: bool, deadline: Deadline) -> Result<bool, LockError> {
        let m = self.mutex.get();
        // SAFETY: the cell was initialised by `init` before its segment was
        // published, and the segment stays mapped while `self` is borrowed.
        let mut outcome = unsafe { sys::mutex_trylock(m) }?;
        if outcome == MutexLock::Busy && wait {
            // A holder on another core usually lets go within microseconds:
            // retry (backing off: each try writes the mutex's line) before
            // paying for a kernel sleep and wake-up.
            let mut spin = Spin::new(Poll::Contend, deadline);
            while outcome == MutexLock::Busy && spin.pause() {
                // SAFETY: as above.
                outcome = unsafe { sys::mutex_trylock(m) }?;
            }
            if outcome == MutexLock::Busy {
                // SAFETY: as above.
                outcome = unsafe { sys::mutex_lock(m, deadline) }?;
            }
        }
        let died = match outcome {
            MutexLock::Acquired => false,
            MutexLock::OwnerDied => {
                self.depth.store(0, Ordering::Relaxed);
                self.exclusive.store(0, Ordering::Relaxed);
                true
            }
            MutexLock::Busy if wait => return Err(LockError::Timeout),
            MutexLock::Busy => return Err(LockError::WouldBlock),
            MutexLock::Deadlock => return Err(LockError::Deadlock),
        };
        // Only the holder writes the bookkeeping: plain stores, no atomic
        // read-modify-write on the fast path.
        let depth = self.depth.load(Ordering::Relaxed);
        self.depth.store(depth + 1, Ordering::Relaxed);
        self.owner.store(sys::gettid(), Ordering::Relaxed);
        Ok(died)
    }

    /// Releases one level of the mutex held by this thread.
    pub(crate) fn release(&self) -> Result<(), ReleaseError> {
        let me = sys::gettid();
        let owner = self.owner.load(Ordering::Relaxed);
        let depth = self.depth.load(Ordering::Relaxed);
        if owner != me || depth == 0 {
            return Err(if owner == 0 || depth == 0 {
                ReleaseError::NotLocked
            } else {
                ReleaseError::NotOwner
            });
        }
        if depth == 1 {
            self.owner.store(0, Ordering::Relaxed);
        }
        self.depth.store(depth - 1, Ordering::Relaxed);
        // SAFETY: initialised and mapped, as in `acquire`.
        if unsafe { sys::mutex_unlock(self.mutex.get()) }.is_err() {
            // Our bookkeeping was stale (a dead owner's thread id reused by
            // this thread): the kernel knows better. Put it back.
            self.owner.store(owner, Ordering::Relaxed);
            self.depth.store(depth, Ordering::Relaxed);
            return Err(ReleaseError::NotOwner);
        }
        Ok(())
    }

    /// True when the calling thread holds the mutex.
    pub(crate) fn held_by_me(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == sys::gettid()
            && self.depth.load(Ordering::Relaxed) > 0
    }

    /// The `exclusive` flag (only meaningful to the holder).
    pub(crate) fn exclusive(&self) -> &AtomicU32 {
        &self.exclusive
    }
}

/// Why a lock was not acquired.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The timeout passed first.
    #[error("timed out waiting for the lock")]
    Timeout,
    /// `try_lock`: someone else holds it.
    #[error("the lock is held by another thread or process")]
    WouldBlock,
    /// This thread already holds this non-re-entrant lock.
    #[error("this thread already holds the lock (use an RLock to re-enter)")]
    Deadlock,
    /// The operating system refused.
    #[error("lock: {0}")]
    Io(#[from] io::Error),
}

/// Why a release was refused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub enum ReleaseError {
    /// Nobody holds the lock.
    #[error("release of an unlocked lock")]
    NotLocked,
    /// Another thread or process holds it.
    #[error("the lock is held by another thread or process")]
    NotOwner,
}
