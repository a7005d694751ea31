"""mpkit's Queue, JoinableQueue and SimpleQueue: every method, between real
processes under each start method, side by side with multiprocessing's where
the behaviour should match."""

import gc
import json
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time

import pytest

import mpkit

CONTEXTS = ["fork", "spawn", "forkserver"]
#: Seconds a test waits for another process before it counts as a failure.
PATIENCE = 20


def both_queues(maxsize=0):
    """An mpkit Queue and a multiprocessing one, for side-by-side checks."""
    return [mpkit.Queue(maxsize), mp.Queue(maxsize)]


# --- children (module level, so spawn and forkserver can import them) -------


def _put_range(q, n):
    for i in range(n):
        q.put(i)


def _echo(inq, outq, n):
    for _ in range(n):
        outq.put(inq.get())  # SimpleQueue.get takes no timeout: the watchdog has it


def _work(q, n):
    for _ in range(n):
        q.get(timeout=PATIENCE)
        q.task_done()


def _take_one_and_die(q):
    q.get(timeout=PATIENCE)
    os._exit(0)


_pool_queue = None


def _pool_init(q):
    global _pool_queue
    _pool_queue = q


def _pool_task(x):
    _pool_queue.put(x * x)
    return x


# --- the multiprocessing.Queue interface -------------------------------------


@pytest.mark.parametrize("make", [mpkit.Queue, mp.Queue], ids=["mpkit", "mp"])
def test_full_and_empty_raise_as_multiprocessing_does(make):
    q = make(2)
    q.put(1)
    q.put(2)
    assert q.qsize() == 2
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    with pytest.raises(queue.Full):
        q.put(3, True, -1)  # a negative timeout does not wait
    assert q.get() == 1
    assert q.get_nowait() == 2
    assert q.qsize() == 0
    assert q.empty()
    assert not q.full()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get(True, -1)
    q.close()
    q.join_thread()


@pytest.mark.parametrize("make", [mpkit.Queue, mp.Queue], ids=["mpkit", "mp"])
def test_a_closed_queue_raises_value_error(make):
    q = make()
    with pytest.raises(AssertionError):
        q.join_thread()  # only after close()
    q.put(1)
    q.close()
    q.close()
    with pytest.raises(ValueError):
        q.put(2)
    with pytest.raises(ValueError):
        q.get()
    q.join_thread()
    q.cancel_join_thread()


def test_close_ends_only_this_handle():
    q = mpkit.Queue()
    other = pickle.loads(pickle.dumps(q))
    q.put("kept")
    q.close()
    assert other.get(timeout=PATIENCE) == "kept"
    other.put("still works")
    assert other.get_nowait() == "still works"


class Tagged(bytes):
    """A bytes subclass: pickled, so it keeps its type."""


def test_objects_and_bytes_come_back_as_they_went():
    items = [
        None,
        0,
        "text",
        {"a": [1, 2.5, ("t",)]},
        b"",
        b"\x00\x01 raw",
        b"\x01",
        bytearray(b"\x00ba"),
        Tagged(b"\x00sub"),
        list(range(10_000)),
    ]
    q = mpkit.Queue()
    for item in items:
        q.put(item)
    got = [q.get(timeout=PATIENCE) for _ in items]
    assert got == items
    assert [type(g) for g in got] == [type(i) for i in items]


def test_bytes_pass_untouched_and_tagged():
    q = mpkit.Queue()
    raw = mpkit.Queue.open(q.name, loads=lambda b: ("loaded", b))
    q.put(b"\x80payload")
    q.put("x")
    assert raw.get_nowait() == b"\x80payload"  # tag 0: never through loads
    kind, pickled = raw.get_nowait()
    assert kind == "loaded" and pickle.loads(pickled) == "x"


def test_dumps_and_loads_can_be_swapped():
    q = mpkit.Queue(dumps=json.dumps, loads=json.loads)
    peek = mpkit.Queue.open(q.name, loads=bytes)
    q.put({"n": 1})
    assert peek.get_nowait() == b'{"n": 1}'  # plain JSON, as Rust sees it
    q.put([1, "two"])
    q.put(b"\x00\x01")
    assert q.get_nowait() == [1, "two"]
    assert q.get_nowait() == b"\x00\x01"
    # dumps output starting with a tag byte is escaped, and comes back.
    esc = mpkit.Queue(dumps=lambda o: b"\x00" + o.encode(), loads=lambda b: b[1:].decode())
    esc.put("hi")
    assert esc.get_nowait() == "hi"
    with pytest.raises(TypeError):
        mpkit.Queue(dumps=lambda o: 42).put(1)


