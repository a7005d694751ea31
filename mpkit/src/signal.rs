//! Signals, as Python's `signal` module and `os.kill` offer them: names
//! and numbers as in `kill -l`, sending them, and receiving them safely.
//!
//! ```
//! use mpkit::signal::Signal;
//!
//! let int: Signal = "INT".parse()?;
//! assert_eq!((int.number(), int.name().as_str()), (2, "SIGINT"));
//! assert_eq!("SIGTERM".parse::<Signal>()?, Signal::TERM);
//! assert_eq!("9".parse::<Signal>()?, Signal::KILL);
//! assert!(!Signal::KILL.is_catchable());
//! println!("{}", mpkit::signal::kill_list());
//! # Ok::<(), mpkit::signal::SignalError>(())
//! ```
//!
//! # Receiving
//! Handlers are registered through [signal-hook](https://docs.rs/signal-hook)
//! (never a hand-rolled `sigaction`): as a [`flag`] that the handler sets, as
//! an iterator ([`Signals`]), or as a channel ([`channel`], with timeouts).
//! `SIGKILL` and `SIGSTOP` cannot be caught: asking is
//! [`SignalError::Uncatchable`].
//!
//! # Child processes (SIGCHLD)
//! A [`Process`](crate::Process) is watched through its pidfd, not a global
//! `SIGCHLD` handler: [`net::wait`](crate::net::wait) and
//! [`Process::sentinel`](crate::Process::sentinel) wake on its exit without
//! polling, and [`Process::state`](crate::Process::state) reports
//! stopped/continued/exited. A program that wants `SIGCHLD` itself can still
//! take it with [`channel`]`(&[Signal::CHLD])`.
//!
//! # Limitations
//! Linux signal numbers. Handlers registered here stay for the life of the
//! process (signal-hook's rule); dropping a [`Signals`] stops delivery to it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::sys;

/// Why a signal operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// Not a signal name or number of this platform.
    #[error("unknown signal {0:?} (see `kill -l`)")]
    Unknown(String),
    /// `SIGKILL` and `SIGSTOP` cannot be caught, blocked or ignored.
    #[error("{0} cannot be caught or handled")]
    Uncatchable(Signal),
    /// No process has this id.
    #[error("no process with id {0}")]
    NoSuchProcess(i32),
    /// The process exists but belongs to someone else.
    #[error("not allowed to signal process {0}")]
    PermissionDenied(i32),
    /// The operating system refused.
    #[error("signal: {0}")]
    Io(#[from] std::io::Error),
}

/// A signal of this platform (Linux numbering).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// Name, number, default action and meaning of the standard signals.
const TABLE: &[(i32, &str, &str, &str)] = &[
    (
        1,
        "HUP",
        "terminate",
        "hangup: the controlling terminal closed; daemons reread their configuration",
    ),
    (
        2,
        "INT",
        "terminate",
        "interrupt from the keyboard (Ctrl-C)",
    ),
    (3, "QUIT", "core dump", "quit from the keyboard (Ctrl-\\)"),
    (4, "ILL", "core dump", "illegal instruction"),
    (5, "TRAP", "core dump", "trace or breakpoint trap"),
    (6, "ABRT", "core dump", "abort(3)"),
    (7, "BUS", "core dump", "bus error (bad memory access)"),
    (8, "FPE", "core dump", "arithmetic error"),
    (
        9,
        "KILL",
        "terminate",
        "kill, immediately: cannot be caught, blocked or ignored",
    ),
    (10, "USR1", "terminate", "user-defined signal 1"),
    (11, "SEGV", "core dump", "invalid memory reference"),
    (12, "USR2", "terminate", "user-defined signal 2"),
    (13, "PIPE", "terminate", "write to a pipe with no readers"),
    (14, "ALRM", "terminate", "timer signal from alarm(2)"),
    (
        15,
        "TERM",
        "terminate",
        "termination request (the polite kill)",
    ),
    (
        16,
        "STKFLT",
        "terminate",
        "stack fault on a coprocessor (unused)",
    ),
    (
        17,
        "CHLD",
        "ignore",
        "a child process stopped, continued or terminated",
    ),
    (18, "CONT", "continue", "continue if stopped"),
    (
        19,
        "STOP",
        "stop",
        "stop the process: cannot be caught, blocked or ignored",
    ),
    (20, "TSTP", "stop", "stop typed at the terminal (Ctrl-Z)"),
    (
        21,
        "TTIN",
        "stop",
        "terminal input for a background process",
    ),
    (
        22,
        "TTOU",
        "stop",
        "terminal output for a background process",
    ),
    (23, "URG", "ignore", "urgent condition on a socket"),
    (24, "XCPU", "core dump", "CPU time limit exceeded"),
    (25, "XFSZ", "core dump", "file size limit exceeded"),
    (26, "VTALRM", "terminate", "virtual alarm clock"),
    (27, "PROF", "terminate", "profiling timer expired"),
    (28, "WINCH", "ignore", "window resize"),
    (29, "IO", "terminate", "I/O now possible"),
    (30, "PWR", "terminate", "power failure"),
    (31, "SYS", "core dump", "bad system call"),
];

