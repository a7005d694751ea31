//! The typed mpkit objects behind the shared values: one `Store` per
//! container (`RawValue`, `RawArray`, `Value`, `Array`) and element type,
//! chosen at run time from the ctypes typecode.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytemuck::Pod;
use mpkit::shm::{Array, ArrayError, Bool, RawArray, RawValue, Value};
use mpkit::sync::{LockError, RLockRef};
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyOSError};
use pyo3::prelude::*;

use crate::sync::{Owned, Shared, shm_err};

/// One element as Python sees it, before it is narrowed to the stored type.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar {
    I(i64),
    U(u64),
    F(f64),
}

/// An element type mpkit stores (its Rust name is what a Rust program
/// opening the same object must ask for: `i32` for `'i'`, and so on).
pub(crate) trait Elt: Pod + Send + Sync {
    fn to_s(self) -> Scalar;
    /// Narrows as ctypes does (integers wrap, floats round).
    fn from_s(s: Scalar) -> Self;
}

macro_rules! int_elt {
    ($($t:ty => $v:ident),*) => {$(
        impl Elt for $t {
            fn to_s(self) -> Scalar {
                Scalar::$v(self as _)
            }
            fn from_s(s: Scalar) -> Self {
                match s {
                    Scalar::I(v) => v as $t,
                    Scalar::U(v) => v as $t,
                    Scalar::F(v) => v as $t,
                }
            }
        }
    )*};
}
int_elt!(i8 => I, i16 => I, i32 => I, i64 => I, u8 => U, u16 => U, u32 => U, u64 => U, f32 => F, f64 => F);

impl Elt for Bool {
    fn to_s(self) -> Scalar {
        Scalar::U(u64::from(self.get()))
    }
    fn from_s(s: Scalar) -> Self {
        Bool::from(match s {
            Scalar::I(v) => v != 0,
            Scalar::U(v) => v != 0,
            Scalar::F(v) => v != 0.0,
        })
    }
}

/// Stored element types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Num {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    Bool,
}

/// What holds the elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    RawValue,
    RawArray,
    /// `mpkit::shm::Value`: a robust re-entrant lock beside the data.
    Value,
    /// `mpkit::shm::Array`.
    Array,
}

/// Elements in shared memory, read and written one at a time.
pub(crate) trait Store: Send + Sync {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> PyResult<Scalar>;
    fn set(&self, i: usize, v: Scalar) -> PyResult<()>;
    /// Every element, in one pass (one lock for a locked array).
    fn all(&self) -> PyResult<Vec<Scalar>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}

/// Python's exception for the value's lock failing: `mpkit.CorruptError`
/// when its shared memory was overwritten, `OSError` otherwise.
fn lock_err(e: LockError) -> PyErr {
    match e {
        e @ LockError::Corrupt => {
            crate::errors::CorruptError::new_err(format!("the value's lock: {e}"))
        }
        e => PyOSError::new_err(format!("the value's lock: {e}")),
    }
}

fn index_err() -> PyErr {
    PyIndexError::new_err("invalid index")
}

struct RV<T: Pod>(Owned<RawValue<T>>);
struct RA<T: Pod>(Owned<RawArray<T>>);
struct LV<T: Pod>(Owned<Value<T>>);
struct LA<T: Pod>(Owned<Array<T>>);

impl<T: Elt> Store for RV<T> {
    fn len(&self) -> usize {
        1
    }
    fn get(&self, _: usize) -> PyResult<Scalar> {
        Ok(self.0.get().to_s())
    }
    fn set(&self, _: usize, v: Scalar) -> PyResult<()> {
        self.0.set(T::from_s(v));
        Ok(())
    }
}

impl<T: Elt> Store for RA<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> PyResult<Scalar> {
        self.0.get(i).map(Elt::to_s).ok_or_else(index_err)
    }
    fn set(&self, i: usize, v: Scalar) -> PyResult<()> {
        self.0.set(i, T::from_s(v)).map_err(|_| index_err())
    }
    fn all(&self) -> PyResult<Vec<Scalar>> {
        Ok(self.0.to_vec().into_iter().map(Elt::to_s).collect())
    }
}

impl<T: Elt> Store for LV<T> {
    fn len(&self) -> usize {
        1
    }
    fn get(&self, _: usize) -> PyResult<Scalar> {
        self.0.get().map(Elt::to_s).map_err(lock_err)
    }
    fn set(&self, _: usize, v: Scalar) -> PyResult<()> {
        self.0.set(T::from_s(v)).map_err(lock_err)
    }
}

impl<T: Elt> Shared for LV<T> {
    fn lock_ref(&self) -> RLockRef<'_> {
        self.0.get_lock()
    }
    fn held(&self) -> &AtomicU64 {
        self.0.held()
    }
}

impl<T: Elt> Store for LA<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> PyResult<Scalar> {
        match self.0.get(i) {
            Ok(Some(v)) => Ok(v.to_s()),
            Ok(None) => Err(index_err()),
            Err(e) => Err(lock_err(e)),
        }
    }
    fn set(&self, i: usize, v: Scalar) -> PyResult<()> {
        self.0.set(i, T::from_s(v)).map_err(|e| match e {
            ArrayError::OutOfBounds { .. } => index_err(),
            ArrayError::Lock(e) => lock_err(e),
            e => PyOSError::new_err(format!("the value's lock: {e}")),
        })
    }
    fn all(&self) -> PyResult<Vec<Scalar>> {
        let all = self.0.to_vec().map_err(lock_err)?;
        Ok(all.into_iter().map(Elt::to_s).collect())
    }
}

