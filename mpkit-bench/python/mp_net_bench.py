"""Python's own multiprocessing.connection over a Unix socket, for
benches/net.rs: round trips of 64 bytes (send_bytes, or pickled send), or
connect + authenticate + close. Runs its server in a child process."""

import os
import shutil
import sys
import tempfile
import time
from multiprocessing import Process
from multiprocessing.connection import Client, Listener

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_protocol import serve  # noqa: E402

KEY = b"bench key"


def server(address, mode):
    with Listener(address, authkey=KEY) as listener:
        while True:
            conn = listener.accept()
            if mode == "connect":
                conn.close()
                continue
            with conn:
                try:
                    while True:
                        if mode == "bytes":
                            conn.send_bytes(conn.recv_bytes())
                        else:
                            conn.send(conn.recv())
                except EOFError:
                    return


class Bench:
    def __init__(self, mode):
        self.mode = mode
        self.dir = tempfile.mkdtemp(prefix="mpkit-pynet-")
        self.address = os.path.join(self.dir, "s")
        self.proc = Process(target=server, args=(self.address, mode), daemon=True)
        self.proc.start()
        while not os.path.exists(self.address):
            time.sleep(0.001)
        self.conn = None if mode == "connect" else Client(self.address, authkey=KEY)
        self.msg = b"x" * 64

    def run(self, n):
        start = time.perf_counter_ns()
        if self.mode == "bytes":
            for _ in range(n):
                self.conn.send_bytes(self.msg)
                self.conn.recv_bytes()
        elif self.mode == "pickle":
            for _ in range(n):
                self.conn.send(self.msg)
                self.conn.recv()
        else:
            for _ in range(n):
                Client(self.address, authkey=KEY).close()
        return time.perf_counter_ns() - start

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.proc.terminate()
        self.proc.join()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    serve(Bench(sys.argv[1]))
