//! # mpkit
//!
//! Inter-process communication for Rust: everything Python's
//! `multiprocessing` gives Python programs, between real OS processes.
//!
//! | Python | mpkit |
//! |---|---|
//! | `Process(target=f, args=(a,)).start()` | [`Process::spawn(f, a)`](Process::spawn) |
//! | `p.join()` | [`p.join()`](Process::join) → `Ok(result)` or how it ended |
//! | `Pipe(duplex)` | [`pipe(duplex)`](pipe) |
//! | `conn.send(obj)` / `conn.recv()` | [`conn.send(&v)`](Connection::send) / [`conn.recv::<T>()`](Connection::recv) |
//!
//! ```
//! use mpkit::{Connection, Process};
//!
//! fn worker((id, mut conn): (u32, Connection)) -> u32 {
//!     let mut total = 0;
//!     while let Ok(n) = conn.recv::<u32>() {
//!         total += n;
//!     }
//!     total * id
//! }
//!
//! let (rx, mut tx) = mpkit::pipe(false)?;
//! let child = Process::spawn(worker, (2, rx))?;
//! for n in 1..=4u32 {
//!     tx.send(&n)?;
//! }
//! tx.close(); // the child's recv now ends with end-of-file
//! assert_eq!(child.join()?, 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Anatomy
//! | module | Python | what |
//! |---|---|---|
//! | [`process`] | `multiprocessing.Process` | child processes that run a Rust function, carry mpkit handles in their arguments, and report their result or panic through `join` |
//! | [`connection`] | `Pipe`, `Connection` | framed, typed messages over Unix sockets and pipes, with handles beside them |
//! | [`codec`] | `pickle` | how values become bytes: [`codec::Postcard`] by default, [`codec::Json`] and [`codec::Pickle`] for other languages |
//! | [`queue`] | `Queue`, `JoinableQueue`, `SimpleQueue` | crash-safe shared-memory message queues, typed or bytes |
//! | [`shm`] | `shared_memory`, `Value`, `Array`, `RawValue`, `RawArray` | shared memory blocks and typed shared values |
//! | [`sync`] | `Lock`, `RLock`, `Semaphore`, `Condition`, `Event`, `Barrier` | process-shared synchronisation on robust mutexes and futexes |
//! | [`pool`] | `Pool`, `concurrent.futures.ProcessPoolExecutor` | process pools where a worker that dies fails its task instead of hanging the pool |
//! | [`net`] | `multiprocessing.connection.Listener`, `Client`, `wait` | sockets speaking Python's connection protocol and handshakes |
//! | [`signal`] | `signal`, `os.kill` | signal names and numbers, sending, and safe handling |
//! | [`os`] | `os.pipe`, `os.mkfifo` | anonymous pipes and FIFOs |
//! | [`msgq`] | `sysv_ipc`, `posix_ipc` | System V and POSIX message queues |
//! | [`admin`] | `ipcs`, `ipcrm` | listing, inspecting and removing named mpkit objects |
//! | `redis_queue` (feature `redis`) | RQ, Celery, Dramatiq on Redis | a queue on a Redis stream, across hosts, with the shared-memory queue's API and at-least-once delivery |
//! | `redis_pool` (feature `redis`) | Celery workers, `Pool` across hosts | the `Pool` API with workers on any host: your program in worker mode, tasks by stable name, every result once |
//!
//! Below them, two private layers: `base` (the segments shared-memory
//! objects live in, the robust lock cell, and the one spin-then-sleep
//! policy) and `sys` (the platform layer, the only code that talks to the
//! OS). ARCHITECTURE.md in the repository draws the layers and the
//! shared-memory layouts.
//!
//! # Safety across processes
//! Nothing a peer sends is trusted: messages are decoded by serde into the
//! type the receiver names (never code execution, unlike pickle), frame
//! lengths are checked, and buffers grow only as data really arrives.
//!
//! # Limitations
//! Linux only for now (the `sys` module is the one place to port from).
//!
//! Locks are glibc's robust pthread mutexes. Their memory is checked when
//! an object is attached and before every lock operation (another process
//! may overwrite it: [`sync::LockError::Corrupt`]), but a process that
//! overwrites a mutex while this one holds or waits on it is beyond those
//! checks: glibc follows pointers stored in the mutex when it unlocks.
//! Share locks only with processes you trust not to write to them.
#![warn(missing_docs)]

pub mod admin;
mod base;
pub mod codec;
pub mod connection;
mod handle;
pub mod msgq;
pub mod net;
pub mod os;
pub mod pool;
pub mod process;
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis_pool;
#[cfg(feature = "redis")]
pub mod redis_queue;
pub mod shm;
pub mod signal;
pub mod sync;
mod sys;

pub use connection::{Connection, RecvError, SendError, pipe};
pub use pool::{Executor, Pool};
pub use process::{JoinError, Process, SpawnError};
