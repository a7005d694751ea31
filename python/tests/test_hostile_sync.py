"""mpkit's locks and shared values held to what a demanding user and an
attacker try: sizes no machine has, shared memory another process
overwrote, signals in every blocking call, forks while another thread
holds a lock, objects collected while held, many create/destroy cycles.
Each must end in a clear Python exception, never an abort, a hang or a
leaked /dev/shm name. What crashes the interpreter runs in a child
interpreter, so that the crash fails the test instead of ending pytest."""

import gc
import multiprocessing
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading

import pytest

import mpkit

WAIT = 30  # seconds any cross-process step may take before the test fails
# Where the mutex kind word of the lock at the front of a Lock, RLock,
# Value or Array lies: after the 64-byte header, 16 bytes into the mutex
# (mpkit/tests/sync.rs writes the same place).
KIND_AT = 64 + 16


def in_child_interpreter(code):
    """Runs `code` in a fresh interpreter; returns (returncode, stdout,
    stderr)."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT)
    return r.returncode, r.stdout.strip(), r.stderr[-3000:]


# -- sizes --------------------------------------------------------------------

HUGE = r"""
import errno, mpkit
out = []
for make in (mpkit.Array, mpkit.RawArray):
    for code, n in (("d", 10**12), ("b", 2**62), ("Q", 2**61)):
        try:
            make(code, n)
            out.append("made")
        except OSError as e:
            out.append(errno.errorcode.get(e.errno, "?"))
        except MemoryError:
            out.append("MemoryError")
print(" ".join(out))
"""


def test_an_array_larger_than_dev_shm_is_an_error_not_an_abort():
    """Array('d', 10**12) asked for a 16 TB vector of the initial elements
    and the allocation failure aborted the interpreter (Rust's
    handle_alloc_error); an array that fits in memory but not in /dev/shm
    would be granted by ftruncate and then die of SIGBUS while its zeroes
    were copied in. Now: OSError(ENOSPC) before anything is made."""
    rc, out, err = in_child_interpreter(HUGE)
    assert (rc, out) == (0, " ".join(["ENOSPC"] * 6)), err


def test_an_array_that_fits_is_still_made():
    a = mpkit.RawArray("d", 1 << 20)
    assert len(a) == 1 << 20 and a[-1] == 0.0
    b = mpkit.Array("c", 100)
    assert b.raw == bytes(100)


# -- shared memory another process overwrote ----------------------------------

def overwrite(name, at, data):
    """Writes `data` at offset `at` of /dev/shm/`name`, from another
    process (as a hostile peer would)."""
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open("/dev/shm/" + name, os.O_WRONLY)
            os.pwrite(fd, data, at)
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


def locks_to_spoil():
    lock, rlock = mpkit.Lock(), mpkit.RLock()
    value, array = mpkit.Value("i", 1), mpkit.Array("d", 2)
    return [
        (lock, lock),
        (rlock, rlock),
        (value, value.get_lock()),
        (array, array.get_lock()),
    ]


@pytest.mark.parametrize("which", range(4))
def test_a_lock_whose_memory_was_overwritten_is_reported_by_every_acquire(which):
    """A non-blocking (or zero-timeout) acquire of a lock whose mutex
    another process overwrote returned False, as if someone merely held it:
    a `while not lock.acquire(False)` loop spun for ever on a corrupt lock.
    Every acquire now raises the OSError the blocking one raises."""
    owner, lock = locks_to_spoil()[which]
    overwrite(owner.name, KIND_AT, struct.pack("<i", -1))
    with pytest.raises(mpkit.CorruptError, match="overwritten"):
        lock.acquire(False)
    with pytest.raises(mpkit.CorruptError, match="overwritten"):
        lock.acquire(True, 0)
    with pytest.raises(mpkit.CorruptError, match="overwritten"):
        lock.acquire(True, 0.01)
    with pytest.raises(mpkit.CorruptError, match="corrupt"):
        type(owner).open(owner.name, *(["i" if which == 2 else "d"] if which >= 2 else []))


def test_a_value_whose_lock_was_overwritten_refuses_reads_and_writes():
    v = mpkit.Value("i", 7)
    overwrite(v.name, KIND_AT, struct.pack("<i", 0))
    with pytest.raises(mpkit.CorruptError):
        v.value
    with pytest.raises(mpkit.CorruptError):
        v.value = 1
    with pytest.raises(mpkit.CorruptError):
        v.get_obj().value  # the view takes the value's lock too
    del v


def hold_the_lock(v, held, let_go):
    with v.get_lock():
        held.set()
        let_go.wait(WAIT)


@pytest.mark.parametrize("which", ["Value", "Array"])
def test_get_obj_waits_for_a_holder_with_the_gil_released_and_ctrl_c_honoured(which):
    """`v.get_obj()[0]` while another process held v's lock waited inside
    mpkit with the GIL held: every other thread stopped, and Ctrl-C was
    not seen until the holder let go (for ever, if it never did)."""
    v = mpkit.Value("i", 3) if which == "Value" else mpkit.Array("i", [3, 3, 3])
    read = (lambda: v.get_obj().value) if which == "Value" else (lambda: v.get_obj()[0])
    c = multiprocessing.get_context("fork")
    held, let_go = c.Event(), c.Event()
    p = c.Process(target=hold_the_lock, args=(v, held, let_go))
    p.start()
    ticks = []
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [ticks.append(1) for _ in iter(lambda: stop.wait(0.001), True)])

    class Alarm(Exception):
        pass

    def on_alarm(signum, frame):
        raise Alarm()

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        assert held.wait(WAIT)
        spinner.start()
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Alarm):
            read()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        stop.set()
        let_go.set()
        if spinner.is_alive():
            spinner.join(WAIT)
        p.join(WAIT)
    assert p.exitcode == 0
    assert len(ticks) > 10  # the other thread ran while the read waited
    assert read() == 3


SCRIBBLE = r"""
import os, random, signal, sys, warnings
import mpkit
warnings.simplefilter("ignore")
rng = random.Random(int(sys.argv[1]))

