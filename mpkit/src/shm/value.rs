//! Typed shared values: `Value`, `Array` (locked), the layouts of every
//! typed value, and what the lock-free `RawValue` and `RawArray` (in
//! [`raw`](super::raw)) share with them.
//!
//! # Layouts
//!
//! | object | offset 0 | offset 64 | data |
//! |---|---|---|---|
//! | `Value<T>` | header (kind 1, len 1) | lock cell (recursive) | one `T` at `align_up(128, align_of::<T>())` |
//! | `Array<T>` | header (kind 2, len n) | lock cell (recursive) | `n` × `T` at `align_up(128, align_of::<T>())` |
//! | `RawValue<T>` | header (kind 3, len 1) | — | one `T` at `align_up(64, align_of::<T>())` |
//! | `RawArray<T>` | header (kind 4, len n) | — | `n` × `T` at `align_up(64, align_of::<T>())` |
//!
//! # Safety across threads and processes
//! `Value` and `Array` touch their data only under their lock, in every
//! method and guard, so within a process no access races. `RawValue` and
//! `RawArray` copy without a lock, with atomic accesses only (see
//! [`raw`](super::raw)).
//!
//! # Locked access can fail
//! Every access to a `Value` or an `Array` takes its lock, and taking it
//! can fail: another process may have overwritten the lock's memory
//! ([`LockError::Corrupt`]), or the OS may refuse. So `get`, `set` and
//! `to_vec` return a `Result` (as Python's `Value.value` can raise),
//! rather than panicking on bytes another process wrote.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytemuck::{Pod, Zeroable};

use super::{Elem, HEADER_SIZE, Header, Segment, ShmError, Spec, align_up, segment_object};
use crate::base::cell::{CELL_SIZE, MutexCell, MutexType};
use crate::base::segment::ObjectKind;
use crate::sync::RLockRef;
use crate::sync::{LockError, LockTimeoutError, TryLockError};
use crate::sys;

/// A `bool` that is plain data: one byte, any non-zero value reads as true,
/// so no process can make another read an invalid `bool`.
///
/// ```
/// use mpkit::shm::{Bool, Value};
/// let flag = Value::new(Bool::from(false))?;
/// flag.set(true.into())?;
/// assert!(flag.get()?.get());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct Bool(u8);

impl Bool {
    /// The value as a `bool`.
    pub fn get(self) -> bool {
        self.0 != 0
    }
}

impl From<bool> for Bool {
    fn from(b: bool) -> Bool {
        Bool(b as u8)
    }
}

impl From<Bool> for bool {
    fn from(b: Bool) -> bool {
        b.get()
    }
}

/// The largest element alignment a segment can honour (its page alignment).
const MAX_ALIGN: usize = 4096;

pub(super) fn data_offset<T>(locked: bool) -> usize {
    const {
        assert!(
            std::mem::align_of::<T>() <= MAX_ALIGN,
            "element alignment above a page"
        )
    };
    let start = if locked {
        HEADER_SIZE + CELL_SIZE
    } else {
        HEADER_SIZE
    };
    align_up(start, std::mem::align_of::<T>())
}

/// The mutex type of a `Value`'s or an `Array`'s lock (re-entrant, as
/// Python's).
const LOCK_TYPE: MutexType = MutexType::Recursive;

/// The layout of `len` elements of `T` of the given kind.
pub(super) fn spec<T>(kind: ObjectKind, len: u64) -> Spec {
    let locked = matches!(kind, ObjectKind::Value | ObjectKind::Array);
    let bytes = (len as usize)
        .checked_mul(std::mem::size_of::<T>())
        .and_then(|b| b.checked_add(data_offset::<T>(locked)));
    Spec {
        kind,
        elem: Elem::of::<T>(),
        len,
        // An impossible length gives a size no header can match.
        size: bytes.unwrap_or(usize::MAX),
        cells: if locked {
            &[(HEADER_SIZE, LOCK_TYPE)]
        } else {
            &[]
        },
    }
}

