//! Process-shared synchronisation: [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Condition`], [`Event`], [`Barrier`] (Python's
//! `multiprocessing` primitives of the same names).
//!
//! Every object lives in its own segment (anonymous unless created with a
//! name) and passes to children in `Process` arguments. Every wait takes a
//! timeout on the monotonic clock, and waiting is a process-shared futex (or
//! the kernel's robust mutex) after a brief spin: no polling.
//!
//! ```
//! use mpkit::Process;
//! use mpkit::sync::{Event, Lock};
//!
//! let lock = Lock::new()?;
//! let ready = Event::new()?;
//! let child = Process::spawn(|(lock, ready): (Lock, Event)| {
//!     let _held = lock.lock().unwrap();
//!     ready.set();
//!     // ... work under the lock; the guard releases it
//! }, (lock.try_clone()?, ready.try_clone()?))?;
//! assert!(ready.wait(Some(std::time::Duration::from_secs(10)))?);
//! child.join()?;
//! let guard = lock.lock()?;
//! assert!(!guard.owner_died());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crash safety
//! `Lock`, `RLock`, `Condition`, `Barrier` and the locks inside `Value` and
//! `Array` are robust mutexes: when a process dies holding one — SIGKILL at
//! any instruction included — the next acquirer gets it, and its guard's
//! `owner_died()` is true so it can repair what the lock protected. The
//! kernel detects the death when the thread exits, so pid reuse cannot fool
//! it. A process that dies while *waiting* (in a `Condition`, `Event`,
//! `Barrier` or `Semaphore`) leaves nothing held. A `Barrier` whose internal
//! lock was held by a dying process becomes broken rather than stuck.
//!
//! # Semaphores and crashes
//! A semaphore is not owned in general: with plain
//! [`acquire`](Semaphore::acquire) and [`release`](Semaphore::release), one
//! process may release what another acquired (a producer signalling a
//! consumer), as in Python, so a unit acquired by a process that dies is
//! gone for good. Take a [`Permit`] instead ([`Semaphore::permit`],
//! `try_permit`, `permit_timeout`) when the unit must come back: the
//! semaphore records, in a table in its shared memory, how many permits
//! each process holds; dropping a permit gives it back, and when a holder
//! dies (SIGKILL included) the next process that finds the value 0 or
//! reads [`value`](Semaphore::value) finds it dead (pid and start time, so
//! a reused pid does not fool it) and gives its permits back, exactly once.
//! Waiters sleeping while permits are held look again every [`RECHECK`].
//! A SIGKILL that lands between the two atomic steps of taking, giving back
//! or reclaiming a permit loses that permit, never gives one back twice.
//! At most [`HOLDER_SLOTS`] live processes can have taken permits of one
//! semaphore ([`PermitError::TooManyHolders`] for the next).
//!
//! # Truncated files
//! Any process of the user may truncate a named object's file in
//! `/dev/shm`; this process then sees private zeros there instead of dying
//! of `SIGBUS` (see [`shm`](crate::shm)), and every wait reports the object
//! corrupt: [`Semaphore::acquire`] and [`Event::wait`] with an
//! [`io::Error`] of kind [`InvalidData`](io::ErrorKind::InvalidData)
//! around [`ShmError::Corrupt`], [`Semaphore::permit`] with
//! [`PermitError::Corrupt`], [`ConditionGuard::wait`] with
//! [`LockError::Corrupt`], [`Barrier::wait`] with [`BarrierError::Corrupt`].
//! A cut wakes no sleeper (no futex wake can reach a page that is gone),
//! so waits sleep in slices of 100 ms and read their memory after each: a
//! waiter asleep when the file is cut, in this process or any other, fails
//! within about 100 ms rather than at its deadline, or never. Operations
//! that return no error ([`Event::set`], [`Semaphore::release`],
//! `try_acquire`, `value`) act on this process's private zeros and reach
//! nobody; the next wait that has to wait reports the cut (one that finds
//! the flag set or a unit at once returns without looking, to keep that
//! path as fast as before: after a cut, those can only be what this
//! process put in its own zeros).
//!
//! # Layouts
//! Every object is the 64-byte segment header (see `shm`) followed by:
//!
//! | object | offset 64 | offset 128 |
//! |---|---|---|
//! | `Lock`, `RLock` | lock cell (error-checking / recursive) | — |
//! | `Semaphore`, `BoundedSemaphore` | `value: u32` (futex word), `waiters: u32`, `max: u32` (0 = unbounded) | holder table: 32 × {`owner: u64` (pid in bits 0-21, start time above; 0 free), `state: u64` (permits held in bits 0-31, reclaim generation above)} |
//! | `Event` | `flag: u32` (futex word), `waiters: u32` | — |
//! | `Condition` | lock cell (error-checking) | `seq: u32` (futex word), `waiters: u32` |
//! | `Barrier` (header `len` = parties) | lock cell (error-checking) | `count`, `generation` (futex word), `last_trip`, `broken`: `u32` each |
//!
//! The lock cell is documented in `base/cell.rs` (a robust process-shared
//! `pthread_mutex_t` plus owner bookkeeping).

