//! Typed shared values: `Value`, `Array` (locked) and `RawValue`,
//! `RawArray` (lock-free).
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
//! `RawArray` copy without a lock, through [`atomic_copy`], whose accesses
//! are all atomic and as wide as the element's atomic view: a copy racing
//! `atomic().fetch_add` is a race of values (it may see the old or the new
//! one), never undefined behaviour.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytemuck::{Pod, Zeroable};

use super::{Elem, HEADER_SIZE, Header, Segment, ShmError, Spec, align_up, segment_object};
use crate::base::atomic_copy;
use crate::base::cell::{CELL_SIZE, LockError, MutexCell};
use crate::base::segment::ObjectKind;
use crate::sync::RLockRef;
use crate::sys;

/// A `bool` that is plain data: one byte, any non-zero value reads as true,
/// so no process can make another read an invalid `bool`.
///
/// ```
/// use mpkit::shm::{Bool, Value};
/// let flag = Value::new(Bool::from(false))?;
/// flag.set(true.into());
/// assert!(flag.get().get());
/// # Ok::<(), mpkit::shm::ShmError>(())
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

fn data_offset<T>(locked: bool) -> usize {
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

/// The layout of `len` elements of `T` of the given kind.
fn spec<T>(kind: ObjectKind, len: u64) -> Spec {
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
    }
}

/// Creates a segment of `len` elements initialised from `init`.
fn create_segment<T: Pod>(
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
                MutexCell::init(base.as_ptr().add(HEADER_SIZE).cast(), true)?;
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
/// ```
/// use mpkit::shm::Value;
/// let v = Value::new(41i64)?;
/// *v.lock()? += 1;
/// assert_eq!(v.get(), 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Value<T: Pod> {
    seg: Segment,
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

    /// Locks the value and gives access to it through the guard.
    ///
    /// # Panics
    /// If this thread already holds a guard of this value (two guards would
    /// be two `&mut` to the same data).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, LockError> {
        self.lock_until(true, None)
    }

    /// Locks the value if no one else holds it.
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, LockError> {
        self.lock_until(false, None)
    }

    /// Locks the value, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>, LockError> {
        self.lock_until(true, sys::deadline_after(Some(timeout)))
    }

    fn lock_until(
        &self,
        wait: bool,
        deadline: sys::Deadline,
    ) -> Result<ValueGuard<'_, T>, LockError> {
        Guard::lock(self.cell(), self.data(), wait, deadline, "Value::lock")
    }

    /// Reads the value (under the lock).
    pub fn get(&self) -> T {
        let _held = HeldShared::new(self.cell(), "Value::get");
        // SAFETY: we hold the lock and no `&mut` guard is alive in this thread.
        unsafe { self.data().read() }
    }

    /// Writes the value (under the lock).
    pub fn set(&self, value: T) {
        let _held = HeldShared::new(self.cell(), "Value::set");
        // SAFETY: as in `get`.
        unsafe { self.data().write(value) }
    }

    /// The value's lock (Python's `get_lock()`), to hold it across several
    /// operations: `get`/`set` inside it re-enter it.
    pub fn get_lock(&self) -> RLockRef<'_> {
        RLockRef::new(self.cell())
    }
}

/// Marks the cell's data as lent out as `&mut`, refusing a second lender.
fn take_exclusive(cell: &MutexCell, what: &str) {
    if cell.exclusive().swap(1, Ordering::Relaxed) == 1 {
        let _ = cell.release();
        panic!("{what}: this thread already holds a guard of this object");
    }
}

/// Holds a cell's lock for a copy in or out; panics if a `&mut` guard of
/// the same object is alive in this thread.
struct HeldShared<'a>(&'a MutexCell);

