//! Segments: the shared memory every mpkit object lives in.
//!
//! # Layout
//!
//! Every typed mpkit object occupies one segment that starts with this
//! 64-byte header (all fields little-endian, native on the supported
//! targets); the object's own state follows at offset 64.
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 8 | `magic` | `b"mpkit\0\0\x01"` |
//! | 8 | 4 | `version` | [`LAYOUT_VERSION`] |
//! | 12 | 4 | `kind` | [`ObjectKind`] as `u32` |
//! | 16 | 4 | `elem_size` | `size_of` the element type (0 if none) |
//! | 20 | 4 | `elem_align` | `align_of` the element type (0 if none) |
//! | 24 | 8 | `elem_type` | FNV-1a 64 of the element's name (0 if none; see `base/element.rs`) |
//! | 32 | 8 | `len` | element count (arrays), parties (barriers), … |
//! | 40 | 8 | `size` | bytes of the object, header and element record included |
//! | 48 | 4 | `ready` | 0 while the creator initialises, [`READY`] after (a futex word) |
//! | 52 | 4 | `creator_pid` | the creating process |
//! | 56 | 4 | `flags` | bit 0: kept (meant to outlive its creator, see `keep`) |
//! | 60 | 4 | reserved | zero |
//!
//! The segment ends with a 64-byte element record (at `size - 64`): the
//! element's name as text, so that a mismatch says what the object holds
//! (layout in `base/element.rs`).
//!
//! Attaching (by name, or receiving a handle) checks every field against
//! what the caller asked for: a file that is not an mpkit object, a newer
//! layout, another kind, another element type, a truncated file or a lock
//! whose mutex another process rewrote is a [`ShmError`], never undefined
//! behaviour.
//!
//! Anonymous segments are `memfd`s: the kernel frees them when the last
//! descriptor and mapping are gone, even if every holder was SIGKILLed.
//! Named segments are POSIX shared memory (`/dev/shm/NAME`), under the same
//! names Python's `multiprocessing.shared_memory` uses.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cell::{CELL_SIZE, MutexCell, MutexType};
use super::element;
pub(crate) use super::element::Elem;
use crate::handle;
use crate::sys::{self, Mapping};

pub use super::shm_error::ShmError;

/// What an operation on an object whose file another process truncated
/// reports (see `sys/linux/fault.rs`).
/// The longest a waiter on a segment's futex word sleeps before it reads
/// the segment again, to notice a file truncated under it: no wake can
/// reach a sleeper on a cut page (see `sync/sleep.rs`).
pub(crate) const WAKE_SLICE: std::time::Duration = std::time::Duration::from_millis(100);
pub(crate) const TRUNCATED: &str = "another process truncated the object's file: its memory is \
                                    gone (this process now sees zeros there)";

/// `b"mpkit\0\0\x01"` as a little-endian `u64`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"mpkit\0\0\x01");
/// The version of the layouts documented in this crate.
pub const LAYOUT_VERSION: u32 = 4;
/// The value of `ready` once the creator has initialised the object.
pub(crate) const READY: u32 = 0x52454459; // "REDY"
/// Size of the header; object state starts here.
pub(crate) const HEADER_SIZE: usize = 64;
/// How long an opener waits for a creator still initialising.
const READY_WAIT: Duration = Duration::from_secs(2);

/// What kind of object a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ObjectKind {
    /// [`Value`](crate::shm::Value)
    Value = 1,
    /// [`Array`](crate::shm::Array)
    Array = 2,
    /// [`RawValue`](crate::shm::RawValue)
    RawValue = 3,
    /// [`RawArray`](crate::shm::RawArray)
    RawArray = 4,
    /// [`Lock`](crate::sync::Lock)
    Lock = 5,
    /// [`RLock`](crate::sync::RLock)
    RLock = 6,
    /// [`Semaphore`](crate::sync::Semaphore)
    Semaphore = 7,
    /// [`Condition`](crate::sync::Condition)
    Condition = 8,
    /// [`Event`](crate::sync::Event)
    Event = 9,
    /// [`Barrier`](crate::sync::Barrier)
    Barrier = 10,
    /// [`BoundedSemaphore`](crate::sync::BoundedSemaphore)
    BoundedSemaphore = 11,
    /// [`Queue`](crate::queue::Queue) and [`ByteQueue`](crate::queue::ByteQueue)
    Queue = 12,
    /// [`JoinableQueue`](crate::queue::JoinableQueue)
    JoinableQueue = 13,
    /// [`SimpleQueue`](crate::queue::SimpleQueue)
    SimpleQueue = 14,
}

