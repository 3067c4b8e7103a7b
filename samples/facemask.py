"""Mask R-CNN for face masks: Matterport's balloon sample, for a VIA-annotated face-mask data set.

The data set is laid out as Matterport's samples expect::

    DATASET/train/via_region_data.json   + the training images
    DATASET/val/via_region_data.json     + the validation images

with one VIA region (polygon, rect, circle, ellipse) per face mask. Every region is the class
``mask``, or, with ``--class-attribute mask_type``, the class named by that region attribute
(``surgical``, ``N95``, ``cloth``, ...).

Commands (``python samples/facemask.py COMMAND --help`` lists each one's options)::

    # The whole job on generated data, from scratch on the CPU, in a few minutes:
    python samples/facemask.py demo [--output out/demo] [--fast]

    # Anchor sizes that fit the boxes of a data set (k-means):
    python samples/facemask.py anchors --dataset DATASET

    # Fine-tune the COCO weights: stage 1 trains the heads (LR 1e-3), stage 2 all layers
    # (LR 1e-5) starting from the best stage-1 checkpoint by validation loss:
    python samples/facemask.py train --dataset DATASET --weights coco

    # mAP@0.5, mAP@0.5:0.95 and COCO AP (bbox, segm) on the validation images:
    python samples/facemask.py evaluate --dataset DATASET \
        --weights logs/facemask.../mask_rcnn_facemask_best.h5      # or --weights best

    # Annotated PNG + JSON (boxes, classes, scores, RLE masks) per image:
    python samples/facemask.py detect --weights PATH --image FILE_OR_DIR --output detections

Each training run directory (``LOGS/facemaskYYYYMMDDTHHMM/``) holds a checkpoint per epoch, the
best one by validation loss (``mask_rcnn_facemask_best.h5``, recorded in ``best.json``),
``history.csv`` and ``settings.json`` (classes, configuration preset and overrides, what each stage
did), so ``evaluate`` and ``detect`` rebuild the model the weights were trained with.
"""

import argparse
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from mrcnn.config import Config  # noqa: E402
from mrcnn.datasets.via import VIADataset  # noqa: E402

#: Extensions ``detect`` reads from a directory (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Written in each training run directory; read back by ``evaluate`` and ``detect``.
SETTINGS_FILE = "settings.json"


class SampleError(Exception):
    """A user-facing error of this sample (missing file, bad option). The message names the file
    or setting and the fix."""


############################################################
#  Configurations
############################################################

class FaceMaskConfig(Config):
    """Fine-tuning COCO weights on a small face-mask data set (Matterport's balloon settings).

    ``NUM_CLASSES`` is ``1 + len(class_names)`` (background plus the classes found in the data
    set); ``FaceMaskConfig()`` alone is the single class ``mask``.
    """

    NAME = "facemask"
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

    def __init__(self, class_names=None):
        if class_names is not None:
            self.NUM_CLASSES = 1 + len(class_names)
        super().__init__()


class FaceMaskInferenceConfig(FaceMaskConfig):
    """One image at a time (``detect`` and the evaluations feed images one by one)."""

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


#: Named groups of settings applied over FaceMaskConfig (``--preset``).
PRESETS = {
    # ResNet-101, 1024 px: the COCO weights' architecture. For a GPU.
    "standard": {},
    # Learns from scratch on a CPU in minutes (the demo's): ResNet-18, 128 px, narrow FPN and
    # heads, anchors for 10-100 px objects, and trainable batch norm, because without pretrained
    # weights the frozen BN statistics would be random (see samples/shapes.py). LEARNING_RATE and
    # WARMUP_STEPS are the from-scratch recipe of samples/shapes.py.
    "light": {
        "BACKBONE": "resnet18", "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128,
        "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128), "TOP_DOWN_PYRAMID_SIZE": 32,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 128, "RPN_TRAIN_ANCHORS_PER_IMAGE": 64,
        "PRE_NMS_LIMIT": 500, "POST_NMS_ROIS_TRAINING": 100, "POST_NMS_ROIS_INFERENCE": 100,
        "TRAIN_ROIS_PER_IMAGE": 24, "MAX_GT_INSTANCES": 8, "MINI_MASK_SHAPE": (28, 28),
        "DETECTION_MAX_INSTANCES": 20, "DETECTION_MIN_CONFIDENCE": 0.7, "TRAIN_BN": True,
        "IMAGES_PER_GPU": 4, "LEARNING_RATE": 0.02, "WARMUP_STEPS": 50,
        "STEPS_PER_EPOCH": 40, "VALIDATION_STEPS": 3,
    },
    # Smallest model that runs every code path; for tests and smoke runs, learns nothing useful.
    "tiny": {
        "BACKBONE": "resnet18", "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128,
        "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128), "TOP_DOWN_PYRAMID_SIZE": 32,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 64, "RPN_TRAIN_ANCHORS_PER_IMAGE": 64,
        "PRE_NMS_LIMIT": 600, "POST_NMS_ROIS_TRAINING": 100, "POST_NMS_ROIS_INFERENCE": 50,
        "TRAIN_ROIS_PER_IMAGE": 32, "MAX_GT_INSTANCES": 8, "MINI_MASK_SHAPE": (28, 28),
        "DETECTION_MAX_INSTANCES": 10, "DETECTION_MIN_CONFIDENCE": 0.0,
        "IMAGES_PER_GPU": 2, "STEPS_PER_EPOCH": 2, "VALIDATION_STEPS": 1,
    },
}


def make_config(preset="standard", overrides=None, class_names=None, inference=False):
    """A validated FaceMaskConfig (or its inference variant) with a preset and overrides.

    Args:
        preset: a key of `PRESETS`.
        overrides: ``{SETTING: value}`` applied after the preset (e.g. from the command line).
        class_names: object class names without the background; sets NUM_CLASSES.
        inference: build the inference variant (one image per batch).

    Raises:
        SampleError: unknown preset or setting. ConfigError: an invalid value (names it).
    """
    if preset not in PRESETS:
        raise SampleError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    config = (FaceMaskInferenceConfig if inference else FaceMaskConfig)(class_names)
    settings = dict(PRESETS[preset])
    settings.update(overrides or {})
    for name, value in settings.items():
        if not hasattr(config, name) or not name.isupper():
            raise SampleError(f"unknown configuration setting {name!r}")
        if isinstance(value, list) and name not in ("RPN_ANCHOR_RATIOS", "BACKBONE_STRIDES",
                                                    "MASK_SHAPE"):
            value = tuple(value)  # JSON turns tuples into lists
        setattr(config, name, value)
    if inference:
        config.GPU_COUNT, config.IMAGES_PER_GPU = 1, 1
    config.validate()
    return config


############################################################
#  Dataset
############################################################

