#!/usr/bin/env python3
"""multiprocessing (and faster-fifo) counterparts of the rows in mpkit's `benches/queue.rs`.

The Rust benchmark starts this script once per benchmark function and keeps
it running (the protocol is in ``bench_protocol.py``: for each count N it
does N iterations and prints the elapsed nanoseconds):

    python3 mp_queue_bench.py throughput --queue mp --size 64
    python3 mp_queue_bench.py throughput --queue ff --size 4096
    python3 mp_queue_bench.py latency --queue mp
    python3 mp_queue_bench.py mpmc --queue mp --producers 2 --consumers 2

Queues (--queue):
- mp: ``multiprocessing.Queue()`` (unbounded; ``put`` hands the object to a
  feeder thread that pickles it and writes it to a pipe).
- ff: ``faster_fifo.Queue(max_size_bytes=1 MiB)`` (a C++ ring in shared
  memory under a process-shared mutex; ``put`` pickles in the caller), if
  the module can be imported.

Modes:
- throughput: this process puts N bytes objects of --size bytes; a
  long-lived child gets them and acknowledges over a control Pipe. Timed:
  from after the count is sent to the acknowledgement.
- latency: N round trips of a 64-byte bytes object over two queues: this
  process puts on A, a long-lived echo child gets from A and puts on B, this
  process gets from B.
- mpmc: --producers children put and --consumers children get on one
  queue; N is split evenly among the producers and among the consumers.
  Timed: from before the counts are sent to the last acknowledgement.

With ``--child-cpu C``, the long-lived children of throughput and latency
are pinned to CPU C, and those of mpmc may run on every CPU (this process
keeps the affinity it was started with).
Children use the "spawn" start method (fresh interpreters, like mpkit's
re-exec).
"""

import argparse
import multiprocessing as mp
import os
import time

from bench_protocol import serve

CTX = mp.get_context("spawn")
CAPACITY = 1 << 20
# faster-fifo's put/get give up after `timeout` seconds (10 by default).
FOREVER = 1e9
CHILD_CPU = None


def make_queue(kind):
    if kind == "mp":
        return CTX.Queue()
    import faster_fifo

    return faster_fifo.Queue(max_size_bytes=CAPACITY)


def put_of(q):
    if hasattr(q, "join_thread"):  # multiprocessing.Queue
        return q.put
    return lambda x: q.put(x, timeout=FOREVER)


def get_of(q):
    if hasattr(q, "join_thread"):
        return q.get
    return lambda: q.get(timeout=FOREVER)


def shut(q):
    if hasattr(q, "join_thread"):
        q.close()
        q.join_thread()
    else:
        q.close()


def started(process, pin=True):
    """Starts `process`; with --child-cpu, pins it to that CPU, or (pin=False)
    lets it run on every CPU (it inherited this process's pinning)."""
    process.start()
    if CHILD_CPU is not None:
        cpus = {CHILD_CPU} if pin else set(range(os.cpu_count()))
        os.sched_setaffinity(process.pid, cpus)


def consumer(q, ctl):
    """Gets batches of items; each batch's size comes over `ctl`, and goes
    back when the batch is taken."""
    get = get_of(q)
    while True:
        try:
            n = ctl.recv()
        except EOFError:
            return
        if n is None:
            return
        for _ in range(n):
            get()
        ctl.send(n)


def producer(q, ctl, size):
    """Puts batches of `size`-byte items; each batch's size comes over `ctl`,
    and goes back when the batch is put."""
    put = put_of(q)
    payload = bytes(size)
    while True:
        try:
            n = ctl.recv()
        except EOFError:
            break
        if n is None:
            break
        for _ in range(n):
            put(payload)
        ctl.send(n)
    shut(q)


def echo(a, b):
    """Gets from `a`, puts on `b`, until it gets None."""
    get = get_of(a)
    put = put_of(b)
    while True:
        m = get()
        if m is None:
            break
        put(m)
    shut(b)


class Throughput:
    def __init__(self, kind, size):
        self.q = make_queue(kind)
        self.ctl, ctl_child = CTX.Pipe()
        self.child = CTX.Process(target=consumer, args=(self.q, ctl_child), daemon=True)
        started(self.child)
        ctl_child.close()
        self.payload = bytes(size)
        self.run(1)  # wait until the child is up

    def run(self, n):
        put = put_of(self.q)
        payload = self.payload
        self.ctl.send(n)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            put(payload)
        ack = self.ctl.recv()
        elapsed = time.perf_counter_ns() - t0
        assert ack == n, (ack, n)
        return elapsed

    def close(self):
        self.ctl.send(None)
        self.ctl.close()
        self.child.join()
        shut(self.q)


class Latency:
    def __init__(self, kind):
        self.a = make_queue(kind)
        self.b = make_queue(kind)
        self.child = CTX.Process(target=echo, args=(self.a, self.b), daemon=True)
        started(self.child)
        self.payload = bytes(64)
        self.run(1)  # wait until the child is up

    def run(self, n):
        put = put_of(self.a)
        get = get_of(self.b)
        payload = self.payload
        t0 = time.perf_counter_ns()
        for _ in range(n):
            put(payload)
            get()
        return time.perf_counter_ns() - t0

    def close(self):
        put_of(self.a)(None)
        self.child.join()
        shut(self.a)
        shut(self.b)


def shares(n, k):
    """`n` split into `k` near-equal parts."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class Mpmc:
    def __init__(self, kind, producers, consumers, size):
        self.q = make_queue(kind)
        self.producers = []
        self.consumers = []
        for target, ctls, count, args in [
            (producer, self.producers, producers, (size,)),
            (consumer, self.consumers, consumers, ()),
        ]:
            for _ in range(count):
                mine, theirs = CTX.Pipe()
                child = CTX.Process(target=target, args=(self.q, theirs, *args), daemon=True)
                started(child, pin=False)
                theirs.close()
                ctls.append((mine, child))
        self.run(producers * consumers)  # wait until every child is up

    def run(self, n):
        ctls = self.producers + self.consumers
        t0 = time.perf_counter_ns()
        for (ctl, _), k in zip(self.producers, shares(n, len(self.producers))):
            ctl.send(k)
        for (ctl, _), k in zip(self.consumers, shares(n, len(self.consumers))):
            ctl.send(k)
        got = [ctl.recv() for ctl, _ in ctls]
        elapsed = time.perf_counter_ns() - t0
        assert sum(got) == 2 * n, (got, n)
        return elapsed

    def close(self):
        for ctl, _ in self.producers + self.consumers:
            ctl.send(None)
            ctl.close()
        for _, child in self.producers + self.consumers:
            child.join()
        shut(self.q)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "latency", "mpmc"])
    parser.add_argument("--queue", choices=["mp", "ff"], default="mp")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--child-cpu", type=int, default=None)
    args = parser.parse_args()
    global CHILD_CPU
    CHILD_CPU = args.child_cpu

    if args.mode == "throughput":
        bench = Throughput(args.queue, args.size)
    elif args.mode == "latency":
        bench = Latency(args.queue)
    else:
        bench = Mpmc(args.queue, args.producers, args.consumers, args.size)
    serve(bench)


if __name__ == "__main__":
    main()