impl ObjectKind {
    /// Every kind, for listing.
    pub const ALL: [ObjectKind; 14] = [
        ObjectKind::Value,
        ObjectKind::Array,
        ObjectKind::RawValue,
        ObjectKind::RawArray,
        ObjectKind::Lock,
        ObjectKind::RLock,
        ObjectKind::Semaphore,
        ObjectKind::Condition,
        ObjectKind::Event,
        ObjectKind::Barrier,
        ObjectKind::BoundedSemaphore,
        ObjectKind::Queue,
        ObjectKind::JoinableQueue,
        ObjectKind::SimpleQueue,
    ];

    /// The kind stored as `raw`, if any.
    pub fn from_raw(raw: u32) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| *k as u32 == raw)
    }

    /// The type's name (`"Value"`, `"Lock"`, …).
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Value => "Value",
            ObjectKind::Array => "Array",
            ObjectKind::RawValue => "RawValue",
            ObjectKind::RawArray => "RawArray",
            ObjectKind::Lock => "Lock",
            ObjectKind::RLock => "RLock",
            ObjectKind::Semaphore => "Semaphore",
            ObjectKind::Condition => "Condition",
            ObjectKind::Event => "Event",
            ObjectKind::Barrier => "Barrier",
            ObjectKind::BoundedSemaphore => "BoundedSemaphore",
            ObjectKind::Queue => "Queue",
            ObjectKind::JoinableQueue => "JoinableQueue",
            ObjectKind::SimpleQueue => "SimpleQueue",
        }
    }
}

/// The header at offset 0 of every segment; see the module docs.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    pub magic: u64,
    pub version: u32,
    pub kind: u32,
    pub elem_size: u32,
    pub elem_align: u32,
    pub elem_type: u64,
    pub len: u64,
    pub size: u64,
    pub ready: AtomicU32,
    pub creator_pid: i32,
    pub flags: AtomicU32,
    pub reserved: u32,
}

/// `Header::flags` bit: the object was kept on purpose (not stale when its
/// creator is gone).
pub(crate) const FLAG_KEPT: u32 = 1;

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

/// What an object needs from its segment.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub kind: ObjectKind,
    pub elem: Elem,
    pub len: u64,
    /// Size in bytes of the header and the object's state (the element
    /// record follows).
    pub size: usize,
    /// The lock cells in the layout (offset, mutex type): attaching checks
    /// each mutex's kind word.
    pub cells: &'static [(usize, MutexType)],
}

impl Spec {
    /// The segment's size in bytes: the object and its element record
    /// (`usize::MAX` for an impossible size, which no header matches).
    fn total(&self) -> usize {
        self.size.saturating_add(element::RECORD_SIZE)
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two).
pub(crate) const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Normalises a user-facing name to the `shm_open` form (`/name`),
/// refusing what POSIX and Python would refuse.
pub(crate) fn shm_path(name: &str) -> Result<String, ShmError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty()
        || bare.len() > 250
        || bare.contains('/')
        || bare.contains('\0')
        || bare == "."
        || bare == ".."
    {
        return Err(ShmError::InvalidName(name.to_string()));
    }
    Ok(format!("/{bare}"))
}

/// A fresh name: `mpkit_` and 16 hex digits.
pub(crate) fn generated_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i32(sys::getpid());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("mpkit_{:016x}", h.finish())
}

