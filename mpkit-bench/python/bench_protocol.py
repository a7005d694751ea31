"""The protocol between mpkit's Rust benchmarks and their Python scripts.

The Rust side (``PyBench`` in ``mpkit-bench/src/python.rs``) starts a script once
per benchmark function and keeps it running. The script sets up what it
measures (and waits until its processes answer), then calls :func:`serve`,
which prints ``ready`` and reads one integer N per line from stdin; for each
it calls ``bench.run(N)`` and prints the elapsed time it returns, in integer
nanoseconds (``time.perf_counter_ns``), on one line. End of input calls
``bench.close()`` and returns.
"""

import sys


def serve(bench):
    """Answers the Rust side's counts with ``bench.run(count)`` until end of input."""
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            out.write(f"{bench.run(int(line))}\n")
            out.flush()
    finally:
        bench.close()
