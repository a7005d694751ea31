//! How every call that may wait behaves, as Python's own do: the GIL is
//! released while it waits, `timeout` is float seconds (`None`: for ever),
//! and Ctrl-C (any signal whose handler raises) interrupts it within
//! [`SLICE`].

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The longest a call waits with the GIL released before it checks for
/// signals: Ctrl-C takes effect within this (the target is 100 ms).
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Turns Python's `block` and `timeout` into how long to wait: `None` for
/// ever, `Some(ZERO)` not at all. A negative timeout is a `ValueError`, as
/// `queue.Queue` raises.
pub(crate) fn wait_for(block: bool, timeout: Option<f64>) -> PyResult<Option<Duration>> {
    if !block {
        return Ok(Some(Duration::ZERO));
    }
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "'timeout' must be a non-negative number",
        )),
        Some(t) => Ok(Some(
            Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX),
        )),
    }
}

/// Calls `attempt` with the GIL released, each time with at most [`SLICE`]
/// to wait, until it returns `Some` or `timeout` has passed (then `None`).
/// Between attempts it runs Python's signal handlers, so a `KeyboardInterrupt`
/// (or any exception a handler raises) ends the wait.
///
/// `attempt(Duration::ZERO)` is always called at least once, so a zero
/// timeout still takes what is ready.
pub(crate) fn wait_sliced<T, F>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut attempt: F,
) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Duration) -> PyResult<Option<T>> + Send,
{
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let slice = match (timeout, deadline) {
            (Some(_), Some(d)) => d.saturating_duration_since(Instant::now()).min(SLICE),
            // A timeout too large for an Instant waits for ever.
            _ => SLICE,
        };
        if let Some(done) = py.detach(|| attempt(slice))? {
            return Ok(Some(done));
        }
        if slice.is_zero() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}
