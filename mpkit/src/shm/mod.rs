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
//! assert_eq!(counter.get(), 10);
//! assert_eq!(squares.to_vec(), [1, 4, 9]);
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
//! checks: the wrong kind, element type, version or a truncated file is a
//! [`ShmError`].
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

mod list;
mod segment;
mod value;

use std::io;
use std::os::fd::AsFd;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use list::{ObjectInfo, inspect, list, remove};
pub(crate) use segment::{Elem, HEADER_SIZE, Header, Segment, Spec, align_up, segment_object};
pub use segment::{LAYOUT_VERSION, ObjectKind};
pub use value::{
    Array, ArrayGuard, AtomicElement, Bool, Guard, RawArray, RawValue, Value, ValueGuard,
};

/// Why a shared-memory object could not be created or attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// No object has this name.
    #[error("no shared memory object named {0:?}")]
    NotFound(String),
    /// The name is taken.
    #[error("a shared memory object named {0:?} already exists")]
    Exists(String),
    /// The name is empty, too long, or contains `/`.
    #[error("invalid shared memory name {0:?} (use 1-250 characters, no '/')")]
    InvalidName(String),
    /// The file does not start with an mpkit header.
    #[error("not an mpkit object (no mpkit header)")]
    NotMpkit,
    /// The object was made by an mpkit with another layout.
    #[error("the object has layout version {found}; this mpkit supports version {supported}")]
    Version {
        /// The object's layout version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The object is of another kind (a lock opened as a value, …).
    #[error("the object is a {found}, not a {expected}")]
    WrongKind {
        /// What the object is.
        found: &'static str,
        /// What the caller asked for.
        expected: &'static str,
    },
    /// The object holds another element type.
    #[error(
        "the object holds elements of another type ({found_size} bytes, alignment \
         {found_align}), not `{expected}`"
    )]
    WrongType {
        /// The type the caller asked for.
        expected: &'static str,
        /// The stored element size.
        found_size: u32,
        /// The stored element alignment.
        found_align: u32,
    },
    /// The file is shorter than its header says.
    #[error("the object is truncated: {size} bytes, {needed} needed")]
    Truncated {
        /// The file's size.
        size: usize,
        /// The size the object needs.
        needed: usize,
    },
    /// The creator never finished initialising the object (it died, or it
    /// is not an mpkit object).
    #[error("the object was never initialised (did its creator die?)")]
    NotReady,
    /// The header is inconsistent.
    #[error("corrupt object header: {0}")]
    Corrupt(String),
    /// An offset or index outside the object.
    #[error("offset {offset} + {len} bytes is outside the {size}-byte object")]
    OutOfBounds {
        /// The start asked for.
        offset: usize,
        /// The length asked for.
        len: usize,
        /// The object's size.
        size: usize,
    },
    /// The operating system refused.
    #[error("shared memory: {0}")]
    Io(#[from] io::Error),
}

impl ShmError {
    fn from_open(e: io::Error, name: &str) -> ShmError {
        match e.raw_os_error() {
            Some(crate::sys::ENOENT) => ShmError::NotFound(name.to_string()),
            Some(crate::sys::EEXIST) => ShmError::Exists(name.to_string()),
            Some(crate::sys::EINVAL) | Some(crate::sys::ENAMETOOLONG) => {
                ShmError::InvalidName(name.to_string())
            }
            _ => ShmError::Io(e),
        }
    }
}

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
        Ok(SharedMemory {
            seg: Segment::create_raw(Some(name), size, mode)?,
        })
    }

    /// Creates a named block under a fresh name (`mpkit_` + 16 hex digits).
    pub fn create_unique(size: usize) -> Result<SharedMemory, ShmError> {
        loop {
            match SharedMemory::create(&segment::generated_name(), size) {
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

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        self.bounds(offset, buf.len())?;
        // SAFETY: in bounds (checked); the source is shared memory other
        // processes may write concurrently, which at worst gives a torn copy
        // of plain bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.seg.base().as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    /// Copies `data` into the block at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        self.bounds(offset, data.len())?;
        // SAFETY: in bounds (checked); the mapping is writable and holds plain
        // bytes with no Rust references into it handed out by safe code.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.seg.base().as_ptr().add(offset),
                data.len(),
            )
        };
        Ok(())
    }

    /// A copy of the whole block.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.size()];
        self.read(0, &mut v).expect("whole block is in bounds");
        v
    }

    /// The start of the mapping, for your own synchronised access.
    pub fn as_ptr(&self) -> *mut u8 {
        self.seg.base().as_ptr()
    }

    /// The block as a byte slice.
    ///
    /// # Safety
    /// No process may write the block while the slice is alive (other
    /// processes are outside Rust's aliasing rules, so you must ensure it,
    /// e.g. with a [`Lock`](crate::sync::Lock)).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is valid for size() bytes; no concurrent writers
        // per the caller's contract.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size()) }
    }

    /// The block as a mutable byte slice.
    ///
    /// # Safety
    /// No other slice of this block may be alive in this process, and no
    /// other process may access it while the slice is alive.
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
    pub fn keep(&mut self) {
        self.seg.set_owns_name(false);
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
