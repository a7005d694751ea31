//! [`RedisPool`] and its builder: the Pool API, with the work done by
//! workers on any host.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{self, GROUP, Inner, Phase};
use super::remote_fn::RemoteFn;
use super::{Keys, consumer_name, scripts};
use crate::pool::{AsyncResult, Batch, Imap, Job, Task, TaskError};
use crate::redis_queue::RedisOpenError;
use crate::redis_queue::conn::Conn;

/// The most items [`RedisPool::map`]'s default chunk size puts in one
/// chunk: a chunk is what a worker that dies loses, and runs again.
const CHUNK_MAX: usize = 1024;
/// The fewest workers the default chunk size assumes (workers may join
/// after the map started).
const WORKERS_ASSUMED: usize = 4;

/// Settings for a [`RedisPool`]: `RedisPool::builder(url, pool)`.
///
/// ```no_run
/// // Needs a Redis server at the URL.
/// use std::time::{Duration, Instant};
/// use mpkit::redis_pool::RedisPool;
///
/// let pool = RedisPool::builder("redis://127.0.0.1:6379", "default")
///     .visibility_timeout(Duration::from_secs(60))
///     .retries(2)
///     .io_timeout(Duration::from_secs(2))
///     .retry_for(Duration::from_secs(30))
///     .lease(Duration::from_secs(10))
///     .max_in_flight(16)
///     .connect()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisPoolBuilder {
    url: String,
    pool: String,
    visibility: Duration,
    retries: u32,
    io_timeout: Duration,
    retry_for: Duration,
    lease: Duration,
    max_in_flight: Option<usize>,
}

impl RedisPoolBuilder {
    /// How long a task (a chunk) may run before it is delivered to another
    /// worker (default 60 s): a worker that died, hangs, or was cut off
    /// from Redis holds it that long. Belongs to the pool: the first
    /// caller to connect records it, later ones use it
    /// ([`RedisPool::visibility_timeout`]); a caller that finds it
    /// overwritten by another client with something that is not a
    /// number records its own (see [the pool's settings](super#the-pools-settings)).
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility = timeout.clamp(Duration::from_millis(1), Duration::from_millis(1 << 53));
        self
    }

    /// How many times a task is delivered again after its worker was lost
    /// (default 2): a task is delivered at most `retries + 1` times, then
    /// fails with [`TaskError::WorkerLost`]. Its side effects may happen
    /// that many times.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// How long one reply of the server may take, beyond any time it was
    /// asked to block, and how long connecting may take (default 5 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long the pool keeps retrying a server it cannot reach (default
    /// 10 s): a submission then fails its task, and the collector fails
    /// every task waiting for a result, with [`TaskError::Unavailable`].
    pub fn retry_for(mut self, period: Duration) -> Self {
        self.retry_for = period;
        self
    }

    /// How long this caller counts as alive without renewing its lease
    /// (default 10 s; it renews it several times a second). Workers skip
    /// the tasks of a caller whose lease expired; if that happens to a
    /// live caller (stopped, or cut off, for that long), its waiting tasks
    /// fail with [`TaskError::Unavailable`].
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// How many chunks an `imap` keeps queued or running at once (default:
    /// twice the workers registered when the pool connects, at least 8).
    pub fn max_in_flight(mut self, chunks: usize) -> Self {
        self.max_in_flight = Some(chunks.max(1));
        self
    }

    /// Connects: creates the pool's stream and group if missing, starts
    /// this caller's lease and its collector thread.
    pub fn connect(self) -> Result<RedisPool, RedisOpenError> {
        let client = redis::Client::open(self.url.as_str()).map_err(RedisOpenError::Url)?;
        let conn = Conn::new(client.clone(), self.io_timeout, self.retry_for);
        let keys = Keys::new(&self.pool);
        let caller = consumer_name();
        let visibility: String = conn.call(None, Duration::ZERO, |con| {
            scripts::OPEN
                .key(&keys.tasks)
                .key(&keys.meta)
                .key(keys.caller(&caller))
                .arg(GROUP)
                .arg(self.visibility.as_millis() as u64)
                .arg(self.lease.as_millis() as u64)
                .invoke(con)
        })?;
        // Always a valid one: the script records this caller's otherwise.
        let visibility = scripts::visibility_ms(visibility.as_bytes())
            .map_or(self.visibility, Duration::from_millis);
        let window = match self.max_in_flight {
            Some(n) => n,
            None => {
                let workers: u64 = conn.call(None, Duration::ZERO, |con| {
                    scripts::WORKERS.key(&keys.workers).invoke(con)
                })?;
                (2 * workers as usize).max(8)
            }
        };
        let inner = Arc::new(Inner::new(
            conn,
            self.url,
            keys,
            caller,
            self.lease,
            visibility,
            self.retries,
            window,
        ));
        let mut threads = Vec::new();
        for (name, submitter) in [("mpkit-redis-pool", false), ("mpkit-redis-submit", true)] {
            let conn = Conn::new(client.clone(), self.io_timeout, self.retry_for);
            let for_thread = Arc::clone(&inner);
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || client::run_or_fail(for_thread, conn, submitter));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    inner.stop();
                    threads.into_iter().for_each(|t| drop(t.join()));
                    return Err(RedisOpenError::Unavailable(e.into()));
                }
            }
        }
        Ok(RedisPool {
            inner,
            threads: Mutex::new(threads),
            pool: self.pool,
        })
    }
}

