//! Robust, process-shared pthread mutexes: the kernel-backed lock that
//! mpkit's locks are built on, because only the kernel (walking a dead
//! thread's robust list) can tell waiters reliably that the owner died.
//!
//! # References
//! - [`pthread_mutexattr_setrobust(3)`](https://man7.org/linux/man-pages/man3/pthread_mutexattr_setrobust.3.html),
//!   [`pthread_mutex_consistent(3)`](https://man7.org/linux/man-pages/man3/pthread_mutex_consistent.3.html)
//! - [`pthread_mutexattr_setpshared(3)`](https://man7.org/linux/man-pages/man3/pthread_mutexattr_setpshared.3.html)
//! - [`get_robust_list(2)`](https://man7.org/linux/man-pages/man2/get_robust_list.2.html)
//!   (how the kernel finds what a dead thread held)

use std::io;
use std::mem::MaybeUninit;
use std::time::Instant;

use rustix::time::ClockId;

use super::time::{Deadline, abs_timespec};

/// The kernel-backed robust mutex mpkit's locks are built on: a glibc
/// `pthread_mutex_t` initialised process-shared and robust. When its owner
/// thread dies, the kernel (walking the thread's robust list at exit) marks
/// it and wakes a waiter, whose lock call then reports
/// [`MutexLock::OwnerDied`]. Death detection is the kernel's, so pid reuse
/// cannot fool it.
pub(crate) type RawMutex = libc::pthread_mutex_t;

/// What a lock attempt on a [`RawMutex`] gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MutexLock {
    /// Acquired.
    Acquired,
    /// Acquired, and the previous owner died holding it (already made
    /// consistent again: the caller repairs the protected data).
    OwnerDied,
    /// Not acquired before the deadline (or, for `try`, it is held).
    Busy,
    /// This thread already holds this (non-recursive) mutex.
    Deadlock,
}

unsafe extern "C" {
    /// glibc ≥ 2.30: `pthread_mutex_timedlock` on a chosen clock.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

fn errno_result(r: libc::c_int, what: &str) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        let e = io::Error::from_raw_os_error(r);
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Initialises a robust, process-shared mutex at `m`; `recursive` makes it
/// re-entrant for its owner thread, otherwise it is error-checking (a second
/// lock by the owner is [`MutexLock::Deadlock`], unlock by another thread
/// fails).
///
/// # Safety
/// `m` points to writable memory for a `pthread_mutex_t` that no thread is
/// using (it is being created).
pub(crate) unsafe fn mutex_init(m: *mut RawMutex, recursive: bool) -> io::Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: attr is initialised by pthread_mutexattr_init before any other
    // use and destroyed at the end; m is valid per the caller's contract.
    unsafe {
        errno_result(
            libc::pthread_mutexattr_init(attr.as_mut_ptr()),
            "pthread_mutexattr_init",
        )?;
        let a = attr.as_mut_ptr();
        let kind = if recursive {
            libc::PTHREAD_MUTEX_RECURSIVE
        } else {
            libc::PTHREAD_MUTEX_ERRORCHECK
        };
        let r = errno_result(libc::pthread_mutexattr_settype(a, kind), "settype")
            .and_then(|()| {
                errno_result(
                    libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED),
                    "setpshared",
                )
            })
            .and_then(|()| {
                errno_result(
                    libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST),
                    "setrobust",
                )
            })
            .and_then(|()| errno_result(libc::pthread_mutex_init(m, a), "pthread_mutex_init"));
        libc::pthread_mutexattr_destroy(a);
        r
    }
}

fn classify_lock(r: libc::c_int, m: *mut RawMutex) -> io::Result<MutexLock> {
    match r {
        0 => Ok(MutexLock::Acquired),
        libc::EOWNERDEAD => {
            // SAFETY: we own the mutex now (EOWNERDEAD hands it over).
            let r = unsafe { libc::pthread_mutex_consistent(m) };
            errno_result(r, "pthread_mutex_consistent")?;
            Ok(MutexLock::OwnerDied)
        }
        libc::EBUSY | libc::ETIMEDOUT => Ok(MutexLock::Busy),
        libc::EDEADLK => Ok(MutexLock::Deadlock),
        e => errno_result(e, "locking a robust mutex").map(|()| MutexLock::Busy),
    }
}

/// Tries to lock `m` without waiting.
///
/// # Safety
/// `m` points to a mutex initialised by [`mutex_init`] and stays mapped.
pub(crate) unsafe fn mutex_trylock(m: *mut RawMutex) -> io::Result<MutexLock> {
    // SAFETY: per the caller's contract.
    classify_lock(unsafe { libc::pthread_mutex_trylock(m) }, m)
}

/// Locks `m`, waiting until `deadline` (on the monotonic clock).
///
/// # Safety
/// As for [`mutex_trylock`].
pub(crate) unsafe fn mutex_lock(m: *mut RawMutex, deadline: Deadline) -> io::Result<MutexLock> {
    let r = match deadline {
        // SAFETY: per the caller's contract.
        None => unsafe { libc::pthread_mutex_lock(m) },
        Some(d) => {
            let abs = abs_timespec(
                ClockId::Monotonic,
                d.saturating_duration_since(Instant::now()),
            );
            // SAFETY: per the caller's contract; abs is a valid timespec.
            unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &abs) }
        }
    };
    classify_lock(r, m)
}

/// Unlocks `m`. Fails with `EPERM` when this thread does not hold it.
///
/// # Safety
/// As for [`mutex_trylock`].
pub(crate) unsafe fn mutex_unlock(m: *mut RawMutex) -> io::Result<()> {
    // SAFETY: per the caller's contract.
    errno_result(
        unsafe { libc::pthread_mutex_unlock(m) },
        "pthread_mutex_unlock",
    )
}
