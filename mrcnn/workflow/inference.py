"""An inference model rebuilt from trained weights and the ``settings.json`` of their run."""

import hashlib

import numpy as np

from mrcnn.workflow.presets import WorkflowConfig, make_config
from mrcnn.workflow.runs import read_settings, trained_weights


class CachedDetector:
    """Wraps a model so that ``detect`` runs once per distinct image.

    The mAP and COCO evaluations each call ``detect`` on every image; keyed by the image bytes,
    the second pass is free."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.cache = {}

    def detect(self, images, verbose=0):
        results = []
        for image in images:
            image = np.asarray(image)
            key = (image.shape, image.dtype.str, hashlib.sha1(image.tobytes()).hexdigest())
            if key not in self.cache:
                self.cache[key] = self.model.detect([image])[0]
            results.append(self.cache[key])
        return results


def inference_model(weights="best", logs="logs", preset=None, overrides=None, class_names=None,
                    min_confidence=None, base=WorkflowConfig):
    """Inference MaskRCNN with trained weights loaded.

    Args:
        weights: a .h5 path, ``best`` or ``last`` (latest run in ``logs``), or a run directory.
        preset, overrides, class_names: default to those of the run's ``settings.json``; a
            weights file without one gets the ``standard`` preset and one class ``object``.
        min_confidence: DETECTION_MIN_CONFIDENCE (default: the run's configuration's).
        base: the Config subclass (see `make_config`).

    Returns:
        ``(model, class names with "BG" first, weights path, the run's settings)``.
    """
    import mrcnn.model as modellib

    path = trained_weights(weights, logs)
    saved = read_settings(path)
    names = list(class_names or saved.get("class_names") or ["object"])
    settings = dict(saved.get("overrides") or {})
    settings.update(overrides or {})
    if min_confidence is not None:
        settings["DETECTION_MIN_CONFIDENCE"] = float(min_confidence)
    config = make_config(preset or saved.get("preset") or "standard", settings, names,
                         inference=True, name=saved.get("name"), base=base)
    model = modellib.MaskRCNN("inference", config, logs)
    model.load_weights(path, by_name=True)
    return model, ["BG"] + names, path, saved
