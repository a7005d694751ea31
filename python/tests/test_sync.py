"""mpkit's Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and
Barrier between real processes, under every start method, side by side with
multiprocessing's where they should match; and what multiprocessing cannot
do: a SIGKILLed lock holder's lock is handed on."""

import gc
import multiprocessing
import os
import signal
import threading
import time
import warnings

import pytest

import mpkit

METHODS = ["fork", "spawn", "forkserver"]
WAIT = 30  # seconds any cross-process step may take before the test fails


def ctx(method):
    return multiprocessing.get_context(method)


def run(c, target, *args):
    p = c.Process(target=target, args=args)
    p.start()
    return p


def join_ok(p):
    p.join(WAIT)
    assert p.exitcode == 0, p.exitcode


# -- children (module level, so spawn and forkserver can import them) -------

def hold_lock_until(lock, held, release):
    assert lock.acquire()
    held.set()
    assert release.wait(WAIT)
    lock.release()


def hold_lock_forever(lock, held, never):
    lock.acquire()
    held.set()
    never.wait()  # until SIGKILLed


def sem_child(sem, out):
    out.put((sem.acquire(), sem.get_value(), sem.acquire(False)))
    sem.release()


def condition_child(cond, state, started):
    with cond:
        started.set()
        ok = cond.wait_for(lambda: state.value == 1, WAIT)
        state.value = 2 if ok else -1
        cond.notify_all()


def barrier_child(barrier, out):
    try:
        out.put(("index", barrier.wait(WAIT)))
    except threading.BrokenBarrierError:
        out.put(("broken", None))


def count_action_into(value):
    with value.get_lock():
        value.value += 1


class CountAction:
    """A barrier action that pickles (a function with its argument)."""

    def __init__(self, value):
        self.value = value

    def __call__(self):
        count_action_into(self.value)


def event_child(ev, go):
    assert go.wait(WAIT)
    ev.set()


_pool_lock = None
_pool_counter = None


def pool_init(lock, counter):
    global _pool_lock, _pool_counter
    _pool_lock, _pool_counter = lock, counter


def pool_work(n):
    for _ in range(n):
        with _pool_lock:
            _pool_counter.value += 1
    return n


_pool_objs = None


def pool_init_all(*objs):
    global _pool_objs
    _pool_objs = objs


def pool_use_all(_):
    lock, rlock, sem, bsem, ev, cond, barrier, value, array, raw, rarr = _pool_objs
    with lock, rlock, rlock, sem, bsem, cond:
        # Read under `lock`: every worker takes `sem` only while holding
        # `lock`, so here it holds exactly our one permit of two.
        permits_left = sem.get_value()
    return (ev.is_set(), permits_left, barrier.parties, value.value, array[:],
            raw.value, rarr[1], lock.name)


# -- every class crosses every start method ----------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cls", ["Lock", "RLock"])
def test_a_lock_held_in_a_child_excludes_the_parent(method, cls):
    c = ctx(method)
    lock = getattr(mpkit, cls)()
    held, release = mpkit.Event(), mpkit.Event()
    p = run(c, hold_lock_until, lock, held, release)
    assert held.wait(WAIT)
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0.05) is False
    release.set()
    assert lock.acquire(timeout=WAIT) is True
    assert lock.owner_died is False
    lock.release()
    join_ok(p)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lib", ["mpkit", "multiprocessing"])
def test_semaphores_match_multiprocessing(method, lib):
    c = ctx(method)
    lib = mpkit if lib == "mpkit" else c
    sem = lib.Semaphore(2)
    q = c.Queue()
    p = run(c, sem_child, sem, q)
    assert q.get(timeout=WAIT) == (True, 1, True)
    join_ok(p)
    assert sem.get_value() == 1
    bounded = lib.BoundedSemaphore(1)
    with pytest.raises(ValueError):
        bounded.release()
    assert bounded.acquire() and not bounded.acquire(False)
    bounded.release()
    with pytest.raises(OSError):  # EINVAL from sem_open, not ValueError
        lib.Semaphore(-1)


