//! The Python classes of shared values (`RawValue`, `RawArray`,
//! `Synchronized`, `SynchronizedArray`): thin wrappers over [`Core`].

use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

use super::store::{Container, Init};
use super::{Core, Kind, LockMode};
use crate::sync::name_or_fresh;
/// Initial elements of an array: `size_or_initializer` is a length
/// (zeros) or an iterable.
fn array_init(kind: Kind, size_or_init: &Bound<'_, PyAny>) -> PyResult<Init> {
    if size_or_init.is_instance_of::<pyo3::types::PyInt>() {
        let n: isize = size_or_init.extract()?;
        if n < 0 {
            return Err(PyValueError::new_err("Array length must be >= 0"));
        }
        return Ok(Init::Zeros(n as usize));
    }
    size_or_init
        .try_iter()?
        .map(|ob| kind.parse(&ob?))
        .collect::<PyResult<Vec<_>>>()
        .map(Init::Items)
}

fn value_init(kind: Kind, args: &Bound<'_, PyTuple>) -> PyResult<Init> {
    match args.len() {
        0 => Ok(Init::Items(vec![kind.zero()])),
        1 => Ok(Init::Items(vec![kind.parse(&args.get_item(0)?)?])),
        n => Err(PyTypeError::new_err(format!(
            "expected at most 1 initial value, got {n}"
        ))),
    }
}

fn check_lock(lock: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    match lock {
        Some(l) if !l.is_none() => {
            if !l.hasattr("acquire")? {
                return Err(PyAttributeError::new_err(format!(
                    "{} has no method 'acquire'",
                    l.repr()?
                )));
            }
            Ok(Some(l.unbind()))
        }
        _ => Ok(None),
    }
}

/// The methods every shared value class has; `$ctor` holds its
/// constructor and `open`.
macro_rules! shared_class {
    ($ty:ident, $doc:literal, { $($ctor:tt)* }) => {
        #[doc = $doc]
        #[pyclass(module = "mpkit._mpkit", frozen)]
        pub(crate) struct $ty {
            core: Core,
        }

        #[pymethods]
        impl $ty {
            $($ctor)*

            /// The value (a 'c' array: its bytes up to the first NUL).
            #[getter]
            fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                self.core.value(py)
            }

            #[setter]
            fn set_value(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
                self.core.set_value(py, v)
            }

            /// All the bytes of a 'c' array.
            #[getter]
            fn raw(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                self.core.raw(py)
            }

            #[setter]
            fn set_raw(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
                self.core.set_raw(py, v)
            }

            fn __len__(&self) -> PyResult<usize> {
                self.core.len()
            }

            fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                self.core.getitem(py, key)
            }

            fn __setitem__(
                &self,
                py: Python<'_>,
                key: &Bound<'_, PyAny>,
                v: &Bound<'_, PyAny>,
            ) -> PyResult<()> {
                self.core.setitem(py, key, v)
            }

            /// The name a Rust program (or ``open``) attaches by.
            #[getter]
            fn name(&self) -> &str {
                &self.core.name
            }

            /// The typecode.
            #[getter]
            fn _typecode(&self) -> String {
                self.core.kind.code.to_string()
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                self.core.repr(py)
            }
        }
    };
}

/// A [`shared_class`] without a lock, stored as `$container`: `open`
/// and pickling; `$what` says "value" or "array" in the docs; `$ctor`
/// holds the constructor.
macro_rules! raw_class {
    ($ty:ident, $container:expr, $what:literal, $doc:literal, { $($ctor:tt)* }) => {
        shared_class!($ty, $doc, {
            $($ctor)*

            #[doc = concat!("Attaches to the ", $what, " named ``name``.")]
            #[classmethod]
            fn open(
                cls: &Bound<'_, PyType>,
                name: String,
                typecode_or_type: &Bound<'_, PyAny>,
            ) -> PyResult<Self> {
                let kind = Kind::of(typecode_or_type)?;
                let core = Core::make(cls.py(), kind, $container, name, None, None)?;
                Ok(Self { core })
            }

            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                slf.get().core.raw_reduce(slf)
            }
        });
    };
}

