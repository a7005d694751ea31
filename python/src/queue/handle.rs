//! What the three queue classes share: a [`ByteQueue`] of one kind, the
//! message format, names and who removes them, and the calls that wait.
//!
//! # Message format
//! A message is what the queue's `dumps` returned (by default
//! `pickle.dumps(obj, 5)`; a `str` is sent as UTF-8), except that:
//! - an object of type `bytes` itself is sent untouched after a `0x00`
//!   byte, and comes out as the same `bytes`;
//! - a `dumps` output that starts with `0x00` or `0x01`, or is empty, is
//!   sent after a `0x01` byte.
//!
//! Pickle (which starts with `0x80`) and JSON (text) thus go as they are,
//! so a Rust program reads and writes them on a plain `ByteQueue`; it
//! sends raw bytes to Python with a leading `0x00`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mpkit::queue::{
    ByteQueue, ByteQueueKind, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError,
};
use mpkit::shm::ShmError;
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::blocking::{wait_for, wait_sliced};
use crate::errors::CorruptError;
use crate::names;

/// First byte of a message holding a `bytes` object untouched.
const RAW: u8 = 0;
/// First byte of a message whose `dumps` output follows.
const ESCAPED: u8 = 1;

/// A batch (`get_many`) ends after about this many bytes of messages: it
/// copies them out of the ring, and larger batches only cost fresh memory.
const BATCH_BYTES: usize = 1 << 20;

/// The fewest bytes a record takes in the ring (its header, padded to a
/// cache line: ARCHITECTURE.md, the queue ring's layout).
const RECORD_MIN: usize = 64;

/// The byte capacity of a queue made without one: mpkit's default.
pub(crate) const DEFAULT_CAPACITY: usize = mpkit::queue::DEFAULT_CAPACITY;

static PICKLE_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PICKLE_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static FULL: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
static EMPTY: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();

/// `queue.Full`, as `multiprocessing` raises it.
pub(crate) fn full(py: Python<'_>, msg: String) -> PyResult<PyErr> {
    Ok(PyErr::from_type(
        FULL.import(py, "queue", "Full")?.clone(),
        msg,
    ))
}

/// `queue.Empty`.
pub(crate) fn empty(py: Python<'_>) -> PyResult<PyErr> {
    Ok(PyErr::from_type(
        EMPTY.import(py, "queue", "Empty")?.clone(),
        (),
    ))
}

/// Python's exception for an mpkit object that could not be made or
/// opened: a bad name or capacity is `ValueError`, and an error from the
/// system keeps its errno, so `e.errno` says EMFILE or ENOSPC and EACCES
/// is a `PermissionError`. An object of another kind (a `JoinableQueue`
/// opened as a `Queue`) or element type is `ValueError` naming both, as
/// the other classes raise it.
pub(crate) fn shm_error(e: ShmError, name: &str) -> PyErr {
    let msg = format!("queue {name:?}: {e}");
    if let ShmError::Io(io) = &e {
        return os_error(io, msg);
    }
    match e {
        ShmError::NotFound(_) => PyFileNotFoundError::new_err(msg),
        ShmError::Exists(_) => PyFileExistsError::new_err(msg),
        ShmError::InvalidName(_)
        | ShmError::TooLarge { .. }
        | ShmError::WrongKind { .. }
        | ShmError::WrongElement { .. } => PyValueError::new_err(msg),
        ShmError::Corrupt(_) => CorruptError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

fn closed() -> PyErr {
    PyValueError::new_err("the queue was closed for every process (mpkit's close)")
}

fn too_large(size: usize, max: usize) -> PyErr {
    PyValueError::new_err(format!(
        "a message of {size} bytes can never fit this queue, whose largest message is \
         {max} bytes: make the queue with a larger `capacity`"
    ))
}

/// An `OSError` for a failed system call, with its errno when it has one
/// (so that `e.errno` can be matched and Python picks the subclass).
pub(crate) fn os_error(source: &std::io::Error, msg: String) -> PyErr {
    match source.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, msg)),
        None => PyOSError::new_err(msg),
    }
}

/// What a timed put reports that is not "full".
fn put_failure<T>(e: PutTimeoutError<T>) -> PyErr {
    match e {
        PutTimeoutError::TooLarge { size, max, .. } => too_large(size, max),
        PutTimeoutError::Closed(_) => closed(),
        e @ PutTimeoutError::Corrupt { .. } => CorruptError::new_err(e.to_string()),
        PutTimeoutError::Io { ref source, .. } => os_error(source, e.to_string()),
        e => PyOSError::new_err(e.to_string()),
    }
}

