"""Queue throughput: mpkit's Queue against multiprocessing's Queue,
SimpleQueue and Pipe, and faster-fifo's Queue (when installed), in one run.

Each row moves messages from P producer processes to C consumer processes
(1/1 and 4/4) and reports messages per second and each mechanism's ratio to
``multiprocessing.Queue`` in the same row. Payloads: a small pickled object,
64 B ``bytes`` and 4 KiB ``bytes``; consumers take one message per ``get``,
or batches with ``get_many`` where the queue has it.

    python python/bench/queue_bench.py            # the table
    python python/bench/queue_bench.py --quick    # fewer messages
    python python/bench/queue_bench.py --install-faster-fifo

faster-fifo (from PyPI) adds its column; without it the column reads
"n/a". ``--install-faster-fifo`` pip-installs it into this interpreter's
environment first (the tests never need it). A Pipe is one reader and one
writer: it runs 1/1 only.
"""

import argparse
import importlib
import multiprocessing as mp
import os
import subprocess
import sys
import time

import mpkit

faster_fifo = None

CTX = mp.get_context("fork")
#: Bytes of ring for the shared-memory queues (mpkit, faster-fifo).
RING = 16 << 20
SMALL = (12345, "a short string", 3.25, None)


def payload(kind):
    return {"small": SMALL, "64B": b"x" * 64, "4KiB": b"x" * 4096}[kind]


def stop_mark(kind):
    # A sentinel of the payload's own type, so a bytes-only path stays one.
    return None if kind == "small" else b""


def is_stop(msg):
    return msg is None or msg == b""


# --- the mechanisms: make(), and how a producer puts / a consumer drains -----


def make(mech):
    if mech == "mpkit":
        return mpkit.Queue(capacity=RING)
    if mech == "mp.Queue":
        return CTX.Queue()
    if mech == "mp.SimpleQueue":
        return CTX.SimpleQueue()
    if mech == "mp.Pipe":
        return CTX.Pipe(duplex=False)
    if mech == "faster-fifo":
        return faster_fifo.Queue(max_size_bytes=RING)
    raise ValueError(mech)


def producer(mech, q, kind, n, consumers, last, ready, go):
    msg = payload(kind)
    ready.release()
    go.wait()
    if mech == "mp.Pipe":
        send = q[1].send_bytes if kind != "small" else q[1].send
        for _ in range(n):
            send(msg)
        if last:
            send(stop_mark(kind))
        return
    put = q.put
    if mech == "faster-fifo":
        for _ in range(n):
            put(msg, timeout=1e9)
    else:
        for _ in range(n):
            put(msg)
    if last:
        for _ in range(consumers):
            put(stop_mark(kind))


def consumer(mech, q, kind, many, ready, go, counts):
    ready.release()
    go.wait()
    got = 0
    if mech == "mp.Pipe":
        recv = q[0].recv_bytes if kind != "small" else q[0].recv
        while not is_stop(recv()):
            got += 1
    elif many:
        if mech == "faster-fifo":
            get_many = lambda: q.get_many(timeout=1e9)  # noqa: E731
        else:
            get_many = q.get_many
        stops = 0
        while not stops:
            batch = get_many()
            # The stops come last, one per consumer: a batch may hold more
            # than one, and those are handed back for the others.
            stops = sum(1 for m in batch if is_stop(m))
            got += len(batch) - stops
        for _ in range(stops - 1):
            if mech == "faster-fifo":
                q.put(batch[-1], timeout=1e9)
            else:
                q.put(batch[-1])
    else:
        get = (lambda: q.get(timeout=1e9)) if mech == "faster-fifo" else q.get
        while not is_stop(get()):
            got += 1
    counts.put(got)


def run(mech, kind, pairs, many, total):
    """Messages per second moving `total` messages, or None."""
    q = make(mech)
    per = total // pairs
    ready = CTX.Semaphore(0)
    go = CTX.Event()
    counts = CTX.SimpleQueue()
    # The last producer to finish sends the stops: the others are joined
    # before it is told to (see below), so every message precedes them.
    prods = [
        CTX.Process(target=producer, args=(mech, q, kind, per, pairs, False, ready, go))
        for _ in range(pairs - 1)
    ]
    cons = [
        CTX.Process(target=consumer, args=(mech, q, kind, many, ready, go, counts))
        for _ in range(pairs)
    ]
    for p in prods + cons:
        p.start()
    for _ in prods + cons:
        ready.acquire()
    start = time.perf_counter()
    go.set()
    for p in prods:
        p.join()
    # This process is the last producer: its messages, then the stops.
    producer(mech, q, kind, per, pairs, True, CTX.Semaphore(0), go)
    for p in cons:
        p.join()
    took = time.perf_counter() - start
    got = sum(counts.get() for _ in cons)
    assert got == per * pairs, (mech, kind, got, per * pairs)
    return got / took


MECHS = ["mpkit", "mp.Queue", "mp.SimpleQueue", "mp.Pipe", "faster-fifo"]


def rows(quick):
    scale = 0.2 if quick else 1.0
    for pairs in (1, 4):
        for kind, base in (("small", 200_000), ("64B", 300_000), ("4KiB", 100_000)):
            for many in (False, True):
                yield pairs, kind, many, int(base * scale)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a fifth of the messages")
    ap.add_argument(
        "--install-faster-fifo",
        action="store_true",
        help="pip-install faster-fifo into this environment first",
    )
    args = ap.parse_args()
    if args.install_faster_fifo:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "faster-fifo"], check=True)
    global faster_fifo
    try:
        faster_fifo = importlib.import_module("faster_fifo")
    except ImportError:  # the column reads n/a
        faster_fifo = None
    print(
        f"# Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"faster-fifo {'present' if faster_fifo else 'absent'}; messages/s (ratio to mp.Queue)"
    )
    head = ["P/C", "payload", "get"] + MECHS
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    bases = {}
    for pairs, kind, many, total in rows(args.quick):
        cells = {}
        for mech in MECHS:
            if mech == "faster-fifo" and faster_fifo is None:
                cells[mech] = None
            elif mech == "mp.Pipe" and (pairs > 1 or many):
                cells[mech] = None
            elif many and mech not in ("mpkit", "faster-fifo"):
                cells[mech] = None
            else:
                cells[mech] = run(mech, kind, pairs, many, total)
        if not many:
            bases[pairs, kind] = cells["mp.Queue"]
        # A get_many row compares with the same payload's plain mp.Queue.
        base = bases[pairs, kind]
        out = [f"{pairs}/{pairs}", kind, "get_many" if many else "get"]
        for mech in MECHS:
            v = cells[mech]
            out.append("n/a" if v is None else f"{v / 1e3:,.0f} k ({v / base:.1f}x)")
        print("| " + " | ".join(out) + " |", flush=True)


if __name__ == "__main__":
    main()
