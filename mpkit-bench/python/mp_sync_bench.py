#!/usr/bin/env python3
"""multiprocessing counterparts of the rows in mpkit's `benches/sync.rs`.

The Rust benchmark starts this script once per benchmark function and keeps
it running (the protocol is in ``bench_protocol.py``: for each count N it
does N iterations and prints the elapsed nanoseconds):

    python3 mp_sync_bench.py lock --kind lock
    python3 mp_sync_bench.py increment
    python3 mp_sync_bench.py contended --cpus 0,1
    python3 mp_sync_bench.py semaphore
    python3 mp_sync_bench.py event

- lock: N uncontended ``acquire(); release()`` pairs in this process on a
  ``Lock()`` (--kind lock), an ``RLock()`` (--kind rlock) or the lock of a
  ``Value('q')`` (--kind value, its ``get_lock()``).
- increment: N times ``with v.get_lock(): v.value += 1`` on a ``Value('q')``
  in this process.
- contended: two long-lived child processes each do half of the N
  ``with v.get_lock(): v.value += 1`` on one shared ``Value('q')``. Timed:
  from before the two counts are sent to both acknowledgements; the total is
  checked after every batch.
- semaphore: N ``acquire(); release()`` pairs on a ``Semaphore(1)``.
- event: N ``set(); clear()`` pairs on an ``Event()``.

With ``--cpus P,C``, the two contending children are pinned to CPUs P and C.
Objects come from the "spawn" context (children are fresh interpreters,
like mpkit's re-exec).
"""

import argparse
import multiprocessing as mp
import os
import time

from bench_protocol import serve

CTX = mp.get_context("spawn")


def incrementer(v, ctl):
    """Does batches of locked increments; each batch's size comes over `ctl`,
    and goes back when the batch is done."""
    while True:
        try:
            n = ctl.recv()
        except EOFError:
            return
        if n is None:
            return
        for _ in range(n):
            with v.get_lock():
                v.value += 1
        ctl.send(n)


class LockPair:
    """Uncontended acquire/release."""

    def __init__(self, kind):
        if kind == "lock":
            self.lock = CTX.Lock()
        elif kind == "rlock":
            self.lock = CTX.RLock()
        else:
            self.value = CTX.Value("q", 0)
            self.lock = self.value.get_lock()

    def run(self, n):
        acquire = self.lock.acquire
        release = self.lock.release
        t0 = time.perf_counter_ns()
        for _ in range(n):
            acquire()
            release()
        return time.perf_counter_ns() - t0

    def close(self):
        pass


class Increment:
    """Locked increments of a Value in this process."""

    def __init__(self):
        self.v = CTX.Value("q", 0)
        self.expected = 0

    def run(self, n):
        v = self.v
        t0 = time.perf_counter_ns()
        for _ in range(n):
            with v.get_lock():
                v.value += 1
        elapsed = time.perf_counter_ns() - t0
        self.expected += n
        assert v.value == self.expected, (v.value, self.expected)
        return elapsed

    def close(self):
        pass


class Contended:
    """Two child processes incrementing one Value under its lock."""

    def __init__(self, cpus):
        self.v = CTX.Value("q", 0)
        self.expected = 0
        self.ctls = []
        self.children = []
        for i in range(2):
            mine, theirs = CTX.Pipe(duplex=True)
            child = CTX.Process(target=incrementer, args=(self.v, theirs), daemon=True)
            child.start()
            if cpus is not None:
                os.sched_setaffinity(child.pid, {cpus[i]})
            theirs.close()
            self.ctls.append(mine)
            self.children.append(child)
        self.run(2)  # wait until both children are up

    def run(self, n):
        half = n // 2
        first, second = self.ctls
        t0 = time.perf_counter_ns()
        first.send(half)
        second.send(n - half)
        acks = first.recv() + second.recv()
        elapsed = time.perf_counter_ns() - t0
        assert acks == n, (acks, n)
        self.expected += n
        with self.v.get_lock():
            assert self.v.value == self.expected, (self.v.value, self.expected)
        return elapsed

    def close(self):
        for ctl in self.ctls:
            ctl.send(None)
            ctl.close()
        for child in self.children:
            child.join()


class SemaphorePair:
    """Uncontended semaphore acquire/release."""

    def __init__(self):
        self.sem = CTX.Semaphore(1)

    def run(self, n):
        acquire = self.sem.acquire
        release = self.sem.release
        t0 = time.perf_counter_ns()
        for _ in range(n):
            acquire()
            release()
        return time.perf_counter_ns() - t0

    def close(self):
        pass


class EventPair:
    """Event set/clear with nobody waiting."""

    def __init__(self):
        self.event = CTX.Event()

    def run(self, n):
        set_ = self.event.set
        clear = self.event.clear
        t0 = time.perf_counter_ns()
        for _ in range(n):
            set_()
            clear()
        return time.perf_counter_ns() - t0

    def close(self):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["lock", "increment", "contended", "semaphore", "event"])
    parser.add_argument("--kind", choices=["lock", "rlock", "value"], default="lock")
    parser.add_argument("--cpus", default=None, help="P,C: CPUs of the two contending children")
    args = parser.parse_args()
    cpus = None if args.cpus is None else [int(c) for c in args.cpus.split(",")]

    if args.mode == "lock":
        bench = LockPair(args.kind)
    elif args.mode == "increment":
        bench = Increment()
    elif args.mode == "contended":
        bench = Contended(cpus)
    elif args.mode == "semaphore":
        bench = SemaphorePair()
    else:
        bench = EventPair()
    serve(bench)


if __name__ == "__main__":
    main()
