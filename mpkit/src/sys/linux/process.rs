//! Processes: ids, pidfds (signal and reap a child without pid-reuse
//! races), exit statuses, and liveness as `/proc` tells it.
//!
//! # References
//! - [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html),
//!   [`pidfd_send_signal(2)`](https://man7.org/linux/man-pages/man2/pidfd_send_signal.2.html)
//! - [`waitid(2)`](https://man7.org/linux/man-pages/man2/waitid.2.html) (`P_PIDFD`)
//! - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
//! - [`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use rustix::io::Errno;

use super::errno::io_err;
use super::fd::wait_readable;
use super::rand::random_bytes;
use super::thread::register_atfork;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Exit {
    /// It called `exit(code)` (or returned from `main`).
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It exited, but someone else collected its status (`SIGCHLD` set to
    /// ignore, or a `waitpid(-1)` reaper elsewhere in the program).
    Unknown,
}

/// The id of the calling process.
pub(crate) fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// The id of the calling process's parent (0 when it has none).
pub(crate) fn getppid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

fn pid(p: i32) -> io::Result<rustix::process::Pid> {
    rustix::process::Pid::from_raw(p)
        .ok_or_else(|| io::Error::from_raw_os_error(super::errno::ESRCH))
}

/// Has the kernel SIGKILL the calling process when the *thread* that
/// created it exits (`PR_SET_PDEATHSIG`; kept across `execve`, except into
/// a set-user-id or file-capability program), then checks that `parent`,
/// that creator's process, is still its parent: one that died before the
/// call never sends the signal, and this process has been re-parented
/// (`ESRCH` then). SIGKILL reaches a stopped process too.
///
/// Async-signal-safe (two system calls): meant for between `fork` and
/// `exec`.
///
/// # References
/// - [`prctl(2)`](https://man7.org/linux/man-pages/man2/prctl.2.html)
///   (`PR_SET_PDEATHSIG`)
pub(crate) fn kill_me_when_parent_thread_exits(parent: i32) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(io_err)?;
    if getppid() != parent {
        return Err(io::Error::from_raw_os_error(super::errno::ESRCH));
    }
    Ok(())
}

/// Opens a pidfd for `pid`: a descriptor that stays tied to that process even
/// after its id is reused, becomes readable when it exits, and lets us signal
/// and reap it without races.
pub(crate) fn pidfd_open(p: i32) -> io::Result<OwnedFd> {
    rustix::process::pidfd_open(pid(p)?, rustix::process::PidfdFlags::empty()).map_err(io_err)
}

/// Sends signal number `sig` to the process behind `pidfd`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let sig = signal(sig)?;
    rustix::process::pidfd_send_signal(pidfd, sig).map_err(io_err)
}

/// Sends signal number `sig` to process `p` (`kill(2)`).
pub(crate) fn kill(p: i32, sig: i32) -> io::Result<()> {
    rustix::process::kill_process(pid(p)?, signal(sig)?).map_err(io_err)
}

fn signal(sig: i32) -> io::Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| io::Error::from_raw_os_error(super::errno::EINVAL))
}

/// True when the process behind `pidfd` has exited (it may not be reaped).
pub(crate) fn pidfd_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    wait_readable(pidfd, Some(Instant::now()))
}

/// Reaps the child behind `pidfd` if it has exited (`waitid(P_PIDFD)`).
/// With `block`, waits for it to exit.
pub(crate) fn reap(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<Exit>> {
    use rustix::process::{WaitId, WaitIdOptions};
    let mut opts = WaitIdOptions::EXITED;
    if !block {
        opts |= WaitIdOptions::NOHANG;
    }
    let status = loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
            Err(Errno::INTR) => continue,
            // Already reaped by someone else: once the pidfd says it exited,
            // that is all there is to know.
            Err(Errno::CHILD) if pidfd_exited(pidfd)? => return Ok(Some(Exit::Unknown)),
            r => break r.map_err(io_err)?,
        }
    };
    Ok(status.and_then(|s| {
        if let Some(code) = s.exit_status() {
            Some(Exit::Code(code))
        } else {
            s.terminating_signal().map(Exit::Signal)
        }
    }))
}

/// A child's current state as `waitid(P_PIDFD, … | WNOWAIT)` sees it,
/// without consuming the event: `None` while it runs normally.
pub(crate) fn peek_state(pidfd: BorrowedFd<'_>) -> io::Result<Option<ChildState>> {
    use rustix::process::{WaitId, WaitIdOptions};
    let opts = WaitIdOptions::EXITED
        | WaitIdOptions::STOPPED
        | WaitIdOptions::CONTINUED
        | WaitIdOptions::NOHANG
        | WaitIdOptions::NOWAIT;
    let status = loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
            Err(Errno::INTR) => continue,
            Err(Errno::CHILD) => return Ok(Some(ChildState::Exited)),
            r => break r.map_err(io_err)?,
        }
    };
    Ok(status.map(|s| {
        if s.stopped() {
            ChildState::Stopped(s.stopping_signal().unwrap_or(libc::SIGSTOP))
        } else if s.continued() {
            ChildState::Continued
        } else {
            ChildState::Exited
        }
    }))
}

