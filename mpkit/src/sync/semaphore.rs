//! `Semaphore` and `BoundedSemaphore`: a counting futex word in shared
//! memory.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::spin_while;
use crate::base::segment::{
    Elem, HEADER_SIZE, Header, ObjectKind, Segment, ShmError, Spec, segment_object,
};
use crate::sys::{self, Deadline, FutexWait};

#[repr(C)]
struct SemState {
    value: AtomicU32,
    waiters: AtomicU32,
    max: u32,
}

fn sem_spec(kind: ObjectKind) -> Spec {
    Spec {
        kind,
        elem: Elem::NONE,
        len: 0,
        size: HEADER_SIZE + 64,
    }
}

fn create_sem(
    kind: ObjectKind,
    name: Option<&str>,
    value: u32,
    max: u32,
) -> Result<Segment, ShmError> {
    Segment::create(sem_spec(kind), name, 0o600, |base| {
        // SAFETY: fresh segment with room for SemState at HEADER_SIZE.
        unsafe {
            base.as_ptr()
                .add(HEADER_SIZE)
                .cast::<SemState>()
                .write(SemState {
                    value: AtomicU32::new(value),
                    waiters: AtomicU32::new(0),
                    max,
                });
        }
        Ok(())
    })
}

/// The counting semaphore behind `Semaphore` and `BoundedSemaphore`.
fn sem_state(seg: &Segment) -> &SemState {
    // SAFETY: the header check proved a semaphore layout.
    unsafe { seg.at::<SemState>(HEADER_SIZE).as_ref() }
}

