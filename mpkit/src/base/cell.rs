//! The lock cell every locking mpkit object embeds.
//!
//! # Layout (64 bytes, at a 64-byte-aligned offset in the segment)
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | `size_of::<pthread_mutex_t>()` (40 on x86-64 glibc) | `mutex` | robust, process-shared `pthread_mutex_t` (recursive for RLock/Value/Array, error-checking otherwise) |
//! | 40 | 4 | `owner` | thread id of the holder, 0 when free (written only by the holder) |
//! | 44 | 4 | `depth` | recursion depth of the holder |
//! | 48 | 4 | reserved | zero |
//!
//! # Crash safety
//! The mutex is robust: when its owner thread dies (SIGKILL included), the
//! kernel marks it and wakes a waiter, and the next `acquire` reports that
//! the previous owner died. The bookkeeping fields are then reset. Death is
//! detected by the kernel at thread exit, so pid reuse cannot fool it.
//!
//! # Memory another process rewrote
//! glibc trusts the mutex's bytes: a mutex whose kind word says private
//! (its wake-ups never reach another process) or not robust (a dead
//! holder's lock is never handed on, and this thread's robust list would
//! go wrong) must not reach it. The kind word is checked against the
//! object's [`MutexType`] when a segment is attached and again, with one
//! relaxed load, before every lock and unlock: a mismatch is
//! [`LockError::Corrupt`] and glibc is not called. A holder that finds the
//! word rewritten writes it back before unlocking, so glibc unlocks the
//! way it locked. The bookkeeping words only ever mislead reports
//! (`is_held_by_me`, [`ReleaseError`]), never memory safety. A rewrite
//! made while this process holds or sleeps in the mutex is beyond these
//! checks (glibc follows the robust-list pointers stored in the mutex when
//! it unlocks); on targets whose `pthread_mutex_t` layout mpkit does not
//! know, nothing is checked.
//!
//! A mutex word rewritten to name a thread that does not exist looks held
//! for good: the kernel hands a robust mutex on only when the thread it
//! names dies holding it. So a waiter sleeps in slices of
//! [`OWNER_RECHECK`], and after each (and at its deadline) asks `/proc`
//! whether the named thread exists; when it does not, the waiter marks the
//! mutex exactly as the kernel marks a dead holder's (`FUTEX_OWNER_DIED`,
//! waiters bit kept, one waiter woken), and the lock is taken with
//! owner-died, the same path as after a crashed holder: the caller is told
//! the protected data may be half-written. A thread id reused by a live
//! thread since counts as alive (waiting is safe, taking a held lock is
//! not). Thread ids are per PID namespace: processes sharing a lock must
//! share one (as for the semaphore's reclaim), or a holder in another
//! could be taken for a missing thread.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::spin::{Poll, Spin};
pub(crate) use crate::sys::MutexType;
use crate::sys::{self, Deadline, MutexLock, RawMutex};

/// How often a thread asleep on a held lock checks that the holder the
/// mutex names is a thread that exists (see "Memory another process
/// rewrote"): a blocked `lock` wakes this often, and a lock whose word
/// names no thread is taken over this long after the wait began.
const OWNER_RECHECK: Duration = Duration::from_millis(100);

/// Bytes reserved for a [`MutexCell`] in a layout.
pub(crate) const CELL_SIZE: usize = 64;