class FaceMaskDataset(VIADataset):
    """Face masks annotated with VIA (see `mrcnn.datasets.via` for the formats and shapes).

    ``load_mask`` (inherited) returns bool masks ``[H, W, N]`` and int32 class ids ``[N]`` in the
    image's own pixel coordinates.
    """

    def load_facemask(self, dataset_dir, subset, annotation_file="via_region_data.json",
                      class_attribute=None, class_names=None):
        """Load one subset of the face-mask data set.

        Args:
            dataset_dir: root of the data set.
            subset: sub-folder to load, ``"train"`` or ``"val"`` (any folder name works).
            annotation_file: VIA JSON file name inside ``dataset_dir/subset``.
            class_attribute: region attribute holding each region's class (e.g. ``"mask_type"``);
                ``None``: every region is the class ``mask``.
            class_names: with ``class_attribute``, the class names in id order; pass the training
                subset's names when loading the validation subset so ids agree.

        Returns:
            list of the class names (ids 1..K), background excluded.

        Raises:
            SampleError: missing folder or JSON file, or no usable image (the message names it).
            VIAFormatError: malformed annotations (names the file, image and region).
        """
        folder = os.path.join(str(dataset_dir), subset)
        json_path = os.path.join(folder, annotation_file)
        if not os.path.isdir(str(dataset_dir)):
            raise SampleError(f"dataset directory not found: {dataset_dir}")
        if not os.path.isdir(folder):
            raise SampleError(f"subset folder not found: {folder} (expected DATASET/{subset}/ "
                              f"with {annotation_file} and the images)")
        if not os.path.isfile(json_path):
            raise SampleError(f"annotation file not found: {json_path} (export the VIA "
                              f"annotations as JSON there, or name the file with "
                              f"--annotation-file)")
        before = len(self.image_info)
        names = self.load_via(dataset_dir, subset, annotation_file=annotation_file,
                              source="facemask", class_attribute=class_attribute,
                              class_names=class_names, default_class="mask")
        if len(self.image_info) == before:
            raise SampleError(f"{json_path}: no image with a usable region; the subset "
                              f"{subset!r} is empty (annotate at least one face mask)")
        return names

    def image_reference(self, image_id):
        """Path of the image file."""
        info = self.image_info[image_id]
        if info["source"] == "facemask":
            return info["path"]
        return super().image_reference(image_id)


def load_subset(dataset_dir, subset, annotation_file="via_region_data.json",
                class_attribute=None, class_names=None):
    """A prepared FaceMaskDataset of one subset; returns ``(dataset, class_names)``."""
    dataset = FaceMaskDataset()
    names = dataset.load_facemask(dataset_dir, subset, annotation_file, class_attribute,
                                  class_names)
    dataset.prepare()
    return dataset, names


def load_train_val(dataset_dir, annotation_file="via_region_data.json", class_attribute=None,
                   verbose=1):
    """The prepared train and val subsets with the same class ids.

    With ``class_attribute`` the classes are the values found in either subset, sorted, so that
    a class id means the same in both; a class seen only in ``val`` is kept (it can be
    evaluated, never detected) with a warning.

    Returns:
        ``(train, val, class_names)``.
    """
    names = ["mask"]
    if class_attribute:
        found = {subset: FaceMaskDataset().load_facemask(dataset_dir, subset, annotation_file,
                                                         class_attribute)
                 for subset in ("train", "val")}
        names = sorted(set(found["train"]) | set(found["val"]))
        missing = sorted(set(names) - set(found["train"]))
        if missing and verbose:
            print(f"WARNING: class(es) {', '.join(missing)} of attribute {class_attribute!r} "
                  f"appear only in {os.path.join(str(dataset_dir), 'val')}; the model cannot "
                  "learn them", file=sys.stderr)
    train, _ = load_subset(dataset_dir, "train", annotation_file, class_attribute,
                           names if class_attribute else None)
    val, _ = load_subset(dataset_dir, "val", annotation_file, class_attribute,
                         names if class_attribute else None)
    return train, val, names


############################################################
#  Run directories and settings
############################################################

def _checkpoint_re(name):
    return re.compile(r"^mask_rcnn_%s_(\d{4})\.h5$" % re.escape(name.lower()))


def run_checkpoints(run_dir, name="facemask"):
    """``[(epoch, path)]`` of the numbered checkpoints in a run directory, by epoch."""
    pattern = _checkpoint_re(name)
    found = []
    if os.path.isdir(run_dir):
        for f in os.listdir(run_dir):
            m = pattern.match(f)
            if m:
                found.append((int(m.group(1)), os.path.join(run_dir, f)))
    return sorted(found)


def best_checkpoint(run_dir, name="facemask"):
    """The numbered checkpoint the trainer marked best (``best.json``) in ``run_dir``.

    Returns ``(path, record)`` where record is best.json's content (``checkpoint``, ``epoch``,
    ``metric``, ``value``), or ``(path of mask_rcnn_<name>_best.h5, None)`` without best.json.
    """
    record_path = os.path.join(run_dir, "best.json")
    if os.path.isfile(record_path):
        with open(record_path) as f:
            record = json.load(f)
        path = os.path.join(run_dir, record["checkpoint"])
        if os.path.isfile(path):
            return path, record
    path = os.path.join(run_dir, f"mask_rcnn_{name.lower()}_best.h5")
    if os.path.isfile(path):
        return path, None
    raise SampleError(f"no best checkpoint marked in {run_dir} (no best.json or "
                      f"mask_rcnn_{name.lower()}_best.h5): train with validation data first")


def read_settings(weights_path):
    """``settings.json`` next to a weights file, or ``{}``."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights_path)), SETTINGS_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _write_settings(run_dir, settings):
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, SETTINGS_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(_jsonable(settings), f, indent=2)
    os.replace(path + ".tmp", path)


def _jsonable(value):
    """JSON-ready copy: tuples and arrays to lists, NumPy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


############################################################
#  Weights
############################################################

def find_run_checkpoint(which, logs, name="facemask"):
    """``which`` = ``"last"``: the last checkpoint of the latest run in ``logs`` that has one;
    ``"best"``: the best checkpoint of that run (see `best_checkpoint`)."""
    name = name.lower()
    runs = sorted(d for d in (os.listdir(logs) if os.path.isdir(logs) else [])
                  if d.startswith(name) and os.path.isdir(os.path.join(logs, d)))
    for d in reversed(runs):
        found = run_checkpoints(os.path.join(logs, d), name)
        if found:
            return found[-1][1] if which == "last" else best_checkpoint(
                os.path.join(logs, d), name)[0]
    raise SampleError(f"no checkpoint of {name!r} in {os.path.abspath(logs)}: train first, or "
                      "pass a weights file")


def resolve_weights(spec, config, logs):
    """Path and excluded layers for a ``--weights`` value.

    Args:
        spec: ``coco`` (downloaded once into the `mrcnn.download` cache), ``imagenet``,
            ``last`` (last checkpoint of the latest run in ``logs``), ``best`` (best checkpoint of
            the latest run), ``none`` or a file path.
        config: the configuration of the model the weights are for (decides what fits).

    Returns:
        ``(path or None, exclude list, description)``.
    """
    import mrcnn.model as modellib

    if spec in (None, "none"):
        return None, [], "random initialisation"
    if spec == "coco":
        if config.BACKBONE != "resnet101":
            raise SampleError(f"--weights coco holds ResNet-101 weights but BACKBONE is "
                              f"{config.BACKBONE!r}; use --preset standard or --backbone resnet101")
        from mrcnn.download import download_trained_weights, get_cache_dir
        path = download_trained_weights(os.path.join(get_cache_dir(), "mask_rcnn_coco.h5"))
        # The COCO heads predict 81 classes; other class counts need freshly initialised heads.
        exclude = list(modellib.CLASS_SPECIFIC_LAYERS) if config.NUM_CLASSES != 81 else []
        return path, exclude, f"the COCO weights {path}"
    if spec == "imagenet":
        if config.BACKBONE not in ("resnet50", "resnet101"):
            raise SampleError(f"--weights imagenet holds ResNet-50 weights but BACKBONE is "
                              f"{config.BACKBONE!r}; use --backbone resnet50 or resnet101")
        from mrcnn.download import download_imagenet_weights
        path = download_imagenet_weights()
        return path, [], f"the ImageNet weights {path}"
    if spec in ("last", "best"):
        path = find_run_checkpoint(spec, logs, config.NAME)
        return path, [], f"the {spec} checkpoint {path}"
    if not os.path.isfile(spec):
        raise SampleError(f"weights file not found: {spec} (use coco, imagenet, last, best, "
                          f"none or the path of a .h5 file)")
    return spec, [], spec


