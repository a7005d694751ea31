//! Child processes that run a Rust function: [`Process`] (Python's
//! `multiprocessing.Process`).
//!
//! ```
//! use mpkit::Process;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let child = Process::spawn(square, 12)?;
//! assert_eq!(child.join()?, 144);
//!
//! // Non-capturing closures work too, and arguments may carry handles.
//! let (mut here, there) = mpkit::pipe(true)?;
//! let echo = Process::spawn(|mut c: mpkit::Connection| {
//!     let s: String = c.recv().unwrap();
//!     c.send(&s.to_uppercase()).unwrap();
//! }, there)?;
//! here.send("hello")?;
//! assert_eq!(here.recv::<String>()?, "HELLO");
//! echo.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How a child starts ("spawn", never `fork`)
//!
//! The child is a fresh `exec` of the running executable (`/proc/self/exe`),
//! as Python's default "spawn" start method does, because `fork` in a
//! multithreaded program is unsound. The child inherits stdin from
//! `/dev/null`, stdout and stderr from the parent, and exactly one more
//! descriptor: its end of a private socket pair. Every other descriptor is
//! made close-on-exec first. The descriptors of handles in the arguments
//! travel over that socket (`SCM_RIGHTS`), and the result comes back the
//! same way.
//!
//! **No set-up code is needed in `main`.** mpkit puts a constructor in
//! `.init_array` that runs before `main` in every binary linking it: in a
//! child it runs the function and exits, so `main` never runs there; in any
//! other process it returns at once. That is why integration tests,
//! examples, doctests and benchmarks can spawn exactly like a program can.
//!
//! # Limitations
//! - The function must be a plain `fn(A) -> R` (a non-capturing closure
//!   coerces to one) that lives in the executable, not in a separately
//!   loaded shared library: [`SpawnError::ForeignFunction`] otherwise.
//! - Code in the child runs before its `main`: anything `main` would set up
//!   (a logger, a global) must be set up by the function itself.
//! - A non-daemon child outlives its parent if the parent exits first, as
//!   with Python; a daemon child is killed when its parent process ends,
//!   however it ends (a thread of its own watches the parent through a
//!   pidfd, so a daemon stopped with `SIGSTOP` at that moment dies only
//!   once it is continued; pool workers are killed by the kernel instead).
//! - The child runs from mpkit's `.init_array` entry: constructors of
//!   other crates (`ctor`, `inventory`) that come later in link order have
//!   not run yet, and the Rust runtime's `main` set-up (stack-overflow
//!   handler, thread name) is skipped.
//! - A set-user-id or file-capability program never acts as a child (its
//!   environment is not trusted), and a child only obeys the process at the
//!   other end of its bootstrap socket when that runs as the same user and
//!   is its parent (or was: `spawn` does not wait for the child to start, so
//!   a parent that exits at once leaves a re-parented child, which accepts
//!   a bootstrap whose sender has exited).
//! - Each dropped, still-running `Process` costs a small reaper thread
//!   until the child exits.
//! - A panic in the child, in the function or in the serde code or
//!   destructor of its arguments or result, is [`JoinError::Panicked`]
//!   naming the [`PanicStage`]. Where Rust itself aborts instead of
//!   unwinding, the child dies of `SIGABRT` and `join` reports
//!   [`JoinError::Signaled`] with signal 6: a program built with
//!   `panic = "abort"`, a destructor that panics while a panic unwinds, or
//!   a panic hook that panics.

pub(crate) mod child;
mod error;

pub use error::{JoinError, PanicStage, SpawnError};

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, Postcard};
use crate::connection::{RawConnection, RecvError};
use crate::handle;
use crate::signal::Signal;
use crate::sys::{self, Deadline, Exit};
use child::{Bootstrap, Report};

/// Options for a child process: its name and whether it is a daemon.
///
/// ```
/// use mpkit::process::{Builder, current_process};
///
/// let child = Builder::new()
///     .name("worker-7")
///     .daemon(true)
///     .spawn(|(): ()| current_process().name().to_string(), ())?;
/// assert_eq!(child.name(), "worker-7");
/// assert_eq!(child.join()?, "worker-7");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    die_with_thread: bool,
}