impl<'a> HeldShared<'a> {
    fn new(cell: &'a MutexCell, what: &str) -> HeldShared<'a> {
        // Waiting forever cannot time out; an OS error here means the cell
        // is not a mutex at all, which the header check rules out.
        cell.acquire(true, None)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if cell.exclusive().load(Ordering::Relaxed) == 1 {
            let _ = cell.release();
            panic!("{what}: this thread holds a guard of this object; use the guard");
        }
        HeldShared(cell)
    }
}

impl Drop for HeldShared<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

/// Access to the data of a locked [`Value`] (`T`) or [`Array`] (`[T]`);
/// unlocks when dropped.
pub struct Guard<'a, T: ?Sized> {
    cell: &'a MutexCell,
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
    /// Locks `cell` (waiting per `wait`/`deadline`) and lends out `data`.
    fn lock(
        cell: &'a MutexCell,
        data: NonNull<T>,
        wait: bool,
        deadline: sys::Deadline,
        what: &str,
    ) -> Result<Self, LockError> {
        let owner_died = cell.acquire(wait, deadline)?;
        take_exclusive(cell, what);
        Ok(Guard {
            cell,
            data,
            owner_died,
            _not_send: PhantomData,
            _t: PhantomData,
        })
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
        self.cell.exclusive().store(0, Ordering::Relaxed);
        let _ = self.cell.release();
    }
}

