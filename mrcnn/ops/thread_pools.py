"""Thread pools made on first use and made anew in a forked child.

A forked child (a training input worker process) inherits the parent's executor objects but not
their threads: work submitted to one would wait forever. `LazyThreadPool` forgets its executor
(and its lock, which another thread may have held at the fork) in the child.
"""

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

__all__ = ["LazyThreadPool"]

_pools = weakref.WeakSet()


class LazyThreadPool:
    """A ``ThreadPoolExecutor`` of ``max_workers`` threads named ``name``, started by the first
    `get` and forgotten in forked children."""

    def __init__(self, max_workers, name):
        self.max_workers = max_workers
        self.name = name
        self._executor = None
        self._lock = threading.Lock()
        _pools.add(self)

    def get(self):
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.max_workers,
                                                    thread_name_prefix=self.name)
            return self._executor

    def _forget(self):
        self._executor = None
        self._lock = threading.Lock()


def _forget_all():
    for pool in list(_pools):
        pool._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)
