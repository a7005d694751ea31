"""The Python side of examples/python_peer.rs: standard library only.

    python3 python_peer.py client ADDRESS KEY   # connect to a Rust Listener
    python3 python_peer.py server ADDRESS KEY   # serve a Rust Client
"""
import sys
from multiprocessing.connection import Client, Listener

mode, address, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()

if mode == "client":
    with Client(address, authkey=key) as conn:
        conn.send({"message": "hello from Python", "numbers": [1, 2, 3]})
        reply = conn.recv()
        print(f"python client got: {reply!r}")
        conn.send_bytes(b"raw bytes from Python")
        print(f"python client got bytes: {conn.recv_bytes()!r}")
else:
    with Listener(address, authkey=key) as listener:
        print("python server listening", flush=True)
        with listener.accept() as conn:
            request = conn.recv()
            print(f"python server got: {request!r}")
            conn.send({"answer": sum(request["numbers"]), "from": "Python"})