raw_class!(
    RawValue,
    Container::RawValue,
    "value",
    "A value in shared memory without a lock (``multiprocessing.RawValue``): \
     ``RawValue(typecode_or_type, *args, name=None)``, ``.value``; \
     ``RawValue.open(name, typecode_or_type)``. A Rust program opens it as \
     ``mpkit::shm::RawValue<T>`` (T from the typecode: 'i' is i32...).",
    {
        #[new]
        #[pyo3(signature = (typecode_or_type, *args, name=None))]
        fn new(
            py: Python<'_>,
            typecode_or_type: &Bound<'_, PyAny>,
            args: &Bound<'_, PyTuple>,
            name: Option<String>,
        ) -> PyResult<Self> {
            let kind = Kind::of(typecode_or_type)?;
            let init = Some(value_init(kind, args)?);
            let core = Core::make(
                py,
                kind,
                Container::RawValue,
                name_or_fresh(name),
                init,
                None,
            )?;
            Ok(Self { core })
        }
    }
);

raw_class!(
    RawArray,
    Container::RawArray,
    "array",
    "An array in shared memory without a lock (``multiprocessing.RawArray``): \
     ``RawArray(typecode_or_type, size_or_initializer, *, name=None)``; \
     indexing, slicing, ``len``, ``.value``/``.raw`` for 'c'; \
     ``RawArray.open(name, typecode_or_type)``. A Rust program opens it as \
     ``mpkit::shm::RawArray<T>``.",
    {
        #[new]
        #[pyo3(signature = (typecode_or_type, size_or_initializer, *, name=None))]
        fn new(
            py: Python<'_>,
            typecode_or_type: &Bound<'_, PyAny>,
            size_or_initializer: &Bound<'_, PyAny>,
            name: Option<String>,
        ) -> PyResult<Self> {
            let kind = Kind::of(typecode_or_type)?;
            let init = Some(array_init(kind, size_or_initializer)?);
            let core = Core::make(
                py,
                kind,
                Container::RawArray,
                name_or_fresh(name),
                init,
                None,
            )?;
            Ok(Self { core })
        }
    }
);

/// A synchronized class's core: the value or array under its own lock
/// (`locked`), or, given a `lock` (checked to have `acquire`), the raw
/// container under that lock (`raw`).
fn synchronized_core(
    py: Python<'_>,
    kind: Kind,
    (locked, raw): (Container, Container),
    name: String,
    init: Option<Init>,
    lock: Option<Bound<'_, PyAny>>,
) -> PyResult<Core> {
    let lock = check_lock(lock)?;
    let container = if lock.is_some() { raw } else { locked };
    Core::make(py, kind, container, name, init, lock)
}

/// Calls `method` of the lock that guards `core`.
fn call_lock(
    core: &Core,
    py: Python<'_>,
    method: &str,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    Ok(core
        .lock_obj(py)?
        .bind(py)
        .call_method(method, args, kwargs)?
        .unbind())
}

/// How a synchronized object pickles: its class's ``open`` with the name,
/// the typecode and the lock it was given (``None``: its own).
fn synchronized_reduce<'py>(slf: &Bound<'py, PyAny>, core: &Core) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let lock = match &core.lock {
        LockMode::External(l) => l.clone_ref(py),
        _ => py.None(),
    };
    (
        slf.get_type().getattr("open")?,
        (core.name.clone(), core.kind.code.to_string(), lock),
    )
        .into_pyobject(py)
        .map(|t| t.into_any())
}

