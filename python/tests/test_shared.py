"""mpkit's Value, Array, RawValue and RawArray side by side with
multiprocessing's, between real processes under every start method, and
the element types a Rust program sees."""

import ctypes
import multiprocessing
import os
import pathlib
import shutil
import subprocess

import pytest

import mpkit

METHODS = ["fork", "spawn", "forkserver"]
WAIT = 30
REPO = pathlib.Path(__file__).resolve().parents[2]

# typecode, a value to store, the Rust element type mpkit stores it as
CODES = [
    ("c", b"x", "u8"),
    ("b", -5, "i8"),
    ("B", 250, "u8"),
    ("h", -1234, "i16"),
    ("H", 60000, "u16"),
    ("i", -123456, "i32"),
    ("I", 4000000000, "u32"),
    ("l", -2**40, "i64"),
    ("L", 2**63, "u64"),
    ("q", -2**62, "i64"),
    ("Q", 2**64 - 1, "u64"),
    ("f", 1.5, "f32"),
    ("d", -2.25, "f64"),
    ("?", True, "Bool"),
]


@pytest.mark.parametrize("code,value,_rust", CODES)
@pytest.mark.parametrize("raw", [False, True])
def test_values_match_multiprocessing(code, value, _rust, raw):
    make = (lambda lib: lib.RawValue) if raw else (lambda lib: lib.Value)
    # multiprocessing knows c_bool as a type only; mpkit takes '?' too.
    mp_code = ctypes.c_bool if code == "?" else code
    ours, theirs = make(mpkit)(code, value), make(multiprocessing)(mp_code, value)
    assert ours.value == theirs.value
    assert make(mpkit)(code).value == make(multiprocessing)(mp_code).value
    if code not in "c?fd":
        # Out of range: both wrap as ctypes does.
        ours.value = theirs.value = 2**40 + 3
        assert ours.value == theirs.value
        with pytest.raises(TypeError):
            ours.value = 1.5
        with pytest.raises(TypeError):
            theirs.value = 1.5


@pytest.mark.parametrize("ctype,code", [
    (ctypes.c_int, "i"), (ctypes.c_double, "d"), (ctypes.c_ubyte, "B"),
    (ctypes.c_longlong, "q"), (ctypes.c_bool, "?"), (ctypes.c_char, "c"),
])
def test_ctypes_types_are_their_typecodes(ctype, code):
    v = mpkit.Value(ctype)
    w = mpkit.Value.open(v.name, code)
    w.value = mpkit.Value(code, 1 if code != "c" else b"\x01").value
    assert v.value == w.value


def array_ops(make):
    """What a run of reads and writes gives (the same for both libraries)."""
    init = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831]
    a = make("i", init)
    seen = [len(a), a[3], a[-1], a[2:7], a[::3], a[::-2], a[7:2:-2]]
    a[4:8] = [1, 2, 3, 4]
    a[::5] = [-1, -2]
    for bad in (lambda: a.__setitem__(slice(0, 2), [1]), lambda: a[10],
                lambda: a.__setitem__(-11, 0), lambda: a.__setitem__(0, 1.5)):
        with pytest.raises(Exception) as e:
            bad()
        seen.append(e.type)
    return seen + [list(a), list(make("d", 3))]


def test_arrays_match_multiprocessing():
    for make in ("Array", "RawArray"):
        ours = array_ops(getattr(mpkit, make))
        assert ours == array_ops(getattr(multiprocessing, make))
        assert ours[-2] == [-1, 626, 934, 821, 1, -2, 3, 4, 714, 831]


def test_char_arrays_match_multiprocessing():
    for lib in (mpkit, multiprocessing):
        for make in (lib.Array, lib.RawArray):
            a = make("c", b"hello")
            assert (a.value, a.raw, a[1], a[1:3], len(a)) == (b"hello", b"hello", b"e", b"el", 5)
            a.value = b"hi"
            assert (a.value, a.raw) == (b"hi", b"hi\x00lo")
            a.raw = b"abc"
            assert (a.value, a.raw) == (b"abclo", b"abclo")
            with pytest.raises(ValueError):
                a.value = b"toolong"
            a[0] = b"z"
            assert a.value == b"zbclo"
            b = make("c", 4)
            assert b.raw == b"\x00" * 4 and b.value == b""