mod barrier;
mod event;
mod semaphore;
mod sleep;

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::base::cell::{CELL_SIZE, MutexCell, MutexType};
pub use crate::base::cell::{LockError, LockTimeoutError, ReleaseError, TryLockError};
use crate::base::segment::{
    Elem, HEADER_SIZE, Header, ObjectKind, Segment, ShmError, Spec, segment_object,
};
use crate::base::spin::spin_until;
use crate::sys::{self, Deadline};
pub use barrier::{Barrier, BarrierError, BarrierTimeoutError};
pub use event::Event;
pub use semaphore::{
    BoundedSemaphore, HOLDER_SLOTS, OverReleaseError, Permit, PermitError, RECHECK, Semaphore,
};
use sleep::{Slept, WaitError, sleep_on};

/// Holds a lock until dropped ([`Lock::lock`], [`RLock::lock`],
/// [`RLockRef::lock`]).
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    cell: &'a MutexCell,
    ty: MutexType,
    owner_died: bool,
    /// Releasing must happen on the thread that locked.
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// True when the previous holder died holding the lock, so what it
    /// protected may be half-updated. The lock itself works normally.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("owner_died", &self.owner_died)
            .finish()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cell.release(self.ty);
    }
}

impl<'a> LockGuard<'a> {
    #[inline]
    fn new(cell: &'a MutexCell, ty: MutexType, owner_died: bool) -> LockGuard<'a> {
        LockGuard {
            cell,
            ty,
            owner_died,
            _not_send: PhantomData,
        }
    }
}

/// Locks `cell`, waiting as long as it takes.
#[inline]
fn guard(cell: &MutexCell, ty: MutexType) -> Result<LockGuard<'_>, LockError> {
    let owner_died = cell.lock(ty)?;
    Ok(LockGuard::new(cell, ty, owner_died))
}

/// The locking methods shared by `Lock`, `RLock` and `RLockRef` (each has
/// `cell()` and its mutex type as `TY`).
macro_rules! lock_methods {
    () => {
        /// Acquires the lock, waiting as long as it takes. The guard's
        /// `owner_died()` tells whether the previous holder died holding it.
        #[inline]
        pub fn lock(&self) -> Result<LockGuard<'_>, LockError> {
            guard(self.cell(), Self::TY)
        }

        /// Acquires the lock if it is free ([`TryLockError::WouldBlock`] if
        /// not).
        #[inline]
        pub fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError> {
            let owner_died = self.cell().try_lock(Self::TY)?;
            Ok(LockGuard::new(self.cell(), Self::TY, owner_died))
        }

        /// Acquires the lock, waiting at most `timeout`
        /// ([`LockTimeoutError::Timeout`]).
        #[inline]
        pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockTimeoutError> {
            let deadline = sys::deadline_after(Some(timeout));
            let owner_died = self.cell().lock_until(Self::TY, deadline)?;
            Ok(LockGuard::new(self.cell(), Self::TY, owner_died))
        }

        /// Python's `acquire(timeout=…)`: takes the lock without a guard
        /// (release it with [`release`](Self::release) on this thread).
        /// `Ok(false)` when the timeout passed, as Python returns `False`,
        /// so what is left to fail is what a blocking [`lock`](Self::lock)
        /// can report: a [`LockError`]. `None` waits forever.
        pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool, LockError> {
            match self
                .cell()
                .lock_until(Self::TY, sys::deadline_after(timeout))
            {
                Ok(_) => Ok(true),
                Err(LockTimeoutError::Timeout) => Ok(false),
                Err(LockTimeoutError::Deadlock) => Err(LockError::Deadlock),
                Err(LockTimeoutError::Corrupt) => Err(LockError::Corrupt),
                Err(LockTimeoutError::Io(e)) => Err(LockError::Io(e)),
            }
        }

        /// Python's `release()`: releases a lock taken with
        /// [`acquire`](Self::acquire). Releasing a lock nobody holds, or that
        /// another thread or process holds, is an error.
        pub fn release(&self) -> Result<(), ReleaseError> {
            self.cell().release(Self::TY)
        }

        /// True when the calling thread holds the lock.
        pub fn is_held_by_me(&self) -> bool {
            self.cell().held_by_me()
        }
    };
}