macro_rules! signal_consts {
    ($($name:ident = $n:expr),* $(,)?) => {
        impl Signal {
            $(
                #[doc = concat!("`SIG", stringify!($name), "` (", stringify!($n), ").")]
                pub const $name: Signal = Signal($n);
            )*
        }
    };
}

signal_consts!(
    HUP = 1,
    INT = 2,
    QUIT = 3,
    ILL = 4,
    TRAP = 5,
    ABRT = 6,
    BUS = 7,
    FPE = 8,
    KILL = 9,
    USR1 = 10,
    SEGV = 11,
    USR2 = 12,
    PIPE = 13,
    ALRM = 14,
    TERM = 15,
    STKFLT = 16,
    CHLD = 17,
    CONT = 18,
    STOP = 19,
    TSTP = 20,
    TTIN = 21,
    TTOU = 22,
    URG = 23,
    XCPU = 24,
    XFSZ = 25,
    VTALRM = 26,
    PROF = 27,
    WINCH = 28,
    IO = 29,
    PWR = 30,
    SYS = 31,
);

impl Signal {
    /// The signal with this number, if the platform has one (1-31, and the
    /// real-time signals `SIGRTMIN`..=`SIGRTMAX`).
    pub fn from_number(n: i32) -> Option<Signal> {
        ((1..=31).contains(&n) || (sys::sigrtmin()..=sys::sigrtmax()).contains(&n))
            .then_some(Signal(n))
    }

    /// Every signal, in `kill -l` order.
    pub fn all() -> Vec<Signal> {
        (1..=31)
            .chain(sys::sigrtmin()..=sys::sigrtmax())
            .map(Signal)
            .collect()
    }

    /// The number (`2` for `SIGINT`).
    pub fn number(self) -> i32 {
        self.0
    }

    /// The name as `kill -l` shows it (`SIGINT`, `SIGRTMIN+3`).
    pub fn name(self) -> String {
        if let Some((_, name, _, _)) = TABLE.iter().find(|e| e.0 == self.0) {
            return format!("SIG{name}");
        }
        let (min, max) = (sys::sigrtmin(), sys::sigrtmax());
        // kill -l names the lower half from RTMIN, the upper from RTMAX.
        if self.0 - min <= (max - min) / 2 {
            if self.0 == min {
                "SIGRTMIN".into()
            } else {
                format!("SIGRTMIN+{}", self.0 - min)
            }
        } else if self.0 == max {
            "SIGRTMAX".into()
        } else {
            format!("SIGRTMAX-{}", max - self.0)
        }
    }

