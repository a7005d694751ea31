"""Lock acquire/release: mpkit.Lock against multiprocessing.Lock, in one run.

Rows: one process acquiring and releasing with nobody else (the cost of the
call), 4 processes sharing one lock to increment a shared counter (the cost
under contention, wake-ups included), and one process doing
``with v.get_lock(): v.value += 1`` on a locked Value. Prints each lock's rate and
mpkit's ratio.

    python python/bench/lock_bench.py [--n N]
"""

import argparse
import multiprocessing
import time

import mpkit

PROCS = 4


def uncontended(lock, n):
    acquire, release = lock.acquire, lock.release
    t = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return n / (time.perf_counter() - t)


def locked_increments(lib, n):
    value = lib.Value("i", 0)
    lock = value.get_lock()
    t = time.perf_counter()
    for _ in range(n):
        with lock:
            value.value += 1
    return n / (time.perf_counter() - t)


def worker(lock, counter, n, start):
    start.wait()
    for _ in range(n):
        with lock:
            counter.value += 1


def contended(lib, lock, n):
    ctx = multiprocessing.get_context("fork")
    counter = lib.RawValue("q", 0)
    start = ctx.Event()
    ps = [ctx.Process(target=worker, args=(lock, counter, n, start)) for _ in range(PROCS)]
    for p in ps:
        p.start()
    t = time.perf_counter()
    start.set()
    for p in ps:
        p.join()
    rate = PROCS * n / (time.perf_counter() - t)
    assert counter.value == PROCS * n, counter.value
    return rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    n = ap.parse_args().n
    rows = [
        ("uncontended, 1 process", lambda lib: uncontended(lib.Lock(), n)),
        (f"contended, {PROCS} processes", lambda lib: contended(lib, lib.Lock(), n // 10)),
        ("Value += 1 under get_lock", lambda lib: locked_increments(lib, n // 2)),
    ]
    print(f"{'acquire+release':<26}{'multiprocessing':>18}{'mpkit':>14}{'ratio':>8}")
    for name, bench in rows:
        theirs = bench(multiprocessing)
        ours = bench(mpkit)
        print(f"{name:<26}{theirs / 1e6:>14.2f} M/s{ours / 1e6:>10.2f} M/s{ours / theirs:>7.2f}x")


if __name__ == "__main__":
    main()
