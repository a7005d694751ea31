//! Shared memory: named blocks ([`SharedMemory`]) and typed shared values
//! ([`Value`], [`Array`], [`RawValue`], [`RawArray`]) — Python's
//! `multiprocessing.shared_memory`, `Value`, `Array`, `RawValue`, `RawArray`.
//!
//! ```
//! use mpkit::Process;
//! use mpkit::shm::{Array, Value};
//!
//! let counter = Value::new(0i64)?;
//! let squares = Array::new(&[1u32, 2, 3])?;
//! let child = Process::spawn(|(c, a): (Value<i64>, Array<u32>)| {
//!     *c.lock().unwrap() += 10;
//!     for x in a.lock().unwrap().iter_mut() {
//!         *x *= *x;
//!     }
//! }, (counter.try_clone()?, squares.try_clone()?))?;
//! child.join()?;
//! assert_eq!(counter.get()?, 10);
//! assert_eq!(squares.to_vec()?, [1, 4, 9]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where objects live
//! Every object is one *segment*: anonymous (a `memfd`, freed by the kernel
//! when the last process holding it exits, even after SIGKILL) unless
//! created with a name. Named segments live in `/dev/shm` under the names
//! Python's `multiprocessing.shared_memory` uses, so Python's
//! `SharedMemory(name=...)` attaches to the same bytes of a
//! [`SharedMemory`]. Typed objects start with a 64-byte header (see
//! [`segment`](self::ObjectKind) docs in ARCHITECTURE.md) that attaching
//! checks: the wrong kind, element type, version, a truncated file or a
//! lock whose mutex another process overwrote is a [`ShmError`].
//!
//! # Files another process truncates, and a full `/dev/shm`
//! Any process of the user may shrink a named object's file. The next
//! access past the new end would be `SIGBUS`, which kills a process; mpkit
//! catches it instead (a `SIGBUS` handler installed with the first object,
//! chaining to any handler installed before it), this process sees zeros
//! where the object was, and the object's operations fail from then on:
//! [`ShmError::Corrupt`] from [`SharedMemory::read`]/[`write`](SharedMemory::write),
//! `Corrupt` from queue operations and locks. A handler for `SIGBUS`
//! installed *after* mpkit's first object replaces mpkit's: chain to the
//! handler it replaces, or a truncation kills the process again.
//!
//! Creating a named object reserves every page of it (`posix_fallocate`),
//! so a `/dev/shm` without room is an [`ShmError::Io`] of kind
//! [`StorageFull`](std::io::ErrorKind::StorageFull) (`ENOSPC`) for the
//! creator, not a `SIGBUS` at some later first touch of a page.
//!
//! ```
//! use mpkit::shm::{SharedMemory, ShmError};
//!
//! let name = format!("doc-truncated-{}", std::process::id());
//! let block = SharedMemory::create(&name, 4096)?;
//! // Another process (here: this one, through the file) cuts it to nothing.
//! std::fs::File::options().write(true).open(format!("/dev/shm/{name}"))?.set_len(0)?;
//! let mut buf = [0u8; 8];
//! assert!(matches!(block.read(0, &mut buf), Err(ShmError::Corrupt(_))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Who removes a name
//! The handle that *created* a named object removes the name when it is
//! dropped (the memory itself lives on while other processes map it), unless
//! [`keep`](SharedMemory::keep) was called. Handles made by `open`, or
//! received from another process, never remove it; `unlink` does so
//! explicitly. Anonymous objects have no name to remove.
//!
//! # Element types
//! Shared values hold plain data: any [`bytemuck::Pod`] type (integers,
//! floats, fixed arrays, `#[repr(C)]` structs with `#[derive(Pod, Zeroable)]`).
//! `bool` is not plain data (only 0 and 1 are valid, and another process
//! could write 2), so use [`Bool`].

pub(crate) mod mark;
mod raw;
mod value;

use std::os::fd::AsFd;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) use crate::base::segment::{
    Elem, HEADER_SIZE, Header, Segment, Spec, TRUNCATED, align_up, segment_object,
};
pub use crate::base::segment::{LAYOUT_VERSION, ObjectKind, ShmError};
pub use raw::{AtomicElement, RawArray, RawValue};
pub use value::{Array, ArrayError, ArrayGuard, Bool, Guard, Value, ValueGuard};

