# Condition and Barrier, run by the extension module when it loads (see
# sync/mod.rs): multiprocessing's own algorithms (multiprocessing.synchronize
# and threading.Barrier) over mpkit's robust Lock, RLock, Semaphore and a
# RawArray, so they behave exactly as multiprocessing's do. The names Lock,
# RLock and Semaphore are put in this code's globals before it runs.
import sys
import threading
import time


class Condition(object):
    """A condition variable shared between processes
    (``multiprocessing.Condition``): ``Condition(lock=None)``.

    ``lock`` is an mpkit ``Lock`` or ``RLock`` (default: a new ``RLock``).
    ``wait(timeout=None)``, ``wait_for(predicate, timeout=None)``,
    ``notify(n=1)`` and ``notify_all()`` behave as multiprocessing's, whose
    algorithm this is (three semaphores beside the lock). A process that
    dies holding the lock hands it on (see ``Lock``); a process killed
    while asleep in ``wait`` leaves a ``notify`` that wakes it waiting for
    its acknowledgement, as multiprocessing's does.
    """

    def __init__(self, lock=None):
        self._lock = lock or RLock()
        self._sleeping_count = Semaphore(0)
        self._woken_count = Semaphore(0)
        self._wait_semaphore = Semaphore(0)
        self._make_methods()

    def __getstate__(self):
        return (self._lock, self._sleeping_count,
                self._woken_count, self._wait_semaphore)

    def __setstate__(self, state):
        (self._lock, self._sleeping_count,
         self._woken_count, self._wait_semaphore) = state
        self._make_methods()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def _make_methods(self):
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __repr__(self):
        try:
            num_waiters = (self._sleeping_count.get_value() -
                           self._woken_count.get_value())
        except Exception:
            num_waiters = 'unknown'
        return '<%s(%s, %s)>' % (self.__class__.__name__, self._lock, num_waiters)

    def wait(self, timeout=None):
        """Releases the lock, waits for a notification or ``timeout``
        seconds, takes the lock again; False when the timeout passed."""
        assert self._lock._is_mine(), \
            'must acquire() condition before using wait()'
        self._sleeping_count.release()
        count = self._lock._count()
        for i in range(count):
            self._lock.release()
        try:
            return self._wait_semaphore.acquire(True, timeout)
        finally:
            self._woken_count.release()
            for i in range(count):
                self._lock.acquire()

    def notify(self, n=1):
        """Wakes up to ``n`` processes or threads waiting (lock held)."""
        assert self._lock._is_mine(), 'lock is not owned'
        assert not self._wait_semaphore.acquire(False), \
            'notify: Should not have been able to acquire _wait_semaphore'
        # Waiters that timed out since the last notify are not asleep.
        while self._woken_count.acquire(False):
            res = self._sleeping_count.acquire(False)
            assert res, 'notify: Bug in sleeping_count.acquire - res should not be False'
        sleepers = 0
        while sleepers < n and self._sleeping_count.acquire(False):
            self._wait_semaphore.release()
            sleepers += 1
        if sleepers:
            for i in range(sleepers):
                self._woken_count.acquire()
            while self._wait_semaphore.acquire(False):
                pass

    def notify_all(self):
        """Wakes every process or thread waiting (lock held)."""
        self.notify(n=sys.maxsize)

    def wait_for(self, predicate, timeout=None):
        """Waits until ``predicate()`` is true or ``timeout`` passes;
        returns the predicate's last value."""
        result = predicate()
        if result:
            return result
        if timeout is not None:
            endtime = time.monotonic() + timeout
        else:
            endtime = None
            waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class Barrier(threading.Barrier):
    """A barrier shared between processes (``multiprocessing.Barrier``):
    ``Barrier(parties, action=None, timeout=None)``.

    ``threading.Barrier``'s algorithm over a ``Condition`` and a
    two-integer ``RawArray`` (as multiprocessing's): ``wait(timeout=None)``
    returns the arrival index, ``abort()``, ``reset()``, ``parties``,
    ``n_waiting``, ``broken``; ``threading.BrokenBarrierError`` when broken.
    ``action`` runs in one process when the barrier trips, so it must
    pickle to reach other processes.
    """

    def __init__(self, parties, action=None, timeout=None):
        from mpkit._mpkit import RawArray
        self.__setstate__((parties, action, timeout, Condition(), RawArray('i', 2)))
        self._state = 0
        self._count = 0

    def __setstate__(self, state):
        (self._parties, self._action, self._timeout,
         self._cond, self._array) = state

    def __getstate__(self):
        return (self._parties, self._action, self._timeout,
                self._cond, self._array)

    @property
    def _state(self):
        return self._array[0]

    @_state.setter
    def _state(self, value):
        self._array[0] = value

    @property
    def _count(self):
        return self._array[1]

    @_count.setter
    def _count(self, value):
        self._array[1] = value