/// A [`shared_class`] with a lock: `open` with an optional lock,
/// `get_obj` (a `$raw` over the same memory), `get_lock`, `acquire`,
/// `release`, the context manager and pickling. `$containers` is (own
/// lock, caller's lock); `$what` says "value" or "array" in the docs;
/// `$ctor` holds the constructor.
macro_rules! synchronized_class {
    ($ty:ident, $raw:ident, $containers:expr, $what:literal, $doc:literal, { $($ctor:tt)* }) => {
        shared_class!($ty, $doc, {
            $($ctor)*

            #[doc = concat!("Attaches to the ", $what, " named ``name`` (``lock``: the lock it \
                             was made with, if not its own).")]
            #[classmethod]
            #[pyo3(signature = (name, typecode_or_type, lock=None))]
            fn open(
                cls: &Bound<'_, PyType>,
                name: String,
                typecode_or_type: &Bound<'_, PyAny>,
                lock: Option<Bound<'_, PyAny>>,
            ) -> PyResult<Self> {
                let kind = Kind::of(typecode_or_type)?;
                let core = synchronized_core(cls.py(), kind, $containers, name, None, lock)?;
                Ok(Self { core })
            }

            #[doc = concat!("The ", $what, " as a ``", stringify!($raw), "`` over the same \
                             memory, without the ``get_lock()`` methods. Unlike \
                             multiprocessing's, each access still takes the ", $what,
                            "'s lock for the moment it reads or writes (mpkit touches a \
                             locked ", $what, " only under its lock), waiting as ``acquire`` \
                             does.")]
            fn get_obj(&self, py: Python<'_>) -> $raw {
                $raw {
                    core: self.core.raw_view(py),
                }
            }

            /// The lock that guards the value.
            fn get_lock(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                self.core.lock_obj(py)
            }

            /// Takes the lock (``acquire(block=True, timeout=None)``).
            #[pyo3(signature = (*args, **kwargs))]
            fn acquire(
                &self,
                py: Python<'_>,
                args: &Bound<'_, PyTuple>,
                kwargs: Option<&Bound<'_, PyDict>>,
            ) -> PyResult<Py<PyAny>> {
                call_lock(&self.core, py, "acquire", args, kwargs)
            }

            /// Releases the lock.
            fn release(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                call_lock(&self.core, py, "release", &PyTuple::empty(py), None)
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                call_lock(&self.core, py, "__enter__", &PyTuple::empty(py), None)
            }

            #[pyo3(signature = (*args))]
            fn __exit__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
                call_lock(&self.core, py, "__exit__", args, None)
            }

            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
                synchronized_reduce(slf.as_any(), &slf.get().core)
            }
        });
    };
}

synchronized_class!(
    Synchronized,
    RawValue,
    (Container::Value, Container::RawValue),
    "value",
    "A locked value in shared memory, what ``Value(...)`` returns (as \
     multiprocessing's ``Synchronized``): ``.value`` (taken under the lock), \
     ``get_lock()``, ``get_obj()``, ``acquire``/``release``, a context \
     manager. ``Synchronized.open(name, typecode_or_type, lock=None)``.",
    {
        #[new]
        #[pyo3(signature = (typecode_or_type, *args, lock=None, name=None))]
        fn new(
            py: Python<'_>,
            typecode_or_type: &Bound<'_, PyAny>,
            args: &Bound<'_, PyTuple>,
            lock: Option<Bound<'_, PyAny>>,
            name: Option<String>,
        ) -> PyResult<Self> {
            let kind = Kind::of(typecode_or_type)?;
            let init = value_init(kind, args)?;
            let containers = (Container::Value, Container::RawValue);
            let name = name_or_fresh(name);
            let core = synchronized_core(py, kind, containers, name, Some(init), lock)?;
            Ok(Self { core })
        }
    }
);

synchronized_class!(
    SynchronizedArray,
    RawArray,
    (Container::Array, Container::RawArray),
    "array",
    "A locked array in shared memory, what ``Array(...)`` returns (as \
     multiprocessing's ``SynchronizedArray``/``SynchronizedString``): \
     indexing and slicing under the lock, ``len``, ``.value``/``.raw`` for \
     'c', ``get_lock()``, ``get_obj()``. \
     ``SynchronizedArray.open(name, typecode_or_type, lock=None)``.",
    {
        #[new]
        #[pyo3(signature = (typecode_or_type, size_or_initializer, *, lock=None, name=None))]
        fn new(
            py: Python<'_>,
            typecode_or_type: &Bound<'_, PyAny>,
            size_or_initializer: &Bound<'_, PyAny>,
            lock: Option<Bound<'_, PyAny>>,
            name: Option<String>,
        ) -> PyResult<Self> {
            let kind = Kind::of(typecode_or_type)?;
            let init = array_init(kind, size_or_initializer)?;
            let containers = (Container::Array, Container::RawArray);
            let name = name_or_fresh(name);
            let core = synchronized_core(py, kind, containers, name, Some(init), lock)?;
            Ok(Self { core })
        }
    }
);