impl<T: Elt> Shared for LA<T> {
    fn lock_ref(&self) -> RLockRef<'_> {
        self.0.get_lock()
    }
    fn held(&self) -> &AtomicU64 {
        self.0.held()
    }
}

/// The elements a new object starts with.
pub(crate) enum Init {
    /// `n` zeroes (`Array(typecode, n)`): made in the stored type, so an
    /// `n` too large for memory is a `MemoryError`, not an abort.
    Zeros(usize),
    Items(Vec<Scalar>),
}

/// Refuses an object of `bytes` bytes that cannot fit in the free space
/// of `/dev/shm`, with the `OSError(ENOSPC)` that `posix_fallocate` gives,
/// before the elements are built in memory. (The segment's creation
/// fallocates, so a `/dev/shm` another process fills between this check
/// and then is still `ENOSPC`, from there.)
fn check_room(py: Python<'_>, bytes: Option<usize>) -> PyResult<()> {
    let too_big = |free: Option<u64>| {
        let free = free.map_or_else(|| "?".to_string(), |f| f.to_string());
        PyOSError::new_err((
            28,
            format!(
                "No space left on device: the object needs {} bytes, /dev/shm has {free} free",
                bytes.map_or_else(|| "more than usize::MAX".to_string(), |b| b.to_string())
            ),
        ))
    };
    let Some(bytes) = bytes else {
        return Err(too_big(None));
    };
    // Where /dev/shm cannot be asked about, the segment's own creation
    // reports what goes wrong.
    let Ok(st) = py
        .import("os")
        .and_then(|os| os.call_method1("statvfs", ("/dev/shm",)))
    else {
        return Ok(());
    };
    let free = st
        .getattr("f_bavail")
        .and_then(|a| a.extract::<u64>())
        .and_then(|a| Ok(a.saturating_mul(st.getattr("f_frsize")?.extract::<u64>()?)));
    match free {
        Ok(free) if bytes as u64 > free => Err(too_big(Some(free))),
        _ => Ok(()),
    }
}

/// A store, and its lock when it has one inside.
pub(crate) type Made = (Arc<dyn Store>, Option<Arc<dyn Shared>>);

fn make<T: Elt>(py: Python<'_>, c: Container, name: &str, init: Option<Init>) -> PyResult<Made> {
    let created = init.is_some();
    let len = match &init {
        Some(Init::Zeros(n)) => *n,
        Some(Init::Items(v)) => v.len(),
        None => 0,
    };
    if created {
        check_room(py, len.checked_mul(std::mem::size_of::<T>()))?;
    }
    let vals: Option<Vec<T>> = match init {
        None => None,
        Some(Init::Items(v)) => Some(v.iter().map(|s| T::from_s(*s)).collect()),
        Some(Init::Zeros(n)) => {
            let mut v = Vec::new();
            v.try_reserve_exact(n)
                .map_err(|e| PyMemoryError::new_err(e.to_string()))?;
            v.resize(n, T::zeroed());
            Some(v)
        }
    };
    let first = || {
        vals.as_ref()
            .and_then(|v| v.first().copied())
            .unwrap_or_else(T::zeroed)
    };
    Ok(match c {
        Container::RawValue => {
            let o = match vals {
                Some(_) => RawValue::create(name, first()),
                None => RawValue::open(name),
            };
            (Arc::new(RV(Owned::new(o.map_err(shm_err)?, created))), None)
        }
        Container::RawArray => {
            let o = match &vals {
                Some(v) => RawArray::create(name, v),
                None => RawArray::open(name),
            };
            (Arc::new(RA(Owned::new(o.map_err(shm_err)?, created))), None)
        }
        Container::Value => {
            let o = match vals {
                Some(_) => Value::create(name, first()),
                None => Value::open(name),
            };
            let a = Arc::new(LV(Owned::new(o.map_err(shm_err)?, created)));
            (a.clone(), Some(a))
        }
        Container::Array => {
            let o = match &vals {
                Some(v) => Array::create(name, v),
                None => Array::open(name),
            };
            let a = Arc::new(LA(Owned::new(o.map_err(shm_err)?, created)));
            (a.clone(), Some(a))
        }
    })
}

/// Creates (`init` given) or opens (`None`) the object named `name`.
pub(crate) fn build(
    py: Python<'_>,
    num: Num,
    c: Container,
    name: &str,
    init: Option<Init>,
) -> PyResult<Made> {
    match num {
        Num::I8 => make::<i8>(py, c, name, init),
        Num::U8 => make::<u8>(py, c, name, init),
        Num::I16 => make::<i16>(py, c, name, init),
        Num::U16 => make::<u16>(py, c, name, init),
        Num::I32 => make::<i32>(py, c, name, init),
        Num::U32 => make::<u32>(py, c, name, init),
        Num::I64 => make::<i64>(py, c, name, init),
        Num::U64 => make::<u64>(py, c, name, init),
        Num::F32 => make::<f32>(py, c, name, init),
        Num::F64 => make::<f64>(py, c, name, init),
        Num::Bool => make::<Bool>(py, c, name, init),
    }
}
