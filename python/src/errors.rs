//! The exceptions mpkit raises where `multiprocessing` has no counterpart:
//! defined once here, registered in the module.

use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

create_exception!(
    mpkit,
    CorruptError,
    PyOSError,
    "An object's shared memory is not what mpkit wrote: another process \
     (or a stray write) changed it. The message says what was wrong."
);

create_exception!(
    mpkit,
    TasksLostError,
    PyRuntimeError,
    "`JoinableQueue.join` found processes that died holding unfinished tasks \
     (taken with `get`, never marked done). Those tasks are now counted as \
     done; `pids` lists `(pid, count)`. Redo them if they matter; the next \
     `join` waits for the rest."
);

pub(crate) fn register(m: &Bound<'_, PyModule>, names: &mut Vec<&'static str>) -> PyResult<()> {
    let py = m.py();
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("TasksLostError", py.get_type::<TasksLostError>())?;
    names.extend(["CorruptError", "TasksLostError"]);
    Ok(())
}