/// A re-entrant lock borrowed from a [`Value`](crate::shm::Value) or
/// [`Array`](crate::shm::Array) (their `get_lock()`).
pub struct RLockRef<'a> {
    cell: &'a MutexCell,
}

impl<'a> RLockRef<'a> {
    const TY: MutexType = MutexType::Recursive;

    pub(crate) fn new(cell: &'a MutexCell) -> RLockRef<'a> {
        RLockRef { cell }
    }

    fn cell(&self) -> &MutexCell {
        self.cell
    }

    lock_methods!();
}

/// The mutex type of a lock of `kind`.
fn lock_type(kind: ObjectKind) -> MutexType {
    if kind == ObjectKind::RLock {
        MutexType::Recursive
    } else {
        MutexType::ErrorCheck
    }
}

fn lock_spec(kind: ObjectKind) -> Spec {
    Spec {
        kind,
        elem: Elem::NONE,
        len: 0,
        size: HEADER_SIZE + CELL_SIZE,
        cells: if kind == ObjectKind::RLock {
            &[(HEADER_SIZE, MutexType::Recursive)]
        } else {
            &[(HEADER_SIZE, MutexType::ErrorCheck)]
        },
    }
}

fn create_lock(kind: ObjectKind, name: Option<&str>) -> Result<Segment, ShmError> {
    Segment::create(lock_spec(kind), name, 0o600, |base| {
        // SAFETY: fresh segment sized for a cell at HEADER_SIZE.
        unsafe { MutexCell::init(base.as_ptr().add(HEADER_SIZE).cast(), lock_type(kind)) }
    })
}

/// A process-shared lock (Python's `multiprocessing.Lock`), robust against
/// holders that die.
///
/// Unlike Python's, only the holder may release it (that is what makes it
/// recoverable when the holder dies).
#[derive(Debug)]
pub struct Lock {
    seg: Segment,
}

segment_object!(Lock, |_: &Header| lock_spec(ObjectKind::Lock));

impl Lock {
    const TY: MutexType = MutexType::ErrorCheck;

    fn from_segment(seg: Segment) -> Self {
        Lock { seg }
    }

    /// A new anonymous lock.
    pub fn new() -> Result<Lock, ShmError> {
        create_lock(ObjectKind::Lock, None).map(Lock::from_segment)
    }

    /// A new named lock.
    pub fn create(name: &str) -> Result<Lock, ShmError> {
        create_lock(ObjectKind::Lock, Some(name)).map(Lock::from_segment)
    }

    /// Attaches to a named lock.
    pub fn open(name: &str) -> Result<Lock, ShmError> {
        Segment::open(name, |_| lock_spec(ObjectKind::Lock)).map(Lock::from_segment)
    }

    fn cell(&self) -> &MutexCell {
        // SAFETY: the header check proved a Lock layout.
        unsafe { self.seg.at::<MutexCell>(HEADER_SIZE).as_ref() }
    }

