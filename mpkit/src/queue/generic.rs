//! [`QueueOps`] and [`JoinableOps`]: the queue API as traits, so that code
//! can be generic over where its queue lives — shared memory on this host
//! ([`Queue`], [`JoinableQueue`]) or, with the `redis` feature, a Redis
//! stream shared across hosts (`redis_queue::RedisQueue`).
//!
//! ```
//! use std::time::Duration;
//! use mpkit::queue::{JoinableOps, JoinableQueue, QueueOps, generic::GetError};
//!
//! /// Sums what is queued, marking each item done.
//! fn drain<Q: JoinableOps<u64>>(q: &Q) -> u64 {
//!     let mut sum = 0;
//!     loop {
//!         match q.get_timeout(Some(Duration::from_millis(10))) {
//!             Ok(v) => {
//!                 sum += v;
//!                 q.task_done().unwrap();
//!             }
//!             Err(GetError::Empty) => return sum,
//!             Err(e) => panic!("{e}"),
//!         }
//!     }
//! }
//!
//! let q: JoinableQueue<u64> = JoinableQueue::new(0)?;
//! QueueOps::put_many(&q, vec![1, 2, 3]).unwrap();
//! assert_eq!(drain(&q), 6);
//! JoinableOps::join_timeout(&q, Some(Duration::from_secs(1))).unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The errors keep what generic code acts on (full, empty, closed, timed
//! out) as variants, and box everything else as the queue's own error
//! type (`Failed`), which a caller that knows the queue can downcast.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PutError as ShmPutError;
use super::{
    GetTimeoutError, JoinTimeoutError, JoinableQueue, PutTimeoutError, Queue, TryGetError,
    TryPutError,
};
use crate::codec::Codec;

/// Any error of a queue, boxed.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Why a put through [`QueueOps`] did not put its value (handed back).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PutError<T> {
    /// No room came before the timeout (`try_put`: at once).
    #[error("the queue stayed full until the timeout")]
    Full(T),
    /// The queue was closed.
    #[error("the queue is closed")]
    Closed(T),
    /// Anything else: the queue's own error, with the value left out.
    #[error("{source}")]
    Failed {
        /// The value.
        value: T,
        /// The queue's own error.
        source: BoxError,
    },
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Closed(v) | PutError::Failed { value: v, .. } => v,
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PutError({self})")
    }
}

/// Why a get through [`QueueOps`] returned no item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// Nothing came before the timeout (`try_get`: nothing was there).
    #[error("the queue stayed empty until the timeout")]
    Empty,
    /// The queue is closed and nothing is left for this consumer.
    #[error("the queue is closed and empty")]
    Closed,
    /// Anything else (an item that does not decode, a lost server, …):
    /// the queue's own error.
    #[error("{0}")]
    Failed(BoxError),
}

/// Why [`JoinableOps::join_timeout`] returned early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// Tasks were still unfinished at the timeout.
    #[error("timed out with unfinished tasks")]
    Timeout,
    /// Anything else (tasks lost with a dead consumer, a lost server, …):
    /// the queue's own error.
    #[error("{0}")]
    Failed(BoxError),
}

/// The operations every queue has. `timeout: None` waits as long as it
/// takes.
pub trait QueueOps<T> {
    /// Puts `item`, waiting at most `timeout` while the queue is full.
    fn put_timeout(&self, item: T, timeout: Option<Duration>) -> Result<(), PutError<T>>;
    /// Puts `item` if there is room now.
    fn try_put(&self, item: T) -> Result<(), PutError<T>>;
    /// Puts every item in order, waiting for room as needed; hands back
    /// the items not put.
    fn put_many(&self, items: Vec<T>) -> Result<(), PutError<Vec<T>>>;
    /// Takes the next item, waiting at most `timeout`.
    fn get_timeout(&self, timeout: Option<Duration>) -> Result<T, GetError>;
    /// Takes the next item if there is one now.
    fn try_get(&self) -> Result<T, GetError>;
    /// Takes up to `max` items, waiting at most `timeout` for the first.
    fn get_many_timeout(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<T>, GetError>;
    /// Items queued and not yet taken.
    fn len(&self) -> Result<usize, BoxError>;
    /// The item limit (0: none).
    fn maxsize(&self) -> usize;
    /// Closes the queue for everyone.
    fn close(&self) -> Result<(), BoxError>;

    /// Puts `item`, waiting while the queue is full.
    fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_timeout(item, None)
    }

    /// Takes the next item, waiting while there is none.
    fn get(&self) -> Result<T, GetError> {
        self.get_timeout(None)
    }

    /// True when no item is queued.
    fn is_empty(&self) -> Result<bool, BoxError> {
        Ok(self.len()? == 0)
    }
}

/// A queue that counts unfinished tasks (Python's `JoinableQueue`).
pub trait JoinableOps<T>: QueueOps<T> {
    /// Marks one task taken from the queue as done.
    fn task_done(&self) -> Result<(), BoxError>;
    /// Waits at most `timeout` until every task put is done.
    fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), JoinError>;
}

