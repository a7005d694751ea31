"""A Rust program and a Python program share named queues: JSON both ways,
and raw bytes both ways (mpkit/examples/python_queue.rs)."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

import mpkit

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rust_program():
    cargo = shutil.which("cargo")
    if cargo is None:
        if os.environ.get("CI") == "true":
            pytest.fail("cargo is needed to build the Rust peer")
        pytest.skip("cargo is not installed")
    subprocess.run(
        [cargo, "build", "-q", "-p", "mpkit", "--example", "python_queue"],
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "examples" / "python_queue"


@pytest.mark.watchdog(900)  # the first build of the example
def test_rust_and_python_share_a_named_queue(rust_program, shm_name):
    requests = mpkit.Queue(name=shm_name + "-req", dumps=json.dumps, loads=json.loads)
    replies = mpkit.Queue(name=shm_name + "-rep", dumps=json.dumps, loads=json.loads)
    rust = subprocess.Popen(
        [rust_program, requests.name, replies.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        requests.put_many([{"n": n} for n in range(5)])
        requests.put(b"\x00olleh")
        assert [replies.get(timeout=30) for _ in range(5)] == [
            {"n": n, "square": n * n} for n in range(5)
        ]
        assert replies.get(timeout=30) == b"hello\x00"
        requests.put(None)
        out, err = rust.communicate(timeout=30)
    finally:
        if rust.poll() is None:
            rust.kill()
            rust.wait()
    assert rust.returncode == 0, err.decode()
    assert out == b"served\n"