class Stuck(Exception):
    pass

def on_alarm(signum, frame):
    raise Stuck()

signal.signal(signal.SIGALRM, on_alarm)

def fresh():
    return [
        (mpkit.Lock(), mpkit.Lock.open, ()),
        (mpkit.RLock(), mpkit.RLock.open, ()),
        (mpkit.Semaphore(2), mpkit.Semaphore.open, ()),
        (mpkit.BoundedSemaphore(2), mpkit.BoundedSemaphore.open, ()),
        (mpkit.Event(), mpkit.Event.open, ()),
        (mpkit.Value("d", 1.0), mpkit.Value.open, ("d",)),
        (mpkit.Array("i", 5), mpkit.Array.open, ("i",)),
        (mpkit.RawValue("q", 1), mpkit.RawValue.open, ("q",)),
        (mpkit.RawArray("c", 9), mpkit.RawArray.open, ("c",)),
    ]

def ops(o):
    if isinstance(o, (mpkit.Lock, mpkit.RLock)):
        return [lambda: o.acquire(False), lambda: o.acquire(True, 0.01), o.release, lambda: repr(o)]
    if isinstance(o, (mpkit.Semaphore, mpkit.BoundedSemaphore)):
        return [lambda: o.acquire(True, 0.01), o.release, o.get_value, lambda: repr(o)]
    if isinstance(o, mpkit.Event):
        return [o.is_set, lambda: o.wait(0.01), o.set, o.clear, lambda: repr(o)]
    if o._typecode in "dq":
        return [lambda: o.value, lambda: setattr(o, "value", 3), lambda: repr(o)]
    item = b"x" if o._typecode == "c" else 1
    return [lambda: o[:], lambda: o.__setitem__(0, item), lambda: len(o), lambda: o[-1], lambda: repr(o)]

def use(o):
    stuck = 0
    for op in ops(o):
        # A lock word overwritten to name a holder that is not there
        # waits as for a holder: an op without a timeout must still end
        # on a signal.
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        try:
            op()
        except Stuck:
            stuck += 1
        except Exception:
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return stuck