/// A pool whose workers run on any host, through a Redis server: the
/// [`Pool`](crate::Pool) API for [`RemoteFn`]s. See the
/// [module docs](super) for its guarantees.
pub struct RedisPool {
    inner: Arc<Inner>,
    /// The collector and the submitter.
    threads: Mutex<Vec<JoinHandle<()>>>,
    pool: String,
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("pool", &self.pool)
            .field("caller", &self.inner.caller)
            .field("visibility", &self.inner.visibility)
            .field("retries", &self.inner.retries)
            .finish()
    }
}

/// Python's chunk size, over the workers there are (at least
/// [`WORKERS_ASSUMED`]), at most [`CHUNK_MAX`].
fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers.max(WORKERS_ASSUMED))
        .clamp(1, CHUNK_MAX)
}

impl RedisPool {
    /// Settings for a caller of pool `pool` on the server at `url`
    /// (`redis://host:port/db`, `redis+unix:///path`).
    pub fn builder(url: &str, pool: &str) -> RedisPoolBuilder {
        RedisPoolBuilder {
            url: url.to_string(),
            pool: pool.to_string(),
            visibility: Duration::from_secs(60),
            retries: 2,
            io_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(10),
            lease: Duration::from_secs(10),
            max_in_flight: None,
        }
    }

    /// Connects to pool `pool` with the default settings.
    ///
    /// ```no_run
    /// // Needs a Redis server at the URL.
    /// use mpkit::redis_pool::RedisPool;
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// assert_eq!(pool.name(), "default");
    /// assert_eq!(pool.url(), "redis://127.0.0.1:6379");
    /// println!("caller {} (visibility {:?})", pool.caller(), pool.visibility_timeout());
    /// assert_eq!(pool.malformed_results(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(url: &str, pool: &str) -> Result<RedisPool, RedisOpenError> {
        Self::builder(url, pool).connect()
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.pool
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// This caller's name (its lease is the key `mpkit:pool:{P}:caller:`
    /// and this name).
    pub fn caller(&self) -> &str {
        &self.inner.caller
    }

    /// The visibility timeout in force (the first caller's).
    pub fn visibility_timeout(&self) -> Duration {
        self.inner.visibility
    }