/// Takes one unit if there is one, without waiting.
fn sem_try(s: &SemState) -> bool {
    let mut v = s.value.load(Ordering::SeqCst);
    while v > 0 {
        match s
            .value
            .compare_exchange_weak(v, v - 1, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
    false
}

/// Takes one unit, waiting until `deadline`; false if it passed.
fn sem_acquire(s: &SemState, deadline: Deadline) -> io::Result<bool> {
    loop {
        if sem_try(s) {
            return Ok(true);
        }
        spin_while(&s.value, 0, deadline);
        if s.value.load(Ordering::SeqCst) > 0 {
            continue;
        }
        s.waiters.fetch_add(1, Ordering::SeqCst);
        let r = sys::futex_wait(&s.value, 0, deadline);
        s.waiters.fetch_sub(1, Ordering::SeqCst);
        // Without a deadline there is no timeout: `acquire` returns only
        // with a unit.
        if r? == FutexWait::TimedOut && deadline.is_some() {
            // One last try: a release may have raced with the timeout.
            return Ok(sem_try(s));
        }
    }
}

fn sem_release(s: &SemState, n: u32) -> Result<(), OverReleaseError> {
    let limit = if s.max == 0 { u32::MAX } else { s.max };
    let mut v = s.value.load(Ordering::SeqCst);
    loop {
        let new = v.checked_add(n).filter(|&new| new <= limit);
        let Some(new) = new else {
            return Err(OverReleaseError { limit });
        };
        match s
            .value
            .compare_exchange_weak(v, new, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(now) => v = now,
        }
    }
    if s.waiters.load(Ordering::SeqCst) > 0 {
        sys::futex_wake(&s.value, n);
    }
    Ok(())
}

/// Why a semaphore's [`release`](Semaphore::release) was refused: the
/// value would have passed its limit (a [`BoundedSemaphore`]'s initial
/// value, or `u32::MAX` for a [`Semaphore`]). Nothing changed. Python's
/// `BoundedSemaphore.release` raises `ValueError` here.
///
/// ```
/// use mpkit::sync::{BoundedSemaphore, OverReleaseError};
/// let s = BoundedSemaphore::new(2)?;
/// assert_eq!(s.release(), Err(OverReleaseError { limit: 2 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
#[error("semaphore released too many times (its value would pass its limit, {limit})")]
pub struct OverReleaseError {
    /// The largest value the semaphore may hold.
    pub limit: u32,
}

/// The semaphore methods shared by `Semaphore` and `BoundedSemaphore`.
macro_rules! semaphore_methods {
    () => {
        /// P: takes one unit, waiting while there is none.
        pub fn acquire(&self) -> io::Result<()> {
            sem_acquire(sem_state(&self.seg), None).map(|_| ())
        }

        /// Takes one unit if there is one; false otherwise. It never
        /// waits, so it makes no system call that could fail.
        pub fn try_acquire(&self) -> bool {
            sem_try(sem_state(&self.seg))
        }

        /// Takes one unit, waiting at most `timeout`; false if it passed.
        pub fn acquire_timeout(&self, timeout: Duration) -> io::Result<bool> {
            sem_acquire(sem_state(&self.seg), sys::deadline_after(Some(timeout)))
        }

        /// The current value (Python's `get_value()`).
        pub fn value(&self) -> u32 {
            sem_state(&self.seg).value.load(Ordering::SeqCst)
        }
    };
}

/// A counting semaphore (Python's `multiprocessing.Semaphore`): P is
/// [`acquire`](Self::acquire), V is [`release`](Self::release).
///
/// ```
/// use mpkit::sync::Semaphore;
/// let s = Semaphore::new(2)?;
/// s.acquire()?;
/// assert!(s.try_acquire());
/// assert!(!s.try_acquire());
/// s.release()?;
/// assert_eq!(s.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Semaphore {
    seg: Segment,
}

segment_object!(Semaphore, |_: &Header| sem_spec(ObjectKind::Semaphore));

impl Semaphore {
    fn from_segment(seg: Segment) -> Self {
        Semaphore { seg }
    }

    /// A new anonymous semaphore with `value` units.
    pub fn new(value: u32) -> Result<Semaphore, ShmError> {
        create_sem(ObjectKind::Semaphore, None, value, 0).map(Semaphore::from_segment)
    }

    /// A new named semaphore.
    pub fn create(name: &str, value: u32) -> Result<Semaphore, ShmError> {
        create_sem(ObjectKind::Semaphore, Some(name), value, 0).map(Semaphore::from_segment)
    }

    /// Attaches to a named semaphore.
    pub fn open(name: &str) -> Result<Semaphore, ShmError> {
        Segment::open(name, |_| sem_spec(ObjectKind::Semaphore)).map(Semaphore::from_segment)
    }

    semaphore_methods!();

    /// V: returns one unit, waking a waiter if any; an error (nothing
    /// changed) if the value would pass `u32::MAX`.
    pub fn release(&self) -> Result<(), OverReleaseError> {
        sem_release(sem_state(&self.seg), 1)
    }
}

/// A semaphore that may not be released above its initial value (Python's
/// `BoundedSemaphore`): over-release is an [`OverReleaseError`].
///
/// ```
/// use mpkit::sync::{BoundedSemaphore, OverReleaseError};
/// let s = BoundedSemaphore::new(1)?;
/// assert_eq!(s.release(), Err(OverReleaseError { limit: 1 }));
/// s.acquire()?;
/// assert_eq!(s.release(), Ok(()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BoundedSemaphore {
    seg: Segment,
}

segment_object!(BoundedSemaphore, |_: &Header| sem_spec(
    ObjectKind::BoundedSemaphore
));

impl BoundedSemaphore {
    fn from_segment(seg: Segment) -> Self {
        BoundedSemaphore { seg }
    }

    /// A new anonymous bounded semaphore with `value` units (at least 1).
    pub fn new(value: u32) -> Result<BoundedSemaphore, ShmError> {
        create_sem(ObjectKind::BoundedSemaphore, None, value, value.max(1))
            .map(BoundedSemaphore::from_segment)
    }

    /// A new named bounded semaphore.
    pub fn create(name: &str, value: u32) -> Result<BoundedSemaphore, ShmError> {
        create_sem(
            ObjectKind::BoundedSemaphore,
            Some(name),
            value,
            value.max(1),
        )
        .map(BoundedSemaphore::from_segment)
    }

    /// Attaches to a named bounded semaphore.
    pub fn open(name: &str) -> Result<BoundedSemaphore, ShmError> {
        Segment::open(name, |_| sem_spec(ObjectKind::BoundedSemaphore))
            .map(BoundedSemaphore::from_segment)
    }

    semaphore_methods!();

    /// V: returns one unit; an error (nothing changed) if that would
    /// exceed the initial value (Python's `ValueError`).
    pub fn release(&self) -> Result<(), OverReleaseError> {
        sem_release(sem_state(&self.seg), 1)
    }
}
