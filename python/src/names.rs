//! Names of the objects this package makes, for every class alike: the
//! generated name of an object made without one, and the list of names
//! this process created and still owns, which `mpkit`'s `atexit` hook
//! removes (objects still referenced at exit are never collected).
//!
//! A generated name is `mpkit_py_PID_N_T`: the creating pid, a counter and
//! the low 32 bits of the clock in nanoseconds, in hex. Every object is a
//! typed mpkit segment whose header records its creator, so `mpkit ls`
//! lists it and `mpkit rm --stale` removes it once that creator is gone;
//! the pid in the name lets a person (and the test suite) tell whose it is.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

/// What every generated name starts with, before the pid.
pub(crate) const PREFIX: &str = "mpkit_py_";

/// Names this process created and has not dropped yet, with their
/// creator's pid (a forked child inherits the list, not the names).
static CREATED: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

fn created() -> std::sync::MutexGuard<'static, Vec<(String, u32)>> {
    CREATED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name no other object has: see the module docs.
pub(crate) fn fresh() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{PREFIX}{}_{n:x}_{:x}", std::process::id(), t & 0xffff_ffff)
}

/// Records that this process created `name` (and removes it at exit
/// unless [`dropped`] first).
pub(crate) fn created_now(name: &str) {
    created().push((name.to_string(), std::process::id()));
}

/// `name`, which this process created, was removed or handed on by its
/// object: the exit hook leaves it.
pub(crate) fn dropped(name: &str) {
    let me = std::process::id();
    created().retain(|(n, pid)| !(n == name && *pid == me));
}

/// Names of live objects this process created: `mpkit`'s `atexit` hook
/// removes them, as objects still referenced at exit are never dropped.
#[pyfunction]
pub(crate) fn _created_names() -> Vec<String> {
    let me = std::process::id();
    created()
        .iter()
        .filter(|(_, pid)| *pid == me)
        .map(|(n, _)| n.clone())
        .collect()
}

/// The start of every name this process generates (`mpkit_py_PID_`).
#[pyfunction]
pub(crate) fn _name_prefix() -> String {
    format!("{PREFIX}{}_", std::process::id())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_created_names, m)?)?;
    m.add_function(wrap_pyfunction!(_name_prefix, m)?)?;
    Ok(())
}