/// Creates a segment of `len` elements initialised from `init`.
pub(super) fn create_segment<T: Pod>(
    kind: ObjectKind,
    name: Option<&str>,
    init: &[T],
) -> Result<Segment, ShmError> {
    let spec = spec::<T>(kind, init.len() as u64);
    if spec.size == usize::MAX {
        return Err(ShmError::TooLarge {
            what: "an array length in elements",
            requested: init.len() as u64,
            max: ((usize::MAX
                - data_offset::<T>(matches!(kind, ObjectKind::Value | ObjectKind::Array)))
                / std::mem::size_of::<T>().max(1)) as u64,
        });
    }
    let locked = matches!(kind, ObjectKind::Value | ObjectKind::Array);
    Segment::create(spec, name, 0o600, |base| {
        // SAFETY: the segment is fresh and sized by `spec` for the cell and
        // the elements at their offsets; nothing else uses it yet.
        unsafe {
            if locked {
                MutexCell::init(base.as_ptr().add(HEADER_SIZE).cast(), LOCK_TYPE)?;
            }
            let data = base.as_ptr().add(data_offset::<T>(locked)).cast::<T>();
            std::ptr::copy_nonoverlapping(init.as_ptr(), data, init.len());
        }
        Ok(())
    })
}

/// A shared value with a lock (Python's `multiprocessing.Value`).
///
/// The lock is re-entrant (an RLock, as in Python) and robust: if a process
/// dies holding it, the next [`lock`](Self::lock) succeeds and its guard
/// reports [`owner_died`](ValueGuard::owner_died), so the value can be
/// checked or repaired.
///
/// # Safety across threads and processes
/// Every access to the value — [`get`](Self::get), [`set`](Self::set) and
/// the guard — holds the lock, so threads of one process never race on it.
/// Another process that writes without the lock (Python's `get_obj()`, or
/// mpkit's [`SharedMemory`](super::SharedMemory) over the same file) can
/// make a reader see a half-written `T`; any bytes are a valid `T`
/// ([`Pod`]), so that is a wrong value, never undefined behaviour in this
/// process.
///
/// # Errors
/// Every access takes the lock, which fails only when another process
/// overwrote its memory or the OS refuses (see the module docs), so
/// [`get`](Self::get) and [`set`](Self::set) return a [`LockError`].
///
/// ```
/// use mpkit::shm::Value;
/// let v = Value::new(41i64)?;
/// *v.lock()? += 1;
/// assert_eq!(v.get()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Value<T: Pod> {
    seg: Segment,
    /// A guard of this handle lends out `&mut T`. Kept in this process,
    /// not in the segment, where another process could clear it.
    lent: AtomicBool,
    _t: PhantomData<T>,
}

// SAFETY: every access to the shared T, from any thread, holds the
// process-shared lock (`get`/`set` through `HeldShared`, the guard through
// `Guard::lock`), and T: Send may be handed between threads.
unsafe impl<T: Pod + Send> Send for Value<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for Value<T> {}

impl<T: Pod> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .field("name", &self.seg.name())
            .finish()
    }
}

segment_object!(Value<T: Pod>, |_: &Header| spec::<T>(ObjectKind::Value, 1));

impl<T: Pod> Value<T> {
    fn from_segment(seg: Segment) -> Self {
        Value {
            seg,
            lent: AtomicBool::new(false),
            _t: PhantomData,
        }
    }

    /// A new anonymous value (pass it to children in `Process` arguments).
    pub fn new(init: T) -> Result<Value<T>, ShmError> {
        Ok(Value::from_segment(create_segment(
            ObjectKind::Value,
            None,
            &[init],
        )?))
    }

    /// A new named value that unrelated processes can [`open`](Self::open).
    pub fn create(name: &str, init: T) -> Result<Value<T>, ShmError> {
        Ok(Value::from_segment(create_segment(
            ObjectKind::Value,
            Some(name),
            &[init],
        )?))
    }

    /// Attaches to a named value; fails if it is not a `Value<T>`.
    pub fn open(name: &str) -> Result<Value<T>, ShmError> {
        Segment::open(name, |_| spec::<T>(ObjectKind::Value, 1)).map(Value::from_segment)
    }

    fn cell(&self) -> &MutexCell {
        // SAFETY: the header check proved a Value layout: an initialised cell
        // sits at HEADER_SIZE.
        unsafe { self.seg.at::<MutexCell>(HEADER_SIZE).as_ref() }
    }

    fn data(&self) -> NonNull<T> {
        self.seg.at::<T>(data_offset::<T>(true))
    }

