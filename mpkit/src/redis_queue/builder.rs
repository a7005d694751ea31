//! Opening a queue: [`RedisBuilder`], the key names, consumer names.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conn::Conn;
use super::{GROUP, Marker, RedisOpenError, RedisQueue, scripts};
use crate::codec::{Codec, Postcard};

/// Settings for opening a [`RedisQueue`]: `RedisQueue::builder(url, name)`.
///
/// `maxsize`, `visibility_timeout` and `max_deliveries` belong to the
/// queue: the first handle to open a name records them in Redis, and every
/// later handle uses those (its own are ignored). `io_timeout` and
/// `retry_for` belong to the handle.
#[derive(Clone, Debug)]
pub struct RedisBuilder<T, C = Postcard> {
    pub(super) url: String,
    pub(super) name: String,
    pub(super) maxsize: usize,
    pub(super) visibility: Duration,
    pub(super) max_deliveries: u64,
    pub(super) io_timeout: Duration,
    pub(super) retry_for: Duration,
    pub(super) _t: Marker<T, C>,
}

impl<T: Serialize + DeserializeOwned, C: Codec> RedisBuilder<T, C> {
    /// The most items queued (not yet delivered) at once; 0, the default:
    /// no limit.
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// How long an item may stay delivered and unacknowledged before it is
    /// delivered to another consumer (default 30 s, at least 1 ms, at most
    /// 2^53 ms, some 285 000 years: `Duration::MAX` means never).
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility = timeout.clamp(Duration::from_millis(1), super::VISIBILITY_MAX);
        self
    }

    /// How many times an item is delivered at most before it goes to the
    /// dead-letter stream (default 5, at least 1).
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// How long one reply may take, beyond any time the server was asked to
    /// block, and how long connecting may take (default 5 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a call keeps retrying a server it cannot reach before it
    /// reports `Unavailable` (default 10 s; a call with its own timeout
    /// stops at that timeout if it comes first).
    pub fn retry_for(mut self, period: Duration) -> Self {
        self.retry_for = period;
        self
    }

    /// Connects, creating the stream and its group if they are missing.
    pub fn open(self) -> Result<RedisQueue<T, C>, RedisOpenError> {
        let client = redis::Client::open(self.url.as_str()).map_err(RedisOpenError::Url)?;
        let conn = Conn::new(client, self.io_timeout, self.retry_for);
        let keys = Keys::new(&self.name);
        let reply: Vec<Option<String>> = conn.call(None, Duration::ZERO, |con| {
            scripts::OPEN
                .key(&keys.stream)
                .key(&keys.meta)
                .arg(GROUP)
                .arg(self.maxsize)
                .arg(self.visibility.as_millis() as u64)
                .arg(self.max_deliveries)
                .invoke(con)
        })?;
        let setting = |i: usize, what: &'static str| -> Result<u64, RedisOpenError> {
            reply
                .get(i)
                .and_then(|v| v.as_deref())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    RedisOpenError::Redis(super::reply::bad_reply(
                        what,
                        format!("{:?}", reply.get(i)),
                    ))
                })
        };
        let maxsize = setting(0, "maxsize in the queue's settings hash")?;
        let visibility = Duration::from_millis(setting(1, "visibility_ms in the settings hash")?);
        let max_deliveries = setting(2, "max_deliveries in the settings hash")?;
        Ok(RedisQueue {
            conn,
            url: self.url,
            name: self.name,
            keys,
            consumer: consumer_name(),
            maxsize: usize::try_from(maxsize).unwrap_or(usize::MAX),
            visibility: visibility.clamp(Duration::from_millis(1), super::VISIBILITY_MAX),
            max_deliveries,
            put_seq: AtomicU64::new(0),
            buffer: Mutex::new(VecDeque::new()),
            taken: Mutex::new(VecDeque::new()),
            claim_from: Mutex::new("0-0".to_string()),
            took: std::sync::atomic::AtomicBool::new(false),
            last_sweep: Mutex::new(None),
            _t: PhantomData,
        })
    }
}

/// The key names of queue `name`.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    pub(super) stream: String,
    pub(super) meta: String,
    pub(super) dead: String,
    pub(super) puts: String,
}

impl Keys {
    pub(super) fn new(name: &str) -> Keys {
        Keys {
            stream: format!("mpkit:{{{name}}}:stream"),
            meta: format!("mpkit:{{{name}}}:meta"),
            dead: format!("mpkit:{{{name}}}:dead"),
            puts: format!("mpkit:{{{name}}}:puts"),
        }
    }
}

/// A consumer name no other handle has: host, process, a counter, and the
/// clock (a later process with the same pid gets another name).
pub(super) fn consumer_name() -> String {
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
