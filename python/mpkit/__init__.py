"""Crash-safe, fast drop-ins for :mod:`multiprocessing`'s queues, locks and
shared values, built on mpkit's shared memory.

Switch by changing one import::

    from mpkit import Queue   # was: from multiprocessing import Queue

Every object lives in a named shared-memory segment (``/dev/shm/NAME``).
The object that created a name removes it when it is garbage collected, and
at exit for those still alive (a ``multiprocessing`` exit finaliser, in the
main process and in its children);
a process killed before either leaves the name behind, which
``mpkit rm --stale`` removes.
"""

import multiprocessing.util as _mp_util
import os as _os

from mpkit._mpkit import *  # noqa: F401,F403
from mpkit._mpkit import __all__ as _native_all
from mpkit._mpkit import _created_names, _name_prefix  # noqa: F401

__all__ = list(_native_all)


def _remove_created_names():
    # Objects still referenced at exit are never dropped: remove the names
    # this process created (a forked child's list holds none of them).
    for name in _created_names():
        try:
            _os.unlink("/dev/shm/" + name)
        except OSError:
            pass


# Run at exit as a multiprocessing finaliser, which covers every process:
# multiprocessing's own atexit hook runs it in the main process, and it
# runs before the os._exit that ends a child started by fork or forkserver
# (past any atexit hook). At the lowest priority it runs after the process
# has joined its children, which may still be opening these names. A forked
# child starts with no finalisers (multiprocessing clears them), so it is
# registered again after each fork.
class _AfterFork:
    pass


def _finalise_at_exit(_=None):
    _mp_util.Finalize(None, _remove_created_names, exitpriority=-100)


_after_fork = _AfterFork()
_finalise_at_exit()
_mp_util.register_after_fork(_after_fork, _finalise_at_exit)