@pytest.mark.parametrize("lib", [mpkit, multiprocessing])
def test_lock_release_errors_match_multiprocessing(lib):
    lock = lib.Lock()
    with pytest.raises(ValueError):
        lock.release()
    rlock = lib.RLock()
    with pytest.raises(AssertionError):
        rlock.release()
    with lock:
        assert lock.acquire(timeout=0.01) is False
        assert lock.acquire(timeout=-1) is False  # negative: no wait
    assert lib.Semaphore(0).acquire(timeout=-1) is False
    with rlock, rlock:
        assert rlock.acquire(False) is True
        rlock.release()


def test_only_the_holder_releases_an_mpkit_lock():
    """The one documented difference: multiprocessing lets any thread
    release a Lock; mpkit's belongs to its holder, which is what lets the
    kernel hand on a dead holder's lock."""
    lock = mpkit.Lock()
    lock.acquire()
    errors = []

    def other():
        try:
            lock.release()
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join(WAIT)
    assert len(errors) == 1
    lock.release()


@pytest.mark.parametrize("method", METHODS)
def test_event_set_in_a_child_wakes_the_parent(method):
    c = ctx(method)
    ev, go = mpkit.Event(), mpkit.Event()
    p = run(c, event_child, ev, go)
    assert ev.wait(0.01) is False
    go.set()
    assert ev.wait(WAIT) is True
    assert ev.is_set()
    ev.clear()
    assert not ev.is_set()
    join_ok(p)


@pytest.mark.parametrize("method", METHODS)
def test_condition_notifies_across_processes(method):
    c = ctx(method)
    cond = mpkit.Condition()
    state = mpkit.Value("i", 0, lock=False)
    started = mpkit.Event()
    p = run(c, condition_child, cond, state, started)
    assert started.wait(WAIT)
    with cond:
        state.value = 1
        cond.notify()
        assert cond.wait_for(lambda: state.value != 1, WAIT)
    assert state.value == 2
    join_ok(p)


@pytest.mark.parametrize("method", METHODS)
def test_barrier_trips_across_processes_and_runs_its_action_once(method):
    c = ctx(method)
    trips = mpkit.Value("i", 0)
    barrier = mpkit.Barrier(3, action=CountAction(trips))
    q = c.Queue()
    ps = [run(c, barrier_child, barrier, q) for _ in range(2)]
    mine = barrier.wait(WAIT)
    got = sorted([q.get(timeout=WAIT)[1] for _ in ps] + [mine])
    assert got == [0, 1, 2]
    assert trips.value == 1
    for p in ps:
        join_ok(p)


@pytest.mark.parametrize("method", METHODS)
def test_an_aborted_barrier_breaks_its_waiters(method):
    c = ctx(method)
    barrier = mpkit.Barrier(3)
    q = c.Queue()
    p = run(c, barrier_child, barrier, q)
    # Abort only once the child waits, so it sees the break (not a
    # barrier that was broken before it arrived; both raise the same).
    deadline = time.monotonic() + WAIT
    while barrier.n_waiting < 1:
        assert time.monotonic() < deadline and p.is_alive()
        os.sched_yield()
    barrier.abort()
    assert q.get(timeout=WAIT) == ("broken", None)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(WAIT)
    join_ok(p)


@pytest.mark.parametrize("method", METHODS)
def test_pool_initargs_carry_a_lock_and_a_value(method):
    lock, counter = mpkit.Lock(), mpkit.Value("q", 0, lock=False)
    with ctx(method).Pool(2, initializer=pool_init, initargs=(lock, counter)) as pool:
        assert sum(pool.map(pool_work, [200] * 4)) == 800
    assert counter.value == 800


@pytest.mark.parametrize("method", METHODS)
def test_every_class_travels_in_pool_initargs(method):
    objs = (mpkit.Lock(), mpkit.RLock(), mpkit.Semaphore(2), mpkit.BoundedSemaphore(),
            mpkit.Event(), mpkit.Condition(), mpkit.Barrier(3), mpkit.Value("i", 5),
            mpkit.Array("d", [1.5, 2.5]), mpkit.RawValue("h", -3), mpkit.RawArray("B", b"ab"))
    objs[4].set()
    with ctx(method).Pool(2, initializer=pool_init_all, initargs=objs) as pool:
        got = pool.map(pool_use_all, range(4))
    assert got == [(True, 1, 3, 5, [1.5, 2.5], -3, 98, objs[0].name)] * 4


