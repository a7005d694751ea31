//! Shared test support: a watchdog that turns a hang into a fast failure.
#![allow(dead_code)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Fails the whole test binary if dropped later than `secs` after creation:
/// kills every child mpkit started for this process, then aborts, so a hang
/// costs seconds instead of CI's limit.
#[must_use = "the watchdog stops watching when dropped"]
pub struct Watchdog {
    done: Arc<(Mutex<bool>, Condvar)>,
}

pub fn watchdog(secs: u64) -> Watchdog {
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let seen = Arc::clone(&done);
    let test = std::thread::current().name().unwrap_or("?").to_string();
    std::thread::spawn(move || {
        let (lock, cvar) = &*seen;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = cvar
            .wait_timeout_while(guard, Duration::from_secs(secs), |done| !*done)
            .unwrap();
        if timeout.timed_out() && !*guard {
            eprintln!(
                "watchdog: test `{test}` still running after {secs} s; killing its children and aborting"
            );
            for child in mpkit::process::active_children() {
                // SAFETY: kill(2) with a pid we spawned and a valid signal.
                unsafe { libc::kill(child.pid(), libc::SIGKILL) };
            }
            std::process::abort();
        }
    });
    Watchdog { done }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.done;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
}

/// Opens a pidfd for any process (not only our children).
pub fn pidfd(pid: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh descriptor we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// Waits until the process behind `pidfd` exits; false on timeout.
pub fn wait_exit(pidfd: &std::os::fd::OwnedFd, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    n == 1
}

/// Waits (bounded) until `cond` holds, checking every few milliseconds.
/// For conditions the kernel offers no notification for (a /proc entry
/// vanishing); the bound makes a failure fast, never a hang.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}
