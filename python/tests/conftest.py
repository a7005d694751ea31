"""Fixtures every test gets: a watchdog that ends a hung run in seconds (every
thread's stack printed, this process's shared-memory names removed),
and a check that the test left no shared-memory name of its own behind.

Named objects the tests create themselves go by ``shm_name`` (a name with
this process's pid), and every object the package makes without a name
(queues, locks, semaphores, events, shared values) gets one that starts
``mpkit_py_PID_`` (``mpkit._name_prefix()``): those are the names checked,
with generated names whose creator exited during the test (a child's), so
tests of other suites running at the same time do not disturb the check.
"""

import faulthandler
import itertools
import os
import sys
import threading

import pytest

import mpkit

#: Seconds a test may run before the watchdog dumps every thread's stack
#: and ends the run (a hang must fail, not eat CI's time).
DEFAULT_WATCHDOG = 60

_names = itertools.count()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "watchdog(seconds): this test's watchdog, instead of the default"
    )


def _ours():
    prefixes = (mpkit._name_prefix(), f"pytest-{os.getpid()}-")
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(prefixes)}
    except FileNotFoundError:
        return set()


def _orphans():
    """Generated names whose creator (the pid in the name) is gone: what a
    child of this test made and left behind when it exited."""
    out = set()
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        return out
    for n in names:
        if not n.startswith("mpkit_py_"):
            continue
        pid = n[len("mpkit_py_") :].split("_", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            out.add(n)
    return out


def _expire(seconds):
    """The watchdog's bite: every thread's stack, this process's names
    removed (the exit skips every finaliser), then exit."""
    sys.__stderr__.write(f"\nwatchdog: the test ran past {seconds} s\n")
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    for name in _ours() | set(mpkit._created_names()):
        try:
            os.unlink("/dev/shm/" + name)
        except OSError:
            pass
    os._exit(70)


@pytest.fixture(autouse=True)
def watchdog(request):
    marker = request.node.get_closest_marker("watchdog")
    seconds = marker.args[0] if marker else DEFAULT_WATCHDOG
    timer = threading.Timer(seconds, _expire, args=(seconds,))
    timer.daemon = True
    timer.start()
    # The backstop, for a hang that holds the GIL: C-level, no clean-up.
    faulthandler.dump_traceback_later(seconds + 10, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        timer.cancel()
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def no_leaked_names():
    """Fails a test that leaves a name it or its children created in
    /dev/shm (and removes it, so the next test starts clean)."""
    import gc

    before = _ours() | _orphans()
    yield
    gc.collect()
    left = (_ours() | _orphans()) - before
    for name in left:
        try:
            os.unlink("/dev/shm/" + name)
        except OSError:
            pass
    assert not left, f"the test left shared memory behind: {sorted(left)}"


@pytest.fixture
def shm_name():
    """A name for a named object, unique to this test."""
    return f"pytest-{os.getpid()}-{next(_names)}"