@pytest.mark.parametrize("lib", [mpkit, multiprocessing])
def test_lock_arguments_match_multiprocessing(lib):
    v = lib.Value("i", 5)
    assert v.get_lock() is not None and v.get_obj().value == 5
    with v:
        v.value += 1
    assert v.acquire() is True
    v.release()
    assert lib.Value("i", 5, lock=None).get_lock() is not None
    lock = lib.Lock()
    assert lib.Value("i", 5, lock=lock).get_lock() is lock
    assert lib.Array("i", 3, lock=lock).get_lock() is lock
    raw = lib.Value("i", 5, lock=False)
    assert not hasattr(raw, "get_lock") and not hasattr(raw, "get_obj")
    raw = lib.Array("i", 3, lock=False)
    assert not hasattr(raw, "get_lock") and not hasattr(raw, "get_obj")
    with pytest.raises(AttributeError):
        lib.Value("i", 5, lock="notalock")
    with pytest.raises(AttributeError):
        lib.Array("i", 3, lock="notalock")


def add_under_lock(value, array, n):
    for _ in range(n):
        with value.get_lock():
            value.value += 1
        with array.get_lock():
            array[0] += 1
            array[1] = array[0] * 2


def add_under_given_lock(value, n):
    for _ in range(n):
        with value:
            value.value += 1


@pytest.mark.parametrize("method", METHODS)
def test_increments_under_the_lock_are_never_lost(method):
    c = multiprocessing.get_context(method)
    value, array = mpkit.Value("i", 0), mpkit.Array("q", 2)
    given = mpkit.Value("d", 0.0, lock=mpkit.RLock())
    ps = [c.Process(target=add_under_lock, args=(value, array, 300)) for _ in range(3)]
    ps += [c.Process(target=add_under_given_lock, args=(given, 300)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(WAIT)
        assert p.exitcode == 0
    assert value.value == 900
    assert array[:] == [900, 1800]
    assert given.value == 600.0


def fill(raw_value, raw_array, chars, view):
    view[1] = 7
    raw_value.value = 42
    raw_array[:] = range(len(raw_array))
    chars.value = b"from child"


@pytest.mark.parametrize("method", METHODS)
def test_raw_objects_cross_every_start_method(method):
    c = multiprocessing.get_context(method)
    rv, ra, chars = mpkit.RawValue("h", 0), mpkit.RawArray("f", 5), mpkit.Array("c", 16)
    locked = mpkit.Array("i", 3)
    p = c.Process(target=fill, args=(rv, ra, chars, locked.get_obj()))
    p.start()
    p.join(WAIT)
    assert p.exitcode == 0
    assert (rv.value, ra[:], chars.value) == (42, [0.0, 1.0, 2.0, 3.0, 4.0], b"from child")
    assert locked[:] == [0, 7, 0]


def test_opening_with_another_typecode_is_refused_as_rust_refuses_it():
    v = mpkit.Value("i", 1)
    with pytest.raises(ValueError, match="i32"):
        mpkit.Value.open(v.name, "d")
    with pytest.raises(ValueError):
        mpkit.RawValue.open(v.name, "i")  # a locked Value, not a RawValue
    # 'l' and 'q' are both i64 on 64-bit Linux: the same element type.
    q = mpkit.Value("l", -7)
    assert mpkit.Value.open(q.name, "q").value == -7


def mpkit_cli():
    for path in (os.environ.get("MPKIT_BIN"), REPO / "target" / "debug" / "mpkit",
                 REPO / "target" / "release" / "mpkit", shutil.which("mpkit")):
        if path and os.access(path, os.X_OK):
            return str(path)
    if os.environ.get("CI") == "true":
        pytest.fail("the mpkit binary (cargo build -p mpkit-cli) is missing")
    pytest.skip("the mpkit binary is not built (cargo build -p mpkit-cli)")


def test_rust_sees_the_element_type_each_typecode_names():
    """`mpkit ls` (Rust) reads each object's kind and element record: what
    a Rust program must ask for to open it (`Value::<i32>::open`...)."""
    cli = mpkit_cli()
    objs, alive = {}, []

    def add(obj, kind, rust):
        alive.append(obj)  # collecting it would remove its name
        objs[obj.name] = (kind, rust)

    for code, value, rust in CODES:
        add(mpkit.Value(code, value), "Value", rust)
        add(mpkit.RawArray(code, 2), "RawArray", rust)
    add(mpkit.Array("d", 2), "Array", "f64")
    add(mpkit.RawValue("i"), "RawValue", "i32")
    add(mpkit.Lock(), "Lock", "-")
    add(mpkit.RLock(), "RLock", "-")
    listing = subprocess.run([cli, "ls"], capture_output=True, text=True, timeout=WAIT, check=True).stdout
    seen = {}
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0] in objs:
            seen[cols[0]] = (cols[1], cols[-1] if cols[-1] == "-" else cols[-5])
    assert seen == objs
