//! `Semaphore`, `BoundedSemaphore` and `Event` on mpkit's futex-based
//! process-shared objects of the same names.

use std::time::Duration;

use mpkit::sync as ms;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::{Owned, acquire_wait, name_or_fresh, shm_err, wait_err};
use crate::blocking::{wait_for, wait_sliced};

/// The initial value as mpkit takes it; a negative or too large one is
/// refused with the `OSError(EINVAL)` multiprocessing's `sem_open` gives.
fn initial(value: i64) -> PyResult<u32> {
    u32::try_from(value).map_err(|_| {
        PyOSError::new_err((
            22,
            format!("Invalid argument: semaphore initial value {value} is outside 0..=4294967295"),
        ))
    })
}

macro_rules! semaphore_class {
    ($py_name:literal, $ty:ident, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(module = "mpkit._mpkit", frozen)]
        pub(crate) struct $ty {
            sem: Owned<ms::$ty>,
            name: String,
        }

        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (value=1, *, name=None))]
            fn new(value: i64, name: Option<String>) -> PyResult<$ty> {
                let value = initial(value)?;
                let name = name_or_fresh(name);
                let sem = ms::$ty::create(&name, value).map_err(shm_err)?;
                Ok($ty {
                    sem: Owned::new(sem, true),
                    name,
                })
            }

            /// Attaches to the semaphore named ``name``.
            #[classmethod]
            fn open(_cls: &Bound<'_, PyType>, name: String) -> PyResult<$ty> {
                let sem = ms::$ty::open(&name).map_err(shm_err)?;
                Ok($ty {
                    sem: Owned::new(sem, false),
                    name,
                })
            }

            /// Takes one unit, waiting at most ``timeout`` seconds
            /// (``None``: for ever) when ``block``; returns whether it did.
            #[pyo3(signature = (block=None, timeout=None))]
            fn acquire(
                &self,
                py: Python<'_>,
                block: Option<&Bound<'_, PyAny>>,
                timeout: Option<f64>,
            ) -> PyResult<bool> {
                let wait = acquire_wait(block, timeout)?;
                let sem = &*self.sem;
                // A free unit is taken without releasing the GIL.
                if sem.try_acquire() {
                    return Ok(true);
                }
                if wait == Some(Duration::ZERO) {
                    return Ok(false);
                }
                let got = wait_sliced(py, wait, |slice| {
                    let got = if slice.is_zero() {
                        sem.try_acquire()
                    } else {
                        sem.acquire_timeout(slice).map_err(wait_err)?
                    };
                    Ok(got.then_some(()))
                })?;
                Ok(got.is_some())
            }

            /// Gives one unit back (from any thread or process).
            fn release(&self) -> PyResult<()> {
                self.sem
                    .release()
                    .map_err(|_| PyValueError::new_err("semaphore or lock released too many times"))
            }

            /// The current value.
            fn get_value(&self) -> u32 {
                self.sem.value()
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                self.acquire(py, None, None)
            }

            fn __exit__(
                &self,
                _ty: &Bound<'_, PyAny>,
                _value: &Bound<'_, PyAny>,
                _tb: &Bound<'_, PyAny>,
            ) -> PyResult<()> {
                self.release()
            }

            /// The name a Rust program (or ``open``) attaches by.
            #[getter]
            fn name(&self) -> &str {
                &self.name
            }

            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
                Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
            }

            fn __repr__(&self) -> String {
                format!(
                    "<{}(value={}, name={:?})>",
                    $py_name,
                    self.sem.value(),
                    self.name
                )
            }
        }
    };
}

semaphore_class!(
    "Semaphore",
    Semaphore,
    "A counting semaphore shared between processes \
     (``multiprocessing.Semaphore``): ``Semaphore(value=1, *, name=None)``, \
     ``Semaphore.open(name)``. ``acquire(block=True, timeout=None)``, \
     ``release()`` (from any thread or process), ``get_value()``, a context \
     manager. A unit taken by a process that dies is not given back (as \
     with multiprocessing's)."
);

semaphore_class!(
    "BoundedSemaphore",
    BoundedSemaphore,
    "A semaphore whose value may not pass its initial value \
     (``multiprocessing.BoundedSemaphore``): ``BoundedSemaphore(value=1, *, \
     name=None)``, ``BoundedSemaphore.open(name)``. Releasing past the \
     initial value raises ``ValueError``."
);

/// A flag shared between processes (``multiprocessing.Event``):
/// ``Event(*, name=None)``, ``Event.open(name)``; ``set()``, ``clear()``,
/// ``is_set()``, ``wait(timeout=None)`` (True once set, False when the
/// timeout passed).
#[pyclass(module = "mpkit._mpkit", frozen)]
pub(crate) struct Event {
    ev: Owned<ms::Event>,
    name: String,
}

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (*, name=None))]
    fn new(name: Option<String>) -> PyResult<Event> {
        let name = name_or_fresh(name);
        let ev = ms::Event::create(&name).map_err(shm_err)?;
        Ok(Event {
            ev: Owned::new(ev, true),
            name,
        })
    }

    /// Attaches to the event named ``name``.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, name: String) -> PyResult<Event> {
        let ev = ms::Event::open(&name).map_err(shm_err)?;
        Ok(Event {
            ev: Owned::new(ev, false),
            name,
        })
    }

    /// Sets the flag and wakes every waiter.
    fn set(&self) {
        self.ev.set();
    }

    /// Clears the flag.
    fn clear(&self) {
        self.ev.clear();
    }

    /// Whether the flag is set.
    fn is_set(&self) -> bool {
        self.ev.is_set()
    }

    /// Waits until the flag is set (True) or ``timeout`` seconds pass
    /// (False; ``None`` waits for ever).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        // A negative timeout returns at once, as multiprocessing's does.
        if self.ev.is_set() {
            return Ok(true);
        }
        let wait = wait_for(true, timeout.map(|t| t.max(0.0)))?;
        let ev = &*self.ev;
        let set = wait_sliced(py, wait, |slice| {
            let set = ev.wait(Some(slice)).map_err(wait_err)?;
            Ok(set.then_some(()))
        })?;
        Ok(set.is_some())
    }

    /// The name a Rust program (or ``Event.open``) attaches by.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let state = if slf.get().ev.is_set() {
            "set"
        } else {
            "unset"
        };
        format!("<Event at {:#x} {state}>", slf.as_ptr() as usize)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Semaphore>()?;
    m.add_class::<BoundedSemaphore>()?;
    m.add_class::<Event>()?;
    Ok(())
}
