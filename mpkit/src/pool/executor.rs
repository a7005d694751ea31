//! [`Executor`]: a process pool with Python's `concurrent.futures`
//! contract (`ProcessPoolExecutor`): [`submit`](Executor::submit) gives a
//! [`Task`] to wait on, cancel, or [`wait`](crate::net::wait) on together
//! with processes and connections; [`as_completed`] and [`wait`] watch
//! many tasks at once.
//!
//! A task is one chunk of one item on the pool underneath, so everything
//! the [pool docs](super) say about failures holds for each task. Waiting
//! on many tasks sleeps until one of them is delivered (each task tells
//! the waiters registered on it): nothing polls.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AsyncResult;
use super::batch::{Batch, Job, Watch};
use super::{BuildError, Builder, Pool, TaskError};
use crate::net::Waitable;

/// A pool of worker processes with Python's
/// `concurrent.futures.ProcessPoolExecutor` interface.
///
/// Dropping it is leaving Python's `with ProcessPoolExecutor() as ex:`
/// block: [`shutdown(true, false)`](Self::shutdown), which waits for every
/// submitted task to finish.
///
/// ```
/// use mpkit::pool::Executor;
///
/// let ex = Executor::new(2)?;
/// let task = ex.submit(|x: u64| x.pow(2), 12);
/// assert_eq!(task.result()?, 144);
/// let squares: Vec<u64> = ex.map(|x: u64| x * x, 1..=3, None).collect::<Result<_, _>>()?;
/// assert_eq!(squares, [1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Executor {
    pool: Pool,
    /// Submitted tasks that may not have started, for
    /// [`shutdown`](Self::shutdown) to cancel: weak, so that finished,
    /// dropped ones go.
    pending: Mutex<PendingList>,
}

struct PendingList {
    tasks: Vec<(Weak<Batch>, u64)>,
    /// The length at which finished and started entries are next pruned.
    prune_at: usize,
}

/// How many entries the pending list holds before it is first pruned.
const PRUNE_FIRST: usize = 64;

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("processes", &self.pool.processes())
            .finish()
    }
}

impl Builder {
    /// Starts the workers as an [`Executor`] (the same options as a
    /// [`Pool`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let ex = mpkit::Pool::builder()
    ///     .processes(2)
    ///     .task_timeout(Duration::from_secs(60))
    ///     .build_executor()?;
    /// assert_eq!(ex.submit(|x: i8| -x, 5).result()?, -5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build_executor(self) -> Result<Executor, BuildError> {
        Ok(Executor {
            pool: self.build()?,
            pending: Mutex::new(PendingList {
                tasks: Vec::new(),
                prune_at: PRUNE_FIRST,
            }),
        })
    }
}