    lock_methods!();
}

/// A re-entrant process-shared lock (Python's `multiprocessing.RLock`):
/// owned by one thread of one process, which may acquire it again; release
/// by any other thread is an error.
///
/// ```
/// use mpkit::sync::{RLock, ReleaseError};
/// let r = RLock::new()?;
/// let a = r.lock()?;
/// let b = r.lock()?; // the owner may re-enter
/// drop((b, a));
/// assert_eq!(r.release(), Err(ReleaseError::NotLocked));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RLock {
    seg: Segment,
}

segment_object!(RLock, |_: &Header| lock_spec(ObjectKind::RLock));

impl RLock {
    const TY: MutexType = MutexType::Recursive;

    fn from_segment(seg: Segment) -> Self {
        RLock { seg }
    }

    /// A new anonymous re-entrant lock.
    pub fn new() -> Result<RLock, ShmError> {
        create_lock(ObjectKind::RLock, None).map(RLock::from_segment)
    }

    /// A new named re-entrant lock.
    pub fn create(name: &str) -> Result<RLock, ShmError> {
        create_lock(ObjectKind::RLock, Some(name)).map(RLock::from_segment)
    }

    /// Attaches to a named re-entrant lock.
    pub fn open(name: &str) -> Result<RLock, ShmError> {
        Segment::open(name, |_| lock_spec(ObjectKind::RLock)).map(RLock::from_segment)
    }

    fn cell(&self) -> &MutexCell {
        // SAFETY: the header check proved an RLock layout.
        unsafe { self.seg.at::<MutexCell>(HEADER_SIZE).as_ref() }
    }

    lock_methods!();
}

/// Spins briefly while `word` still holds `value`, before a futex sleep
/// (the policy of [`spin`](crate::base::spin)).
pub(super) fn spin_while(word: &AtomicU32, value: u32, deadline: Deadline) {
    spin_until(deadline, || word.load(Ordering::Acquire) != value);
}

#[repr(C)]
struct CondState {
    seq: AtomicU32,
    waiters: AtomicU32,
}

/// The mutex type of a condition's lock.
const COND_TYPE: MutexType = MutexType::ErrorCheck;

fn cond_spec() -> Spec {
    Spec {
        kind: ObjectKind::Condition,
        elem: Elem::NONE,
        len: 0,
        size: HEADER_SIZE + CELL_SIZE + 64,
        cells: &[(HEADER_SIZE, MutexType::ErrorCheck)],
    }
}

/// A condition variable with its own lock (Python's
/// `multiprocessing.Condition`): lock it, then wait and notify through the
/// guard.
///
/// ```
/// use std::time::Duration;
/// use mpkit::{Process, shm::RawValue, sync::Condition};
///
/// let cond = Condition::new()?;
/// let items = RawValue::new(0u32)?;
/// let producer = Process::spawn(|(cond, items): (Condition, RawValue<u32>)| {
///     for _ in 0..3 {
///         let mut g = cond.lock().unwrap();
///         items.set(items.get() + 1);
///         g.notify_all();
///     }
/// }, (cond.try_clone()?, items.try_clone()?))?;
/// let mut g = cond.lock()?;
/// assert!(g.wait_for(|| items.get() == 3, Some(Duration::from_secs(10)))?);
/// drop(g);
/// producer.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Condition {
    seg: Segment,
}

segment_object!(Condition, |_: &Header| cond_spec());

impl Condition {
    fn from_segment(seg: Segment) -> Self {
        Condition { seg }
    }

    fn create_segment(name: Option<&str>) -> Result<Segment, ShmError> {
        Segment::create(cond_spec(), name, 0o600, |base| {
            // SAFETY: fresh segment sized for a cell and a CondState.
            unsafe {
                MutexCell::init(base.as_ptr().add(HEADER_SIZE).cast(), MutexType::ErrorCheck)?;
                base.as_ptr()
                    .add(HEADER_SIZE + CELL_SIZE)
                    .cast::<CondState>()
                    .write(CondState {
                        seq: AtomicU32::new(0),
                        waiters: AtomicU32::new(0),
                    });
            }
            Ok(())
        })
    }