/// What [`peek_state`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildState {
    /// Stopped by this signal (`SIGSTOP`, `SIGTSTP`, ...).
    Stopped(i32),
    /// Continued (`SIGCONT`) after a stop.
    Continued,
    /// Exited (not necessarily reaped), or already reaped by someone else.
    Exited,
}

/// The real user id of this process.
pub(crate) fn getuid() -> u32 {
    rustix::process::getuid().as_raw()
}

static SELF_START: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static NONCE: AtomicU32 = AtomicU32::new(0);
static SELF_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// State and start time (clock ticks after boot) of process `pid`, from
/// `/proc/<pid>/stat`; `None` when it does not exist or cannot be read.
pub(crate) fn proc_stat(pid: i32) -> Option<(char, u64)> {
    stat_file(&format!("/proc/{pid}/stat")).ok().flatten()
}

/// State and start time from a `/proc` `stat` file: `Ok(None)` when the
/// file does not exist (the process or thread is gone), an error when it
/// cannot be read or parsed (out of descriptors, `hidepid`, ...), which
/// says nothing about the process.
fn stat_file(path: &str) -> io::Result<Option<(char, u64)>> {
    let stat = match std::fs::read_to_string(path) {
        Ok(stat) => stat,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(super::errno::ESRCH) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let parse = || {
        let (_, after_comm) = stat.rsplit_once(')')?;
        let mut fields = after_comm.split_whitespace();
        let state = fields.next()?.chars().next()?;
        // Field 22 (starttime) is the 20th after the command name, the
        // 19th after the state.
        let start = fields.nth(18)?.parse::<u64>().ok()?;
        Some((state, start))
    };
    parse()
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: unparsable")))
}

/// This process's start time (see [`proc_stat`]), read once; `None` when
/// `/proc` cannot tell.
pub(crate) fn self_start_time() -> Option<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    let cached = SELF_START.load(Relaxed);
    if cached != 0 {
        return Some(cached);
    }
    register_atfork();
    let (_, start) = proc_stat(getpid())?;
    // Start times are ticks after boot: a process started in the first
    // tick reads as 0, so store it as 1 (comparisons use the same rule).
    let start = start.max(1);
    SELF_START.store(start, Relaxed);
    Some(start)
}

/// True unless thread `tid` of process `pid`, started at `start` (as from
/// [`self_start_time`]), is known to be gone: the process missing, or its
/// pid now used by a later process, or the thread missing or a zombie. The
/// process's own state is not asked: a process whose main thread exited
/// shows as a zombie while its other threads run.
///
/// `/proc` tells all of that but needs a descriptor. When it cannot be
/// read (the caller is out of descriptors, `/proc` is mounted with
/// `hidepid`, or absent), `tgkill(pid, tid, 0)`, which needs none, still
/// tells a thread that no longer exists; only a pid and thread id both
/// reused since go unnoticed then, so such a thread counts as alive:
/// waiting (up to the caller's deadline) is safe, declaring a live thread
/// dead is not.
pub(crate) fn thread_alive(pid: i32, start: u64, tid: i32) -> bool {
    if pid <= 0 || tid <= 0 {
        return false;
    }
    let gone = |state: char| matches!(state, 'Z' | 'X' | 'x');
    match stat_file(&format!("/proc/{pid}/stat")) {
        // The leader's start time stays readable while it is a zombie.
        Ok(Some((_, started))) if started.max(1) != start => false,
        Ok(Some(_)) => match stat_file(&format!("/proc/{pid}/task/{tid}/stat")) {
            Ok(Some((state, _))) => !gone(state),
            Ok(None) => false,
            Err(_) => thread_exists(pid, tid),
        },
        // /proc is there and the process is not: gone.
        Ok(None) if std::path::Path::new("/proc/self/stat").exists() => false,
        Ok(None) | Err(_) => thread_exists(pid, tid),
    }
}

/// Bits of a [`process_token`] that hold the pid (Linux keeps pids below
/// 2^22, `PID_MAX_LIMIT`).
pub(crate) const TOKEN_PID_BITS: u32 = 22;

/// A number naming this process among all processes of the boot, past
/// its death: its start time (clock ticks after boot) above its pid, in
/// [`TOKEN_PID_BITS`]. Never 0; `None` when `/proc` cannot tell the start
/// time. [`token_alive`] tells whether its process still runs.
/// Cached: queues ask on every get.
pub(crate) fn process_token() -> Option<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    let cached = SELF_TOKEN.load(Relaxed);
    if cached != 0 {
        return Some(cached);
    }
    let start = self_start_time()?;
    let pid = getpid() as u64;
    let token = (pid < 1 << TOKEN_PID_BITS && start < 1 << (64 - TOKEN_PID_BITS))
        .then_some(start << TOKEN_PID_BITS | pid)?;
    SELF_TOKEN.store(token, Relaxed);
    Some(token)
}