/// What a try put reports that is not "full".
fn try_put_failure<T>(e: TryPutError<T>) -> PyErr {
    match e {
        TryPutError::TooLarge { size, max, .. } => too_large(size, max),
        TryPutError::Closed(_) => closed(),
        e @ TryPutError::Corrupt { .. } => CorruptError::new_err(e.to_string()),
        TryPutError::Io { ref source, .. } => os_error(source, e.to_string()),
        e => PyOSError::new_err(e.to_string()),
    }
}

/// How many messages a `put_many_timeout` that failed had put.
fn put_count(e: &PutTimeoutError<usize>) -> usize {
    match e {
        PutTimeoutError::Timeout(n) | PutTimeoutError::Closed(n) => *n,
        PutTimeoutError::TooLarge { value, .. }
        | PutTimeoutError::Encode { value, .. }
        | PutTimeoutError::Corrupt { value, .. }
        | PutTimeoutError::Io { value, .. } => *value,
        _ => 0,
    }
}

/// How many messages a `try_put_many` that failed had put.
fn try_put_count(e: &TryPutError<usize>) -> usize {
    match e {
        TryPutError::Full(n) | TryPutError::Closed(n) => *n,
        TryPutError::TooLarge { value, .. }
        | TryPutError::Encode { value, .. }
        | TryPutError::Corrupt { value, .. }
        | TryPutError::Io { value, .. } => *value,
        _ => 0,
    }
}

/// What a timed get reports that is not "empty".
fn get_failure(e: GetTimeoutError) -> PyErr {
    match e {
        GetTimeoutError::Closed => closed(),
        e @ GetTimeoutError::Corrupt(_) => CorruptError::new_err(e.to_string()),
        GetTimeoutError::Io(ref source) => os_error(source, e.to_string()),
        e => PyOSError::new_err(e.to_string()),
    }
}

/// What a try get reports that is not "empty".
fn try_get_failure(e: TryGetError) -> PyErr {
    match e {
        TryGetError::Closed => closed(),
        e @ TryGetError::Corrupt(_) => CorruptError::new_err(e.to_string()),
        TryGetError::Io(ref source) => os_error(source, e.to_string()),
        e => PyOSError::new_err(e.to_string()),
    }
}

/// `timeout` as `multiprocessing` takes it: a negative one does not wait.
pub(crate) fn waiting(block: bool, timeout: Option<f64>) -> PyResult<Option<Duration>> {
    wait_for(block, timeout.map(|t| if t < 0.0 { 0.0 } else { t }))
}

/// An encoded message: the `dumps` output as it is, or a copy with a
/// leading byte.
enum Msg<'py> {
    Dumped(Bound<'py, PyBytes>),
    Tagged(Vec<u8>),
}

impl Msg<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Msg::Dumped(b) => b.as_bytes(),
            Msg::Tagged(v) => v,
        }
    }
}

fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(tag);
    v.extend_from_slice(body);
    v
}

/// One handle to a queue: see the module docs.
pub(crate) struct Core {
    q: ByteQueue,
    /// The process that created the name and removes it when this handle
    /// goes (0: opened, never removes it).
    creator: u32,
    /// `close()` was called on this handle.
    closed: AtomicBool,
    dumps: Option<Py<PyAny>>,
    loads: Option<Py<PyAny>>,
    /// Messages this handle took and has not handed out: the rest of a
    /// batch cut short by a message `loads` refused (that one first).
    pending: Mutex<VecDeque<Vec<u8>>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        // A forked child inherits the handle, not the duty to remove the
        // name (multiprocessing's objects behave the same).
        if self.creator != std::process::id() {
            self.q.keep();
            return;
        }
        if let Some(name) = self.q.name() {
            names::dropped(name);
        }
    }
}