used = stuck = 0
for _ in range(int(sys.argv[2])):
    for obj, opener, args in fresh():
        path = "/dev/shm/" + obj.name
        size = os.path.getsize(path)
        fd = os.open(path, os.O_RDWR)
        pid = os.fork()
        if pid == 0:  # another process scribbles
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(0, min(size, 200))
                os.pwrite(fd, rng.randbytes(rng.choice([1, 2, 4, 8])), at)
            os._exit(0)
        os.waitpid(pid, 0)
        os.close(fd)
        stuck += use(obj)
        try:
            stuck += use(opener(obj.name, *args))
        except Exception:
            pass
        used += 1
print("ok", used)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_objects_another_process_scribbled_on_never_panic_or_crash(seed):
    """Random bytes over the header and state of every class, from another
    process, then every operation on the handle made before and on one
    opened after: each may raise an exception (OSError, ValueError...),
    never a PanicException (a BaseException, so it escapes `except
    Exception`), a crash or an operation that a signal cannot end."""
    rc, out, err = in_child_interpreter(SCRIBBLE.replace("sys.argv[1]", str(seed))
                                        .replace("sys.argv[2]", "8"))
    assert (rc, out) == (0, "ok 72"), err


# -- bad input ----------------------------------------------------------------

@pytest.mark.parametrize("bad", [[1, 2], "ab", 3, None])
def test_raw_takes_bytes_only(bad):
    """`.raw = [1, 2]` was stored element by element (ctypes refuses it),
    and a str gave the Rust message "Can't extract `str` to `Vec`"."""
    a = mpkit.Array("c", 3)
    with pytest.raises(TypeError, match="bytes-like object is required"):
        a.raw = bad
    assert a.raw == bytes(3)
    a.raw = bytearray(b"xy")
    assert a.raw == b"xy\0"


@pytest.mark.parametrize("name", ["", "a/b", "x" * 300, "a\0b"])
def test_bad_names_are_value_errors(name):
    for make in (mpkit.Lock, mpkit.RLock, mpkit.Event, mpkit.Semaphore):
        with pytest.raises(ValueError):
            make(name=name)
    with pytest.raises(ValueError):
        mpkit.Value("i", name=name)


def test_opening_a_name_as_another_class_or_typecode_is_refused():
    lock = mpkit.Lock()
    v = mpkit.Value("i", 1)
    for cls in (mpkit.RLock, mpkit.Semaphore, mpkit.BoundedSemaphore, mpkit.Event):
        with pytest.raises(ValueError):
            cls.open(lock.name)
    with pytest.raises(ValueError):
        mpkit.Value.open(lock.name, "i")
    for code in "dIfqb?":
        with pytest.raises(ValueError):
            mpkit.Value.open(v.name, code)
    with pytest.raises(ValueError):
        mpkit.RawValue.open(v.name, "i")
    with pytest.raises(ValueError):
        mpkit.Array.open(v.name, "i")
    with pytest.raises(FileNotFoundError):
        mpkit.Lock.open("mpkit_py_no_such_name")
    with pytest.raises(FileExistsError):
        mpkit.Lock(name=lock.name)


@pytest.mark.parametrize("timeout", [-1.0, float("-inf"), float("nan"), 0.0])
def test_odd_timeouts_return_at_once(timeout):
    sem, ev, lock = mpkit.Semaphore(0), mpkit.Event(), mpkit.Lock()
    assert sem.acquire(True, timeout) is False
    assert ev.wait(timeout) is False
    lock.acquire()
    try:
        # A held non-re-entrant lock: acquire waits out the timeout.
        assert threading_acquire(lock, timeout) is False
    finally:
        lock.release()


def threading_acquire(lock, timeout):
    out = []
    t = threading.Thread(target=lambda: out.append(lock.acquire(True, timeout)))
    t.start()
    t.join(WAIT)
    assert not t.is_alive()
    return out[0]


FD_LIMIT = r"""
import errno, resource, mpkit
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
keep, out = [], []
for make in (mpkit.Lock, mpkit.Semaphore, mpkit.Event, lambda: mpkit.Value("i"),
             lambda: mpkit.RawArray("d", 3)):
    try:
        while True:
            keep.append(make())
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, repr(e.errno)))
    del keep[-8:]
print(" ".join(out))
"""


