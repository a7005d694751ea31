//! The private layer every shared-memory object is built on, below the
//! public modules and above `sys`:
//!
//! - [`segment`]: the shared memory each object lives in, its 64-byte
//!   header, and the checks made when a process attaches;
//! - [`element`]: how a segment names its element type (short type
//!   names, the element record at its end);
//! - [`cell`]: the lock cell (a robust, process-shared mutex plus owner
//!   bookkeeping) embedded by locks, values and queues;
//! - [`spin`]: the one spin-then-sleep policy every wait follows;
//! - [`atomic_copy`]: copies in and out of shared bytes made of atomic
//!   accesses only, for the values read and written without a lock.
//!
//! Nothing here names a public module: `shm`, `sync` and `queue` use this
//! layer, never each other's internals.

pub(crate) mod atomic_copy;
pub(crate) mod cell;
pub(crate) mod element;
pub(crate) mod segment;
pub(crate) mod shm_error;
pub(crate) mod spin;
