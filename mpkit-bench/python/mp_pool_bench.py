"""Python's multiprocessing.Pool, for benches/pool.rs and ``mpkit bench``:
``map N W`` maps ``x + 1`` over N ints with Pool.map's default chunking;
``map1 N W`` does it with chunksize=1 (W workers; the pool is made once,
with the platform's default start method, and kept for the whole
benchmark). ``start-METHOD N W`` (METHOD: spawn, fork or forkserver) times
making a pool of W workers with that start method plus its first result
(``apply``); the pool's shutdown is not timed."""

import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_protocol import serve  # noqa: E402


def inc(x):
    return x + 1


class Bench:
    def __init__(self, mode, items, workers):
        self.chunksize = 1 if mode == "map1" else None
        self.items = list(range(items))
        self.pool = multiprocessing.Pool(workers)
        # Every worker started and answering before timing begins.
        self.pool.map(inc, range(workers * 4), chunksize=1)

    def run(self, n):
        start = time.perf_counter_ns()
        for _ in range(n):
            out = self.pool.map(inc, self.items, chunksize=self.chunksize)
        elapsed = time.perf_counter_ns() - start
        assert out[-1] == len(self.items)
        return elapsed

    def close(self):
        self.pool.terminate()
        self.pool.join()


class StartBench:
    def __init__(self, method, workers):
        self.context = multiprocessing.get_context(method)
        self.workers = workers

    def run(self, n):
        elapsed = 0
        for _ in range(n):
            start = time.perf_counter_ns()
            pool = self.context.Pool(self.workers)
            assert pool.apply(inc, (1,)) == 2
            elapsed += time.perf_counter_ns() - start
            pool.terminate()
            pool.join()
        return elapsed

    def close(self):
        pass


if __name__ == "__main__":
    mode, items, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode.startswith("start-"):
        serve(StartBench(mode[len("start-") :], workers))
    else:
        serve(Bench(mode, items, workers))
