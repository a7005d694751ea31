//! `Queue`, `JoinableQueue` and `SimpleQueue`: `multiprocessing`'s queues
//! on mpkit's crash-safe shared-memory ring (see `core.rs` for the message
//! format, names and waiting).

use mpkit::queue::ByteQueueKind;
use pyo3::exceptions::{PyAssertionError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::errors::TasksLostError;
use handle::{Core, empty, full, waiting};

mod handle;

pub(crate) fn register(m: &Bound<'_, PyModule>, names: &mut Vec<&'static str>) -> PyResult<()> {
    m.add_class::<Queue>()?;
    m.add_class::<JoinableQueue>()?;
    m.add_class::<SimpleQueue>()?;
    m.add_function(wrap_pyfunction!(_open_queue, m)?)?;
    names.extend(["Queue", "JoinableQueue", "SimpleQueue"]);
    Ok(())
}

/// The most messages `get_many` takes by default (faster-fifo's).
const MANY: usize = 1_000_000_000;

fn kind_code(kind: ByteQueueKind) -> u8 {
    match kind {
        ByteQueueKind::Queue => 0,
        ByteQueueKind::Joinable => 1,
        ByteQueueKind::Simple => 2,
    }
}

/// Reopens a pickled queue by its name in the process unpickling it.
#[pyfunction]
fn _open_queue(
    py: Python<'_>,
    kind: u8,
    name: &str,
    dumps: Option<Py<PyAny>>,
    loads: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    Ok(match kind {
        0 => Py::new(py, Queue::open(name, dumps, loads)?)?.into_any(),
        1 => Py::new(py, JoinableQueue::open(name, dumps, loads)?)?.into_any(),
        2 => Py::new(py, SimpleQueue::open(name, dumps, loads)?)?.into_any(),
        _ => return Err(PyValueError::new_err("not a queue kind")),
    })
}

fn reduce<'py>(
    py: Python<'py>,
    core: &Core,
    kind: ByteQueueKind,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
    let open = py.import("mpkit._mpkit")?.getattr("_open_queue")?;
    let (name, dumps, loads) = core.reduce_args(py);
    let args = (kind_code(kind), name, dumps, loads).into_pyobject(py)?;
    Ok((open, args))
}

/// A multi-producer, multi-consumer queue between processes, with
/// `multiprocessing.Queue`'s methods and exceptions, in shared memory.
///
/// ``Queue(maxsize=0, *, capacity=None, name=None, dumps=None, loads=None)``
///
/// - ``maxsize``: the most objects queued (0: no limit but bytes).
/// - ``capacity``: the shared ring's size in bytes (default 1 MiB, rounded
///   up to a power of two, at least 64; above 64 GiB is ``ValueError``).
///   Every message must fit it: one larger than ``capacity - 16`` bytes
///   raises ``ValueError``.
/// - ``name``: create the queue under this name (``FileExistsError`` if
///   taken); ``Queue.open(name)`` attaches to it, from Python or Rust
///   (``mpkit::queue::ByteQueue::open``). Without it a unique name is made.
///   The creating object removes the name when it is garbage collected or
///   at exit (not in a forked child).
/// - ``dumps``/``loads``: how objects become bytes and back (default
///   ``pickle.dumps(obj, 5)`` and ``pickle.loads``; ``json.dumps`` and
///   ``json.loads`` talk to Rust). ``bytes`` objects pass untouched.
///
/// Unlike ``multiprocessing.Queue`` there is no feeder thread: ``put``
/// returns once the object is in shared memory, so nothing is lost when the
/// process exits right after, and a killed process never corrupts the
/// queue. The queue pickles (into ``Process`` arguments under every start
/// method, ``Pool`` initargs, anywhere) by its name, so the creating object
/// must live until the other process has unpickled it (as
/// ``multiprocessing``'s own queues must): ``Process(target=f,
/// args=(Queue(),)).start()`` under spawn leaves the child a removed name
/// (``FileNotFoundError``). A subclass unpickles as ``Queue``.
#[pyclass(module = "mpkit", frozen, subclass)]
pub(crate) struct Queue {
    core: Core,
}

impl Queue {
    fn open(name: &str, dumps: Option<Py<PyAny>>, loads: Option<Py<PyAny>>) -> PyResult<Queue> {
        Ok(Queue {
            core: Core::open(ByteQueueKind::Queue, name, dumps, loads)?,
        })
    }

    fn check_open<'a>(slf: &'a Bound<'_, Self>) -> PyResult<&'a Core> {
        let core = &slf.get().core;
        if core.is_closed() {
            return Err(PyValueError::new_err(format!(
                "Queue {} is closed",
                slf.repr()?
            )));
        }
        Ok(core)
    }
}