    /// The guard of a lock this thread just took.
    #[inline]
    fn guard(&self, owner_died: bool) -> ValueGuard<'_, T> {
        Guard::new(
            self.cell(),
            &self.lent,
            self.data(),
            owner_died,
            "Value::lock",
        )
    }

    /// Locks the value and gives access to it through the guard.
    ///
    /// # Panics
    /// If this thread already holds a guard of this value (two guards would
    /// be two `&mut` to the same data).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, LockError> {
        let owner_died = self.cell().lock(LOCK_TYPE)?;
        Ok(self.guard(owner_died))
    }

    /// Locks the value if no one else holds it.
    ///
    /// # Panics
    /// As [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, TryLockError> {
        let owner_died = self.cell().try_lock(LOCK_TYPE)?;
        Ok(self.guard(owner_died))
    }

    /// Locks the value, waiting at most `timeout`.
    ///
    /// # Panics
    /// As [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>, LockTimeoutError> {
        let deadline = sys::deadline_after(Some(timeout));
        let owner_died = self.cell().lock_until(LOCK_TYPE, deadline)?;
        Ok(self.guard(owner_died))
    }

    /// Reads the value (under the lock). An error when the lock cannot be
    /// taken (see the type's docs).
    ///
    /// # Panics
    /// If this thread holds a guard of this value: read through the guard.
    pub fn get(&self) -> Result<T, LockError> {
        let _held = HeldShared::new(self.cell(), &self.lent, "Value::get")?;
        // SAFETY: we hold the lock and no `&mut` guard is alive in this thread.
        Ok(unsafe { self.data().read() })
    }

    /// Writes the value (under the lock). An error, and nothing written,
    /// when the lock cannot be taken.
    ///
    /// # Panics
    /// If this thread holds a guard of this value: write through the guard.
    pub fn set(&self, value: T) -> Result<(), LockError> {
        let _held = HeldShared::new(self.cell(), &self.lent, "Value::set")?;
        // SAFETY: as in `get`.
        unsafe { self.data().write(value) };
        Ok(())
    }

    /// The value's lock (Python's `get_lock()`), to hold it across several
    /// operations: `get`/`set` inside it re-enter it.
    pub fn get_lock(&self) -> RLockRef<'_> {
        RLockRef::new(self.cell())
    }
}

/// Holds a cell's lock for a copy in or out; panics if a `&mut` guard of
/// the same handle is alive in this thread.
struct HeldShared<'a>(&'a MutexCell);

impl<'a> HeldShared<'a> {
    /// `lent` is the handle's flag: while the lock is held only this
    /// thread can have set it (another thread's guard would hold the lock).
    fn new(
        cell: &'a MutexCell,
        lent: &AtomicBool,
        what: &str,
    ) -> Result<HeldShared<'a>, LockError> {
        let owner_died = cell.lock(LOCK_TYPE)?;
        if owner_died {
            // A thread of this process left a guard behind and died.
            lent.store(false, Ordering::Relaxed);
        }
        let held = HeldShared(cell);
        if lent.load(Ordering::Relaxed) {
            drop(held);
            panic!("{what}: this thread holds a guard of this object; use the guard");
        }
        Ok(held)
    }
}

impl Drop for HeldShared<'_> {
    fn drop(&mut self) {
        let _ = self.0.release(LOCK_TYPE);
    }
}

/// Access to the data of a locked [`Value`] (`T`) or [`Array`] (`[T]`);
/// unlocks when dropped.
pub struct Guard<'a, T: ?Sized> {
    cell: &'a MutexCell,
    lent: &'a AtomicBool,
    data: NonNull<T>,
    owner_died: bool,
    /// The lock belongs to this thread: the guard must be dropped here.
    _not_send: PhantomData<*const ()>,
    _t: PhantomData<&'a mut T>,
}

/// The guard of a locked [`Value`].
pub type ValueGuard<'a, T> = Guard<'a, T>;

/// The guard of a locked [`Array`] (a slice).
pub type ArrayGuard<'a, T> = Guard<'a, [T]>;

impl<'a, T: ?Sized> Guard<'a, T> {
    /// Lends out `data` of `cell`, just locked by this thread; `lent` is
    /// the handle's flag, refusing a second lender (the lock is
    /// re-entrant, so only this thread can have set it).
    fn new(
        cell: &'a MutexCell,
        lent: &'a AtomicBool,
        data: NonNull<T>,
        owner_died: bool,
        what: &str,
    ) -> Self {
        if owner_died {
            // A thread of this process left a guard behind and died.
            lent.store(false, Ordering::Relaxed);
        }
        if lent.swap(true, Ordering::Relaxed) {
            let _ = cell.release(LOCK_TYPE);
            panic!("{what}: this thread already holds a guard of this object");
        }
        Guard {
            cell,
            lent,
            data,
            owner_died,
            _not_send: PhantomData,
            _t: PhantomData,
        }
    }

