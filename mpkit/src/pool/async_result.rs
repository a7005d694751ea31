//! [`AsyncResult`]: one call's result, to wait for and take.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::TaskError;
use super::batch::{Batch, Plan, Watch};
use super::wire;
use crate::net::Waitable;
use crate::sys;

/// The result of [`Pool::apply_async`](super::Pool::apply_async), to wait
/// for and take (Python's `AsyncResult`).
///
/// ```
/// use std::time::Duration;
/// let pool = mpkit::Pool::new(2)?;
/// let r = pool.apply_async(|x: u64| x * 2, 21);
/// r.wait();
/// assert!(r.ready());
/// assert_eq!(r.successful(), Some(true));
/// assert_eq!(r.get()?, 42);
///
/// // Waiting with a timeout hands the result back while it is not ready.
/// let slow = pool.apply_async(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000);
/// let slow = slow.get_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(!slow.ready());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the task runs anyway; the AsyncResult is how to see its result"]
pub struct AsyncResult<R> {
    batch: Arc<Batch>,
    plan: Plan,
    /// Made on the first [`Waitable::ready_fd`].
    flag: OnceLock<Arc<ReadyFlag>>,
    _result: PhantomData<fn() -> R>,
}

/// A readiness flag (an eventfd) raised when a result arrives.
struct ReadyFlag(OwnedFd);

impl Watch for ReadyFlag {
    fn arrived(&self, _key: usize) {
        // Only fails on a descriptor that is not an eventfd: never here.
        let _ = sys::raise_ready_flag(self.0.as_fd());
    }
}

/// Readable once the task has finished, so that one
/// [`net::wait`](crate::net::wait) can wait for results, processes and
/// connections together. The descriptor (an eventfd) is made on the first
/// call and lives as long as the `AsyncResult`.
///
/// ```
/// use std::time::Duration;
/// let pool = mpkit::Pool::new(1)?;
/// let (_tx, rx) = mpkit::pipe(true)?;
/// let r = pool.apply_async(|x: u32| x + 1, 1);
/// // Index 1 (the result) is ready; the connection has nothing to read.
/// assert_eq!(mpkit::net::wait(&[&rx, &r], Some(Duration::from_secs(30)))?, [1]);
/// assert_eq!(r.get()?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<R> Waitable for AsyncResult<R> {
    fn ready_fd(&self) -> io::Result<BorrowedFd<'_>> {
        if self.flag.get().is_none() {
            let made = Arc::new(ReadyFlag(sys::ready_flag()?));
            // Of two threads making one at once, one flag is kept.
            if self.flag.set(Arc::clone(&made)).is_ok() {
                let watch: Weak<dyn Watch> = Arc::downgrade(&made) as Weak<dyn Watch>;
                self.batch.watch(self.plan.seq, watch, 0);
            }
        }
        let flag = self.flag.get().expect("set above");
        Ok(flag.0.as_fd())
    }

    fn ready_now(&self) -> bool {
        self.batch.wait_done(self.plan.seq, Some(Instant::now()))
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field(
                "ready",
                &self.batch.wait_done(self.plan.seq, Some(Instant::now())),
            )
            .finish()
    }
}

impl<R> AsyncResult<R> {
    /// The batch holding the result, and the result's number in it.
    pub(super) fn slot(&self) -> (&Arc<Batch>, u64) {
        (&self.batch, self.plan.seq)
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    pub(crate) fn new(batch: Arc<Batch>, plan: Plan) -> AsyncResult<R> {
        AsyncResult {
            batch,
            plan,
            flag: OnceLock::new(),
            _result: PhantomData,
        }
    }

    /// Whether the task has finished (however it ended).
    pub fn ready(&self) -> bool {
        self.batch.wait_done(self.plan.seq, Some(Instant::now()))
    }

    /// Whether the task returned a value: `None` while it is not
    /// [`ready`](Self::ready) (Python raises there). A result that then
    /// fails to decode as `R` counts as successful here and fails in
    /// [`get`](Self::get).
    pub fn successful(&self) -> Option<bool> {
        if self.plan.first_failed() {
            return Some(false);
        }
        let st = self.batch.wait_for(Some(Instant::now()), |st| {
            st.done.contains_key(&self.plan.seq)
        })?;
        Some(match st.done.get(&self.plan.seq) {
            Some(Ok(reply)) => wire::first_returned(&reply.bytes),
            _ => false,
        })
    }

    /// Blocks until the task has finished.
    pub fn wait(&self) {
        self.batch.wait_done(self.plan.seq, None);
    }

    /// Blocks until the task has finished or `timeout` passed; returns
    /// whether it finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.batch
            .wait_done(self.plan.seq, Instant::now().checked_add(timeout))
    }

    /// Waits for the task and returns its result, or why it has none.
    pub fn get(self) -> Result<R, TaskError> {
        let result = self
            .batch
            .take(self.plan.seq, None)
            .expect("waiting without a deadline returns the result");
        let mut out = None;
        self.plan.decode(result, |r| out = Some(r));
        out.unwrap_or_else(|| Err(wire::malformed::<R>()))
    }

    /// Like [`get`](Self::get), but gives up after `timeout`, handing this
    /// `AsyncResult` back (`Err`) so it can be waited on again.
    pub fn get_timeout(self, timeout: Duration) -> Result<Result<R, TaskError>, AsyncResult<R>> {
        if self.wait_timeout(timeout) {
            Ok(self.get())
        } else {
            Err(self)
        }
    }
}