#[pymethods]
impl Queue {
    #[new]
    #[pyo3(signature = (maxsize=0, *, capacity=None, name=None, dumps=None, loads=None, ctx=None))]
    fn new(
        maxsize: isize,
        capacity: Option<usize>,
        name: Option<&str>,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
        ctx: Option<Py<PyAny>>,
    ) -> PyResult<Queue> {
        let _ = ctx;
        Ok(Queue {
            core: Core::create(
                ByteQueueKind::Queue,
                name,
                maxsize.max(0) as usize,
                capacity,
                dumps,
                loads,
            )?,
        })
    }

    /// Attaches to the queue created under ``name`` (by this or another
    /// program). ``dumps``/``loads`` as for the constructor: the queue
    /// does not record them. A missing name is ``FileNotFoundError``; an
    /// object of another kind (a ``JoinableQueue`` opened as a ``Queue``)
    /// is ``ValueError`` naming both kinds.
    #[staticmethod]
    #[pyo3(name = "open", signature = (name, dumps=None, loads=None))]
    fn py_open(name: &str, dumps: Option<Py<PyAny>>, loads: Option<Py<PyAny>>) -> PyResult<Queue> {
        Queue::open(name, dumps, loads)
    }

    /// Puts ``obj``, waiting while the queue is full: for ever
    /// (``timeout=None``), at most ``timeout`` seconds, or not at all
    /// (``block=False``). Raises ``queue.Full`` when it gave up, and
    /// ``ValueError`` after ``close()``.
    #[pyo3(signature = (obj, block=true, timeout=None))]
    fn put(
        slf: &Bound<'_, Self>,
        obj: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let core = Queue::check_open(slf)?;
        let py = slf.py();
        match core.put(py, obj, waiting(block, timeout)?)? {
            Some(()) => Ok(()),
            None => Err(full(py, String::new())?),
        }
    }

    /// ``put(obj, False)``.
    fn put_nowait(slf: &Bound<'_, Self>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        Queue::put(slf, obj, false, None)
    }

    /// Puts every object of ``objs`` in order, as few times entering the
    /// queue as room allows (faster-fifo's ``put_many``). Every object is
    /// encoded before any is put, so an iterator or ``dumps`` that raises,
    /// or an object too large for the queue (``ValueError``), puts none.
    /// Waits as ``put`` does; when it gives up it raises ``queue.Full``
    /// saying how many of the first objects were put (unlike
    /// faster-fifo's, which puts all or none). Any other exception
    /// raised once it began putting (``KeyboardInterrupt`` while it waits,
    /// ``mpkit.CorruptError``...) has a ``put_count`` attribute: how many
    /// of the first objects were put.
    #[pyo3(signature = (objs, block=true, timeout=None))]
    fn put_many(
        slf: &Bound<'_, Self>,
        objs: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let core = Queue::check_open(slf)?;
        let py = slf.py();
        let objs: Vec<Bound<'_, PyAny>> = objs.try_iter()?.collect::<PyResult<_>>()?;
        match core.put_many(py, &objs, waiting(block, timeout)?)? {
            Ok(()) => Ok(()),
            Err(done) => Err(full(
                py,
                format!("only the first {done} of {} objects were put", objs.len()),
            )?),
        }
    }

