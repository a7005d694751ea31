"""Python multiprocessing counterparts of `mpkit bench`'s rows.

Embedded in the mpkit binary and run as `python3 -c SCRIPT MECHANISM
SOCKET_PATH CHILD_CPU`, one process per mechanism (CHILD_CPU: the CPU the
child is moved to, or `any`):

- pipe:   two Pipe(duplex=False), send_bytes / recv_bytes
- queue:  two multiprocessing.Queue, put / get of bytes objects
- shm:    two rings of 16 slots in a shared Array('B') (each copy under the
          array's lock) with two Semaphores each (free and filled slots)
- socket: multiprocessing.connection Listener / Client on an AF_UNIX path,
          send_bytes / recv_bytes

Each sets up one long-lived child (the "fork" start method: Python's
semaphores and shared memory are then unlinked at once, so nothing is left
behind even if the process is killed), then prints `ready VERSION` and
answers lines on stdin:

- `tp N SIZE`: sends N messages of SIZE bytes to the child; prints the
  nanoseconds from the first send to the child's acknowledgement of the
  last.
- `rt N`: N round trips of a 64-byte message (the child echoes it back);
  prints each round trip's nanoseconds, separated by spaces.

End of input stops the child and exits.
"""

import multiprocessing as mp
import os
import sys
import time

SMALL = 64
LARGE = 4096
SLOTS = 16
CTX = mp.get_context("fork")
now = time.perf_counter_ns


class Ring:
    """A ring of SLOTS slots in a shared Array, with Semaphores counting the
    free and the filled slots. Each side keeps its own position."""

    def __init__(self):
        self.arr = CTX.Array("B", SLOTS * LARGE)
        self.free = CTX.Semaphore(SLOTS)
        self.filled = CTX.Semaphore(0)
        self.pos = 0
        self.view = memoryview(self.arr.get_obj()).cast("B")

    def send(self, payload):
        self.free.acquire()
        at = (self.pos % SLOTS) * LARGE
        with self.arr.get_lock():
            self.view[at:at + len(payload)] = payload
        self.pos += 1
        self.filled.release()

    def recv(self, size):
        self.filled.acquire()
        at = (self.pos % SLOTS) * LARGE
        with self.arr.get_lock():
            data = bytes(self.view[at:at + size])
        self.pos += 1
        self.free.release()
        return data


class Link:
    """Two one-way channels: A (parent to child) and B (child to parent).
    `send`/`recv` are the parent's ends; `child_ends()` runs in the child
    and returns its (recv, send)."""

    def after_start(self):
        pass

    def close(self):
        pass


class PipeLink(Link):
    def __init__(self, path):
        self.a_r, self.a_w = CTX.Pipe(duplex=False)
        self.b_r, self.b_w = CTX.Pipe(duplex=False)
        self.send = self.a_w.send_bytes
        self.recv = lambda size: self.b_r.recv_bytes()

    def child_ends(self):
        self.a_w.close()
        self.b_r.close()
        return (lambda size: self.a_r.recv_bytes()), self.b_w.send_bytes

    def close(self):
        for c in (self.a_r, self.a_w, self.b_r, self.b_w):
            c.close()


class QueueLink(Link):
    def __init__(self, path):
        self.a, self.b = CTX.Queue(), CTX.Queue()
        self.send = self.a.put
        self.recv = lambda size: self.b.get()

    def child_ends(self):
        return (lambda size: self.a.get()), self.b.put

    def close(self):
        for q in (self.a, self.b):
            q.close()
            q.join_thread()


class ShmLink(Link):
    def __init__(self, path):
        self.a, self.b = Ring(), Ring()
        self.send = self.a.send
        self.recv = self.b.recv

    def child_ends(self):
        return self.a.recv, self.b.send


class SocketLink(Link):
    def __init__(self, path):
        from multiprocessing.connection import Listener

        self.path = path
        self.listener = Listener(path, family="AF_UNIX")
        self.conn = None

    def child_ends(self):
        from multiprocessing.connection import Client

        conn = Client(self.path, family="AF_UNIX")
        return (lambda size: conn.recv_bytes()), conn.send_bytes

    def after_start(self):
        self.conn = self.listener.accept()
        self.send = self.conn.send_bytes
        self.recv = lambda size: self.conn.recv_bytes()

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


LINKS = {"pipe": PipeLink, "queue": QueueLink, "shm": ShmLink, "socket": SocketLink}


def serve(ctl, link):
    """The child: runs the commands that come over `ctl` until None or EOF."""
    recv, send = link.child_ends()
    while True:
        try:
            cmd = ctl.recv()
        except EOFError:
            return
        if cmd is None:
            return
        kind, n, size = cmd
        if kind == "tp":
            for _ in range(n):
                recv(size)
        else:
            for _ in range(n):
                send(recv(SMALL))
        ctl.send(n)


def main():
    mechanism = sys.argv[1]
    path = sys.argv[2]
    child_cpu = None if sys.argv[3] == "any" else int(sys.argv[3])
    if mechanism not in LINKS:
        raise SystemExit(f"unknown mechanism {mechanism!r}")
    link = LINKS[mechanism](path)
    ctl, ctl_child = CTX.Pipe()
    child = CTX.Process(target=serve, args=(ctl_child, link), daemon=True)
    child.start()
    if child_cpu is not None:
        os.sched_setaffinity(child.pid, {child_cpu})
    ctl_child.close()
    link.after_start()
    send, recv = link.send, link.recv
    out = sys.stdout
    try:
        ctl.send(("tp", 1, SMALL))  # warm up: the child is serving
        send(bytes(SMALL))
        if ctl.recv() != 1:
            raise SystemExit("the child did not answer")
        out.write(f"ready {sys.version.split()[0]}\n")
        out.flush()
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "tp":
                n, size = int(words[1]), int(words[2])
                payload = bytes(size)
                ctl.send(("tp", n, size))
                t0 = now()
                for _ in range(n):
                    send(payload)
                ack = ctl.recv()
                elapsed = now() - t0
                if ack != n:
                    raise SystemExit(f"acknowledged {ack} of {n}")
                out.write(f"{elapsed}\n")
            elif words[0] == "rt":
                n = int(words[1])
                payload = bytes(SMALL)
                times = []
                ctl.send(("rt", n, SMALL))
                for _ in range(n):
                    t0 = now()
                    send(payload)
                    recv(SMALL)
                    times.append(now() - t0)
                if ctl.recv() != n:
                    raise SystemExit("the echo child did not finish")
                out.write(" ".join(map(str, times)) + "\n")
            else:
                raise SystemExit(f"unknown command {line!r}")
            out.flush()
    finally:
        try:
            ctl.send(None)
        except OSError:
            pass
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
        link.close()


if __name__ == "__main__":
    main()