def test_put_many_and_get_many():
    q = mpkit.Queue()
    q.put_many(range(100))
    assert q.qsize() == 100
    assert q.get_many(max_messages_to_get=10) == list(range(10))
    assert q.get_many() == list(range(10, 100))
    assert q.get_many(max_messages_to_get=0) == []
    with pytest.raises(queue.Empty):
        q.get_many(block=False)
    with pytest.raises(queue.Empty):
        q.get_many(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get_many_nowait()
    small = mpkit.Queue(5)
    with pytest.raises(queue.Full, match="first 5 of 8"):
        small.put_many(range(8), block=False)
    assert small.get_many() == [0, 1, 2, 3, 4]
    with pytest.raises(queue.Full, match="first 5 of 8"):
        small.put_many(range(8), timeout=0.01)
    assert small.get_many_nowait(max_messages_to_get=2) == [0, 1]


def test_get_many_stops_before_a_message_loads_refuses():
    def loads(b):
        v = json.loads(b)
        if v == "bad":
            raise ValueError("refused")
        return v

    q = mpkit.Queue(dumps=json.dumps, loads=loads)
    q.put_many([1, "bad", 2, 3])
    assert q.get_many() == [1]
    assert q.qsize() == 3
    with pytest.raises(ValueError, match="refused"):
        q.get_many()
    assert q.get_many() == [2, 3]


def test_a_message_larger_than_the_capacity_is_value_error():
    q = mpkit.Queue(capacity=4096)
    assert q.capacity == 4096
    with pytest.raises(ValueError, match="capacity"):
        q.put(b"x" * 5000)
    q.put(b"x" * 4000)
    assert q.get_nowait() == b"x" * 4000


def test_properties_and_repr():
    q = mpkit.Queue(7)
    assert q.maxsize == 7
    assert q.name in repr(q)
    assert isinstance(mpkit.JoinableQueue(), mpkit.Queue)


# --- names --------------------------------------------------------------------


def test_named_queues_open_by_name(shm_name):
    q = mpkit.Queue(3, name=shm_name)
    assert q.name == shm_name
    with pytest.raises(FileExistsError):
        mpkit.Queue(name=shm_name)
    other = mpkit.Queue.open(shm_name)
    assert other.maxsize == 3
    other.put("hi")
    assert q.get_nowait() == "hi"
    with pytest.raises(ValueError, match="a Queue, not a JoinableQueue"):
        mpkit.JoinableQueue.open(shm_name)
    with pytest.raises(FileNotFoundError):
        mpkit.Queue.open(shm_name + "-missing")
    with pytest.raises(ValueError):
        mpkit.Queue(name="no/slash")


def test_the_creator_removes_the_name():
    q = mpkit.Queue()
    path = "/dev/shm/" + q.name
    assert os.path.exists(path)
    del q
    gc.collect()
    assert not os.path.exists(path)


def test_the_name_outlives_the_creator_in_a_forked_child():
    q = mpkit.Queue()
    path = "/dev/shm/" + q.name
    pid = os.fork()
    if pid == 0:  # the child drops its copy and exits
        code = 1
        try:
            q.put("from the child")
            del globals_holder[:]
            code = 0
        finally:
            os._exit(code)
    globals_holder.append(None)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.path.exists(path)
    assert q.get(timeout=PATIENCE) == "from the child"


globals_holder = []


def test_a_bare_fork_child_uses_the_queues_and_leaves_the_names():
    to_child, from_child = mpkit.Queue(), mpkit.Queue()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            from_child.put(("child", os.getpid()))
            assert to_child.get(timeout=PATIENCE) == "reply"
            code = 0
        finally:
            os._exit(code)
    assert from_child.get(timeout=PATIENCE) == ("child", pid)
    to_child.put("reply")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.path.exists("/dev/shm/" + to_child.name)


# --- between processes ----------------------------------------------------------


@pytest.mark.parametrize("method", CONTEXTS)
@pytest.mark.parametrize("cls", [mpkit.Queue, mpkit.JoinableQueue, mpkit.SimpleQueue])
def test_queues_pickle_into_process_arguments(method, cls):
    ctx = mp.get_context(method)
    inq, outq = cls(), cls()
    p = ctx.Process(target=_echo, args=(inq, outq, 3))
    p.start()
    for item in ["a", b"\x00b", {"c": 3}]:
        inq.put(item)
        assert outq.get() == item
    p.join(PATIENCE)
    assert p.exitcode == 0


@pytest.mark.parametrize("method", CONTEXTS)
def test_a_queue_passes_in_pool_initargs(method):
    q = mpkit.Queue()
    with mp.get_context(method).Pool(2, initializer=_pool_init, initargs=(q,)) as pool:
        assert sorted(pool.map(_pool_task, range(10))) == list(range(10))
    assert sorted(q.get(timeout=PATIENCE) for _ in range(10)) == [x * x for x in range(10)]


def test_many_producers_one_consumer():
    q = mpkit.Queue(16)
    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=_put_range, args=(q, 500)) for _ in range(4)]
    for p in ps:
        p.start()
    got = []
    while len(got) < 2000:
        got.extend(q.get_many(timeout=PATIENCE))
    for p in ps:
        p.join(PATIENCE)
        assert p.exitcode == 0
    assert sorted(got) == sorted(list(range(500)) * 4)


