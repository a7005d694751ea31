//! Registers this area's classes; see lib.rs.

use pyo3::prelude::*;

pub(crate) fn register(_m: &Bound<'_, PyModule>, _names: &mut Vec<&'static str>) -> PyResult<()> {
    Ok(())
}