def test_a_system_error_keeps_its_errno():
    """Out of file descriptors, creating an object raised OSError with
    errno None ("shared memory: Too many open files (os error 24)" only in
    its message), so `e.errno == errno.EMFILE` could not be told apart and
    EACCES was no PermissionError."""
    rc, out, err = in_child_interpreter(FD_LIMIT)
    assert (rc, out) == (0, " ".join(["EMFILE"] * 5)), err


# -- pickling across the creator's lifetime -----------------------------------

def unpickle_in_child(blob, out):
    try:
        pickle.loads(blob)
        out.put("opened")
    except FileNotFoundError:
        out.put("FileNotFoundError")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_unpickling_after_the_creator_collected_it_is_file_not_found(method):
    c = multiprocessing.get_context(method)
    blobs = [pickle.dumps(o) for o in (mpkit.Lock(), mpkit.Value("d", 1.0), mpkit.Array("i", 3),
                                       mpkit.Event(), mpkit.Semaphore(2))]
    gc.collect()
    out = c.Queue()
    for blob in blobs:
        p = c.Process(target=unpickle_in_child, args=(blob, out))
        p.start()
        assert out.get(timeout=WAIT) == "FileNotFoundError"
        p.join(WAIT)
        assert p.exitcode == 0


_KEPT = []


def create_and_keep(out):
    """Makes one of each kind and keeps them past the end of the child (in
    a global, as a Pool initializer's state is)."""
    objs = [mpkit.Lock(), mpkit.RLock(), mpkit.Semaphore(), mpkit.Event(), mpkit.Condition(),
            mpkit.Value("i", 1), mpkit.Array("d", 2), mpkit.RawValue("b"), mpkit.RawArray("c", 3)]
    _KEPT.append(objs)
    out.put([o.name for o in objs if hasattr(o, "name")])


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_child_that_ends_holding_what_it_made_leaves_no_names(method):
    """Under fork and forkserver a multiprocessing child ends with
    os._exit, which collects nothing: every object it still held at its
    end left its name in /dev/shm (multiprocessing's own locks and values
    leave nothing). Its exit now removes them."""
    c = multiprocessing.get_context(method)
    out = c.Queue()
    p = c.Process(target=create_and_keep, args=(out,))
    p.start()
    names = out.get(timeout=WAIT)
    p.join(WAIT)
    assert p.exitcode == 0
    left = [n for n in names if os.path.exists("/dev/shm/" + n)]
    for n in left:
        os.unlink("/dev/shm/" + n)
    assert left == []


def test_a_pool_workers_objects_go_with_it():
    c = multiprocessing.get_context("fork")
    out = c.Queue()
    with c.Pool(2, initializer=create_and_keep, initargs=(out,)) as pool:
        pool.map(abs, range(4))
        names = out.get(timeout=WAIT) + out.get(timeout=WAIT)
        pool.close()
        pool.join()
    left = [n for n in names if os.path.exists("/dev/shm/" + n)]
    for n in left:
        os.unlink("/dev/shm/" + n)
    assert left == []


def test_a_forked_child_exiting_leaves_its_parents_names():
    lock, v = mpkit.Lock(), mpkit.Value("i", 1)
    c = multiprocessing.get_context("fork")
    p = c.Process(target=abs, args=(1,))
    p.start()
    p.join(WAIT)
    assert p.exitcode == 0
    assert os.path.exists("/dev/shm/" + lock.name) and os.path.exists("/dev/shm/" + v.name)
    with mpkit.Lock.open(lock.name):
        pass


# -- fork while another thread holds a lock -----------------------------------

def test_a_bare_fork_while_another_thread_holds_a_lock():
    """The child inherits a lock a parent thread holds: it must wait for
    that thread (not take it, not crash), and get it once it is let go."""
    lock = mpkit.Lock()
    held, let_go = threading.Event(), threading.Event()

    def holder():
        with lock:
            held.set()
            let_go.wait(WAIT)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(WAIT)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            first = lock.acquire(True, 0.05)
            os.write(w1, b"1" if first else b"0")
            os.read(r2, 1)  # the parent's thread has let go
            second = lock.acquire(True, WAIT)
            lock.release()
            code = 0 if (not first and second) else 2
        finally:
            os._exit(code)
    try:
        assert os.read(r1, 1) == b"0"
        let_go.set()
        t.join(WAIT)
        os.write(w2, b"x")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        let_go.set()
        t.join(WAIT)
        for fd in (r1, w1, r2, w2):
            os.close(fd)


