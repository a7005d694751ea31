//! The platform layer: every OS call mpkit makes goes through here.
//!
//! The public modules never call `rustix` or `libc` themselves; they call the
//! thin, documented functions of this module. Porting mpkit to another
//! kernel means giving this module another backend: Linux is the only one
//! today (`linux/`, one file per OS area, every item re-exported here so
//! callers write `crate::sys::foo`).
//!
//! The arrows point one way: `sys` calls the OS and nothing of mpkit above
//! it. What must run at a fixed point of the process's life (the child
//! entry before `main`) is registered by the module that owns it
//! (`process`), not here.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!("mpkit supports Linux only for now; src/sys/ is the one place to port from");