    /// True when the previous holder died holding the lock: the data may be
    /// half-updated. The lock itself is healthy again.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl<T: ?Sized> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held and this guard is the only lender.
        unsafe { self.data.as_ref() }
    }
}

impl<T: ?Sized> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this borrow unique.
        unsafe { self.data.as_mut() }
    }
}

impl<T: ?Sized> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lent.store(false, Ordering::Relaxed);
        let _ = self.cell.release(LOCK_TYPE);
    }
}

/// Why a write to an [`Array`] failed; nothing was written.
///
/// ```
/// use mpkit::shm::{Array, ArrayError};
/// let a = Array::new(&[0u8; 4])?;
/// assert!(matches!(a.set(4, 1), Err(ArrayError::OutOfBounds { offset: 4, len: 1, size: 4 })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// Elements `offset..offset + len` are not all inside the `size`
    /// elements of the array.
    #[error("elements {offset}..{offset}+{len} are outside the {size}-element array")]
    OutOfBounds {
        /// The first element asked for.
        offset: usize,
        /// How many elements.
        len: usize,
        /// The array's length.
        size: usize,
    },
    /// The array's lock could not be taken (see [`LockError`]).
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// A shared array with a lock (Python's `multiprocessing.Array`).
///
/// # Safety across threads and processes
/// As for [`Value`]: every method and the guard hold the lock.
///
/// # Errors
/// As for [`Value`]: reads return a [`LockError`] when the lock cannot be
/// taken; writes an [`ArrayError`], which adds an index or length outside
/// the array.
///
/// ```
/// use mpkit::shm::Array;
/// let a = Array::new(&[1.0f64, 2.0, 3.0])?;
/// a.lock()?[1] = 20.0;
/// assert_eq!(a.get(1)?, Some(20.0));
/// assert_eq!(a.to_vec()?, [1.0, 20.0, 3.0]);
///
/// let s = Array::<u8>::zeroed(16)?; // Python's Array('c', 16)
/// s.set_value(b"hello")?;
/// assert_eq!(s.value()?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Array<T: Pod> {
    seg: Segment,
    /// As `Value::lent`.
    lent: AtomicBool,
    _t: PhantomData<T>,
}

// SAFETY: every access to the shared elements, from any thread, holds the
// lock, as for `Value`.
unsafe impl<T: Pod + Send> Send for Array<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for Array<T> {}

impl<T: Pod> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len())
            .field("name", &self.seg.name())
            .finish()
    }
}

segment_object!(Array<T: Pod>, |h: &Header| spec::<T>(ObjectKind::Array, h.len));

impl<T: Pod> Array<T> {
    fn from_segment(seg: Segment) -> Self {
        Array {
            seg,
            lent: AtomicBool::new(false),
            _t: PhantomData,
        }
    }

    /// A new anonymous array holding a copy of `init`.
    pub fn new(init: &[T]) -> Result<Array<T>, ShmError> {
        Ok(Array::from_segment(create_segment(
            ObjectKind::Array,
            None,
            init,
        )?))
    }

    /// A new anonymous array of `len` zeroes.
    pub fn zeroed(len: usize) -> Result<Array<T>, ShmError> {
        Array::new(&vec![T::zeroed(); len])
    }

    /// A new named array holding a copy of `init`.
    pub fn create(name: &str, init: &[T]) -> Result<Array<T>, ShmError> {
        Ok(Array::from_segment(create_segment(
            ObjectKind::Array,
            Some(name),
            init,
        )?))
    }

    /// Attaches to a named array; fails if it is not an `Array<T>`.
    pub fn open(name: &str) -> Result<Array<T>, ShmError> {
        Segment::open(name, |h| spec::<T>(ObjectKind::Array, h.len)).map(Array::from_segment)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.seg.object_len() as usize
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cell(&self) -> &MutexCell {
        // SAFETY: the header check proved an Array layout.
        unsafe { self.seg.at::<MutexCell>(HEADER_SIZE).as_ref() }
    }

    fn data(&self) -> NonNull<T> {
        self.seg.elements::<T>(data_offset::<T>(true), self.len())
    }

    /// The elements as a slice of the mapping.
    fn slice(&self) -> NonNull<[T]> {
        NonNull::slice_from_raw_parts(self.data(), self.len())
    }

    /// The guard of a lock this thread just took.
    #[inline]
    fn guard(&self, owner_died: bool) -> ArrayGuard<'_, T> {
        Guard::new(
            self.cell(),
            &self.lent,
            self.slice(),
            owner_died,
            "Array::lock",
        )
    }

