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
                # TensorFlow's x86 Linux builds use oneDNN unless this is "0" (mrcnn sets "1").
                "off" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" else "on",
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


def variants(precisions, xla):
    """[(PRECISION, XLA)] to time: each precision without XLA, then those of the
    comma-separated ``xla`` with it."""
    return ([(p, False) for p in precisions]
            + [(p, True) for p in xla.split(",") if p.strip()])


def has_bf16():
    """Whether this CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX)."""
    return any(f in cpu_flags() for f in ("avx512_bf16", "amx_bf16"))


def backbone_forward_anchor(repeats, size=1024):
    """Seconds for one forward pass of the bare Keras ResNet-101 on one ``size`` x ``size`` image:
    the in-run yardstick the detect figures are divided by (the speed issue's anchor)."""
    import keras
    import numpy as np
    import tensorflow as tf
    net = keras.applications.ResNet101(include_top=False, weights=None,
                                       input_shape=(size, size, 3))
    x = tf.constant(np.random.default_rng(0).normal(size=(1, size, size, 3)), tf.float32)
    forward = tf.function(lambda x: net(x, training=False))
    return timed(lambda: forward(x).numpy(), repeats, warmup=2)


def backbone_step_anchor(repeats, size=128, batch=2):
    """Seconds for one forward + backward + SGD update of the bare Keras ResNet-50 on ``batch``
    images of ``size`` x ``size``: the yardstick of the training-step figures."""
    import keras
    import numpy as np
    import tensorflow as tf
    net = keras.applications.ResNet50(include_top=False, weights=None,
                                      input_shape=(size, size, 3))
    opt = keras.optimizers.SGD(0.001, momentum=0.9)
    opt.build(net.trainable_variables)
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, size, size, 3)), tf.float32)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(net(x, training=True)))
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    return timed(lambda: step(x).numpy(), repeats, warmup=2)


def inference_configs():
    """{"default": ResNet-101 at 1024 px, "small": ResNet-50 at 256 px}: the inference configs
    the detect benchmarks share (81 classes, batch 1, DETECTION_MIN_CONFIDENCE 0 so that an
    untrained model returns DETECTION_MAX_INSTANCES detections)."""
    from mrcnn.config import Config

    class DefaultConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 81
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.0

    class SmallConfig(DefaultConfig):
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = 256
        IMAGE_MAX_DIM = 256
        RPN_ANCHOR_SCALES = (16, 32, 64, 128, 256)

    return {"default": DefaultConfig, "small": SmallConfig}


def detect_image():
    """The detect benchmarks' input: a 480x640 RGB uint8 image of uniform noise (seed 0), a
    photo's size that molds to 1024 px (default config) or 256 px (small)."""
    import numpy as np
    return np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)


def training_configs():
    """{"small": ResNet-50 at 128 px, 4 classes, "default": ResNet-101 at 1024 px, 81 classes}:
    the training configs the step and memory benchmarks share (batch 2, TRAIN_BN False as
    Matterport's default, no validation)."""
    from mrcnn.config import Config

    class SmallConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 4
        GPU_COUNT = 1
        IMAGES_PER_GPU = 2
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = 128
        IMAGE_MAX_DIM = 128
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        TRAIN_ROIS_PER_IMAGE = 32
        VALIDATION_STEPS = 0

    class DefaultConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 81
        GPU_COUNT = 1
        IMAGES_PER_GPU = 2
        BACKBONE = "resnet101"
        VALIDATION_STEPS = 0

    return {"small": SmallConfig, "default": DefaultConfig}


def shapes_dataset(size, count=8):
    """``count`` generated shapes images of ``size`` x ``size`` (seed 0), prepared."""
    from mrcnn.datasets.synthetic import SyntheticShapesDataset
    dataset = SyntheticShapesDataset()
    dataset.load_shapes(count, size, size, seed=0)
    dataset.prepare()
    return dataset


def peak_rss_gib():
    """This process's peak resident memory so far (VmHWM), in GiB; None where /proc lacks it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None
