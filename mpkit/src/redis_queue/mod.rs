//! A queue on a Redis stream, for work that outgrows one host (cargo
//! feature `redis`): [`RedisQueue`], with the API of the shared-memory
//! [`JoinableQueue`](crate::queue::JoinableQueue) and at-least-once
//! delivery. Both implement [`QueueOps`](crate::queue::QueueOps) and
//! [`JoinableOps`](crate::queue::JoinableOps), so code can be generic over
//! where its queue lives.
//!
//! ```no_run
//! // Needs a Redis server (7.0 or later) at this URL. A worker process on
//! // any host opens the same queue by URL and name, takes an item, and
//! // acknowledges it with `task_done`; `join` returns once all are done.
//! use std::time::Duration;
//! use mpkit::redis_queue::RedisQueue;
//!
//! let q: RedisQueue<String> = RedisQueue::builder("redis://127.0.0.1:6379", "jobs")
//!     .maxsize(100)
//!     .visibility_timeout(Duration::from_secs(30))
//!     .max_deliveries(3)
//!     .open()?;
//! q.put("resize photo 17".to_string())?;
//! let job = q.get_delivery_timeout(Duration::from_secs(5))?;
//! assert_eq!(job.deliveries, 1);
//! q.task_done()?; // XACK + XDEL
//! q.join_timeout(Duration::from_secs(5))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Anatomy
//! A queue named `N` is four keys (`{N}` is a hash tag: all four live in
//! one slot): the stream `mpkit:{N}:stream`, one entry per item with one
//! field `v` holding the codec's bytes; the hash `mpkit:{N}:meta` (its
//! settings, set by the first opener, and the `closed` flag); the
//! dead-letter stream `mpkit:{N}:dead`; and the hash `mpkit:{N}:puts`,
//! one short field per handle that has put (its last put's number, which
//! makes a retried put add nothing again; delete it while no producer
//! runs to reclaim the fields of handles long gone). Consumers read through the
//! consumer group `mpkit`, each handle as its own consumer
//! (`host-pid-n-…`). Puts, takes and acknowledgements are Lua scripts, so
//! each is atomic on the server.
//!
//! # Delivery guarantees
//! - **Never lost once `put` returned `Ok`**, as long as the server keeps
//!   its data: the entry was added by the server before the reply. A
//!   restart loses what its persistence had not written (run Redis with
//!   `appendonly yes`, `appendfsync always` for nothing to be lost); on a
//!   server restarted without its data, puts and gets fail with
//!   [`RedisPutError::Redis`] and [`RedisGetError::Redis`] (`NOQUEUE`)
//!   rather than pretend the queue is empty; opening the queue again
//!   makes it anew.
//! - **Delivered at least once, at most `max_deliveries` times**: an item
//!   stays in the stream, pending under the consumer that took it, until
//!   [`task_done`](RedisQueue::task_done) or [`ack`](RedisQueue::ack).
//!   One left pending for the visibility timeout (its consumer died, hung,
//!   lost its connection, or is slow) is delivered again to a consumer
//!   that looks (`XAUTOCLAIM`), with its delivery count raised
//!   ([`Delivery::deliveries`]). A look scans 10 pending entries per item
//!   asked for, each handle going on where its last look stopped: behind
//!   many busy items it is found within a few looks, not always the
//!   first. An item whose next delivery would pass
//!   `max_deliveries` goes to the dead-letter stream instead
//!   ([`dead_letters`](RedisQueue::dead_letters)), and counts as done.
//! - **What can be delivered twice**: an item whose consumer did not
//!   acknowledge it within the visibility timeout — including one whose
//!   work was done and whose `task_done` came too late or was lost with
//!   the connection. Make the work idempotent, or the visibility timeout
//!   longer than the work. A put whose reply was lost is retried on a
//!   new connection and adds nothing the second time; a put that gives up
//!   reports [`RedisPutError::Unavailable`] with its items, which may or
//!   may not have been added: putting them again may add them twice.
//! - The visibility timeout is measured by the server, on its clock (an
//!   entry's idle time): clients' clocks do not matter, but a jump of the
//!   server's wall clock moves redeliveries (forward: sooner, so an item
//!   still being worked on can be delivered twice; back: later).
//! - Order: items are delivered in put order, except redeliveries, which
//!   come before newer items.
//!
//! # Waiting
//! Every call has a bound. A get blocks in the server (`XREADGROUP BLOCK`)
//! for the time it has left, at most a quarter of the visibility timeout
//! (500 ms at most) at a time, so that it also sees items whose holders
//! timed out and a [`close`](RedisQueue::close). A put to a full queue and
//! `join` poll the server with backoff (1 ms doubling to 50 ms). Sockets
//! have read and write timeouts (the block time plus
//! [`io_timeout`](RedisBuilder::io_timeout)); a lost connection is retried
//! with backoff for [`retry_for`](RedisBuilder::retry_for) (or until the
//! call's own deadline), then reported as `Unavailable`.
//!
//! # Limitations
//! One connection per handle, used by one call at a time: give each thread
//! its own handle ([`try_clone`](RedisQueue::try_clone)). `task_done`
//! acknowledges the oldest item this handle took and has not
//! acknowledged; use [`ack`](RedisQueue::ack) with a [`Delivery`]'s id to
//! acknowledge out of order. Redis Cluster is not supported.

