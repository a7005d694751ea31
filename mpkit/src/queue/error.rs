//! The queues' errors: one type per family of operations, each naming only
//! what that family can report (crossbeam-channel's scheme; the table is in
//! the `queue` module's docs). The ring reports failures typed by how it
//! waited ([`Waiting`](super::ring::Waiting)); [`PutFamily`] and
//! [`GetFamily`] turn them into these types.

use std::convert::Infallible;
use std::fmt;
use std::io;

use super::ring::{GetFail, NotNow, PutFail, TimedOut};
use crate::codec::CodecError;

/// What the typed layer turns a refused put into: one of the put error
/// types, whose [`GaveUp`](PutFamily::GaveUp) matches the way it waited.
pub(crate) trait PutFamily<T>: Sized {
    /// What the ring reports when the operation stops waiting.
    type GaveUp;
    /// The error for a put the ring refused, handing `value` back.
    fn refused(fail: PutFail<Self::GaveUp>, value: T) -> Self;
    /// The error for a value that could not be encoded.
    fn encode(value: T, type_name: &'static str, source: CodecError) -> Self;
}

/// What the typed layer turns a failed get into; see [`PutFamily`].
pub(crate) trait GetFamily: Sized {
    /// What the ring reports when the operation stops waiting.
    type GaveUp;
    /// The error for a get the ring refused.
    fn refused(fail: GetFail<Self::GaveUp>) -> Self;
    /// The error for a message that does not decode.
    fn decode(type_name: &'static str, source: CodecError) -> Self;
}

/// One put error type: the variants every put can report, `$extra` first
/// when there is one, with `into_inner` and a `Debug` that leaves out the
/// value.
macro_rules! put_error {
    (
        $(#[$doc:meta])*
        $name:ident
        $(, $(#[$extra_doc:meta])* $extra:ident)?
    ) => {
        $(#[$doc])*
        #[derive(thiserror::Error)]
        #[non_exhaustive]
        pub enum $name<T> {
            $(
                $(#[$extra_doc])*
                $extra(T),
            )?
            /// The queue was closed ([`close`](super::Queue::close)).
            #[error("the queue is closed")]
            Closed(T),
            /// The encoded message is larger than the queue can ever hold.
            #[error(
                "a message of {size} bytes can never fit a queue whose largest message is {max} \
                 bytes (its byte capacity less a 16-byte header); make the queue with a larger \
                 byte capacity: `with_capacity`, the `capacity` of `create`, or `mpkit queue \
                 create --capacity`"
            )]
            TooLarge {
                /// The value.
                value: T,
                /// Its encoded size.
                size: usize,
                /// The largest message the queue holds.
                max: usize,
            },
            /// The value could not be encoded (nothing was put).
            #[error("could not encode a value of type `{type_name}`: {source}")]
            Encode {
                /// The value.
                value: T,
                /// Its type.
                type_name: &'static str,
                /// What the codec said.
                source: CodecError,
            },
            /// The queue's memory is not a valid ring, or a side's lock is
            /// no longer the mutex it was created as (another process wrote
            /// it); nothing was put.
            #[error("the queue is corrupt: {why}")]
            Corrupt {
                /// The value.
                value: T,
                /// What is wrong.
                why: String,
            },
            /// The operating system refused.
            #[error("queue: {source}")]
            Io {
                /// The value.
                value: T,
                /// The error.
                source: io::Error,
            },
        }

        impl<T> $name<T> {
            /// The value that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$extra(v) |)? $name::Closed(v) => v,
                    $name::TooLarge { value, .. }
                    | $name::Encode { value, .. }
                    | $name::Corrupt { value, .. }
                    | $name::Io { value, .. } => value,
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            /// Shows the error, not the value (which need not be `Debug`).
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

/// From the blocking put's error to another put error type: same variant,
/// same value.
macro_rules! from_put_error {
    ($name:ident) => {
        impl<T> From<PutError<T>> for $name<T> {
            fn from(e: PutError<T>) -> $name<T> {
                match e {
                    PutError::Closed(v) => $name::Closed(v),
                    PutError::TooLarge { value, size, max } => $name::TooLarge { value, size, max },
                    PutError::Encode {
                        value,
                        type_name,
                        source,
                    } => $name::Encode {
                        value,
                        type_name,
                        source,
                    },
                    PutError::Corrupt { value, why } => $name::Corrupt { value, why },
                    PutError::Io { value, source } => $name::Io { value, source },
                }
            }
        }
    };
}

/// The [`PutFamily`] of one put error type: `|gave_up, value| error`
/// builds its extra variant, if any.
macro_rules! put_family {
    ($name:ident, $g:ty, |$g_pat:pat_param, $v:ident| $gave_up:expr) => {
        impl<T> PutFamily<T> for $name<T> {
            type GaveUp = $g;

            fn refused(fail: PutFail<$g>, value: T) -> $name<T> {
                match fail {
                    PutFail::GaveUp($g_pat) => {
                        let $v = value;
                        $gave_up
                    }
                    PutFail::Closed => $name::Closed(value),
                    PutFail::TooLarge { size, max } => $name::TooLarge { value, size, max },
                    PutFail::Corrupt(why) => $name::Corrupt { value, why },
                    PutFail::Io(source) => $name::Io { value, source },
                }
            }

            fn encode(value: T, type_name: &'static str, source: CodecError) -> $name<T> {
                $name::Encode {
                    value,
                    type_name,
                    source,
                }
            }
        }
    };
}

put_error! {
    /// Why a blocking put ([`put`](super::Queue::put),
    /// [`put_many`](super::Queue::put_many)) did not happen; the value is
    /// handed back. It never reports a full queue: it waits for room.
    ///
    /// ```
    /// use mpkit::queue::{PutError, Queue};
    /// let q: Queue<String> = Queue::new(0)?;
    /// q.close();
    /// match q.put("late".to_string()) {
    ///     Err(PutError::Closed(v)) => assert_eq!(v, "late"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    PutError
}

put_error! {
    /// Why [`try_put`](super::Queue::try_put) did not put; the value is
    /// handed back.
    ///
    /// ```
    /// use mpkit::queue::{Queue, TryPutError};
    /// let q: Queue<u32> = Queue::new(1)?;
    /// q.try_put(1)?;
    /// match q.try_put(2) {
    ///     Err(TryPutError::Full(v)) => assert_eq!(v, 2), // Python's `Full`
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    TryPutError,
    /// The queue is full (Python's `Full`).
    #[error("the queue is full")]
    Full
}

put_error! {
    /// Why [`put_timeout`](super::Queue::put_timeout) did not put; the value
    /// is handed back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mpkit::queue::{PutTimeoutError, Queue};
    /// let q: Queue<u32> = Queue::new(1)?;
    /// q.put(1)?;
    /// let e = q.put_timeout(2, Duration::from_millis(1)).unwrap_err();
    /// assert!(matches!(e, PutTimeoutError::Timeout(_)));
    /// assert_eq!(e.into_inner(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    PutTimeoutError,
    /// The queue was still full when the timeout passed (Python's `Full`).
    #[error("the queue stayed full until the timeout")]
    Timeout
}

from_put_error!(TryPutError);
from_put_error!(PutTimeoutError);

put_family!(PutError, Infallible, |never, _value| match never {});
put_family!(TryPutError, NotNow, |NotNow, value| TryPutError::Full(
    value
));
put_family!(PutTimeoutError, TimedOut, |TimedOut, value| {
    PutTimeoutError::Timeout(value)
});

/// One get error type: the variants every get can report, `$extra` first
/// when there is one.
macro_rules! get_error {
    (
        $(#[$doc:meta])*
        $name:ident
        $(, $(#[$extra_doc:meta])* $extra:ident)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $(
                $(#[$extra_doc])*
                $extra,
            )?
            /// The queue is closed and every message has been taken.
            #[error("the queue is closed and empty")]
            Closed,
            /// A message was taken but does not decode as the queue's type
            /// (it is gone from the queue).
            #[error("could not decode a message as `{type_name}`: {source}")]
            Decode {
                /// The queue's type.
                type_name: &'static str,
                /// What the codec said.
                source: CodecError,
            },
            /// The queue's memory is not a valid ring, or a side's lock is
            /// no longer the mutex it was created as (another program wrote
            /// it).
            #[error("the queue is corrupt: {0}")]
            Corrupt(String),
            /// The queue was used to get from inside one of its own gets: a
            /// decoder (a `Deserialize` implementation) took from the queue
            /// it was decoding for. Nothing was taken by the inner get.
            #[error("the queue was used from inside one of its own gets (by a decoder)")]
            Reentered,
            /// The operating system refused.
            #[error("queue: {0}")]
            Io(#[from] io::Error),
        }
    };
}

/// From the blocking get's error to another get error type.
macro_rules! from_get_error {
    ($name:ident) => {
        impl From<GetError> for $name {
            fn from(e: GetError) -> $name {
                match e {
                    GetError::Closed => $name::Closed,
                    GetError::Decode { type_name, source } => $name::Decode { type_name, source },
                    GetError::Corrupt(why) => $name::Corrupt(why),
                    GetError::Reentered => $name::Reentered,
                    GetError::Io(e) => $name::Io(e),
                }
            }
        }
    };
}

/// The [`GetFamily`] of one get error type: `|gave_up| error` builds its
/// extra variant, if any.
macro_rules! get_family {
    ($name:ident, $g:ty, |$g_pat:pat_param| $gave_up:expr) => {
        impl GetFamily for $name {
            type GaveUp = $g;

            fn refused(fail: GetFail<$g>) -> $name {
                match fail {
                    GetFail::GaveUp($g_pat) => $gave_up,
                    GetFail::Closed => $name::Closed,
                    GetFail::Corrupt(why) => $name::Corrupt(why),
                    GetFail::Reentered => $name::Reentered,
                    GetFail::Io(e) => $name::Io(e),
                }
            }

            fn decode(type_name: &'static str, source: CodecError) -> $name {
                $name::Decode { type_name, source }
            }
        }
    };
}

get_error! {
    /// Why a blocking get ([`get`](super::Queue::get),
    /// [`get_many`](super::Queue::get_many),
    /// [`get_into`](super::ByteQueue::get_into)) returned no message. It
    /// never reports an empty queue: it waits for a message, or for
    /// [`close`](super::Queue::close).
    ///
    /// ```
    /// use mpkit::queue::{GetError, Queue};
    /// let q: Queue<u32> = Queue::new(0)?;
    /// q.put(7)?;
    /// q.close();
    /// assert_eq!(q.get()?, 7); // what was queued is still delivered
    /// assert!(matches!(q.get(), Err(GetError::Closed)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    GetError
}

get_error! {
    /// Why [`try_get`](super::Queue::try_get) returned no message.
    ///
    /// ```
    /// use mpkit::queue::{Queue, TryGetError};
    /// let q: Queue<u32> = Queue::new(0)?;
    /// assert!(matches!(q.try_get(), Err(TryGetError::Empty))); // Python's `Empty`
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    TryGetError,
    /// The queue is empty (Python's `Empty`).
    #[error("the queue is empty")]
    Empty
}

get_error! {
    /// Why [`get_timeout`](super::Queue::get_timeout) or
    /// [`get_many_timeout`](super::Queue::get_many_timeout) returned no
    /// message.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mpkit::queue::{GetTimeoutError, Queue};
    /// let q: Queue<u32> = Queue::new(0)?;
    /// let e = q.get_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert!(matches!(e, GetTimeoutError::Timeout)); // Python's `Empty`
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    GetTimeoutError,
    /// The queue was still empty when the timeout passed (Python's
    /// `Empty`).
    #[error("the queue stayed empty until the timeout")]
    Timeout
}

from_get_error!(TryGetError);
from_get_error!(GetTimeoutError);

get_family!(GetError, Infallible, |never| match never {});
get_family!(TryGetError, NotNow, |NotNow| TryGetError::Empty);
get_family!(GetTimeoutError, TimedOut, |TimedOut| {
    GetTimeoutError::Timeout
});

/// Why [`JoinableQueue::task_done`](super::JoinableQueue::task_done) was
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called more times than there were items")]
pub struct TaskDoneError;

/// Unfinished tasks held by one process: taken from a
/// [`JoinableQueue`](super::JoinableQueue) and not yet marked done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberTasks {
    /// The process that took them.
    pub pid: i32,
    /// How many.
    pub count: u64,
}

impl From<super::ring::MemberTasks> for MemberTasks {
    fn from(m: super::ring::MemberTasks) -> MemberTasks {
        MemberTasks {
            pid: m.pid,
            count: m.count,
        }
    }
}

/// What a [`JoinableQueue::join_timeout`](super::JoinableQueue::join_timeout)
/// that timed out was still waiting for, as it stood at the deadline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinPending {
    /// Tasks put and not yet done.
    pub unfinished: u64,
    /// Of those, still in the queue (nobody took them yet).
    pub queued: u64,
    /// Of those, taken and held by these live processes.
    pub held: Vec<MemberTasks>,
    /// The rest: taken by processes the queue could not record (its table
    /// of members was full), or marked done ahead of time by another
    /// process while still counted here.
    pub untracked: u64,
}

impl From<super::ring::Pending> for JoinPending {
    fn from(p: super::ring::Pending) -> JoinPending {
        JoinPending {
            unfinished: p.unfinished,
            queued: p.queued,
            held: p.held.into_iter().map(MemberTasks::from).collect(),
            untracked: p.untracked,
        }
    }
}

fn lost_list(lost: &[MemberTasks]) -> String {
    let each: Vec<String> = lost
        .iter()
        .map(|m| format!("{} by process {}", m.count, m.pid))
        .collect();
    each.join(", ")
}

/// Why [`JoinableQueue::join`](super::JoinableQueue::join) returned before
/// every task was done.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Processes died holding unfinished tasks (taken, never marked
    /// done). Those tasks are now cleared (counted as done, so the next
    /// `join` can complete): redo them if they matter. Only the one `join`
    /// that found the deaths reports them.
    #[error("processes died holding unfinished tasks: {}", lost_list(.0))]
    TasksLost(Vec<MemberTasks>),
    /// The queue's task counts were overwritten by another process (more
    /// tasks done than were ever put, or a side's lock rewritten): how
    /// many are unfinished cannot be known, so `join` does not return as
    /// if none were.
    #[error("the queue is corrupt: {0}")]
    Corrupt(String),
    /// The OS refused the futex sleep.
    #[error("waiting for tasks: {0}")]
    Io(#[from] std::io::Error),
}

/// Why [`JoinableQueue::join_timeout`](super::JoinableQueue::join_timeout)
/// returned before every task was done.
///
/// ```
/// use std::time::Duration;
/// use mpkit::queue::{JoinTimeoutError, JoinableQueue};
/// let q: JoinableQueue<u32> = JoinableQueue::new(0)?;
/// q.put(1)?;
/// q.put(2)?;
/// q.get()?; // held by this process, not done
/// match q.join_timeout(Duration::from_millis(1)) {
///     Err(JoinTimeoutError::Timeout(p)) => {
///         assert_eq!((p.unfinished, p.queued), (2, 1));
///         assert_eq!(p.held[0].pid, std::process::id() as i32);
///         assert_eq!(p.held[0].count, 1);
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum JoinTimeoutError {
    /// The timeout passed; what was still unfinished, and who held it.
    #[error(
        "timed out with {} unfinished tasks ({} queued, {} held by live processes, {} untracked)",
        .0.unfinished, .0.queued, .0.held.iter().map(|h| h.count).sum::<u64>(), .0.untracked
    )]
    Timeout(JoinPending),
    /// As [`JoinError::TasksLost`].
    #[error("processes died holding unfinished tasks: {}", lost_list(.0))]
    TasksLost(Vec<MemberTasks>),
    /// As [`JoinError::Corrupt`].
    #[error("the queue is corrupt: {0}")]
    Corrupt(String),
    /// The OS refused the futex sleep.
    #[error("waiting for tasks: {0}")]
    Io(#[from] std::io::Error),
}

impl From<JoinError> for JoinTimeoutError {
    fn from(e: JoinError) -> JoinTimeoutError {
        match e {
            JoinError::TasksLost(lost) => JoinTimeoutError::TasksLost(lost),
            JoinError::Corrupt(why) => JoinTimeoutError::Corrupt(why),
            JoinError::Io(e) => JoinTimeoutError::Io(e),
        }
    }
}