impl Builder {
    /// Default options: a generated name (`Process-N`, as in Python), not a
    /// daemon.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the child (what [`Process::name`] and, in the child,
    /// [`current_process`] report).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Makes the child a daemon: it is killed when this process ends, even
    /// when this process is killed with SIGKILL.
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// Has the kernel SIGKILL the child when the thread calling
    /// [`spawn`](Self::spawn) exits (`PR_SET_PDEATHSIG`, set before the
    /// child's `exec`), or its whole process does, however it ends: unlike
    /// the daemon watcher thread, this reaches a child that is stopped
    /// (`SIGSTOP`) at that moment. Only for a caller whose spawning thread
    /// outlives the child (the pool's dispatcher): a child spawned from a
    /// short-lived thread would die with it.
    pub(crate) fn die_with_thread(mut self, yes: bool) -> Builder {
        self.die_with_thread = yes;
        self
    }

    /// Starts a child process that runs `f(args)`.
    ///
    /// `args` is encoded here, in the parent: a value that cannot be encoded
    /// is a [`SpawnError::ArgsEncode`] naming its type, and no process starts.
    /// Handles in `args` are moved to the child; this process's copies are
    /// closed when `args` is dropped, at the end of this call.
    ///
    /// # Panics
    /// Panics of the caller's own code reach the caller, as they would from
    /// any other call: when `A`'s `Serialize` panics, no process was started;
    /// when dropping `args` panics (after the child got its copy), the child
    /// is killed and reaped before the panic continues, so no process is
    /// left behind without a `Process` to join it. Panics in the child (the
    /// arguments' `Deserialize`, the function, the result's `Serialize`) are
    /// [`JoinError::Panicked`].
    pub fn spawn<A, R>(self, f: fn(A) -> R, args: A) -> Result<Process<R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        child::keep_entry();
        // The child re-executes the main program and runs the function before
        // its `main`: mpkit and the function must both be part of it, not of
        // a shared library loaded later (whose code the child would not have
        // at that point).
        let anchor = child::anchor as fn() -> u32 as usize;
        let main = sys::main_executable_base();
        if let Some(main) = main {
            let same = |addr| sys::object_base(addr).is_none_or(|base| base == main);
            if !same(anchor) || !same(f as usize) {
                return Err(SpawnError::ForeignFunction);
            }
        }
        let mut encoded = Vec::new();
        let (result, fds) = handle::collect(|| Postcard::encode(&args, &mut encoded));
        result.map_err(|source| SpawnError::ArgsEncode {
            type_name: std::any::type_name::<A>(),
            source,
        })?;
        if fds.len() > sys::MAX_FDS_PER_MESSAGE {
            return Err(SpawnError::TooManyHandles(fds.len()));
        }

        let me = identity();
        let n = me.children.fetch_add(1, Ordering::Relaxed) + 1;
        let mut ident = me.ident.clone();
        ident.push(n);
        let name = self.name.unwrap_or_else(|| default_name(&ident));
        let trampoline: child::Trampoline = child::trampoline::<A, R>;
        let boot = Bootstrap {
            version: child::BOOTSTRAP_VERSION,
            check: child::check_value(),
            trampoline: child::offset_of(trampoline as usize),
            function: child::offset_of(f as usize),
            name: name.clone(),
            ident,
            daemon: self.daemon,
            parent_pid: sys::getpid(),
            parent_name: me.name.clone(),
            args: encoded,
        };
        let mut msg = Vec::new();
        Postcard::encode(&boot, &mut msg).map_err(|e| io::Error::other(e.to_string()))?;

