//! Locks, semaphores, events, conditions and barriers with
//! `multiprocessing`'s signatures: `Lock`, `RLock` (locks.rs), `Semaphore`,
//! `BoundedSemaphore`, `Event` (sems.rs) on mpkit's robust process-shared
//! objects, and `Condition`, `Barrier` (classes.py: multiprocessing's own
//! algorithms over those).
//!
//! Also what every shared object of this package has in common
//! ([`Owned`], [`name_or_fresh`], [`shm_err`]): each is a named mpkit
//! object (a generated name, `crate::names`, unless the caller gives one),
//! pickles as its name and reopens by it in the receiving process, and the
//! creating Python object removes the name when it is collected, or at
//! exit if still alive, in the creating process only.

mod locks;
mod sems;

use std::ffi::CStr;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use mpkit::shm::ShmError;
use pyo3::exceptions::{PyFileExistsError, PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

pub(crate) use locks::{Lock, RLock, Shared};

pyo3::create_exception!(
    mpkit,
    OwnerDiedWarning,
    pyo3::exceptions::PyRuntimeWarning,
    "Warned by `acquire` when the lock's previous holder died holding it \
     (SIGKILL included): the lock is now the caller's, but what it \
     protected may be half-updated. The lock's `owner_died` attribute says \
     the same."
);

/// An mpkit object made or opened by this process. Dropping it drops the
/// object (a creating handle removes its name), except:
/// - in a process forked from the one that made it (a bare `os.fork()`, or
///   a forked child collecting what it inherited), where it is left alone
///   so that a child never removes its parent's name;
/// - while a lock inside it is held through this handle ([`held`]): glibc
///   links every robust mutex a thread holds into that thread's robust
///   list *through the mutex's own memory*, so unmapping it would leave
///   the list pointing at nothing and the next lock operation (or the
///   thread's exit) would crash. Then the name is removed (if this handle
///   made it) and the mapping stays until the process exits.
///
/// [`held`]: Owned::held
pub(crate) struct Owned<T: Unlink> {
    inner: ManuallyDrop<T>,
    pid: u32,
    creator: bool,
    held: AtomicU64,
}

/// The objects [`Owned`] holds: each has a name and can remove it.
pub(crate) trait Unlink {
    fn unlink_name(&mut self);
    fn shm_name(&self) -> Option<&str>;
}

macro_rules! unlink {
    ($($t:ty),*) => {$(
        impl Unlink for $t {
            fn unlink_name(&mut self) {
                let _ = self.unlink();
            }
            fn shm_name(&self) -> Option<&str> {
                self.name()
            }
        }
    )*};
}
unlink!(
    mpkit::sync::Lock,
    mpkit::sync::RLock,
    mpkit::sync::Semaphore,
    mpkit::sync::BoundedSemaphore,
    mpkit::sync::Event
);

impl<T: bytemuck::Pod> Unlink for mpkit::shm::RawValue<T> {
    fn unlink_name(&mut self) {
        let _ = self.unlink();
    }
    fn shm_name(&self) -> Option<&str> {
        self.name()
    }
}
impl<T: bytemuck::Pod> Unlink for mpkit::shm::RawArray<T> {
    fn unlink_name(&mut self) {
        let _ = self.unlink();
    }
    fn shm_name(&self) -> Option<&str> {
        self.name()
    }
}
impl<T: bytemuck::Pod> Unlink for mpkit::shm::Value<T> {
    fn unlink_name(&mut self) {
        let _ = self.unlink();
    }
    fn shm_name(&self) -> Option<&str> {
        self.name()
    }
}
impl<T: bytemuck::Pod> Unlink for mpkit::shm::Array<T> {
    fn unlink_name(&mut self) {
        let _ = self.unlink();
    }
    fn shm_name(&self) -> Option<&str> {
        self.name()
    }
}

impl<T: Unlink> Owned<T> {
    /// `inner`, made (`creator`: its name is removed at exit if this
    /// handle is still alive then) or opened by this process.
    pub(crate) fn new(inner: T, creator: bool) -> Owned<T> {
        if let (true, Some(name)) = (creator, inner.shm_name()) {
            crate::names::created_now(name);
        }
        Owned {
            inner: ManuallyDrop::new(inner),
            pid: std::process::id(),
            creator,
            held: AtomicU64::new(0),
        }
    }

    /// Acquisitions of the lock inside, through this handle, not yet
    /// released (the lock's `acquire` adds, `release` subtracts).
    pub(crate) fn held(&self) -> &AtomicU64 {
        &self.held
    }
}

impl<T: Unlink> Deref for Owned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: Unlink> Drop for Owned<T> {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            return;
        }
        if let (true, Some(name)) = (self.creator, self.inner.shm_name()) {
            crate::names::dropped(name);
        }
        if self.held.load(Ordering::Relaxed) > 0 {
            if self.creator {
                self.inner.unlink_name();
            }
            return;
        }
        // SAFETY: dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.inner) }
    }
}

