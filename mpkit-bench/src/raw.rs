//! The raw OS mechanisms the benchmarks compare mpkit with, used directly
//! (not through mpkit): a `pipe2(2)` pipe, and a bare futex pair (the floor
//! of a futex wake-up). Also how a raw descriptor travels into a child.

use std::fs::File;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};

use mpkit::Connection;
use mpkit::shm::{SharedMemory, ShmError};

/// A raw OS pipe (`pipe2(2)`, close-on-exec): (read end, write end).
///
/// # Panics
/// If `pipe2` fails (out of descriptors).
pub fn raw_pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, so both are fresh descriptors owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// Wraps a raw descriptor so it can travel in a child's arguments.
///
/// mpkit only carries descriptors inside its handles, so the descriptor is
/// dressed as a `Connection` just for the trip; it is never used as one.
/// (This makes it non-blocking; [`unwrap_fd`] undoes that.)
pub fn wrap_fd(fd: OwnedFd) -> Connection {
    Connection::from(UnixStream::from(fd))
}

/// The child side of [`wrap_fd`]: the descriptor, in blocking mode.
///
/// # Panics
/// If the descriptor cannot be duplicated or its flags cannot be set.
pub fn unwrap_fd(conn: Connection) -> OwnedFd {
    let fd = conn.as_fd().try_clone_to_owned().expect("dup");
    drop(conn);
    let flags = rustix::fs::fcntl_getfl(&fd).expect("F_GETFL");
    rustix::fs::fcntl_setfl(&fd, flags - rustix::fs::OFlags::NONBLOCK).expect("F_SETFL");
    fd
}

/// A bare futex "channel": a sequence word the sender bumps and wakes, the
/// receiver sleeps on at once (no spin, no payload). The floor of a round
/// trip with both sides asleep: the word at offset 0 goes out, the one at
/// 64 comes back.
pub struct FutexPair {
    shm: SharedMemory,
}

/// The value that tells a futex echo child to stop.
pub const FUTEX_STOP: u32 = u32::MAX;

impl FutexPair {
    /// A new pair's block (both words 0), to give to the other side.
    pub fn create() -> Result<SharedMemory, ShmError> {
        SharedMemory::anonymous(4096)
    }

    /// This process's view of the pair in `shm` (from
    /// [`create`](Self::create)).
    ///
    /// # Panics
    /// If `shm` is smaller than the two words.
    pub fn new(shm: SharedMemory) -> FutexPair {
        assert!(shm.size() >= 68, "a futex pair needs 68 bytes");
        FutexPair { shm }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset == 0 || offset == 64,
            "a futex pair's words are at 0 and 64"
        );
        // SAFETY: offsets 0 and 64 are 4-aligned, inside the mapping (its
        // size checked in `new`) that lives as long as `self.shm`; the
        // words are only ever accessed atomically.
        unsafe { &*self.shm.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// Sets the word at `offset` (0 or 64) to `value` and wakes its sleeper.
    pub fn send(&self, offset: usize, value: u32) {
        let w = self.word(offset);
        w.store(value, Ordering::Release);
        // SAFETY: FUTEX_WAKE on a valid, aligned shared word; no other memory.
        unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, 1) };
    }

    /// Sleeps until the word at `offset` (0 or 64) is no longer `old`; its
    /// new value.
    pub fn recv(&self, offset: usize, old: u32) -> u32 {
        let w = self.word(offset);
        loop {
            let now = w.load(Ordering::Acquire);
            if now != old {
                return now;
            }
            // SAFETY: FUTEX_WAIT on a valid, aligned shared word, no timeout.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    w.as_ptr(),
                    libc::FUTEX_WAIT,
                    old,
                    std::ptr::null::<libc::timespec>(),
                )
            };
        }
    }
}
