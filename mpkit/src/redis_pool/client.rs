//! The caller's side: chunks go to the task stream ([`Call`], one per
//! call: from the caller's thread for `map`, through one submitter thread
//! per pool for the calls that return at once), results come back through
//! one collector thread per pool, which also renews the caller's lease.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;

use super::Keys;
use super::scripts;
use crate::pool::{Batch, ChunkSink, Reply, TaskError};
use crate::redis_queue::Fail;
use crate::redis_queue::conn::Conn;

/// The consumer group workers read the task stream through.
pub(super) const GROUP: &str = "mpkit";
/// The longest the collector blocks in the server before it renews the
/// lease and looks at cancelled calls again.
const COLLECT_BLOCK: Duration = Duration::from_millis(250);
/// The most results one read of the collector takes.
const COLLECT_MAX: usize = 512;
/// The longest a submission retries before it looks whether the pool is
/// being stopped (one attempt may take `io_timeout` on top).
const SUBMIT_SLICE: Duration = Duration::from_millis(250);

/// Where the pool stands: taking tasks, closed to new ones, or
/// terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Open,
    Closed,
    Terminated,
}

/// A call whose chunks are not all delivered.
struct Outstanding {
    /// Held (not weakly): a batch cancelled and dropped at once (a `map`
    /// stopped by a failure, a dropped `imap`) must still be seen
    /// cancelled, for its tasks to be deleted.
    batch: Arc<Batch>,
    name: &'static str,
    signature: Arc<str>,
    /// Chunk number → the task's entry id once the server added it.
    chunks: HashMap<u64, Option<String>>,
}

pub(super) struct State {
    pub(super) phase: Phase,
    /// Set when the collector thread panicked (a bug in mpkit): every
    /// later task fails with it.
    pub(super) broken: Option<TaskError>,
    calls: HashMap<u64, Outstanding>,
    /// Chunks for the submitter thread, in the order they were sent.
    queue: VecDeque<Chunk>,
    /// Tasks to delete from the stream: added after their chunk was no
    /// longer outstanding (its call cancelled or forgotten, the pool
    /// terminated, or its result came first), or handed back by a
    /// collector that stopped before it could delete them. Deleted by the
    /// collector, or by `terminate`.
    orphans: Vec<String>,
    /// Set when `terminate` took the orphans for the last time: a task
    /// added later (by a `map` in another thread) is deleted by the
    /// thread that added it.
    left: bool,
}

/// A chunk to add to the task stream.
struct Chunk {
    call: u64,
    name: &'static str,
    signature: Arc<str>,
    /// Held until the chunk is added: an `apply_async` whose result was
    /// dropped at once still runs.
    batch: Arc<Batch>,
    seq: u64,
    message: Vec<u8>,
}