# --- JoinableQueue -----------------------------------------------------------


@pytest.mark.parametrize("make", [mpkit.JoinableQueue, mp.JoinableQueue], ids=["mpkit", "mp"])
def test_task_done_too_often_is_value_error(make):
    q = make()
    q.put(1)
    q.get(timeout=PATIENCE)
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()
    q.join()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_join_waits_for_every_task(method):
    q = mpkit.JoinableQueue()
    p = mp.get_context(method).Process(target=_work, args=(q, 20))
    p.start()
    for i in range(20):
        q.put(i)
    q.join()
    assert q.qsize() == 0
    p.join(PATIENCE)
    assert p.exitcode == 0


def test_join_reports_a_consumer_that_died_holding_a_task():
    q = mpkit.JoinableQueue()
    q.put("task")
    p = mp.get_context("fork").Process(target=_take_one_and_die, args=(q,))
    p.start()
    p.join(PATIENCE)
    with pytest.raises(mpkit.TasksLostError) as e:
        q.join()
    assert e.value.args[1] == [(p.pid, 1)]
    q.join()  # the lost task counts as done now


# --- SimpleQueue ---------------------------------------------------------------


@pytest.mark.parametrize("make", [mpkit.SimpleQueue, mp.SimpleQueue], ids=["mpkit", "mp"])
def test_simple_queue(make):
    q = make()
    assert q.empty()
    q.put({"x": 1})
    assert not q.empty()
    assert q.get() == {"x": 1}
    q.close()
    with pytest.raises(OSError):
        q.put(1)
    with pytest.raises(OSError):
        q.get()


def test_simple_queue_opens_by_name(shm_name):
    q = mpkit.SimpleQueue(name=shm_name, capacity=4096)
    mpkit.SimpleQueue.open(shm_name).put(b"hi")
    assert q.get() == b"hi"
    with pytest.raises(ValueError, match="a SimpleQueue, not a Queue"):
        mpkit.Queue.open(shm_name)


# --- waiting ---------------------------------------------------------------------


def test_a_blocked_get_releases_the_gil():
    q = mpkit.Queue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    # Runs only if the waiting thread let go of the GIL.
    q.put("to the thread")
    t.join(PATIENCE)
    assert got == ["to the thread"]


@pytest.mark.parametrize("call", ["get", "put", "get_many", "join"])
def test_ctrl_c_interrupts_a_blocked_call(call):
    q = mpkit.JoinableQueue(1)
    if call == "put":
        q.put(0)
    if call == "join":
        q.put(0)
    fn = {
        "get": lambda: q.get(),
        "put": lambda: q.put(1),
        "get_many": lambda: q.get_many(),
        "join": lambda: q.join(),
    }[call]
    old = signal.signal(signal.SIGALRM, signal.default_int_handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            fn()
        late = time.monotonic() - start - 0.2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert late < 0.1, f"the interrupt took {late * 1000:.0f} ms past the signal"


def test_a_timeout_is_honoured():
    q = mpkit.Queue()
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    took = time.monotonic() - start
    assert 0.2 <= took < 0.5


def test_shared_memory_another_process_scribbled_is_corrupt_error():
    import struct

    q = mpkit.Queue()
    q.put("a")
    # The producers' message count (offset 384, ARCHITECTURE.md's queue
    # layout), as a stray writer could leave it.
    fd = os.open("/dev/shm/" + q.name, os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack("<Q", 10**6), 384)
    finally:
        os.close(fd)
    with pytest.raises(mpkit.CorruptError, match="corrupt"):
        q.put("b")
    assert issubclass(mpkit.CorruptError, OSError)


def test_names_still_referenced_at_exit_are_removed():
    import subprocess
    import sys

    # A daemon thread blocked in get holds its queue past the interpreter's
    # last collection: only the atexit hook removes that name.
    code = (
        "import mpkit, threading\n"
        "qs = [mpkit.Queue(), mpkit.JoinableQueue(), mpkit.SimpleQueue()]\n"
        "for q in qs:\n"
        "    threading.Thread(target=q.get, daemon=True).start()\n"
        "print(' '.join(q.name for q in qs))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE, check=True
    ).stdout.split()
    assert len(out) == 3
    assert not [n for n in out if os.path.exists("/dev/shm/" + n)]