    /// A new anonymous condition.
    pub fn new() -> Result<Condition, ShmError> {
        Condition::create_segment(None).map(Condition::from_segment)
    }

    /// A new named condition.
    pub fn create(name: &str) -> Result<Condition, ShmError> {
        Condition::create_segment(Some(name)).map(Condition::from_segment)
    }

    /// Attaches to a named condition.
    pub fn open(name: &str) -> Result<Condition, ShmError> {
        Segment::open(name, |_| cond_spec()).map(Condition::from_segment)
    }

    fn cell(&self) -> &MutexCell {
        // SAFETY: the header check proved a Condition layout.
        unsafe { self.seg.at::<MutexCell>(HEADER_SIZE).as_ref() }
    }

    fn state(&self) -> &CondState {
        // SAFETY: as above.
        unsafe { self.seg.at::<CondState>(HEADER_SIZE + CELL_SIZE).as_ref() }
    }

    /// Locks the condition's lock.
    pub fn lock(&self) -> Result<ConditionGuard<'_>, LockError> {
        let owner_died = self.cell().lock(COND_TYPE)?;
        Ok(self.guard(owner_died))
    }

    /// Locks it, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>, LockTimeoutError> {
        let deadline = sys::deadline_after(Some(timeout));
        let owner_died = self.cell().lock_until(COND_TYPE, deadline)?;
        Ok(self.guard(owner_died))
    }

    fn guard(&self, owner_died: bool) -> ConditionGuard<'_> {
        ConditionGuard {
            cond: self,
            owner_died,
            _not_send: PhantomData,
        }
    }
}

