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
//! - [`process`]: child processes that run a Rust function and carry
//!   mpkit handles in their arguments.
//! - [`connection`]: framed, typed messages over Unix sockets and pipes.
//! - [`codec`]: how values become bytes ([`codec::Postcard`] by default,
//!   [`codec::Json`] for other languages).
//! - `sys` (private): the platform layer, the only code that talks to the OS.
//!
//! # Safety across processes
//! Nothing a peer sends is trusted: messages are decoded by serde into the
//! type the receiver names (never code execution, unlike pickle), frame
//! lengths are checked, and buffers grow only as data really arrives.
//!
//! # Limitations
//! Linux only for now (the `sys` module is the one place to port from).
#![warn(missing_docs)]

pub mod admin;
mod base;
pub mod codec;
pub mod connection;
mod handle;
pub mod msgq;
pub mod net;
pub mod os;
pub mod process;
pub mod queue;
pub mod shm;
pub mod signal;
pub mod sync;
mod sys;

pub use connection::{Connection, RecvError, SendError, pipe};
pub use process::{JoinError, Process, SpawnError};
