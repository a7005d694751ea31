#!/usr/bin/env python3
"""multiprocessing counterparts of the rows in mpkit's `benches/pipe.rs`.

The Rust benchmark starts this script once per benchmark function and keeps
it running, like it keeps one mpkit child per function:

    python3 mp_bench.py throughput --duplex 1 --size 64 --api bytes
    python3 mp_bench.py latency --duplex 0 --size 64
    python3 mp_bench.py spawn --method fork

The script sets up its processes (and waits until they answer), then
answers counts as ``bench_protocol.py`` describes: for each N it does N
iterations and prints the elapsed time in nanoseconds. End of input shuts
everything down.

- throughput: this process sends N messages of --size bytes over a
  ``Pipe(duplex)`` (``send_bytes``, or ``send`` of a bytes object with
  ``--api obj``) to a long-lived child that receives them and acknowledges
  over a second, duplex control Pipe. Timed: from after the count is sent to
  the acknowledgement.
- latency: N ping-pongs of --size bytes (``send_bytes``/``recv_bytes``) with
  a long-lived echo child, over one ``Pipe()`` (--duplex 1) or over two
  ``Pipe(duplex=False)`` (--duplex 0).
- spawn: N cycles of ``Process(target=noop).start(); join()`` with the given
  start method.

With ``--child-cpu C``, long-lived children are pinned to CPU C (this process
keeps the affinity it was started with).

Long-lived children use the "spawn" start method (a fresh interpreter, like
mpkit's re-exec); it does not matter for their steady-state cost.
"""

import argparse
import multiprocessing as mp
import os
import time

from bench_protocol import serve


def sink(conn, ctl, use_obj):
    """Receives batches of messages; the batch size comes over `ctl`."""
    recv = conn.recv if use_obj else conn.recv_bytes
    while True:
        try:
            n = ctl.recv()
        except EOFError:
            return
        if n is None:
            return
        for _ in range(n):
            recv()
        ctl.send(n)


def echo(rx, tx):
    """Sends every message back until end of file."""
    recv = rx.recv_bytes
    send = tx.send_bytes
    try:
        while True:
            send(recv())
    except EOFError:
        pass


def noop():
    pass


CHILD_CPU = None


def started(process):
    """Starts `process`, pinned to CHILD_CPU if one was given."""
    process.start()
    if CHILD_CPU is not None:
        os.sched_setaffinity(process.pid, {CHILD_CPU})


class Throughput:
    def __init__(self, duplex, size, use_obj):
        ctx = mp.get_context("spawn")
        if duplex:
            mine, theirs = ctx.Pipe(duplex=True)
        else:
            theirs, mine = ctx.Pipe(duplex=False)  # (receiving end, sending end)
        self.ctl, ctl_child = ctx.Pipe(duplex=True)
        self.child = ctx.Process(target=sink, args=(theirs, ctl_child, use_obj), daemon=True)
        started(self.child)
        theirs.close()
        ctl_child.close()
        self.conn = mine
        self.payload = bytes(size)
        self.use_obj = use_obj
        self.run(1)  # wait until the child is up

    def run(self, n):
        send = self.conn.send if self.use_obj else self.conn.send_bytes
        payload = self.payload
        self.ctl.send(n)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            send(payload)
        ack = self.ctl.recv()
        elapsed = time.perf_counter_ns() - t0
        assert ack == n, (ack, n)
        return elapsed

    def close(self):
        self.ctl.send(None)
        self.conn.close()
        self.ctl.close()
        self.child.join()


class Latency:
    def __init__(self, duplex, size):
        ctx = mp.get_context("spawn")
        if duplex:
            mine, theirs = ctx.Pipe(duplex=True)
            self.child = ctx.Process(target=echo, args=(theirs, theirs), daemon=True)
            started(self.child)
            theirs.close()
            self.rx = self.tx = mine
        else:
            child_rx, self.tx = ctx.Pipe(duplex=False)
            self.rx, child_tx = ctx.Pipe(duplex=False)
            self.child = ctx.Process(target=echo, args=(child_rx, child_tx), daemon=True)
            started(self.child)
            child_rx.close()
            child_tx.close()
        self.payload = bytes(size)
        self.run(1)  # wait until the child is up

    def run(self, n):
        send = self.tx.send_bytes
        recv = self.rx.recv_bytes
        payload = self.payload
        t0 = time.perf_counter_ns()
        for _ in range(n):
            send(payload)
            recv()
        return time.perf_counter_ns() - t0

    def close(self):
        self.tx.close()
        if self.rx is not self.tx:
            self.rx.close()
        self.child.join()


class Spawn:
    def __init__(self, method):
        self.ctx = mp.get_context(method)

    def run(self, n):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            p = self.ctx.Process(target=noop)
            p.start()
            p.join()
        elapsed = time.perf_counter_ns() - t0
        assert p.exitcode == 0, p.exitcode
        return elapsed

    def close(self):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "latency", "spawn"])
    parser.add_argument("--duplex", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--api", choices=["bytes", "obj"], default="bytes")
    parser.add_argument("--method", default="spawn")
    parser.add_argument("--child-cpu", type=int, default=None)
    args = parser.parse_args()
    global CHILD_CPU
    CHILD_CPU = args.child_cpu

    if args.mode == "throughput":
        bench = Throughput(bool(args.duplex), args.size, args.api == "obj")
    elif args.mode == "latency":
        bench = Latency(bool(args.duplex), args.size)
    else:
        bench = Spawn(args.method)

    serve(bench)


if __name__ == "__main__":
    main()
