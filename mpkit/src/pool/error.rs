//! How a pool task, and making a pool, can fail.

use std::fmt;
use std::io;
use std::time::Duration;

#[cfg(doc)]
use super::{Builder, Pool};
use crate::SpawnError;

/// Why one task (one item of a map, or one `apply`) has no result.
///
/// Every variant is about that task alone: the pool goes on with the
/// others, except after [`PoolTerminated`](TaskError::PoolTerminated),
/// [`PoolClosed`](TaskError::PoolClosed),
/// [`InitializerFailed`](TaskError::InitializerFailed) and
/// [`PoolBroken`](TaskError::PoolBroken), which every later task gets too.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The function panicked (or the argument's `Deserialize`, or the
    /// result's `Serialize`, in the worker), with this message. A result's
    /// destructor runs after the result was sent; a panic there is not
    /// reported.
    /// The worker carries on with its next task.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The worker running the task died before it returned (killed by a
    /// signal, the OOM killer, an `exit` inside the task). A replacement
    /// worker was started. With [`Builder::retries`] this is reported only
    /// once the retries are used up.
    #[error("the worker process {pid} running the task died ({how})")]
    WorkerDied {
        /// The worker's process id.
        pid: i32,
        /// How it ended.
        how: WorkerExit,
    },
    /// The worker holding the task sent a reply that was not for it: a
    /// second reply to an earlier task (a task forked a process that went
    /// on as the worker), or bytes written to the worker's socket by a
    /// task. The worker was killed and replaced; the task's result is
    /// unknown. With [`Builder::retries`] this is reported only once the
    /// retries are used up.
    #[error(
        "the worker process {pid} running the task sent a reply that was not for it ({message}); it was killed"
    )]
    BadReply {
        /// The worker's process id.
        pid: i32,
        /// What was wrong with the reply.
        message: String,
    },
    /// The task ran longer than [`Builder::task_timeout`] allowed (for a
    /// chunk of `n` items, `n` times it): its worker was killed and
    /// replaced. Timeouts are not retried.
    #[error("the task ran longer than its timeout of {timeout:?}; its worker was killed")]
    TimedOut {
        /// The time the task (its whole chunk) was allowed.
        timeout: Duration,
    },
    /// The argument could not be encoded, in this process; the task never
    /// ran.
    #[error("could not encode the argument of type `{type_name}`: {message}")]
    ArgsEncode {
        /// The argument type.
        type_name: &'static str,
        /// What the codec said.
        message: String,
    },
    /// The argument reached the worker but did not decode as the function's
    /// argument type (a `Serialize`/`Deserialize` pair that disagree).
    #[error("the worker could not decode the argument as `{type_name}`: {message}")]
    ArgsDecode {
        /// The argument type.
        type_name: String,
        /// What the codec said.
        message: String,
    },
    /// The function returned, but the worker could not encode its result.
    #[error("the worker could not encode the result of type `{type_name}`: {message}")]
    ResultEncode {
        /// The result type.
        type_name: String,
        /// What the codec said.
        message: String,
    },
    /// The result arrived but did not decode as the result type.
    #[error("could not decode the result as `{type_name}`: {message}")]
    ResultDecode {
        /// The result type.
        type_name: &'static str,
        /// What the codec said.
        message: String,
    },
    /// The function is not part of the executable (it lives in a shared
    /// library loaded at its own address), so a worker cannot find it.
    #[error("the function is not part of the executable, so a worker process cannot find it")]
    ForeignFunction,
    /// The arguments of the task's chunk hold more handles together than
    /// one message can carry (253); every item of that chunk fails so. A
    /// smaller chunk size helps.
    #[error("the chunk's arguments hold {0} handles; at most 253 can go to a worker at once")]
    TooManyHandles(usize),
    /// The pool's initializer failed in a worker: it panicked, or workers
    /// died before it returned (an `exit`, an abort, a signal) three times
    /// in a row with none getting ready in between. The pool starts no
    /// more workers: this task and every later one fail so.
    #[error("the pool's initializer failed in a worker: {message}")]
    InitializerFailed {
        /// The panic message, what the codec said about the initializer's
        /// arguments, or how the worker died.
        message: String,
    },
    /// The task's result arrived, but the handles in it could not be
    /// received: this process was out of descriptors (`EMFILE`,
    /// `ENFILE`). The result is lost (the task ran: it is not retried);
    /// the worker carries on with the next task.
    #[error(
        "the task's result held handles this process could not receive (out of descriptors?); the result is lost"
    )]
    ResultHandlesLost,
    /// No worker was running and none could be started while the task
    /// waited (for [`Builder::worker_start_timeout`], at once when the
    /// cause cannot pass by itself). The pool keeps trying to start
    /// workers and runs later tasks once one starts.
    #[error("no worker process could be started: {message}")]
    WorkerStart {
        /// What the operating system said.
        message: String,
    },
    /// The pool's own thread, which hands tasks to the workers, panicked
    /// (a bug in mpkit), or the system refused it the `poll` it waits in:
    /// its workers were killed, and this task and every later one fail so.
    #[error("the pool is broken: {message}")]
    PoolBroken {
        /// What happened.
        message: String,
    },
    /// The task was submitted after [`Pool::close`].
    #[error("the pool is closed to new tasks")]
    PoolClosed,
    /// The pool was terminated (or dropped) before the task finished.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,
    /// A [`RedisPool`](crate::redis_pool::RedisPool)'s task was delivered
    /// to workers `attempts` times (its retries and one) and none of them
    /// finished it within the visibility timeout: each died, was cut off
    /// from Redis, or ran too long. It is not delivered again.
    #[error(
        "the task was delivered to workers {attempts} times and none finished it (each died, was cut off, or ran past the visibility timeout)"
    )]
    WorkerLost {
        /// How many times it was delivered.
        attempts: u64,
    },
    /// A [`RedisPool`](crate::redis_pool::RedisPool)'s worker does not
    /// run this task: it has no task of that name (`worker` is `None`), or
    /// one with another signature (version, argument and result types).
    /// The task did not run. Workers and callers disagree: a deploy error,
    /// reported at once rather than left waiting for a worker that may
    /// never come.
    #[error("a worker cannot run task `{task}` ({caller}): {}", match worker {
        Some(w) => format!("it has `{task}` as {w}"),
        None => "it has no task of that name".to_string(),
    })]
    Incompatible {
        /// The task's name.
        task: String,
        /// The signature the caller sent.
        caller: String,
        /// The signature the worker has under that name, if any.
        worker: Option<String>,
    },
    /// The argument holds a handle (a descriptor: a
    /// [`Connection`](crate::Connection), a queue in shared memory, …),
    /// which cannot go to a worker on another host; the task never ran.
    #[error("the argument holds a handle (a descriptor), which cannot go to another host")]
    HandleAcrossHosts,
    /// The Redis server behind a
    /// [`RedisPool`](crate::redis_pool::RedisPool) could not be reached
    /// (for its `retry_for`), lost the pool's data, or this caller's lease
    /// expired (workers then skip its tasks): the task's result will not
    /// come. It may or may not have run.
    #[error("the Redis pool cannot deliver the task's result: {message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// The task was cancelled before a worker took it
    /// ([`Task::cancel`](super::Task::cancel), or
    /// [`Executor::shutdown`](super::Executor::shutdown) cancelling pending
    /// work); it never ran (Python's `CancelledError`).
    #[error("the task was cancelled before it started")]
    Cancelled,
}