        let (parent_end, mut child_end) = sys::socketpair()?;
        if child_end.as_raw_fd() <= 2 {
            // With stdio closed the pair may take 0-2, which the child's
            // stdio set-up would overwrite: move it above.
            child_end = sys::dup(child_end.as_fd())?;
        }
        let child_raw = child_end.as_raw_fd();
        let die_with_thread = self.die_with_thread;
        let parent_pid = sys::getpid();
        let mut cmd = Command::new("/proc/self/exe");
        let mut argv = std::env::args_os();
        if let Some(arg0) = argv.next() {
            cmd.arg0(arg0);
        }
        cmd.args(argv)
            .env(child::ENV_VAR, child_raw.to_string())
            .stdin(Stdio::null());
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe fcntl/close_range/prctl/getppid calls.
        unsafe {
            cmd.pre_exec(move || {
                sys::cloexec_all_from_3();
                if die_with_thread {
                    sys::kill_me_when_parent_thread_exits(parent_pid)?;
                }
                sys::clear_cloexec_raw(child_raw)
            });
        }
        let mut spawned = cmd.spawn()?;
        drop(child_end);
        let pid = spawned.id() as i32;
        // The child cannot exit before it reads the bootstrap we have not sent
        // yet (short of crashing), so its pid is still its own: the pidfd pins
        // the right process.
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = spawned.kill();
                let _ = spawned.wait();
                return Err(e.into());
            }
        };
        drop(spawned); // std's Child does not wait on drop; we reap via pidfd.

        let shared = Arc::new(ChildShared {
            pid,
            name,
            daemon: self.daemon,
            pidfd,
        });
        children()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&shared));
        let abandon = |e: io::Error| {
            let _ = sys::pidfd_send_signal(shared.pidfd.as_fd(), Signal::KILL.number());
            let _ = sys::reap(shared.pidfd.as_fd(), true);
            forget_child(&shared);
            SpawnError::Io(e)
        };
        let mut chan = RawConnection::new(parent_end, true, true, true);
        // A child that died before reading its bootstrap shows up at join as
        // its exit status; nothing to report here.
        match chan.send_message(&msg, &fds) {
            Ok(()) | Err(crate::SendError::Disconnected) => {}
            Err(crate::SendError::Io(e)) => return Err(abandon(e)),
            Err(e) => return Err(abandon(io::Error::other(e.to_string()))),
        }
        let process = Process {
            shared,
            chan: Some(chan),
            report: None,
            exit: None,
            joined: false,
            _result: PhantomData,
        };
        // Dropping the arguments runs their destructors, which are user code.
        // If one panics, the caller gets that panic and no `Process`: the
        // child it could never join is not left running behind its back.
        if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(args))) {
            let _ = sys::pidfd_send_signal(process.shared.pidfd.as_fd(), Signal::KILL.number());
            let mut process = process;
            if let Ok(Some(exit)) = sys::reap(process.shared.pidfd.as_fd(), true) {
                process.exit = Some(exit);
                forget_child(&process.shared);
            }
            drop(process);
            std::panic::resume_unwind(panic);
        }
        Ok(process)
    }
}

/// A child's state, from [`Process::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Running (or continued after a stop).
    Running,
    /// Stopped by this signal (`SIGSTOP`, `SIGTSTP`, …).
    Stopped(crate::signal::Signal),
    /// Exited; `join` tells how.
    Exited,
}

/// What the parent and the registry of children share about one child.
struct ChildShared {
    pid: i32,
    name: String,
    daemon: bool,
    pidfd: OwnedFd,
}

/// Children started by this process and not reaped yet.
fn children() -> &'static Mutex<Vec<Arc<ChildShared>>> {
    static CHILDREN: Mutex<Vec<Arc<ChildShared>>> = Mutex::new(Vec::new());
    &CHILDREN
}

fn forget_child(child: &Arc<ChildShared>) {
    children()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|c| !Arc::ptr_eq(c, child));
}

/// A child process running a function that returns `R`.
///
/// Dropping a `Process` that was never joined does not kill the child and
/// leaves no zombie: a small background thread reaps it when it exits.
pub struct Process<R> {
    shared: Arc<ChildShared>,
    /// Our end of the private socket; `None` once end of file was seen.
    chan: Option<RawConnection>,
    report: Option<(Vec<u8>, Vec<OwnedFd>)>,
    exit: Option<Exit>,
    joined: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.shared.pid)
            .field("name", &self.shared.name)
            .field("daemon", &self.shared.daemon)
            .field("exit", &self.exit)
            .finish()
    }
}

impl Process<()> {
    /// Starts `f(args)` in a child process with default options; see
    /// [`Builder::spawn`].
    pub fn spawn<A, R>(f: fn(A) -> R, args: A) -> Result<Process<R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Builder::new().spawn(f, args)
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// Waits for the child to end and returns what its function returned, or
    /// how it ended otherwise (see [`JoinError`]).
    ///
    /// # Panics
    /// When `R`'s `Deserialize` panics on the result, the panic reaches the
    /// caller (it is this process's code), with the child already reaped and
    /// the descriptors that came with the result closed; a later join
    /// returns [`JoinError::AlreadyJoined`].
    pub fn join(mut self) -> Result<R, JoinError> {
        self.join_deadline(None)
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with
    /// [`JoinError::Timeout`], leaving the child running and this handle
    /// usable.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mpkit::process::{JoinError, Process};
    ///
    /// let mut child = Process::spawn(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000)?;
    /// assert!(matches!(child.join_timeout(Duration::from_millis(10)), Err(JoinError::Timeout)));
    /// child.kill()?;
    /// assert!(matches!(child.join_timeout(Duration::from_secs(10)), Err(JoinError::Signaled { signal: 9 })));
    /// assert_eq!(child.exitcode(), Some(-9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, JoinError> {
        self.join_deadline(sys::deadline_after(Some(timeout)))
    }