    /// Takes the next object, waiting while the queue is empty as ``put``
    /// waits while full. Raises ``queue.Empty`` when it gave up, and
    /// ``ValueError`` after ``close()``.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get(slf: &Bound<'_, Self>, block: bool, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let core = Queue::check_open(slf)?;
        let py = slf.py();
        match core.get(py, waiting(block, timeout)?)? {
            Some(obj) => Ok(obj),
            None => Err(empty(py)?),
        }
    }

    /// ``get(False)``.
    fn get_nowait(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Queue::get(slf, false, None)
    }

    /// Takes the objects queued when it looks, up to
    /// ``max_messages_to_get`` and about 1 MiB of messages (the first
    /// whatever its size), as a list (faster-fifo's ``get_many``); waits
    /// for the first as ``get`` does (``queue.Empty`` when it gave up).
    /// The list is never empty unless ``max_messages_to_get`` is 0. The
    /// batch leaves the shared queue at once: a process killed before it
    /// returns loses all of it (a ``JoinableQueue``'s ``join`` reports
    /// them as lost tasks).
    #[pyo3(signature = (block=true, timeout=None, max_messages_to_get=MANY))]
    fn get_many<'py>(
        slf: &Bound<'py, Self>,
        block: bool,
        timeout: Option<f64>,
        max_messages_to_get: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let core = Queue::check_open(slf)?;
        let py = slf.py();
        match core.get_many(py, max_messages_to_get, waiting(block, timeout)?)? {
            Some(list) => Ok(list),
            None => Err(empty(py)?),
        }
    }

    /// ``get_many(False, ...)``.
    #[pyo3(signature = (max_messages_to_get=MANY))]
    fn get_many_nowait<'py>(
        slf: &Bound<'py, Self>,
        max_messages_to_get: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        Queue::get_many(slf, false, None, max_messages_to_get)
    }

    /// The number of objects queued now (exact when it is read; others may
    /// change it at once). ``mpkit.CorruptError`` when the counts in
    /// shared memory are beyond what the ring can hold.
    fn qsize(&self) -> PyResult<usize> {
        self.core.qsize()
    }

    /// Whether no object is queued now.
    fn empty(&self) -> PyResult<bool> {
        Ok(self.core.qsize()? == 0)
    }

    /// Whether ``maxsize`` objects are queued now.
    fn full(&self) -> bool {
        self.core.queue().is_full()
    }

    /// This process will use this queue object no more: ``put`` and
    /// ``get`` on it raise ``ValueError`` from now on. Other objects and
    /// processes are not affected, and everything already put stays in
    /// the queue (there is no feeder thread to flush).
    fn close(&self) {
        self.core.close();
    }

    /// Returns at once after ``close()`` (there is no feeder thread: every
    /// ``put`` that returned is already in the queue). Before ``close()``,
    /// raises ``AssertionError`` as ``multiprocessing`` does.
    fn join_thread(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !slf.get().core.is_closed() {
            return Err(PyAssertionError::new_err(format!(
                "Queue {} not closed",
                slf.repr()?
            )));
        }
        Ok(())
    }

    /// Does nothing: there is no feeder thread whose flushing a process
    /// exit could wait for.
    fn cancel_join_thread(&self) {}

    /// The name other processes and programs open the queue by.
    #[getter]
    fn name(&self) -> &str {
        self.core.name()
    }

    /// The most objects queued (0: no limit but bytes).
    #[getter]
    fn maxsize(&self) -> usize {
        self.core.queue().maxsize()
    }

    /// The ring's size in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.core.queue().capacity()
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        reduce(slf.py(), &slf.get().core, slf.get().core.queue().kind())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let core = &slf.get().core;
        Ok(format!(
            "<mpkit.{} name={:?} maxsize={}>",
            slf.get_type().name()?,
            core.name(),
            core.queue().maxsize()
        ))
    }
}

/// A ``Queue`` that counts unfinished tasks, as
/// ``multiprocessing.JoinableQueue``: every ``put`` adds one,
/// ``task_done()`` removes one, ``join()`` waits for none.
///
/// A consumer killed between its ``get`` and its ``task_done`` does not
/// block ``join`` for ever: the queue records which process holds which
/// tasks, and ``join`` raises ``mpkit.TasksLostError`` naming it (those
/// tasks then count as done).
#[pyclass(module = "mpkit", frozen, extends = Queue)]
pub(crate) struct JoinableQueue;

impl JoinableQueue {
    fn open(
        name: &str,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> PyResult<PyClassInitializer<JoinableQueue>> {
        let core = Core::open(ByteQueueKind::Joinable, name, dumps, loads)?;
        Ok(PyClassInitializer::from(Queue { core }).add_subclass(JoinableQueue))
    }
}

#[pymethods]
impl JoinableQueue {
    #[new]
    #[pyo3(signature = (maxsize=0, *, capacity=None, name=None, dumps=None, loads=None, ctx=None))]
    fn new(
        maxsize: isize,
        capacity: Option<usize>,
        name: Option<&str>,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
        ctx: Option<Py<PyAny>>,
    ) -> PyResult<PyClassInitializer<JoinableQueue>> {
        let _ = ctx;
        let core = Core::create(
            ByteQueueKind::Joinable,
            name,
            maxsize.max(0) as usize,
            capacity,
            dumps,
            loads,
        )?;
        Ok(PyClassInitializer::from(Queue { core }).add_subclass(JoinableQueue))
    }

