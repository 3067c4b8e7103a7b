"""The fine-tuning workflow behind the ``mrcnn`` command, one idea per module, each usable from
Python or a notebook:

* `mrcnn.workflow.presets`: `WorkflowConfig`, named presets, `make_config`.
* `mrcnn.workflow.data`: VIA or COCO data sets, train + val with the same class ids.
* `mrcnn.workflow.runs`: run directories, ``settings.json``, checkpoints, ``--weights`` values.
* `mrcnn.workflow.settings`: the run settings, their defaults and the ``--config`` JSON file.
* `mrcnn.workflow.stages`: staged training (best checkpoint carried over), deadlines.
* `mrcnn.workflow.train`: training from run settings (data + config + stages + record).
* `mrcnn.workflow.inference`: an inference model rebuilt from a run's weights and settings.
* `mrcnn.workflow.evaluate`: mAP@0.5, mAP@0.5:0.95, COCO AP, the table and ``metrics.json``.
* `mrcnn.workflow.detect_files`: detections to PNG + JSON (COCO RLE masks).
* `mrcnn.workflow.anchor_fit`: anchors fitted to a data set's boxes.
* `mrcnn.workflow.demo`: the synthetic face-mask demo.

Nothing here imports TensorFlow until a model is built.
"""

from mrcnn.workflow.anchor_fit import fit_anchors, format_anchor_report, molded_boxes
from mrcnn.workflow.data import load_subset, load_train_val
from mrcnn.workflow.detect_files import detect_images, detection_record, save_detection_picture
from mrcnn.workflow.errors import WorkflowError
from mrcnn.workflow.evaluate import evaluate, evaluate_model, format_results, write_metrics
from mrcnn.workflow.inference import CachedDetector, inference_model
from mrcnn.workflow.presets import PRESETS, WorkflowConfig, make_config
from mrcnn.workflow.runs import (best_checkpoint, find_run_checkpoint, read_settings,
                                 resolve_weights, run_checkpoints, trained_weights)
from mrcnn.workflow.settings import DEFAULTS, read_config_file
from mrcnn.workflow.stages import (FINE_TUNE, Stage, deadline_callback, flip_augmentation,
                                   train_stages)
from mrcnn.workflow.train import run_training

__all__ = [
    "CachedDetector", "DEFAULTS", "FINE_TUNE", "PRESETS", "Stage", "WorkflowConfig",
    "WorkflowError", "best_checkpoint", "deadline_callback", "detect_images",
    "detection_record", "evaluate", "evaluate_model", "find_run_checkpoint", "fit_anchors",
    "flip_augmentation", "format_anchor_report", "format_results", "inference_model",
    "load_subset", "load_train_val", "make_config", "molded_boxes", "read_config_file",
    "read_settings", "resolve_weights", "run_checkpoints", "run_training",
    "save_detection_picture", "train_stages", "trained_weights", "write_metrics",
]
