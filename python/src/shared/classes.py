# Value and Array: multiprocessing's factory functions over the classes of
# shared/mod.rs, run by the extension module when it loads (RawValue,
# RawArray, Synchronized and SynchronizedArray are in this code's globals).


def Value(typecode_or_type, *args, lock=True, name=None):
    """A value in shared memory (``multiprocessing.Value``):
    ``Value(typecode_or_type, *args, lock=True, *, name=None)``.

    ``typecode_or_type`` is a ctypes typecode ('c', 'b', 'B', 'h', 'H',
    'i', 'I', 'l', 'L', 'q', 'Q', 'f', 'd', '?') or ctypes type
    (``ctypes.c_int``...). ``lock=True`` guards it with its own robust
    re-entrant lock (``get_lock()``; a Rust program opens it by ``name`` as
    ``mpkit::shm::Value<i32>`` for 'i' and so on); ``lock=False`` returns a
    ``RawValue``; a ``Lock`` or ``RLock`` guards it with that lock (then the
    data is a ``RawValue`` to Rust). ``Value.open(name, typecode_or_type)``
    attaches to a named one.
    """
    if lock is False:
        return RawValue(typecode_or_type, *args, name=name)
    if lock is True or lock is None:
        lock = None
    elif not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return Synchronized(typecode_or_type, *args,
                        lock=lock, name=name)


def Array(typecode_or_type, size_or_initializer, *, lock=True, name=None):
    """An array in shared memory (``multiprocessing.Array``):
    ``Array(typecode_or_type, size_or_initializer, *, lock=True, name=None)``.

    As ``Value``: ``lock=True`` gives it its own robust re-entrant lock (a
    Rust program opens it as ``mpkit::shm::Array<T>``), ``lock=False``
    returns a ``RawArray``, a ``Lock``/``RLock`` guards it with that lock.
    Indexing, slicing (and slice assignment), ``len``; a 'c' array has
    ``.value`` and ``.raw``. ``Array.open(name, typecode_or_type)``.
    """
    if lock is False:
        return RawArray(typecode_or_type, size_or_initializer, name=name)
    if lock is True or lock is None:
        lock = None
    elif not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return SynchronizedArray(typecode_or_type, size_or_initializer,
                             lock=lock, name=name)


Value.open = Synchronized.open
Array.open = SynchronizedArray.open


def _shared_lock(name, typecode, array):
    # Rebuilds a Value's or Array's get_lock() in another process.
    cls = SynchronizedArray if array else Synchronized
    return cls.open(name, typecode).get_lock()


def _raw_view(name, typecode, array):
    # Rebuilds a Value's or Array's get_obj() in another process.
    cls = SynchronizedArray if array else Synchronized
    return cls.open(name, typecode).get_obj()