/// A put error of the shared-memory queue as a generic one: `Full` and
/// `Closed` kept, the rest boxed as a [`super::PutError<()>`] (the value
/// left out).
trait IntoGeneric<T> {
    fn into_generic(self) -> PutError<T>;
}

macro_rules! shm_put_error {
    ($ty:ident $(, $full:ident)?) => {
        impl<T> IntoGeneric<T> for $ty<T> {
            fn into_generic(self) -> PutError<T> {
                use super::PutError as P;
                let (value, source): (T, P<()>) = match self {
                    $($ty::$full(v) => return PutError::Full(v),)?
                    $ty::Closed(v) => return PutError::Closed(v),
                    $ty::TooLarge { value, size, max } => {
                        (value, P::TooLarge { value: (), size, max })
                    }
                    $ty::Encode {
                        value,
                        type_name,
                        source,
                    } => (
                        value,
                        P::Encode {
                            value: (),
                            type_name,
                            source,
                        },
                    ),
                    $ty::Corrupt { value, why } => (value, P::Corrupt { value: (), why }),
                    $ty::Io { value, source } => (value, P::Io { value: (), source }),
                };
                PutError::Failed {
                    value,
                    source: Box::new(source),
                }
            }
        }
    };
}

shm_put_error!(ShmPutError);
shm_put_error!(TryPutError, Full);
shm_put_error!(PutTimeoutError, Timeout);

fn shm_get_error<E: Into<BoxError>>(e: E, empty: bool, closed: bool) -> GetError {
    if empty {
        GetError::Empty
    } else if closed {
        GetError::Closed
    } else {
        GetError::Failed(e.into())
    }
}

/// [`QueueOps`] for a shared-memory queue type.
macro_rules! shm_queue_ops {
    ($ty:ident) => {
        impl<T: Serialize + DeserializeOwned, C: Codec> QueueOps<T> for $ty<T, C> {
            fn put_timeout(&self, item: T, timeout: Option<Duration>) -> Result<(), PutError<T>> {
                match timeout {
                    None => $ty::put(self, item).map_err(|e| e.into_generic()),
                    Some(t) => $ty::put_timeout(self, item, t).map_err(|e| e.into_generic()),
                }
            }

            fn try_put(&self, item: T) -> Result<(), PutError<T>> {
                $ty::try_put(self, item).map_err(|e| e.into_generic())
            }

            fn put_many(&self, items: Vec<T>) -> Result<(), PutError<Vec<T>>> {
                $ty::put_many(self, items).map_err(|e| e.into_generic())
            }

            fn get_timeout(&self, timeout: Option<Duration>) -> Result<T, GetError> {
                let r = match timeout {
                    None => $ty::get(self).map_err(GetTimeoutError::from),
                    Some(t) => $ty::get_timeout(self, t),
                };
                r.map_err(|e| {
                    let (empty, closed) = (
                        matches!(e, GetTimeoutError::Timeout),
                        matches!(e, GetTimeoutError::Closed),
                    );
                    shm_get_error(e, empty, closed)
                })
            }

            fn try_get(&self) -> Result<T, GetError> {
                $ty::try_get(self).map_err(|e| {
                    let (empty, closed) = (
                        matches!(e, TryGetError::Empty),
                        matches!(e, TryGetError::Closed),
                    );
                    shm_get_error(e, empty, closed)
                })
            }

            fn get_many_timeout(
                &self,
                max: usize,
                timeout: Option<Duration>,
            ) -> Result<Vec<T>, GetError> {
                let r = match timeout {
                    None => $ty::get_many(self, max).map_err(GetTimeoutError::from),
                    Some(t) => $ty::get_many_timeout(self, max, t),
                };
                r.map_err(|e| {
                    let (empty, closed) = (
                        matches!(e, GetTimeoutError::Timeout),
                        matches!(e, GetTimeoutError::Closed),
                    );
                    shm_get_error(e, empty, closed)
                })
            }

            fn len(&self) -> Result<usize, BoxError> {
                Ok($ty::len(self))
            }

            fn maxsize(&self) -> usize {
                $ty::maxsize(self)
            }

            fn close(&self) -> Result<(), BoxError> {
                $ty::close(self);
                Ok(())
            }
        }
    };
}

shm_queue_ops!(Queue);
shm_queue_ops!(JoinableQueue);

impl<T: Serialize + DeserializeOwned, C: Codec> JoinableOps<T> for JoinableQueue<T, C> {
    fn task_done(&self) -> Result<(), BoxError> {
        Ok(JoinableQueue::task_done(self)?)
    }

    fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), JoinError> {
        let r = match timeout {
            None => JoinableQueue::join(self).map_err(JoinTimeoutError::from),
            Some(t) => JoinableQueue::join_timeout(self, t),
        };
        r.map_err(|e| match e {
            JoinTimeoutError::Timeout(_) => JoinError::Timeout,
            e => JoinError::Failed(Box::new(e)),
        })
    }
}
