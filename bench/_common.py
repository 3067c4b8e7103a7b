"""Helpers shared by the benchmarks: timing, machine description, quiet TensorFlow."""

import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def machine():
    import tensorflow as tf
    return "%s, %d CPU cores, Python %s, TensorFlow %s" % (
        platform.processor() or platform.machine(), os.cpu_count(), platform.python_version(),
        tf.__version__)


def timed(fn, repeats, warmup=1):
    """Run fn warmup times, then ``repeats`` times; return the list of seconds per run."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def report(name, times):
    print("%-40s median %.3f s  (min %.3f, max %.3f, n=%d)" % (
        name, statistics.median(times), min(times), max(times), len(times)))
    return statistics.median(times)
