"""Worker processes for the training input pipeline.

A data set's ``load_mask`` is the user's Python (for instance ``skimage.draw.polygon`` in a loop),
which holds the GIL: worker threads then take turns on one core. Worker processes use every core.
`InputWorkers` is a persistent pool of them, started on first use and kept for the whole training
run, so what a process sets up (the anchor index) is paid once.

Start methods:
- "fork" (the default on Linux): the children inherit the data set, so any data set works,
  including a class defined in a notebook. The children run NumPy, Pillow and the data set's own
  code, never TensorFlow.
- "spawn" / "forkserver" (macOS, Windows, or by choice): the data set, the config and the
  augmentation are pickled to each child, and a class defined in a notebook or script's
  ``__main__`` cannot be unpickled there. `InputWorkers` checks this before starting and
  raises `WorkerSetupError` naming the object, with the fix (threads: ``INPUT_WORKERS =
  "threads"``).
"""

import multiprocessing
import os
import pickle
import random
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from mrcnn.config import INPUT_WORKER_MODES

__all__ = ["InputWorkers", "WorkerSetupError", "WorkerDiedError", "RemoteError", "resolve_mode",
           "check_picklable"]

_state = None  # in a worker process: the callable that prepares one image


class WorkerSetupError(TypeError):
    """The objects a worker process needs cannot be sent to it (not picklable)."""


class WorkerDiedError(RuntimeError):
    """A worker process ended without answering (killed, out of memory, a crash in C code)."""


def resolve_mode(mode):
    """The start method for setting ``mode`` (see ``Config.INPUT_WORKERS``), or "threads".

    "auto": "fork" where the platform has it and it is safe (Linux), else "threads" (macOS
    forks badly under system frameworks, Windows cannot fork).
    """
    mode = "auto" if mode is None else str(mode).lower()
    if mode not in INPUT_WORKER_MODES:
        raise ValueError("INPUT_WORKERS must be one of %s, got %r"
                         % (", ".join(repr(m) for m in INPUT_WORKER_MODES), mode))
    if mode == "auto":
        return "fork" if sys.platform.startswith("linux") else "threads"
    if mode != "threads" and mode not in multiprocessing.get_all_start_methods():
        raise ValueError("INPUT_WORKERS=%r: this platform starts processes only by %s"
                         % (mode, ", ".join(multiprocessing.get_all_start_methods())))
    return mode


def _init(prepare):
    global _state
    _state = prepare
    # Forked (or unpickled) workers start from the same generator states: without new seeds
    # every worker would draw the same augmentations, in step.
    seed = int.from_bytes(os.urandom(4), "little")
    random.seed(seed)
    np.random.seed(seed)
    if hasattr(prepare, "reseed"):
        prepare.reseed(seed)
    # A worker whose parent is killed (SIGKILL, a notebook kernel restart) would wait on its task
    # queue forever: its siblings hold that pipe open. It leaves when it is orphaned.
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="mrcnn-orphan-watch").start()


def _exit_with_parent(parent, interval=0.5):
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(0)


def _run(args):
    try:
        return _state(*args)
    except Exception as err:  # noqa: BLE001 - every error goes back to the parent
        raise _sendable(err) from None


class RemoteError(RuntimeError):
    """An error raised in a worker process whose type cannot be sent back (not picklable)."""


def _sendable(err):
    """``err`` if the parent can unpickle it, else an error of its nearest built-in base
    (OSError, ValueError, ... so ``except`` clauses still catch it) with its type and message.
    An error that does not come back would otherwise look like a dead worker."""
    try:
        pickle.loads(pickle.dumps(err, protocol=pickle.HIGHEST_PROTOCOL))
        return err
    except Exception:  # noqa: BLE001
        pass
    text = "%s: %s" % (type(err).__name__, err)
    for base in (OSError, ValueError, KeyError, IndexError, TypeError, MemoryError):
        if isinstance(err, base):
            return base(text)
    return RemoteError(text)


def _interactive_main_class(value):
    """The first class of ``value``'s type hierarchy defined in an interactive ``__main__`` (a
    notebook or a REPL), which a spawned process cannot import; None if there is none."""
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__file__", None):
        return None  # a script: spawned processes import it again as __mp_main__
    for cls in type(value).__mro__:
        if cls.__module__ == "__main__":
            return cls
    return None


def check_picklable(objects, label):
    """Raise `WorkerSetupError` when one of ``objects`` ({name: object}) cannot be sent to a
    spawned process: it does not pickle, or its class lives in a notebook's ``__main__``."""
    for name, value in objects.items():
        cls = _interactive_main_class(value)
        if cls is not None:
            raise WorkerSetupError(
                "The %s %s %s cannot be sent to input worker processes: its class %s is defined "
                "in this notebook or interactive session (__main__), which a process started "
                "by %s cannot import. Move the class to a .py module, or prepare the data in "
                "threads: set INPUT_WORKERS = \"threads\" in your Config (or \"fork\" on Linux)."
                % (label, name, type(value).__name__, cls.__name__, "spawn or forkserver"))
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # noqa: BLE001 - any pickling failure gets the same advice
            kind = type(value).__name__
            module = getattr(type(value), "__module__", "")
            where = (" (defined in %s, which worker processes cannot import)" % module
                     if module in ("__main__", "__mp_main__") else "")
            raise WorkerSetupError(
                "The %s %s %s%s cannot be sent to input worker processes: %s: %s. Define it in a "
                "module the workers can import, or prepare the data in threads: set "
                "INPUT_WORKERS = \"threads\" in your Config (or --set INPUT_WORKERS=threads)."
                % (label, name, kind, where, type(err).__name__, err)) from err


class InputWorkers:
    """``processes`` worker processes running ``prepare(*args)`` (a picklable callable under
    "spawn" / "forkserver"), started by ``method`` on first `submit`.

    label: names the data set in errors ("training data set").
    """

    def __init__(self, prepare, processes, method, label="data set", objects=None):
        self.prepare = prepare
        self.processes = max(1, int(processes))
        self.method = method
        self.label = label
        if method != "fork":
            check_picklable(objects or {"preparer": prepare}, label)
        self._pool = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self):
        """True after `close`: later work runs in the calling thread, no process is started."""
        return self._closed

    def _executor(self):
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.processes,
                    mp_context=multiprocessing.get_context(self.method),
                    initializer=_init, initargs=(self.prepare,))
            return self._pool

    def submit(self, *args):
        """A future of ``prepare(*args)`` in a worker process."""
        try:
            return self._executor().submit(_run, args)
        except BrokenProcessPool as err:
            raise self._died() from err

    def result(self, future):
        """``future.result()``, with a worker's death reported as `WorkerDiedError`."""
        try:
            return future.result()
        except BrokenProcessPool as err:
            self.close()
            raise self._died() from err

    def _died(self):
        return WorkerDiedError(
            "An input worker process of the %s ended without answering (killed, or out of "
            "memory: each worker holds one image's masks from load_mask at a time). Use fewer "
            "workers (train(..., workers=1)) or threads (INPUT_WORKERS = \"threads\")."
            % self.label)

    def close(self):
        """Stop the worker processes for good (a batch still being made when training is
        interrupted finishes in its own thread rather than start new processes)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pool"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
