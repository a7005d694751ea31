"""Fixtures every test gets: a watchdog that ends a hung run in seconds (every
thread's stack printed, this process's shared-memory names removed),
and a check that the test left no shared-memory name of its own behind.

Named objects the tests create themselves go by ``shm_name`` (a name with
this process's pid), and queues made without a name get one with the pid
(``mpkit-py-PID-...``): those are the names checked, so tests of other
suites running at the same time do not disturb the check.
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
    pid = os.getpid()
    prefixes = (f"mpkit-py-{pid}-", f"pytest-{pid}-")
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(prefixes)}
    except FileNotFoundError:
        return set()


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
    """Fails a test that leaves a name it created in /dev/shm (and removes
    it, so the next test starts clean)."""
    import gc

    before = _ours()
    yield
    gc.collect()
    left = _ours() - before
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
