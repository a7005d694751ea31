//! The worker's side: [`Worker`] takes tasks from the pool's stream, runs
//! them and finishes each with its result; [`WorkerBuilder`] makes one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Value;

use super::client::{GROUP, pairs};
use super::remote_fn::AnyRemoteFn;
use super::{Keys, consumer_name, scripts};
use crate::redis_queue::conn::Conn;
use crate::redis_queue::{Fail, RedisOpenError};

/// How long a worker's registration lasts without a heartbeat; it renews
/// it every third of that.
const REGISTRATION: Duration = Duration::from_secs(15);
/// The longest a worker blocks in the server waiting for a task before it
/// looks for timed-out tasks (and at its stop flag) again.
const BLOCK_MAX: Duration = Duration::from_millis(500);
/// The longest pause before trying a server that stayed unreachable
/// again.
const UNREACHABLE_PAUSE: Duration = Duration::from_secs(1);

/// Sets `stop` on SIGTERM or SIGINT, however many come.
pub(super) fn stop_on_signal(stop: &Arc<AtomicBool>) -> std::io::Result<()> {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(stop))?;
    }
    Ok(())
}

/// Sets `stop` on the first SIGTERM or SIGINT; a second one ends the
/// process at once (exit code 1).
pub(super) fn stop_on_signals(stop: &Arc<AtomicBool>) -> std::io::Result<()> {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Registered first: it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(stop))?;
        signal_hook::flag::register(sig, Arc::clone(stop))?;
    }
    Ok(())
}

/// Settings for a [`Worker`]: `Worker::builder(url, pool)`.
///
/// ```no_run
/// // Needs a Redis server at the URL.
/// use mpkit::redis_pool::{RemoteFn, Worker};
///
/// const DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x: u64| x * 2);
///
/// let worker = Worker::builder("redis://127.0.0.1:6379", "default")
///     .task(&DOUBLE)
///     .connect()?;
/// worker.run()?; // until SIGTERM or SIGINT
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WorkerBuilder<'a> {
    url: String,
    pool: String,
    tasks: Vec<&'a dyn AnyRemoteFn>,
    io_timeout: Duration,
    retry_for: Duration,
}

impl fmt::Debug for WorkerBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("url", &self.url)
            .field("pool", &self.pool)
            .field(
                "tasks",
                &self.tasks.iter().map(|t| t.task_name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<'a> WorkerBuilder<'a> {
    /// Runs `f`'s tasks.
    pub fn task(mut self, f: &'a dyn AnyRemoteFn) -> Self {
        self.tasks.push(f);
        self
    }

    /// Runs the tasks of every function in `fs`.
    pub fn tasks(mut self, fs: &[&'a dyn AnyRemoteFn]) -> Self {
        self.tasks.extend_from_slice(fs);
        self
    }

    /// How long one reply of the server may take, beyond any time it was
    /// asked to block, and how long connecting may take (default 5 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long one call keeps retrying a server it cannot reach (default
    /// 10 s). A running worker never gives up: it tries again after a
    /// pause; only [`connect`](Self::connect) reports it.
    pub fn retry_for(mut self, period: Duration) -> Self {
        self.retry_for = period;
        self
    }

    /// Connects, creating the pool's stream and group if they are
    /// missing.
    pub fn connect(self) -> Result<Worker<'a>, RedisOpenError> {
        let client = redis::Client::open(self.url.as_str()).map_err(RedisOpenError::Url)?;
        let conn = Conn::new(client, self.io_timeout, self.retry_for);
        let keys = Keys::new(&self.pool);
        conn.call(None, Duration::ZERO, |con| {
            scripts::WORKER_OPEN
                .key(&keys.tasks)
                .arg(GROUP)
                .invoke::<()>(con)
        })?;
        let mut tasks = HashMap::new();
        for t in self.tasks {
            tasks.insert(t.task_name(), (t, t.task_signature()));
        }
        Ok(Worker {
            conn,
            keys,
            pool: self.pool,
            consumer: consumer_name(),
            tasks,
            claim_from: "0-0".to_string(),
        })
    }
}

/// A worker of a [`RedisPool`](super::RedisPool) in this process: takes
/// one task (a chunk) at a time from the pool's stream, runs it, and
/// finishes it with its result. [`worker_main`](super::worker_main) runs
/// one in each of its worker processes; this is the same, for tests and
/// for programs that start their workers themselves.
///
/// A task's function panicking fails that task alone (with the panic's
/// message); the worker goes on. A worker that dies, or is cut off, mid
/// task leaves it pending: it is delivered again after the visibility
/// timeout. A server that goes away is retried for ever, with pauses: a
/// worker outlives a Redis restart.
pub struct Worker<'a> {
    conn: Conn,
    keys: Keys,
    pool: String,
    consumer: String,
    tasks: HashMap<&'static str, (&'a dyn AnyRemoteFn, String)>,
    claim_from: String,
}

