//! Lazy maps: [`Imap`], from [`Pool::imap`](super::Pool::imap) and
//! [`Pool::imap_unordered`](super::Pool::imap_unordered).

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TaskError;
use super::batch::{Job, Plan};

/// An iterator over the outcomes of a lazy map: one `Result` per item, in
/// the items' order ([`Pool::imap`](super::Pool::imap)) or as they finish
/// ([`Pool::imap_unordered`](super::Pool::imap_unordered)).
///
/// The input is read only as results are taken: at most a window of
/// chunks (two per worker; for a
/// [`RedisPool`](crate::redis_pool::RedisPool), its `max_in_flight`) is
/// queued or running at a time, so an endless
/// input never fills memory. Dropping the iterator drops the queued
/// chunks; chunks already running finish and their results are discarded.
///
/// If the input panics, the items it gave before still run, and their
/// outcomes come first; then `next` panics with the input's panic, once,
/// and the map ends there (as Python's `imap` raises the input's
/// exception in its place): the input is not read again.
pub struct Imap<I: Iterator, R> {
    job: Job<I::Item, R>,
    input: I,
    /// The input's panic, raised once the outcomes before it are out.
    input_panic: Option<Box<dyn Any + Send>>,
    /// The input ended (or panicked): it is not read again (so a
    /// non-fused input ends at its first `None`).
    input_done: bool,
    chunksize: usize,
    window: usize,
    in_flight: VecDeque<Plan>,
    ready: VecDeque<Result<R, TaskError>>,
    unordered: bool,
}

impl<I: Iterator, R> fmt::Debug for Imap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("chunksize", &self.chunksize)
            .field("chunks_in_flight", &self.in_flight.len())
            .field("unordered", &self.unordered)
            .finish()
    }
}

impl<I, R> Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    pub(crate) fn new(
        job: Job<I::Item, R>,
        input: I,
        chunksize: usize,
        unordered: bool,
    ) -> Imap<I, R> {
        let window = job.window();
        Imap {
            job,
            input,
            input_panic: None,
            input_done: false,
            chunksize: chunksize.clamp(1, super::batch::MAX_CHUNK),
            window,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            unordered,
        }
    }

    /// Queues chunks until the window is full or the input ends (or
    /// panics: the items it gave before go as a chunk, and its panic waits
    /// in `input_panic`).
    fn top_up(&mut self) {
        while self.in_flight.len() < self.window && !self.input_done {
            let mut items = Vec::new();
            while items.len() < self.chunksize {
                match catch_unwind(AssertUnwindSafe(|| self.input.next())) {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => {
                        self.input_done = true;
                        break;
                    }
                    Err(payload) => {
                        self.input_panic = Some(payload);
                        self.input_done = true;
                        break;
                    }
                }
            }
            if items.is_empty() {
                return;
            }
            let plan = self.job.send(items);
            self.in_flight.push_back(plan);
        }
    }
}

impl<I, R> Iterator for Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Result<R, TaskError>> {
        loop {
            if let Some(outcome) = self.ready.pop_front() {
                return Some(outcome);
            }
            self.top_up();
            if self.in_flight.is_empty() {
                // Every outcome before the input's panic is out: now it.
                if let Some(payload) = self.input_panic.take() {
                    resume_unwind(payload);
                }
            }
            let (plan, result) = if self.unordered {
                if self.in_flight.is_empty() {
                    return None;
                }
                let (seq, result) = self.job.batch.take_any(None)?;
                let at = self.in_flight.iter().position(|p| p.seq == seq)?;
                (self.in_flight.remove(at)?, result)
            } else {
                let plan = self.in_flight.pop_front()?;
                let result = self.job.batch.take(plan.seq, None)?;
                (plan, result)
            };
            let ready = &mut self.ready;
            plan.decode(result, |r| ready.push_back(r));
        }
    }
}

impl<I: Iterator, R> Drop for Imap<I, R> {
    fn drop(&mut self) {
        self.job.batch.cancel();
    }
}
