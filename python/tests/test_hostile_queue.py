"""Hostile use of the queues: bad arguments, hostile codecs, many threads
on one object, forks and kills at awkward moments, shared memory changed
under blocked callers. Each must end in a clear Python exception (never a
PanicException, a crash or a hang) and lose or duplicate no message."""

import collections
import gc
import multiprocessing
import os
import queue
import resource
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import mpkit

#: Seconds a call that should return at once may take on a loaded machine.
PATIENCE = 10


def run_python(code, timeout=PATIENCE * 3):
    """Runs ``code`` in a fresh interpreter: a crash there (SIGBUS,
    SIGSEGV, abort) fails the test instead of ending the run."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- arguments -------------------------------------------------------------------


def test_a_capacity_above_the_limit_is_value_error():
    with pytest.raises(ValueError, match="capacity"):
        mpkit.Queue(capacity=10**13)
    with pytest.raises(ValueError, match="capacity"):
        mpkit.SimpleQueue(capacity=2**63)
    with pytest.raises(OverflowError):
        mpkit.Queue(capacity=-1)


def test_opening_another_kind_is_value_error():
    j = mpkit.JoinableQueue()
    s = mpkit.SimpleQueue()
    q = mpkit.Queue()
    try:
        with pytest.raises(ValueError, match="a JoinableQueue, not a Queue"):
            mpkit.Queue.open(j.name)
        with pytest.raises(ValueError, match="a SimpleQueue, not a JoinableQueue"):
            mpkit.JoinableQueue.open(s.name)
        with pytest.raises(ValueError, match="a Queue, not a SimpleQueue"):
            mpkit.SimpleQueue.open(q.name)
    finally:
        j = s = q = None  # the failure's traceback must not keep the names


@pytest.mark.parametrize("name", ["", "a/b", "a" * 300, "a\0b"])
def test_a_bad_name_is_value_error(name):
    with pytest.raises(ValueError):
        mpkit.Queue(name=name)
    with pytest.raises(ValueError):
        mpkit.Queue.open(name)


def test_out_of_descriptors_keeps_the_errno():
    r = run_python(
        """
        import errno, resource, mpkit
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
        keep = []
        try:
            while True:
                keep.append(mpkit.Queue(capacity=4096))
        except OSError as e:
            assert e.errno == errno.EMFILE, (e.errno, str(e))
            print("errno ok")
        """
    )
    assert r.returncode == 0, r.stderr
    assert "errno ok" in r.stdout


@pytest.mark.parametrize("timeout", [float("nan")])
def test_a_nan_timeout_is_value_error(timeout):
    q = mpkit.Queue(1)
    with pytest.raises(ValueError):
        q.get(timeout=timeout)
    q.put(0)
    with pytest.raises(ValueError):
        q.put(1, timeout=timeout)
    with pytest.raises(ValueError):
        q.put_many([1], timeout=timeout)


def test_hostile_codecs_raise_and_leave_the_queue_whole():
    q = mpkit.Queue(dumps=lambda o: 5)
    with pytest.raises(TypeError):
        q.put(1)
    q = mpkit.Queue(dumps=lambda o: "\ud800")
    with pytest.raises(UnicodeEncodeError):
        q.put(1)

    def gen():
        yield 1
        yield 2
        raise RuntimeError("midway")

    q = mpkit.Queue()
    with pytest.raises(RuntimeError, match="midway"):
        q.put_many(gen())
    # Nothing was put: the objects are taken before any is put.
    assert q.qsize() == 0
    q.put_many([1, 2, 3])
    assert q.get_many(timeout=PATIENCE) == [1, 2, 3]


def test_put_many_with_one_message_too_large_puts_none():
    q = mpkit.Queue(1, capacity=64)
    with pytest.raises(ValueError, match="capacity"):
        q.put_many([b"a", b"x" * 100], timeout=0.1)
    assert q.qsize() == 0


# --- threads of one process ------------------------------------------------------


def test_many_threads_on_one_object_lose_and_duplicate_nothing():
    q = mpkit.Queue(64, capacity=4096)
    n, threads = 2000, 6
    got = []
    lock = threading.Lock()
    done = threading.Event()

    def produce(k):
        for i in range(0, n, 4):
            q.put((k, i))
            q.put_many([(k, i + 1), (k, i + 2), (k, i + 3)])

    def consume():
        while not done.is_set():
            try:
                items = q.get_many(timeout=0.05, max_messages_to_get=7)
            except queue.Empty:
                continue
            with lock:
                got.extend(items)
                if len(got) == n * threads:
                    done.set()

    ts = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
    ts += [threading.Thread(target=consume) for _ in range(threads)]
    for t in ts:
        t.start()
    assert done.wait(PATIENCE * 3)
    for t in ts:
        t.join(PATIENCE)
    counts = collections.Counter(got)
    assert len(counts) == n * threads
    assert max(counts.values()) == 1
    assert q.qsize() == 0


def test_gc_while_another_thread_is_blocked_keeps_the_queue():
    q = mpkit.Queue()
    name = q.name
    got = []
    t = threading.Thread(target=lambda get: got.append(get(timeout=PATIENCE)), args=(q.get,))
    t.start()
    del q
    gc.collect()
    # The blocked call holds the object: the name is still there.
    mpkit.Queue.open(name).put("still here")
    t.join(PATIENCE)
    assert got == ["still here"]
    gc.collect()
    assert not os.path.exists("/dev/shm/" + name)


# --- fork, kill, Ctrl-C ----------------------------------------------------------


def _child_after_fork(q, out):
    q.put("from the child")
    out.put(q.get(timeout=PATIENCE))


def _child_takes_one(q, out):
    out.put(q.get(timeout=PATIENCE))


def test_fork_while_another_thread_is_blocked_in_put():
    q = mpkit.Queue(1)
    q.put("first")
    out = mpkit.Queue()
    t = threading.Thread(target=q.put, args=("second",), kwargs={"timeout": PATIENCE * 2})
    t.start()
    p = multiprocessing.get_context("fork").Process(target=_child_takes_one, args=(q, out))
    p.start()
    p.join(PATIENCE * 2)
    assert p.exitcode == 0
    t.join(PATIENCE)
    assert not t.is_alive()
    assert out.get(timeout=PATIENCE) == "first"
    assert q.get(timeout=PATIENCE) == "second"


def test_fork_while_another_thread_is_blocked_in_get():
    q = mpkit.Queue()
    out = mpkit.Queue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=PATIENCE * 2)))
    t.start()
    # The thread may not be inside get yet; both orders must work.
    p = multiprocessing.get_context("fork").Process(target=_child_after_fork, args=(q, out))
    p.start()
    q.put("from the parent")
    p.join(PATIENCE * 2)
    assert p.exitcode == 0
    t.join(PATIENCE)
    assert sorted(got + [out.get(timeout=PATIENCE)]) == ["from the child", "from the parent"]


def _slow_loads_consumer(name, ready_fd):
    def loads(b):
        os.write(ready_fd, b"x")
        threading.Event().wait()

    q = mpkit.JoinableQueue.open(name, loads=loads)
    q.get_many()


def test_a_consumer_killed_inside_get_many_is_reported_by_join():
    q = mpkit.JoinableQueue()
    q.put_many(list(range(10)))
    r, w = os.pipe()
    p = multiprocessing.get_context("fork").Process(target=_slow_loads_consumer, args=(q.name, w))
    p.start()
    try:
        assert os.read(r, 1) == b"x"  # inside get_many, the batch taken
        os.kill(p.pid, signal.SIGKILL)
        p.join(PATIENCE)
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(mpkit.TasksLostError) as e:
        q.join()
    assert e.value.args[1] == [(p.pid, 10)]
    q.join()  # the lost tasks now count as done


def _get_then_wait(name, ready_fd):
    q = mpkit.JoinableQueue.open(name)
    q.get()
    os.write(ready_fd, b"x")
    threading.Event().wait()


def test_a_killed_consumer_whose_task_another_process_finished_loses_nothing():
    q = mpkit.JoinableQueue()
    q.put("task")
    r, w = os.pipe()
    p = multiprocessing.get_context("fork").Process(target=_get_then_wait, args=(q.name, w))
    p.start()
    try:
        assert os.read(r, 1) == b"x"
        q.task_done()  # done here, for the consumer
        os.kill(p.pid, signal.SIGKILL)
        p.join(PATIENCE)
    finally:
        os.close(r)
        os.close(w)
    q.join()  # no TasksLostError: nothing was lost
    q.put("next")
    assert q.get(timeout=PATIENCE) == "next"
    q.task_done()
    q.join()
    with pytest.raises(ValueError):
        q.task_done()


def test_ctrl_c_in_put_many_says_how_many_were_put():
    q = mpkit.Queue(3)
    old = signal.signal(signal.SIGALRM, signal.default_int_handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt) as e:
            q.put_many(list(range(10)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert e.value.put_count == 3
    assert q.get_many(timeout=PATIENCE) == [0, 1, 2]


# --- shared memory changed by another process -------------------------------------


def test_scribbling_under_blocked_callers_ends_each_wait():
    """Threads blocked in get and put while another process overwrites
    the whole segment: each call ends by its timeout (a value, queue.Empty,
    queue.Full or mpkit.CorruptError), none panics or hangs."""
    r = run_python(
        """
        import os, queue, random, subprocess, sys, threading, time, mpkit
        full = mpkit.Queue(1, capacity=4096)
        full.put(b"x")
        empty = mpkit.Queue(capacity=4096)
        outcomes = []
        def call(fn):
            start = time.monotonic()
            try:
                fn()
                outcomes.append(("ok", time.monotonic() - start))
            except (queue.Empty, queue.Full, mpkit.CorruptError, ValueError) as e:
                outcomes.append((type(e).__name__, time.monotonic() - start))
        ts = [threading.Thread(target=call, args=(lambda: empty.get(timeout=2),)),
              threading.Thread(target=call, args=(lambda: full.put(1, timeout=2),))]
        for t in ts:
            t.start()
        rnd = random.Random(15)
        for q in (full, empty):
            path = "/dev/shm/" + q.name
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.write(bytes(rnd.getrandbits(8) for _ in range(size)))
        for t in ts:
            t.join(20)
        assert not any(t.is_alive() for t in ts), "a call outlived its timeout"
        assert all(took < 10 for _, took in outcomes), outcomes
        for fn in (empty.get_nowait, full.get_nowait, lambda: full.put_nowait(1),
                   full.qsize, full.full, empty.empty):
            try:
                fn()
            except (queue.Empty, queue.Full, mpkit.CorruptError, ValueError):
                pass
        print("survived", outcomes)
        """
    )
    assert r.returncode == 0, r.stderr
    assert "survived" in r.stdout
    assert "PanicException" not in r.stderr


def test_a_segment_truncated_by_another_process_is_an_error_not_sigbus():
    r = run_python(
        """
        import os, mpkit
        q = mpkit.Queue(capacity=4096)
        q.put(1)
        print(q.name, flush=True)
        os.truncate("/dev/shm/" + q.name, 0)
        try:
            q.get(timeout=1)
        except mpkit.CorruptError as e:
            print("raised", e)
        try:
            q.put(2)
        except mpkit.CorruptError:
            print("put raised")
        """
    )
    name = r.stdout.split()[0] if r.stdout else None
    if name and r.returncode != 0:
        # The crash skipped the creator's clean-up.
        os.unlink("/dev/shm/" + name)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert "truncated" in r.stdout, r.stdout
    assert "put raised" in r.stdout, r.stdout


def _scribble(q, offset, fmt, value):
    """Writes ``value`` at ``offset`` of the queue's segment, as another
    process could (offsets: mpkit's ARCHITECTURE.md, the queue ring)."""
    import struct

    with open("/dev/shm/" + q.name, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


PRODUCERS_SEQ = 384
RECORD_0_LEN = 4096


def test_a_scribbled_count_is_corrupt_error_not_a_queue_length():
    q = mpkit.Queue(2, capacity=4096)
    q.put(0)
    _scribble(q, PRODUCERS_SEQ, "<Q", 2**64 - 1)
    with pytest.raises(mpkit.CorruptError):
        q.qsize()
    with pytest.raises(mpkit.CorruptError):
        q.empty()


def test_a_record_longer_than_what_was_put_is_corrupt_error():
    q = mpkit.Queue(2, capacity=4096)
    q.put(0)
    q.put(1)
    _scribble(q, RECORD_0_LEN, "<I", 4000)
    with pytest.raises(mpkit.CorruptError):
        q.get(timeout=PATIENCE)


JOIN_DONE = 1152


def test_a_scribbled_done_count_does_not_end_join():
    q = mpkit.JoinableQueue(capacity=4096)
    q.put(1)
    q.put(2)
    q.get()
    _scribble(q, JOIN_DONE, "<Q", 5)  # more done than were ever put
    with pytest.raises(mpkit.CorruptError):
        q.join()


# --- resources -------------------------------------------------------------------


def test_create_destroy_cycles_leak_no_descriptor_name_or_memory():
    def fds():
        return len(os.listdir("/proc/self/fd"))

    def cycle(i):
        for cls in (mpkit.Queue, mpkit.JoinableQueue, mpkit.SimpleQueue):
            x = cls(capacity=4096)
            x.put(i)
            x.get()

    cycle(0)
    gc.collect()
    fds0 = fds()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    names0 = set(mpkit._created_names())
    for i in range(2000):
        cycle(i)
    gc.collect()
    assert fds() == fds0
    assert set(mpkit._created_names()) == names0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    assert grown_kib < 8 * 1024, f"grew {grown_kib} KiB over 6000 queues"


def test_unpickling_after_the_creator_went_is_file_not_found():
    import pickle

    q = mpkit.Queue()
    data = pickle.dumps(q)
    del q
    gc.collect()
    with pytest.raises(FileNotFoundError):
        pickle.loads(data)