    fn join_deadline(&mut self, deadline: Deadline) -> Result<R, JoinError> {
        if self.joined {
            return Err(JoinError::AlreadyJoined);
        }
        self.wait_exit(deadline)?;
        self.joined = true;
        match self.report.take() {
            Some((bytes, fds)) => self.decode_report(&bytes, fds),
            None => Err(match self.exit {
                Some(Exit::Signal(signal)) => JoinError::Signaled { signal },
                Some(Exit::Code(code)) => JoinError::Exited { code },
                Some(Exit::Unknown) => JoinError::StatusUnavailable,
                None => unreachable!("wait_exit returned before the child exited"),
            }),
        }
    }

    fn decode_report(&self, bytes: &[u8], fds: Vec<OwnedFd>) -> Result<R, JoinError> {
        let report: Report =
            Postcard::decode(bytes).map_err(|e| io::Error::other(e.to_string()))?;
        match report {
            Report::Returned(value) => handle::provide(fds, || Postcard::decode::<R>(&value))
                .map_err(|source| JoinError::ResultDecode {
                    type_name: std::any::type_name::<R>(),
                    source,
                }),
            Report::Panicked { stage, message } => Err(JoinError::Panicked { stage, message }),
            Report::ArgsDecode { type_name, message } => {
                Err(JoinError::ArgsDecode { type_name, message })
            }
            Report::ResultEncode { type_name, message } => {
                Err(JoinError::ResultEncode { type_name, message })
            }
            Report::BadExecutable(why) => Err(JoinError::BadExecutable(why)),
        }
    }
}

