"""A producer is SIGKILLed mid-stream, again and again; the consumer carries
on and gets every message whose put returned. With multiprocessing.Queue a
producer killed mid-put can leave a half-written message in the pipe and
its lock held, and the consumer then hangs or fails to unpickle.

    python python/examples/killed_producer.py
"""

import ctypes
import multiprocessing as mp
import os
import signal

from mpkit import Queue


def produce(q, done):
    i = 0
    while True:
        q.put({"seq": i, "payload": "x" * 100})
        done.value = i  # this put returned
        i += 1


if __name__ == "__main__":
    q = Queue(100)
    for round_no in range(10):
        done = mp.RawValue(ctypes.c_longlong, -1)
        p = mp.Process(target=produce, args=(q, done))
        p.start()
        got = [q.get()["seq"] for _ in range(1000)]
        os.kill(p.pid, signal.SIGKILL)  # mid-stream
        p.join()
        while not q.empty():
            got.append(q.get()["seq"])
        assert got == list(range(len(got))) and got[-1] >= done.value
        print(f"round {round_no}: producer killed after {done.value + 1} puts returned; "
              f"consumer got {len(got)}, in order")
    q.put("still works")
    print(q.get())
