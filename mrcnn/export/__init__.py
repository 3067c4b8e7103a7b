"""Deployment: a trained model as a TensorFlow SavedModel that serves raw images
(`mrcnn.export.saved_model`), or as a TFLite file (`mrcnn.export.tflite`), float32 or
quantized; `mrcnn.export.agreement` measures how far an export's detections follow
``detect()``'s. ``MaskRCNN.export(path, ...)`` calls these.

Command line: ``mrcnn export`` or ``python -m mrcnn.export`` (`mrcnn.export.command`).
"""

from mrcnn.export.saved_model import (export_saved_model, mold_image_tf, serving_function,
                                      unmold_detections_tf)
from mrcnn.export.tflite import QUANTIZATIONS, TFLiteDetector, export_tflite
from mrcnn.export.agreement import detection_agreement
from mrcnn.export.command import export_trained, main

__all__ = ["export_saved_model", "serving_function", "mold_image_tf", "unmold_detections_tf",
           "export_tflite", "TFLiteDetector", "QUANTIZATIONS", "detection_agreement",
           "export_trained", "main"]