mod builder;
pub(crate) mod conn;
mod error;
mod handle;
mod ops;
mod reply;
pub(crate) mod scripts;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, Postcard};
use builder::Keys;
pub use builder::RedisBuilder;
use conn::Conn;
pub(crate) use error::Fail;
pub use error::{
    RedisAckError, RedisGetError, RedisJoinError, RedisOpenError, RedisPutError, RedisQueryError,
};
use reply::{bad_reply, raw};

/// Ties a handle to its item type and codec without owning either (and
/// without making the handle `!Send`).
type Marker<T, C> = PhantomData<fn(T, C) -> (T, C)>;

/// The consumer group every handle reads through.
const GROUP: &str = "mpkit";
/// The most payloads one put script carries.
const PUT_CHUNK: usize = 1000;
/// The most entries one get asks the server for (a larger `get_many`
/// returns at most this many).
const TAKE_MAX: usize = 10_000;
/// The longest pause of a put waiting for room, or of `join`.
const POLL_MAX: Duration = Duration::from_millis(50);
/// The longest a get blocks in the server before it looks for timed-out
/// items and `close` again.
const BLOCK_MAX: Duration = Duration::from_millis(500);
/// The longest visibility timeout: 2^53 ms, exact in Lua's numbers and
/// far inside what `XAUTOCLAIM` accepts (a signed 64-bit count of ms).
const VISIBILITY_MAX: Duration = Duration::from_millis(1 << 53);

/// An item with what the queue knows of its delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery<T> {
    /// The entry's stream id, for [`ack`](RedisQueue::ack).
    pub id: String,
    /// How many times it has been delivered, this time included (1 the
    /// first time).
    pub deliveries: u64,
    /// The item.
    pub value: T,
}

/// An entry moved to the dead-letter stream after its last delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the queue's stream.
    pub id: String,
    /// How many times it was delivered, counting the one it did not get.
    pub deliveries: u64,
    /// Its payload (the codec's bytes), or `None` for a malformed entry
    /// without the field `v`.
    pub payload: Option<Vec<u8>>,
}

/// An entry as taken from the server, not yet decoded.
struct Raw {
    id: String,
    /// The payload, or why the entry is not one the queue wrote.
    payload: Result<Vec<u8>, String>,
    deliveries: u64,
}

/// A queue of `T` on a Redis stream, encoded with codec `C`; see the
/// [module docs](self) for its guarantees.
///
/// A handle passes to a [`Process`](crate::Process) like the shared-memory
/// queues (as its URL and name: the child connects as a consumer of its
/// own), or is opened by name on another host.
///
/// ```no_run
/// // Needs a Redis server at the URL. Two worker processes take jobs,
/// // acknowledge each, and stop when the queue is closed; an item that a
/// // worker took and never acknowledged (it crashed) would be delivered
/// // again after the visibility timeout, with `deliveries` 2.
/// use std::time::Duration;
/// use mpkit::Process;
/// use mpkit::redis_queue::{RedisGetError, RedisQueue};
///
/// fn worker(q: RedisQueue<u64>) -> u64 {
///     let mut sum = 0;
///     loop {
///         match q.get_delivery(None) {
///             Ok(job) => {
///                 sum += job.value;
///                 q.ack(&job.id).unwrap();
///             }
///             Err(RedisGetError::Closed) => return sum,
///             Err(e) => panic!("{e}"),
///         }
///     }
/// }
///
/// let q: RedisQueue<u64> = RedisQueue::open("redis://127.0.0.1:6379", "sums")?;
/// let workers = [
///     Process::spawn(worker, q.try_clone()?)?,
///     Process::spawn(worker, q.try_clone()?)?,
/// ];
/// q.put_many((1..=100).collect())?;
/// q.join_timeout(Duration::from_secs(10))?; // all acknowledged
/// q.close()?;
/// let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
/// assert_eq!(total, 5050);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisQueue<T, C = Postcard> {
    conn: Conn,
    url: String,
    name: String,
    keys: Keys,
    consumer: String,
    maxsize: usize,
    visibility: Duration,
    max_deliveries: u64,
    /// The number of this handle's next put script, so that a retried
    /// script is recognised and adds nothing again.
    put_seq: AtomicU64,
    /// Entries taken from the server and not yet returned: what follows an
    /// entry that did not decode in a batch.
    buffer: Mutex<VecDeque<Raw>>,
    /// Ids returned by gets and not yet acknowledged, oldest first.
    taken: Mutex<VecDeque<String>>,
    /// Where the next scan for timed-out entries starts (`0-0`: at the
    /// oldest pending entry); each scan goes on from the last.
    claim_from: Mutex<String>,
    /// Whether this handle has read as a consumer (so that it is one, to
    /// leave the group when dropped).
    took: std::sync::atomic::AtomicBool,
    /// When this handle last removed idle consumers holding nothing.
    last_sweep: Mutex<Option<Instant>>,
    _t: Marker<T, C>,
}

