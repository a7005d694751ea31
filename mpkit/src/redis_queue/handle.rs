//! The rest of a [`RedisQueue`] handle: closing, its dead letters, how it shows
//! and passes between processes, and how it leaves the consumer group.

use std::fmt;
use std::time::{Duration, Instant};

use redis::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::reply::bad_reply;
use super::{DeadLetter, GROUP, RedisGetError, RedisQueryError, RedisQueue, scripts};
use crate::codec::Codec;

/// How long a consumer holding nothing stays idle before a handle's
/// sweep removes it from the group.
const SWEEP_IDLE: Duration = Duration::from_secs(60);
/// How often one handle sweeps, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl<T, C> RedisQueue<T, C> {
    /// Removes the group's consumers that hold nothing and have been idle
    /// for [`SWEEP_IDLE`] (handles gone without leaving), once per
    /// [`SWEEP_EVERY`] at most; a failure is left for the next sweep.
    pub(super) fn sweep(&self, deadline: Option<Instant>) {
        let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        drop(last);
        let _ = self.conn.call(deadline, Duration::ZERO, |con| {
            scripts::SWEEP
                .key(&self.keys.stream)
                .arg(GROUP)
                .arg(SWEEP_IDLE.as_millis() as u64)
                .invoke::<i64>(con)
        });
    }
}

/// A handle that took items leaves the consumer group if it holds none
/// (what it holds stays pending under its name, to be delivered again
/// after the visibility timeout). Bounded by the handle's `io_timeout`; a
/// server that is away leaves the consumer to a later sweep.
impl<T, C> Drop for RedisQueue<T, C> {
    fn drop(&mut self) {
        if !self.took.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let deadline = Instant::now() + self.conn.io_timeout;
        let _ = self.conn.call(Some(deadline), Duration::ZERO, |con| {
            scripts::LEAVE
                .key(&self.keys.stream)
                .arg(GROUP)
                .arg(&self.consumer)
                .invoke::<i64>(con)
        });
    }
}

impl<T: Serialize + DeserializeOwned, C: Codec> RedisQueue<T, C> {
    /// Closes the queue for everyone: puts fail with `Closed`, gets deliver
    /// what is queued and then fail with `Closed` (within half a second,
    /// for a get blocked in the server). Items other consumers hold are
    /// not waited for: one of them that times out later is still delivered
    /// to a consumer that asks, but a get that found nothing to take has
    /// already returned `Closed`. [`join`](Self::join) first to have every
    /// item done.
    pub fn close(&self) -> Result<(), RedisQueryError> {
        self.conn.call(None, Duration::ZERO, |con| {
            redis::cmd("HSET")
                .arg(&self.keys.meta)
                .arg("closed")
                .arg(1)
                .query::<()>(con)
        })?;
        Ok(())
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> Result<bool, RedisQueryError> {
        let v: Option<String> = self.conn.call(None, Duration::ZERO, |con| {
            redis::cmd("HGET")
                .arg(&self.keys.meta)
                .arg("closed")
                .query(con)
        })?;
        Ok(v.as_deref() == Some("1"))
    }

    /// Up to `max` entries of the dead-letter stream, oldest first.
    pub fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, RedisGetError> {
        let reply: Value = self.conn.call(None, Duration::ZERO, |con| {
            redis::cmd("XRANGE")
                .arg(&self.keys.dead)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(max)
                .query(con)
        })?;
        let bad = || RedisGetError::Redis(bad_reply("XRANGE", format!("{reply:?}")));
        let Value::Array(entries) = &reply else {
            return Err(bad());
        };
        let mut out = Vec::new();
        for e in entries {
            let Value::Array(t) = e else {
                return Err(bad());
            };
            let [_, Value::Array(fields)] = t.as_slice() else {
                return Err(bad());
            };
            let mut d = DeadLetter {
                id: String::new(),
                deliveries: 0,
                payload: None,
            };
            for pair in fields.chunks(2) {
                match pair {
                    [Value::BulkString(k), Value::BulkString(v)] => match k.as_slice() {
                        b"id" => d.id = String::from_utf8_lossy(v).into_owned(),
                        b"deliveries" => {
                            d.deliveries = std::str::from_utf8(v)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .ok_or_else(bad)?
                        }
                        b"v" => d.payload = Some(v.clone()),
                        _ => {}
                    },
                    _ => return Err(bad()),
                }
            }
            out.push(d);
        }
        Ok(out)
    }
}

impl<T, C> fmt::Debug for RedisQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("type", &std::any::type_name::<T>())
            .field("name", &self.name)
            .field("consumer", &self.consumer)
            .field("maxsize", &self.maxsize)
            .field("visibility", &self.visibility)
            .field("max_deliveries", &self.max_deliveries)
            .finish()
    }
}

/// A handle passes (to a [`Process`](crate::Process), for one) as its URL,
/// name and timeouts; the receiver connects anew, as its own consumer. The
/// URL travels whole, with any password in it: pass handles only to
/// processes that may have it.
impl<T, C> Serialize for RedisQueue<T, C> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            &self.url,
            &self.name,
            self.conn.io_timeout,
            self.conn.retry_for,
        )
            .serialize(s)
    }
}

impl<'de, T: Serialize + DeserializeOwned, C: Codec> serde::Deserialize<'de> for RedisQueue<T, C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let (url, name, io, retry) = <(String, String, Duration, Duration)>::deserialize(d)?;
        Self::builder(&url, &name)
            .io_timeout(io)
            .retry_for(retry)
            .open()
            .map_err(D::Error::custom)
    }
}