/// The name to create under: the caller's, or a fresh one.
pub(crate) fn name_or_fresh(name: Option<String>) -> String {
    name.unwrap_or_else(crate::names::fresh)
}

/// A Python exception for an mpkit shared-memory error: a missing or
/// existing name as the `FileNotFoundError`/`FileExistsError` that
/// `multiprocessing.shared_memory` raises, an object of another kind or
/// element type as `ValueError`, a corrupt one as `mpkit.CorruptError`,
/// the rest as `OSError`; one from the system keeps its errno, so that
/// Python picks the subclass (`PermissionError` for EACCES...) and
/// `e.errno` says EMFILE or ENOSPC.
pub(crate) fn shm_err(e: ShmError) -> PyErr {
    if let ShmError::Io(io) = &e {
        if let Some(errno) = io.raw_os_error() {
            return PyOSError::new_err((errno, e.to_string()));
        }
    }
    match e {
        ShmError::Corrupt(_) => crate::errors::CorruptError::new_err(e.to_string()),
        ShmError::NotFound(_) => PyFileNotFoundError::new_err(e.to_string()),
        ShmError::Exists(_) => PyFileExistsError::new_err(e.to_string()),
        ShmError::InvalidName(_)
        | ShmError::WrongKind { .. }
        | ShmError::WrongElement { .. }
        | ShmError::NoParties
        | ShmError::TooLarge { .. } => PyValueError::new_err(e.to_string()),
        _ => PyOSError::new_err(e.to_string()),
    }
}

/// A Python exception for the `io::Error` of a semaphore or event wait:
/// `mpkit.CorruptError` when it wraps [`ShmError::Corrupt`] (another
/// process overwrote or truncated the object's file), an `OSError`
/// keeping its errno otherwise.
pub(crate) fn wait_err(e: std::io::Error) -> PyErr {
    if let Some(ShmError::Corrupt(_)) = e.get_ref().and_then(|r| r.downcast_ref::<ShmError>()) {
        return crate::errors::CorruptError::new_err(e.to_string());
    }
    match e.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, e.to_string())),
        None => PyOSError::new_err(e.to_string()),
    }
}

/// Whether a Python `block` argument is true (multiprocessing takes any
/// truthy value; left out, or `None`, blocks).
pub(crate) fn truthy(block: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
    match block {
        Some(b) if !b.is_none() => b.is_truthy(),
        _ => Ok(true),
    }
}

/// How long an `acquire(block, timeout)` of a lock or semaphore waits: a
/// negative timeout is 0, as in multiprocessing's `SemLock` (unlike
/// `queue.Queue`, which refuses it).
pub(crate) fn acquire_wait(
    block: Option<&Bound<'_, PyAny>>,
    timeout: Option<f64>,
) -> PyResult<Option<std::time::Duration>> {
    crate::blocking::wait_for(truthy(block)?, timeout.map(|t| t.max(0.0)))
}

const CLASSES: &CStr = {
    match CStr::from_bytes_with_nul(concat!(include_str!("classes.py"), "\0").as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("classes.py holds a NUL byte"),
    }
};

pub(crate) fn register(m: &Bound<'_, PyModule>, names: &mut Vec<&'static str>) -> PyResult<()> {
    let py = m.py();
    m.add("OwnerDiedWarning", py.get_type::<OwnerDiedWarning>())?;
    m.add_class::<Lock>()?;
    m.add_class::<RLock>()?;
    sems::register(m)?;
    // Condition and Barrier: Python over the classes above, defined as if
    // in this module so that they pickle by reference to it.
    let globals = PyDict::new(py);
    globals.set_item("__name__", m.name()?)?;
    globals.set_item("__builtins__", py.import("builtins")?)?;
    for n in ["Lock", "RLock", "Semaphore"] {
        globals.set_item(n, m.getattr(n)?)?;
    }
    py.run(CLASSES, Some(&globals), None)?;
    for n in ["Condition", "Barrier"] {
        m.add(n, globals.get_item(n)?)?;
    }
    names.extend([
        "Lock",
        "RLock",
        "Semaphore",
        "BoundedSemaphore",
        "Condition",
        "Event",
        "Barrier",
        "OwnerDiedWarning",
    ]);
    Ok(())
}
