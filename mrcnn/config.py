"""Mask R-CNN configuration.

`Config` keeps every Matterport setting under the same name and with the same default. Subclass it,
override class attributes, then instantiate::

    class ShapesConfig(Config):
        NAME = "shapes"
        NUM_CLASSES = 1 + 3
        IMAGES_PER_GPU = 8

    config = ShapesConfig()

Attributes may also be assigned on the instance afterwards; the derived values ``BATCH_SIZE``,
``IMAGE_SHAPE`` and ``IMAGE_META_SIZE`` are read-only properties, so they always follow the
settings they are computed from. Call `Config.validate` again after such assignments to check
the new values (the model does so when it is built).

Additions to Matterport's settings (not present there):

- ``WARMUP_STEPS`` (default 0): number of optimizer steps over which the learning rate rises
  linearly from 0 to ``LEARNING_RATE`` at the start of training.
- ``BATCH_NORM_MOMENTUM`` (default 0.99, Keras' default, i.e. Matterport's behaviour): momentum
  of the moving mean/variance of every batch-norm layer the graph builds. It only matters with
  ``TRAIN_BN = True``; 0.9 lets the statistics keep up when training from scratch at a high
  learning rate.
- ``BACKBONE`` also accepts ``"resnet18"``, a light backbone meant for CPU runs and tests.
- ``CLASS_NAMES`` (default None): the class names, ``NUM_CLASSES`` of them ordered by class id,
  ``"BG"`` first. The model does not read them; ``MaskRCNN.export`` writes them into the exported
  files when it is given no names, and the ``mrcnn`` command sets them from the data set.
"""

import copy
import inspect
import warnings

import numpy as np

__all__ = ["Config", "ConfigError", "VALID_BACKBONES", "VALID_RESIZE_MODES", "LOSS_NAMES",
           "INPUT_WORKER_MODES"]

#: Backbone names understood by `mrcnn.backbone` (``resnet18`` is an addition to Matterport).
VALID_BACKBONES = ("resnet18", "resnet50", "resnet101")

#: Values of ``IMAGE_RESIZE_MODE`` understood by `mrcnn.image.resize_image`.
VALID_RESIZE_MODES = ("none", "square", "pad64", "crop")

#: Values of ``PRECISION``: Keras dtype policies.
VALID_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

#: Keys allowed in ``LOSS_WEIGHTS`` (the five Mask R-CNN losses).
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")

# Settings computed from others; exposed as read-only properties.
_DERIVED = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE")


class ConfigError(ValueError):
    """An invalid configuration value. The message names the setting, its value and a fix."""


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