impl Executor {
    /// An executor of `processes` workers with default options (Python's
    /// `ProcessPoolExecutor(max_workers)`).
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// assert_eq!(ex.processes(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(processes: usize) -> Result<Executor, BuildError> {
        Builder::new().processes(processes).build_executor()
    }

    /// Options for an executor: a pool [`Builder`], finished with
    /// [`build_executor`](Builder::build_executor).
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::builder().processes(1).name("ex").build_executor()?;
    /// let name = ex.submit(|()| mpkit::process::current_process().name().to_string(), ());
    /// assert_eq!(name.result()?, "ex-1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// How many workers the executor keeps running.
    ///
    /// ```
    /// assert_eq!(mpkit::pool::Executor::new(2)?.processes(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn processes(&self) -> usize {
        self.pool.processes()
    }

    fn pending(&self) -> MutexGuard<'_, PendingList> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `f(arg)` in a worker and returns at once (Python's
    /// `submit`). The task runs even if the [`Task`] is dropped. After
    /// [`shutdown`](Self::shutdown) the task fails with
    /// [`TaskError::PoolClosed`] (Python raises instead).
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::new(2)?;
    /// let tasks: Vec<_> = (0..4).map(|i| ex.submit(|x: u32| x * 10, i)).collect();
    /// let mut total = 0;
    /// for task in tasks {
    ///     total += task.result()?;
    /// }
    /// assert_eq!(total, 60);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Task<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let mut job = Job::new(Arc::clone(&self.pool.shared), f, false);
        // Listed before it is queued: a shutdown that closes the pool and
        // then cancels what is listed misses no task queued before the
        // close.
        {
            let mut pending = self.pending();
            if pending.tasks.len() >= pending.prune_at {
                pending.tasks.retain(|(batch, _)| {
                    batch
                        .upgrade()
                        .is_some_and(|b| !b.started() && !b.cancelled())
                });
                pending.prune_at = (pending.tasks.len() * 2).max(PRUNE_FIRST);
            }
            pending.tasks.push((Arc::downgrade(&job.batch), 0));
        }
        let plan = job.send([arg]);
        Task {
            result: AsyncResult::new(job.batch, plan),
        }
    }

    /// Submits `f(item)` for every item now, and returns an iterator over
    /// their outcomes in order (Python's `Executor.map`). With a
    /// `timeout`, an outcome not ready that long after the items were
    /// submitted is
    /// [`MapError::Timeout`], after which the iterator ends. Tasks not
    /// started when the iterator ends (a timeout) or is dropped are
    /// cancelled, as in Python. Each item is its own task: for many cheap
    /// items, [`Pool::map`] sends them in chunks.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mpkit::pool::MapError;
    ///
    /// let ex = mpkit::pool::Executor::new(2)?;
    /// let lens: Vec<usize> = ex
    ///     .map(|s: String| s.len(), ["a", "bb"].map(String::from), Some(Duration::from_secs(60)))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(lens, [1, 2]);
    ///
    /// // A timeout that passes ends the iteration.
    /// let mut slow = ex.map(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), [60_000], Some(Duration::ZERO));
    /// assert!(matches!(slow.next(), Some(Err(MapError::Timeout))));
    /// assert!(slow.next().is_none());
    /// ex.terminate(); // rather than wait a minute for the task a worker took
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        timeout: Option<Duration>,
    ) -> MapResults<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let tasks = items.into_iter().map(|a| self.submit(f, a)).collect();
        // Counted from when every item is submitted, as Python does.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        MapResults { tasks, deadline }
    }

    /// Takes no more tasks (later ones fail with
    /// [`TaskError::PoolClosed`]); with `cancel_pending`, cancels every
    /// submitted task that no worker has taken yet (they fail with
    /// [`TaskError::Cancelled`]); with `wait`, returns once every other
    /// task has finished and the workers have exited (Python's
    /// `shutdown(wait, cancel_futures)`). Calling it again is harmless.
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let task = ex.submit(|x: u8| x + 1, 1);
    /// ex.shutdown(true, false);
    /// assert!(task.done());
    /// assert_eq!(task.result()?, 2);
    /// assert_eq!(ex.submit(|x: u8| x, 0).result(), Err(mpkit::pool::TaskError::PoolClosed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_pending: bool) {
        self.pool.close();
        if cancel_pending {
            let listed = std::mem::take(&mut self.pending().tasks);
            for (batch, seq) in listed {
                if let Some(batch) = batch.upgrade() {
                    batch.cancel_unstarted(seq);
                }
            }
        }
        if wait {
            self.pool.join();
        }
    }

    /// Kills the workers now (SIGKILL) and reaps them; every task not
    /// finished fails with [`TaskError::PoolTerminated`], and so does every
    /// later one. Python's executor has no such
    /// call: this is [`Pool::terminate`], for work that must not be
    /// waited for.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let stuck = ex.submit(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 3_600_000);
    /// ex.terminate();
    /// assert_eq!(stuck.result(), Err(mpkit::pool::TaskError::PoolTerminated));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn terminate(&self) {
        self.pool.terminate();
    }
}

impl Drop for Executor {
    /// Python's `with` block ending: [`shutdown(true, false)`](Self::shutdown).
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

/// A task submitted to an [`Executor`] (Python's `concurrent.futures.Future`).
///
/// ```
/// let ex = mpkit::pool::Executor::new(1)?;
/// let task = ex.submit(|x: u64| x + 1, 41);
/// assert!(!task.cancelled());
/// assert_eq!(task.result()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the task runs anyway; the Task is how to see its result"]
pub struct Task<R> {
    result: AsyncResult<R>,
}

impl<R> fmt::Debug for Task<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("done", &self.done())
            .field("cancelled", &self.cancelled())
            .finish()
    }
}

