//! Lazy maps: [`Imap`], from [`Pool::imap`](super::Pool::imap) and
//! [`Pool::imap_unordered`](super::Pool::imap_unordered).

use std::collections::VecDeque;
use std::fmt;

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
pub struct Imap<I: Iterator, R> {
    job: Job<I::Item, R>,
    input: std::iter::Fuse<I>,
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
            input: input.fuse(),
            chunksize: chunksize.clamp(1, super::batch::MAX_CHUNK),
            window,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            unordered,
        }
    }

    /// Queues chunks until the window is full or the input ends.
    fn top_up(&mut self) {
        while self.in_flight.len() < self.window {
            let items: Vec<I::Item> = self.input.by_ref().take(self.chunksize).collect();
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