/// A shared array with a lock (Python's `multiprocessing.Array`).
///
/// # Safety across threads and processes
/// As for [`Value`]: every method and the guard hold the lock.
///
/// ```
/// use mpkit::shm::Array;
/// let a = Array::new(&[1.0f64, 2.0, 3.0])?;
/// a.lock()?[1] = 20.0;
/// assert_eq!(a.get(1), Some(20.0));
/// assert_eq!(a.to_vec(), [1.0, 20.0, 3.0]);
///
/// let s = Array::<u8>::zeroed(16)?; // Python's Array('c', 16)
/// s.set_value(b"hello")?;
/// assert_eq!(s.value(), b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Array<T: Pod> {
    seg: Segment,
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

    /// Locks the array and gives access to its elements as a slice.
    ///
    /// # Panics
    /// If this thread already holds a guard of this array.
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, LockError> {
        self.lock_until(true, None)
    }

    /// Locks the array if no one else holds it.
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, LockError> {
        self.lock_until(false, None)
    }

    /// Locks the array, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ArrayGuard<'_, T>, LockError> {
        self.lock_until(true, sys::deadline_after(Some(timeout)))
    }

    fn lock_until(
        &self,
        wait: bool,
        deadline: sys::Deadline,
    ) -> Result<ArrayGuard<'_, T>, LockError> {
        let data = NonNull::slice_from_raw_parts(self.data(), self.len());
        Guard::lock(self.cell(), data, wait, deadline, "Array::lock")
    }

    /// Element `i` (under the lock), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len() {
            return None;
        }
        let _held = HeldShared::new(self.cell(), "Array::get");
        // SAFETY: in bounds; lock held, no `&mut` guard alive in this thread.
        Some(unsafe { self.data().add(i).read() })
    }

    /// Sets element `i` (under the lock).
    pub fn set(&self, i: usize, value: T) -> Result<(), ShmError> {
        let len = self.len();
        if i >= len {
            return Err(ShmError::OutOfBounds {
                offset: i,
                len: 1,
                size: len,
            });
        }
        let _held = HeldShared::new(self.cell(), "Array::set");
        // SAFETY: as in `get`.
        unsafe { self.data().add(i).write(value) };
        Ok(())
    }

    /// A copy of every element (under the lock).
    pub fn to_vec(&self) -> Vec<T> {
        let _held = HeldShared::new(self.cell(), "Array::to_vec");
        // SAFETY: as in `get`; `len` elements follow the data offset.
        unsafe { std::slice::from_raw_parts(self.data().as_ptr(), self.len()) }.to_vec()
    }

    /// Overwrites every element from `values` (same length) under the lock.
    pub fn copy_from_slice(&self, values: &[T]) -> Result<(), ShmError> {
        if values.len() != self.len() {
            return Err(ShmError::OutOfBounds {
                offset: 0,
                len: values.len(),
                size: self.len(),
            });
        }
        let _held = HeldShared::new(self.cell(), "Array::copy_from_slice");
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
    pub fn value(&self) -> Vec<u8> {
        let mut v = self.to_vec();
        if let Some(end) = v.iter().position(|&b| b == 0) {
            v.truncate(end);
        }
        v
    }

    /// Stores `bytes` and NUL-fills the rest; longer than the array is an
    /// error and changes nothing.
    pub fn set_value(&self, bytes: &[u8]) -> Result<(), ShmError> {
        if bytes.len() > self.len() {
            return Err(ShmError::OutOfBounds {
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
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.value()).into_owned()
    }
}

/// Integer types with a lock-free atomic twin of the same size and layout.
///
/// Implemented for the integer types only, and sealed: the atomic views
/// ([`RawValue::atomic`], [`RawArray::atomics`]) rely on `Atomic` being the
/// standard atomic of the same size, and on the lock-free copies accessing
/// the element with that same width.
pub trait AtomicElement: Pod + sealed::Sealed {
    /// The atomic type (`AtomicU64` for `u64`, …).
    type Atomic;
}

mod sealed {
    /// Keeps [`AtomicElement`](super::AtomicElement) to the types listed here.
    pub trait Sealed {}
}

macro_rules! atomic_element {
    ($($t:ty => $a:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl AtomicElement for $t {
            type Atomic = $a;
        }
        const _: () = assert!(std::mem::size_of::<$t>() == std::mem::size_of::<$a>());
    )*};
}

/// Checks, where an atomic view is formed, that `T::Atomic` fits `T`'s
/// slots exactly and that the lock-free copies access `T` with its width,
/// so a copy and an atomic never mix sizes on the same bytes.
const fn assert_atomic_view<T: AtomicElement>() {
    assert!(std::mem::size_of::<T::Atomic>() == std::mem::size_of::<T>());
    assert!(std::mem::align_of::<T::Atomic>() <= std::mem::align_of::<T>());
    assert!(atomic_copy::width::<T>() == std::mem::size_of::<T>());
}

atomic_element!(
    u8 => std::sync::atomic::AtomicU8, i8 => std::sync::atomic::AtomicI8,
    u16 => std::sync::atomic::AtomicU16, i16 => std::sync::atomic::AtomicI16,
    u32 => std::sync::atomic::AtomicU32, i32 => std::sync::atomic::AtomicI32,
    u64 => std::sync::atomic::AtomicU64, i64 => std::sync::atomic::AtomicI64,
    usize => std::sync::atomic::AtomicUsize, isize => std::sync::atomic::AtomicIsize
);

/// A shared value without a lock (Python's `RawValue`).
///
/// Integer types also have a lock-free [`atomic`](RawValue::atomic) view
/// for read-modify-write (`fetch_add`, `compare_exchange`, …).
///
/// # Safety across threads and processes
/// [`get`](Self::get) and [`set`](Self::set) take no lock but are sound
/// while other threads use the value: they copy with relaxed atomic
/// accesses as wide as `T`'s alignment (at most 8 bytes), the same width
/// as the atomic view, so racing with `atomic().fetch_add` is a race of
/// values, never undefined behaviour. A `T` of one such access (the
/// integers, `f64`, `Bool`) is never torn; a larger `T` can be read half
/// old, half new while another thread or process writes it, as in Python.
/// Each access is relaxed: to publish other data with the value, use the
/// atomic view with `Release`/`Acquire`, or a [`Value`] and its lock.
///
/// ```
/// use std::sync::atomic::Ordering;
/// use mpkit::shm::RawValue;
/// let hits = RawValue::new(0u64)?;
/// hits.atomic().fetch_add(5, Ordering::Relaxed);
/// assert_eq!(hits.get(), 5);
/// # Ok::<(), mpkit::shm::ShmError>(())
/// ```
pub struct RawValue<T: Pod> {
    seg: Segment,
    _t: PhantomData<T>,
}

// SAFETY: safe code reaches the shared T only through atomic accesses of
// one width (`atomic_copy` and the atomic view), which may race.
unsafe impl<T: Pod + Send> Send for RawValue<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for RawValue<T> {}

segment_object!(RawValue<T: Pod>, |_: &Header| spec::<T>(ObjectKind::RawValue, 1));

impl<T: Pod> RawValue<T> {
    fn from_segment(seg: Segment) -> Self {
        RawValue {
            seg,
            _t: PhantomData,
        }
    }

    /// A new anonymous value.
    pub fn new(init: T) -> Result<RawValue<T>, ShmError> {
        Ok(RawValue::from_segment(create_segment(
            ObjectKind::RawValue,
            None,
            &[init],
        )?))
    }

    /// A new named value.
    pub fn create(name: &str, init: T) -> Result<RawValue<T>, ShmError> {
        Ok(RawValue::from_segment(create_segment(
            ObjectKind::RawValue,
            Some(name),
            &[init],
        )?))
    }

    /// Attaches to a named value; fails if it is not a `RawValue<T>`.
    pub fn open(name: &str) -> Result<RawValue<T>, ShmError> {
        Segment::open(name, |_| spec::<T>(ObjectKind::RawValue, 1)).map(RawValue::from_segment)
    }

    fn data(&self) -> NonNull<T> {
        self.seg.at::<T>(data_offset::<T>(false))
    }

    /// Reads the value (atomic accesses, no lock; see the type's docs).
    pub fn get(&self) -> T {
        let mut value = T::zeroed();
        // SAFETY: in bounds and aligned for T (layout checked); in this
        // process the value's bytes are only accessed by `atomic_copy` at
        // T's width or by the atomic view of that same width. T is Pod, so
        // any bytes another process left are a valid T.
        unsafe { atomic_copy::load(self.data().as_ptr(), std::slice::from_mut(&mut value)) };
        value
    }

    /// Writes the value (atomic accesses, no lock; see the type's docs).
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`; the mapping is writable.
        unsafe { atomic_copy::store(self.data().as_ptr(), &[value]) }
    }
}

impl<T: AtomicElement> RawValue<T> {
    /// The value as an atomic: lock-free read-modify-write across processes.
    pub fn atomic(&self) -> &T::Atomic {
        const { assert_atomic_view::<T>() };
        // SAFETY: T::Atomic has T's size and no stricter alignment (checked
        // above) and the data is aligned for T; every other access to these
        // bytes in this process is atomic and of the same width, and the
        // memory lives as long as `self`.
        unsafe { self.data().cast::<T::Atomic>().as_ref() }
    }
}

/// A shared array without a lock (Python's `RawArray`).
///
/// # Safety across threads and processes
/// As for [`RawValue`]: [`get`](Self::get), [`set`](Self::set) and
/// [`to_vec`](Self::to_vec) copy with relaxed atomic accesses as wide as
/// the element's alignment (at most 8 bytes), the width of the
/// [`atomics`](Self::atomics) view, so they may race with it and with each
/// other without undefined behaviour. Each element of one such access is
/// never torn; `to_vec` is not a snapshot: elements written meanwhile may
/// show old or new values, each independently.
///
/// ```
/// use mpkit::shm::RawArray;
/// let a = RawArray::new(&[0u32; 4])?;
/// a.set(2, 7)?;
/// assert_eq!(a.to_vec(), [0, 0, 7, 0]);
/// # Ok::<(), mpkit::shm::ShmError>(())
/// ```
pub struct RawArray<T: Pod> {
    seg: Segment,
    _t: PhantomData<T>,
}

// SAFETY: as for `RawValue`: safe code reaches the elements only through
// atomic accesses of the element's width.
unsafe impl<T: Pod + Send> Send for RawArray<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for RawArray<T> {}

segment_object!(RawArray<T: Pod>, |h: &Header| spec::<T>(ObjectKind::RawArray, h.len));

impl<T: Pod> RawArray<T> {
    fn from_segment(seg: Segment) -> Self {
        RawArray {
            seg,
            _t: PhantomData,
        }
    }

    /// A new anonymous array holding a copy of `init`.
    pub fn new(init: &[T]) -> Result<RawArray<T>, ShmError> {
        Ok(RawArray::from_segment(create_segment(
            ObjectKind::RawArray,
            None,
            init,
        )?))
    }

    /// A new anonymous array of `len` zeroes.
    pub fn zeroed(len: usize) -> Result<RawArray<T>, ShmError> {
        RawArray::new(&vec![T::zeroed(); len])
    }

    /// A new named array holding a copy of `init`.
    pub fn create(name: &str, init: &[T]) -> Result<RawArray<T>, ShmError> {
        Ok(RawArray::from_segment(create_segment(
            ObjectKind::RawArray,
            Some(name),
            init,
        )?))
    }

    /// Attaches to a named array; fails if it is not a `RawArray<T>`.
    pub fn open(name: &str) -> Result<RawArray<T>, ShmError> {
        Segment::open(name, |h| spec::<T>(ObjectKind::RawArray, h.len)).map(RawArray::from_segment)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.seg.object_len() as usize
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn data(&self) -> NonNull<T> {
        self.seg.elements::<T>(data_offset::<T>(false), self.len())
    }

    /// Element `i` (atomic accesses, no lock), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len() {
            return None;
        }
        let mut value = T::zeroed();
        // SAFETY: in bounds (checked) and aligned for T; in this process the
        // elements are only accessed by `atomic_copy` at T's width or by the
        // atomic view of that width; T is Pod.
        unsafe {
            atomic_copy::load(
                self.data().as_ptr().add(i),
                std::slice::from_mut(&mut value),
            )
        };
        Some(value)
    }

    /// Sets element `i` (atomic accesses, no lock).
    pub fn set(&self, i: usize, value: T) -> Result<(), ShmError> {
        let len = self.len();
        if i >= len {
            return Err(ShmError::OutOfBounds {
                offset: i,
                len: 1,
                size: len,
            });
        }
        // SAFETY: as in `get`; the mapping is writable.
        unsafe { atomic_copy::store(self.data().as_ptr().add(i), &[value]) };
        Ok(())
    }

    /// A copy of every element (atomic accesses, no lock; not a snapshot).
    pub fn to_vec(&self) -> Vec<T> {
        let mut all = vec![T::zeroed(); self.len()];
        // SAFETY: `len` elements at the data offset, aligned for T; accesses
        // as in `get`.
        unsafe { atomic_copy::load(self.data().as_ptr(), &mut all) };
        all
    }

    /// The elements as a slice.
    ///
    /// # Safety
    /// No process, and no other thread of this one, may write the array
    /// (through [`set`](Self::set), the [`atomics`](Self::atomics) view or
    /// otherwise) while the slice is alive.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: `len` elements at the data offset; no writers per contract.
        unsafe { std::slice::from_raw_parts(self.data().as_ptr(), self.len()) }
    }

    /// The elements as a mutable slice.
    ///
    /// # Safety
    /// Nothing else may access the array while the slice is alive: no other
    /// process, no other thread, no other slice or method of this handle.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as in `as_slice`, exclusive per contract.
        unsafe { std::slice::from_raw_parts_mut(self.data().as_ptr(), self.len()) }
    }
}

impl<T: AtomicElement> RawArray<T> {
    /// The elements as atomics: lock-free across processes.
    pub fn atomics(&self) -> &[T::Atomic] {
        const { assert_atomic_view::<T>() };
        // SAFETY: as in `RawValue::atomic`: T's size, no stricter alignment,
        // `len` elements aligned for T, every other access of equal width.
        unsafe { std::slice::from_raw_parts(self.data().cast::<T::Atomic>().as_ptr(), self.len()) }
    }
}