def _saved_settings_of(spec, logs, name="facemask"):
    """settings.json of the run a ``--weights`` value points into, or ``{}``."""
    if spec in ("last", "best"):
        try:
            return read_settings(find_run_checkpoint(spec, logs, name))
        except SampleError:
            return {}
    if spec and spec not in ("none", "coco", "imagenet") and os.path.isfile(spec):
        return read_settings(spec)
    return {}


def _after_last_checkpoint(model):
    """Continue a resumed run after its last checkpoint rather than after the loaded one.

    ``load_weights`` of one of our checkpoints (the best of stage 1, say) resumes its run at that
    checkpoint's epoch, as in Matterport; a stage here starts after the run's last checkpoint
    instead, so that it never overwrites the checkpoints of an earlier stage.
    """
    if model.epoch:  # 0: a new run (random, COCO or ImageNet weights)
        done = run_checkpoints(model.log_dir, model.config.NAME)
        model.epoch = max([model.epoch] + [epoch for epoch, _ in done])


############################################################
#  Training
############################################################

def _augmentation(enabled):
    """Left-right flips (faces are symmetric), with albumentations or imgaug, or None."""
    if not enabled:
        return None
    try:
        import albumentations as A
        return A.Compose([A.HorizontalFlip(p=0.5)])
    except ImportError:
        pass
    try:
        import imgaug.augmenters as iaa
        return iaa.Fliplr(0.5)
    except ImportError as e:
        raise SampleError("--augment needs albumentations (pip install albumentations)") from e


def _deadline_callback(deadline):
    """Keras callback that stops training after the batch that passes ``deadline`` (time.time).

    Keras still validates and ends the epoch, so a checkpoint is written."""
    import keras

    class Deadline(keras.callbacks.Callback):
        stopped = False

        def on_train_batch_end(self, batch, logs=None):
            if time.time() > deadline:
                self.model.stop_training = True
                Deadline.stopped = True

    return Deadline()


def train_stages(dataset_dir, weights, logs="logs", stage="both", stage1_epochs=20,
                 stage2_epochs=20, stage1_layers="heads", stage2_layers="all",
                 stage1_lr=1e-3, stage2_lr=1e-5, preset=None, overrides=None,
                 class_attribute=None, annotation_file="via_region_data.json", augment=False,
                 deadlines=(None, None), verbose=1):
    """Train in two stages; the second starts from the best checkpoint of the first.

    Both stages write into one run directory with continuous epoch numbers; each checkpoint is
    kept, the best by validation loss is marked (``best.json``, ``mask_rcnn_facemask_best.h5``)
    and ``settings.json`` records the configuration and what each stage did.

    Args:
        dataset_dir: data set root (``train`` and ``val`` sub-folders).
        weights: initial weights of stage 1 (see `resolve_weights`); for stage 2 alone,
            ``None`` means the best checkpoint of the latest run in ``logs``.
        logs: folder of the run directories.
        stage: ``"1"``, ``"2"`` or ``"both"``.
        stage1_epochs: stage 1 trains up to this epoch (counted from the start of the run, as in
            Matterport; a resumed run continues up to it).
        stage2_epochs: epochs of stage 2, after the last checkpoint of the run it continues.
        stage1_layers, stage2_layers: ``train(layers=...)`` of each stage.
        stage1_lr, stage2_lr: learning rates.
        preset, overrides: configuration (see `make_config`); ``preset=None`` takes the preset
            of the run the weights come from (``last``, ``best`` or one of our checkpoints),
            else ``standard``, and that run's overrides apply under ``overrides``.
        class_attribute: region attribute with the class names, or ``None`` for ``mask``.
        augment: random left-right flips.
        deadlines: optional ``time.time()`` after which each stage stops (after validating).

    Returns:
        dict with ``run_dir``, ``best`` (path of the best checkpoint of the run), ``records``
        (one dict per stage run, as appended to settings.json), ``class_names`` and ``config``.
    """
    import mrcnn.model as modellib

    stages = {"1": (1,), "2": (2,), "both": (1, 2)}[str(stage)]
    first_spec = weights if 1 in stages else (weights or "best")
    saved = _saved_settings_of(first_spec, logs)
    preset = preset or saved.get("preset") or "standard"
    # The class list must match the weights' heads, so a continued run keeps its attribute.
    class_attribute = class_attribute or saved.get("class_attribute")
    merged = dict(saved.get("overrides") or {})
    merged.update(overrides or {})
    overrides = merged

    train_ds, val_ds, class_names = load_train_val(dataset_dir, annotation_file,
                                                   class_attribute, verbose)
    config = make_config(preset, overrides, class_names)
    if verbose:
        print(f"Classes: {', '.join(class_names)} (NUM_CLASSES={config.NUM_CLASSES}); "
              f"{len(train_ds.image_ids)} training and {len(val_ds.image_ids)} validation "
              f"images; preset {preset!r}")
    augmentation = _augmentation(augment)
    records = []
    state = {"run_dir": None}

    def settings_for(run_dir):
        settings = read_settings(os.path.join(run_dir, SETTINGS_FILE))
        settings.update({"name": config.NAME, "preset": preset, "overrides": overrides,
                         "class_names": class_names, "class_attribute": class_attribute,
                         "annotation_file": annotation_file,
                         "dataset": os.path.abspath(str(dataset_dir))})
        settings.setdefault("stages", [])
        return settings

    def run(stage_no, model, initial, description, layers, lr, target_epoch, deadline):
        first = model.epoch + 1
        # A new run gets a directory of its own here (the next free minute if another run
        # started this minute), so settings.json can be written before training.
        run_dir = state["run_dir"] = model.create_log_dir()
        _write_settings(run_dir, settings_for(run_dir))
        if verbose:
            print(f"\nStage {stage_no}: layers={layers!r}, learning rate {lr:g}, epochs "
                  f"{first}..{target_epoch} x {config.STEPS_PER_EPOCH} steps, from "
                  f"{description}\n  run directory {run_dir}", flush=True)
        callbacks = [_deadline_callback(deadline)] if deadline else []
        model.train(train_ds, val_ds, learning_rate=lr, epochs=target_epoch, layers=layers,
                    augmentation=augmentation, custom_callbacks=callbacks)
        best, record = best_checkpoint(run_dir, config.NAME)
        stopped = bool(callbacks) and callbacks[0].stopped
        entry = {"stage": stage_no, "layers": layers, "learning_rate": lr,
                 "initial_weights": initial, "first_epoch": first,
                 "last_epoch": model.epoch, "stopped_by_time_limit": stopped,
                 "best_checkpoint": os.path.basename(best), "best_record": record}
        settings = settings_for(run_dir)
        settings["stages"].append(entry)
        _write_settings(run_dir, settings)
        records.append(entry)
        if verbose:
            value = (f"{record['metric']} {record['value']:.4f} at epoch {record['epoch']}"
                     if record else "value unknown")
            print(f"Stage {stage_no} done{' (time limit reached)' if stopped else ''}; best "
                  f"checkpoint of the run: {best} ({value})", flush=True)
        return best

    start = None  # the weights stage 2 starts from
    if 1 in stages:
        model = modellib.MaskRCNN("training", config, logs)
        path, exclude, description = resolve_weights(weights, config, logs)
        if path:
            model.load_weights(path, by_name=True, exclude=exclude)
        _after_last_checkpoint(model)
        target = max(int(stage1_epochs), 1)
        if model.epoch >= target:
            raise SampleError(f"the run {model.log_dir} is already at epoch {model.epoch}, "
                              f"not before --stage1-epochs {target}; raise it or run --stage 2")
        start = run(1, model, path, description, stage1_layers, stage1_lr, target,
                    deadlines[0])
        del model

    if 2 in stages:
        model = modellib.MaskRCNN("training", config, logs)
        if start is not None:
            path, exclude = start, []
            description = f"the best stage-1 checkpoint {start}"
        else:
            path, exclude, description = resolve_weights(weights or "best", config, logs)
        if path:
            model.load_weights(path, by_name=True, exclude=exclude)
        _after_last_checkpoint(model)
        run(2, model, path, description, stage2_layers, stage2_lr,
            model.epoch + max(int(stage2_epochs), 1), deadlines[1])
        del model

    run_dir = state["run_dir"]
    best, record = best_checkpoint(run_dir, config.NAME)
    link = os.path.join(run_dir, f"mask_rcnn_{config.NAME.lower()}_best.h5")
    return {"run_dir": run_dir, "best": link if os.path.isfile(link) else best,
            "best_record": record, "records": records, "class_names": class_names,
            "config": config}