    /// Locks the array and gives access to its elements as a slice.
    ///
    /// # Panics
    /// If this thread already holds a guard of this array.
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError> {
        let owner_died = self.cell().lock(LOCK_TYPE)?;
        Ok(self.guard(owner_died))
    }

    /// Locks the array if no one else holds it.
    ///
    /// # Panics
    /// As [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, TryLockError> {
        let owner_died = self.cell().try_lock(LOCK_TYPE)?;
        Ok(self.guard(owner_died))
    }

    /// Locks the array, waiting at most `timeout`.
    ///
    /// # Panics
    /// As [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ArrayGuard<'_, T>, LockTimeoutError> {
        let deadline = sys::deadline_after(Some(timeout));
        let owner_died = self.cell().lock_until(LOCK_TYPE, deadline)?;
        Ok(self.guard(owner_died))
    }

    /// Element `i` (under the lock), or `Ok(None)` past the end (then the
    /// lock is not taken). An error when the lock cannot be taken.
    ///
    /// # Panics
    /// If this thread holds a guard of this array: read through the guard
    /// (as for every method below that takes the lock).
    pub fn get(&self, i: usize) -> Result<Option<T>, LockError> {
        if i >= self.len() {
            return Ok(None);
        }
        let _held = HeldShared::new(self.cell(), &self.lent, "Array::get")?;
        // SAFETY: in bounds; lock held, no `&mut` guard alive in this thread.
        Ok(Some(unsafe { self.data().add(i).read() }))
    }

    /// Sets element `i` (under the lock).
    pub fn set(&self, i: usize, value: T) -> Result<(), ArrayError> {
        let len = self.len();
        if i >= len {
            return Err(ArrayError::OutOfBounds {
                offset: i,
                len: 1,
                size: len,
            });
        }
        let _held = HeldShared::new(self.cell(), &self.lent, "Array::set")?;
        // SAFETY: as in `get`.
        unsafe { self.data().add(i).write(value) };
        Ok(())
    }

    /// A copy of every element (under the lock).
    pub fn to_vec(&self) -> Result<Vec<T>, LockError> {
        let _held = HeldShared::new(self.cell(), &self.lent, "Array::to_vec")?;
        // SAFETY: as in `get`; `len` elements follow the data offset.
        Ok(unsafe { std::slice::from_raw_parts(self.data().as_ptr(), self.len()) }.to_vec())
    }

    /// Overwrites every element from `values` (same length) under the lock.
    pub fn copy_from_slice(&self, values: &[T]) -> Result<(), ArrayError> {
        if values.len() != self.len() {
            return Err(ArrayError::OutOfBounds {
                offset: 0,
                len: values.len(),
                size: self.len(),
            });
        }
        let _held = HeldShared::new(self.cell(), &self.lent, "Array::copy_from_slice")?;
        // SAFETY: as in `get`; lengths checked.
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), self.data().as_ptr(), values.len())
        };
        Ok(())
    }

    /// The array's lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> RLockRef<'_> {
        RLockRef::new(self.cell())
    }
}

impl Array<u8> {
    /// The bytes up to the first NUL (Python's `Array('c', …).value`).
    pub fn value(&self) -> Result<Vec<u8>, LockError> {
        let mut v = self.to_vec()?;
        if let Some(end) = v.iter().position(|&b| b == 0) {
            v.truncate(end);
        }
        Ok(v)
    }

    /// Stores `bytes` and NUL-fills the rest; longer than the array is an
    /// error and changes nothing.
    pub fn set_value(&self, bytes: &[u8]) -> Result<(), ArrayError> {
        if bytes.len() > self.len() {
            return Err(ArrayError::OutOfBounds {
                offset: 0,
                len: bytes.len(),
                size: self.len(),
            });
        }
        let mut all = vec![0u8; self.len()];
        all[..bytes.len()].copy_from_slice(bytes);
        self.copy_from_slice(&all)
    }

    /// The value as text (up to the first NUL).
    pub fn to_string_lossy(&self) -> Result<String, LockError> {
        Ok(String::from_utf8_lossy(&self.value()?).into_owned())
    }
}
