//! The dynamic loader and the auxiliary vector: which loaded object holds
//! an address, where the main executable is, and whether this process
//! runs with privileges its caller lacks.
//!
//! # References
//! - [`dladdr(3)`](https://man7.org/linux/man-pages/man3/dladdr.3.html)
//! - [`getauxval(3)`](https://man7.org/linux/man-pages/man3/getauxval.3.html)
//!   (`AT_PHDR`, `AT_SECURE`)

use std::mem::MaybeUninit;

/// The base address of the loaded object (executable or shared library)
/// that contains `addr`, from `dladdr(3)`.
pub(crate) fn object_base(addr: usize) -> Option<usize> {
    let mut info = MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) } != 0;
    // SAFETY: zero-initialised, and filled in when dladdr returned non-zero.
    let info = unsafe { info.assume_init() };
    (found && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

/// The base address of the main executable (not of a shared library),
/// found from the program headers the kernel passed in the auxiliary vector.
pub(crate) fn main_executable_base() -> Option<usize> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let phdr = unsafe { libc::getauxval(libc::AT_PHDR) } as usize;
    if phdr == 0 { None } else { object_base(phdr) }
}

/// True when this process runs set-user-id, set-group-id or with file
/// capabilities (`AT_SECURE`): its environment is not to be trusted.
pub(crate) fn is_secure_exec() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}