############################################################
#  Inference helpers
############################################################

class CachedDetector:
    """Wraps a model so that ``detect`` runs once per distinct image.

    The mAP and COCO evaluations each call ``detect`` on every image; keyed by the image bytes,
    the second pass is free."""

    def __init__(self, model):
        self.model = model
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


def trained_weights(spec, logs, name="facemask"):
    """Path of trained face-mask weights: a .h5 path, ``last`` or ``best`` (latest run)."""
    if spec in ("last", "best"):
        return find_run_checkpoint(spec, logs, name)
    if spec in (None, "none", "coco", "imagenet"):
        raise SampleError(f"--weights {spec}: give trained face-mask weights (a .h5 path, last "
                          "or best)")
    if not os.path.isfile(spec):
        raise SampleError(f"weights file not found: {spec}")
    return spec


def inference_model(weights, logs="logs", preset=None, overrides=None, class_names=None,
                    min_confidence=None):
    """Inference MaskRCNN with trained weights loaded.

    The configuration and class names come from the ``settings.json`` of the run the weights
    belong to, unless given; a weights file without one gets the ``standard`` preset and the
    single class ``mask``.

    Returns:
        ``(model, class names with "BG" first, weights path)``.
    """
    import mrcnn.model as modellib

    path = trained_weights(weights, logs)
    saved = read_settings(path)
    names = list(class_names or saved.get("class_names") or ["mask"])
    settings = dict(saved.get("overrides") or {})
    settings.update(overrides or {})
    if min_confidence is not None:
        settings["DETECTION_MIN_CONFIDENCE"] = float(min_confidence)
    config = make_config(preset or saved.get("preset") or "standard", settings, names,
                         inference=True)
    model = modellib.MaskRCNN("inference", config, logs)
    model.load_weights(path, by_name=True)
    return model, ["BG"] + names, path


def detection_record(r, class_names, image_shape):
    """JSON-ready detections of one image.

    Args:
        r: a ``detect`` result: rois int [D, (y1, x1, y2, x2)] pixels (y2, x2 one past the last
            pixel), class_ids int [D], scores float [D], masks bool [H, W, D].
        class_names: names indexed by class id (``"BG"`` first).
        image_shape: (H, W, ...) of the image.

    Returns:
        list of dicts ``{"class_id", "class_name", "score", "box": [y1, x1, y2, x2],
        "bbox": [x, y, width, height] (COCO), "area": mask pixels, "segmentation": COCO RLE
        {"size": [H, W], "counts": str}}``; decode a mask with
        ``pycocotools.mask.decode(segmentation)`` (uint8 [H, W]).
    """
    from pycocotools import mask as mask_utils

    out = []
    for k in range(len(r["class_ids"])):
        y1, x1, y2, x2 = (int(v) for v in r["rois"][k])
        mask = np.asarray(r["masks"][..., k], bool)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        class_id = int(r["class_ids"][k])
        out.append({"class_id": class_id,
                    "class_name": class_names[class_id] if class_id < len(class_names) else "?",
                    "score": round(float(r["scores"][k]), 5),
                    "box": [y1, x1, y2, x2], "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": int(mask.sum()),
                    "segmentation": {"size": [int(image_shape[0]), int(image_shape[1])],
                                     "counts": rle["counts"].decode("ascii")}})
    return out