impl Core {
    /// A new queue, named `name` or a fresh name.
    pub(crate) fn create(
        kind: ByteQueueKind,
        name: Option<&str>,
        maxsize: usize,
        capacity: Option<usize>,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> PyResult<Core> {
        let name = name.map_or_else(names::fresh, str::to_string);
        let capacity = capacity.unwrap_or(DEFAULT_CAPACITY);
        let q = ByteQueue::create_kind(kind, Some(&name), maxsize, capacity)
            .map_err(|e| shm_error(e, &name))?;
        let creator = std::process::id();
        names::created_now(&name);
        Ok(Core::wrap(q, creator, dumps, loads))
    }

    /// Attaches to the queue named `name`, of `kind`.
    pub(crate) fn open(
        kind: ByteQueueKind,
        name: &str,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> PyResult<Core> {
        let q = ByteQueue::open_kind(kind, name).map_err(|e| shm_error(e, name))?;
        Ok(Core::wrap(q, 0, dumps, loads))
    }

    fn wrap(
        q: ByteQueue,
        creator: u32,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> Core {
        Core {
            q,
            creator,
            closed: AtomicBool::new(false),
            dumps,
            loads,
            pending: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn queue(&self) -> &ByteQueue {
        &self.q
    }

    pub(crate) fn name(&self) -> &str {
        self.q.name().unwrap_or("")
    }

    /// What pickling passes to the reopening function: the name and the
    /// codec.
    pub(crate) fn reduce_args(
        &self,
        py: Python<'_>,
    ) -> (String, Option<Py<PyAny>>, Option<Py<PyAny>>) {
        (
            self.name().to_string(),
            self.dumps.as_ref().map(|d| d.clone_ref(py)),
            self.loads.as_ref().map(|l| l.clone_ref(py)),
        )
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages queued, counting those this handle took and holds.
    /// `CorruptError` for a count no ring of this capacity can hold (each
    /// record takes 64 bytes at least): the counts in shared memory were
    /// written by another process, and a garbage count must not pass for
    /// a queue length.
    pub(crate) fn qsize(&self) -> PyResult<usize> {
        let queued = self.q.len();
        let most = self.q.capacity() / RECORD_MIN;
        if queued > most {
            return Err(CorruptError::new_err(format!(
                "the queue is corrupt: its counts say {queued} messages are queued, \
                 more than the {most} records a {}-byte ring holds",
                self.q.capacity()
            )));
        }
        Ok(queued + self.pending().len())
    }

    fn encode<'py>(&self, py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Msg<'py>> {
        if let Ok(b) = obj.cast_exact::<PyBytes>() {
            return Ok(Msg::Tagged(tagged(RAW, b.as_bytes())));
        }
        let out = match &self.dumps {
            None => PICKLE_DUMPS
                .import(py, "pickle", "dumps")?
                .call1((obj, 5))?,
            Some(dumps) => dumps.bind(py).call1((obj,))?,
        };
        let bytes = if let Ok(s) = out.cast::<PyString>() {
            PyBytes::new(py, s.to_cow()?.as_bytes())
        } else if let Ok(b) = out.cast_into_exact::<PyBytes>() {
            b
        } else {
            return Err(PyTypeError::new_err(
                "the queue's dumps must return bytes or str",
            ));
        };
        Ok(match bytes.as_bytes().first() {
            None | Some(&RAW) | Some(&ESCAPED) => Msg::Tagged(tagged(ESCAPED, bytes.as_bytes())),
            Some(_) => Msg::Dumped(bytes),
        })
    }

    fn decode(&self, py: Python<'_>, msg: &[u8]) -> PyResult<Py<PyAny>> {
        let body = match msg.first() {
            Some(&RAW) => return Ok(PyBytes::new(py, &msg[1..]).into_any().unbind()),
            Some(&ESCAPED) => &msg[1..],
            _ => msg,
        };
        let body = PyBytes::new(py, body);
        let loads = match &self.loads {
            None => PICKLE_LOADS.import(py, "pickle", "loads")?,
            Some(l) => l.bind(py),
        };
        Ok(loads.call1((body,))?.unbind())
    }

    /// Puts `obj`; `None` when it stayed full for `wait`.
    pub(crate) fn put(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        wait: Option<Duration>,
    ) -> PyResult<Option<()>> {
        let msg = self.encode(py, obj)?;
        let bytes = msg.as_slice();
        let q = &self.q;
        // First with the GIL held: a put that finds room then costs no
        // hand-over of the GIL (a try waits at most 1 ms for a member
        // inside the producers' side).
        match q.try_put(bytes) {
            Ok(()) => return Ok(Some(())),
            Err(TryPutError::Full(_)) if wait == Some(Duration::ZERO) => return Ok(None),
            Err(TryPutError::Full(_)) => {}
            Err(e) => return Err(try_put_failure(e)),
        }
        wait_sliced(py, wait, |slice| {
            let put = if slice.is_zero() {
                q.try_put(bytes).map_err(|e| match e {
                    TryPutError::Full(_) => None,
                    e => Some(try_put_failure(e)),
                })
            } else {
                q.put_timeout(bytes, slice).map_err(|e| match e {
                    PutTimeoutError::Timeout(_) => None,
                    e => Some(put_failure(e)),
                })
            };
            match put {
                Ok(()) => Ok(Some(())),
                Err(None) => Ok(None),
                Err(Some(e)) => Err(e),
            }
        })
    }

    /// Puts every object in order; `Err(n)` when the queue stayed full
    /// for `wait` after the first `n`. An error raised once it began
    /// putting (`KeyboardInterrupt`, `CorruptError`...) carries how many
    /// were put as its `put_count` attribute.
    pub(crate) fn put_many(
        &self,
        py: Python<'_>,
        objs: &[Bound<'_, PyAny>],
        wait: Option<Duration>,
    ) -> PyResult<Result<(), usize>> {
        let msgs = objs
            .iter()
            .map(|o| self.encode(py, o))
            .collect::<PyResult<Vec<_>>>()?;
        let slices: Vec<&[u8]> = msgs.iter().map(Msg::as_slice).collect();
        let q = &self.q;
        let mut done = 0;
        let finished = wait_sliced(py, wait, |slice| {
            let rest = &slices[done..];
            let put = if slice.is_zero() {
                q.try_put_many(rest).map_err(|e| match e {
                    TryPutError::Full(n) => (n, None),
                    e => (try_put_count(&e), Some(try_put_failure(e))),
                })
            } else {
                q.put_many_timeout(rest, slice).map_err(|e| match e {
                    PutTimeoutError::Timeout(n) => (n, None),
                    e => (put_count(&e), Some(put_failure(e))),
                })
            };
            match put {
                Ok(()) => Ok(Some(())),
                Err((n, failure)) => {
                    done += n;
                    failure.map_or(Ok(None), Err)
                }
            }
        });
        match finished {
            Ok(finished) => Ok(finished.ok_or(done)),
            Err(e) => {
                // Best effort: an exception that takes no attribute still
                // goes up as it is.
                let _ = e.value(py).setattr("put_count", done);
                Err(e)
            }
        }
    }

    /// Takes up to `max` raw messages (at least one, at most about
    /// [`BATCH_BYTES`]); `None` when it stayed empty for `wait`.
    fn take(
        &self,
        py: Python<'_>,
        max: usize,
        wait: Option<Duration>,
    ) -> PyResult<Option<Vec<Vec<u8>>>> {
        {
            let mut pending = self.pending();
            if !pending.is_empty() {
                let n = max.min(pending.len());
                return Ok(Some(pending.drain(..n).collect()));
            }
        }
        let q = &self.q;
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        let mut sink = |m: &[u8]| {
            if bytes + m.len() > BATCH_BYTES && !out.is_empty() {
                return false;
            }
            bytes += m.len();
            out.push(m.to_vec());
            true
        };
        // First with the GIL held, as `put` does.
        match q.try_get_with(max, &mut sink) {
            Ok(_) => return Ok(Some(out)),
            Err(TryGetError::Empty) if wait == Some(Duration::ZERO) => return Ok(None),
            Err(TryGetError::Empty) => {}
            Err(e) => return Err(try_get_failure(e)),
        }
        let got = wait_sliced(py, wait, |slice| {
            let got = if slice.is_zero() {
                q.try_get_with(max, &mut sink).map_err(|e| match e {
                    TryGetError::Empty => None,
                    e => Some(try_get_failure(e)),
                })
            } else {
                q.get_with_timeout(max, slice, &mut sink)
                    .map_err(|e| match e {
                        GetTimeoutError::Timeout => None,
                        e => Some(get_failure(e)),
                    })
            };
            match got {
                Ok(_) => Ok(Some(())),
                Err(None) => Ok(None),
                Err(Some(e)) => Err(e),
            }
        })?;
        Ok(got.map(|()| out))
    }

    /// Takes one object; `None` when it stayed empty for `wait`.
    pub(crate) fn get(
        &self,
        py: Python<'_>,
        wait: Option<Duration>,
    ) -> PyResult<Option<Py<PyAny>>> {
        match self.take(py, 1, wait)? {
            Some(msgs) => {
                let msg = msgs
                    .into_iter()
                    .next()
                    .expect("a take returns one message at least");
                self.decode(py, &msg).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Takes up to `max` objects; `None` when it stayed empty for `wait`.
    /// A message `loads` refuses ends the batch: it is raised if first,
    /// else kept for the next get (with the rest of the batch).
    pub(crate) fn get_many<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        wait: Option<Duration>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        if max == 0 {
            return Ok(Some(PyList::empty(py)));
        }
        let Some(msgs) = self.take(py, max, wait)? else {
            return Ok(None);
        };
        let out = PyList::empty(py);
        let mut msgs = msgs.into_iter();
        while let Some(msg) = msgs.next() {
            match self.decode(py, &msg) {
                Ok(obj) => out.append(obj)?,
                Err(e) => {
                    let first = out.is_empty();
                    let mut pending = self.pending();
                    let rest: Vec<Vec<u8>> = if first {
                        msgs.collect()
                    } else {
                        std::iter::once(msg).chain(msgs).collect()
                    };
                    for m in rest.into_iter().rev() {
                        pending.push_front(m);
                    }
                    if first {
                        return Err(e);
                    }
                    break;
                }
            }
        }
        Ok(Some(out))
    }
}