# -- Ctrl-C in the blocking calls the other tests leave out -------------------

def interrupted_child(what, ready, out):
    """Blocks in `what` for ever; reports how a SIGINT ended it."""
    try:
        if what == "Barrier":
            b = mpkit.Barrier(2)
            ready.set()
            b.wait()
        elif what == "Condition-with-waiting-thread":
            cond = mpkit.Condition()
            waiter_in = threading.Event()
            woke = []

            def waiter():
                with cond:
                    waiter_in.set()
                    woke.append(cond.wait(WAIT))

            t = threading.Thread(target=waiter)
            t.start()
            waiter_in.wait(WAIT)
            try:
                with cond:
                    ready.set()
                    cond.wait()
            except KeyboardInterrupt:
                # The lock came back with the interrupt, and the other
                # waiter is still reachable by notify.
                with cond:
                    cond.notify()
                t.join(WAIT)
                out.put(("interrupted", woke))
                return
        elif what == "Semaphore-in-with":
            s = mpkit.BoundedSemaphore(1)
            with s:
                ready.set()
                s.acquire()
        out.put(("returned", None))
    except KeyboardInterrupt:
        out.put(("interrupted", None))


@pytest.mark.parametrize("what", ["Barrier", "Condition-with-waiting-thread", "Semaphore-in-with"])
def test_ctrl_c_ends_every_blocking_call(what):
    c = multiprocessing.get_context("fork")
    ready, out = c.Event(), c.Queue()
    p = c.Process(target=interrupted_child, args=(what, ready, out))
    p.start()
    try:
        assert ready.wait(WAIT)
        os.kill(p.pid, signal.SIGINT)
        got = out.get(timeout=WAIT)
        assert got[0] == "interrupted"
        if got[1] is not None:
            assert got[1] == [True]
        p.join(WAIT)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join(WAIT)


# -- many cycles --------------------------------------------------------------

def mappings():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def fds():
    return len(os.listdir("/proc/self/fd"))


def test_create_destroy_cycles_leave_no_mappings_fds_or_names():
    def cycle():
        objs = [mpkit.Lock(), mpkit.RLock(), mpkit.Semaphore(), mpkit.BoundedSemaphore(),
                mpkit.Event(), mpkit.Condition(), mpkit.Barrier(2), mpkit.Value("i"),
                mpkit.Array("d", 8), mpkit.RawValue("q"), mpkit.RawArray("c", 8)]
        for o in objs:
            pickle.loads(pickle.dumps(o))
        v = objs[7]
        with v.get_lock():
            v.value += 1
        objs[0].acquire()
        objs[0].release()

    for _ in range(20):
        cycle()
    gc.collect()
    m0, f0 = mappings(), fds()
    for _ in range(300):
        cycle()
    gc.collect()
    assert mappings() - m0 < 10
    assert fds() - f0 < 5


TRUNCATED = r"""
import os, mpkit
out = []
for make, wait in ((lambda: mpkit.Semaphore(0), lambda o: o.acquire(timeout=2)),
                   (mpkit.Event, lambda o: o.wait(timeout=2))):
    o = make()
    print(o.name, flush=True)
    os.truncate("/dev/shm/" + o.name, 0)
    try:
        out.append(repr(wait(o)))
    except mpkit.CorruptError as e:
        out.append("CorruptError" if "truncated" in str(e) else "CorruptError without truncated: " + str(e))
print(" ".join(out))
"""


def test_a_truncated_semaphore_or_event_is_corrupt_error_not_a_timeout():
    """Another process cut the file of a Semaphore and an Event while this
    one waits on it: the wait raises mpkit.CorruptError (it said False, a
    wrong "timed out", or died of SIGBUS, before)."""
    code, out, err = in_child_interpreter(TRUNCATED)
    lines = out.splitlines()
    for name in lines[:-1]:
        if code != 0 and os.path.exists("/dev/shm/" + name):
            os.unlink("/dev/shm/" + name)  # the crash skipped the creator's clean-up
    assert code == 0, (code, err)
    assert lines[-1] == "CorruptError CorruptError", (out, err)