/// A deadline `timeout` from now (`None`: none).
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now().checked_add(t).unwrap_or_else(far_future))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl<T: Serialize + DeserializeOwned, C: Codec> RedisQueue<T, C> {
    /// Settings for the queue `name` on the server at `url`
    /// (`redis://host:port/db`, `redis+unix:///path`).
    pub fn builder(url: &str, name: &str) -> RedisBuilder<T, C> {
        RedisBuilder {
            url: url.to_string(),
            name: name.to_string(),
            maxsize: 0,
            visibility: Duration::from_secs(30),
            max_deliveries: 5,
            io_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(10),
            _t: PhantomData,
        }
    }

    /// Opens the queue `name` with the default settings (or those of the
    /// handle that opened it first).
    pub fn open(url: &str, name: &str) -> Result<Self, RedisOpenError> {
        Self::builder(url, name).open()
    }

    /// Another handle to the same queue: its own connection, and its own
    /// consumer (items it takes are acknowledged through it).
    pub fn try_clone(&self) -> Result<Self, RedisOpenError> {
        Self::builder(&self.url, &self.name)
            .io_timeout(self.conn.io_timeout)
            .retry_for(self.conn.retry_for)
            .open()
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's key (for `redis-cli`, or tools that read it).
    pub fn stream_key(&self) -> &str {
        &self.keys.stream
    }

    /// The dead-letter stream's key.
    pub fn dead_letter_key(&self) -> &str {
        &self.keys.dead
    }

    /// This handle's consumer name in the group `mpkit`.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The item limit (0: none).
    pub fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// The visibility timeout in force.
    pub fn visibility_timeout(&self) -> Duration {
        self.visibility
    }

    /// The most deliveries of one item, in force.
    pub fn max_deliveries(&self) -> u64 {
        self.max_deliveries
    }

    /// Puts `item`, waiting while the queue is full.
    pub fn put(&self, item: T) -> Result<(), RedisPutError<T>> {
        self.put_until(item, None, false)
    }

    /// Puts `item`, waiting at most `timeout` while full
    /// ([`RedisPutError::Full`] hands it back then).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), RedisPutError<T>> {
        self.put_until(item, deadline(Some(timeout)), false)
    }

    /// Puts `item` if there is room now ([`RedisPutError::Full`] if not).
    pub fn try_put(&self, item: T) -> Result<(), RedisPutError<T>> {
        self.put_until(item, Some(Instant::now()), true)
    }

    fn put_until(
        &self,
        item: T,
        deadline: Option<Instant>,
        nowait: bool,
    ) -> Result<(), RedisPutError<T>> {
        let mut bytes = Vec::new();
        if let Err(source) = C::encode(&item, &mut bytes) {
            return Err(RedisPutError::Encode {
                value: item,
                type_name: std::any::type_name::<T>(),
                source,
            });
        }
        match self.put_encoded(&[bytes], deadline, nowait) {
            Ok(_) => Ok(()),
            Err((_, e)) => Err(e.with(item)),
        }
    }

    /// Puts every item, in order, waiting for room as needed; up to 1000
    /// items go to the server in one script. On error the items not put
    /// are handed back. Not atomic as a whole: a producer that dies (or
    /// is killed) meanwhile leaves the items before some point in the
    /// queue and none after it; consumers may take the first while later
    /// ones are still being put.
    pub fn put_many(&self, items: Vec<T>) -> Result<(), RedisPutError<Vec<T>>> {
        let mut encoded = Vec::with_capacity(items.len());
        for item in &items {
            let mut bytes = Vec::new();
            if let Err(source) = C::encode(item, &mut bytes) {
                return Err(RedisPutError::Encode {
                    value: items,
                    type_name: std::any::type_name::<T>(),
                    source,
                });
            }
            encoded.push(bytes);
        }
        match self.put_encoded(&encoded, None, false) {
            Ok(()) => Ok(()),
            Err((added, e)) => Err(e.with(items.into_iter().skip(added).collect())),
        }
    }

    /// Adds `payloads` in order; on error, how many were added and why.
    fn put_encoded(
        &self,
        payloads: &[Vec<u8>],
        deadline: Option<Instant>,
        nowait: bool,
    ) -> Result<(), (usize, RedisPutError<()>)> {
        let mut added = 0;
        let mut pause = Duration::from_millis(1);
        while added < payloads.len() {
            let chunk = &payloads[added..payloads.len().min(added + PUT_CHUNK)];
            let seq = self.put_seq.fetch_add(1, Ordering::Relaxed);
            let n: i64 = self
                .conn
                .call(deadline, Duration::ZERO, |con| {
                    let mut call = scripts::PUT.key(&self.keys.stream);
                    call.key(&self.keys.meta).key(&self.keys.puts);
                    call.arg(GROUP).arg(&self.consumer).arg(seq);
                    for p in chunk {
                        call.arg(p.as_slice());
                    }
                    call.invoke(con)
                })
                .map_err(|f| (added, f.put(())))?;
            if n < 0 {
                return Err((added, RedisPutError::Closed(())));
            }
            added += n as usize;
            if n > 0 {
                pause = Duration::from_millis(1);
                continue;
            }
            // Full: wait for a consumer to make room.
            let now = Instant::now();
            let left = deadline.map(|d| d.saturating_duration_since(now));
            if nowait || left == Some(Duration::ZERO) {
                return Err((added, RedisPutError::Full(())));
            }
            std::thread::sleep(left.map_or(pause, |l| l.min(pause)));
            pause = (pause * 2).min(POLL_MAX);
        }
        Ok(())
    }

    /// Takes the next item, waiting while there is none. After
    /// [`close`](Self::close), what is left is still delivered, then
    /// [`RedisGetError::Closed`].
    pub fn get(&self) -> Result<T, RedisGetError> {
        self.get_delivery(None).map(|d| d.value)
    }

    /// Takes the next item, waiting at most `timeout`
    /// ([`RedisGetError::Empty`] then).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RedisGetError> {
        self.get_delivery(Some(timeout)).map(|d| d.value)
    }

    /// Takes the next item if one is there now ([`RedisGetError::Empty`] if
    /// not).
    pub fn try_get(&self) -> Result<T, RedisGetError> {
        self.get_delivery(Some(Duration::ZERO)).map(|d| d.value)
    }

    /// Takes the next item with its id and delivery count, waiting at most
    /// `timeout` (`None`: as long as it takes).
    pub fn get_delivery(&self, timeout: Option<Duration>) -> Result<Delivery<T>, RedisGetError> {
        let mut one = self.take(1, deadline(timeout))?;
        Ok(one
            .pop()
            .expect("a take that returns Ok has at least one item"))
    }

    /// [`get_delivery`](Self::get_delivery) with a timeout.
    pub fn get_delivery_timeout(&self, timeout: Duration) -> Result<Delivery<T>, RedisGetError> {
        self.get_delivery(Some(timeout))
    }

    /// Takes up to `max` items at once (waiting for the first; at most
    /// 10 000 a call). Nothing is
    /// dropped: the batch ends before an entry that does not decode, and
    /// the next get reports that one ([`RedisGetError::Decode`]), as the
    /// shared-memory queue does.
    pub fn get_many(&self, max: usize) -> Result<Vec<T>, RedisGetError> {
        Ok(self.take(max, None)?.into_iter().map(|d| d.value).collect())
    }

    /// Like [`get_many`](Self::get_many), waiting at most `timeout` for the
    /// first item.
    pub fn get_many_timeout(&self, max: usize, timeout: Duration) -> Result<Vec<T>, RedisGetError> {
        Ok(self
            .take(max, deadline(Some(timeout)))?
            .into_iter()
            .map(|d| d.value)
            .collect())
    }

    /// Up to `max` deliveries (at least one, unless `max` is 0).
    fn take(
        &self,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<Delivery<T>>, RedisGetError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(TAKE_MAX);
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if !buffer.is_empty() {
                return self.decode(&mut buffer, max);
            }
            let (closed, raws) = self.take_now(max, deadline)?;
            if !raws.is_empty() {
                buffer.extend(raws);
                continue;
            }
            if closed {
                return Err(RedisGetError::Closed);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(RedisGetError::Empty);
            }
            let most = (self.visibility / 4).clamp(Duration::from_millis(1), BLOCK_MAX);
            let block = left
                .map_or(most, |l| l.min(most))
                .max(Duration::from_millis(1));
            buffer.extend(self.take_blocking(max, block, deadline)?);
        }
    }

    /// Timed-out items first, then new ones, without blocking.
    fn take_now(
        &self,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<(bool, Vec<Raw>), RedisGetError> {
        self.took.store(true, Ordering::Relaxed);
        self.sweep(deadline);
        let mut claim_from = self.claim_from.lock().unwrap_or_else(|p| p.into_inner());
        let reply: Value = self.conn.call(deadline, Duration::ZERO, |con| {
            scripts::TAKE
                .key(&self.keys.stream)
                .key(&self.keys.meta)
                .key(&self.keys.dead)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(self.visibility.as_millis() as u64)
                .arg(self.max_deliveries)
                .arg(max)
                .arg(claim_from.as_str())
                .invoke(con)
        })?;
        let bad = || RedisGetError::Redis(bad_reply("take script", format!("{reply:?}")));
        let Value::Array(parts) = &reply else {
            return Err(bad());
        };
        let [
            Value::Int(closed),
            Value::Array(entries),
            Value::BulkString(next),
        ] = parts.as_slice()
        else {
            return Err(bad());
        };
        *claim_from = String::from_utf8(next.clone()).map_err(|_| bad())?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            match e {
                Value::Array(t) => match t.as_slice() {
                    [id, fields, Value::Int(n)] => {
                        out.push(raw(id, fields, *n as u64).ok_or_else(bad)?)
                    }
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            }
        }
        Ok((*closed == 1, out))
    }

    /// New items, blocking in the server for at most `block`.
    fn take_blocking(
        &self,
        max: usize,
        block: Duration,
        deadline: Option<Instant>,
    ) -> Result<Vec<Raw>, RedisGetError> {
        let reply: Value = self.conn.call(deadline, block, |con| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(max)
                .arg("BLOCK")
                .arg(block.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(&self.keys.stream)
                .arg(">")
                .query(con)
        })?;
        let bad = || RedisGetError::Redis(bad_reply("XREADGROUP", format!("{reply:?}")));
        let entries = match &reply {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(streams) => match streams.first() {
                Some(Value::Array(s)) if s.len() == 2 => &s[1],
                _ => return Err(bad()),
            },
            Value::Map(streams) => match streams.first() {
                Some((_, entries)) => entries,
                None => return Ok(Vec::new()),
            },
            _ => return Err(bad()),
        };
        let Value::Array(entries) = entries else {
            return Err(bad());
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            match e {
                Value::Array(t) if t.len() == 2 => out.push(raw(&t[0], &t[1], 1).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        Ok(out)
    }

    /// Decodes up to `max` entries from the front of `buffer`, stopping
    /// before one that does not decode unless it is the first (then it is
    /// taken and reported).
    fn decode(
        &self,
        buffer: &mut VecDeque<Raw>,
        max: usize,
    ) -> Result<Vec<Delivery<T>>, RedisGetError> {
        let mut out = Vec::new();
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        while out.len() < max {
            let Some(front) = buffer.front() else { break };
            let decoded = match &front.payload {
                Ok(bytes) => C::decode::<T>(bytes).map_err(|source| RedisGetError::Decode {
                    id: front.id.clone(),
                    type_name: std::any::type_name::<T>(),
                    source,
                }),
                Err(why) => Err(RedisGetError::Malformed {
                    id: front.id.clone(),
                    why: why.clone(),
                }),
            };
            match decoded {
                Ok(value) => {
                    let r = buffer.pop_front().expect("front seen above");
                    taken.push_back(r.id.clone());
                    out.push(Delivery {
                        id: r.id,
                        deliveries: r.deliveries,
                        value,
                    });
                }
                Err(e) if out.is_empty() => {
                    buffer.pop_front();
                    return Err(e);
                }
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Acknowledges the oldest item this handle took and has not yet
    /// acknowledged (Python's `task_done`): `XACK`, then `XDEL`, so the
    /// item is gone and never delivered again.
    pub fn task_done(&self) -> Result<(), RedisAckError> {
        self.task_done_many(1)
    }

    /// [`task_done`](Self::task_done) for the `n` oldest items this handle
    /// took, in one call to the server (what a consumer of
    /// [`get_many`](Self::get_many) batches wants). Fewer taken than `n`
    /// is [`RedisAckError::NothingTaken`], and nothing is acknowledged;
    /// entries no longer pending are named in
    /// [`RedisAckError::NotPending`] (the others are acknowledged).
    pub fn task_done_many(&self, n: usize) -> Result<(), RedisAckError> {
        let ids: Vec<String> = {
            let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
            if taken.len() < n {
                return Err(RedisAckError::NothingTaken);
            }
            taken.drain(..n).collect()
        };
        let result = self.ack_ids(&ids);
        if matches!(
            result,
            Err(RedisAckError::Unavailable(_) | RedisAckError::Redis(_))
        ) {
            // Not acknowledged (or not known to be): the next task_done
            // is for these again, not for items whose work is not done.
            let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids.into_iter().rev() {
                taken.push_front(id);
            }
        }
        result
    }

    /// Acknowledges the entry `id` (a [`Delivery::id`], or the id in a
    /// [`RedisGetError::Decode`] to finish with an entry that will never
    /// decode).
    pub fn ack(&self, id: &str) -> Result<(), RedisAckError> {
        let result = self.ack_ids(&[id.to_string()]);
        if !matches!(
            result,
            Err(RedisAckError::Unavailable(_) | RedisAckError::Redis(_))
        ) {
            // Kept when the server may not have it: a later task_done
            // acknowledges it.
            self.taken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|t| t != id);
        }
        result
    }

    fn ack_ids(&self, ids: &[String]) -> Result<(), RedisAckError> {
        if ids.is_empty() {
            return Ok(());
        }
        let missed: Vec<String> = self.conn.call(None, Duration::ZERO, |con| {
            let mut call = scripts::ACK.key(&self.keys.stream);
            call.arg(GROUP);
            for id in ids {
                call.arg(id);
            }
            call.invoke(con)
        })?;
        if missed.is_empty() {
            Ok(())
        } else {
            Err(RedisAckError::NotPending(missed.join(", ")))
        }
    }

    /// `(entries in the stream, of those delivered and unacknowledged)`.
    fn stats(&self, deadline: Option<Instant>) -> Result<(u64, u64), Fail> {
        let (len, pending): (u64, u64) = self.conn.call(deadline, Duration::ZERO, |con| {
            scripts::STATS.key(&self.keys.stream).arg(GROUP).invoke(con)
        })?;
        Ok((len, pending))
    }

    /// Items queued and not yet delivered (Python's `qsize`).
    pub fn len(&self) -> Result<usize, RedisQueryError> {
        let (len, pending) = self.stats(None)?;
        Ok(len.saturating_sub(pending) as usize)
    }

    /// True when no item waits to be delivered.
    pub fn is_empty(&self) -> Result<bool, RedisQueryError> {
        Ok(self.len()? == 0)
    }

    /// Items put and not yet acknowledged (queued, or delivered and
    /// pending).
    pub fn unfinished_tasks(&self) -> Result<u64, RedisQueryError> {
        Ok(self.stats(None)?.0)
    }

    /// Items delivered and not yet acknowledged, by any consumer.
    pub fn pending(&self) -> Result<u64, RedisQueryError> {
        Ok(self.stats(None)?.1)
    }

    /// Waits until every item put is acknowledged or dead-lettered.
    pub fn join(&self) -> Result<(), RedisJoinError> {
        self.join_until(None)
    }

    /// [`join`](Self::join), waiting at most `timeout`
    /// ([`RedisJoinError::Timeout`] says how many items are unfinished).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), RedisJoinError> {
        self.join_until(deadline(Some(timeout)))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<(), RedisJoinError> {
        let mut pause = Duration::from_millis(1);
        loop {
            let (unfinished, _) = self.stats(deadline)?;
            if unfinished == 0 {
                return Ok(());
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(RedisJoinError::Timeout { unfinished });
            }
            std::thread::sleep(left.map_or(pause, |l| l.min(pause)));
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}
