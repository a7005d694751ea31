//! `Lock` and `RLock`: robust process-shared mutexes (mpkit's `Lock`,
//! `RLock`, and the lock inside a `Value` or `Array` for `get_lock()`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mpkit::sync as ms;
use mpkit::sync::{LockTimeoutError, ReleaseError, TryLockError};
use pyo3::exceptions::{PyAssertionError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::{Owned, OwnerDiedWarning, acquire_wait, name_or_fresh, shm_err};
use crate::blocking::wait_sliced;
use crate::errors::CorruptError;

/// An mpkit object with a re-entrant lock inside (a locked `Value` or
/// `Array`), whose lock `get_lock()` hands out as an [`RLock`].
pub(crate) trait Shared: Send + Sync {
    fn lock_ref(&self) -> ms::RLockRef<'_>;
    /// The holder's count of acquisitions through this mapping (see
    /// `Owned::held`).
    fn held(&self) -> &AtomicU64;
}

/// What `Lock` and `RLock` need of a robust mutex.
trait RawLock {
    /// Takes the lock within `wait` (zero: only if free): `Some(owner_died)`
    /// when taken, `None` when the time passed.
    fn take(&self, wait: Duration) -> Result<Option<bool>, LockTimeoutError>;
    fn give(&self) -> Result<(), ReleaseError>;
    fn mine(&self) -> bool;
}

macro_rules! raw_lock {
    ($t:ty) => {
        impl RawLock for $t {
            fn take(&self, wait: Duration) -> Result<Option<bool>, LockTimeoutError> {
                let got = if wait.is_zero() {
                    match self.try_lock() {
                        Ok(g) => Ok(g),
                        Err(TryLockError::WouldBlock) => return Ok(None),
                        Err(TryLockError::Deadlock) => Err(LockTimeoutError::Deadlock),
                        Err(TryLockError::Corrupt) => Err(LockTimeoutError::Corrupt),
                        Err(TryLockError::Io(e)) => Err(LockTimeoutError::Io(e)),
                        Err(e) => Err(LockTimeoutError::Io(std::io::Error::other(e.to_string()))),
                    }
                } else {
                    self.lock_timeout(wait)
                };
                match got {
                    Ok(guard) => {
                        let died = guard.owner_died();
                        // Held until `give`: Python's acquire/release pair.
                        std::mem::forget(guard);
                        Ok(Some(died))
                    }
                    Err(LockTimeoutError::Timeout) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            fn give(&self) -> Result<(), ReleaseError> {
                self.release()
            }
            fn mine(&self) -> bool {
                self.is_held_by_me()
            }
        }
    };
}
raw_lock!(ms::Lock);
raw_lock!(ms::RLock);
raw_lock!(ms::RLockRef<'_>);

/// Python's `acquire(block, timeout)` on `lock`: `Some(owner_died)` when
/// taken. The GIL is released while waiting and Ctrl-C interrupts it. A
/// thread acquiring a non-re-entrant lock it holds waits out its timeout
/// (for ever without one), as with multiprocessing's.
fn acquire(
    py: Python<'_>,
    lock: &(dyn RawLock + Sync),
    block: Option<&Bound<'_, PyAny>>,
    timeout: Option<f64>,
) -> PyResult<Option<bool>> {
    let wait = acquire_wait(block, timeout)?;
    // A free lock is taken without releasing the GIL (as multiprocessing's
    // SemLock tries first): releasing and retaking it costs more than the
    // lock itself. A corrupt lock is reported here too, so that a
    // non-blocking acquire does not pass it off as merely taken.
    match lock.take(Duration::ZERO) {
        Ok(Some(died)) => return Ok(Some(died)),
        Ok(None) | Err(LockTimeoutError::Deadlock) => {}
        Err(e) => return Err(lock_err(e)),
    }
    if wait == Some(Duration::ZERO) {
        return Ok(None);
    }
    wait_sliced(py, wait, |slice| match lock.take(slice) {
        Ok(got) => Ok(got),
        Err(LockTimeoutError::Deadlock) => {
            std::thread::sleep(slice);
            Ok(None)
        }
        Err(e) => Err(lock_err(e)),
    })
}

/// Python's exception for a lock that could not be taken for a reason
/// other than its holder: `mpkit.CorruptError` when its shared memory was
/// overwritten, `OSError` otherwise.
fn lock_err(e: LockTimeoutError) -> PyErr {
    match e {
        LockTimeoutError::Corrupt => CorruptError::new_err(
            "the lock's shared memory was overwritten (its mutex kind is wrong)",
        ),
        e => PyOSError::new_err(e.to_string()),
    }
}

/// Records an acquire's `owner_died` and warns when it is set.
fn note_owner(py: Python<'_>, flag: &AtomicBool, died: bool, what: &str) -> PyResult<()> {
    flag.store(died, Ordering::Relaxed);
    if died {
        let msg = std::ffi::CString::new(format!(
            "{what}: the previous holder died holding it; what it protected may be half-updated"
        ))
        .unwrap_or_default();
        PyErr::warn(py, &py.get_type::<OwnerDiedWarning>(), &msg, 2)?;
    }
    Ok(())
}

/// A lock shared between processes (``multiprocessing.Lock``):
/// ``Lock(*, name=None)``; ``Lock.open(name)`` attaches to a named one
/// (a Rust program opens the same with ``mpkit::sync::Lock::open``).
///
/// ``acquire(block=True, timeout=None)`` returns whether it took the lock;
/// ``release()``; a context manager. It is a robust mutex: when a process
/// (or thread) dies holding it, SIGKILL included, the next acquirer gets
/// it instead of waiting for ever, its ``owner_died`` attribute becomes
/// True and ``acquire`` warns with ``mpkit.OwnerDiedWarning``.
///
/// The one difference from multiprocessing's: only the thread that holds
/// it may release it (``RuntimeError`` otherwise), since ownership is what
/// lets the kernel hand on a dead holder's lock. Releasing an unlocked
/// lock raises ``ValueError`` as multiprocessing's does.
#[pyclass(module = "mpkit._mpkit", frozen)]
pub(crate) struct Lock {
    lock: Owned<ms::Lock>,
    name: String,
    owner_died: AtomicBool,
}

#[pymethods]
impl Lock {
    #[new]
    #[pyo3(signature = (*, name=None))]
    fn new(name: Option<String>) -> PyResult<Lock> {
        let name = name_or_fresh(name);
        let lock = ms::Lock::create(&name).map_err(shm_err)?;
        Ok(Lock::from(Owned::new(lock, true), name))
    }

    /// Attaches to the lock named ``name``.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, name: String) -> PyResult<Lock> {
        let lock = ms::Lock::open(&name).map_err(shm_err)?;
        Ok(Lock::from(Owned::new(lock, false), name))
    }

    /// Takes the lock, waiting at most ``timeout`` seconds (``None``: for
    /// ever) when ``block``; returns whether it was taken.
    #[pyo3(signature = (block=None, timeout=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        block: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        match acquire(py, &*self.lock, block, timeout)? {
            Some(died) => {
                if let Err(e) = note_owner(py, &self.owner_died, died, "Lock") {
                    let _ = self.lock.give();
                    return Err(e);
                }
                self.lock.held().fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Releases the lock (held by this thread).
    fn release(&self) -> PyResult<()> {
        self.lock.give().map_err(|e| match e {
            ReleaseError::NotLocked => {
                PyValueError::new_err("semaphore or lock released too many times")
            }
            ReleaseError::NotOwner => PyRuntimeError::new_err(
                "cannot release a lock another thread or process holds \
                 (mpkit's locks are owned, so that a dead holder's lock can be handed on)",
            ),
            e => PyRuntimeError::new_err(e.to_string()),
        })?;
        self.lock.held().fetch_sub(1, Ordering::Relaxed);
        Ok(())
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

    /// True when the last ``acquire`` through this object took the lock
    /// from a holder that had died holding it.
    #[getter]
    fn owner_died(&self) -> bool {
        self.owner_died.load(Ordering::Relaxed)
    }

    /// The name a Rust program (or ``Lock.open``) attaches by.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Whether the calling thread holds the lock.
    fn _is_mine(&self) -> bool {
        self.lock.mine()
    }

    /// How many times the calling thread holds the lock (0 or 1).
    fn _count(&self) -> u64 {
        u64::from(self.lock.mine())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
    }

    fn __repr__(&self) -> String {
        let owner = if self.lock.mine() {
            "this thread"
        } else {
            "None or another"
        };
        format!("<Lock(name={:?}, owner={owner})>", self.name)
    }
}

impl Lock {
    fn from(lock: Owned<ms::Lock>, name: String) -> Lock {
        Lock {
            lock,
            name,
            owner_died: AtomicBool::new(false),
        }
    }
}

enum Src {
    Own(Owned<ms::RLock>),
    /// The lock inside a `Value` or `Array`.
    Of(Arc<dyn Shared>),
}

/// A re-entrant lock shared between processes (``multiprocessing.RLock``):
/// ``RLock(*, name=None)``, ``RLock.open(name)``.
///
/// The holding thread may acquire it again; it is free once released as
/// many times. Releasing it from a thread that does not hold it raises
/// ``AssertionError`` as multiprocessing's does. Robust like ``Lock``:
/// ``owner_died`` and ``mpkit.OwnerDiedWarning`` when the previous holder
/// died holding it. ``Value(...).get_lock()`` is an ``RLock`` too.
#[pyclass(module = "mpkit._mpkit", frozen)]
pub(crate) struct RLock {
    src: Src,
    name: String,
    /// How to rebuild a `get_lock()` lock in another process.
    reduce: Option<Py<PyAny>>,
    owner_died: AtomicBool,
    /// Times the holding thread holds it (only that thread changes it).
    depth: AtomicU64,
}

impl RLock {
    fn held(&self) -> &AtomicU64 {
        match &self.src {
            Src::Own(l) => l.held(),
            Src::Of(s) => s.held(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&(dyn RawLock + Sync)) -> R) -> R {
        match &self.src {
            Src::Own(l) => f(&**l),
            Src::Of(s) => f(&s.lock_ref()),
        }
    }

    /// The lock inside `shared`; `reduce` is what `__reduce__` returns.
    pub(crate) fn of(shared: Arc<dyn Shared>, name: String, reduce: Py<PyAny>) -> RLock {
        RLock::from(Src::Of(shared), name, Some(reduce))
    }

    fn from(src: Src, name: String, reduce: Option<Py<PyAny>>) -> RLock {
        RLock {
            src,
            name,
            reduce,
            owner_died: AtomicBool::new(false),
            depth: AtomicU64::new(0),
        }
    }

    /// `acquire` for Rust callers (the locked values).
    pub(crate) fn acquire_blocking(&self, py: Python<'_>) -> PyResult<()> {
        self.acquire(py, None, None).map(|_| ())
    }
}

#[pymethods]
impl RLock {
    #[new]
    #[pyo3(signature = (*, name=None))]
    fn new(name: Option<String>) -> PyResult<RLock> {
        let name = name_or_fresh(name);
        let lock = ms::RLock::create(&name).map_err(shm_err)?;
        Ok(RLock::from(Src::Own(Owned::new(lock, true)), name, None))
    }

    /// Attaches to the re-entrant lock named ``name``.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, name: String) -> PyResult<RLock> {
        let lock = ms::RLock::open(&name).map_err(shm_err)?;
        Ok(RLock::from(Src::Own(Owned::new(lock, false)), name, None))
    }

    /// Takes the lock (again, if this thread holds it), waiting at most
    /// ``timeout`` seconds (``None``: for ever) when ``block``; returns
    /// whether it was taken.
    #[pyo3(signature = (block=None, timeout=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        block: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let again = self.with(|l| l.mine());
        match self.with(|l| acquire(py, l, block, timeout))? {
            Some(died) => {
                let depth = if again {
                    self.depth.load(Ordering::Relaxed) + 1
                } else {
                    1
                };
                self.depth.store(depth, Ordering::Relaxed);
                self.held().fetch_add(1, Ordering::Relaxed);
                if let Err(e) = note_owner(py, &self.owner_died, died, "RLock") {
                    let _ = self.release();
                    return Err(e);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Releases one level of the lock (held by this thread).
    pub(crate) fn release(&self) -> PyResult<()> {
        if !self.with(|l| l.mine()) {
            return Err(PyAssertionError::new_err(
                "attempt to release recursive lock not owned by thread",
            ));
        }
        let depth = self.depth.load(Ordering::Relaxed);
        self.depth.store(depth.saturating_sub(1), Ordering::Relaxed);
        self.with(|l| l.give()).map_err(|_| {
            PyAssertionError::new_err("attempt to release recursive lock not owned by thread")
        })?;
        self.held().fetch_sub(1, Ordering::Relaxed);
        Ok(())
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

    /// True when the last ``acquire`` through this object took the lock
    /// from a holder that had died holding it.
    #[getter]
    fn owner_died(&self) -> bool {
        self.owner_died.load(Ordering::Relaxed)
    }

    /// The name a Rust program (or ``RLock.open``) attaches by (for a
    /// ``get_lock()`` lock, the value's name).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Whether the calling thread holds the lock.
    fn _is_mine(&self) -> bool {
        self.with(|l| l.mine())
    }

    /// How many times the calling thread holds the lock.
    fn _count(&self) -> u64 {
        if self._is_mine() {
            self.depth.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        match &slf.get().reduce {
            Some(r) => Ok(r.bind(py).clone()),
            None => Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),))
                .into_pyobject(py)?
                .into_any()),
        }
    }

    fn __repr__(&self) -> String {
        format!("<RLock(name={:?}, count={})>", self.name, self._count())
    }
}
