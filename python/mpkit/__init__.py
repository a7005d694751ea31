"""Crash-safe, fast drop-ins for :mod:`multiprocessing`'s queues, locks and
shared values, built on mpkit's shared memory.

Switch by changing one import::

    from mpkit import Queue   # was: from multiprocessing import Queue

Every object lives in a named shared-memory segment (``/dev/shm/NAME``).
The object that created a name removes it when it is garbage collected, and
at interpreter exit for those still alive (this module's ``atexit`` hook);
a process killed before either leaves the name behind, which
``mpkit rm --stale`` removes.
"""

import atexit as _atexit
import os as _os

from mpkit._mpkit import *  # noqa: F401,F403
from mpkit._mpkit import __all__ as _native_all
from mpkit._mpkit import _created_names

__all__ = list(_native_all)


@_atexit.register
def _remove_created_names():
    # Objects still referenced at exit are never dropped: remove the names
    # this process created (a forked child's list holds none of them).
    for name in _created_names():
        try:
            _os.unlink("/dev/shm/" + name)
        except OSError:
            pass
