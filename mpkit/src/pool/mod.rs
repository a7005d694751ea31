//! Process pools: [`Pool`] (Python's `multiprocessing.Pool`) and
//! [`Executor`] (Python's `concurrent.futures.ProcessPoolExecutor`), where
//! a worker that dies never hangs the pool.
//!
//! ```
//! use mpkit::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
//! assert_eq!(pool.apply(square, 12)?, 144);
//! // A function of one tuple is Python's `starmap`:
//! assert_eq!(pool.map(|(a, b): (u32, u32)| a * b, [(2, 3), (4, 5)])?, [6, 20]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Executor
//!
//! [`Executor`] is the same pool behind Python's `concurrent.futures`
//! contract: [`submit`](Executor::submit) returns a [`Task`] (a future)
//! that can be waited on with a timeout, or [cancelled](Task::cancel)
//! while no worker has taken it; [`as_completed`] yields tasks as they
//! finish and [`wait`] returns when the first, the first failed, or all
//! have; [`shutdown`](Executor::shutdown) can cancel what is pending, and
//! dropping the executor waits for what was submitted (Python's `with`).
//! Built from the same [`Builder`] ([`Builder::build_executor`]).
//!
//! ```
//! use mpkit::pool::{as_completed, Executor};
//!
//! let ex = Executor::new(2)?;
//! let tasks: Vec<_> = ["a", "bb", "ccc"].map(|w| ex.submit(|w: String| w.len(), w.into())).into();
//! let mut lens: Vec<usize> = Vec::new();
//! for task in as_completed(tasks, None) {
//!     lens.push(task?.result()?);
//! }
//! lens.sort();
//! assert_eq!(lens, [1, 2, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! An [`AsyncResult`] and a [`Task`] are [`Waitable`](crate::net::Waitable):
//! one [`net::wait`](crate::net::wait) sleeps until a result is ready, a
//! process exits or a connection has a message, with no polling.
//!
//! Functions are as for [`Process`](crate::Process): plain `fn` items or
//! non-capturing closures in the executable; arguments and results are
//! serde values and may carry mpkit handles (a
//! [`Connection`](crate::Connection), …), per task.
//!
//! # Failures
//!
//! Each task ends with its result or a [`TaskError`] saying why not, and
//! the rest of the work goes on:
//! - a task that panics fails alone with its message
//!   ([`TaskError::Panicked`]); its worker carries on;
//! - a worker killed mid-task (SIGKILL, the OOM killer, `exit` in the
//!   task) fails the tasks it held ([`TaskError::WorkerDied`], saying how it
//!   died) and a replacement starts; with [`Builder::retries`] they run
//!   again on another worker first;
//! - a task past [`Builder::task_timeout`] has its worker killed and
//!   replaced, and fails with [`TaskError::TimedOut`], whatever that
//!   worker does (even stopped with `SIGSTOP` while its task was being
//!   sent to it);
//! - a result carrying handles that this process has no descriptors left
//!   to receive fails alone ([`TaskError::ResultHandlesLost`]); its worker
//!   carries on;
//! - a worker that cannot be started (the process is out of descriptors,
//!   or the system of processes or memory) is not a failure of the pool:
//!   it is tried again, after 10 ms, then twice as long each time up to
//!   once a second. Meanwhile tasks run on the workers there are. While
//!   there is none, they wait for one, up to
//!   [`Builder::worker_start_timeout`] (10 s by default) from the first
//!   start that failed with no worker running, then fail with
//!   [`TaskError::WorkerStart`], as do tasks submitted while that lasts
//!   (after one more try to start a worker). Other start errors cannot
//!   pass by themselves: with no worker running, tasks fail so at once.
//!   Either way the pool keeps trying, and takes work again as soon as a
//!   worker starts.
//!
//! ```
//! use mpkit::pool::{TaskError, WorkerExit};
//!
//! let pool = mpkit::Pool::new(2)?;
//! let outcomes = pool.map_outcomes_chunked(
//!     |x: i32| if x == 2 { std::process::exit(3) } else { x * 10 },
//!     0..5,
//!     1,
//! );
//! assert!(matches!(outcomes[2], Err(TaskError::WorkerDied { how: WorkerExit::Code(3), .. })));
//! assert_eq!(outcomes[4], Ok(40)); // the map went on, on a replacement worker
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Python's own `Pool` waits for ever when a worker is killed (CPython
//! gh-66587); this one cannot, because it always knows which worker holds
//! which task (see "How it works").
//!
//! Workers are daemon children: they die with the pool's process, however
//! it ends (even SIGKILL, even a worker stopped at that moment: the kernel
//! kills it, through `PR_SET_PDEATHSIG`). Dropping a `Pool` terminates
//! it: workers are killed and reaped, as Python's `with Pool() as p:`
//! does on exit. To let queued work finish first, [`close`](Pool::close)
//! and [`join`](Pool::join).
//!
//! # Chunks
//!
//! [`map`](Pool::map) sends items to workers in chunks, sized as Python
//! does (`len / (4 × workers)`, rounded up), so that cheap tasks cost
//! little each; [`map_chunked`](Pool::map_chunked) chooses the size. A
//! chunk is one task as far as the pool is concerned: a worker that dies
//! fails its whole chunk (every item in it gets `WorkerDied`), retries
//! rerun the whole chunk, a chunk of `n` items may take `n` times the task
//! timeout, and [`Builder::max_tasks_per_child`] counts chunks (as
//! Python's `maxtasksperchild` does). With a chunk size of 1 each of these
//! is about exactly one item.
//!
//! # How it works
//!
//! Each worker is a daemon [`Process`](crate::Process) running a loop over
//! its own socket to the pool. One dispatcher thread in the pool's process
//! owns all workers: it hands each queued chunk to one idle worker (so it
//! knows what each one holds) and sleeps in one `poll` over the workers'
//! sockets, their pidfds, a wake-up eventfd and the earliest task deadline.
//! A pidfd becoming readable means that worker died: its chunk fails (or
//! is queued again) and a replacement starts. Sends to workers never
//! block: what a socket does not take at once waits in the dispatcher
//! until `poll` says that socket is writable, so no worker, stopped or
//! slow, can hold up the others, a timeout, or `terminate`. Results are
//! decoded in the caller's thread. ARCHITECTURE.md ("Pools") has the
//! messages.
//!
//! # Limitations
//! - A worker stopped (`SIGSTOP`) keeps the chunk it holds, or is being
//!   sent, until it is continued, or until [`Builder::task_timeout`]
//!   kills it: without a timeout, a map whose workers are all stopped
//!   waits for them, as it would for slow tasks.
//! - Handles in the items of one chunk together, and in the results of
//!   one chunk together, are limited to 253 (one message's worth); past
//!   that every item of the chunk fails ([`TaskError::TooManyHandles`],
//!   [`TaskError::ResultEncode`]): use a smaller chunk size.
//! - A chunk's items travel back to back, as do its results: as
//!   fixed-width columns when each is the same scalar (a number, `bool`,
//!   `char`, `()`, or a newtype of one), in postcard otherwise. If an
//!   argument does not decode in the worker (a `Serialize`/`Deserialize`
//!   pair that disagree), it fails alone in a fixed-width column, and the
//!   whole chunk fails in postcard (past it the others cannot be found),
//!   with [`TaskError::ArgsDecode`]; if a result does not decode here, it
//!   and the rest of its chunk fail with [`TaskError::ResultDecode`] (in
//!   postcard every item of the chunk, as do results that read fewer
//!   bytes than they hold: past a value that read another's bytes, no
//!   value of the chunk can be trusted). An item or a result that does
//!   not *encode* fails alone. A chunk holds at most 2^20 items.
//! - A value whose `Serialize` can run only once (a one-shot stream) may
//!   be serialized more than once when it follows numbers in its chunk
//!   (up to three times after `u64`/`i64` values that fit 32 bits), and
//!   then fails with [`TaskError::ArgsEncode`].
//! - A result's destructor runs in the worker after the result was sent:
//!   a panic there is not reported.
//! - How a worker died comes from waiting for it. If the program ignores
//!   `SIGCHLD` (`SIG_IGN`), or has a handler that reaps every child
//!   (`waitpid(-1, ..)`), the status is gone first: the chunk then fails
//!   with [`WorkerDied`](TaskError::WorkerDied) saying
//!   [`WorkerExit::Unknown`].
//! - A task that forks a process which goes on as the worker (returns from
//!   the task too) sends a second reply; the pool takes no reply for the
//!   wrong chunk, but kills that worker, and the chunk it then holds fails
//!   with [`TaskError::BadReply`].
//! - In a worker, a chunk's arguments in postcard are all decoded before
//!   its first function runs, and its results are all encoded before the
//!   reply goes: a chunk holds all its arguments, and the encodings of
//!   all its results (with the results themselves, when their type has a
//!   destructor), in memory at once.
//! - Each worker has a shared-memory arena of 4 MiB for chunks and
//!   replies of 4 KiB to 2 MiB without handles; the pages a big chunk
//!   touched stay resident in it for the worker's life (bound them with
//!   [`Builder::max_tasks_per_child`]).
//! - [`terminate`](Pool::terminate) (and drop) kill workers with SIGKILL:
//!   a task in the middle of changing shared state leaves it as it was at
//!   that moment (mpkit's locks recover from a dead holder).