impl<R> Task<R> {
    /// The task whose result `result` is (a remote pool's submissions).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(result: AsyncResult<R>) -> Task<R> {
        Task { result }
    }

    /// Whether the task has finished, however it ended (cancelled
    /// included).
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let task = ex.submit(|x: u8| x, 1);
    /// ex.shutdown(true, false);
    /// assert!(task.done());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn done(&self) -> bool {
        self.result.ready_now()
    }

    /// Whether a worker has taken the task and it has not finished. A task
    /// whose worker died and that waits to run again
    /// ([`Builder::retries`]) counts as running.
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let task = ex.submit(|x: u8| x, 1);
    /// task.wait(None);
    /// assert!(!task.running());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn running(&self) -> bool {
        let (batch, _) = self.result.slot();
        batch.started() && !batch.cancelled() && !self.done()
    }

    /// Whether the task was cancelled.
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let task = ex.submit(|x: u8| x, 1);
    /// assert!(!task.cancelled());
    /// // True if no worker had taken it yet.
    /// let cancelled = task.cancel();
    /// assert_eq!(task.cancelled(), cancelled);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancelled(&self) -> bool {
        self.result.slot().0.cancelled()
    }

    /// Cancels the task if no worker has taken it yet: it then never runs
    /// and its result is [`TaskError::Cancelled`]. Returns whether the task
    /// is cancelled (true if it already was); false once a worker has taken
    /// it or it has finished (Python's `Future.cancel`).
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let task = ex.submit(|x: u8| x, 1);
    /// if task.cancel() {
    ///     assert_eq!(task.result(), Err(mpkit::pool::TaskError::Cancelled));
    /// } else {
    ///     assert_eq!(task.result(), Ok(1)); // a worker had taken it
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) -> bool {
        let (batch, seq) = self.result.slot();
        batch.cancel_unstarted(seq)
    }
}

impl<R: DeserializeOwned> Task<R> {
    /// Blocks until the task has finished, or `timeout` passed (`None`:
    /// for ever); returns whether it finished.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let task = ex.submit(|x: u8| x, 1);
    /// assert!(task.wait(Some(Duration::from_secs(60))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        match timeout {
            None => {
                self.result.wait();
                true
            }
            Some(t) => self.result.wait_timeout(t),
        }
    }

    /// Waits for the task and returns its result, or why it has none
    /// ([`TaskError::Cancelled`] if it was cancelled).
    ///
    /// ```
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let err = ex.submit(|_: ()| -> u8 { panic!("no") }, ()).result().unwrap_err();
    /// assert_eq!(err, mpkit::pool::TaskError::Panicked { message: "no".into() });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn result(self) -> Result<R, TaskError> {
        self.result.get()
    }

    /// Like [`result`](Self::result), but gives up after `timeout`, handing
    /// the task back (`Err`) so it can be waited on again or cancelled
    /// (Python raises `TimeoutError`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let slow = ex.submit(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000);
    /// let slow = slow.result_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(!slow.done());
    /// ex.terminate(); // rather than wait a minute for it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn result_timeout(self, timeout: Duration) -> Result<Result<R, TaskError>, Task<R>> {
        self.result
            .get_timeout(timeout)
            .map_err(|result| Task { result })
    }

    /// [`result_timeout`](Self::result_timeout) against a deadline (`None`:
    /// none).
    fn result_by(self, deadline: Option<Instant>) -> Result<Result<R, TaskError>, Task<R>> {
        match deadline {
            None => Ok(self.result()),
            Some(d) => self.result_timeout(d.saturating_duration_since(Instant::now())),
        }
    }

    /// Whether the task finished with an error that is not a cancel
    /// (Python's `exception() is not None`), read without decoding.
    fn failed(&self) -> bool {
        !self.cancelled() && self.result.successful() == Some(false)
    }
}

/// Readable once the task has finished, as for
/// [`AsyncResult`](super::AsyncResult): one [`net::wait`](crate::net::wait)
/// waits for tasks, processes and connections together.
///
/// ```
/// use std::time::Duration;
/// let ex = mpkit::pool::Executor::new(1)?;
/// let (_tx, rx) = mpkit::pipe(true)?;
/// let task = ex.submit(|x: u32| x + 1, 1);
/// assert_eq!(mpkit::net::wait(&[&rx, &task], Some(Duration::from_secs(30)))?, [1]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<R> Waitable for Task<R> {
    fn ready_fd(&self) -> io::Result<BorrowedFd<'_>> {
        self.result.ready_fd()
    }

    fn ready_now(&self) -> bool {
        self.result.ready_now()
    }
}

/// Why an outcome of [`Executor::map`] is missing.
///
/// ```
/// use mpkit::pool::{Executor, MapError, TaskError};
///
/// let ex = Executor::new(1)?;
/// match ex.map(|x: u8| 10 / x, [0], None).next() {
///     Some(Err(MapError::Task(TaskError::Panicked { message }))) => assert!(message.contains("divide")),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The item's task failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The map's timeout passed before this outcome was ready (Python's
    /// `TimeoutError`); the tasks not started were cancelled.
    #[error("the map's timeout passed before the outcome was ready")]
    Timeout,
}