/// How a worker process ended ([`TaskError::WorkerDied`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerExit {
    /// A signal ended it (9 for `SIGKILL`).
    Signal(i32),
    /// It called `exit` with this code.
    Code(i32),
    /// It exited, but its status was collected elsewhere (`SIGCHLD`
    /// ignored, or a `waitpid(-1)` elsewhere in the program).
    Unknown,
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerExit::Signal(s) => write!(f, "killed by signal {s}"),
            WorkerExit::Code(c) => write!(f, "exited with code {c}"),
            WorkerExit::Unknown => f.write_str("exited; status collected elsewhere"),
        }
    }
}

/// Why a pool could not be made ([`Pool::new`], [`Builder::build`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A pool needs at least one worker.
    #[error("a pool needs at least one process")]
    NoProcesses,
    /// The initializer's arguments could not be encoded.
    #[error("could not encode the initializer's arguments of type `{type_name}`: {message}")]
    InitializerEncode {
        /// The argument type.
        type_name: &'static str,
        /// What the codec said.
        message: String,
    },
    /// The initializer is not part of the executable.
    #[error("the initializer is not part of the executable, so a worker cannot find it")]
    ForeignFunction,
    /// A worker process could not be started.
    #[error("could not start a worker process: {0}")]
    Spawn(#[from] SpawnError),
    /// The operating system refused (a pipe, a thread).
    #[error("could not set up the pool: {0}")]
    Io(#[from] io::Error),
}
