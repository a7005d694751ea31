//! Linux backend of the platform layer, one file per OS area (as rustix
//! lays out its modules).
//!
//! Each function is a thin front over one system call (or a short, fixed
//! sequence of them), named after what it does. `rustix` is used wherever it
//! has the call; `libc` for what rustix lacks: `close_range`, `dladdr`,
//! `getauxval`, robust pthread mutexes, System V and POSIX message queues,
//! signal masks and the async-signal-safe calls made between `fork` and
//! `exec`.
//!
//! | file | area |
//! |---|---|
//! | `errno.rs` | OS error numbers, rustix errors into `io::Error` |
//! | `time.rs` | [`Deadline`]s on the monotonic clock, kernel time values |
//! | `fd.rs` | descriptors: waiting ([`wait_fds`]), flags, reads and writes, close-on-exec |
//! | `pipe.rs` | anonymous pipes and FIFOs |
//! | `eventfd.rs` | readiness flags (`eventfd`) for waiting on in-process events with `poll` |
//! | `socket.rs` | Unix socket pairs and listeners, `SCM_RIGHTS`, peer credentials |
//! | `signal.rs` | `SIGPIPE` handling, real-time signal numbers |
//! | `process.rs` | pids, pidfds, reaping, signalling, `/proc` liveness |
//! | `loader.rs` | the dynamic loader and the auxiliary vector |
//! | `thread.rs` | thread ids and tokens, CPUs, yielding, `membarrier`, fork hooks |
//! | `futex.rs` | process-shared futex wait and wake |
//! | `mutex.rs` | robust, process-shared pthread mutexes |
//! | `mem.rs` | `memfd`, `shm_open`/`shm_unlink`, shared [`Mapping`]s, extended attributes |
//! | `fault.rs` | the `SIGBUS` handler that survives a mapped file truncated by another process |
//! | `msgq.rs` | System V and POSIX message queues |
//! | `rand.rs` | random bytes from the kernel |
//!
//! Every item is re-exported here, so callers name `crate::sys::foo`
//! whatever file it lives in.

mod errno;
mod eventfd;
mod fault;
mod fd;
mod futex;
mod loader;
mod mem;
mod msgq;
mod mutex;
mod pipe;
mod process;
mod rand;
mod signal;
mod socket;
mod thread;
mod time;

pub(crate) use errno::*;
pub(crate) use eventfd::*;
pub(crate) use fd::*;
pub(crate) use futex::*;
pub(crate) use loader::*;
pub(crate) use mem::*;
pub(crate) use msgq::*;
pub(crate) use mutex::*;
pub(crate) use pipe::*;
pub(crate) use process::*;
pub(crate) use rand::*;
pub(crate) use signal::*;
pub(crate) use socket::*;
pub(crate) use thread::*;
pub(crate) use time::*;
