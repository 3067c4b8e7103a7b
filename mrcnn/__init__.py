"""Mask R-CNN for TensorFlow 2 / Keras 3 with the Matterport API.

Public modules: ``mrcnn.config`` (Config), ``mrcnn.model`` (MaskRCNN), ``mrcnn.utils``
(Dataset and NumPy helpers), ``mrcnn.visualize`` (matplotlib plots).
"""

import os


def _cuda_driver_present():
    """True when the NVIDIA driver library loads, i.e. TensorFlow could use a GPU here."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            pass
    return False


# TensorFlow's C++ runtime logs cost-model and CUDA-probe warnings on every graph build; keep the
# console readable unless the user asked for them (set TF_CPP_MIN_LOG_LEVEL before importing: a
# value of the user's own is kept). Level 2 drops INFO and WARNING lines. Without an NVIDIA driver,
# level 3 also drops ERROR lines: there the only one a healthy run prints is the GPU probe's
# "E0000 ... failed call to cuInit", which reads like a failure on a CPU machine. Where a driver is
# present, ERROR lines stay: they explain GPU set-up failures (CUDA/cuDNN version mismatches).
# Not covered by any setting: the lines TensorFlow's libraries print while they load, before their
# logging starts ("WARNING: All log messages before absl::InitializeLog() ...", the oneDNN notice,
# "Could not find cuda drivers"), all informational.
if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2" if _cuda_driver_present() else "3"

# TensorFlow leaves its oneDNN CPU kernels off by default on many CPUs (it did on the AVX2 AMD EPYC
# machines we measure on), and its fallback Eigen kernels compute convolution gradients several
# times slower: a ResNet-50 training step at 128 px took 3 to 4.5x longer (docs/benchmarks.md). Like
# the log level, this only takes effect when mrcnn is imported before TensorFlow. For CPU
# inference alone Eigen can be faster (2.4x at 256 px, batch 1): set TF_ENABLE_ONEDNN_OPTS=0
# before importing for such a service. GPU kernels are not affected.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
