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
//! - glibc's `sysdeps/nptl/bits/thread-shared-types.h` and
//!   `nptl/pthreadP.h` (the `__kind` word and its bits, read by
//!   [`mutex_kind`])

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
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

/// The two kinds of mutex mpkit makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MutexType {
    /// A second lock by the owner is [`MutexLock::Deadlock`]; unlock by
    /// another thread fails.
    ErrorCheck,
    /// The owner may lock it again (and unlocks as many times).
    Recursive,
}

/// Offset of glibc's `__data.__kind` in `pthread_mutex_t`: after
/// `__lock`, `__count`, `__owner` and `__nusers` (four 4-byte fields) in
/// both the x86-64 and the generic 64-bit (aarch64) layouts.
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
const KIND_OFFSET: usize = 16;

/// `__kind` bits (glibc's `pthreadP.h`, stable since robust mutexes came,
/// glibc 2.4): the low bits are the type (`PTHREAD_MUTEX_RECURSIVE_NP` 1,
/// `PTHREAD_MUTEX_ERRORCHECK_NP` 2), `PTHREAD_MUTEX_ROBUST_NORMAL_NP` (16)
/// marks a robust mutex, `PTHREAD_MUTEX_PSHARED_BIT` (128) a
/// process-shared one. glibc's `pthread_mutex_init` stores exactly these
/// bits and no lock operation changes them for robust mutexes (lock
/// elision, which would add 256, applies to normal mutexes only).
const KIND_ROBUST: i32 = 16;
const KIND_PSHARED: i32 = 128;

impl MutexType {
    /// The `__kind` word [`mutex_init`] gives a mutex of this type.
    pub(crate) const fn kind(self) -> i32 {
        let ty = match self {
            MutexType::Recursive => libc::PTHREAD_MUTEX_RECURSIVE,
            MutexType::ErrorCheck => libc::PTHREAD_MUTEX_ERRORCHECK,
        };
        ty | KIND_ROBUST | KIND_PSHARED
    }
}

/// The kind word of `m` (glibc's `__data.__kind`: type, robust and
/// process-shared bits), read with one relaxed atomic load, as glibc
/// itself reads it; `None` where the layout of `pthread_mutex_t` is not
/// known (targets other than glibc on x86-64 and aarch64), where nothing
/// can be checked.
///
/// Another process may rewrite the word at any time: compare it with
/// [`MutexType::kind`] before handing the mutex to glibc, which trusts it.
///
/// # Safety
/// `m` points to a mapped, 4-byte aligned `pthread_mutex_t` (its bytes may
/// be anything).
#[inline]
pub(crate) unsafe fn mutex_kind(m: *const RawMutex) -> Option<i32> {
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        // SAFETY: per the caller's contract the word is mapped and aligned
        // (pthread_mutex_t is 8-byte aligned); other processes write it
        // with plain or atomic stores of the same width, so an atomic load
        // sees one of the values written.
        Some(
            unsafe { &*m.cast::<u8>().add(KIND_OFFSET).cast::<AtomicI32>() }
                .load(Ordering::Relaxed),
        )
    }
    #[cfg(not(all(
        target_os = "linux",
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        let _ = m;
        None
    }
}

/// Writes `ty`'s kind word into `m` again, for a holder that found it
/// rewritten: glibc unlocks the way the kind says, and must unlock the way
/// it locked.
///
/// # Safety
/// As for [`mutex_kind`]; this thread holds `m`.
pub(crate) unsafe fn mutex_restore_kind(m: *mut RawMutex, ty: MutexType) {
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    // SAFETY: as in `mutex_kind`.
    unsafe { &*m.cast::<u8>().add(KIND_OFFSET).cast::<AtomicI32>() }
        .store(ty.kind(), Ordering::Relaxed);
    #[cfg(not(all(
        target_os = "linux",
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    let _ = (m, ty);
}

/// The futex word of a robust mutex (glibc's `__data.__lock`, offset 0 in
/// every layout): the owner's thread id in bits 0-29, `FUTEX_WAITERS` and
/// `FUTEX_OWNER_DIED` above, 0 when free. The kernel's robust-futex
/// protocol fixes this format (`futex(2)`, "Robust futexes").
///
/// # Safety
/// As for [`mutex_kind`].
unsafe fn lock_word<'a>(m: *const RawMutex) -> &'a AtomicU32 {
    // SAFETY: per the caller's contract the mutex is mapped and 8-byte
    // aligned; glibc and the kernel access this word atomically.
    unsafe { &*m.cast::<AtomicU32>() }
}

