//! Signals, as far as mpkit's own writes need them: `SIGPIPE`'s
//! disposition, a write that turns a would-be `SIGPIPE` into `EPIPE`, and
//! the range of real-time signal numbers. Handlers are signal-hook's
//! business (the public `signal` module builds on it), never a hand-rolled `sigaction` here,
//! with one exception: `fault.rs`'s `SIGBUS` handler, which must give a fault that is not
//! mpkit's the default action (signal-hook would return from it, and the fault would recur
//! forever).
//!
//! # References
//! - [`signal(7)`](https://man7.org/linux/man-pages/man7/signal.7.html)
//! - [`sigaction(2)`](https://man7.org/linux/man-pages/man2/sigaction.2.html),
//!   [`pthread_sigmask(3)`](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html),
//!   [`sigtimedwait(2)`](https://man7.org/linux/man-pages/man2/sigtimedwait.2.html)

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;

use super::fd::writev;

/// Whether `SIGPIPE` is ignored in this process (as the Rust runtime sets it
/// before `main`; C hosts and some Rust configurations leave the default,
/// which kills the process on a write to a pipe without readers).
pub(crate) fn sigpipe_ignored() -> bool {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries the current one into `old`.
    let ok = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), old.as_mut_ptr()) } == 0;
    // SAFETY: zero-initialised, and filled in on success.
    ok && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// [`writev`] for a process where `SIGPIPE` is not ignored: blocks it for
/// this thread around the write and consumes the one the write raised, so a
/// vanished reader is `EPIPE` instead of death (as curl and OpenSSL do).
pub(crate) fn writev_no_sigpipe(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: the sigset functions only touch the local sets passed to them;
    // pthread_sigmask and sigtimedwait read/write those sets and the thread's
    // mask, which is restored before returning.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        let set = set.assume_init();
        let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr());
        let mut pending = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigpending(pending.as_mut_ptr());
        let already = libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1;
        let r = writev(fd, bufs);
        if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) && !already {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == -1
                && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
        r
    }
}

/// Sets the disposition of `SIGPIPE` to "ignore", as the Rust runtime does
/// before `main`, so writes to a vanished reader fail with `EPIPE`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: SIG_IGN is a valid disposition and installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The lowest real-time signal number this process may use (`SIGRTMIN`:
/// glibc keeps the first few for itself, so it is not a constant).
pub(crate) fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

/// The highest real-time signal number (`SIGRTMAX`).
pub(crate) fn sigrtmax() -> i32 {
    libc::SIGRTMAX()
}