    /// Attaches to the joinable queue created under ``name``.
    #[staticmethod]
    #[pyo3(name = "open", signature = (name, dumps=None, loads=None))]
    fn py_open(
        py: Python<'_>,
        name: &str,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> PyResult<Py<JoinableQueue>> {
        Py::new(py, JoinableQueue::open(name, dumps, loads)?)
    }

    /// Marks one task taken from the queue as done. ``ValueError`` when
    /// called more times than objects were put.
    fn task_done(slf: &Bound<'_, Self>) -> PyResult<()> {
        let q = slf.as_super().get().core.queue();
        // Without the GIL: a call no holder accounts for waits for the
        // consumers' section, which another process may hold a while.
        slf.py()
            .detach(|| q.task_done())
            .map_err(|_| PyValueError::new_err("task_done() called too many times"))
    }

    /// Waits until every object put so far has been taken and marked done
    /// (``task_done``). Raises ``mpkit.TasksLostError`` when it finds a
    /// process that died holding tasks, and ``mpkit.CorruptError`` when
    /// another process overwrote the task counts (more done than put).
    fn join(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let q = slf.as_super().get().core.queue();
        let lost = crate::blocking::wait_sliced(py, None, |slice| {
            use mpkit::queue::JoinTimeoutError as E;
            match q.join_timeout(slice) {
                Ok(()) => Ok(Some(Vec::new())),
                Err(E::Timeout(_)) => Ok(None),
                Err(E::TasksLost(lost)) => Ok(Some(lost)),
                Err(E::Corrupt(why)) => Err(crate::errors::CorruptError::new_err(format!(
                    "queue {:?}: {why}",
                    q.name().unwrap_or_default()
                ))),
                Err(E::Io(source)) => Err(handle::os_error(
                    &source,
                    format!("waiting for tasks: {source}"),
                )),
            }
        })?
        .unwrap_or_default();
        if lost.is_empty() {
            return Ok(());
        }
        let each: Vec<(i32, u64)> = lost.iter().map(|m| (m.pid, m.count)).collect();
        let msg = format!(
            "processes died holding unfinished tasks: {}",
            each.iter()
                .map(|(pid, n)| format!("{n} by process {pid}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Err(TasksLostError::new_err((msg, each)))
    }
}

/// ``multiprocessing.SimpleQueue``: ``put``, ``get``, ``empty``,
/// ``close``, unbounded but for its byte ``capacity``. Takes the same
/// keyword arguments as ``Queue`` (but ``maxsize``).
#[pyclass(module = "mpkit", frozen)]
pub(crate) struct SimpleQueue {
    core: Core,
}

impl SimpleQueue {
    fn open(
        name: &str,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> PyResult<SimpleQueue> {
        Ok(SimpleQueue {
            core: Core::open(ByteQueueKind::Simple, name, dumps, loads)?,
        })
    }

    /// `multiprocessing.SimpleQueue` raises `OSError` once closed (its
    /// pipe is).
    fn check_open(&self) -> PyResult<&Core> {
        if self.core.is_closed() {
            return Err(PyOSError::new_err("handle is closed"));
        }
        Ok(&self.core)
    }
}

#[pymethods]
impl SimpleQueue {
    #[new]
    #[pyo3(signature = (*, capacity=None, name=None, dumps=None, loads=None, ctx=None))]
    fn new(
        capacity: Option<usize>,
        name: Option<&str>,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
        ctx: Option<Py<PyAny>>,
    ) -> PyResult<SimpleQueue> {
        let _ = ctx;
        Ok(SimpleQueue {
            core: Core::create(ByteQueueKind::Simple, name, 0, capacity, dumps, loads)?,
        })
    }

    /// Attaches to the simple queue created under ``name``.
    #[staticmethod]
    #[pyo3(name = "open", signature = (name, dumps=None, loads=None))]
    fn py_open(
        name: &str,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> PyResult<SimpleQueue> {
        SimpleQueue::open(name, dumps, loads)
    }

    /// Puts ``obj``, waiting while the ring is full.
    fn put(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_open()?.put(py, obj, None)?;
        Ok(())
    }

    /// Takes the next object, waiting while the queue is empty.
    fn get(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.check_open()?.get(py, None)? {
            Some(obj) => Ok(obj),
            // Without a timeout the wait ends only with an object.
            None => Err(empty(py)?),
        }
    }

    /// Whether no object is queued now.
    fn empty(&self) -> PyResult<bool> {
        Ok(self.check_open()?.qsize()? == 0)
    }

    /// This object will be used no more: its ``put``, ``get`` and
    /// ``empty`` raise ``OSError`` from now on. Others are not affected.
    fn close(&self) {
        self.core.close();
    }

    /// The name other processes and programs open the queue by.
    #[getter]
    fn name(&self) -> &str {
        self.core.name()
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        reduce(slf.py(), &slf.get().core, ByteQueueKind::Simple)
    }

    fn __repr__(&self) -> String {
        format!("<mpkit.SimpleQueue name={:?}>", self.core.name())
    }
}