    /// How many worker processes are registered now (each renews its
    /// registration every 5 s; one that stopped doing so for 15 s is not
    /// counted).
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// println!("{} worker processes", pool.workers()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn workers(&self) -> Result<usize, RedisOpenError> {
        self.workers_by(None)
    }

    fn workers_by(&self, deadline: Option<Instant>) -> Result<usize, RedisOpenError> {
        let n: u64 = self.inner.conn.call(deadline, Duration::ZERO, |con| {
            scripts::WORKERS.key(&self.inner.keys.workers).invoke(con)
        })?;
        Ok(n as usize)
    }

    /// How many result entries the collector could not read (not shaped
    /// as this pool writes them): none are dropped without being counted
    /// here. A result that names its task but is malformed fails that
    /// task instead.
    pub fn malformed_results(&self) -> u64 {
        self.inner.malformed.load(Ordering::Relaxed)
    }

    /// A call of `f`; a `background` one's sends return at once (its
    /// chunks go through the submitter thread).
    fn job<A, R>(&self, f: &RemoteFn<A, R>, unordered: bool, background: bool) -> Job<A, R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let batch = Batch::new(unordered);
        let sink = self.inner.call(f.name(), f.signature(), background);
        Job::remote(sink, batch)
    }

    /// Runs `f(arg)` on a worker and waits for its result (Python's
    /// `apply`).
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// assert_eq!(pool.apply(&DOUBLE, 21)?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply<A, R>(&self, f: &RemoteFn<A, R>, arg: A) -> Result<R, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, arg).get()
    }

    /// Starts `f(arg)` on a worker and returns at once (Python's
    /// `apply_async`); the task runs even if the result is dropped.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// let r = pool.apply_async(&DOUBLE, 21);
    /// let r = r.get_timeout(std::time::Duration::from_secs(5)).map_err(|_| "not yet")?;
    /// assert_eq!(r?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_async<A, R>(&self, f: &RemoteFn<A, R>, arg: A) -> AsyncResult<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let mut job = self.job(f, false, true);
        let plan = job.send([arg]);
        AsyncResult::new(job.batch, plan)
    }

    /// Starts `f(arg)` on a worker and returns a [`Task`] (Python's
    /// `Executor.submit`), for [`as_completed`](crate::pool::as_completed)
    /// and [`wait`](crate::pool::wait). A task handed to Redis cannot be
    /// taken back: [`Task::cancel`] returns false.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// let tasks: Vec<_> = (1..=3).map(|i| pool.submit(&DOUBLE, i)).collect();
    /// let mut got: Vec<u64> = Vec::new();
    /// for task in mpkit::pool::as_completed(tasks, None) {
    ///     got.push(task?.result()?);
    /// }
    /// got.sort();
    /// assert_eq!(got, [2, 4, 6]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit<A, R>(&self, f: &RemoteFn<A, R>, arg: A) -> Task<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Task::new(self.apply_async(f, arg))
    }

    /// Applies `f` to every item on the workers and returns the results
    /// in order (Python's `map`), or the first failure (in order). The
    /// chunk size is Python's (`len / (4 × workers)`, rounded up) over
    /// the workers registered now, at least 4, at most 1024 items.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// assert_eq!(pool.map(&DOUBLE, 1..=3)?, [2, 4, 6]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<A, R>(
        &self,
        f: &RemoteFn<A, R>,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_chunked(f, items, 0)
    }

    /// [`map`](Self::map) with `chunksize` items per chunk (0: the
    /// default).
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// assert_eq!(pool.map_chunked(&DOUBLE, 1..=3, 1)?, [2, 4, 6]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_chunked<A, R>(
        &self,
        f: &RemoteFn<A, R>,
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

    /// Like [`map`](Self::map), but every item's outcome, in order.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// let all = pool.map_outcomes(&DOUBLE, 1..=3);
    /// assert_eq!(all, [Ok(2), Ok(4), Ok(6)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_outcomes<A, R>(
        &self,
        f: &RemoteFn<A, R>,
        items: impl IntoIterator<Item = A>,
    ) -> Vec<Result<R, TaskError>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_outcomes_chunked(f, items, 0)
    }

    /// [`map_outcomes`](Self::map_outcomes) with `chunksize` items per
    /// chunk (0: the default).
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// assert_eq!(pool.map_outcomes_chunked(&DOUBLE, [1], 1), [Ok(2)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_outcomes_chunked<A, R>(
        &self,
        f: &RemoteFn<A, R>,
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

    fn start_map<A, R>(
        &self,
        f: &RemoteFn<A, R>,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> (Job<A, R>, Vec<crate::pool::Plan>, usize)
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let items: Vec<A> = crate::pool::collect_items(items.into_iter());
        let size = match chunksize {
            // Unknown when the server is away (one attempt: the
            // submissions retry, and say).
            0 => default_chunksize(
                items.len(),
                self.workers_by(Some(Instant::now())).unwrap_or(0),
            ),
            n => n,
        };
        let mut job = self.job(f, false, false);
        let len = items.len();
        let (plans, taken) = job.send_chunks(items.into_iter(), size, len);
        (job, plans, taken)
    }

    /// A lazy map, in order (Python's `imap`, one item per chunk): items
    /// are read only as results are taken, with at most
    /// [`max_in_flight`](RedisPoolBuilder::max_in_flight) chunks in Redis
    /// at once, so an endless input fills neither memory nor Redis.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// // An endless input: only a window of chunks is ever in Redis.
    /// let firsts: Vec<u64> = pool.imap(&DOUBLE, 0..).take(3).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap<I, R>(&self, f: &RemoteFn<I::Item, R>, items: I) -> Imap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Self::imap) with `chunksize` items per chunk.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// let all: Vec<u64> = pool.imap_chunked(&DOUBLE, 0..100, 10).collect::<Result<_, _>>()?;
    /// assert_eq!(all.len(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_chunked<I, R>(
        &self,
        f: &RemoteFn<I::Item, R>,
        items: I,
        chunksize: usize,
    ) -> Imap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Imap::new(
            self.job(f, false, true),
            items.into_iter(),
            chunksize,
            false,
        )
    }

    /// Like [`imap`](Self::imap), but outcomes as they finish (Python's
    /// `imap_unordered`).
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// let mut all: Vec<u64> = pool.imap_unordered(&DOUBLE, 1..=3).collect::<Result<_, _>>()?;
    /// all.sort();
    /// assert_eq!(all, [2, 4, 6]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_unordered<I, R>(&self, f: &RemoteFn<I::Item, R>, items: I) -> Imap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with `chunksize` items per
    /// chunk.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// let n = pool.imap_unordered_chunked(&DOUBLE, 0..100, 10).count();
    /// assert_eq!(n, 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_unordered_chunked<I, R>(
        &self,
        f: &RemoteFn<I::Item, R>,
        items: I,
        chunksize: usize,
    ) -> Imap<I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        Imap::new(self.job(f, true, true), items.into_iter(), chunksize, true)
    }

    /// Takes no more tasks: later ones fail with
    /// [`TaskError::PoolClosed`]. Tasks submitted still run;
    /// [`join`](Self::join) waits for their results.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// let r = pool.apply_async(&DOUBLE, 1);
    /// pool.close();
    /// assert_eq!(pool.apply(&DOUBLE, 2), Err(mpkit::pool::TaskError::PoolClosed));
    /// pool.join();
    /// assert_eq!(r.get()?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        let mut st = self.inner.lock();
        if st.phase == Phase::Open {
            st.phase = Phase::Closed;
        }
    }

    /// Closes the pool and waits until every task submitted has its
    /// result (or failed), then stops the collector.
    pub fn join(&self) {
        self.close();
        let mut st = self.inner.lock();
        while !Inner::quiet(&st) {
            st = self
                .inner
                .idle
                .wait_timeout(st, Duration::from_millis(250))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(st);
        self.stop();
    }

    /// Stops at once: every task not finished fails with
    /// [`TaskError::PoolTerminated`], and so does every later one; the
    /// tasks no worker finished are deleted from the stream (one a worker
    /// is running finishes there, its result unwritten), and so are this
    /// caller's lease and results. Dropping the pool does this.
    /// ```no_run
    /// // Needs a Redis server at the URL, and workers that run DOUBLE.
    /// use mpkit::redis_pool::{RedisPool, RemoteFn};
    /// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
    /// let pool = RedisPool::connect("redis://127.0.0.1:6379", "default")?;
    /// let r = pool.apply_async(&DOUBLE, 1);
    /// pool.terminate();
    /// // Its result, if it had not come yet, never will.
    /// assert!(matches!(r.get(), Ok(2) | Err(mpkit::pool::TaskError::PoolTerminated)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn terminate(&self) {
        self.inner.lock().phase = Phase::Terminated;
        // The tasks of the chunks failed here, taken in the same step:
        // one whose submission is under way finds its chunk gone once it
        // is added, and becomes an orphan.
        let mut ids = self.inner.fail_all(&TaskError::PoolTerminated);
        self.stop();
        // Orphans (and the collector's deletions it could not make): the
        // submitter and the collector have stopped, and a task added
        // after this (a `map` in another thread) is deleted by its thread.
        ids.extend(self.inner.leave());
        let inner = &self.inner;
        // Best effort, bounded: a server that is away lets the lease
        // expire, and workers then skip these tasks.
        let deadline = Instant::now() + inner.conn.io_timeout;
        let _ = inner.conn.call(Some(deadline), Duration::ZERO, |con| {
            scripts::LEAVE_CALLER
                .key(&inner.keys.tasks)
                .key(inner.keys.caller(&inner.caller))
                .key(inner.keys.results(&inner.caller))
                .arg(&ids)
                .invoke::<()>(con)
        });
    }

    fn stop(&self) {
        self.inner.stop();
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for thread in threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for RedisPool {
    /// [`terminate`](RedisPool::terminate).
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::default_chunksize;

    #[test]
    fn chunksize_is_pythons_over_at_least_four_workers_and_bounded() {
        assert_eq!(default_chunksize(100_000, 2), 1024);
        assert_eq!(default_chunksize(1000, 2), 63);
        assert_eq!(default_chunksize(1000, 10), 25);
        assert_eq!(default_chunksize(0, 3), 1);
    }

    #[test]
    fn handles_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<super::RedisPool>();
    }
}