/// A mapped segment: its descriptor, its mapping, and its name if named.
#[derive(Debug)]
pub(crate) struct Segment {
    fd: OwnedFd,
    map: Mapping,
    /// The name (without the leading `/`) of a named segment.
    name: Option<String>,
    /// This handle removes the name when dropped.
    owns_name: bool,
    /// The segment starts with an mpkit header.
    typed: bool,
    /// The header's `len` as checked when this handle was made (0 without
    /// a header): never re-read, since another process may rewrite the
    /// header later.
    len: u64,
}

impl Segment {
    /// Maps `size` bytes of a new anonymous or named file, without a header
    /// (for [`SharedMemory`](super::SharedMemory), whose bytes are all the user's).
    pub(crate) fn create_raw(
        name: Option<&str>,
        size: usize,
        mode: u32,
    ) -> Result<Segment, ShmError> {
        if size == 0 {
            return Err(ShmError::ZeroSize);
        }
        let (fd, name) = match name {
            None => (sys::memfd("mpkit", size as u64)?, None),
            Some(n) => {
                let path = shm_path(n)?;
                let fd = sys::shm_open(&path, true, mode).map_err(|e| ShmError::from_open(e, n))?;
                // Backed now, not at the first touch of each page: on a full
                // /dev/shm a sparse file would take the process down with
                // SIGBUS later (memfds live on the kernel's internal mount,
                // which has no size limit, so they skip this).
                let sized = sys::set_len(fd.as_fd(), size as u64)
                    .and_then(|()| sys::allocate(fd.as_fd(), size as u64));
                if let Err(e) = sized {
                    let _ = sys::shm_unlink(&path);
                    return Err(e.into());
                }
                (fd, Some(path[1..].to_string()))
            }
        };
        let map = Mapping::new(fd.as_fd(), size);
        let map = match map {
            Ok(m) => m,
            Err(e) => {
                if let Some(n) = &name {
                    let _ = sys::shm_unlink(&format!("/{n}"));
                }
                return Err(e.into());
            }
        };
        let owns_name = name.is_some();
        Ok(Segment {
            fd,
            map,
            name,
            owns_name,
            typed: false,
            len: 0,
        })
    }

    /// Maps an existing named file, without checking any header.
    pub(crate) fn open_raw(name: &str) -> Result<Segment, ShmError> {
        let path = shm_path(name)?;
        let fd = sys::shm_open(&path, false, 0).map_err(|e| ShmError::from_open(e, name))?;
        let size = sys::file_len(fd.as_fd())? as usize;
        if size == 0 {
            return Err(ShmError::Truncated { size: 0, needed: 1 });
        }
        let map = Mapping::new(fd.as_fd(), size)?;
        Ok(Segment {
            fd,
            map,
            name: Some(path[1..].to_string()),
            owns_name: false,
            typed: false,
            len: 0,
        })
    }

    /// Creates a segment for an object: writes the header (not yet ready),
    /// lets `init` set up the state after it, then publishes it.
    pub(crate) fn create(
        spec: Spec,
        name: Option<&str>,
        mode: u32,
        init: impl FnOnce(NonNull<u8>) -> io::Result<()>,
    ) -> Result<Segment, ShmError> {
        let total = spec.total();
        if total == usize::MAX {
            return Err(ShmError::TooLarge {
                what: "an object in bytes",
                requested: u64::MAX,
                max: usize::MAX as u64,
            });
        }
        let mut seg = Segment::create_raw(name, total, mode)?;
        seg.typed = true;
        seg.len = spec.len;
        let header = seg.header_ptr();
        // SAFETY: the mapping is new, at least HEADER_SIZE bytes, page-aligned,
        // and no other process can have the header marked ready yet.
        unsafe {
            header.write(Header {
                magic: MAGIC,
                version: LAYOUT_VERSION,
                kind: spec.kind as u32,
                elem_size: spec.elem.size,
                elem_align: spec.elem.align,
                elem_type: spec.elem.type_hash,
                len: spec.len,
                size: total as u64,
                ready: AtomicU32::new(0),
                creator_pid: sys::getpid(),
                flags: AtomicU32::new(0),
                reserved: 0,
            });
        }
        let record = spec.elem.record();
        // SAFETY: the record lies at `total - RECORD_SIZE`, inside the new
        // mapping of `total` bytes, which nothing else writes before ready.
        unsafe {
            seg.map
                .ptr()
                .add(total - element::RECORD_SIZE)
                .cast::<[u8; element::RECORD_SIZE]>()
                .write(record);
        }
        init(seg.map.ptr())?;
        let ready = &seg.header().ready;
        ready.store(READY, Ordering::Release);
        sys::futex_wake(ready, u32::MAX);
        Ok(seg)
    }

