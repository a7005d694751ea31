"""Crash-safe, fast drop-ins for :mod:`multiprocessing`'s queues, locks and
shared values, built on mpkit's shared memory.

Switch by changing one import::

    from mpkit import Queue   # was: from multiprocessing import Queue
"""

from mpkit._mpkit import *  # noqa: F401,F403
from mpkit._mpkit import __all__ as _native_all

__all__ = list(_native_all)
