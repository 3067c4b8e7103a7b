"""Mask R-CNN for TensorFlow 2 / Keras 3 with the Matterport API."""

__version__ = "0.1.0"
