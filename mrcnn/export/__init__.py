"""Deployment: a trained model as a TensorFlow SavedModel that serves raw images
(`mrcnn.export.saved_model`), or as a TFLite file (`mrcnn.export.tflite`).

Command line: ``mrcnn export`` or ``python -m mrcnn.export`` (`mrcnn.export.command`).
"""

from mrcnn.export.saved_model import (export_saved_model, mold_image_tf, serving_function,
                                      unmold_detections_tf)
from mrcnn.export.tflite import TFLiteDetector, export_tflite
from mrcnn.export.command import export_trained, main

__all__ = ["export_saved_model", "serving_function", "mold_image_tf", "unmold_detections_tf",
           "export_tflite", "TFLiteDetector", "export_trained", "main"]