/// The pid in a [`process_token`].
pub(crate) fn token_pid(token: u64) -> i32 {
    (token & ((1 << TOKEN_PID_BITS) - 1)) as i32
}

/// [`process_alive`] for the process a [`process_token`] names.
pub(crate) fn token_alive(token: u64) -> bool {
    process_alive(token_pid(token), token >> TOKEN_PID_BITS)
}

/// Whether `tid` names a thread that exists and has not exited, whatever
/// its process (its `/proc/<tid>/stat`, which the kernel answers for any
/// thread id, not only for processes): for a thread id read from shared
/// memory, with no process to go with it ([`thread_alive`] when there is
/// one). Where `/proc` cannot tell, it counts as alive: callers use a dead
/// thread as leave to take over what it held. Thread ids are those of this
/// PID namespace.
pub(crate) fn tid_alive(tid: i32) -> bool {
    if tid <= 0 {
        return false;
    }
    match stat_file(&format!("/proc/{tid}/stat")) {
        Ok(Some((state, _))) => !matches!(state, 'Z' | 'X' | 'x'),
        Ok(None) => !std::path::Path::new("/proc/self/stat").exists(),
        Err(_) => true,
    }
}

/// True unless process `pid`, started at `start` (as from
/// [`self_start_time`]), is known to be gone: missing, its pid now used by
/// a later process, or every one of its threads exited (a zombie waiting
/// to be reaped). A leader that shows as a zombie while other threads of
/// its process still run counts as alive.
///
/// When `/proc` cannot be read (out of descriptors, `hidepid`), the null
/// signal `kill(pid, 0)`, which needs no descriptor, still tells a pid
/// nobody uses; a reused pid goes unnoticed then and counts as alive, the
/// safe side for callers that give back what a dead process held.
///
/// # References
/// - [`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)
/// - [`kill(2)`](https://man7.org/linux/man-pages/man2/kill.2.html)
pub(crate) fn process_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let gone = |state: char| matches!(state, 'Z' | 'X' | 'x');
    match stat_file(&format!("/proc/{pid}/stat")) {
        Ok(Some((_, started))) if started.max(1) != start => false,
        Ok(Some((state, _))) if !gone(state) => true,
        // The leader is a zombie: the process lives while any thread does.
        Ok(Some(_)) => match std::fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(tasks) => tasks.flatten().any(|task| {
                let tid = task.file_name();
                match stat_file(&format!("/proc/{pid}/task/{}/stat", tid.to_string_lossy())) {
                    Ok(Some((state, _))) => !gone(state),
                    Ok(None) => false,
                    Err(_) => true,
                }
            }),
            Err(_) => true,
        },
        Ok(None) if std::path::Path::new("/proc/self/stat").exists() => false,
        Ok(None) | Err(_) => {
            // SAFETY: kill takes two integers and reads no memory of ours;
            // signal 0 only checks that the process exists.
            let r = unsafe { libc::kill(pid, 0) };
            // Refused with EPERM: another user's process, which exists.
            r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
        }
    }
}

/// Whether process `pid` has a thread `tid` (a zombie's included), asked
/// with a null signal, which needs no descriptor: `tgkill(pid, tid, 0)`
/// fails with `ESRCH` only when there is no such thread. A thread of another
/// user (`EPERM`) exists.
///
/// # References
/// - [`tgkill(2)`](https://man7.org/linux/man-pages/man2/tgkill.2.html)
fn thread_exists(pid: i32, tid: i32) -> bool {
    // SAFETY: tgkill takes three integers and reads no memory of ours;
    // signal 0 only checks that the thread exists and may be signalled.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A random number fixed for this process (new after `fork`), never 0: told
/// apart from other processes whose threads may later reuse a thread id.
pub(super) fn process_nonce() -> u32 {
    use std::sync::atomic::Ordering::Relaxed;
    let cached = NONCE.load(Relaxed);
    if cached != 0 {
        return cached;
    }
    register_atfork();
    let mut b = [0u8; 4];
    let n = match random_bytes(&mut b) {
        Ok(()) => u32::from_ne_bytes(b),
        // No random bytes (seccomp, an early-boot kernel): the pid alone
        // would repeat when the pid is reused, so mix in the clock.
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let mixed =
                (nanos ^ (getpid() as u64).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (mixed >> 32) as u32
        }
    }
    .max(1);
    NONCE.store(n, Relaxed);
    n
}

/// How many clock ticks make a second (`_SC_CLK_TCK`): the unit of the
/// start times [`proc_stat`] reads.
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// After `fork`: the child is a new process, so the cached start time and
/// nonce belong to the parent.
pub(super) fn forget_after_fork() {
    use std::sync::atomic::Ordering::Relaxed;
    SELF_START.store(0, Relaxed);
    SELF_TOKEN.store(0, Relaxed);
    NONCE.store(0, Relaxed);
}