def test_objects_work_after_a_bare_fork():
    lock, sem, ev = mpkit.Lock(), mpkit.Semaphore(0), mpkit.Event()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with lock:
                sem.release()
            ev.set()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sem.acquire(timeout=WAIT) and ev.is_set()
    assert lock.acquire(False)
    lock.release()


def fork_and_collect(objs):
    """Forks a child that drops its inherited copies of `objs` and collects
    them, then exits normally; returns its exit code."""
    pid = os.fork()
    if pid == 0:
        objs.clear()
        gc.collect()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_collecting_its_copies_leaves_the_names():
    objs = [mpkit.Lock(), mpkit.RLock(), mpkit.Semaphore(), mpkit.Event(),
            mpkit.Value("i", 3), mpkit.Array("d", 4)]
    names = [(type(o), o.name) for o in objs]
    assert fork_and_collect(objs) == 0
    assert mpkit.Lock.open(names[0][1]).name == names[0][1]
    assert mpkit.Event.open(names[3][1]) is not None
    assert mpkit.Value.open(names[4][1], "i").value == 3


# -- named objects -----------------------------------------------------------

def open_and_set(name):
    mpkit.Event.open(name).set()


@pytest.mark.parametrize("method", ["spawn"])
def test_named_objects_open_by_name(method):
    name = "mpkit_py_test_event_%d" % os.getpid()
    ev = mpkit.Event(name=name)
    assert ev.name == name
    with pytest.raises(FileExistsError):
        mpkit.Event(name=name)
    with pytest.raises(ValueError):
        mpkit.Lock.open(name)  # an event, not a lock
    p = run(ctx(method), open_and_set, name)
    assert ev.wait(WAIT)
    join_ok(p)
    del ev
    gc.collect()
    with pytest.raises(FileNotFoundError):
        mpkit.Event.open(name)


# -- crash safety ------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("which", ["Lock", "RLock", "Value.get_lock"])
def test_a_sigkilled_holders_lock_goes_to_the_next_acquirer(method, which):
    """A child takes the lock and is SIGKILLed holding it. With
    multiprocessing.Lock (a POSIX semaphore) every later acquire waits for
    ever: nothing can tell that the holder died. mpkit's lock is a robust
    mutex, so the kernel hands it to the next acquirer, whose
    ``owner_died`` is then True and which is warned
    (``mpkit.OwnerDiedWarning``)."""
    c = ctx(method)
    if which == "Value.get_lock":
        value = mpkit.Value("i", 7)
        lock = value.get_lock()
    else:
        lock = getattr(mpkit, which)()
    held, never = mpkit.Event(), mpkit.Event()
    p = run(c, hold_lock_forever, lock, held, never)
    assert held.wait(WAIT)
    assert lock.acquire(False) is False
    os.kill(p.pid, signal.SIGKILL)
    p.join(WAIT)
    assert p.exitcode == -signal.SIGKILL
    with pytest.warns(mpkit.OwnerDiedWarning):
        assert lock.acquire(timeout=WAIT) is True
    assert lock.owner_died is True
    lock.release()
    # The lock works normally afterwards.
    assert lock.acquire(timeout=WAIT) is True
    assert lock.owner_died is False
    lock.release()
    if which == "Value.get_lock":
        assert value.value == 7


# -- blocking calls ------------------------------------------------------------

class Interrupted(Exception):
    pass