    /// Attaches to a named object; `spec` says what the caller expects,
    /// given the (already sanity-checked) header.
    pub(crate) fn open(
        name: &str,
        spec: impl FnOnce(&Header) -> Spec,
    ) -> Result<Segment, ShmError> {
        let path = shm_path(name)?;
        let fd = sys::shm_open(&path, false, 0).map_err(|e| ShmError::from_open(e, name))?;
        Segment::attach(fd, Some(path[1..].to_string()), spec)
    }

    /// Maps an object's descriptor and checks its header: magic, readiness,
    /// version, kind, element type and size, then the kind of each lock
    /// cell's mutex.
    pub(crate) fn attach(
        fd: OwnedFd,
        name: Option<String>,
        spec: impl FnOnce(&Header) -> Spec,
    ) -> Result<Segment, ShmError> {
        let size = sys::file_len(fd.as_fd())? as usize;
        if size < HEADER_SIZE {
            return Err(ShmError::Truncated {
                size,
                needed: HEADER_SIZE,
            });
        }
        let map = Mapping::new(fd.as_fd(), size)?;
        let seg = Segment {
            fd,
            map,
            name,
            owns_name: false,
            typed: true,
            len: 0,
        };
        let h = seg.header();
        if h.magic != MAGIC {
            return Err(ShmError::NotMpkit);
        }
        let deadline = sys::deadline_after(Some(READY_WAIT));
        loop {
            match h.ready.load(Ordering::Acquire) {
                READY => break,
                // A creator initialising: sleep until it publishes.
                0 => {
                    if sys::futex_wait(&h.ready, 0, deadline)? == sys::FutexWait::TimedOut
                        && h.ready.load(Ordering::Acquire) == 0
                    {
                        return Err(ShmError::NotReady);
                    }
                }
                // No creator writes anything else; and the futex would not
                // sleep on it, so waiting would spin.
                other => {
                    return Err(ShmError::Corrupt(format!(
                        "the header's ready word is {other:#x}, neither 0 (initialising) nor \
                         {READY:#x} (ready)"
                    )));
                }
            }
        }
        if h.version != LAYOUT_VERSION {
            return Err(ShmError::Version {
                found: h.version,
                supported: LAYOUT_VERSION,
            });
        }
        let spec = spec(h);
        if h.kind != spec.kind as u32 {
            return Err(ShmError::WrongKind {
                found: ObjectKind::from_raw(h.kind).map_or("an unknown kind", ObjectKind::name),
                expected: spec.kind.name(),
            });
        }
        if (h.elem_size, h.elem_align, h.elem_type)
            != (spec.elem.size, spec.elem.align, spec.elem.type_hash)
        {
            return Err(ShmError::WrongElement {
                holds: seg.stored_element(size),
                asked: spec.elem.describe(),
            });
        }
        let recorded = h.size as usize;
        if recorded != spec.total() || h.len != spec.len {
            return Err(ShmError::Corrupt(format!(
                "the header says {recorded} bytes and length {}, the layout needs {} bytes",
                h.len,
                spec.total()
            )));
        }
        if recorded > size {
            return Err(ShmError::Truncated {
                size,
                needed: recorded,
            });
        }
        for &(offset, ty) in spec.cells {
            debug_assert!(offset + CELL_SIZE <= spec.size, "cell outside the layout");
            // SAFETY: the layout puts an initialised cell at `offset`, inside
            // the `recorded` bytes checked above to be mapped.
            let cell = unsafe { seg.at::<MutexCell>(offset).as_ref() };
            if let Some(kind) = cell.wrong_kind(ty) {
                return Err(ShmError::Corrupt(format!(
                    "the lock at offset {offset} has mutex kind {kind:#x}, not {:#x} (a robust \
                     process-shared {ty:?} mutex): another process overwrote it",
                    ty.kind()
                )));
            }
        }
        let mut seg = seg;
        seg.len = spec.len;
        Ok(seg)
    }

