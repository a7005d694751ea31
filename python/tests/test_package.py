"""What every class of the package has in common: one convention for the
names it generates, one list of names removed at exit, one exception for
shared memory another process overwrote, and a stub file that names every
public name of the module."""

import ast
import multiprocessing
import os
import pathlib
import struct
import subprocess
import sys

import pytest

import mpkit

PATIENCE = 20


def _every_class():
    return [
        mpkit.Queue(),
        mpkit.JoinableQueue(),
        mpkit.SimpleQueue(),
        mpkit.Lock(),
        mpkit.RLock(),
        mpkit.Semaphore(),
        mpkit.BoundedSemaphore(),
        mpkit.Event(),
        mpkit.Value("i", 1),
        mpkit.Array("d", 3),
        mpkit.RawValue("i", 1),
        mpkit.RawArray("b", 3),
    ]


def test_every_class_generates_one_kind_of_name():
    prefix = mpkit._name_prefix()
    assert prefix == f"mpkit_py_{os.getpid()}_"
    objs = _every_class()
    names = [o.name for o in objs]
    assert all(n.startswith(prefix) for n in names), names
    assert len(set(names)) == len(names)
    assert set(names) <= set(mpkit._created_names())
    del objs
    assert not set(names) & set(mpkit._created_names())
    assert not [n for n in names if os.path.exists("/dev/shm/" + n)]


def test_names_of_every_class_still_referenced_at_exit_are_removed():
    # A daemon thread's frame is never freed: what it references outlives
    # the interpreter's last collection, and only the atexit hook removes
    # those names.
    code = (
        "import threading, mpkit\n"
        "from test_package import _every_class\n"
        "objs = _every_class()\n"
        "ev = mpkit.Event()\n"
        "threading.Thread(target=lambda: (objs, ev.wait()), daemon=True).start()\n"
        "print(' '.join(o.name for o in objs + [ev]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=True,
        cwd=pathlib.Path(__file__).parent,
    ).stdout.split()
    assert len(out) == 13
    assert not [n for n in out if os.path.exists("/dev/shm/" + n)]


#: Where the lock's mutex keeps its kind word: the lock cell at offset 64
#: of the segment, the word at offset 16 of glibc's mutex (ARCHITECTURE.md,
#: "Object layouts").
KIND_WORD = 64 + 16


def _scribble(name, offset, data):
    fd = os.open("/dev/shm/" + name, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _scribble_from_another_process(name):
    p = multiprocessing.get_context("spawn").Process(
        target=_scribble, args=(name, KIND_WORD, struct.pack("<i", 0))
    )
    p.start()
    p.join(PATIENCE)
    assert p.exitcode == 0


@pytest.mark.parametrize("cls", [mpkit.Lock, mpkit.RLock])
@pytest.mark.parametrize("how", [{}, {"block": False}, {"timeout": 0.05}])
def test_a_lock_another_process_overwrote_raises_corrupt_error(cls, how):
    lock = cls()
    _scribble_from_another_process(lock.name)
    with pytest.raises(mpkit.CorruptError, match="overwritten"):
        lock.acquire(**how)
    assert issubclass(mpkit.CorruptError, OSError)


def test_a_value_whose_lock_another_process_overwrote_raises_corrupt_error():
    v = mpkit.Value("i", 7)
    a = mpkit.Array("i", [1, 2, 3])
    for obj in v, a:
        _scribble_from_another_process(obj.name)
    with pytest.raises(mpkit.CorruptError):
        v.value
    with pytest.raises(mpkit.CorruptError):
        v.value = 1
    with pytest.raises(mpkit.CorruptError):
        v.get_lock().acquire()
    with pytest.raises(mpkit.CorruptError):
        a[0]
    with pytest.raises(mpkit.CorruptError):
        a[0] = 5
    with pytest.raises(mpkit.CorruptError):
        a[:]


def test_an_object_whose_header_another_process_overwrote_raises_corrupt_error():
    lock = mpkit.Lock()
    v = mpkit.Value("i", 1)
    # The header's `size` (a u64 at offset 40), no longer the object's.
    for obj in lock, v:
        _scribble(obj.name, 40, struct.pack("<Q", 12345))
    with pytest.raises(mpkit.CorruptError, match="corrupt"):
        mpkit.Lock.open(lock.name)
    with pytest.raises(mpkit.CorruptError, match="corrupt"):
        mpkit.Value.open(v.name, "i")


def _stub_names():
    stub = pathlib.Path(mpkit.__file__).with_name("_mpkit.pyi")
    tree = ast.parse(stub.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _have_stubtest():
    try:
        import mypy.stubtest  # noqa: F401
    except ImportError:
        return False
    return True


# scripts/python-env installs mypy; the per-version environments of
# scripts/python-versions do not, and there the name check below stands in.
if _have_stubtest() or os.environ.get("CI") == "true":

    def test_the_stub_matches_the_module():
        # The stub shipped in the package, against the built module.
        run = subprocess.run(
            [sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases", "mpkit._mpkit"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=pathlib.Path(__file__).parent,
        )
        assert run.returncode == 0, run.stdout + run.stderr


def test_the_stub_names_every_public_name():
    assert not set(mpkit.__all__) - _stub_names()
    assert not {"_created_names", "_name_prefix"} - _stub_names()
    assert not (pathlib.Path(mpkit.__file__).with_name("_sync.pyi")).exists()


def _make_and_keep(method, out):
    global kept
    kept = _every_class()
    out.put([o.name for o in kept])


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_names_a_child_still_holds_when_it_exits_are_removed(method):
    # A forked child ends in os._exit, past every atexit hook: its names
    # go in multiprocessing's exit finalisers instead.
    c = multiprocessing.get_context(method)
    out = c.SimpleQueue()
    p = c.Process(target=_make_and_keep, args=(method, out))
    p.start()
    names = out.get()
    p.join(PATIENCE)
    assert p.exitcode == 0
    left = [n for n in names if os.path.exists("/dev/shm/" + n)]
    for n in left:
        os.unlink("/dev/shm/" + n)
    assert not left
