//! The lock-free shared values, `RawValue` and `RawArray` (layouts in
//! [`value`](super::value)), and their atomic views.
//!
//! # Safety across threads and processes
//! They copy without a lock, through [`atomic_copy`], whose accesses are
//! all atomic and as wide as the element's atomic view: a copy racing
//! `atomic().fetch_add` is a race of values (it may see the old or the new
//! one), never undefined behaviour.

use std::marker::PhantomData;
use std::ptr::NonNull;

use bytemuck::Pod;

use super::value::{create_segment, data_offset, spec};
use super::{Header, Segment, ShmError, segment_object};
use crate::base::atomic_copy;
use crate::base::segment::ObjectKind;

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
/// atomic view with `Release`/`Acquire`, or a [`Value`](super::Value) and its lock.
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