impl fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("pool", &self.pool)
            .field("consumer", &self.consumer)
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A task taken from the stream.
struct Taken {
    id: String,
    fields: HashMap<Vec<u8>, Vec<u8>>,
}

impl<'a> Worker<'a> {
    /// Settings for a worker of pool `pool` on the server at `url`.
    pub fn builder(url: &str, pool: &str) -> WorkerBuilder<'a> {
        WorkerBuilder {
            url: url.to_string(),
            pool: pool.to_string(),
            tasks: Vec::new(),
            io_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(10),
        }
    }

    /// This worker's consumer name in the pool's group (and its name in
    /// the pool's list of workers).
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Serves tasks until SIGTERM or SIGINT arrives (the task running
    /// then finishes first; a second signal ends the process at once, exit
    /// code 1, and that task is delivered again after the visibility
    /// timeout).
    pub fn run(&self) -> Result<(), RedisOpenError> {
        let stop = Arc::new(AtomicBool::new(false));
        stop_on_signals(&stop).map_err(|e| RedisOpenError::Unavailable(e.into()))?;
        self.run_until(&stop)
    }

    /// Serves tasks until `stop` is set (seen within half a second while
    /// idle; a task running then finishes first). Leaves the pool's list
    /// of workers on the way out.
    ///
    /// ```no_run
    /// // Needs a Redis server at the URL: a worker thread in the caller's
    /// // own process (for a test, or a program that starts its workers).
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use mpkit::redis_pool::{RedisPool, RemoteFn, Worker};
    ///
    /// const NEG: RemoteFn<i64, i64> = RemoteFn::new("neg", |x: i64| -x);
    /// let url = "redis://127.0.0.1:6379";
    /// let worker = Worker::builder(url, "local").task(&NEG).connect()?;
    /// println!("worker {}", worker.consumer());
    /// let stop = Arc::new(AtomicBool::new(false));
    /// let flag = Arc::clone(&stop);
    /// let thread = std::thread::spawn(move || worker.run_until(&flag));
    /// let pool = RedisPool::connect(url, "local")?;
    /// assert_eq!(pool.apply(&NEG, 5)?, -5);
    /// stop.store(true, Ordering::Release);
    /// thread.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_until(&self, stop: &AtomicBool) -> Result<(), RedisOpenError> {
        let mut claim_from = self.claim_from.clone();
        let mut next_beat = Instant::now();
        // The server's refusal last reported, said once until it changes
        // or a take succeeds.
        let mut refused: Option<String> = None;
        while !stop.load(Ordering::Acquire) {
            if Instant::now() >= next_beat {
                // A failed beat is tried again at the next look.
                if self.heartbeat().is_ok() {
                    next_beat = Instant::now() + REGISTRATION / 3;
                }
            }
            let took = self.take(&mut claim_from);
            if took.is_ok() {
                refused = None;
            }
            match took {
                Ok((taken, _, _)) if !taken.is_empty() => {
                    for t in taken {
                        self.serve(t);
                    }
                }
                Ok((_, last, visibility)) => self.wait_for_task(&last, visibility),
                Err(Fail::Redis(e)) if e.code() == Some("NOGROUP") => {
                    // The server lost the pool (restarted without its
                    // data): make the stream and group again.
                    let _ = self.conn.call(None, Duration::ZERO, |con| {
                        scripts::WORKER_OPEN
                            .key(&self.keys.tasks)
                            .arg(GROUP)
                            .invoke::<()>(con)
                    });
                }
                Err(Fail::Redis(e)) => {
                    // Refused (the pool's settings overwritten by another
                    // client: `BADMETA`): said, and tried again, as it may
                    // be put right meanwhile.
                    let why = e.to_string();
                    if refused.as_ref() != Some(&why) {
                        eprintln!(
                            "mpkit redis_pool worker {}: cannot take tasks of pool {:?}: {why} (trying again every {:?})",
                            self.consumer, self.pool, UNREACHABLE_PAUSE
                        );
                        refused = Some(why);
                    }
                    std::thread::sleep(UNREACHABLE_PAUSE);
                }
                Err(Fail::Unavailable(_)) => std::thread::sleep(UNREACHABLE_PAUSE),
            }
        }
        let _ = self.conn.call(None, Duration::ZERO, |con| {
            scripts::LEAVE
                .key(&self.keys.workers)
                .key(&self.keys.tasks)
                .arg(&self.consumer)
                .arg(GROUP)
                .invoke::<()>(con)
        });
        Ok(())
    }

    fn heartbeat(&self) -> Result<u64, Fail> {
        self.conn.call(None, Duration::ZERO, |con| {
            scripts::HEARTBEAT
                .key(&self.keys.workers)
                .key(&self.keys.tasks)
                .arg(&self.consumer)
                .arg(REGISTRATION.as_millis() as u64)
                .arg(GROUP)
                .invoke(con)
        })
    }

    /// Takes a task: one timed out elsewhere, or a new one; with none,
    /// the stream's last id. And the visibility timeout in force.
    fn take(&self, claim_from: &mut String) -> Result<(Vec<Taken>, String, Duration), Fail> {
        let reply: Value = self.conn.call(None, Duration::ZERO, |con| {
            scripts::TAKE
                .key(&self.keys.tasks)
                .key(&self.keys.meta)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(1)
                .arg(claim_from.as_str())
                .arg(&self.keys.prefix)
                .invoke(con)
        })?;
        let bad = || {
            Fail::Redis(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "pool take script",
                format!("unexpected reply {reply:?}"),
            )))
        };
        let Value::Array(parts) = &reply else {
            return Err(bad());
        };
        let [
            Value::Array(entries),
            Value::BulkString(next),
            Value::BulkString(last),
            Value::Int(visibility),
        ] = parts.as_slice()
        else {
            return Err(bad());
        };
        *claim_from = String::from_utf8_lossy(next).into_owned();
        let mut out = Vec::new();
        for e in entries {
            let Value::Array(t) = e else {
                return Err(bad());
            };
            let [Value::BulkString(id), fields, Value::Int(_)] = t.as_slice() else {
                return Err(bad());
            };
            let fields = pairs(fields)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            out.push(Taken {
                id: String::from_utf8_lossy(id).into_owned(),
                fields,
            });
        }
        Ok((
            out,
            String::from_utf8_lossy(last).into_owned(),
            Duration::from_millis((*visibility).max(1) as u64),
        ))
    }

    /// Blocks in the server until a task newer than `last` is added, or
    /// for a while (to look for timed-out tasks again).
    fn wait_for_task(&self, last: &str, visibility: Duration) {
        let block = (visibility / 4).clamp(Duration::from_millis(1), BLOCK_MAX);
        let _ = self.conn.call(None, block, |con| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.keys.tasks)
                .arg(last)
                .query::<Value>(con)
        });
    }

    /// Runs a task and finishes it with its result.
    fn serve(&self, t: Taken) {
        let get = |k: &str| t.fields.get(k.as_bytes());
        let text = |k: &str| get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        let caller = text("c").unwrap_or_default();
        let (kind, reply): (&str, Vec<u8>) = match (text("b"), text("s"), text("n"), get("p")) {
            (Some(_), Some(_), Some(name), Some(payload)) => match self.tasks.get(name.as_str()) {
                None => ("unknown", Vec::new()),
                Some((_, sig)) if Some(sig) != text("g").as_ref() => {
                    ("incompatible", sig.clone().into_bytes())
                }
                Some((f, _)) => ("ok", f.run_payload(payload)),
            },
            _ => {
                let fields: Vec<String> = t
                    .fields
                    .keys()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                let why = format!(
                    "task entry {} has the fields {fields:?}, not `c`, `b`, `s`, `n`, `g`, `m`, `p`",
                    t.id
                );
                if caller.is_empty() {
                    // Nobody to tell: said here, and acknowledged below.
                    eprintln!("mpkit redis_pool worker {}: {why}", self.consumer);
                }
                ("malformed", why.into_bytes())
            }
        };
        // A result that cannot be written now (the server is away) is
        // lost with this delivery: the task is delivered again after the
        // visibility timeout.
        let _ = self.conn.call(None, Duration::ZERO, |con| {
            scripts::DONE
                .key(&self.keys.tasks)
                .arg(GROUP)
                .arg(&t.id)
                .arg(&self.keys.prefix)
                .arg(&caller)
                .arg("b")
                .arg(text("b").unwrap_or_default())
                .arg("s")
                .arg(text("s").unwrap_or_default())
                .arg("k")
                .arg(kind)
                .arg("r")
                .arg(&reply[..])
                .invoke::<i64>(con)
        });
    }
}
