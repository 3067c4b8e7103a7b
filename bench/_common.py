"""Helpers shared by the benchmarks: timing, machine description, quiet TensorFlow."""

import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gemm_gflops(n=1024, repeats=10):
    """Measured float32 matrix-multiply throughput of TensorFlow here (GFLOP/s).

    Shared and virtual machines vary from hour to hour; printing this beside every figure lets a
    reader tell a slower library from a slower machine.
    """
    import tensorflow as tf
    a = tf.random.normal([n, n])
    matmul = tf.function(lambda a: tf.matmul(a, a))
    times = timed(lambda: matmul(a).numpy(), repeats, warmup=2)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def cpu_flags():
    """The CPU model and the vector-unit flags that decide TensorFlow's CPU kernels."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16",
                                              "avx512_vnni", "amx_bf16", "amx_tile"))
    return "%s [%s]" % (model, " ".join(wanted) or "no AVX2")


def machine():
    import tensorflow as tf
    return ("%s; %d CPU cores, Python %s, TensorFlow %s, GPUs %d, oneDNN %s; "
            "float32 matmul %.0f GFLOP/s" % (
                cpu_flags(), os.cpu_count(),
                platform.python_version(), tf.__version__,
                len(tf.config.list_physical_devices("GPU")),
                "on" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1" else "off",
                gemm_gflops()))


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
