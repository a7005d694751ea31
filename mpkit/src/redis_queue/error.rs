//! The Redis queue's errors: one type per family of operations. Put errors
//! hand the value back, as the shared-memory queue's do.

use std::fmt;

use crate::codec::CodecError;

/// Why a put ([`put`](super::RedisQueue::put),
/// [`put_timeout`](super::RedisQueue::put_timeout),
/// [`try_put`](super::RedisQueue::try_put),
/// [`put_many`](super::RedisQueue::put_many)) did not put its value; the
/// value (for `put_many`, the items not put) is handed back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RedisPutError<T> {
    /// `maxsize` items were queued and no room came before the timeout
    /// (`try_put`: at once). A blocking `put` never reports it.
    #[error("the queue stayed full until the timeout")]
    Full(T),
    /// The queue was closed ([`close`](super::RedisQueue::close)).
    #[error("the queue is closed")]
    Closed(T),
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
    /// The server could not be reached for the queue's retry period (or
    /// past the operation's own deadline). The value may or may not have
    /// been added: the reply to an `XADD` that reached the server may be
    /// what was lost.
    #[error("the Redis server stayed unreachable: {source}")]
    Unavailable {
        /// The value.
        value: T,
        /// The last error seen.
        source: redis::RedisError,
    },
    /// The server answered with an error (e.g. the queue's keys were
    /// deleted or hold another type, or the server is out of memory);
    /// nothing was put.
    #[error("the Redis server refused: {source}")]
    Redis {
        /// The value.
        value: T,
        /// What the server said.
        source: redis::RedisError,
    },
}

impl<T> RedisPutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            RedisPutError::Full(v) | RedisPutError::Closed(v) => v,
            RedisPutError::Encode { value, .. }
            | RedisPutError::Unavailable { value, .. }
            | RedisPutError::Redis { value, .. } => value,
        }
    }

    /// The value, and the error without it.
    pub(crate) fn split(self) -> (T, RedisPutError<()>) {
        match self {
            RedisPutError::Full(v) => (v, RedisPutError::Full(())),
            RedisPutError::Closed(v) => (v, RedisPutError::Closed(())),
            RedisPutError::Encode {
                value,
                type_name,
                source,
            } => (
                value,
                RedisPutError::Encode {
                    value: (),
                    type_name,
                    source,
                },
            ),
            RedisPutError::Unavailable { value, source } => {
                (value, RedisPutError::Unavailable { value: (), source })
            }
            RedisPutError::Redis { value, source } => {
                (value, RedisPutError::Redis { value: (), source })
            }
        }
    }

    /// The same error for another value (used to hand back what is left).
    pub(crate) fn with<U>(self, value: U) -> RedisPutError<U> {
        match self {
            RedisPutError::Full(_) => RedisPutError::Full(value),
            RedisPutError::Closed(_) => RedisPutError::Closed(value),
            RedisPutError::Encode {
                type_name, source, ..
            } => RedisPutError::Encode {
                value,
                type_name,
                source,
            },
            RedisPutError::Unavailable { source, .. } => {
                RedisPutError::Unavailable { value, source }
            }
            RedisPutError::Redis { source, .. } => RedisPutError::Redis { value, source },
        }
    }
}

impl<T> fmt::Debug for RedisPutError<T> {
    /// Shows the error, not the value (which need not be `Debug`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisPutError({self})")
    }
}

/// Why a get ([`get`](super::RedisQueue::get) and its kin) returned no
/// item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisGetError {
    /// Nothing came before the timeout (`try_get`: nothing was there). A
    /// blocking `get` never reports it.
    #[error("the queue stayed empty until the timeout")]
    Empty,
    /// The queue is closed and nothing is left to deliver to this consumer.
    #[error("the queue is closed and empty")]
    Closed,
    /// The entry's payload does not decode as the queue's type. The entry
    /// is not dropped: it stays pending, is delivered again after the
    /// visibility timeout, and goes to the dead-letter stream after the
    /// last attempt, unless it is [`ack`](super::RedisQueue::ack)ed.
    #[error("entry {id} does not decode as `{type_name}`: {source}")]
    Decode {
        /// The entry's stream id.
        id: String,
        /// The queue's type.
        type_name: &'static str,
        /// What the codec said.
        source: CodecError,
    },
    /// The entry is not one the queue wrote (its fields are not the one
    /// field `v`): another program added it with a raw `XADD`. Kept
    /// pending as for [`Decode`](Self::Decode).
    #[error("entry {id} is malformed: {why}")]
    Malformed {
        /// The entry's stream id.
        id: String,
        /// What is wrong with it.
        why: String,
    },
    /// The server could not be reached for the queue's retry period (or
    /// past the operation's own deadline). Anything a lost reply delivered
    /// to this consumer is delivered again after the visibility timeout.
    #[error("the Redis server stayed unreachable: {0}")]
    Unavailable(redis::RedisError),
    /// The server answered with an error, or with a reply the queue does
    /// not understand (e.g. the stream or its group was deleted, or the
    /// server restarted without persistence).
    #[error("the Redis server refused: {0}")]
    Redis(redis::RedisError),
}

