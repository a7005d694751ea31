"""The Python examples the README points to run and say what they claim."""

import pathlib
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_killed_producer_example_loses_nothing_and_the_queue_still_works():
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "killed_producer.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert sum("in order" in line for line in lines) == 10, run.stdout
    assert lines[-1] == "still works"
