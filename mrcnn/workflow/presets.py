"""The workflow's configuration: `WorkflowConfig` (Matterport's fine-tuning settings for a small
data set) and named presets of settings applied over it (``--preset``)."""

import re

from mrcnn.config import Config
from mrcnn.workflow.errors import WorkflowError


class WorkflowConfig(Config):
    """Fine-tuning COCO weights on a small data set (Matterport's balloon settings).

    ``NUM_CLASSES`` is ``1 + len(class_names)``; ``name`` sets ``NAME`` (run directories and
    checkpoint names).
    """

    NAME = "mrcnn"
    # A 12 GB GPU holds two 1024x1024 images with ResNet-101.
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 1
    # A few hundred images: short epochs so that the best checkpoint is chosen often.
    STEPS_PER_EPOCH = 100
    # Matterport's 50 would go round a small validation set many times per epoch.
    VALIDATION_STEPS = 10
    # Skip detections below 90% confidence.
    DETECTION_MIN_CONFIDENCE = 0.9
    # Only used with TRAIN_BN (the light preset): from scratch at a high learning rate, Keras'
    # 0.99 would leave the moving statistics that validation and detection use ~100 steps
    # behind the weights; 0.9 (PyTorch's default) keeps up.
    BATCH_NORM_MOMENTUM = 0.9

    def __init__(self, class_names=None, name=None):
        if class_names is not None:
            self.NUM_CLASSES = 1 + len(class_names)
            self.CLASS_NAMES = ("BG",) + tuple(str(c) for c in class_names)
        if name is not None:
            self.NAME = name
        super().__init__()


#: What the CPU presets share: ResNet-18 at 128 px, a narrow FPN, anchors for 10-100 px objects.
_SMALL_MODEL = {
    "BACKBONE": "resnet18", "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128,
    "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128), "TOP_DOWN_PYRAMID_SIZE": 32,
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 64, "POST_NMS_ROIS_TRAINING": 100, "MAX_GT_INSTANCES": 8,
    "MINI_MASK_SHAPE": (28, 28),
}

#: Named groups of settings applied over the base configuration (``--preset``).
PRESETS = {
    # ResNet-101, 1024 px: the COCO weights' architecture. For a GPU.
    "standard": {},
    # Learns from scratch on a CPU in minutes (the demo's): the small model with trainable batch
    # norm, because without pretrained weights the frozen BN statistics would be random.
    # LEARNING_RATE and WARMUP_STEPS are the from-scratch recipe of samples/shapes.py.
    "light": dict(_SMALL_MODEL, **{
        "FPN_CLASSIF_FC_LAYERS_SIZE": 128, "PRE_NMS_LIMIT": 500, "POST_NMS_ROIS_INFERENCE": 100,
        "TRAIN_ROIS_PER_IMAGE": 24, "DETECTION_MAX_INSTANCES": 20,
        "DETECTION_MIN_CONFIDENCE": 0.7, "TRAIN_BN": True, "IMAGES_PER_GPU": 4,
        "LEARNING_RATE": 0.02, "WARMUP_STEPS": 50, "STEPS_PER_EPOCH": 40, "VALIDATION_STEPS": 3,
    }),
    # Smallest model that runs every code path; for tests and smoke runs, learns nothing useful.
    "tiny": dict(_SMALL_MODEL, **{
        "FPN_CLASSIF_FC_LAYERS_SIZE": 64, "PRE_NMS_LIMIT": 600, "POST_NMS_ROIS_INFERENCE": 50,
        "TRAIN_ROIS_PER_IMAGE": 32, "DETECTION_MAX_INSTANCES": 10,
        "DETECTION_MIN_CONFIDENCE": 0.0, "IMAGES_PER_GPU": 2, "STEPS_PER_EPOCH": 2,
        "VALIDATION_STEPS": 1,
    }),
}

#: Settings that stay lists (JSON turns every tuple into a list; the others become tuples).
_LIST_SETTINGS = ("RPN_ANCHOR_RATIOS", "BACKBONE_STRIDES", "MASK_SHAPE")


def run_name(text, default="mrcnn"):
    """A configuration NAME made of ``text`` (a data set folder name, say): lower case letters,
    digits and underscores, as run directories and checkpoint names need."""
    name = re.sub(r"[^a-z0-9_]+", "_", str(text or "").lower()).strip("_")
    return name or default


def make_config(preset="standard", overrides=None, class_names=None, inference=False, name=None,
                base=WorkflowConfig):
    """A validated configuration with a preset and overrides.

    Args:
        preset: a key of `PRESETS`.
        overrides: ``{SETTING: value}`` applied after the preset (e.g. from the command line).
        class_names: object class names without the background; sets NUM_CLASSES.
        inference: one image per batch (``detect`` and the evaluations feed images one by one).
        name: the configuration's NAME (default: the base class's).
        base: the Config subclass to start from; its ``__init__`` takes ``class_names`` and
            ``name`` like `WorkflowConfig`'s.

    Raises:
        WorkflowError: unknown preset or setting. ConfigError: an invalid value (names it).
    """
    if preset not in PRESETS:
        raise WorkflowError(f"unknown preset {preset!r} (--preset); use one of "
                            f"{', '.join(PRESETS)}")
    config = base(class_names, name)
    settings = dict(PRESETS[preset])
    settings.update(overrides or {})
    if "CLASS_NAMES" in settings:
        raise WorkflowError("CLASS_NAMES comes from the data set's classes (--classes), not from "
                            "--set or the \"config\" section of the settings file; remove it "
                            "there")
    if "NUM_CLASSES" in settings:
        # Heads of another size than the data set's classes (COCO's 81, say): the names no
        # longer describe them.
        config.CLASS_NAMES = None
    for key, value in settings.items():
        if not key.isupper() or not hasattr(config, key):
            raise WorkflowError(f"unknown configuration setting {key!r} (check the \"config\" "
                                f"section of the settings file or --set); see mrcnn.config.Config")
        if isinstance(value, list) and key not in _LIST_SETTINGS:
            value = tuple(value)
        setattr(config, key, value)
    if inference:
        config.GPU_COUNT, config.IMAGES_PER_GPU = 1, 1
    config.validate()
    return config


def config_overrides(config, base=WorkflowConfig):
    """The settings of ``config`` (any Config) that differ from ``base``'s defaults, so that
    ``make_config("standard", config_overrides(config), ...)`` rebuilds it: what a run's
    ``settings.json`` records when it was trained with a Config of the user's own. Derived
    values, NAME, NUM_CLASSES, CLASS_NAMES and callables (a BACKBONE function) are left out."""
    reference = base()
    out = {}
    for key in type(config)._setting_names():
        if key in ("NAME", "NUM_CLASSES", "CLASS_NAMES") or isinstance(
                getattr(type(config), key, None), property):
            continue
        value = getattr(config, key)
        if callable(value):
            continue
        if not _same(value, getattr(reference, key, None)):
            out[key] = value
    return out


def _same(a, b):
    import numpy as np

    try:
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))) \
            if isinstance(a, (list, tuple, np.ndarray)) else a == b
    except Exception:  # incomparable values differ
        return False