def _new_figure(nrows=1, ncols=1, size=6.0, aspect=1.0):
    """A matplotlib Figure outside pyplot: rendered with Agg whatever the session's backend, and
    never shown or kept alive by pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size * ncols, size * nrows * aspect))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_detection_picture(image, r, class_names, path, title=""):
    """``visualize.display_instances`` of a ``detect`` result, saved as PNG at ``path``."""
    from mrcnn import visualize

    h, w = image.shape[:2]
    fig, axes = _new_figure(size=8.0, aspect=h / max(w, 1))
    visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], class_names,
                                r["scores"], title=title, ax=axes[0, 0])
    visualize.save_figure(fig, path, dpi=100, bbox_inches="tight")


############################################################
#  Evaluation
############################################################

def evaluate(dataset_dir, weights, logs="logs", subset="val", limit=None, preset=None,
             overrides=None, min_confidence=None, class_attribute=None,
             annotation_file="via_region_data.json"):
    """mAP@0.5, mAP@0.5:0.95 (Matterport's compute_ap on masks) and COCO AP (bbox, segm).

    The configuration, class names and class attribute come from the weights' run
    (``settings.json``) unless given. Detection runs once per image on the original image.

    Returns:
        dict: ``weights``, ``dataset``, ``subset``, ``class_names``, ``num_images``,
        ``num_evaluated``, ``mAP@0.5``, ``mAP@0.5:0.95``, ``coco`` (``bbox``, ``bbox_AP50``,
        ``bbox_AP75``, ``bbox_stats``, ``segm``, ... as `mrcnn.evaluation.evaluate_coco`),
        ``min_confidence``, ``rows`` (per image: ``image_id``, ``reference``, ``num_gt``,
        ``num_pred``, ``AP@0.5``, ``AP@0.5:0.95``, ``note``); and, for callers in Python,
        ``_dataset`` and ``_detector`` (a `CachedDetector` holding every image's detections).
        NaN means undefined (no ground truth).
    """
    from mrcnn.evaluation import evaluate_coco, evaluate_map

    path = trained_weights(weights, logs)
    saved = read_settings(path)
    class_attribute = class_attribute or saved.get("class_attribute")
    names = saved.get("class_names")
    if names is None and class_attribute:
        # Weights without settings.json: the classes found in the evaluated subset.
        names = load_subset(dataset_dir, subset, annotation_file, class_attribute)[1]
    model, names, path = inference_model(path, logs, preset, overrides, names, min_confidence)
    dataset, _ = load_subset(dataset_dir, subset, annotation_file, class_attribute,
                             names[1:] if class_attribute else None)
    if dataset.num_classes != model.config.NUM_CLASSES:
        raise SampleError(f"the {subset} subset has {dataset.num_classes - 1} class(es) "
                          f"({', '.join(dataset.class_names[1:])}) but the weights "
                          f"{path} have {model.config.NUM_CLASSES - 1} ({', '.join(names[1:])})")
    detector = CachedDetector(model)
    with warnings.catch_warnings():
        # pycocotools trips NumPy 2's __array__(copy=...) deprecation; not ours to fix.
        warnings.filterwarnings("ignore", message="__array__ implementation",
                                category=DeprecationWarning)
        mean_ap = evaluate_map(detector, dataset, iou_thresholds="coco", limit=limit, verbose=0)
        coco = evaluate_coco(detector, dataset, limit=limit, verbose=0)
    rows = []
    for row in mean_ap["rows"]:
        per_iou = row["AP_per_iou"]
        rows.append({"image_id": row["image_id"], "reference": row["reference"],
                     "num_gt": row["num_gt"], "num_pred": row["num_pred"],
                     "AP@0.5": None if per_iou is None else per_iou[0.5],
                     "AP@0.5:0.95": row["AP"], "note": row["note"]})
    return {
        "weights": os.path.abspath(path), "dataset": os.path.abspath(str(dataset_dir)),
        "subset": subset, "class_names": names[1:],
        "num_images": mean_ap["num_images"], "num_evaluated": mean_ap["num_evaluated"],
        "mAP@0.5": mean_ap["mAP@0.5"], "mAP@0.5:0.95": mean_ap["mAP@0.5:0.95"],
        "coco": {k: v for k, v in coco.items() if k != "detections"},
        "min_confidence": float(model.config.DETECTION_MIN_CONFIDENCE),
        "rows": rows, "_detector": detector, "_dataset": dataset,
    }


def format_results(result):
    """The per-image table and the summary figures of `evaluate` as text."""
    def fmt(v):
        return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"

    lines = [f"{'image_id':>8}  {'gt':>3}  {'pred':>4}  {'AP@.5':>6}  {'AP@.5:.95':>9}  image"]
    for row in result["rows"]:
        note = f"  ({row['note']})" if row["note"] else ""
        lines.append(f"{row['image_id']:>8}  {row['num_gt']:>3}  {row['num_pred']:>4}  "
                     f"{fmt(row['AP@0.5'])}  {fmt(row['AP@0.5:0.95']):>9}  "
                     f"{os.path.basename(str(row['reference']))}{note}")
    coco = result["coco"]
    lines += [
        "",
        f"Images evaluated: {result['num_evaluated']} of {result['num_images']} "
        f"({result['subset']}), detections with confidence >= {result['min_confidence']:g}",
        f"mAP@0.5        {fmt(result['mAP@0.5'])}   (Matterport compute_ap, mask IoU)",
        f"mAP@0.5:0.95   {fmt(result['mAP@0.5:0.95'])}",
        f"COCO AP bbox   {fmt(coco['bbox'])}   (AP50 {fmt(coco['bbox_AP50']).strip()}, "
        f"AP75 {fmt(coco['bbox_AP75']).strip()})",
        f"COCO AP segm   {fmt(coco['segm'])}   (AP50 {fmt(coco['segm_AP50']).strip()}, "
        f"AP75 {fmt(coco['segm_AP75']).strip()})",
    ]
    return "\n".join(lines)


def _public(result):
    return _jsonable({k: v for k, v in result.items() if not k.startswith("_")})


############################################################
#  Anchors
############################################################

def molded_boxes(dataset, config):
    """Ground-truth boxes in network-input pixels, grouped by network-input shape.

    Each image's boxes (``extract_bboxes`` of its masks, ``[y1, x1, y2, x2]`` pixels) are scaled
    and shifted as ``resize_image`` with the config's IMAGE_RESIZE_MODE, IMAGE_MIN_DIM,
    IMAGE_MAX_DIM and IMAGE_MIN_SCALE moves the image (in ``crop`` mode the random crop is
    ignored: the boxes stay in the resized, uncropped image).

    Returns:
        ``{(H, W): float64 [N, 4] boxes}``.
    """
    from mrcnn.image import resize_image
    from mrcnn.ops.boxes_np import extract_bboxes

    groups = {}
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        masks, _ = dataset.load_mask(image_id)
        if masks.shape[-1] == 0:
            continue
        boxes = extract_bboxes(masks).astype(np.float64)
        # Only the geometry of the resize matters; a 1-channel blank image of the same size
        # gives it without decoding the photo.
        blank = np.zeros((info["height"], info["width"], 1), np.uint8)
        mode = "square" if config.IMAGE_RESIZE_MODE == "crop" else config.IMAGE_RESIZE_MODE
        molded, window, scale, _, _ = resize_image(
            blank, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
            min_scale=config.IMAGE_MIN_SCALE, mode=mode)
        boxes = boxes * scale + np.array([window[0], window[1], window[0], window[1]])
        groups.setdefault(tuple(molded.shape[:2]), []).append(boxes)
    return {shape: np.concatenate(b) for shape, b in groups.items()}


def fit_anchors(dataset, config, num_ratios=3):
    """k-means anchors for a data set and how well they and the config's anchors fit its boxes.

    Returns a dict: ``scales`` (int, one per level, ascending), ``ratios`` (rounded to 0.01),
    ``num_boxes``, ``sizes`` / ``aspects`` (min, median, max of sqrt(h*w) and w/h in molded
    pixels), and for ``suggested`` and ``default`` (the config's anchors): ``mean_iou`` (mean over
    boxes of the best IoU with any anchor of the pyramid) and ``recall_0.7`` (fraction of boxes
    whose best anchor reaches the RPN's positive IoU 0.7).
    """
    from mrcnn.anchors import best_anchor_iou, suggest_anchors

    groups = molded_boxes(dataset, config)
    if not groups:
        raise SampleError("no ground-truth box in the data set; nothing to fit anchors to")
    boxes = np.concatenate(list(groups.values()))
    scales, ratios = suggest_anchors(boxes, num_scales=len(config.BACKBONE_STRIDES),
                                     num_ratios=num_ratios)
    # Report the rounded values, which are what a user copies into the config.
    scales = [max(1, int(round(s))) for s in scales]
    ratios = [round(float(r), 2) for r in ratios]

    def fit(s, r):
        iou = np.concatenate([best_anchor_iou(b, shape, s, r, config.BACKBONE_STRIDES,
                                              config.RPN_ANCHOR_STRIDE)
                              for shape, b in groups.items()])
        return {"mean_iou": float(iou.mean()), "recall_0.7": float(np.mean(iou >= 0.7))}

    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    ok = (h > 0) & (w > 0)
    size, aspect = np.sqrt(h[ok] * w[ok]), w[ok] / h[ok]
    return {
        "scales": scales, "ratios": ratios, "num_boxes": int(len(boxes)),
        "num_images": int(len(dataset.image_ids)),
        "shapes": sorted(groups),
        "sizes": [float(size.min()), float(np.median(size)), float(size.max())],
        "aspects": [float(aspect.min()), float(np.median(aspect)), float(aspect.max())],
        "suggested": fit(scales, ratios),
        "default": fit(list(config.RPN_ANCHOR_SCALES), list(config.RPN_ANCHOR_RATIOS)),
        "default_scales": [float(s) for s in config.RPN_ANCHOR_SCALES],
        "default_ratios": [float(r) for r in config.RPN_ANCHOR_RATIOS],
    }


############################################################
#  Command line
############################################################

def _csv_numbers(text, kind=float):
    try:
        return [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def _overrides(args):
    """Configuration settings given on the command line."""
    out = {}
    if getattr(args, "backbone", None):
        out["BACKBONE"] = args.backbone
    if getattr(args, "image_size", None):
        out["IMAGE_MIN_DIM"] = out["IMAGE_MAX_DIM"] = int(args.image_size)
    if getattr(args, "images_per_gpu", None):
        out["IMAGES_PER_GPU"] = int(args.images_per_gpu)
    if getattr(args, "steps_per_epoch", None):
        out["STEPS_PER_EPOCH"] = int(args.steps_per_epoch)
    if getattr(args, "validation_steps", None) is not None:
        out["VALIDATION_STEPS"] = int(args.validation_steps)
    if getattr(args, "anchor_scales", None):
        out["RPN_ANCHOR_SCALES"] = tuple(args.anchor_scales)
    if getattr(args, "anchor_ratios", None):
        out["RPN_ANCHOR_RATIOS"] = list(args.anchor_ratios)
    return out


def cmd_train(args):
    if args.stage in ("1", "both") and args.weights is None:
        raise SampleError("train needs --weights for stage 1: coco, imagenet, last, none or a "
                          ".h5 path")
    result = train_stages(
        args.dataset, args.weights, logs=args.logs, stage=args.stage,
        stage1_epochs=args.stage1_epochs, stage2_epochs=args.stage2_epochs,
        stage1_layers=args.stage1_layers, stage2_layers=args.stage2_layers,
        stage1_lr=args.stage1_lr, stage2_lr=args.stage2_lr, preset=args.preset,
        overrides=_overrides(args), class_attribute=args.class_attribute,
        annotation_file=args.annotation_file, augment=args.augment)
    run_dir, best, record = result["run_dir"], result["best"], result["best_record"]
    about = f" ({record['checkpoint']}, {record['metric']} {record['value']:.4f})" if record else ""
    print(f"\nRun directory: {run_dir}\nBest checkpoint: {best}{about}\nNext: python "
          f"samples/facemask.py evaluate --dataset {args.dataset} --weights {best}")
    return 0


def cmd_evaluate(args):
    result = evaluate(args.dataset, args.weights, logs=args.logs, subset=args.subset,
                      limit=args.limit, preset=args.preset, overrides=_overrides(args),
                      min_confidence=args.min_confidence, class_attribute=args.class_attribute,
                      annotation_file=args.annotation_file)
    print(f"Weights: {result['weights']}")
    print(format_results(result))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(_public(result), f, indent=2)
        print(f"Figures written to {args.output}")
    return 0


def _list_images(target):
    """``(paths, is_directory)`` for ``--image`` (a file or a folder of images)."""
    if os.path.isdir(target):
        paths = sorted(os.path.join(target, f) for f in os.listdir(target)
                       if f.lower().endswith(IMAGE_EXTENSIONS)
                       and os.path.isfile(os.path.join(target, f)))
        if not paths:
            raise SampleError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) in {target}")
        return paths, True
    if not os.path.exists(target):
        raise SampleError(f"image not found: {target}")
    return [target], False


def detect_images(model, class_names, target, output_dir, weights=None, verbose=1):
    """Detect on a file or every image of a folder; write ``<name>.png`` (annotated) and
    ``<name>.json`` (see `detection_record`) per image into ``output_dir``.

    A missing or unreadable single file raises SampleError naming it; in a folder such files
    are skipped with a warning naming them. Returns ``[(image path, png, json)]``.
    """
    from mrcnn.dataset import ImageLoadError, read_image

    paths, is_dir = _list_images(target)
    os.makedirs(output_dir, exist_ok=True)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    written = []
    for path, stem in zip(paths, stems):
        if stems.count(stem) > 1:  # a.jpg and a.png in one folder: keep both outputs
            stem = os.path.basename(path).replace(".", "_")
        try:
            image = read_image(path)
        except (OSError, ImageLoadError) as e:
            if not is_dir:
                raise SampleError(f"cannot read image {path}: {e}") from e
            print(f"WARNING: skipping {path}: cannot read it ({e})", file=sys.stderr)
            continue
        r = model.detect([image])[0]
        png = os.path.join(output_dir, stem + ".png")
        js = os.path.join(output_dir, stem + ".json")
        save_detection_picture(image, r, class_names, png, title=os.path.basename(path))
        record = {"image": os.path.abspath(path), "height": int(image.shape[0]),
                  "width": int(image.shape[1]),
                  "weights": os.path.abspath(weights) if weights else None,
                  "class_names": list(class_names),
                  "min_confidence": float(model.config.DETECTION_MIN_CONFIDENCE),
                  "detections": detection_record(r, class_names, image.shape)}
        with open(js, "w") as f:
            json.dump(record, f, indent=1)
        written.append((path, png, js))
        if verbose:
            found = ", ".join(f"{d['class_name']} {d['score']:.2f}" for d in record["detections"])
            print(f"{path}: {len(record['detections'])} detection(s){': ' + found if found else ''}"
                  f" -> {png}, {js}")
    if not written:
        raise SampleError(f"no image of {target} could be read")
    return written


def cmd_detect(args):
    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    model, class_names, weights = inference_model(args.weights, args.logs, args.preset,
                                                   _overrides(args), names, args.min_confidence)
    written = detect_images(model, class_names, args.image, args.output, weights)
    print(f"{len(written)} image(s) done; pictures and JSON in {args.output}")
    return 0


def cmd_anchors(args):
    dataset, _ = load_subset(args.dataset, args.subset, args.annotation_file)
    config = make_config(args.preset, _overrides(args))
    fit = fit_anchors(dataset, config, num_ratios=args.num_ratios)
    shapes = ", ".join(f"{h}x{w}" for h, w in fit["shapes"])
    s, a = fit["sizes"], fit["aspects"]
    print(f"{fit['num_boxes']} boxes in {fit['num_images']} images of {args.dataset}/{args.subset},"
          f" measured in the network input ({shapes}, IMAGE_RESIZE_MODE "
          f"{config.IMAGE_RESIZE_MODE!r}, IMAGE_MIN_DIM {config.IMAGE_MIN_DIM}, IMAGE_MAX_DIM "
          f"{config.IMAGE_MAX_DIM})")
    print(f"  size sqrt(h*w): min {s[0]:.0f}, median {s[1]:.0f}, max {s[2]:.0f} px; "
          f"aspect w/h: min {a[0]:.2f}, median {a[1]:.2f}, max {a[2]:.2f}")
    print("Suggested (k-means in log space):")
    print(f"  RPN_ANCHOR_SCALES = ({', '.join(str(v) for v in fit['scales'])})")
    print(f"  RPN_ANCHOR_RATIOS = [{', '.join(f'{v:g}' for v in fit['ratios'])}]")
    sug, dft = fit["suggested"], fit["default"]
    print(f"Mean best IoU of a box with an anchor: suggested {sug['mean_iou']:.3f}, current "
          f"{dft['mean_iou']:.3f} (RPN_ANCHOR_SCALES {tuple(fit['default_scales'])}, "
          f"RPN_ANCHOR_RATIOS {fit['default_ratios']})")
    print(f"Boxes with an anchor at IoU >= 0.7 (an RPN positive): suggested "
          f"{100 * sug['recall_0.7']:.0f}%, current {100 * dft['recall_0.7']:.0f}%")
    print(f"Use them with: --anchor-scales {','.join(str(v) for v in fit['scales'])} "
          f"--anchor-ratios {','.join(f'{v:g}' for v in fit['ratios'])}")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(_jsonable(fit), f, indent=2)
    return 0


############################################################
#  Demo
############################################################

#: The demo's plan: data set size and the two stages (epochs x STEPS_PER_EPOCH batches of 4).
DEMO_PLAN = {
    "full": {"n_train": 240, "n_val": 30, "steps": 40, "stage1_epochs": 3, "stage2_epochs": 2,
             "warmup": 50},
    "fast": {"n_train": 100, "n_val": 10, "steps": 25, "stage1_epochs": 3, "stage2_epochs": 1,
             "warmup": 20},
}


def cmd_demo(args):
    """Generate data, train both stages from scratch, evaluate, draw; see the demo's help."""
    import keras

    from mrcnn import visualize
    from mrcnn.datasets.synthetic import write_via_dataset
    from mrcnn.ops.boxes_np import extract_bboxes

    t0 = time.time()
    plan = DEMO_PLAN["fast" if args.fast else "full"]
    out = args.output
    data_dir = os.path.join(out, "data")
    logs = os.path.join(out, "logs")
    keras.utils.set_random_seed(args.seed)
    write_via_dataset(data_dir, n_train=plan["n_train"], n_val=plan["n_val"],
                             image_size=(128, 128), scene="facemask", seed=args.seed)
    print(f"Generated {plan['n_train']} training and {plan['n_val']} validation images of "
          f"synthetic faces wearing masks (VIA format) in {data_dir}")
    class_attribute = "mask_type" if args.classes == "types" else None

    # Leave time for building the inference model, evaluating and drawing after training.
    reserve = 75.0
    end = t0 + 60.0 * args.max_minutes - reserve
    now = time.time()
    stage1_end = now + 0.72 * (end - now)
    print("\nFrom scratch, 'heads' alone cannot learn (the backbone would stay random), so stage "
          "1 trains all layers at the from-scratch learning rate 0.02 with warmup; stage 2 then "
          "trains all layers at 0.002 from the best stage-1 checkpoint. With COCO weights "
          "(`train --weights coco`) stage 1 trains the heads at 1e-3 and stage 2 all layers at "
          "1e-5.")
    result = train_stages(
        data_dir, "none", logs=logs, stage="both", stage1_epochs=plan["stage1_epochs"],
        stage2_epochs=plan["stage2_epochs"], stage1_layers="all", stage2_layers="all",
        stage1_lr=0.02, stage2_lr=0.002, preset="light",
        overrides={"STEPS_PER_EPOCH": plan["steps"], "WARMUP_STEPS": plan["warmup"]},
        class_attribute=class_attribute,
        deadlines=(stage1_end, end))
    run_dir, best = result["run_dir"], result["best"]

    print(f"\nEvaluating {best} on the {plan['n_val']} validation images")
    ev = evaluate(data_dir, best, logs=logs)
    print(format_results(ev))
    metrics_path = os.path.join(out, "metrics.json")
    with open(metrics_path, "w") as f:
        json.dump(_public(ev), f, indent=2)

    # Ground truth (top) and detections (bottom) on the first validation images.
    dataset, detector, names = ev["_dataset"], ev["_detector"], ["BG"] + ev["class_names"]
    ids = list(dataset.image_ids[:4])
    fig, axes = _new_figure(2, len(ids), size=3.2)
    for j, image_id in enumerate(ids):
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        visualize.display_instances(image, extract_bboxes(masks), masks, class_ids, names,
                                    title="ground truth", ax=axes[0, j])
        r = detector.detect([image])[0]
        ap = ev["rows"][j]["AP@0.5"]
        visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], names,
                                    r["scores"], title=f"detections (AP@0.5 {ap:.2f})"
                                    if ap is not None else "detections", ax=axes[1, j])
    fig.tight_layout()
    detections_png = os.path.join(out, "detections.png")
    visualize.save_figure(fig, detections_png, dpi=100)

    history_csv = os.path.join(run_dir, "history.csv")
    fig, axes = _new_figure(2, 3, size=3.6)
    visualize.plot_history(history_csv, ax=list(axes.ravel()))
    stage2 = [e for e in result["records"] if e["stage"] == 2]
    if stage2:
        # plot_history puts epoch N at x = N; stage 2 starts between its first epoch and the one
        # before.
        from matplotlib.ticker import MaxNLocator
        for ax in axes.ravel():
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.axvline(stage2[0]["first_epoch"] - 0.5, color="gray", linestyle=":")
            ax.text(stage2[0]["first_epoch"] - 0.45, 0.97, "stage 2", color="gray", va="top",
                    transform=ax.get_xaxis_transform())
    fig.tight_layout()
    curves_png = os.path.join(out, "training_curves.png")
    visualize.save_figure(fig, curves_png, dpi=100)

    minutes = (time.time() - t0) / 60
    stopped = [e["stage"] for e in result["records"] if e["stopped_by_time_limit"]]
    print(f"\nDemo finished in {minutes:.1f} min"
          + (f" (stage {', '.join(map(str, stopped))} cut short by --max-minutes)"
             if stopped else ""))
    print(f"  mAP@0.5 {ev['mAP@0.5']:.3f}, mAP@0.5:0.95 {ev['mAP@0.5:0.95']:.3f}, "
          f"COCO AP bbox {ev['coco']['bbox']:.3f}, segm {ev['coco']['segm']:.3f}")
    print(f"  data set:          {data_dir}/{{train,val}}/via_region_data.json")
    print(f"  run directory:     {run_dir} (checkpoints, history.csv, TensorBoard logs)")
    print(f"  best checkpoint:   {best}")
    print(f"  detections:        {detections_png}")
    print(f"  training curves:   {curves_png}")
    print(f"  metrics:           {metrics_path}")
    print(f"Try: python samples/facemask.py detect --weights {best} --image {data_dir}/val "
          f"--output {os.path.join(out, 'detect')}")
    return 0


def build_parser():
    """The argparse parser of the command line (see the module docstring)."""
    config_opts = argparse.ArgumentParser(add_help=False)
    g = config_opts.add_argument_group("model configuration")
    g.add_argument("--preset", choices=sorted(PRESETS),
                   help="settings group: standard (ResNet-101, 1024 px: for COCO weights on a "
                        "GPU; the default), light (ResNet-18, 128 px, from scratch on a CPU: "
                        "the demo's), tiny (smoke tests). evaluate/detect default to the "
                        "preset the weights were trained with")
    g.add_argument("--backbone", choices=("resnet18", "resnet50", "resnet101"),
                   help="BACKBONE")
    g.add_argument("--image-size", type=int, metavar="PX",
                   help="IMAGE_MIN_DIM and IMAGE_MAX_DIM (a multiple of 64)")
    g.add_argument("--anchor-scales", type=lambda t: _csv_numbers(t, float), metavar="S1,..,S5",
                   help="RPN_ANCHOR_SCALES, one per pyramid level (see the anchors command)")
    g.add_argument("--anchor-ratios", type=lambda t: _csv_numbers(t, float), metavar="R1,..",
                   help="RPN_ANCHOR_RATIOS (width/height)")
    g.add_argument("--logs", default="logs",
                   help="folder of the training run directories (default: logs)")

    data_opts = argparse.ArgumentParser(add_help=False)
    d = data_opts.add_argument_group("data set")
    d.add_argument("--dataset", required=True, metavar="DIR",
                   help="data set root with train/ and val/ sub-folders")
    d.add_argument("--annotation-file", default="via_region_data.json", metavar="NAME",
                   help="VIA JSON file name in each subset folder (default: via_region_data.json)")
    d.add_argument("--class-attribute", metavar="ATTR",
                   help="region attribute naming each region's class (e.g. mask_type with "
                        "values surgical, N95, cloth); default: one class 'mask'")

    parser = argparse.ArgumentParser(
        prog="facemask.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mask R-CNN for face masks (Matterport's balloon sample on a VIA data set).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", parents=[data_opts, config_opts],
                       help="two-stage training: heads, then all layers from the best checkpoint",
                       description="Stage 1 trains --stage1-layers (heads) at --stage1-lr; stage 2 "
                                   "trains --stage2-layers (all) at --stage2-lr starting from the "
                                   "best stage-1 checkpoint by validation loss. Both stages write "
                                   "into one run directory with continuous epoch numbers.")
    t.add_argument("--weights", metavar="W",
                   help="initial weights: coco (downloaded once into ~/.mrcnn; class-specific "
                        "layers are re-initialised unless NUM_CLASSES is 81), imagenet, last "
                        "(resume the latest run), best, none (from scratch) or a .h5 path. "
                        "Required for stage 1; with --stage 2 alone the default is the best "
                        "checkpoint of the latest run")
    t.add_argument("--stage", choices=("1", "2", "both"), default="both",
                   help="which stage(s) to run (default: both)")
    t.add_argument("--stage1-epochs", type=int, default=20, metavar="N",
                   help="stage 1 trains up to epoch N of the run (default: 20)")
    t.add_argument("--stage2-epochs", type=int, default=20, metavar="N",
                   help="stage 2 trains N epochs after the last checkpoint of the run "
                        "(default: 20)")
    t.add_argument("--stage1-layers", default="heads",
                   help="layers of stage 1: heads, 3+, 4+, 5+, all or a regex (default: heads)")
    t.add_argument("--stage2-layers", default="all", help="layers of stage 2 (default: all)")
    t.add_argument("--stage1-lr", type=float, default=1e-3, metavar="LR",
                   help="learning rate of stage 1 (default: 1e-3)")
    t.add_argument("--stage2-lr", type=float, default=1e-5, metavar="LR",
                   help="learning rate of stage 2 (default: 1e-5)")
    t.add_argument("--steps-per-epoch", type=int, metavar="N", help="STEPS_PER_EPOCH")
    t.add_argument("--validation-steps", type=int, metavar="N", help="VALIDATION_STEPS")
    t.add_argument("--images-per-gpu", type=int, metavar="N", help="IMAGES_PER_GPU")
    t.add_argument("--augment", action="store_true",
                   help="random left-right flips (albumentations or imgaug)")
    t.set_defaults(func=cmd_train)

    # evaluate and detect take the same --weights: a model trained by this sample.
    trained_opts = argparse.ArgumentParser(add_help=False)
    trained_opts.add_argument("--weights", required=True, metavar="W",
                              help="trained weights: a .h5 path, last or best (latest run in "
                                   "--logs)")

    e = sub.add_parser("evaluate", parents=[data_opts, config_opts, trained_opts],
                       help="mAP@0.5, mAP@0.5:0.95 and COCO AP on a subset",
                       description="Per-image table, Matterport-style mask mAP@0.5 and "
                                   "mAP@0.5:0.95, and COCO AP (bbox and segm, pycocotools).")
    e.add_argument("--subset", default="val", help="subset folder (default: val)")
    e.add_argument("--limit", type=int, metavar="N", help="only the first N images")
    e.add_argument("--min-confidence", type=float, metavar="P",
                   help="DETECTION_MIN_CONFIDENCE (default: the config's, 0.9 for standard)")
    e.add_argument("--output", metavar="FILE.json", help="also write the figures as JSON")
    e.set_defaults(func=cmd_evaluate)

    de = sub.add_parser("detect", parents=[config_opts, trained_opts],
                        help="annotated PNG and JSON of detections per image",
                        description="For each image writes NAME.png (masks, boxes, classes, "
                                    "scores) and NAME.json: {image, height, width, weights, "
                                    "class_names, min_confidence, detections: [{class_id, "
                                    "class_name, score, box [y1, x1, y2, x2] (pixels, y2/x2 one "
                                    "past), bbox [x, y, w, h], area, segmentation (COCO RLE; "
                                    "pycocotools.mask.decode)}]}.")
    de.add_argument("--image", required=True, metavar="FILE_OR_DIR",
                    help="an image, or a folder whose images are all processed")
    de.add_argument("--output", default="detections", metavar="DIR",
                    help="output folder (default: detections)")
    de.add_argument("--min-confidence", type=float, metavar="P",
                    help="DETECTION_MIN_CONFIDENCE (default: the config's)")
    de.add_argument("--class-names", metavar="A,B,..",
                    help="class names in id order when the weights have no settings.json")
    de.set_defaults(func=cmd_detect)

    a = sub.add_parser("anchors", parents=[data_opts, config_opts],
                       help="k-means anchor scales and ratios for the training boxes",
                       description="Measures the training boxes in network-input pixels (after "
                                   "resize_image with the config's mode and dimensions), "
                                   "clusters their sizes and aspect ratios, and compares the "
                                   "mean best IoU with the suggested and the current anchors.")
    a.add_argument("--subset", default="train", help="subset folder (default: train)")
    a.add_argument("--num-ratios", type=int, default=3, metavar="K",
                   help="number of ratios to suggest (default: 3)")
    a.add_argument("--output", metavar="FILE.json", help="also write the figures as JSON")
    a.set_defaults(func=cmd_anchors)

    dm = sub.add_parser("demo", help="the whole job on generated data, from scratch on the CPU",
                        description="Generates a small VIA data set of synthetic faces wearing "
                                    "masks, trains both stages from scratch with the light "
                                    "preset, evaluates (mAP, COCO AP) and draws detections and "
                                    "training curves under --output.")
    dm.add_argument("--output", default=os.path.join("out", "demo"), metavar="DIR",
                    help="output folder (default: out/demo)")
    dm.add_argument("--fast", action="store_true",
                    help="fewer images and steps (a smoke run; detects less)")
    dm.add_argument("--classes", choices=("mask", "types"), default="mask",
                    help="one class 'mask' (default) or the mask types N95/cloth/surgical")
    dm.add_argument("--max-minutes", type=float, default=9.5, metavar="M",
                    help="stop training early so the whole demo ends within M minutes "
                         "(default: 9.5)")
    dm.add_argument("--seed", type=int, default=0, help="data and initialisation seed")
    dm.set_defaults(func=cmd_demo)
    # The top-level help lists every command's options, not just the command names.
    parser.epilog = ("commands and their options:\n\n"
                     + "\n\n".join("  " + p.format_usage().replace("usage: ", "", 1)
                                    .rstrip().replace("\n", "\n  ") for p in (t, e, de, a, dm))
                     + "\n\nRun 'facemask.py COMMAND --help' for what each option does.")
    return parser


def _user_error_types():
    """Exception types whose message is the whole story (no traceback needed)."""
    types = [SampleError, FileNotFoundError]
    for module, names in (("mrcnn.datasets.via", ("VIAFormatError",)),
                          ("mrcnn.dataset", ("ImageLoadError",)),
                          ("mrcnn.config", ("ConfigError",)),
                          ("mrcnn.download", ("DownloadError",)),
                          ("mrcnn.weights", ("WeightsMismatchError", "WeightsFileError"))):
        if module in sys.modules:
            types += [getattr(sys.modules[module], n) for n in names
                      if hasattr(sys.modules[module], n)]
    return tuple(types)


def main(argv=None):
    """Run the command line; returns the exit status (0 success, 1 a reported error)."""
    args = build_parser().parse_args(argv)
    if args.command == "anchors" and args.preset is None:
        args.preset = "standard"
    try:
        return args.func(args)
    except _user_error_types() as e:
        print(f"facemask.py {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
