//! [`ShmError`]: why a shared-memory object could not be created,
//! attached or used.

use std::io;

/// Why a shared-memory object could not be created or attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// No object has this name.
    #[error("no shared memory object named {0:?}")]
    NotFound(String),
    /// The name is taken.
    #[error("a shared memory object named {0:?} already exists")]
    Exists(String),
    /// The name is empty, too long, or contains `/`.
    #[error("invalid shared memory name {0:?} (use 1-250 characters, no '/')")]
    InvalidName(String),
    /// The file does not start with an mpkit header.
    #[error("not an mpkit object (no mpkit header)")]
    NotMpkit,
    /// The object was made by an mpkit with another layout.
    #[error("the object has layout version {found}; this mpkit supports version {supported}")]
    Version {
        /// The object's layout version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The object is of another kind (a lock opened as a value, …).
    #[error("the object is a {found}, not a {expected}")]
    WrongKind {
        /// What the object is.
        found: &'static str,
        /// What the caller asked for.
        expected: &'static str,
    },
    /// The object holds another element type. Elements are known by their
    /// type's name without module paths (`Job`, `Vec<Job>`), so the same
    /// definition in two programs agrees; queues add their codec (and may
    /// go by a name chosen with [`element_name`](crate::queue::Builder::element_name)),
    /// plain data its size and alignment.
    ///
    /// ```
    /// use mpkit::queue::Queue;
    /// use mpkit::shm::ShmError;
    ///
    /// let name = format!("doc-wrong-element-{}", std::process::id());
    /// let _jobs: Queue<u64> = Queue::create(&name, 0, 4096)?;
    /// match Queue::<String>::open(&name) {
    ///     Err(ShmError::WrongElement { holds, asked }) => {
    ///         assert_eq!(holds, "u64 (postcard)");
    ///         assert_eq!(asked, "String (postcard)");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), ShmError>(())
    /// ```
    #[error("the object holds `{holds}`, not `{asked}`")]
    WrongElement {
        /// What the object holds, as its creator recorded it (read from
        /// shared memory: "an unreadable element" if it does not parse).
        holds: String,
        /// What the caller asked for.
        asked: String,
    },
    /// The file is shorter than its header says.
    #[error("the object is truncated: {size} bytes, {needed} needed")]
    Truncated {
        /// The file's size.
        size: usize,
        /// The size the object needs.
        needed: usize,
    },
    /// The creator never finished initialising the object (it died, or it
    /// is not an mpkit object).
    #[error("the object was never initialised (did its creator die?)")]
    NotReady,
    /// The header is inconsistent, or a lock's mutex is not what the
    /// object was created with (another process overwrote it), or another
    /// process truncated the object's file after this one mapped it.
    #[error("corrupt object: {0}")]
    Corrupt(String),
    /// An offset or index outside the object.
    #[error("offset {offset} + {len} bytes is outside the {size}-byte object")]
    OutOfBounds {
        /// The start asked for.
        offset: usize,
        /// The length asked for.
        len: usize,
        /// The object's size.
        size: usize,
    },
    /// A size of zero was asked for: a shared memory object holds at least
    /// one byte (Python raises `ValueError` for `SharedMemory(size=0)` too).
    ///
    /// ```
    /// use mpkit::shm::{SharedMemory, ShmError};
    /// assert!(matches!(SharedMemory::anonymous(0), Err(ShmError::ZeroSize)));
    /// ```
    #[error("a shared memory object needs a size of at least one byte")]
    ZeroSize,
    /// A [`Barrier`](crate::sync::Barrier) for no parties was asked for.
    ///
    /// ```
    /// use mpkit::{shm::ShmError, sync::Barrier};
    /// assert!(matches!(Barrier::new(0), Err(ShmError::NoParties)));
    /// ```
    #[error("a barrier needs at least one party")]
    NoParties,
    /// More was asked for than an object of this kind can hold.
    ///
    /// ```
    /// use mpkit::{queue::ByteQueue, shm::ShmError};
    /// match ByteQueue::with_capacity(0, 1 << 40) {
    ///     Err(ShmError::TooLarge { requested, max, .. }) => assert!(requested > max),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    #[error("{what} of {requested} asked for, above the limit of {max}")]
    TooLarge {
        /// What was too large, with its unit ("a queue capacity in bytes",
        /// "an array length in elements").
        what: &'static str,
        /// What was asked for.
        requested: u64,
        /// The largest that can be had.
        max: u64,
    },
    /// The queue was created by a process that uses `membarrier(2)` for its
    /// barriers, and this process cannot use it (a seccomp filter refuses
    /// it, or `MPKIT_NO_MEMBARRIER` is set here and was not set there): the
    /// two sides could not order their memory accesses against each other.
    /// Set `MPKIT_NO_MEMBARRIER=1` in the creator as well, or in neither.
    #[error(
        "the queue's creator orders memory with membarrier(2), which this process cannot use \
         (a seccomp filter, or MPKIT_NO_MEMBARRIER set here but not in the creator)"
    )]
    MembarrierUnavailable,
    /// The operating system refused.
    #[error("shared memory: {0}")]
    Io(#[from] io::Error),
}

impl ShmError {
    pub(crate) fn from_open(e: io::Error, name: &str) -> ShmError {
        match e.raw_os_error() {
            Some(crate::sys::ENOENT) => ShmError::NotFound(name.to_string()),
            Some(crate::sys::EEXIST) => ShmError::Exists(name.to_string()),
            Some(crate::sys::EINVAL) | Some(crate::sys::ENAMETOOLONG) => {
                ShmError::InvalidName(name.to_string())
            }
            _ => ShmError::Io(e),
        }
    }
}
