//! A process pool whose workers run on any host, through a Redis server
//! (cargo feature `redis`): [`RedisPool`] has the [`Pool`](crate::Pool)
//! API (`map`, `imap`, `imap_unordered`, `apply_async`, `submit` for
//! [`as_completed`](crate::pool::as_completed) and
//! [`wait`](crate::pool::wait)), and returns the local pool's result types
//! ([`AsyncResult`](crate::pool::AsyncResult), [`Imap`](crate::pool::Imap),
//! [`Task`](crate::pool::Task), [`TaskError`](crate::pool::TaskError)).
//! A worker is the user's own program started in worker mode
//! ([`worker_main`]) on any machine that reaches the server.
//!
//! ```no_run
//! // Terminal 1 (any host): `wordcount --mpkit-worker redis://10.0.0.3:6379`
//! // Terminal 2:            `wordcount`
//! use mpkit::redis_pool::{RedisPool, RemoteFn};
//!
//! fn count(text: String) -> usize {
//!     text.split_whitespace().count()
//! }
//!
//! // A name that is stable across builds: what the workers look it up by.
//! const COUNT: RemoteFn<String, usize> = RemoteFn::new("wordcount.count", count);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     mpkit::redis_pool::worker_main(&[&COUNT]); // in worker mode: serves, exits
//!     let pool = RedisPool::connect("redis://10.0.0.3:6379", "default")?;
//!     let texts = vec!["a b c".to_string(), "d e".to_string()];
//!     assert_eq!(pool.map(&COUNT, texts)?, [3, 2]);
//!     Ok(())
//! }
//! ```
//!
//! Redis is chosen explicitly, by URL: the local [`Pool`](crate::Pool)
//! keeps its shared-memory fast path and never goes through Redis.
//!
//! # Tasks by name
//! A [`RemoteFn`] is a function under a name that is stable across builds
//! (its address is not), with a version. Each chunk carries the name and a
//! signature (the version and the argument and result types'
//! `type_name`s); a worker that has no function of that name, or has it
//! with another signature, does not run the chunk: its items fail with
//! [`TaskError::Incompatible`](crate::pool::TaskError::Incompatible),
//! naming both sides. Failing beats waiting for a worker that may know it:
//! a fleet of mixed versions is a deploy error, best seen at once, and a
//! task held back for a compatible worker that never comes would hang its
//! caller. Arguments holding handles (descriptors) cannot go to another
//! host: such an item fails with
//! [`TaskError::HandleAcrossHosts`](crate::pool::TaskError::HandleAcrossHosts)
//! (a result holding one fails with `ResultEncode`).
//!
//! # Guarantees
//! - **Every result exactly once.** A task (a chunk) stays in the pool's
//!   stream, pending under the worker that took it, until that worker
//!   finishes it: one script acknowledges it and adds its result to the
//!   caller's results stream, so a result exists only for a task
//!   acknowledged by that same step, and only the first worker to finish
//!   a task acknowledges it. The caller keeps the first result of each
//!   chunk and drops any later one (a task added twice, when a
//!   submission's reply was lost and it was sent again).
//! - **Side effects up to `retries + 1` times.** A task
//!   whose worker died, was cut off from Redis, or ran past the
//!   [visibility timeout](RedisPoolBuilder::visibility_timeout) is
//!   delivered to another worker (`XAUTOCLAIM`): its function may run
//!   again, on another host, while or after the first run. A task whose
//!   next delivery would be its `retries + 2`th fails with
//!   [`TaskError::WorkerLost`](crate::pool::TaskError::WorkerLost)
//!   instead: never a hang. A submission whose reply was lost is sent
//!   again, and both entries run (their second result is dropped): up to
//!   twice that. Make tasks idempotent, or the visibility timeout longer
//!   than the longest task.
//! - **A caller that goes away leaves nothing.** Each caller holds a lease
//!   (a key with a TTL, renewed several times a second by its collector
//!   thread). Workers skip (acknowledge without running) the tasks of a
//!   caller whose lease expired, and never write results for it; its
//!   results stream expires with it. Dropping a pool deletes its lease,
//!   results, and the tasks no worker took, one being added at that
//!   moment included.
//! - **Failures are per task**, as in the local pool: a task that panics
//!   fails alone with its message
//!   ([`TaskError::Panicked`](crate::pool::TaskError::Panicked)), on a
//!   worker that goes on; a worker killed mid-task costs that task one
//!   delivery.
//! - **Nothing hangs on Redis.** Every call has socket timeouts
//!   ([`io_timeout`](RedisPoolBuilder::io_timeout)); a submission retries
//!   a lost server for [`retry_for`](RedisPoolBuilder::retry_for), then
//!   fails its task with
//!   [`TaskError::Unavailable`](crate::pool::TaskError::Unavailable).
//!   `apply_async`, `submit` and `imap` return at once whatever the
//!   server does: their chunks are added by the pool's submitter thread,
//!   in the order they were sent (`map` adds its own, waiting as it would
//!   for their results). Dropping the pool stops a submission under way
//!   within one attempt (`io_timeout`). The
//!   collector reconnects, and fails every task waiting for a result with
//!   `Unavailable` once the server stayed away for `retry_for`, lost the
//!   pool's data, or this caller's lease expired (its tasks may have been
//!   skipped), and deletes their tasks. Waits with a timeout
//!   ([`AsyncResult::get_timeout`](crate::pool::AsyncResult::get_timeout))
//!   honour it whatever the server does. A result entry that cannot be
//!   read fails its task, or, when it names none, is counted
//!   ([`RedisPool::malformed_results`]).
//! - The visibility timeout is measured by the server, on its clock.
//!
//! # The pool's settings
//! The visibility timeout is the pool's, recorded in its `meta` hash
//! (field `visibility_ms`) by the first caller to connect. Another client
//! may overwrite it with something that is not a number of milliseconds
//! (1 to 2^53, decimal digits); then no worker can take a task, and
//! rather than let callers wait for ever:
//! - a worker says so on its standard error, once, naming the key, the
//!   field and the value, and tries again every second;
//! - a caller's tasks added before it fail with
//!   [`TaskError::Unavailable`](crate::pool::TaskError::Unavailable), and
//!   new ones at once, with a message that names them too (`BADMETA`);
//! - the next caller to connect ([`RedisPool::connect`]) records its own
//!   timeout in its place, as the first caller does, and workers take
//!   tasks again. So does `HSET mpkit:pool:{P}:meta visibility_ms 60000`.
//!
//! # Chunks
//! [`map`](RedisPool::map) sends items in chunks of Python's size
//! (`len / (4 × workers)`, rounded up) over the worker processes
//! registered when it starts, assuming at least 4 (more may join), and at
//! most 1024 items: a chunk is what a lost worker costs, and what is
//! delivered again. `imap` keeps at most
//! [`max_in_flight`](RedisPoolBuilder::max_in_flight) chunks in Redis,
//! reading its input only to top that up. A dropped `Imap`, or a `map`
//! stopped by a failure, deletes its chunks from the stream: those no
//! worker took never run (one a worker holds finishes, its result
//! dropped).
//!
//! # Anatomy
//! Pool `P` is a handful of keys with the hash tag `{P}`: the stream
//! `mpkit:pool:{P}:tasks` (one entry per chunk, consumer group `mpkit`,
//! one consumer per worker process), the hash `mpkit:pool:{P}:meta` (the
//! visibility timeout), the sorted set `mpkit:pool:{P}:workers` (worker
//! registrations, scored by expiry), and per caller `C` the lease
//! `mpkit:pool:{P}:caller:C` and the results stream
//! `mpkit:pool:{P}:results:C`. Chunks carry the local pool's payload
//! (postcard items), and results its reply format.
//!
//! # Limitations
//! - A task handed to Redis cannot be cancelled:
//!   [`Task::cancel`](crate::pool::Task::cancel) returns false, and
//!   [`Task::running`](crate::pool::Task::running) is true from its
//!   submission until its result (the caller does not see when a worker
//!   takes it).
//! - A worker runs one task at a time; run more worker processes (one per
//!   CPU by default) for more at once. The supervisor restarts worker
//!   processes that die, but not itself: run it under a service manager.
//! - A chunk's items and results travel in one Redis entry each: keep
//!   chunks of large items small.
//! - Redis Cluster is not supported; the pool's keys share a hash tag,
//!   but the scripts name keys of callers they are not given.
//! - The URL travels in worker processes' command lines (or
//!   environment): with a password in it, mind who can read them.