mod async_result;
mod batch;
mod chunk;
mod dispatch;
mod error;
mod executor;
mod fixed;
mod imap;
#[cfg(feature = "redis")]
pub(crate) mod remote;
mod spare;
mod wire;

pub use async_result::AsyncResult;
#[cfg(feature = "redis")]
pub(crate) use batch::{Batch, ChunkSink, Reply};
pub(crate) use batch::{Job, Plan, collect_items};
pub use error::{BuildError, TaskError, WorkerExit};
pub use executor::{
    AsCompleted, AsCompletedTimeout, Executor, MapError, MapResults, ReturnWhen, Task,
    as_completed, wait,
};
pub use imap::Imap;

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, Postcard};
use crate::handle;
use crate::process::child::{in_executable, offset_of};

use dispatch::{Config, Phase, Shared};

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// See the [module docs](self) for failures, chunks and how it works.
pub struct Pool {
    shared: Arc<Shared>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .finish()
    }
}

/// The initializer's message to each new worker, with its descriptors.
type InitMessage = (Vec<u8>, Vec<OwnedFd>);

/// Options for a [`Pool`] (rayon's `ThreadPoolBuilder` naming).
///
/// ```
/// use std::sync::OnceLock;
/// use std::time::Duration;
/// use mpkit::Pool;
///
/// static GREETING: OnceLock<String> = OnceLock::new();
///
/// fn greet(word: String) {
///     // Runs once in each worker, before its first task.
///     GREETING.set(word).unwrap();
/// }
///
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(greet, "hello".to_string())
///     .name("counter")
///     .task_timeout(Duration::from_secs(60))
///     .max_tasks_per_child(100)
///     .retries(1)
///     .worker_start_timeout(Duration::from_secs(5))
///     .build()?;
/// let words = pool.map(|w: String| format!("{} {w}", GREETING.get().unwrap()), ["a".to_string()])?;
/// assert_eq!(words, ["hello a"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Builder {
    processes: Option<usize>,
    init: Option<Result<InitMessage, BuildError>>,
    max_tasks_per_child: Option<u64>,
    task_timeout: Option<Duration>,
    name: String,
    retries: u32,
    worker_start_timeout: Duration,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("processes", &self.processes)
            .field("initializer", &self.init.is_some())
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("task_timeout", &self.task_timeout)
            .field("name", &self.name)
            .field("retries", &self.retries)
            .field("worker_start_timeout", &self.worker_start_timeout)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