/// The held lock of a [`Condition`]: wait and notify through it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl ConditionGuard<'_> {
    /// True when a previous holder died holding the lock (also set if that
    /// happened while this guard was waiting).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Releases the lock, sleeps until notified or `timeout` passes, and
    /// takes the lock again. Returns false on timeout. Like every condition
    /// variable it may wake spuriously: wait in a loop, or use
    /// [`wait_for`](Self::wait_for). The timeout bounds the sleep, not
    /// taking the lock again, which waits as long as it takes (as in
    /// Python; a guard is returned only holding the lock): what can fail is
    /// that, a [`LockError`]; [`LockError::Corrupt`] too when another
    /// process truncated the condition's file, even during the sleep (see
    /// [Truncated files](crate::sync#truncated-files)). When a holder that
    /// may stop (SIGSTOP, a debugger) must not stretch the timeout, use
    /// [`wait_timeout`](Self::wait_timeout).
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, LockError> {
        self.wait_until(sys::deadline_after(timeout))
    }

    fn wait_until(&mut self, deadline: Deadline) -> Result<bool, LockError> {
        match self.sleep_relock(deadline, deadline) {
            Ok(slept) => Ok(slept?),
            Err(LockTimeoutError::Deadlock) => Err(LockError::Deadlock),
            Err(LockTimeoutError::Corrupt) => Err(LockError::Corrupt),
            Err(LockTimeoutError::Io(e)) => Err(LockError::Io(e)),
            // Taking the lock again had no deadline.
            Err(LockTimeoutError::Timeout) => Err(LockError::Io(io::Error::other(
                "pthread_mutex_lock returned busy",
            ))),
        }
    }

    /// Like [`wait`](Self::wait), but `timeout` bounds taking the lock
    /// again too: the call returns within it whatever another process
    /// holding the lock does (stopped by SIGSTOP or a debugger, say).
    /// Consumes the guard and gives it back, with whether it was notified,
    /// only holding the lock again; [`ConditionTimeoutError::Timeout`] when
    /// the lock was not free again by the deadline, and then this thread
    /// does not hold it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mpkit::sync::Condition;
    /// let cond = Condition::new()?;
    /// let g = cond.lock()?;
    /// let (g, notified) = g.wait_timeout(Duration::from_millis(1))?;
    /// assert!(!notified);
    /// drop(g);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(
        mut self,
        timeout: Duration,
    ) -> Result<(Self, bool), ConditionTimeoutError> {
        let deadline = sys::deadline_after(Some(timeout));
        match self.sleep_relock(deadline, deadline) {
            Ok(Ok(notified)) => Ok((self, notified)),
            // Held again: dropping the guard releases it.
            Ok(Err(e)) => Err(ConditionTimeoutError::Io(e)),
            Err(e) => {
                // Not held: the guard must not release it when dropped.
                std::mem::forget(self);
                Err(match e {
                    LockTimeoutError::Corrupt => ConditionTimeoutError::Corrupt,
                    LockTimeoutError::Io(e) => ConditionTimeoutError::Io(e),
                    // This thread released the lock just before, so it
                    // cannot already hold it: what is left is a timeout.
                    LockTimeoutError::Timeout | LockTimeoutError::Deadlock => {
                        ConditionTimeoutError::Timeout
                    }
                })
            }
        }
    }

    /// Releases the lock, sleeps until notified or `deadline`, then takes
    /// the lock again, waiting until `relock`. The outer error: the lock
    /// was not taken again (this thread does not hold it); the inner
    /// result, with it held: whether notified, or why the sleep failed.
    fn sleep_relock(
        &mut self,
        deadline: Deadline,
        relock: Deadline,
    ) -> Result<io::Result<bool>, LockTimeoutError> {
        let st = self.cond.state();
        let cell = self.cond.cell();
        let seq = st.seq.load(Ordering::SeqCst);
        st.waiters.fetch_add(1, Ordering::SeqCst);
        let _ = cell.release(COND_TYPE);
        // In slices: a file truncated meanwhile wakes nobody (`sleep`).
        let r = loop {
            match sleep_on(&self.cond.seg, &st.seq, seq, deadline) {
                Ok(Slept::Slice) => {}
                Ok(slept) => break Ok(slept == Slept::Woken),
                Err(WaitError::Truncated) => break Err(None),
                Err(WaitError::Io(e)) => break Err(Some(e)),
            }
        };
        st.waiters.fetch_sub(1, Ordering::SeqCst);
        if matches!(r, Err(None)) || self.cond.seg.truncated() {
            // Zeros now, lock cell included: not taken again.
            return Err(LockTimeoutError::Corrupt);
        }
        if cell.lock_until(COND_TYPE, relock)? {
            self.owner_died = true;
        }
        Ok(r.map(|woken| woken || st.seq.load(Ordering::SeqCst) != seq)
            .map_err(|e| e.unwrap_or_else(sleep::truncated_io)))
    }

    /// Waits until `predicate()` is true (checked under the lock), or
    /// `timeout` passes; returns the predicate's last value.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, LockError> {
        let deadline = sys::deadline_after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            self.wait_until(deadline)?;
        }
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&mut self, n: u32) {
        let st = self.cond.state();
        st.seq.fetch_add(1, Ordering::SeqCst);
        if n > 0 && st.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&st.seq, n);
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&mut self) {
        self.notify(u32::MAX);
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cond.cell().release(COND_TYPE);
    }
}

/// Why [`ConditionGuard::wait_timeout`] gave no guard back.
///
/// ```
/// use std::time::Duration;
/// use mpkit::sync::{Condition, ConditionTimeoutError};
/// let cond = Condition::new()?;
/// let g = cond.lock()?;
/// match g.wait_timeout(Duration::from_millis(1)) {
///     Ok((_g, notified)) => assert!(!notified),
///     Err(ConditionTimeoutError::Timeout) => unreachable!("nobody else holds it"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConditionTimeoutError {
    /// The timeout passed before the lock was free again (another process
    /// holds it: busy, or stopped). This thread does not hold the lock.
    #[error("timed out taking the condition's lock again")]
    Timeout,
    /// The lock's memory was overwritten; see [`LockError::Corrupt`]. This
    /// thread does not hold the lock.
    #[error("{}", LockError::Corrupt)]
    Corrupt,
    /// The operating system refused the sleep or the lock. This thread
    /// does not hold the lock.
    #[error("condition: {0}")]
    Io(#[from] io::Error),
}
