"""Fixtures every test gets: a watchdog that ends a hung run in seconds (every
thread's stack printed, this process's shared-memory names removed),
and a check that the test left no shared-memory name of its own behind.

The watchdog is a process, not a thread: a thread in the test process would
make every ``os.fork()`` of the tests a fork of a multi-threaded process,
which Python 3.12+ warns about (rightly, but for a thread that is only the
watchdog). The tests that fork while threads of their own run do so on
purpose, and their warnings stay.

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
import signal
import subprocess
import sys

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


#: The watchdog process: sleeps until the deadline the running test set
#: (a line on its standard input: seconds, or 0 for none), then sends the
#: test process SIGUSR1 (``_expire``); if that process is still there 10 s
#: later (a hang where no Python code runs), SIGUSR2 (faulthandler prints
#: every thread's stack from C), removes the names itself and SIGKILLs it.
#: It exits when its standard input closes or its parent is gone (never
#: signalling a pid that may have been reused).
_WATCHDOG = r"""
import os, select, signal, sys, time
parent, prefixes = int(sys.argv[1]), tuple(sys.argv[2:])
deadline, pending = None, b""
def gone():
    return os.getppid() != parent
while not gone():
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    if select.select([0], [], [], left)[0]:
        chunk = os.read(0, 4096)
        if not chunk:
            sys.exit(0)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            seconds = float(line)
            deadline = time.monotonic() + seconds if seconds > 0 else None
        continue
    if gone():
        break
    os.kill(parent, signal.SIGUSR1)
    end = time.monotonic() + 10
    while time.monotonic() < end and not gone():
        time.sleep(0.1)
    if gone():
        sys.exit(0)
    sys.stderr.write("\nwatchdog: no Python code ran 10 s after the deadline: the stacks, then SIGKILL\n")
    sys.stderr.flush()
    os.kill(parent, signal.SIGUSR2)
    time.sleep(1)
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        names = []
    for name in names:
        if name.startswith(prefixes):
            try:
                os.unlink("/dev/shm/" + name)
            except OSError:
                pass
    os.kill(parent, signal.SIGKILL)
    sys.exit(0)
"""

#: The running test's watchdog seconds, for ``_expire``'s message.
_seconds = DEFAULT_WATCHDOG


def _expire(signum, frame):
    """The watchdog's bite: every thread's stack, this process's names
    removed (the exit skips every finaliser), then exit."""
    sys.__stderr__.write(f"\nwatchdog: the test ran past {_seconds} s\n")
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    for name in _ours() | set(mpkit._created_names()):
        try:
            os.unlink("/dev/shm/" + name)
        except OSError:
            pass
    os._exit(70)


@pytest.fixture(scope="session")
def _watchdog_process():
    """Starts the watchdog process (before any test runs a thread), and
    ends it after the last test."""
    signal.signal(signal.SIGUSR1, _expire)
    # The backstop, for a hang where no Python code runs: C-level, no
    # clean-up.
    faulthandler.register(signal.SIGUSR2, file=sys.__stderr__, all_threads=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), mpkit._name_prefix(),
         f"pytest-{os.getpid()}-"],
        stdin=subprocess.PIPE,
    )
    try:
        yield proc.stdin
    finally:
        proc.stdin.close()
        # A forked child still running would keep its end of the pipe open.
        proc.kill()
        proc.wait()
        faulthandler.unregister(signal.SIGUSR2)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def watchdog(request, _watchdog_process):
    global _seconds
    marker = request.node.get_closest_marker("watchdog")
    _seconds = marker.args[0] if marker else DEFAULT_WATCHDOG
    _watchdog_process.write(f"{_seconds}\n".encode())
    _watchdog_process.flush()
    try:
        yield
    finally:
        _watchdog_process.write(b"0\n")
        _watchdog_process.flush()


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
