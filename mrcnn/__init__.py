"""Mask R-CNN for TensorFlow 2 / Keras 3 with the Matterport API.

Public modules: ``mrcnn.config`` (Config), ``mrcnn.model`` (MaskRCNN), ``mrcnn.utils``
(Dataset and NumPy helpers), ``mrcnn.visualize`` (matplotlib plots).
"""

import os

# TensorFlow's C++ runtime logs cost-model and CUDA-probe warnings on every graph build; keep the
# console readable unless the user asked for them (set TF_CPP_MIN_LOG_LEVEL before importing).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