class Config:
    """Base configuration. Subclass it and override the settings you need.

    All settings are upper-case class attributes. Mutable defaults (lists, arrays, dicts) are
    copied onto each instance at construction, so changing ``config.MEAN_PIXEL`` in place on one
    instance never affects another instance or the class.
    """

    # Name of the configuration, used in log directory and checkpoint names.
    NAME = None

    # Number of GPUs. Kept for API compatibility; the batch is BATCH_SIZE images either way.
    GPU_COUNT = 1

    # Number of images per GPU (per replica).
    IMAGES_PER_GPU = 2

    # Training steps per epoch (Keras "epoch" = this many batches, not a pass over the data).
    STEPS_PER_EPOCH = 1000

    # Validation steps run at the end of each epoch.
    VALIDATION_STEPS = 50

    # "resnet18" (addition), "resnet50", "resnet101", or a callable building a custom backbone.
    # A callable backbone requires COMPUTE_BACKBONE_SHAPE to be a callable too.
    BACKBONE = "resnet101"

    # Callable (image_shape) -> [[h, w], ...] feature-map shapes, only used with a callable
    # BACKBONE.
    COMPUTE_BACKBONE_SHAPE = None

    # Strides of the FPN levels P2..P6 relative to the input image.
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]

    # Units of the fully connected layers of the classification head.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024

    # Channels of the top-down FPN layers.
    TOP_DOWN_PYRAMID_SIZE = 256

    # Number of classes, background included.
    NUM_CLASSES = 1

    # Optional: the class names, NUM_CLASSES of them, background ("BG") first. Nothing in the
    # model reads them; MaskRCNN.export writes them into the exported files when no names are
    # passed to it. The mrcnn command sets them from the data set.
    CLASS_NAMES = None

    # Anchor side length in pixels, one per pyramid level.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)

    # Anchor height:width ratios are width/height; 0.5 is a tall anchor.
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]

    # 1 = an anchor at every feature-map cell, 2 = every other cell, ...
    RPN_ANCHOR_STRIDE = 1

    # IoU threshold of the non-max suppression that filters RPN proposals.
    RPN_NMS_THRESHOLD = 0.7

    # Anchors sampled per image to train the RPN.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256

    # Top-scoring anchors kept before the proposal non-max suppression.
    PRE_NMS_LIMIT = 6000

    # Proposals kept after non-max suppression, in training and inference.
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # Store instance masks cropped to their box and resized to MINI_MASK_SHAPE to save memory.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)

    # How images are resized: "none", "square", "pad64" or "crop" (see mrcnn.image.resize_image).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum scaling factor applied after IMAGE_MIN_DIM; 0 means no minimum.
    IMAGE_MIN_SCALE = 0
    # Channels of the input images.
    IMAGE_CHANNEL_COUNT = 3

    # Per-channel mean subtracted from images (RGB).
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # RoIs per image fed to the classifier and mask heads during training.
    TRAIN_ROIS_PER_IMAGE = 200

    # Fraction of positive RoIs among TRAIN_ROIS_PER_IMAGE.
    ROI_POSITIVE_RATIO = 0.33

    # RoIAlign output size of the classifier and mask heads.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14

    # Output mask size of the mask head (it upsamples MASK_POOL_SIZE once, so 2 * MASK_POOL_SIZE).
    MASK_SHAPE = [28, 28]

    # Maximum ground-truth instances per image.
    MAX_GT_INSTANCES = 100

    # Standard deviations dividing the box deltas of the RPN and of the final detections.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Maximum final detections per image.
    DETECTION_MAX_INSTANCES = 100

    # Minimum class probability of a detection; lower ones are dropped.
    DETECTION_MIN_CONFIDENCE = 0.7

    # IoU threshold of the per-class non-max suppression of detections.
    DETECTION_NMS_THRESHOLD = 0.3

    # SGD learning rate and momentum.
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9

    # L2 weight decay.
    WEIGHT_DECAY = 0.0001

    # Weight of each loss in the total loss.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.,
        "rpn_bbox_loss": 1.,
        "mrcnn_class_loss": 1.,
        "mrcnn_bbox_loss": 1.,
        "mrcnn_mask_loss": 1.,
    }

    # Train the heads on RPN proposals (True) or on externally provided RoIs (False).
    USE_RPN_ROIS = True

    # Train batch-normalization layers (False freezes them: batches are usually too small).
    TRAIN_BN = False

    # Addition (not Matterport): momentum of the batch-norm moving statistics, used only when
    # TRAIN_BN is True. 0.99 (Keras' default) averages over ~100 steps, which lags behind
    # weights trained from scratch at a high learning rate; 0.9 (PyTorch's default) keeps up.
    BATCH_NORM_MOMENTUM = 0.99

    # Addition: numeric precision of training and inference, a Keras dtype policy.
    # "float32" (Matterport's); "mixed_bfloat16" (bfloat16 compute, float32 weights: fast on
    # CPUs with AVX512_BF16 or AMX and on TPUs/recent GPUs); "mixed_float16" (float16 compute
    # with dynamic loss scaling, for NVIDIA GPUs). Box coordinates, anchors, proposals, ROI
    # alignment coordinates, detection, softmax and losses stay float32.
    PRECISION = "float32"

    # Addition: compile the training step and detect()'s graph with XLA (``jit_compile=True``).
    # The graph is then traced in static shapes (mrcnn.ops.portable.xla_static: padded NMS, ROI
    # align over all levels, the mask head on all DETECTION_MAX_INSTANCES rows). Meant for GPUs
    # and TPUs; on CPUs it is no faster and the first call compiles for a long time
    # (docs/benchmarks.md).
    XLA = False

    # Addition: run detect()'s 3x3 convolutions by Winograd F(4x4, 3x3) (mrcnn.ops.winograd): a
    # quarter of the multiplications, float32 results within about 1e-5 of the largest output
    # (a direct convolution's rounding is about 1.5e-6). "auto": on CPUs (when TensorFlow sees
    # no GPU, whose own kernels choose their algorithm), in float32, for convolutions with at
    # least 128 channels in and out, where it is faster (docs/benchmarks.md); True: every
    # float32 3x3 stride-1 convolution of detect(), on any device; False: TensorFlow's kernels
    # only. Training and exported models always use TensorFlow's kernels.
    WINOGRAD = "auto"

    # Addition: how the training input pipeline prepares images in parallel (train()'s
    # ``workers`` sets how many). "auto": worker processes started by fork on Linux (a data set's
    # load_mask is Python that holds the GIL, so threads take turns on one core), threads
    # elsewhere; "threads"; or a start method, "fork", "spawn" or "forkserver" ("spawn" and
    # "forkserver" pickle the data set to each worker: its class must live in an importable
    # module). mrcnn.training.input_workers.
    INPUT_WORKERS = "auto"

    # Addition: megabytes of memory the training input pipeline may keep across epochs per data
    # set: each image's decoded, resized image, instance masks and anchor labels (before
    # augmentation), so that later epochs skip decoding, load_mask and resizing. 2 to 3.5 MB
    # per 1024 px image (the image inside its window, 0.26 MB of anchor labels, 3 KB per
    # instance's mini mask); images beyond the bound are prepared each time; 0 turns it off.
    # Not used with IMAGE_RESIZE_MODE "crop" (a new random crop each time).
    # mrcnn.training.sample_cache.
    TRAIN_CACHE_MB = 2048

    # Gradient norm clipping.
    GRADIENT_CLIP_NORM = 5.0

    # Addition (not Matterport): optimizer steps of linear learning-rate warmup; 0 disables it.
    WARMUP_STEPS = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _DERIVED:
            if name in cls.__dict__ and not isinstance(cls.__dict__[name], property):
                # Matterport recomputes derived values in __init__, silently overriding a class
                # attribute; drop it the same way but say so.
                warnings.warn(
                    f"{cls.__name__}.{name} = {cls.__dict__[name]!r} is ignored: {name} is "
                    f"derived; {_derived_help(name)}", stacklevel=2)
                delattr(cls, name)

    def __init__(self):
        # Copy mutable defaults so that in-place edits stay local to this instance.
        for name in self._setting_names():
            if name in _DERIVED:
                continue
            value = getattr(self, name)
            if isinstance(value, (list, dict, set, np.ndarray)):
                object.__setattr__(self, name, copy.deepcopy(value))
            elif inspect.ismethod(value) and value.__self__ is self:
                # A plain function assigned in a subclass body (BACKBONE = my_fn) would be bound
                # to the config; keep the function itself, as the user meant.
                object.__setattr__(self, name, value.__func__)
        self.validate()

    def __setattr__(self, name, value):
        if name in _DERIVED:
            raise AttributeError(f"{name} is derived and cannot be set; {_derived_help(name)}")
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ derived values
    @property
    def BATCH_SIZE(self):
        """Images per batch: ``IMAGES_PER_GPU * GPU_COUNT``."""
        return self.IMAGES_PER_GPU * self.GPU_COUNT

    @property
    def IMAGE_SHAPE(self):
        """Shape of the network input, int ``np.ndarray`` ``[H, W, C]``.

        ``[IMAGE_MIN_DIM, IMAGE_MIN_DIM, C]`` in crop mode, else ``[IMAGE_MAX_DIM, IMAGE_MAX_DIM, C]``.
        """
        if self.IMAGE_RESIZE_MODE == "crop":
            return np.array([self.IMAGE_MIN_DIM, self.IMAGE_MIN_DIM, self.IMAGE_CHANNEL_COUNT])
        return np.array([self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM, self.IMAGE_CHANNEL_COUNT])

    @property
    def IMAGE_META_SIZE(self):
        """Length of the image meta vector (see `mrcnn.meta`): ``12 + NUM_CLASSES``.

        id (1) + original shape (3) + shape (3) + window (4) + scale (1) + active class ids.
        """
        return 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    # ------------------------------------------------------------------ introspection
    @classmethod
    def _setting_names(cls):
        return sorted(n for n in dir(cls) if n.isupper() and not n.startswith("_"))

    def to_dict(self):
        """Every setting (upper-case attribute, derived values included) as ``{name: value}``."""
        return {name: getattr(self, name) for name in self._setting_names()}

    def display(self):
        """Print every setting, alphabetically, derived values included."""
        print("\nConfigurations:")
        for name, value in self.to_dict().items():
            print(f"{name:30} {value}")
        print()

    def __repr__(self):
        return f"<{type(self).__name__} NAME={self.NAME!r}>"

    # ------------------------------------------------------------------ validation
    def validate(self):
        """Check the settings; raise `ConfigError` naming the first invalid one.

        Called by ``__init__``; call it again after assigning attributes on an instance.
        """
        def fail(name, why, fix):
            value = getattr(self, name, None)
            raise ConfigError(f"{type(self).__name__}.{name} = {value!r}: {why}; {fix}")

        for name in ("GPU_COUNT", "IMAGES_PER_GPU"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "must be an integer >= 1", f"set {name} to 1 or more")

        if not _is_int(self.NUM_CLASSES) or self.NUM_CLASSES < 1:
            fail("NUM_CLASSES", "must be an integer >= 1 (background included)",
                 "set NUM_CLASSES = 1 + number of object classes")

        names = self.CLASS_NAMES
        if names is not None:
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str)
                                                                 for n in names):
                fail("CLASS_NAMES", "must be a list or tuple of strings (ordered by class id)",
                     "set CLASS_NAMES = ['BG', 'name_1', ...] or None")
            if len(names) != self.NUM_CLASSES:
                fail("CLASS_NAMES", f"holds {len(names)} names for NUM_CLASSES = "
                     f"{self.NUM_CLASSES}", "list one name per class, 'BG' first, or set None")

        backbone = self.BACKBONE
        if callable(backbone):
            if not callable(self.COMPUTE_BACKBONE_SHAPE):
                fail("COMPUTE_BACKBONE_SHAPE",
                     "must be a callable when BACKBONE is a callable",
                     "define COMPUTE_BACKBONE_SHAPE(image_shape) returning the feature-map "
                     "shapes [[h, w], ...] of your backbone")
        elif backbone not in VALID_BACKBONES:
            fail("BACKBONE", "unknown backbone",
                 f"use one of {', '.join(VALID_BACKBONES)} or a callable")

        mode = self.IMAGE_RESIZE_MODE
        if mode not in VALID_RESIZE_MODES:
            fail("IMAGE_RESIZE_MODE", "unknown resize mode",
                 f"use one of {', '.join(VALID_RESIZE_MODES)}")
        if mode == "square":
            if not _is_int(self.IMAGE_MAX_DIM) or self.IMAGE_MAX_DIM < 64 \
                    or self.IMAGE_MAX_DIM % 64:
                fail("IMAGE_MAX_DIM", "must be a positive multiple of 64 in square mode "
                     "(the backbone downsamples 6 times)", "use e.g. 512, 768 or 1024")
            if self.IMAGE_MIN_DIM is not None and not _is_int(self.IMAGE_MIN_DIM):
                fail("IMAGE_MIN_DIM", "must be an integer or None", "use e.g. 800")
            if self.IMAGE_MIN_DIM and self.IMAGE_MIN_DIM > self.IMAGE_MAX_DIM:
                fail("IMAGE_MIN_DIM", f"is larger than IMAGE_MAX_DIM = {self.IMAGE_MAX_DIM}",
                     "make IMAGE_MIN_DIM <= IMAGE_MAX_DIM")
        elif mode == "crop":
            if not _is_int(self.IMAGE_MIN_DIM) or self.IMAGE_MIN_DIM < 64 \
                    or self.IMAGE_MIN_DIM % 64:
                fail("IMAGE_MIN_DIM", "must be a positive multiple of 64 in crop mode "
                     "(it is the crop size; the backbone downsamples 6 times)",
                     "use e.g. 256 or 512")
        elif mode == "pad64":
            if self.IMAGE_MIN_DIM is not None and (not _is_int(self.IMAGE_MIN_DIM)
                                                   or self.IMAGE_MIN_DIM < 0):
                fail("IMAGE_MIN_DIM", "must be a non-negative integer or None", "use e.g. 800")
        if not _is_number(self.IMAGE_MIN_SCALE) or self.IMAGE_MIN_SCALE < 0:
            fail("IMAGE_MIN_SCALE", "must be a number >= 0", "use 0 for no minimum scale")

        if not _is_int(self.IMAGE_CHANNEL_COUNT) or self.IMAGE_CHANNEL_COUNT < 1:
            fail("IMAGE_CHANNEL_COUNT", "must be an integer >= 1", "use 3 for RGB images")
        mean = np.asarray(self.MEAN_PIXEL)
        if mean.ndim != 1 or len(mean) != self.IMAGE_CHANNEL_COUNT:
            fail("MEAN_PIXEL", f"must have IMAGE_CHANNEL_COUNT = {self.IMAGE_CHANNEL_COUNT} "
                 "values (one per channel)", "give one mean value per image channel")

        if len(self.RPN_ANCHOR_SCALES) != len(self.BACKBONE_STRIDES):
            fail("RPN_ANCHOR_SCALES",
                 f"has {len(self.RPN_ANCHOR_SCALES)} values but BACKBONE_STRIDES has "
                 f"{len(self.BACKBONE_STRIDES)}", "give one anchor scale per pyramid level")
        if len(self.RPN_ANCHOR_RATIOS) < 1 or any(
                not _is_number(r) or r <= 0 for r in self.RPN_ANCHOR_RATIOS):
            fail("RPN_ANCHOR_RATIOS", "must be a non-empty list of positive numbers",
                 "use e.g. [0.5, 1, 2]")
        if not _is_int(self.RPN_ANCHOR_STRIDE) or self.RPN_ANCHOR_STRIDE < 1:
            fail("RPN_ANCHOR_STRIDE", "must be an integer >= 1", "use 1")
        if not _is_int(self.RPN_TRAIN_ANCHORS_PER_IMAGE) or self.RPN_TRAIN_ANCHORS_PER_IMAGE < 1:
            fail("RPN_TRAIN_ANCHORS_PER_IMAGE", "must be an integer >= 1", "use e.g. 256")

        for name in ("RPN_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE", "DETECTION_NMS_THRESHOLD"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                fail(name, "must be a number in [0, 1]", "use a value between 0 and 1")
        if not _is_number(self.ROI_POSITIVE_RATIO) or not 0 < self.ROI_POSITIVE_RATIO <= 1:
            fail("ROI_POSITIVE_RATIO", "must be a number in (0, 1]", "use e.g. 0.33")

        for name in ("TRAIN_ROIS_PER_IMAGE", "PRE_NMS_LIMIT", "POST_NMS_ROIS_TRAINING",
                     "POST_NMS_ROIS_INFERENCE", "MAX_GT_INSTANCES", "DETECTION_MAX_INSTANCES",
                     "POOL_SIZE", "MASK_POOL_SIZE"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                fail(name, "must be an integer >= 1", f"set {name} to a positive integer")

        mask_shape = list(self.MASK_SHAPE)
        if mask_shape != [2 * self.MASK_POOL_SIZE] * 2:
            fail("MASK_SHAPE", f"must be [2 * MASK_POOL_SIZE] * 2 = "
                 f"{[2 * self.MASK_POOL_SIZE] * 2} (the mask head upsamples once)",
                 "change MASK_SHAPE and MASK_POOL_SIZE together")
        if len(self.MINI_MASK_SHAPE) != 2 or any(
                not _is_int(s) or s < 1 for s in self.MINI_MASK_SHAPE):
            fail("MINI_MASK_SHAPE", "must be two positive integers (height, width)",
                 "use e.g. (56, 56)")

        for name in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            std = np.asarray(getattr(self, name))
            if std.shape != (4,) or not np.all(std > 0):
                fail(name, "must be 4 positive values (dy, dx, log dh, log dw)",
                     "use e.g. np.array([0.1, 0.1, 0.2, 0.2])")

        if not isinstance(self.LOSS_WEIGHTS, dict):
            fail("LOSS_WEIGHTS", "must be a dict", f"use a dict with keys {', '.join(LOSS_NAMES)}")
        unknown = sorted(set(self.LOSS_WEIGHTS) - set(LOSS_NAMES))
        if unknown:
            fail("LOSS_WEIGHTS", f"has unknown key(s) {unknown}",
                 f"use only {', '.join(LOSS_NAMES)}")

        for name in ("LEARNING_RATE", "LEARNING_MOMENTUM", "WEIGHT_DECAY"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                fail(name, "must be a number >= 0", f"set {name} to a non-negative number")
        if self.GRADIENT_CLIP_NORM is not None and (
                not _is_number(self.GRADIENT_CLIP_NORM) or self.GRADIENT_CLIP_NORM <= 0):
            fail("GRADIENT_CLIP_NORM", "must be a positive number or None",
                 "use e.g. 5.0, or None to disable clipping")
        if not _is_number(self.BATCH_NORM_MOMENTUM) or not 0 < self.BATCH_NORM_MOMENTUM < 1:
            fail("BATCH_NORM_MOMENTUM", "must be a number in (0, 1) (the weight of the old "
                 "moving statistics at each step)", "use 0.99 (the default) or 0.9")
        if not _is_int(self.WARMUP_STEPS) or self.WARMUP_STEPS < 0:
            fail("WARMUP_STEPS", "must be an integer >= 0", "use 0 to disable warmup")
        if not _is_int(self.STEPS_PER_EPOCH) or self.STEPS_PER_EPOCH < 1:
            fail("STEPS_PER_EPOCH", "must be an integer >= 1", "use e.g. 1000")
        if not _is_int(self.VALIDATION_STEPS) or self.VALIDATION_STEPS < 0:
            fail("VALIDATION_STEPS", "must be an integer >= 0", "use e.g. 50, or 0 to skip")
        if not (isinstance(self.WINOGRAD, (bool, np.bool_)) or
                (isinstance(self.WINOGRAD, str) and self.WINOGRAD == "auto")):
            fail("WINOGRAD", "must be the string 'auto', True or False",
                 "use 'auto' (the default), or False for TensorFlow's convolution kernels")
        if not isinstance(self.XLA, (bool, np.bool_)):
            fail("XLA", "must be True or False", "use False (the default) or True")
        if self.INPUT_WORKERS not in INPUT_WORKER_MODES:
            fail("INPUT_WORKERS", "unknown input worker mode",
                 "use one of " + ", ".join(repr(m) for m in INPUT_WORKER_MODES))
        if not _is_number(self.TRAIN_CACHE_MB) or self.TRAIN_CACHE_MB < 0:
            fail("TRAIN_CACHE_MB", "must be a number of megabytes >= 0",
                 "use e.g. 2048, or 0 to prepare every image anew each epoch")
        if self.PRECISION not in VALID_PRECISIONS:
            fail("PRECISION", "unknown precision", f"use one of {', '.join(VALID_PRECISIONS)}")
        return self


#: Values of ``INPUT_WORKERS`` (mrcnn.training.input_workers).
INPUT_WORKER_MODES = ("auto", "threads", "fork", "spawn", "forkserver")


def _derived_help(name):
    return {
        "BATCH_SIZE": "it equals IMAGES_PER_GPU * GPU_COUNT; set those instead",
        "IMAGE_SHAPE": "it follows IMAGE_MAX_DIM (IMAGE_MIN_DIM in crop mode) and "
                       "IMAGE_CHANNEL_COUNT; set those instead",
        "IMAGE_META_SIZE": "it equals 12 + NUM_CLASSES; set NUM_CLASSES instead",
    }[name]