mod client;
mod pool;
mod remote_fn;
mod scripts;
mod supervisor;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};

pub use pool::{RedisPool, RedisPoolBuilder};
pub use remote_fn::{AnyRemoteFn, RemoteFn};
pub use supervisor::{CHILD_ENV, worker_main};
pub use worker::{Worker, WorkerBuilder};

/// The key names of pool `name`.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `mpkit:pool:{name}:`, what every key starts with.
    pub(crate) prefix: String,
    pub(crate) tasks: String,
    pub(crate) meta: String,
    pub(crate) workers: String,
}

impl Keys {
    pub(crate) fn new(name: &str) -> Keys {
        let prefix = format!("mpkit:pool:{{{name}}}:");
        Keys {
            tasks: format!("{prefix}tasks"),
            meta: format!("{prefix}meta"),
            workers: format!("{prefix}workers"),
            prefix,
        }
    }

    /// Caller `c`'s lease.
    pub(crate) fn caller(&self, c: &str) -> String {
        format!("{}caller:{c}", self.prefix)
    }

    /// Caller `c`'s results stream.
    pub(crate) fn results(&self, c: &str) -> String {
        format!("{}results:{c}", self.prefix)
    }
}

/// A name no other caller or worker has: host, process, a counter, and
/// the clock.
pub(crate) fn consumer_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}-{}-{}-{nanos:08x}",
        host.trim(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