    /// What the object holds, by its header and element record, for an
    /// error: the record is read only where the header's `size` places it
    /// inside the `mapped` bytes, and checked.
    fn stored_element(&self, mapped: usize) -> String {
        let h = self.header();
        // Read once: another process may rewrite it meanwhile.
        let size = h.size as usize;
        let text = match size.checked_sub(element::RECORD_SIZE) {
            Some(at) if at >= HEADER_SIZE && size <= mapped => {
                // SAFETY: `at..at + RECORD_SIZE` is inside the mapping (just
                // checked); any bit pattern is a valid byte array, and the
                // text is validated before use.
                let record = unsafe {
                    self.map
                        .ptr()
                        .add(at)
                        .cast::<[u8; element::RECORD_SIZE]>()
                        .read()
                };
                element::record_text_or_unreadable(&record).to_string()
            }
            _ => "an unreadable element".to_string(),
        };
        if h.elem_type == 0 && text.is_empty() {
            return "no element".to_string();
        }
        element::describe(&text, h.elem_size, h.elem_align)
    }

    /// The object's length (elements, parties, ring bytes) as checked when
    /// this handle was made. Use this, not `header().len`: the header lives
    /// in memory any process of the user may rewrite, and an index checked
    /// against a length read now could be out of bounds by the time it is
    /// used.
    pub(crate) fn object_len(&self) -> u64 {
        self.len
    }

