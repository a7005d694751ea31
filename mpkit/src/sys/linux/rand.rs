//! Random bytes from the kernel.
//!
//! # References
//! - [`getrandom(2)`](https://man7.org/linux/man-pages/man2/getrandom.2.html)

use std::io;

use rustix::io::Errno;

use super::errno::io_err;

/// Fills `buf` from the kernel's random number generator.
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}