/// Why [`task_done`](super::RedisQueue::task_done) or
/// [`ack`](super::RedisQueue::ack) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisAckError {
    /// `task_done` was called more times than this handle took items.
    #[error("task_done() called more times than this handle took items")]
    NothingTaken,
    /// The entry was no longer pending: another consumer got it again
    /// after the visibility timeout and acknowledged it first, or it went
    /// to the dead-letter stream. The work was done more than once.
    /// Holds the ids, comma-separated.
    #[error("entries {0} were no longer pending (acknowledged elsewhere, or dead-lettered)")]
    NotPending(String),
    /// As [`RedisGetError::Unavailable`]; the entry may or may not be
    /// acknowledged (acknowledging it again is harmless).
    #[error("the Redis server stayed unreachable: {0}")]
    Unavailable(redis::RedisError),
    /// As [`RedisGetError::Redis`].
    #[error("the Redis server refused: {0}")]
    Redis(redis::RedisError),
}

/// Why [`join_timeout`](super::RedisQueue::join_timeout) or
/// [`join`](super::RedisQueue::join) returned early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisJoinError {
    /// The timeout passed with `unfinished` items still in the stream
    /// (queued, or delivered and not acknowledged). `join` never reports
    /// it.
    #[error("timed out with {unfinished} unfinished items")]
    Timeout {
        /// Items put and not yet acknowledged, at the deadline.
        unfinished: u64,
    },
    /// As [`RedisGetError::Unavailable`].
    #[error("the Redis server stayed unreachable: {0}")]
    Unavailable(redis::RedisError),
    /// As [`RedisGetError::Redis`].
    #[error("the Redis server refused: {0}")]
    Redis(redis::RedisError),
}

/// Why a query ([`len`](super::RedisQueue::len),
/// [`pending`](super::RedisQueue::pending),
/// [`unfinished_tasks`](super::RedisQueue::unfinished_tasks),
/// [`is_closed`](super::RedisQueue::is_closed)) or
/// [`close`](super::RedisQueue::close) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisQueryError {
    /// As [`RedisGetError::Unavailable`].
    #[error("the Redis server stayed unreachable: {0}")]
    Unavailable(redis::RedisError),
    /// As [`RedisGetError::Redis`].
    #[error("the Redis server refused: {0}")]
    Redis(redis::RedisError),
}

impl From<Fail> for RedisQueryError {
    fn from(f: Fail) -> RedisQueryError {
        match f {
            Fail::Unavailable(e) => RedisQueryError::Unavailable(e),
            Fail::Redis(e) => RedisQueryError::Redis(e),
        }
    }
}

/// Why a [`RedisQueue`](super::RedisQueue) could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisOpenError {
    /// The URL is not a Redis URL.
    #[error("not a Redis URL: {0}")]
    Url(redis::RedisError),
    /// As [`RedisGetError::Unavailable`].
    #[error("the Redis server stayed unreachable: {0}")]
    Unavailable(redis::RedisError),
    /// As [`RedisGetError::Redis`].
    #[error("the Redis server refused: {0}")]
    Redis(redis::RedisError),
}

/// What a call to the server ended with, before it is given a family's
/// error type.
#[derive(Debug)]
pub(crate) enum Fail {
    Unavailable(redis::RedisError),
    Redis(redis::RedisError),
}

impl From<Fail> for RedisGetError {
    fn from(f: Fail) -> RedisGetError {
        match f {
            Fail::Unavailable(e) => RedisGetError::Unavailable(e),
            Fail::Redis(e) => RedisGetError::Redis(e),
        }
    }
}

impl From<Fail> for RedisAckError {
    fn from(f: Fail) -> RedisAckError {
        match f {
            Fail::Unavailable(e) => RedisAckError::Unavailable(e),
            Fail::Redis(e) => RedisAckError::Redis(e),
        }
    }
}

impl From<Fail> for RedisJoinError {
    fn from(f: Fail) -> RedisJoinError {
        match f {
            Fail::Unavailable(e) => RedisJoinError::Unavailable(e),
            Fail::Redis(e) => RedisJoinError::Redis(e),
        }
    }
}

impl From<Fail> for RedisOpenError {
    fn from(f: Fail) -> RedisOpenError {
        match f {
            Fail::Unavailable(e) => RedisOpenError::Unavailable(e),
            Fail::Redis(e) => RedisOpenError::Redis(e),
        }
    }
}

impl Fail {
    pub(crate) fn put<T>(self, value: T) -> RedisPutError<T> {
        match self {
            Fail::Unavailable(source) => RedisPutError::Unavailable { value, source },
            Fail::Redis(source) => RedisPutError::Redis { value, source },
        }
    }
}
