"""Mask R-CNN for TensorFlow 2 / Keras 3 with the Matterport API.

Public modules: ``mrcnn.config`` (Config), ``mrcnn.model`` (MaskRCNN), ``mrcnn.utils``
(Dataset and NumPy helpers), ``mrcnn.visualize`` (matplotlib plots).
"""

import os

# TensorFlow's C++ runtime logs cost-model and CUDA-probe warnings on every graph build; keep the
# console readable unless the user asked for them (set TF_CPP_MIN_LOG_LEVEL before importing).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow leaves its oneDNN CPU kernels off by default on many CPUs (it did on the AVX2 AMD EPYC
# machines we measure on), and its fallback Eigen kernels compute convolution gradients several
# times slower: a ResNet-50 training step at 128 px took 3 to 4.5x longer (docs/benchmarks.md). Like
# the line above, this only takes effect when mrcnn is imported before TensorFlow. For CPU
# inference alone Eigen can be faster (2.4x at 256 px, batch 1): set TF_ENABLE_ONEDNN_OPTS=0
# before importing for such a service. GPU kernels are not affected.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