/// The thread id the robust mutex `m` names as its owner, when it is held
/// and not already marked as abandoned (`None` when free, or when its
/// owner died and the kernel marked it: the next lock call recovers it).
/// One relaxed load.
///
/// # Safety
/// As for [`mutex_kind`].
pub(crate) unsafe fn mutex_owner_tid(m: *const RawMutex) -> Option<i32> {
    // SAFETY: per the caller's contract.
    let word = unsafe { lock_word(m) }.load(Ordering::Relaxed);
    let tid = word & libc::FUTEX_TID_MASK;
    (tid != 0 && word & libc::FUTEX_OWNER_DIED == 0).then_some(tid as i32)
}

/// Marks `m` abandoned by `tid`, a thread that no longer exists, exactly as
/// the kernel marks the mutexes of a thread that dies holding them (word
/// set to `FUTEX_OWNER_DIED`, the waiters bit kept, one waiter woken): the
/// next lock call gets it with [`MutexLock::OwnerDied`]. Nothing changes
/// (false) when the word no longer names `tid`.
///
/// # Safety
/// As for [`mutex_kind`]; the caller has checked that `tid` is not a live
/// thread (the kernel would have done this itself for a real one).
pub(crate) unsafe fn mutex_mark_owner_dead(m: *const RawMutex, tid: i32) -> bool {
    // SAFETY: per the caller's contract.
    let word = unsafe { lock_word(m) };
    let now = word.load(Ordering::Relaxed);
    if now & libc::FUTEX_TID_MASK != tid as u32 || now & libc::FUTEX_OWNER_DIED != 0 {
        return false;
    }
    let waiters = now & libc::FUTEX_WAITERS;
    let marked = word
        .compare_exchange(
            now,
            waiters | libc::FUTEX_OWNER_DIED,
            Ordering::SeqCst,
            Ordering::Relaxed,
        )
        .is_ok();
    if marked && waiters != 0 {
        super::futex::futex_wake(word, 1);
    }
    marked
}

fn errno_result(r: libc::c_int, what: &str) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        let e = io::Error::from_raw_os_error(r);
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Initialises a robust, process-shared mutex of type `ty` at `m`.
///
/// # Safety
/// `m` points to writable memory for a `pthread_mutex_t` that no thread is
/// using (it is being created).
pub(crate) unsafe fn mutex_init(m: *mut RawMutex, ty: MutexType) -> io::Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: attr is initialised by pthread_mutexattr_init before any other
    // use and destroyed at the end; m is valid per the caller's contract.
    unsafe {
        errno_result(
            libc::pthread_mutexattr_init(attr.as_mut_ptr()),
            "pthread_mutexattr_init",
        )?;
        let a = attr.as_mut_ptr();
        let kind = match ty {
            MutexType::Recursive => libc::PTHREAD_MUTEX_RECURSIVE,
            MutexType::ErrorCheck => libc::PTHREAD_MUTEX_ERRORCHECK,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind word is where `mutex_kind` looks, and holds what
    /// `MutexType::kind` predicts, for both types, before and after use.
    #[test]
    fn the_kind_word_is_found_and_predicted() {
        for ty in [MutexType::ErrorCheck, MutexType::Recursive] {
            let mut m = MaybeUninit::<RawMutex>::zeroed();
            let p = m.as_mut_ptr();
            // SAFETY: p is a fresh, aligned, zeroed pthread_mutex_t used by
            // this thread only.
            unsafe {
                mutex_init(p, ty).unwrap();
                assert_eq!(mutex_kind(p), Some(ty.kind()), "{ty:?}");
                assert_eq!(mutex_trylock(p).unwrap(), MutexLock::Acquired);
                assert_eq!(mutex_kind(p), Some(ty.kind()), "{ty:?} locked");
                mutex_unlock(p).unwrap();
                libc::pthread_mutex_destroy(p);
            }
        }
        assert_eq!(MutexType::Recursive.kind(), 145);
        assert_eq!(MutexType::ErrorCheck.kind(), 146);
    }
}