impl<R> Process<R> {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.shared.pid
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.shared.daemon
    }

    /// A descriptor that becomes readable when the child exits (its pidfd;
    /// Python's `sentinel`), for `poll`/`epoll` or [`net::wait`](crate::net::wait).
    pub fn sentinel(&self) -> std::os::fd::BorrowedFd<'_> {
        self.shared.pidfd.as_fd()
    }

    /// True while the child has not exited. Never fooled by pid reuse: it
    /// asks the child's pidfd. It also takes in whatever the child has sent
    /// so far, so a child with a large result is never stuck waiting for
    /// `join`.
    pub fn is_alive(&mut self) -> bool {
        let _ = self.pump();
        self.exit.is_none() && !sys::pidfd_exited(self.shared.pidfd.as_fd()).unwrap_or(true)
    }

    /// The exit code once the child has ended, `None` while it runs
    /// (Python's `exitcode`): 0 after a normal return, 1 after a panic, the
    /// code passed to `exit`, or `-N` when signal `N` ended it. Also `None`
    /// if the status was collected elsewhere ([`JoinError::StatusUnavailable`]).
    pub fn exitcode(&mut self) -> Option<i32> {
        if self.exit.is_none() {
            let _ = self.pump();
            let _ = self.try_reap();
        }
        self.exit.and_then(|e| match e {
            Exit::Code(c) => Some(c),
            Exit::Signal(s) => Some(-s),
            Exit::Unknown => None,
        })
    }

    /// Sends `signal` to the child (through its pidfd). Does nothing if it
    /// already ended.
    pub fn send_signal(&self, signal: crate::signal::Signal) -> io::Result<()> {
        self.signal(signal.number())
    }

    /// Suspends the child (`SIGSTOP`); [`resume`](Self::resume) continues it.
    pub fn suspend(&self) -> io::Result<()> {
        self.signal(Signal::STOP.number())
    }

    /// Continues a suspended child (`SIGCONT`).
    pub fn resume(&self) -> io::Result<()> {
        self.signal(Signal::CONT.number())
    }

    /// The child's state now: running, stopped (by which signal), or exited
    /// (not yet joined). Asked of the kernel through the pidfd, without
    /// consuming anything `join` needs.
    ///
    /// ```
    /// use mpkit::process::{Process, ProcessState};
    /// let mut child = Process::spawn(|s: u64| std::thread::sleep(std::time::Duration::from_secs(s)), 60)?;
    /// child.suspend()?;
    /// while child.state() != ProcessState::Stopped(mpkit::signal::Signal::STOP) {
    ///     std::thread::yield_now();
    /// }
    /// child.resume()?;
    /// child.kill()?;
    /// let _ = child.join();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(&self) -> ProcessState {
        if self.exit.is_some() {
            return ProcessState::Exited;
        }
        match sys::peek_state(self.shared.pidfd.as_fd()) {
            Ok(None) | Ok(Some(sys::ChildState::Continued)) => ProcessState::Running,
            Ok(Some(sys::ChildState::Stopped(sig))) => ProcessState::Stopped(
                crate::signal::Signal::from_number(sig).unwrap_or(crate::signal::Signal::STOP),
            ),
            Ok(Some(sys::ChildState::Exited)) | Err(_) => ProcessState::Exited,
        }
    }

    /// Sends SIGTERM (Python's `terminate`). Does nothing if it already ended.
    pub fn terminate(&self) -> io::Result<()> {
        self.signal(Signal::TERM.number())
    }

    /// Sends SIGKILL (Python's `kill`). Does nothing if it already ended.
    pub fn kill(&self) -> io::Result<()> {
        self.signal(Signal::KILL.number())
    }

    /// Sends signal number `sig` to the child (through its pidfd, so never to
    /// a process that reused its id). Does nothing if it already ended.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        match sys::pidfd_send_signal(self.shared.pidfd.as_fd(), sig) {
            Err(e) if e.raw_os_error() == Some(sys::ESRCH) => Ok(()),
            r => r,
        }
    }

    /// Reaps the child if it has exited, without blocking.
    fn try_reap(&mut self) -> io::Result<bool> {
        if self.exit.is_some() {
            return Ok(true);
        }
        if let Some(exit) = sys::reap(self.shared.pidfd.as_fd(), false)? {
            self.exit = Some(exit);
            forget_child(&self.shared);
        }
        Ok(self.exit.is_some())
    }

    /// Reads whatever the child has sent so far, without blocking.
    fn pump(&mut self) -> Result<(), JoinError> {
        let Some(chan) = self.chan.as_mut() else {
            return Ok(());
        };
        if self.report.is_some() {
            return Ok(());
        }
        match chan.recv_with_fds(Some(Instant::now())) {
            Ok(report) => self.report = Some(report),
            Err(RecvError::Timeout) => {}
            Err(RecvError::Io(e)) => return Err(JoinError::Io(e)),
            // End of file, or a report cut short by the child's death: the
            // exit status says what happened.
            Err(_) => self.chan = None,
        }
        Ok(())
    }

    /// Waits until the child has exited and is reaped, collecting its report.
    fn wait_exit(&mut self, deadline: Deadline) -> Result<(), JoinError> {
        loop {
            self.pump()?;
            if self.try_reap()? {
                // Everything the child sent is in the socket now.
                self.pump()?;
                return Ok(());
            }
            let want_chan = self.report.is_none() && self.chan.is_some();
            let pidfd = self.shared.pidfd.as_fd();
            let readable = sys::Ready {
                readable: true,
                writable: false,
            };
            let ready = match self.chan.as_ref().filter(|_| want_chan) {
                Some(chan) => {
                    sys::wait_fds(&[(pidfd, readable), (chan.as_fd(), readable)], deadline)?
                }
                None => sys::wait_fds(&[(pidfd, readable)], deadline)?,
            };
            if ready.iter().all(|r| !r.readable) && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(JoinError::Timeout);
            }
        }
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        match self.try_reap() {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => {
                forget_child(&self.shared);
                return;
            }
        }
        // Still running: a small thread waits for it so it never lingers as
        // a zombie. The child keeps running, as in Python.
        let shared = Arc::clone(&self.shared);
        let reaper = std::thread::Builder::new()
            .name(format!("mpkit-reap-{}", shared.pid))
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = sys::reap(shared.pidfd.as_fd(), true);
                forget_child(&shared);
            });
        if reaper.is_err() {
            forget_child(&self.shared);
        }
    }
}