/// The CPUs this process may run on (its affinity mask and any cgroup CPU
/// quota): a pool's default size, as Python's `os.process_cpu_count()`.
///
/// ```
/// assert!(mpkit::pool::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Builder {
    /// Default options: [`cpu_count`] workers named `PoolWorker-N`, no
    /// initializer, no task limit per worker, no timeout, no retries, a
    /// worker start timeout of 10 s.
    pub fn new() -> Builder {
        Builder {
            processes: None,
            init: None,
            max_tasks_per_child: None,
            task_timeout: None,
            name: "PoolWorker".to_string(),
            retries: 0,
            worker_start_timeout: Duration::from_secs(10),
        }
    }

    /// How many worker processes (default: [`cpu_count`]).
    pub fn processes(mut self, n: usize) -> Builder {
        self.processes = Some(n);
        self
    }

    /// Runs `f(args)` in each worker when it starts, before its first task
    /// (Python's `initializer` and `initargs`). `args` is encoded now; each
    /// worker, replacements included, gets its own copy, with its own
    /// duplicates of any handles in it. If `f` panics in a worker, or
    /// workers die before it returns (an `exit`, an abort, a signal) three
    /// times in a row with none getting ready in between (one such death
    /// alone may be a stray kill: that worker is replaced), the pool
    /// starts no more workers and every task not yet done fails with
    /// [`TaskError::InitializerFailed`] (Python would start new workers
    /// for ever).
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> Builder
    where
        A: Serialize + DeserializeOwned,
    {
        let runner: wire::InitRunner = wire::run_init::<A>;
        self.init = Some(if !in_executable(f as usize) {
            Err(BuildError::ForeignFunction)
        } else {
            let mut message = wire::header(
                wire::MSG_INIT,
                offset_of(runner as usize),
                offset_of(f as usize),
            );
            let (encoded, fds) = handle::collect(|| Postcard::encode(&args, &mut message));
            encoded
                .map(|()| (message, fds))
                .map_err(|e| BuildError::InitializerEncode {
                    type_name: std::any::type_name::<A>(),
                    message: e.to_string(),
                })
        });
        self
    }

    /// Retires a worker after it has run `n` tasks (chunks), starting a
    /// fresh one in its place (Python's `maxtasksperchild`): for tasks that
    /// leak.
    pub fn max_tasks_per_child(mut self, n: u64) -> Builder {
        self.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// The longest a task may run: past it, its worker is killed and
    /// replaced and the task fails with [`TaskError::TimedOut`]. A chunk of
    /// `n` items may run `n` times this.
    pub fn task_timeout(mut self, timeout: Duration) -> Builder {
        self.task_timeout = Some(timeout);
        self
    }

    /// Names workers `{prefix}-1`, `{prefix}-2`, … (what
    /// [`current_process`](crate::process::current_process) says in them).
    pub fn name(mut self, prefix: impl Into<String>) -> Builder {
        self.name = prefix.into();
        self
    }

    /// Runs a task again, on another worker, when its worker dies under it,
    /// up to `n` more times before it fails with [`TaskError::WorkerDied`].
    /// Only for tasks that may safely run twice. Panics and timeouts are
    /// not retried.
    pub fn retries(mut self, n: u32) -> Builder {
        self.retries = n;
        self
    }

    /// How long tasks wait for a worker while none is running and none
    /// can be started (default 10 s): see "Failures" in the
    /// [module docs](self). Past it, the waiting tasks fail with
    /// [`TaskError::WorkerStart`]; so do tasks submitted while that lasts,
    /// after one more try to start a worker.
    pub fn worker_start_timeout(mut self, timeout: Duration) -> Builder {
        self.worker_start_timeout = timeout;
        self
    }

    /// Starts the workers. A worker that cannot be started now (out of
    /// descriptors, of processes) is an error here; later, the pool
    /// retries instead.
    pub fn build(self) -> Result<Pool, BuildError> {
        let processes = self.processes.unwrap_or_else(cpu_count);
        if processes == 0 {
            return Err(BuildError::NoProcesses);
        }
        let init = self.init.transpose()?;
        let (shared, thread) = dispatch::start(Config {
            processes,
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
            name: self.name,
            retries: self.retries,
            worker_start_timeout: self.worker_start_timeout,
            init,
        })?;
        Ok(Pool {
            shared,
            dispatcher: Mutex::new(Some(thread)),
        })
    }
}