    /// The header.
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_SIZE bytes and page-aligned;
        // Header's only mutable field is atomic.
        unsafe { &*self.header_ptr() }
    }

    fn header_ptr(&self) -> *mut Header {
        self.map.ptr().as_ptr().cast()
    }

    /// Whether another process truncated the file under this handle (an
    /// access past its new end found private zeros instead of killing the
    /// process; see `sys/linux/fault.rs`). One relaxed load: objects call
    /// it after each operation and report [`TRUNCATED`] as corrupt.
    #[inline]
    pub(crate) fn truncated(&self) -> bool {
        self.map.truncated()
    }

    /// The start of the mapping.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.map.ptr()
    }

    /// A pointer `offset` bytes into the mapping.
    ///
    /// # Panics
    /// If `offset` is outside the mapping (a bug in the caller's layout).
    pub(crate) fn at<T>(&self, offset: usize) -> NonNull<T> {
        assert!(
            offset + std::mem::size_of::<T>() <= self.map.len(),
            "layout outside the segment"
        );
        // SAFETY: in bounds, as just checked.
        unsafe { self.map.ptr().add(offset).cast() }
    }

    /// The first of `count` elements of `T` at `offset`: a valid pointer
    /// for a slice of them (dangling-free even when `count` is 0, which
    /// [`at`](Self::at) would refuse for an array with no element).
    ///
    /// # Panics
    /// If the elements lie outside the mapping (a bug in the caller's layout).
    pub(crate) fn elements<T>(&self, offset: usize, count: usize) -> NonNull<T> {
        let end = count
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|bytes| bytes.checked_add(offset));
        assert!(
            end.is_some_and(|end| end <= self.map.len()),
            "layout outside the segment"
        );
        // SAFETY: `offset` is at most the mapping's length, as just checked
        // (one past its end only for no elements).
        unsafe { self.map.ptr().add(offset).cast() }
    }

    /// Mapped length.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The name of a named segment.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether this handle removes the name when dropped. Giving it up
    /// marks a typed object as kept, so `mpkit ls` does not call it stale
    /// once its creator exits.
    pub(crate) fn set_owns_name(&mut self, owns: bool) {
        self.owns_name = owns && self.name.is_some();
        if !owns && self.typed && self.name.is_some() {
            self.header().flags.fetch_or(FLAG_KEPT, Ordering::SeqCst);
        }
    }

    /// Removes the name now (the memory stays until the last handle is gone).
    pub(crate) fn unlink(&mut self) -> Result<(), ShmError> {
        self.owns_name = false;
        match &self.name {
            Some(n) => sys::shm_unlink(&format!("/{n}")).map_err(|e| ShmError::from_open(e, n)),
            None => Ok(()),
        }
    }

    /// Serializes as a handle: the descriptor, plus the name if any.
    pub(crate) fn serialize_handle<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (handle::BorrowedHandle(self.fd.as_fd()), &self.name).serialize(s)
    }

    /// Deserializes a handle and checks it against `spec`.
    pub(crate) fn deserialize_handle<'de, D: Deserializer<'de>>(
        d: D,
        spec: impl FnOnce(&Header) -> Spec,
    ) -> Result<Segment, D::Error> {
        let (fd, name) = <(handle::FdHandle, Option<String>)>::deserialize(d)?;
        Segment::attach(fd.0, name, spec).map_err(D::Error::custom)
    }

    /// Deserializes a handle to a header-less segment.
    pub(crate) fn deserialize_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Segment, D::Error> {
        let (fd, name) = <(handle::FdHandle, Option<String>)>::deserialize(d)?;
        let size = sys::file_len(fd.0.as_fd()).map_err(D::Error::custom)? as usize;
        let map = Mapping::new(fd.0.as_fd(), size).map_err(D::Error::custom)?;
        Ok(Segment {
            fd: fd.0,
            map,
            name,
            owns_name: false,
            typed: false,
            len: 0,
        })
    }

    /// The segment's descriptor.
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Another handle to the same segment (a `dup` of its descriptor, a new
    /// mapping), not owning the name.
    pub(crate) fn try_clone(&self) -> Result<Segment, ShmError> {
        let fd = sys::dup(self.fd.as_fd())?;
        let map = Mapping::new(fd.as_fd(), self.map.len())?;
        Ok(Segment {
            fd,
            map,
            name: self.name.clone(),
            owns_name: false,
            typed: self.typed,
            len: self.len,
        })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.owns_name {
            let _ = self.unlink();
        }
    }
}

/// Implements what every segment-backed object has in common: `name`,
/// `keep`, `unlink`, `try_clone`, `AsFd`, and passing as a handle (the
/// receiving side checks the header against `$spec`, a `fn(&Header) -> Spec`).
macro_rules! segment_object {
    ($ty:ident $(<$t:ident: $bound:path>)?, $spec:expr) => {
        impl$(<$t: $bound>)? $ty$(<$t>)? {
            /// The name (without the leading `/`), for a named object.
            pub fn name(&self) -> Option<&str> {
                self.seg.name()
            }

            /// Keeps the name when this creating handle is dropped, so that
            /// processes started later can still open it.
            pub fn keep(&mut self) {
                self.seg.set_owns_name(false);
            }

            /// Removes the name now; processes that have the object keep it.
            pub fn unlink(&mut self) -> Result<(), $crate::base::segment::ShmError> {
                self.seg.unlink()
            }

            /// Another handle to the same object (it never removes the name).
            pub fn try_clone(&self) -> Result<Self, $crate::base::segment::ShmError> {
                Ok(Self::from_segment(self.seg.try_clone()?))
            }
        }

        impl$(<$t: $bound>)? std::os::fd::AsFd for $ty$(<$t>)? {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.seg.as_fd()
            }
        }

        impl$(<$t: $bound>)? serde::Serialize for $ty$(<$t>)? {
            /// Passes as a handle (its descriptor travels beside the message).
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.seg.serialize_handle(s)
            }
        }

        impl<'de $(, $t: $bound)?> serde::Deserialize<'de> for $ty$(<$t>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::base::segment::Segment::deserialize_handle(d, $spec).map(Self::from_segment)
            }
        }
    };
}
pub(crate) use segment_object;