/// What a pool's callers and its collector share.
pub(super) struct Inner {
    /// For submissions (callers' threads, one at a time).
    pub(super) conn: Conn,
    pub(super) url: String,
    pub(super) keys: Keys,
    /// This caller's name: its lease is `caller:{name}`, its results
    /// `results:{name}`.
    pub(super) caller: String,
    pub(super) lease: Duration,
    pub(super) visibility: Duration,
    pub(super) retries: u32,
    pub(super) window: usize,
    pub(super) state: Mutex<State>,
    /// Told when the last outstanding chunk is delivered.
    pub(super) idle: Condvar,
    /// Told when a chunk is queued for the submitter, and on stop.
    work: Condvar,
    next_call: AtomicU64,
    /// Whether the last submission found the server unreachable.
    unreachable: AtomicBool,
    pub(super) malformed: AtomicU64,
    pub(super) stop: AtomicBool,
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        conn: Conn,
        url: String,
        keys: Keys,
        caller: String,
        lease: Duration,
        visibility: Duration,
        retries: u32,
        window: usize,
    ) -> Inner {
        Inner {
            conn,
            url,
            keys,
            caller,
            lease,
            visibility,
            retries,
            window,
            state: Mutex::new(State {
                phase: Phase::Open,
                broken: None,
                calls: HashMap::new(),
                queue: VecDeque::new(),
                orphans: Vec::new(),
                left: false,
            }),
            idle: Condvar::new(),
            work: Condvar::new(),
            next_call: AtomicU64::new(0),
            unreachable: AtomicBool::new(false),
            malformed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether the last submission found the server unreachable.
    pub(super) fn unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }

    pub(super) fn set_unreachable(&self, away: bool) {
        self.unreachable.store(away, Ordering::Relaxed);
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new call of `name`: its chunks go through the returned sink (with
    /// the batch their results go to). A `background` call's chunks are
    /// added by the submitter thread, in order, and its sends return at
    /// once; the others' in the sending thread. The call is listed with
    /// its first chunk: one refused (the pool closed), or without chunks,
    /// holds nothing here.
    pub(super) fn call(
        self: &Arc<Self>,
        name: &'static str,
        signature: String,
        background: bool,
    ) -> Arc<dyn ChunkSink> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let signature: Arc<str> = signature.into();
        Arc::new(Call {
            inner: Arc::clone(self),
            id,
            name,
            signature,
            background,
        })
    }

    /// Stops the collector and the submitter threads (they end within
    /// one attempt of theirs).
    pub(super) fn stop(&self) {
        let _st = self.lock();
        self.stop.store(true, Ordering::Release);
        self.work.notify_all();
    }

    /// The tasks to delete (see [`State::orphans`]), for `terminate`
    /// after the collector and the submitter stopped: a task added after
    /// this is deleted by the thread that added it.
    pub(super) fn leave(&self) -> Vec<String> {
        let mut st = self.lock();
        st.left = true;
        std::mem::take(&mut st.orphans)
    }

    /// Fails every outstanding chunk with `e` (the collector cannot
    /// deliver their results, or the pool is terminated), and returns the
    /// ids of their tasks and of the orphans, to delete: one step under
    /// the lock, so a task whose id is recorded concurrently (a
    /// submission under way) is either among those returned, or, recorded
    /// later, finds its chunk gone and becomes an orphan.
    pub(super) fn fail_all(&self, e: &TaskError) -> Vec<String> {
        let (failed, queued, ids): (Vec<(Arc<Batch>, Vec<u64>)>, _, _) = {
            let mut st = self.lock();
            // Their chunks are among those failed here (dropped unlocked).
            let queued = std::mem::take(&mut st.queue);
            let mut ids = std::mem::take(&mut st.orphans);
            let failed = st
                .calls
                .drain()
                .map(|(_, o)| {
                    let mut seqs = Vec::with_capacity(o.chunks.len());
                    for (seq, id) in o.chunks {
                        seqs.push(seq);
                        ids.extend(id);
                    }
                    (o.batch, seqs)
                })
                .collect();
            (failed, queued, ids)
        };
        drop(queued);
        for (batch, seqs) in failed {
            for seq in seqs {
                batch.deliver(seq, Err(e.clone()));
            }
        }
        self.idle.notify_all();
        ids
    }

    /// The chunks whose task the server has added (their id recorded),
    /// by call and chunk number.
    fn added(&self) -> Vec<(u64, u64)> {
        let st = self.lock();
        let mut out = Vec::new();
        for (&call, o) in &st.calls {
            out.extend(
                o.chunks
                    .iter()
                    .filter(|(_, id)| id.is_some())
                    .map(|(&seq, _)| (call, seq)),
            );
        }
        out
    }

    /// Fails those of `chunks` still outstanding with `e`, and returns
    /// the ids of their tasks, to delete.
    fn fail_chunks(&self, chunks: &[(u64, u64)], e: &TaskError) -> Vec<String> {
        let mut failed = Vec::new();
        let mut ids = Vec::new();
        {
            let mut st = self.lock();
            for &(call, seq) in chunks {
                let Some(o) = st.calls.get_mut(&call) else {
                    continue;
                };
                if let Some(id) = o.chunks.remove(&seq) {
                    ids.extend(id);
                    failed.push((Arc::clone(&o.batch), seq));
                }
            }
        }
        for (batch, seq) in failed {
            batch.deliver(seq, Err(e.clone()));
        }
        self.idle.notify_all();
        ids
    }

    /// Ids of the tasks of calls that were cancelled (a dropped `imap`, a
    /// `map` that stopped at a failure), now forgotten; calls whose
    /// results nobody can read any more are forgotten once their last
    /// chunk is done (their tasks still run, and `join` waits for them:
    /// an `apply_async` runs even if its result is dropped).
    fn take_cancelled(&self) -> Vec<String> {
        let mut st = self.lock();
        let mut ids = std::mem::take(&mut st.orphans);
        st.calls.retain(|_, o| {
            if o.batch.cancelled() {
                ids.extend(o.chunks.drain().filter_map(|(_, id)| id));
                return false;
            }
            !o.chunks.is_empty() || Arc::strong_count(&o.batch) > 1
        });
        if st.calls.values().all(|o| o.chunks.is_empty()) {
            self.idle.notify_all();
        }
        ids
    }

    /// Whether no chunk waits for a result.
    pub(super) fn quiet(st: &State) -> bool {
        st.calls.values().all(|o| o.chunks.is_empty())
    }

    /// Hands a result entry to its call.
    fn deliver(&self, fields: &HashMap<&[u8], &[u8]>) {
        let num = |k: &[u8]| {
            fields
                .get(k)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let (Some(call), Some(seq)) = (num(b"b"), num(b"s")) else {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (batch, name, signature) = {
            let mut st = self.lock();
            let Some(o) = st.calls.get_mut(&call) else {
                // A call forgotten (cancelled, or its result dropped), or
                // a second result of a task submitted twice: the first
                // one stands.
                return;
            };
            if o.chunks.remove(&seq).is_none() {
                return;
            }
            // Forgotten by the collector once nobody holds its batch.
            let found = (Arc::clone(&o.batch), o.name, Arc::clone(&o.signature));
            if Inner::quiet(&st) {
                self.idle.notify_all();
            }
            found
        };
        let text = |k: &[u8]| {
            fields
                .get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let result = match fields.get(&b"k"[..]).copied() {
            Some(b"ok") => match fields.get(&b"r"[..]) {
                Some(r) => Ok(Reply {
                    bytes: r.to_vec(),
                    fds: Vec::new(),
                }),
                None => Err(malformed("a result without its field `r`")),
            },
            Some(b"lost") => match num(b"r") {
                Some(attempts) => Err(TaskError::WorkerLost { attempts }),
                None => Err(malformed("a lost task's result without its count")),
            },
            Some(b"unknown") => Err(TaskError::Incompatible {
                task: name.to_string(),
                caller: signature.to_string(),
                worker: None,
            }),
            Some(b"incompatible") => Err(TaskError::Incompatible {
                task: name.to_string(),
                caller: signature.to_string(),
                worker: text(b"r"),
            }),
            Some(b"malformed") => Err(TaskError::ArgsDecode {
                type_name: "a task entry".into(),
                message: text(b"r").unwrap_or_default(),
            }),
            _ => {
                self.malformed.fetch_add(1, Ordering::Relaxed);
                Err(malformed("a result of unknown kind"))
            }
        };
        batch.deliver(seq, result);
    }
}

fn malformed(why: &str) -> TaskError {
    TaskError::ResultDecode {
        type_name: "a Redis pool result",
        message: why.to_string(),
    }
}

/// One call's sink: adds its chunks to the task stream.
struct Call {
    inner: Arc<Inner>,
    id: u64,
    name: &'static str,
    signature: Arc<str>,
    background: bool,
}

impl ChunkSink for Call {
    fn submit(&self, batch: &Arc<Batch>, seq: u64, message: Vec<u8>) {
        let inner = &self.inner;
        let chunk = Chunk {
            call: self.id,
            name: self.name,
            signature: Arc::clone(&self.signature),
            batch: Arc::clone(batch),
            seq,
            message,
        };
        {
            let mut st = inner.lock();
            let refused = match (&st.broken, st.phase) {
                (Some(e), _) => Some(e.clone()),
                (None, Phase::Open) => None,
                (None, Phase::Closed) => Some(TaskError::PoolClosed),
                (None, Phase::Terminated) => Some(TaskError::PoolTerminated),
            };
            if let Some(e) = refused {
                drop(st);
                batch.deliver(seq, Err(e));
                return;
            }
            // Listed before it is added: its result may come at once.
            st.calls
                .entry(self.id)
                .or_insert_with(|| Outstanding {
                    batch: Arc::clone(batch),
                    name: self.name,
                    signature: Arc::clone(&self.signature),
                    chunks: HashMap::new(),
                })
                .chunks
                .insert(seq, None);
            if self.background {
                st.queue.push_back(chunk);
                inner.work.notify_all();
                return;
            }
        }
        add(inner, &inner.conn, chunk);
    }

    fn window(&self) -> usize {
        self.inner.window
    }
}

/// Adds `chunk` to the task stream, retrying a lost server for
/// `retry_for` (one attempt while it is known to be away), and records its
/// entry id, or fails it with [`TaskError::Unavailable`]. A chunk no
/// longer outstanding (failed, or its call cancelled) is not added.
fn add(inner: &Inner, conn: &Conn, chunk: Chunk) {
    let Chunk {
        call,
        name,
        signature,
        batch,
        seq,
        message,
    } = chunk;
    let outstanding = |st: &State| {
        st.calls
            .get(&call)
            .is_some_and(|o| o.chunks.contains_key(&seq))
    };
    if !outstanding(&inner.lock()) {
        return;
    }
    // While the server is known to be away, one attempt each: a map of
    // many chunks fails in one retry period, not one per chunk.
    let start = Instant::now();
    let give_up = if inner.unreachable() {
        start
    } else {
        start + conn.retry_for
    };
    let added: Result<String, Fail> = loop {
        // In slices, so that a pool being stopped is seen soon.
        let slice = (Instant::now() + SUBMIT_SLICE).min(give_up);
        let tried = conn.call(Some(slice), Duration::ZERO, |con| {
            scripts::SUBMIT
                .key(&inner.keys.tasks)
                .key(&inner.keys.meta)
                .key(inner.keys.caller(&inner.caller))
                .arg(inner.lease.as_millis() as u64)
                .arg("c")
                .arg(&inner.caller)
                .arg("b")
                .arg(call)
                .arg("s")
                .arg(seq)
                .arg("n")
                .arg(name)
                .arg("g")
                .arg(&*signature)
                .arg("m")
                .arg(u64::from(inner.retries) + 1)
                .arg("p")
                .arg(&message[..])
                .invoke(con)
        });
        let again = matches!(tried, Err(Fail::Unavailable(_)))
            && Instant::now() < give_up
            && !inner.stop.load(Ordering::Acquire);
        if !again {
            break tried;
        }
    };
    inner.set_unreachable(matches!(added, Err(Fail::Unavailable(_))));
    record(inner, conn, (call, seq), &batch, start.elapsed(), added);
}

/// Records what adding chunk `seq` of call `call` came to: its entry's
/// id (or, if the chunk is no longer outstanding, an orphan to delete), or
/// its failure, delivered to `batch` (`took`: how long it was tried).
fn record(
    inner: &Inner,
    conn: &Conn,
    (call, seq): (u64, u64),
    batch: &Batch,
    took: Duration,
    added: Result<String, Fail>,
) {
    let mut st = inner.lock();
    let left = st.left;
    let slot = st.calls.get_mut(&call).and_then(|o| o.chunks.get_mut(&seq));
    match (added, slot) {
        (Ok(id), Some(slot)) => *slot = Some(id),
        // Delivered, failed or cancelled meanwhile: not to run.
        (Ok(id), None) if !left => st.orphans.push(id),
        // And `terminate` has deleted the others already (a `map` in
        // another thread): deleted here, best effort, as `terminate` does.
        (Ok(id), None) => {
            drop(st);
            let deadline = Instant::now() + conn.io_timeout;
            let _ = conn.call(Some(deadline), Duration::ZERO, |con| {
                redis::cmd("XDEL")
                    .arg(&inner.keys.tasks)
                    .arg(&id)
                    .query::<()>(con)
            });
        }
        (Err(_), None) => {}
        (Err(e), Some(_)) => {
            if let Some(o) = st.calls.get_mut(&call) {
                o.chunks.remove(&seq);
            }
            drop(st);
            let message = match e {
                Fail::Unavailable(e) => format!(
                    "could not add the task: the server stayed unreachable for {took:?}: {e}"
                ),
                Fail::Redis(e) => format!("could not add the task: the server refused: {e}"),
            };
            batch.deliver(seq, Err(TaskError::Unavailable { message }));
            inner.idle.notify_all();
        }
    }
}

/// The submitter thread: adds the queued chunks in order until `stop` is
/// set (chunks still queued then were failed by `terminate`).
fn submit_queued(inner: &Inner, conn: &Conn) {
    loop {
        let chunk = {
            let mut st = inner.lock();
            loop {
                if inner.stop.load(Ordering::Acquire) {
                    return;
                }
                if let Some(chunk) = st.queue.pop_front() {
                    break chunk;
                }
                st = inner.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        add(inner, conn, chunk);
    }
}

/// [`submit_queued`] (`submitter`) or [`collect`], and if it panics (a
/// bug in mpkit), every outstanding and later task fails instead of
/// waiting for ever.
pub(super) fn run_or_fail(inner: Arc<Inner>, conn: Conn, submitter: bool) {
    let for_thread = Arc::clone(&inner);
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        if submitter {
            submit_queued(&for_thread, &conn);
        } else {
            collect(for_thread, conn);
        }
    }));
    if let Err(payload) = ran {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = if submitter { "submitter" } else { "collector" };
        let e = TaskError::PoolBroken {
            message: format!("the Redis pool's {thread} thread panicked: {message}"),
        };
        inner.lock().broken = Some(e.clone());
        // Their tasks are deleted by `terminate`.
        let ids = inner.fail_all(&e);
        inner.lock().orphans.extend(ids);
    }
}

/// The collector thread: reads the caller's results stream and delivers
/// each result, renews the lease, deletes cancelled tasks; fails every
/// outstanding chunk when the server stays unreachable for `retry_for`,
/// lost the pool, or the lease expired. Ends when `stop` is set.
pub(super) fn collect(inner: Arc<Inner>, conn: Conn) {
    let results = inner.keys.results(&inner.caller);
    let caller_key = inner.keys.caller(&inner.caller);
    let mut last = "0-0".to_string();
    let mut handled: Vec<String> = Vec::new();
    let mut cancelled: Vec<String> = Vec::new();
    let mut failing_since: Option<Instant> = None;
    // Whether the pool's visibility timeout read last was not a number.
    let mut bad_visibility = false;
    // Renewed at least four times per lease.
    let block = COLLECT_BLOCK
        .min(inner.lease / 4)
        .max(Duration::from_millis(1));
    while !inner.stop.load(Ordering::Acquire) {
        cancelled.extend(inner.take_cancelled());
        // While the visibility timeout reads bad: the tasks added before
        // this read, which no worker can take. (One added later passed
        // `submit`'s check of the setting, and is not failed for a read
        // made before that.)
        let added_before = bad_visibility.then(|| inner.added());
        let mut pipe = redis::pipe();
        if !handled.is_empty() {
            pipe.cmd("XDEL").arg(&results).arg(&handled).ignore();
        }
        if !cancelled.is_empty() {
            pipe.cmd("XDEL")
                .arg(&inner.keys.tasks)
                .arg(&cancelled)
                .ignore();
        }
        pipe.cmd("SET")
            .arg(&caller_key)
            .arg(1)
            .arg("PX")
            .arg(inner.lease.as_millis() as u64)
            .arg("GET");
        pipe.cmd("PEXPIRE")
            .arg(&results)
            .arg(inner.lease.as_millis() as u64 * 2 + 1000)
            .ignore();
        pipe.cmd("EXISTS").arg(&inner.keys.meta);
        pipe.cmd("HGET").arg(&inner.keys.meta).arg("visibility_ms");
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(COLLECT_MAX)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&results)
            .arg(&last);
        // Short attempts, so that a pool being dropped is seen soon; the
        // retry period is counted here.
        let attempt = Instant::now() + Duration::from_secs(1);
        let reply: Result<Vec<Value>, Fail> =
            conn.call(Some(attempt), block, |con| pipe.query(con));
        let reply = match reply {
            Ok(r) => {
                failing_since = None;
                handled.clear();
                cancelled.clear();
                r
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                // A refusal comes back at once: not a loop at full speed.
                let refused = matches!(e, Fail::Redis(_));
                let message = match e {
                    Fail::Unavailable(e) => format!(
                        "the Redis server stayed unreachable for {:?}: {e}",
                        conn.retry_for
                    ),
                    Fail::Redis(e) => format!("the Redis server refused: {e}"),
                };
                if since.elapsed() >= conn.retry_for {
                    cancelled.extend(inner.fail_all(&TaskError::Unavailable { message }));
                }
                if refused {
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        let [lease, meta, visibility, read] = reply.as_slice() else {
            cancelled.extend(inner.fail_all(&TaskError::Unavailable {
                message: format!("unexpected reply from the Redis server: {reply:?}"),
            }));
            continue;
        };
        // Results first: those written before the lease expired, or
        // before the pool was lost, stand.
        let (found, unreadable) = entries(read);
        if unreadable > 0 {
            inner.malformed.fetch_add(unreadable, Ordering::Relaxed);
        }
        for (id, fields) in found {
            match fields {
                Some(fields) => inner.deliver(&fields),
                None => {
                    inner.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            last = id.clone();
            handled.push(id);
        }
        if matches!(meta, Value::Int(0)) {
            cancelled.extend(inner.fail_all(&TaskError::Unavailable {
                message: "the pool is gone from the Redis server (restarted without its data, or its keys were deleted)".into(),
            }));
        }
        bad_visibility = false;
        if let Value::BulkString(v) = visibility
            && scripts::visibility_ms(v).is_none()
        {
            // Overwritten by another client: no worker can take a task
            // (each `take` refuses), so these would never get a result.
            bad_visibility = true;
            let message = scripts::bad_visibility(&inner.keys.meta, v);
            let e = TaskError::Unavailable { message };
            cancelled.extend(inner.fail_chunks(added_before.as_deref().unwrap_or_default(), &e));
        }
        if matches!(lease, Value::Nil) {
            // Expired meanwhile (this process stopped, or cut off, for
            // longer than the lease): workers may have skipped its tasks.
            cancelled.extend(inner.fail_all(&TaskError::Unavailable {
                message: format!(
                    "this caller's lease of {:?} expired (the process was stopped or cut off from Redis), so workers may have skipped its tasks",
                    inner.lease
                ),
            }));
        }
    }
    // Not deleted yet (the last pipeline failed): `terminate` deletes
    // them.
    inner.lock().orphans.append(&mut cancelled);
}

/// An entry's id and fields (`None` when they are not pairs of strings).
type Entry<'a> = (String, Option<HashMap<&'a [u8], &'a [u8]>>);

/// The entries of an `XREAD` reply on one stream, and how many parts of
/// it were not entries at all.
fn entries(read: &Value) -> (Vec<Entry<'_>>, u64) {
    let list = match read {
        Value::Nil => return (Vec::new(), 0),
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(s)) if s.len() == 2 => &s[1],
            _ => return (Vec::new(), 1),
        },
        Value::Map(streams) => match streams.first() {
            Some((_, entries)) => entries,
            None => return (Vec::new(), 0),
        },
        _ => return (Vec::new(), 1),
    };
    let Value::Array(list) = list else {
        return (Vec::new(), 1);
    };
    let mut unreadable = 0;
    let found = list
        .iter()
        .filter_map(|e| {
            let entry = match e {
                Value::Array(t) => match t.as_slice() {
                    [Value::BulkString(id), fields] => {
                        Some((String::from_utf8_lossy(id).into_owned(), pairs(fields)))
                    }
                    _ => None,
                },
                _ => None,
            };
            if entry.is_none() {
                unreadable += 1;
            }
            entry
        })
        .collect();
    (found, unreadable)
}

/// A field list as a map (`None` if it is not pairs of strings).
pub(super) fn pairs(fields: &Value) -> Option<HashMap<&[u8], &[u8]>> {
    let Value::Array(f) = fields else {
        return None;
    };
    let mut out = HashMap::new();
    for pair in f.chunks(2) {
        match pair {
            [Value::BulkString(k), Value::BulkString(v)] => {
                out.insert(k.as_slice(), v.as_slice());
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