@pytest.mark.parametrize("what", ["Lock", "Semaphore", "Event", "Condition"])
def test_a_blocked_call_releases_the_gil_and_a_signal_interrupts_it(what):
    """The call waits for something that never happens; a SIGALRM handler
    raises, and the call must end with that exception soon after the signal
    (and other threads run meanwhile: the GIL is released)."""
    c = ctx("fork")
    held, never = mpkit.Event(), mpkit.Event()
    child = None
    if what == "Lock":
        lock = mpkit.Lock()
        child = run(c, hold_lock_forever, lock, held, never)
        assert held.wait(WAIT)
        call = lock.acquire
    elif what == "Semaphore":
        call = mpkit.Semaphore(0).acquire
    elif what == "Event":
        call = never.wait
    else:
        cond = mpkit.Condition()
        cond.acquire()
        call = cond.wait
    ticks = []
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [ticks.append(1) for _ in iter(lambda: stop.wait(0.001), True)])
    fired = []

    def on_alarm(signum, frame):
        fired.append(time.monotonic())
        raise Interrupted()

    old = signal.signal(signal.SIGALRM, on_alarm)
    spinner.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            call()
        ended = time.monotonic()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        stop.set()
        spinner.join(WAIT)
        if child is not None:
            os.kill(child.pid, signal.SIGKILL)
            child.join(WAIT)
    assert ended - fired[0] < 0.1
    assert len(ticks) > 10  # the other thread ran while the call waited


DROP_HELD = r"""
import gc, os, threading, mpkit
names = []
def made(obj):
    names.append(obj.name)
    return obj
lock = made(mpkit.Lock()); lock.acquire()
rlock = made(mpkit.RLock()); rlock.acquire(); rlock.acquire()
value = made(mpkit.Value("i", 1)); value.get_lock().acquire()
array = made(mpkit.Array("d", 3)); array.acquire()
cond = mpkit.Condition(); cond.acquire()
creator = made(mpkit.Lock())
opened = mpkit.Lock.open(creator.name); opened.acquire()
del lock, rlock, value, array, cond, opened, creator
gc.collect()
# Every robust lock operation walks this thread's robust list.
for _ in range(1000):
    with mpkit.Lock():
        pass
t = threading.Thread(target=lambda: mpkit.Lock().acquire())
t.start(); t.join()
left = [n for n in names if os.path.exists("/dev/shm/" + n)]
assert not left, left
print("ok")
"""


def test_dropping_a_held_lock_is_safe():
    """glibc links a held robust mutex into its thread's robust list
    through the mutex's own memory: unmapping a held lock would make the
    next lock operation (or the thread's exit) crash. Collecting a held
    lock keeps its mapping (and removes its name); the interpreter must
    carry on and exit cleanly. Runs in its own interpreter, since the
    failure is a crash."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", DROP_HELD], capture_output=True, text=True, timeout=WAIT)
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stderr[-2000:]


def chaos_worker(value, counts, i, stop):
    lock = value.get_lock()
    warnings.simplefilter("ignore", mpkit.OwnerDiedWarning)
    while not stop.is_set():
        with lock:
            if lock.owner_died:
                # The dead holder may have bumped the total but not its own
                # count: what the lock protects is repaired from the counts.
                value.value = sum(counts[:])
            value.value += 1
            counts[i] += 1


def wait_for_progress(value, procs, by):
    target = value.value + by
    deadline = time.monotonic() + WAIT
    while value.value < target:
        assert time.monotonic() < deadline, "no progress"
        assert any(p.is_alive() for p in procs)
        os.sched_yield()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_sigkilling_workers_mid_critical_section_leaves_the_others_running(method):
    """Six processes increment a shared total and their own count under the
    total's lock; three are SIGKILLed one after another at whatever point
    they have reached (often inside the lock). The others carry on every
    time (with multiprocessing a victim killed inside the lock stops them
    all), and whoever takes a dead holder's lock repairs the total from
    the counts, so at the end the total is exactly the sum of the counts."""
    c = ctx(method)
    value, counts, stop = mpkit.Value("q", 0), mpkit.RawArray("q", 6), mpkit.Event()
    procs = [run(c, chaos_worker, value, counts, i, stop) for i in range(6)]
    try:
        for victim in procs[:3]:
            wait_for_progress(value, procs, 2000)
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(WAIT)
            assert victim.exitcode == -signal.SIGKILL
        wait_for_progress(value, procs[3:], 2000)
    finally:
        stop.set()
        for p in procs[3:]:
            join_ok(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mpkit.OwnerDiedWarning)
        with value.get_lock():
            assert value.value == sum(counts[:])
