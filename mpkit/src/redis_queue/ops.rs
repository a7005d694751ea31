//! [`QueueOps`] and [`JoinableOps`] for [`RedisQueue`].

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RedisGetError, RedisJoinError, RedisPutError, RedisQueue, deadline};
use crate::codec::Codec;
use crate::queue::generic::{BoxError, GetError, JoinError, PutError};
use crate::queue::{JoinableOps, QueueOps};

fn put_error<T>(e: RedisPutError<T>) -> PutError<T> {
    match e.split() {
        (v, RedisPutError::Full(())) => PutError::Full(v),
        (v, RedisPutError::Closed(())) => PutError::Closed(v),
        (value, e) => PutError::Failed {
            value,
            source: Box::new(e),
        },
    }
}

fn get_error(e: RedisGetError) -> GetError {
    match e {
        RedisGetError::Empty => GetError::Empty,
        RedisGetError::Closed => GetError::Closed,
        e => GetError::Failed(Box::new(e)),
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> QueueOps<T> for RedisQueue<T, C> {
    fn put_timeout(&self, item: T, timeout: Option<Duration>) -> Result<(), PutError<T>> {
        self.put_until(item, deadline(timeout), false)
            .map_err(put_error)
    }

    fn try_put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, Some(Instant::now()), true)
            .map_err(put_error)
    }

    fn put_many(&self, items: Vec<T>) -> Result<(), PutError<Vec<T>>> {
        RedisQueue::put_many(self, items).map_err(put_error)
    }

    fn get_timeout(&self, timeout: Option<Duration>) -> Result<T, GetError> {
        self.get_delivery(timeout)
            .map(|d| d.value)
            .map_err(get_error)
    }

    fn try_get(&self) -> Result<T, GetError> {
        RedisQueue::try_get(self).map_err(get_error)
    }

    fn get_many_timeout(&self, max: usize, timeout: Option<Duration>) -> Result<Vec<T>, GetError> {
        self.take(max, deadline(timeout))
            .map(|ds| ds.into_iter().map(|d| d.value).collect())
            .map_err(get_error)
    }

    fn len(&self) -> Result<usize, BoxError> {
        Ok(RedisQueue::len(self)?)
    }

    fn maxsize(&self) -> usize {
        RedisQueue::maxsize(self)
    }

    fn close(&self) -> Result<(), BoxError> {
        Ok(RedisQueue::close(self)?)
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> JoinableOps<T> for RedisQueue<T, C> {
    fn task_done(&self) -> Result<(), BoxError> {
        Ok(RedisQueue::task_done(self)?)
    }

    fn join_timeout(&self, timeout: Option<Duration>) -> Result<(), JoinError> {
        self.join_until(deadline(timeout)).map_err(|e| match e {
            RedisJoinError::Timeout { .. } => JoinError::Timeout,
            e => JoinError::Failed(Box::new(e)),
        })
    }
}