/// A robust process-shared mutex plus owner bookkeeping; see the module docs.
#[repr(C)]
pub(crate) struct MutexCell {
    mutex: UnsafeCell<RawMutex>,
    owner: AtomicU32,
    depth: AtomicU32,
    reserved: AtomicU32,
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
    pub(crate) unsafe fn init(p: *mut MutexCell, ty: MutexType) -> io::Result<()> {
        // SAFETY: per the contract; the atomics are written before the object
        // is published, and mutex_init gets memory for one pthread_mutex_t.
        unsafe {
            std::ptr::addr_of_mut!((*p).owner).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).depth).write(AtomicU32::new(0));
            std::ptr::addr_of_mut!((*p).reserved).write(AtomicU32::new(0));
            sys::mutex_init(std::ptr::addr_of_mut!((*p).mutex).cast(), ty)
        }
    }

    /// The mutex's kind word when it is not the one `ty` was created with
    /// (another process rewrote it); `None` when it is, or when this
    /// target's mutex layout is unknown. One relaxed load.
    #[inline]
    pub(crate) fn wrong_kind(&self, ty: MutexType) -> Option<i32> {
        // SAFETY: the cell is mapped while `self` is borrowed, and the
        // mutex is its first, aligned field.
        unsafe { sys::mutex_kind(self.mutex.get()) }.filter(|&k| k != ty.kind())
    }

    /// Acquires the mutex, waiting until `deadline` (or not at all with
    /// `wait == false`). `Some(owner_died)` when acquired, `None` when it
    /// stayed busy.
    fn acquire(
        &self,
        ty: MutexType,
        wait: bool,
        deadline: Deadline,
    ) -> Result<Option<bool>, LockError> {
        if self.wrong_kind(ty).is_some() {
            return Err(LockError::Corrupt);
        }
        let m = self.mutex.get();
        // SAFETY: the cell was initialised by `init` before its segment was
        // published, the segment stays mapped while `self` is borrowed, and
        // its kind word was just checked.
        let mut outcome = unsafe { sys::mutex_trylock(m) }?;
        if outcome == MutexLock::Busy && wait {
            // A holder on another core usually lets go within microseconds:
            // retry (backing off: each try writes the mutex's line) before
            // paying for a kernel sleep and wake-up.
            let mut spin = Spin::new(Poll::Contend, deadline);
            while outcome == MutexLock::Busy && spin.pause() {
                if self.wrong_kind(ty).is_some() {
                    return Err(LockError::Corrupt);
                }
                // SAFETY: as above.
                outcome = unsafe { sys::mutex_trylock(m) }?;
            }
            // Then sleep, in slices of OWNER_RECHECK: a mutex word naming
            // a thread that does not exist (another process wrote it) is
            // never handed on by the kernel, which only acts for a thread
            // that dies holding the mutex.
            while outcome == MutexLock::Busy {
                if self.wrong_kind(ty).is_some() {
                    return Err(LockError::Corrupt);
                }
                let slice = Instant::now() + OWNER_RECHECK;
                let last = deadline.is_some_and(|d| d <= slice);
                // SAFETY: as above.
                outcome = unsafe { sys::mutex_lock(m, if last { deadline } else { Some(slice) }) }?;
                if outcome == MutexLock::Busy && self.mark_if_owner_gone() {
                    // SAFETY: as above.
                    outcome = unsafe { sys::mutex_trylock(m) }?;
                }
                if last {
                    break;
                }
            }
        }
        let died = match outcome {
            MutexLock::Acquired => false,
            MutexLock::OwnerDied => {
                self.depth.store(0, Ordering::Relaxed);
                true
            }
            MutexLock::Busy => return Ok(None),
            MutexLock::Deadlock => return Err(LockError::Deadlock),
        };
        // Only the holder writes the bookkeeping: plain stores, no atomic
        // read-modify-write on the fast path. Only a recursive mutex this
        // thread already holds counts on (saturating); any other
        // acquisition starts at depth 1, whatever another process wrote
        // while the lock was free: counting on from a written depth could
        // wrap to 0, and the release would then refuse, leaving the lock
        // held for good.
        let me = sys::gettid();
        let depth = if ty == MutexType::Recursive && self.owner.load(Ordering::Relaxed) == me {
            self.depth.load(Ordering::Relaxed).saturating_add(1)
        } else {
            1
        };
        self.depth.store(depth, Ordering::Relaxed);
        self.owner.store(me, Ordering::Relaxed);
        Ok(Some(died))
    }

    /// When the mutex names as its holder a thread that does not exist,
    /// marks it abandoned as the kernel marks a dead holder's (the next
    /// lock call takes it with `OwnerDied`); true when it did.
    #[cold]
    fn mark_if_owner_gone(&self) -> bool {
        let m = self.mutex.get();
        // SAFETY: the cell is mapped while `self` is borrowed.
        let Some(tid) = (unsafe { sys::mutex_owner_tid(m) }) else {
            return false;
        };
        // SAFETY: as above; `tid` was just found not to be a live thread.
        !sys::tid_alive(tid) && unsafe { sys::mutex_mark_owner_dead(m, tid) }
    }

    /// Acquires the mutex, waiting as long as it takes. Returns whether the
    /// previous owner died holding it.
    #[inline]
    pub(crate) fn lock(&self, ty: MutexType) -> Result<bool, LockError> {
        self.acquire(ty, true, None)?.ok_or_else(|| {
            // pthread_mutex_lock has no busy outcome: only an OS that
            // misbehaves gets here.
            LockError::Io(io::Error::other("pthread_mutex_lock returned busy"))
        })
    }

    /// Acquires the mutex if it is free.
    #[inline]
    pub(crate) fn try_lock(&self, ty: MutexType) -> Result<bool, TryLockError> {
        self.acquire(ty, false, None)?
            .ok_or(TryLockError::WouldBlock)
    }

    /// Acquires the mutex, waiting until `deadline` (`None`: as long as it
    /// takes).
    #[inline]
    pub(crate) fn lock_until(
        &self,
        ty: MutexType,
        deadline: Deadline,
    ) -> Result<bool, LockTimeoutError> {
        self.acquire(ty, true, deadline)?
            .ok_or(LockTimeoutError::Timeout)
    }

    /// Releases one level of the mutex held by this thread.
    pub(crate) fn release(&self, ty: MutexType) -> Result<(), ReleaseError> {
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
        let m = self.mutex.get();
        if self.wrong_kind(ty).is_some() {
            // Rewritten while this thread held it (it was checked when
            // locking): glibc must unlock it the way it locked it.
            // SAFETY: mapped as in `acquire`; this thread holds the mutex.
            unsafe { sys::mutex_restore_kind(m, ty) };
        }
        if depth == 1 {
            self.owner.store(0, Ordering::Relaxed);
        }
        self.depth.store(depth - 1, Ordering::Relaxed);
        // SAFETY: initialised and mapped, as in `acquire`.
        if unsafe { sys::mutex_unlock(m) }.is_err() {
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
}

const CORRUPT: &str = "the lock's memory was overwritten: its mutex is no longer a robust \
                       process-shared mutex of the type it was created with";

/// Why a blocking lock (`lock()`, Python's `acquire()`) was not acquired.
/// It never times out and is never refused as busy; for those see
/// [`TryLockError`] and [`LockTimeoutError`], which every `LockError`
/// converts into (so `?` works).
///
/// ```
/// use mpkit::sync::{Lock, LockError};
/// let lock = Lock::new()?;
/// let _held = lock.lock()?;
/// assert!(matches!(lock.lock(), Err(LockError::Deadlock)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// This thread already holds this non-re-entrant lock.
    #[error("this thread already holds the lock (use an RLock to re-enter)")]
    Deadlock,
    /// Another process overwrote the lock's memory: its mutex is no longer
    /// a robust process-shared mutex of the type it was created with.
    /// Nothing was locked; the object cannot be used safely.
    #[error("{CORRUPT}")]
    Corrupt,
    /// The operating system refused.
    #[error("lock: {0}")]
    Io(#[from] io::Error),
}

/// Why `try_lock()` did not acquire a lock.
///
/// ```
/// use mpkit::{Process, sync::{Lock, TryLockError}};
/// let lock = Lock::new()?;
/// let _held = lock.try_lock()?;
/// let child = Process::spawn(|lock: Lock| {
///     matches!(lock.try_lock(), Err(TryLockError::WouldBlock))
/// }, lock.try_clone()?)?;
/// assert!(child.join()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryLockError {
    /// Someone else holds it.
    #[error("the lock is held by another thread or process")]
    WouldBlock,
    /// This thread already holds this non-re-entrant lock.
    #[error("this thread already holds the lock (use an RLock to re-enter)")]
    Deadlock,
    /// The lock's memory was overwritten; see [`LockError::Corrupt`].
    #[error("{CORRUPT}")]
    Corrupt,
    /// The operating system refused.
    #[error("lock: {0}")]
    Io(#[from] io::Error),
}

/// Why `lock_timeout()` did not acquire a lock.
///
/// ```
/// use std::time::Duration;
/// use mpkit::{Process, sync::{Lock, LockTimeoutError}};
/// let lock = Lock::new()?;
/// let _held = lock.lock()?;
/// let child = Process::spawn(|lock: Lock| {
///     matches!(lock.lock_timeout(Duration::from_millis(10)), Err(LockTimeoutError::Timeout))
/// }, lock.try_clone()?)?;
/// assert!(child.join()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockTimeoutError {
    /// The timeout passed first.
    #[error("timed out waiting for the lock")]
    Timeout,
    /// This thread already holds this non-re-entrant lock.
    #[error("this thread already holds the lock (use an RLock to re-enter)")]
    Deadlock,
    /// The lock's memory was overwritten; see [`LockError::Corrupt`].
    #[error("{CORRUPT}")]
    Corrupt,
    /// The operating system refused.
    #[error("lock: {0}")]
    Io(#[from] io::Error),
}

impl From<LockError> for TryLockError {
    fn from(e: LockError) -> TryLockError {
        match e {
            LockError::Deadlock => TryLockError::Deadlock,
            LockError::Corrupt => TryLockError::Corrupt,
            LockError::Io(e) => TryLockError::Io(e),
        }
    }
}

impl From<LockError> for LockTimeoutError {
    fn from(e: LockError) -> LockTimeoutError {
        match e {
            LockError::Deadlock => LockTimeoutError::Deadlock,
            LockError::Corrupt => LockTimeoutError::Corrupt,
            LockError::Io(e) => LockTimeoutError::Io(e),
        }
    }
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