/// A block of bytes shared between processes (Python's
/// `multiprocessing.shared_memory.SharedMemory`): no header, every byte is
/// yours, and Python attaches to it by the same name.
///
/// ```
/// use mpkit::shm::SharedMemory;
///
/// let block = SharedMemory::create_unique(16)?; // a generated name, mode 0600
/// block.write(0, b"hello")?;
/// let other = SharedMemory::open(block.name().unwrap())?; // as an unrelated process would
/// let mut buf = [0u8; 5];
/// other.read(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert_eq!(other.size(), 16);
/// drop(block); // the creator removes the name
/// assert!(SharedMemory::open(other.name().unwrap()).is_err());
/// # Ok::<(), mpkit::shm::ShmError>(())
/// ```
///
/// # Safety across threads and processes
/// [`read`](Self::read) and [`write`](Self::write) take no lock and are
/// sound while other threads of this process read and write the same
/// bytes: they touch the block only with relaxed atomic accesses of one
/// aligned machine word each (a word the range covers only partly is read
/// whole, and written by a compare-exchange that changes just the range's
/// bytes, so a concurrent write of its other bytes is kept). A copy of more
/// than one word can be torn by a concurrent write — some words old, some
/// new — and orders nothing else: agree on who writes when with a
/// [`Lock`](crate::sync::Lock) or an atomic flag. Other processes,
/// Python's included, may write the block at any time; this process then
/// reads whatever bytes are there.
///
/// If you form your own atomics over the block (through
/// [`as_ptr`](Self::as_ptr)) and also `read`/`write` those bytes from
/// another thread at the same time, make them `AtomicUsize`/`AtomicU64` at
/// offsets that are multiples of 8: Rust's memory model forbids an atomic
/// write racing an atomic access of another size.
///
/// # Python attaching: its resource tracker deletes the block
/// Python's `SharedMemory(name)` (3.8 on, 3.13 included) registers even a
/// block it only *attached* to with `multiprocessing`'s resource tracker,
/// and when that Python process exits the tracker unlinks the block
/// (warning about "leaked shared_memory objects"): the name is gone for
/// every process, this one included, although Rust created it. From 3.13,
/// pass `track=False`; before, unregister the block right after attaching:
///
/// ```python
/// import sys
/// from multiprocessing import resource_tracker, shared_memory
///
/// if sys.version_info >= (3, 13):
///     shm = shared_memory.SharedMemory(name, track=False)
/// else:
///     shm = shared_memory.SharedMemory(name)
///     resource_tracker.unregister(shm._name, "shared_memory")
/// ```
///
/// (`shm._name` is the name with its leading `/`, as the tracker recorded
/// it.) Python's own `close()` is then all it does; the block stays until
/// its creator drops it (or someone unlinks it).
///
/// # Who made it: `mpkit ls` and `rm --stale`
/// A named block records its creator (pid and start time) and whether it
/// was [kept](Self::keep) in an extended attribute of its `/dev/shm` file,
/// outside its bytes (`user.mpkit.creator`; tmpfs stores these from Linux
/// 6.6). So `mpkit ls` lists every block mpkit created, and `mpkit rm
/// --stale` removes one whose creator was killed, unless it was kept or a
/// process still has it open or mapped. Where the kernel stores no user
/// attributes, blocks named by [`create_unique`](Self::create_unique)
/// carry the creator's pid in their name instead (kept or not cannot be
/// told then: name a block you keep yourself), and blocks named by the
/// user are not listed.
#[derive(Debug)]
pub struct SharedMemory {
    seg: Segment,
}

impl SharedMemory {
    /// Creates a named block of `size` bytes (zeroed, mode 0600). Fails with
    /// [`ShmError::Exists`] if the name is taken. This handle removes the
    /// name when dropped unless [`keep`](Self::keep) is called.
    pub fn create(name: &str, size: usize) -> Result<SharedMemory, ShmError> {
        SharedMemory::create_with_mode(name, size, 0o600)
    }

    /// Like [`create`](Self::create) with the given permission bits.
    pub fn create_with_mode(name: &str, size: usize, mode: u32) -> Result<SharedMemory, ShmError> {
        let seg = Segment::create_raw(Some(name), size, mode)?;
        // Best effort: without the record (a kernel before 6.6) the block
        // works the same and `mpkit ls` falls back to its name.
        let _ = mark::Mark::this_process(false).write(seg.as_fd());
        Ok(SharedMemory { seg })
    }

    /// Creates a named block under a fresh name (`mpkit_`, this process's
    /// pid, `_`, 16 hex digits).
    pub fn create_unique(size: usize) -> Result<SharedMemory, ShmError> {
        loop {
            match SharedMemory::create(&mark::generated_name(), size) {
                Err(ShmError::Exists(_)) => continue,
                r => return r,
            }
        }
    }

    /// Creates an anonymous block: no name, passable to children, freed
    /// when the last process holding it exits.
    pub fn anonymous(size: usize) -> Result<SharedMemory, ShmError> {
        Ok(SharedMemory {
            seg: Segment::create_raw(None, size, 0o600)?,
        })
    }