/// The outcomes of [`Executor::map`], in order. Dropping it cancels the
/// tasks no worker has taken.
///
/// ```
/// let ex = mpkit::pool::Executor::new(2)?;
/// let mut outcomes = ex.map(|x: i32| 100 / x, [1, 0, 4], None);
/// assert_eq!(outcomes.next(), Some(Ok(100)));
/// assert!(matches!(outcomes.next(), Some(Err(mpkit::pool::MapError::Task(_)))));
/// assert_eq!(outcomes.next(), Some(Ok(25)));
/// assert_eq!(outcomes.next(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping it cancels the tasks not started"]
pub struct MapResults<R> {
    tasks: VecDeque<Task<R>>,
    deadline: Option<Instant>,
}

impl<R> fmt::Debug for MapResults<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapResults")
            .field("left", &self.tasks.len())
            .finish()
    }
}

impl<R> MapResults<R> {
    fn cancel_rest(&mut self) {
        for task in self.tasks.drain(..) {
            task.cancel();
        }
    }
}

impl<R: DeserializeOwned> Iterator for MapResults<R> {
    type Item = Result<R, MapError>;

    fn next(&mut self) -> Option<Result<R, MapError>> {
        let task = self.tasks.pop_front()?;
        match task.result_by(self.deadline) {
            Ok(outcome) => Some(outcome.map_err(MapError::Task)),
            Err(task) => {
                task.cancel();
                self.cancel_rest();
                Some(Err(MapError::Timeout))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.tasks.len().min(1), Some(self.tasks.len()))
    }
}

impl<R> Drop for MapResults<R> {
    fn drop(&mut self) {
        self.cancel_rest();
    }
}

/// Where the tasks one call waits on report: the keys (positions) of the
/// tasks finished, in order of arrival.
struct Waiter {
    finished: Mutex<VecDeque<usize>>,
    arrived: Condvar,
}

impl Watch for Waiter {
    fn arrived(&self, key: usize) {
        self.lock().push_back(key);
        self.arrived.notify_one();
    }
}

impl Waiter {
    /// A waiter told about each of `tasks`, keyed by position.
    fn on<R>(tasks: &[Task<R>]) -> Arc<Waiter> {
        let waiter = Arc::new(Waiter {
            finished: Mutex::new(VecDeque::new()),
            arrived: Condvar::new(),
        });
        for (key, task) in tasks.iter().enumerate() {
            let (batch, seq) = task.result.slot();
            let watch: Weak<dyn Watch> = Arc::downgrade(&waiter) as Weak<dyn Watch>;
            batch.watch(seq, watch, key);
        }
        waiter
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<usize>> {
        self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next finished task's key, waiting up to `deadline`.
    fn next(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut finished = self.lock();
        loop {
            if let Some(key) = finished.pop_front() {
                return Some(key);
            }
            finished = match deadline {
                None => self
                    .arrived
                    .wait(finished)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.arrived
                        .wait_timeout(finished, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Yields `tasks` as they finish (however they end, cancelled included),
/// those already finished first (Python's `as_completed`). With a
/// `timeout`, once it has passed (counted from this call) with tasks left,
/// the iterator yields one [`AsCompletedTimeout`] holding them, and ends.
///
/// ```
/// use std::time::Duration;
/// use mpkit::pool::{as_completed, Executor};
///
/// let ex = Executor::new(2)?;
/// let tasks = (1..=3).map(|i| ex.submit(|x: u64| x * x, i)).collect::<Vec<_>>();
/// let mut squares = Vec::new();
/// for task in as_completed(tasks, Some(Duration::from_secs(60))) {
///     squares.push(task?.result()?);
/// }
/// squares.sort();
/// assert_eq!(squares, [1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn as_completed<R: DeserializeOwned>(
    tasks: impl IntoIterator<Item = Task<R>>,
    timeout: Option<Duration>,
) -> AsCompleted<R> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let tasks: Vec<Task<R>> = tasks.into_iter().collect();
    let waiter = Waiter::on(&tasks);
    AsCompleted {
        left: tasks.len(),
        tasks: tasks.into_iter().map(Some).collect(),
        waiter,
        deadline,
    }
}

/// The iterator of [`as_completed`].
///
/// ```
/// let ex = mpkit::pool::Executor::new(1)?;
/// let mut it = mpkit::pool::as_completed([ex.submit(|x: u8| x, 7)], None);
/// assert_eq!(it.next().unwrap()?.result()?, 7);
/// assert!(it.next().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "an iterator does nothing unless consumed"]
pub struct AsCompleted<R> {
    tasks: Vec<Option<Task<R>>>,
    left: usize,
    waiter: Arc<Waiter>,
    deadline: Option<Instant>,
}

impl<R> fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

impl<R: DeserializeOwned> Iterator for AsCompleted<R> {
    type Item = Result<Task<R>, AsCompletedTimeout<R>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        loop {
            let Some(key) = self.waiter.next(self.deadline) else {
                self.left = 0;
                let pending = self.tasks.drain(..).flatten().collect();
                return Some(Err(AsCompletedTimeout { pending }));
            };
            if let Some(task) = self.tasks.get_mut(key).and_then(Option::take) {
                self.left -= 1;
                return Some(Ok(task));
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left.min(1), Some(self.left))
    }
}

/// [`as_completed`]'s timeout passed (Python's `TimeoutError`): the tasks
/// not finished by then, handed back.
///
/// ```
/// use std::time::Duration;
/// let ex = mpkit::pool::Executor::new(1)?;
/// let slow = ex.submit(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000);
/// let mut it = mpkit::pool::as_completed([slow], Some(Duration::ZERO));
/// let timeout = it.next().unwrap().unwrap_err();
/// assert_eq!(timeout.pending.len(), 1);
/// assert!(it.next().is_none());
/// ex.terminate(); // rather than wait a minute for it
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AsCompletedTimeout<R> {
    /// The tasks not finished when the timeout passed.
    pub pending: Vec<Task<R>>,
}

impl<R> AsCompletedTimeout<R> {
    /// The tasks not finished when the timeout passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ex = mpkit::pool::Executor::new(1)?;
    /// let slow = ex.submit(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000);
    /// let mut it = mpkit::pool::as_completed([slow], Some(Duration::ZERO));
    /// let pending = it.next().unwrap().unwrap_err().into_pending();
    /// assert!(!pending[0].done());
    /// ex.terminate(); // rather than wait a minute for it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_pending(self) -> Vec<Task<R>> {
        self.pending
    }
}

impl<R> fmt::Debug for AsCompletedTimeout<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompletedTimeout")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<R> fmt::Display for AsCompletedTimeout<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the timeout passed with {} tasks not finished",
            self.pending.len()
        )
    }
}

impl<R> std::error::Error for AsCompletedTimeout<R> {}

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
///
/// ```
/// use mpkit::pool::ReturnWhen;
/// assert_ne!(ReturnWhen::FirstCompleted, ReturnWhen::AllCompleted);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// When any task finishes (or is cancelled).
    FirstCompleted,
    /// When any task fails (a cancel is not a failure), or else when all
    /// have finished.
    FirstException,
    /// When all tasks have finished.
    AllCompleted,
}

/// Waits for `tasks` until `return_when` holds or `timeout` passes
/// (`None`: for ever), and returns them split into those finished and
/// those not, each in the order given (Python's
/// `concurrent.futures.wait`). A timeout is no error: the second vector
/// holds what is left.
///
/// ```
/// use std::time::Duration;
/// use mpkit::pool::{wait, Executor, ReturnWhen};
///
/// let ex = Executor::new(2)?;
/// let quick = ex.submit(|x: u64| x, 1);
/// let slow = ex.submit(|ms: u64| { std::thread::sleep(Duration::from_millis(ms)); ms }, 60_000);
/// let (done, not_done) = wait([quick, slow], None, ReturnWhen::FirstCompleted);
/// assert_eq!((done.len(), not_done.len()), (1, 1));
/// ex.terminate(); // rather than wait a minute for it
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait<R: DeserializeOwned>(
    tasks: impl IntoIterator<Item = Task<R>>,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> (Vec<Task<R>>, Vec<Task<R>>) {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let tasks: Vec<Task<R>> = tasks.into_iter().collect();
    let waiter = Waiter::on(&tasks);
    let mut finished = 0;
    while finished < tasks.len() {
        let Some(key) = waiter.next(deadline) else {
            break;
        };
        finished += 1;
        let stop = match return_when {
            ReturnWhen::FirstCompleted => true,
            ReturnWhen::FirstException => tasks[key].failed(),
            ReturnWhen::AllCompleted => false,
        };
        if stop {
            break;
        }
    }
    tasks.into_iter().partition(Task::done)
}