/// Python's default chunk size for `map`: `len / (4 × workers)`, rounded
/// up, at least 1.
fn default_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes.max(1)).max(1)
}

impl Pool {
    /// A pool of `processes` workers with default options; see [`Builder`].
    pub fn new(processes: usize) -> Result<Pool, BuildError> {
        Builder::new().processes(processes).build()
    }

    /// Options for a pool; see [`Builder`].
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// How many workers the pool keeps running.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// Runs `f(arg)` in a worker and waits for its result (Python's
    /// `apply`).
    ///
    /// ```
    /// let pool = mpkit::Pool::new(1)?;
    /// let err = pool.apply(|x: u32| if x == 0 { panic!("zero") } else { x }, 0).unwrap_err();
    /// assert_eq!(err, mpkit::pool::TaskError::Panicked { message: "zero".into() });
    /// assert_eq!(pool.apply(|x: u32| x + 1, 1)?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, arg).get()
    }

    /// Starts `f(arg)` in a worker and returns at once (Python's
    /// `apply_async`); see [`AsyncResult`]. The task runs even if the
    /// `AsyncResult` is dropped.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> AsyncResult<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let mut job = Job::new(Arc::clone(&self.shared), f, false);
        let plan = job.send([arg]);
        AsyncResult::new(job.batch, plan)
    }

    /// Applies `f` to every item, in worker processes, and returns the
    /// results in order (Python's `map`), or the error of the first item
    /// (in order) that failed. The chunk size is Python's default.
    /// Once an item has failed, chunks not yet started are dropped.
    ///
    /// ```
    /// let pool = mpkit::Pool::new(2)?;
    /// let lens = pool.map(|s: String| s.len(), ["a", "bb", "ccc"].map(String::from))?;
    /// assert_eq!(lens, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_chunked(f, items, 0)
    }

    /// [`map`](Self::map) with `chunksize` items per chunk (0: Python's
    /// default; at most 2^20, a larger size is cut to that).
    ///
    /// ```
    /// let pool = mpkit::Pool::new(2)?;
    /// assert_eq!(pool.map_chunked(|x: u8| x / 2, [2, 4, 6], 1)?, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let (job, plans, len) = self.start_map(f, items, chunksize);
        job.results(plans, len)
    }

    /// Like [`map`](Self::map), but returns every item's outcome, in
    /// order, instead of stopping at the first failure.
    ///
    /// ```
    /// let pool = mpkit::Pool::new(2)?;
    /// let all = pool.map_outcomes(|x: i32| if x < 0 { panic!("negative") } else { x }, [1, -1, 2]);
    /// assert_eq!(all[0], Ok(1));
    /// assert!(matches!(&all[1], Err(mpkit::pool::TaskError::Panicked { message }) if message == "negative"));
    /// assert_eq!(all[2], Ok(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_outcomes<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Vec<Result<R, TaskError>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_outcomes_chunked(f, items, 0)
    }

    /// [`map_outcomes`](Self::map_outcomes) with `chunksize` items per
    /// chunk (0: Python's default).
    pub fn map_outcomes_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Vec<Result<R, TaskError>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let (job, plans, len) = self.start_map(f, items, chunksize);
        job.outcomes(plans, len)
    }

    /// Queues every chunk of a map.
    fn start_map<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> (Job<A, R>, Vec<Plan>, usize)
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items = items.into_iter();
        // The length sizes the chunks. An iterator that knows it exactly
        // (a range, a vector) is not copied first; a wrong hint only makes
        // the chunks another size.
        match items.size_hint() {
            (lo, Some(hi)) if lo == hi => self.queue_chunks(f, items, lo, chunksize),
            _ => {
                let items: Vec<A> = collect_items(items);
                let len = items.len();
                self.queue_chunks(f, items.into_iter(), len, chunksize)
            }
        }
    }

    fn queue_chunks<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl Iterator<Item = A>,
        len: usize,
        chunksize: usize,
    ) -> (Job<A, R>, Vec<Plan>, usize)
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let size = match chunksize {
            0 => default_chunksize(len, self.processes()),
            n => n,
        };
        let mut job = Job::new(Arc::clone(&self.shared), f, false);
        let (plans, taken) = job.send_chunks(items, size, len);
        (job, plans, taken)
    }

    /// A lazy map, in order (Python's `imap`, one item per chunk): the
    /// items are read only as results are taken, with a bounded window in
    /// flight; each item's outcome is its own `Result`.
    ///
    /// ```
    /// let pool = mpkit::Pool::new(2)?;
    /// // An endless input: only what is taken is ever computed (plus a window).
    /// let firsts: Vec<u64> = pool
    ///     .imap(|x: u64| x * x, 0..)
    ///     .take(5)
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 1, 4, 9, 16]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap<I, R>(&self, f: fn(I::Item) -> R, items: I) -> Imap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Self::imap) with `chunksize` items per chunk.
    pub fn imap_chunked<I, R>(
        &self,
        f: fn(I::Item) -> R,
        items: I,
        chunksize: usize,
    ) -> Imap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Imap::new(
            Job::new(Arc::clone(&self.shared), f, false),
            items.into_iter(),
            chunksize,
            false,
        )
    }

    /// Like [`imap`](Self::imap), but yields outcomes as they finish
    /// (Python's `imap_unordered`).
    ///
    /// ```
    /// let pool = mpkit::Pool::new(2)?;
    /// let mut squares: Vec<u64> = pool
    ///     .imap_unordered(|x: u64| x * x, 1..=4)
    ///     .collect::<Result<_, _>>()?;
    /// squares.sort();
    /// assert_eq!(squares, [1, 4, 9, 16]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_unordered<I, R>(&self, f: fn(I::Item) -> R, items: I) -> Imap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with `chunksize` items per
    /// chunk.
    pub fn imap_unordered_chunked<I, R>(
        &self,
        f: fn(I::Item) -> R,
        items: I,
        chunksize: usize,
    ) -> Imap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Imap::new(
            Job::new(Arc::clone(&self.shared), f, true),
            items.into_iter(),
            chunksize,
            true,
        )
    }

    /// Takes no more tasks: later submissions fail with
    /// [`TaskError::PoolClosed`]. Queued tasks still run; [`join`](Self::join)
    /// waits for them.
    pub fn close(&self) {
        self.shared.set_phase(Phase::Closed);
    }

    /// Kills the workers now (SIGKILL) and reaps them; every task not
    /// finished fails with [`TaskError::PoolTerminated`]. Returns when no
    /// worker is left. Dropping the pool does this.
    pub fn terminate(&self) {
        self.shared.set_phase(Phase::Terminating);
        self.join();
    }

    /// Waits until the pool has stopped: after [`close`](Self::close), when
    /// every queued task has finished and the workers have exited; after
    /// [`terminate`](Self::terminate), when the workers are reaped. A pool
    /// still open is closed first (Python refuses instead).
    ///
    /// ```
    /// let pool = mpkit::Pool::new(2)?;
    /// let r = pool.apply_async(|x: u8| x + 1, 1);
    /// pool.close();
    /// pool.join();
    /// assert_eq!(r.get()?, 2);
    /// assert_eq!(pool.apply(|x: u8| x, 0), Err(mpkit::pool::TaskError::PoolClosed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) {
        self.shared.set_phase(Phase::Closed);
        // The lock is held while waiting: a second caller (a `terminate`
        // from another thread) returns only once the workers are reaped.
        let mut dispatcher = self.dispatcher.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(thread) = dispatcher.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pool {
    /// Terminates the pool: workers are killed and reaped.
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::default_chunksize;

    #[test]
    fn handles_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<super::Pool>();
        send_sync::<super::AsyncResult<String>>();
        send_sync::<super::Executor>();
        send_sync::<super::Task<String>>();
        fn send<T: Send>() {}
        send::<super::Imap<std::ops::Range<u64>, u64>>();
    }

    #[test]
    fn chunksize_is_pythons() {
        // divmod(len, 4 * workers), plus one when there is a remainder.
        assert_eq!(default_chunksize(100_000, 2), 12_500);
        assert_eq!(default_chunksize(10, 4), 1);
        assert_eq!(default_chunksize(17, 1), 5);
        assert_eq!(default_chunksize(0, 3), 1);
    }
}