/// The identity of the running process, as mpkit sees it.
struct Identity {
    name: String,
    ident: Vec<u32>,
    daemon: bool,
    parent: Option<(i32, String, Option<OwnedFd>)>,
    children: AtomicU32,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();

fn identity() -> &'static Identity {
    IDENTITY.get_or_init(|| Identity {
        name: "MainProcess".to_string(),
        ident: Vec::new(),
        daemon: false,
        parent: None,
        children: AtomicU32::new(0),
    })
}

fn default_name(ident: &[u32]) -> String {
    let parts: Vec<String> = ident.iter().map(u32::to_string).collect();
    format!("Process-{}", parts.join(":"))
}

/// Called in a child, before its function runs.
pub(crate) fn set_identity(boot: &Bootstrap) {
    // A pidfd of the parent, opened and then checked against getppid(): if
    // the parent already died, we were re-parented and the pidfd (if any)
    // names a different process, so it is discarded.
    let parent_fd = sys::pidfd_open(boot.parent_pid)
        .ok()
        .filter(|_| sys::getppid() == boot.parent_pid);
    if boot.daemon {
        watch_parent(parent_fd.as_ref().and_then(|fd| sys::dup(fd.as_fd()).ok()));
    }
    let _ = IDENTITY.set(Identity {
        name: boot.name.clone(),
        ident: boot.ident.clone(),
        daemon: boot.daemon,
        parent: Some((boot.parent_pid, boot.parent_name.clone(), parent_fd)),
        children: AtomicU32::new(0),
    });
}

/// A daemon dies with its parent: a thread waits on the parent's pidfd and
/// kills this process when it becomes readable (the parent exited, however).
fn watch_parent(parent: Option<OwnedFd>) {
    let Some(pidfd) = parent else {
        // The parent is already gone.
        let _ = sys::kill(sys::getpid(), Signal::KILL.number());
        return;
    };
    let watcher = std::thread::Builder::new()
        .name("mpkit-daemon".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while !matches!(sys::wait_readable(pidfd.as_fd(), None), Ok(true)) {}
            let _ = sys::kill(sys::getpid(), Signal::KILL.number());
        });
    if watcher.is_err() {
        eprintln!("mpkit: could not start the daemon watcher thread; exiting");
        let _ = sys::kill(sys::getpid(), Signal::KILL.number());
    }
}

/// A snapshot of a process's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pid: i32,
    name: String,
    daemon: bool,
}

impl ProcessInfo {
    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The name (`MainProcess` for a process mpkit did not start).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is a daemon child.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

/// The running process (Python's `multiprocessing.current_process()`).
///
/// ```
/// let me = mpkit::process::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id() as i32);
/// ```
pub fn current_process() -> ProcessInfo {
    let me = identity();
    ProcessInfo {
        pid: sys::getpid(),
        name: me.name.clone(),
        daemon: me.daemon,
    }
}

/// The parent of a process mpkit started (Python's `parent_process()`);
/// `None` in a process mpkit did not start.
///
/// ```
/// use mpkit::{Process, process::parent_process};
///
/// assert!(parent_process().is_none());
/// let child = Process::spawn(|(): ()| {
///     let p = parent_process().unwrap();
///     (p.pid(), p.name().to_string(), p.is_alive())
/// }, ())?;
/// assert_eq!(child.join()?, (std::process::id() as i32, "MainProcess".to_string(), true));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    identity()
        .parent
        .as_ref()
        .map(|(pid, name, pidfd)| ParentProcess {
            pid: *pid,
            name: name.clone(),
            pidfd: pidfd.as_ref(),
        })
}

/// The parent of this process; see [`parent_process`].
#[derive(Debug)]
pub struct ParentProcess {
    pid: i32,
    name: String,
    pidfd: Option<&'static OwnedFd>,
}

impl ParentProcess {
    /// The parent's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the parent runs (asked through a pidfd, so pid reuse
    /// cannot fool it).
    pub fn is_alive(&self) -> bool {
        self.pidfd
            .is_some_and(|fd| !sys::pidfd_exited(fd.as_fd()).unwrap_or(true))
    }
}

/// The children this process started that are still running (Python's
/// `active_children()`).
pub fn active_children() -> Vec<ProcessInfo> {
    children()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|c| !sys::pidfd_exited(c.pidfd.as_fd()).unwrap_or(true))
        .map(|c| ProcessInfo {
            pid: c.pid,
            name: c.name.clone(),
            daemon: c.daemon,
        })
        .collect()
}
