//! The `mpkit._mpkit` extension module: mpkit's queues, locks and shared
//! values as Python classes with `multiprocessing`'s signatures.
//!
//! Each area registers its classes from its own file; `blocking` holds the
//! one way every call that may wait releases the GIL and stays
//! interruptible.

use pyo3::prelude::*;

mod blocking;
mod errors;
mod names;
mod queue;
mod shared;
mod sync;

#[pymodule]
fn _mpkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let mut names: Vec<&'static str> = Vec::new();
    errors::register(m, &mut names)?;
    names::register(m)?;
    queue::register(m, &mut names)?;
    sync::register(m, &mut names)?;
    shared::register(m, &mut names)?;
    m.add("__all__", names)?;
    Ok(())
}
