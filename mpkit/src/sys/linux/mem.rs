//! Shared memory: anonymous (`memfd`) and named (`shm_open`) files, their
//! sizes, and shared mappings of them.
//!
//! # References
//! - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
//! - [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html),
//!   [`shm_unlink(3)`](https://man7.org/linux/man-pages/man3/shm_unlink.3.html)
//! - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html),
//!   [`munmap(2)`](https://man7.org/linux/man-pages/man2/munmap.2.html)
//! - [`ftruncate(2)`](https://man7.org/linux/man-pages/man2/ftruncate.2.html),
//!   [`fallocate(2)`](https://man7.org/linux/man-pages/man2/fallocate.2.html)
//! - [`fsetxattr(2)`](https://man7.org/linux/man-pages/man2/fsetxattr.2.html),
//!   [`fgetxattr(2)`](https://man7.org/linux/man-pages/man2/fgetxattr.2.html),
//!   [`xattr(7)`](https://man7.org/linux/man-pages/man7/xattr.7.html)

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use super::errno::io_err;
use super::fault::{self, FaultSlot};

/// An anonymous shared-memory file (`memfd_create`, close-on-exec, sealable)
/// of `len` bytes. The kernel frees it when the last descriptor and mapping
/// are gone, even if every holder was killed.
pub(crate) fn memfd(name: &str, len: u64) -> io::Result<OwnedFd> {
    use rustix::fs::MemfdFlags;
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(io_err)?;
    rustix::fs::ftruncate(&fd, len).map_err(io_err)?;
    Ok(fd)
}

/// Seals a memfd's size: no process can shrink or grow it from now on
/// (nor lift the seals), so no mapping of it can fault past its end.
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::fs::SealFlags;
    rustix::fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(io_err)
}

/// Creates (exclusively) or opens a named POSIX shared-memory object.
/// `name` starts with `/`, as `shm_open(3)` wants.
pub(crate) fn shm_open(name: &str, create: bool, mode: u32) -> io::Result<OwnedFd> {
    use rustix::shm::{Mode, OFlags};
    let mut flags = OFlags::RDWR;
    if create {
        flags |= OFlags::CREATE | OFlags::EXCL;
    }
    rustix::shm::open(name, flags, Mode::from_raw_mode(mode)).map_err(io_err)
}

/// Removes a named POSIX shared-memory object.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    rustix::shm::unlink(name).map_err(io_err)
}

/// Sets the size of a shared-memory file.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, len).map_err(io_err)
}

/// Allocates the first `len` bytes of a file (`posix_fallocate`: every
/// page backed now), so that running out of room is `ENOSPC` here
/// (`io::ErrorKind::StorageFull`) rather than `SIGBUS` at a page's first
/// touch. Retried when a signal interrupts it.
pub(crate) fn allocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    loop {
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io_err),
        }
    }
}

/// The size of a file.
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd).map_err(io_err)?.st_size as u64)
}

/// Sets the extended attribute `name` (`user.…`) of a file to `value`,
/// creating or replacing it. tmpfs (`/dev/shm`) accepts `user.` attributes
/// from Linux 6.6; older kernels and other file systems answer `ENOTSUP`.
pub(crate) fn set_xattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(fd, name, value, rustix::fs::XattrFlags::empty()).map_err(io_err)
}

/// Reads the extended attribute `name` of a file into `buf`, returning its
/// length: `ENODATA` when the file has none, `ERANGE` when it is longer
/// than `buf`, `ENOTSUP` where the file system has no such attributes.
pub(crate) fn get_xattr(fd: BorrowedFd<'_>, name: &str, buf: &mut [u8]) -> io::Result<usize> {
    rustix::fs::fgetxattr(fd, name, buf).map_err(io_err)
}

/// A shared, read-write mapping of a file, unmapped on drop.
///
/// Registered with the `SIGBUS` handler (`fault.rs`) for its whole life: if
/// another process truncates the file, an access past its new end finds
/// private zeros instead of killing the process, and [`truncated`](Self::truncated)
/// says so from then on.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    slot: &'static FaultSlot,
}

// SAFETY: the mapping is plain memory shared with other processes; all access
// to it goes through atomics or through types that synchronise it themselves.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared with every other mapping
    /// of the same file.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        use rustix::mm::{MapFlags, ProtFlags};
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map 0 bytes",
            ));
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases no
        // Rust object; it is unmapped only in Drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(io_err)?;
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        let slot = fault::register(ptr.as_ptr(), len);
        Ok(Mapping { ptr, len, slot })
    }

    /// Whether the file was found truncated under this mapping (an access
    /// past its end was turned into private zeros; see `fault.rs`). One
    /// relaxed load: call it after each operation on the mapped memory.
    #[inline]
    pub(crate) fn truncated(&self) -> bool {
        self.slot.truncated()
    }

    /// The start of the mapping (page-aligned).
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Deregistered before unmapping: the handler never acts on a range
        // that may already belong to another mapping.
        let truncated = self.slot.truncated();
        fault::deregister(self.slot);
        if truncated {
            // Left mapped (private zeros now, never a fault): a lock held
            // when the file was cut is still on its thread's robust list,
            // which glibc and the kernel walk later.
            return;
        }
        // SAFETY: ptr/len are exactly what mmap returned, unmapped once.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
