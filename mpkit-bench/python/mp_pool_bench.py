"""Python's multiprocessing.Pool.map of a trivial function, for
benches/pool.rs: ``map N`` maps ``x + 1`` over N ints with Pool.map's
default chunking; ``map1 N`` does it with chunksize=1. Workers: argv[3]
(the pool is made once, with the default 'spawn'-free start method of the
platform, and kept for the whole benchmark)."""

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


if __name__ == "__main__":
    serve(Bench(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