    /// What the signal means.
    pub fn description(self) -> &'static str {
        TABLE
            .iter()
            .find(|e| e.0 == self.0)
            .map_or("real-time signal, for applications", |e| e.3)
    }

    /// What happens when nobody handles it (`terminate`, `core dump`,
    /// `ignore`, `stop`, `continue`).
    pub fn default_action(self) -> &'static str {
        TABLE
            .iter()
            .find(|e| e.0 == self.0)
            .map_or("terminate", |e| e.2)
    }

    /// False for `SIGKILL` and `SIGSTOP`, which no process can catch.
    pub fn is_catchable(self) -> bool {
        !signal_hook::consts::FORBIDDEN.contains(&self.0)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl FromStr for Signal {
    type Err = SignalError;

    /// Accepts `SIGINT`, `INT`, `int`, `2`, `SIGRTMIN+1`, `RTMAX-2`.
    fn from_str(s: &str) -> Result<Signal, SignalError> {
        let unknown = || SignalError::Unknown(s.to_string());
        if let Ok(n) = s.trim().parse::<i32>() {
            return Signal::from_number(n).ok_or_else(unknown);
        }
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((n, ..)) = TABLE.iter().find(|e| e.1 == bare) {
            return Ok(Signal(*n));
        }
        let (min, max) = (sys::sigrtmin(), sys::sigrtmax());
        let rt = if let Some(rest) = bare.strip_prefix("RTMIN") {
            rest.strip_prefix('+')
                .map_or(rest.is_empty().then_some(min), |k| {
                    k.parse::<i32>().ok().map(|k| min + k)
                })
        } else if let Some(rest) = bare.strip_prefix("RTMAX") {
            rest.strip_prefix('-')
                .map_or(rest.is_empty().then_some(max), |k| {
                    k.parse::<i32>().ok().map(|k| max - k)
                })
        } else {
            None
        };
        rt.and_then(Signal::from_number).ok_or_else(unknown)
    }
}

/// The `kill -l` listing: every signal with its number.
pub fn kill_list() -> String {
    let cells: Vec<String> = Signal::all()
        .into_iter()
        .map(|s| format!("{:2}) {:<12}", s.number(), s.name()))
        .collect();
    cells
        .chunks(5)
        .map(|line| line.join(" ").trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `signal` to process `pid` (Python's `os.kill`).
pub fn send(pid: i32, signal: Signal) -> Result<(), SignalError> {
    sys::kill(pid, signal.number()).map_err(|e| match e.raw_os_error() {
        Some(sys::ESRCH) => SignalError::NoSuchProcess(pid),
        Some(sys::EPERM) => SignalError::PermissionDenied(pid),
        _ => SignalError::Io(e),
    })
}

fn catchable(signals: &[Signal]) -> Result<(), SignalError> {
    match signals.iter().find(|s| !s.is_catchable()) {
        Some(s) => Err(SignalError::Uncatchable(*s)),
        None => Ok(()),
    }
}

/// Registers a handler that sets the returned flag when `signal` arrives
/// (the handler does nothing else, so it is async-signal-safe).
///
/// ```
/// use std::sync::atomic::Ordering;
/// use mpkit::signal::{self, Signal};
/// let got = signal::flag(Signal::USR2)?;
/// signal::send(std::process::id() as i32, Signal::USR2)?;
/// while !got.load(Ordering::SeqCst) {
///     std::thread::yield_now();
/// }
/// # Ok::<(), signal::SignalError>(())
/// ```
pub fn flag(signal: Signal) -> Result<Arc<AtomicBool>, SignalError> {
    catchable(&[signal])?;
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal.number(), Arc::clone(&flag))?;
    Ok(flag)
}

/// Signals delivered as an iterator (signal-hook's self-pipe underneath).
pub struct Signals {
    inner: signal_hook::iterator::Signals,
}

impl Signals {
    /// Starts catching `signals`.
    pub fn new(signals: &[Signal]) -> Result<Signals, SignalError> {
        catchable(signals)?;
        Ok(Signals {
            inner: signal_hook::iterator::Signals::new(signals.iter().map(|s| s.number()))?,
        })
    }

    /// Blocks for signals, forever (until [`SignalsHandle::close`]).
    pub fn forever(&mut self) -> impl Iterator<Item = Signal> + '_ {
        self.inner.forever().map(Signal)
    }

    /// The signals that arrived since the last look, without waiting.
    pub fn pending(&mut self) -> impl Iterator<Item = Signal> + '_ {
        self.inner.pending().map(Signal)
    }

    /// A handle that can stop [`forever`](Self::forever) from another thread.
    pub fn handle(&self) -> SignalsHandle {
        SignalsHandle(self.inner.handle())
    }
}

/// Closes a [`Signals`] from another thread.
#[derive(Clone)]
pub struct SignalsHandle(signal_hook::iterator::Handle);

impl SignalsHandle {
    /// Ends the iteration and unregisters the handlers of that `Signals`.
    pub fn close(&self) {
        self.0.close()
    }
}

/// Delivers `signals` to a channel: `recv`, `recv_timeout` and `try_recv`
/// as with any `std::sync::mpsc::Receiver`. A small thread forwards them;
/// it ends when the receiver is dropped and the next signal arrives.
///
/// ```
/// use std::time::Duration;
/// use mpkit::signal::{self, Signal};
/// let rx = signal::channel(&[Signal::USR1])?;
/// signal::send(std::process::id() as i32, Signal::USR1)?;
/// assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Signal::USR1);
/// assert!(signal::channel(&[Signal::KILL]).is_err());
/// # Ok::<(), signal::SignalError>(())
/// ```
pub fn channel(signals: &[Signal]) -> Result<std::sync::mpsc::Receiver<Signal>, SignalError> {
    let mut it = Signals::new(signals)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mpkit-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for s in it.forever() {
                if tx.send(s).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}