    /// Attaches to a named block (made by mpkit, Python, or anything using
    /// `shm_open`). Its size is the file's size.
    pub fn open(name: &str) -> Result<SharedMemory, ShmError> {
        Ok(SharedMemory {
            seg: Segment::open_raw(name)?,
        })
    }

    /// The name (without the leading `/`), for a named block.
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.seg.len()
    }

    fn bounds(&self, offset: usize, len: usize) -> Result<(), ShmError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(ShmError::OutOfBounds {
                offset,
                len,
                size: self.size(),
            }),
        }
    }

    /// [`ShmError::Corrupt`] once another process has truncated the
    /// block's file: the bytes past its new end are gone, and this process
    /// sees zeros in the whole block from the first access past it on.
    fn intact(&self) -> Result<(), ShmError> {
        if self.seg.truncated() {
            return Err(ShmError::Corrupt(TRUNCATED.to_string()));
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf` (atomic
    /// word accesses, no lock; see the type's docs). [`ShmError::Corrupt`]
    /// when another process truncated the block's file (then `buf` holds
    /// zeros where the bytes are gone).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        self.copy_out(offset, buf)?;
        self.intact()
    }

    fn copy_out(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        self.bounds(offset, buf.len())?;
        // SAFETY: the range is in bounds (checked). The mapping starts on a
        // page and spans whole pages, so the aligned words around the
        // range's ends are mapped too, even past `size`. Safe code reaches
        // these bytes only through `read`/`write`, whose accesses are all
        // whole aligned words and atomic; other processes are outside this
        // process's memory model.
        unsafe {
            crate::base::atomic_copy::copy_from_shared(buf, self.seg.base().as_ptr().add(offset))
        };
        Ok(())
    }

    /// Copies `data` into the block at `offset` (atomic word accesses, no
    /// lock; see the type's docs). [`ShmError::Corrupt`] when another
    /// process truncated the block's file (the data reached no one).
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        self.bounds(offset, data.len())?;
        // SAFETY: as in `read`; the mapping is writable, and the bytes of a
        // partial word outside the range are written back unchanged.
        unsafe {
            crate::base::atomic_copy::copy_to_shared(self.seg.base().as_ptr().add(offset), data)
        };
        self.intact()
    }

    /// A copy of the whole block (as [`read`](Self::read): not a snapshot
    /// while others write; zeros where another process truncated the file,
    /// which `read` reports).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.size()];
        self.copy_out(0, &mut v).expect("whole block is in bounds");
        v
    }

    /// The start of the mapping (page-aligned), for your own synchronised
    /// access; see "Safety across threads and processes" above for atomics
    /// formed over it.
    pub fn as_ptr(&self) -> *mut u8 {
        self.seg.base().as_ptr()
    }

    /// The block as a byte slice.
    ///
    /// # Safety
    /// No process, and no other thread of this one, may write the block
    /// (through [`write`](Self::write) or otherwise) while the slice is
    /// alive (other processes are outside Rust's aliasing rules, so you must
    /// ensure it, e.g. with a [`Lock`](crate::sync::Lock)).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is valid for size() bytes; no concurrent writers
        // per the caller's contract.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size()) }
    }

    /// The block as a mutable byte slice.
    ///
    /// # Safety
    /// No other slice of this block may be alive in this process, and
    /// nothing else — no other process, no other thread, no `read` or
    /// `write` — may access it while the slice is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is valid for size() bytes; exclusive per the
        // caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size()) }
    }

    /// Removes the name now; processes that have it mapped keep the memory.
    pub fn unlink(&mut self) -> Result<(), ShmError> {
        self.seg.unlink()
    }

    /// Keeps the name when this (creating) handle is dropped, so processes
    /// that start later can still open it. Someone must then `unlink` it.
    /// The block's creator record says so, so `mpkit rm --stale` leaves it.
    pub fn keep(&mut self) {
        self.seg.set_owns_name(false);
        if self.seg.name().is_some() {
            if let Some(mut m) = mark::Mark::read(self.seg.as_fd()) {
                m.kept = true;
                let _ = m.write(self.seg.as_fd());
            }
        }
    }

    /// Another handle to the same block (it does not remove the name).
    pub fn try_clone(&self) -> Result<SharedMemory, ShmError> {
        Ok(SharedMemory {
            seg: self.seg.try_clone()?,
        })
    }
}

impl AsFd for SharedMemory {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.seg.as_fd()
    }
}

impl Serialize for SharedMemory {
    /// Passes as a handle (descriptor and name) to a child or over a
    /// connection.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize_handle(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SharedMemory {
            seg: Segment::deserialize_raw(d)?,
        })
    }
}
