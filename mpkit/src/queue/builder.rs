//! [`Builder`]: a typed queue's limits and the name its element goes by.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DEFAULT_CAPACITY, JoinableQueue, Queue, Typed};
use crate::base::segment::{ObjectKind, ShmError};
use crate::codec::Codec;

/// Options for a [`Queue`] or [`JoinableQueue`]: `maxsize`, byte
/// `capacity`, and the name the element goes by.
///
/// A named queue records what it holds: by default the element type's
/// name without module paths plus the codec (`Job (postcard)`), so two
/// programs that each define the same `struct Job` share a `Queue<Job>`.
/// When the two programs call the type differently (one renamed it, or
/// each has its own `Task`/`Job` with the same fields), give both the same
/// [`element_name`](Self::element_name):
///
/// ```
/// use mpkit::queue::Queue;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Job { id: u32 }
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Task { id: u32 } // another program's name for it
///
/// let name = format!("doc-builder-{}", std::process::id());
/// let jobs: Queue<Job> = Queue::builder()
///     .maxsize(10)
///     .element_name("jobs.v2")
///     .create(&name)?;
/// let tasks: Queue<Task> = Queue::builder().element_name("jobs.v2").open(&name)?;
/// jobs.put(Job { id: 7 }).unwrap();
/// assert_eq!(tasks.get()?, Task { id: 7 });
/// // Without the name, `Task` is not what the queue holds.
/// assert!(Queue::<Task>::open(&name).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A queue handle passed to another process (as a [`Process`](crate::Process)
/// argument or over a connection) carries its element name, and the
/// receiver accepts it for the `T` it names with the same codec: choosing
/// a name says the types agree.
#[derive(Clone, Debug)]
pub struct Builder<Q> {
    maxsize: usize,
    capacity: usize,
    element: Option<String>,
    _q: PhantomData<fn() -> Q>,
}

impl<Q> Builder<Q> {
    fn new() -> Builder<Q> {
        Builder {
            maxsize: 0,
            capacity: DEFAULT_CAPACITY,
            element: None,
            _q: PhantomData,
        }
    }

    /// The most items the queue holds (default 0: no limit but bytes).
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// The ring's capacity in bytes, rounded up to a power of two (default
    /// [`DEFAULT_CAPACITY`]); see [`Queue::with_capacity`].
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// The name the element goes by instead of its type's (`"jobs.v2"`):
    /// creating records it, opening checks it. The codec still counts: the
    /// same name under another codec is another element. Names longer than
    /// about 50 bytes are cut short in errors and `mpkit ls`, never in the
    /// check.
    pub fn element_name(mut self, name: impl Into<String>) -> Self {
        self.element = Some(name.into());
        self
    }
}

/// `builder`, `build`, `create` and `open` for one typed queue.
macro_rules! builds {
    ($ty:ident, $kind:expr) => {
        impl<T: Serialize + DeserializeOwned, C: Codec> $ty<T, C> {
            /// Options for a new or opened queue; see [`Builder`].
            pub fn builder() -> Builder<Self> {
                Builder::new()
            }
        }

        impl<T: Serialize + DeserializeOwned, C: Codec> Builder<$ty<T, C>> {
            /// A new anonymous queue.
            pub fn build(self) -> Result<$ty<T, C>, ShmError> {
                let inner = Typed::create($kind, None, self.maxsize, self.capacity, self.element)?;
                Ok($ty { inner })
            }

            /// A new named queue; this handle removes the name when dropped.
            pub fn create(self, name: &str) -> Result<$ty<T, C>, ShmError> {
                let (maxsize, capacity) = (self.maxsize, self.capacity);
                let inner = Typed::create($kind, Some(name), maxsize, capacity, self.element)?;
                Ok($ty { inner })
            }

            /// Attaches to a named queue, checking that it holds this
            /// element ([`ShmError::WrongElement`] names both otherwise).
            /// `maxsize` and `capacity` are the creator's.
            pub fn open(self, name: &str) -> Result<$ty<T, C>, ShmError> {
                let inner = Typed::open($kind, name, self.element)?;
                Ok($ty { inner })
            }
        }
    };
}

builds!(Queue, ObjectKind::Queue);
builds!(JoinableQueue, ObjectKind::JoinableQueue);
