"""The ``MaskRCNN`` facade: Matterport's class, on a Keras 3 model.

Only this module and ``mrcnn.model.graph`` read Config. Inference runs through one compiled
``tf.function`` per model (traced once per molded image shape and batch size), so repeated
``detect`` calls neither retrace nor grow memory.
"""

import contextlib
import datetime
import json
import logging
import os
import re

import numpy as np
import tensorflow as tf
import keras

from mrcnn import anchors as anchors_lib
from mrcnn import molding
from mrcnn.model.graph import INFERENCE_OUTPUTS, build_graph
from mrcnn.layers import conv as conv_layers
from mrcnn.ops import portable, winograd
from mrcnn import weights as weights_io

logger = logging.getLogger("mrcnn")

# Layers whose shapes depend on NUM_CLASSES; exclude them to fine-tune COCO weights on new classes.
CLASS_SPECIFIC_LAYERS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")

# ``<run dir: name + YYYYMMDDTHHMM>/mask_rcnn_<name>_NNNN.h5`` (Matterport's layout).
_CHECKPOINT_RE = re.compile(
    r"(?:^|.*[/\\])[\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]mask_rcnn_[\w-]+(\d{4})\.h5$")


def _run_name(name, stamp):
    return "{}{:%Y%m%dT%H%M}".format(name, stamp)


def _checkpoint_named_by_best_json(path):
    """The numbered checkpoint that ``best.json`` names, for a ``..._best.h5`` beside one.

    The best file is a hard link whose name carries no epoch; ``CheckpointCallback`` records
    which checkpoint it is. Returns ``path`` itself for any other file, or when best.json is
    missing or unreadable (then loading it starts a new run, as for any foreign weights file).
    """
    if not path.endswith("_best.h5"):
        return path
    record_path = os.path.join(os.path.dirname(path), "best.json")
    if not os.path.isfile(record_path):
        return path
    try:
        with open(record_path) as f:
            checkpoint = json.load(f)["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning("Cannot read %s (%s): training from %s starts a new run",
                       record_path, e, path)
        return path
    return os.path.join(os.path.dirname(path), os.path.basename(str(checkpoint)))


class MaskRCNN:
    """Mask R-CNN with Matterport's API.

    mode: "training" or "inference". config: a ``mrcnn.config.Config``. model_dir: where
    training logs and checkpoints go (``model_dir/<name><timestamp>/``).
    ``keras_model`` is the underlying ``keras.Model``.
    """

    def __init__(self, mode, config, model_dir):
        if mode not in ("training", "inference"):
            raise ValueError("mode must be 'training' or 'inference', got %r" % (mode,))
        config.validate()
        self.mode = mode
        self.config = config
        self.model_dir = os.fspath(model_dir)
        self.epoch = 0
        self._anchor_cache = {}
        self._predict_fn = None
        self._fold_caches = []
        self.set_log_dir()
        self.strategy = self._make_strategy() if mode == "training" else None
        if self.strategy is not None:
            with self.strategy.scope():
                self.keras_model = self.build(mode, config)
        else:
            self.keras_model = self.build(mode, config)

    # ------------------------------------------------------------------ building
    def build(self, mode, config):
        """Build the Keras model of ``mode`` (Matterport's method name).

        Layers are created under the dtype policy ``config.PRECISION``; the global policy is
        restored afterwards, so other models built in the process are not affected.
        """
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(config.PRECISION)
        try:
            inputs, outputs = build_graph(mode, config)
        finally:
            keras.config.set_dtype_policy(previous)
        if mode == "training":
            from mrcnn.training.trainer import MaskRCNNTrainer
            return MaskRCNNTrainer(config, inputs=inputs, outputs=outputs, name="mask_rcnn")
        return keras.Model(inputs=inputs, outputs=outputs, name="mask_rcnn")

    def _make_strategy(self):
        """The strategy training runs under.

        An enclosing ``with strategy.scope():`` wins (any ``tf.distribute`` strategy, e.g.
        MirroredStrategy over chosen devices or a TPUStrategy); otherwise GPU_COUNT > 1 picks
        MirroredStrategy over the first GPU_COUNT visible GPUs; otherwise None (default strategy).
        """
        if tf.distribute.has_strategy():
            return tf.distribute.get_strategy()
        if self.config.GPU_COUNT <= 1:
            return None
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < self.config.GPU_COUNT:
            raise ValueError("GPU_COUNT=%d but only %d GPU(s) are visible; lower GPU_COUNT"
                             % (self.config.GPU_COUNT, len(gpus)))
        devices = [d.name for d in gpus[:self.config.GPU_COUNT]]
        return tf.distribute.MirroredStrategy(devices)

    # ------------------------------------------------------------------ logs and checkpoints
    def set_log_dir(self, model_path=None):
        """Set ``log_dir``, ``checkpoint_path`` and ``epoch``.

        With ``model_path`` a checkpoint of ours
        (``.../<name>YYYYMMDDTHHMM/mask_rcnn_<name>_NNNN.h5``), or the ``mask_rcnn_<name>_best.h5``
        beside a ``best.json`` naming one, training continues in that checkpoint's run directory
        from epoch NNNN. Otherwise a new run starts at epoch 0, named after the current minute;
        ``create_log_dir`` moves it to a later minute if a directory of that name exists by then.
        """
        self.epoch = 0
        name = (self.config.NAME or "mrcnn").lower()
        stamp = datetime.datetime.now().replace(second=0, microsecond=0)
        log_dir = None
        m = None
        if model_path:
            checkpoint = _checkpoint_named_by_best_json(os.fspath(model_path))
            m = _CHECKPOINT_RE.match(checkpoint.replace("\\", "/"))
            if m:
                stamp = datetime.datetime(*[int(g) for g in m.groups()[:5]])
                self.epoch = int(m.group(6))
                run_dir = os.path.dirname(checkpoint)
                # A run of another NAME continues under ours in model_dir, as in Matterport.
                if os.path.basename(run_dir) == _run_name(name, stamp):
                    log_dir = run_dir
        self._run_stamp = stamp
        # A resumed run owns its directory already; a new one claims it in create_log_dir.
        self._log_dir_claimed = bool(m)
        self._set_run_paths(log_dir or os.path.join(self.model_dir, _run_name(name, stamp)))

    def _set_run_paths(self, log_dir):
        name = (self.config.NAME or "mrcnn").lower()
        self.log_dir = log_dir
        self.checkpoint_path = os.path.join(
            self.log_dir, "mask_rcnn_{}_*epoch*.h5".format(name)).replace("*epoch*", "{epoch:04d}")

    def create_log_dir(self):
        """Create the run directory and return ``log_dir``; ``train`` calls it first.

        A resumed run continues in its directory. A new run never shares one: two models that
        start training in the same minute would overwrite each other's checkpoints and
        best.json, so it takes the first minute-stamped name, from its own on, whose directory
        does not exist yet (claimed with ``os.mkdir``, which fails if another process got there
        first). Names stay ``<name>YYYYMMDDTHHMM``, so checkpoints still parse and later runs
        sort after earlier ones (``find_last``). Call it to write into the run directory before
        training.
        """
        # Without set_log_dir's state (a subclass replaced it) log_dir is taken as given.
        if getattr(self, "_log_dir_claimed", True):
            os.makedirs(self.log_dir, exist_ok=True)
            return self.log_dir
        name = (self.config.NAME or "mrcnn").lower()
        os.makedirs(self.model_dir, exist_ok=True)
        stamp = self._run_stamp
        while True:
            log_dir = os.path.join(self.model_dir, _run_name(name, stamp))
            try:
                os.mkdir(log_dir)
                break
            except FileExistsError:
                stamp += datetime.timedelta(minutes=1)
        self._run_stamp = stamp
        self._log_dir_claimed = True
        self._set_run_paths(log_dir)
        return log_dir

    def find_last(self):
        """Path of the last intact checkpoint of the latest training run of this config's NAME.

        Runs are searched latest first and, within a run, from the highest epoch down. A
        checkpoint that fails the cheap check ``weights.checkpoint_problem`` (empty, truncated,
        not HDF5, no layer list: e.g. a file a sync tool left half-copied) is skipped with a
        warning, so the previous good one is returned.
        Raises FileNotFoundError naming the directories searched when there is none.
        """
        name = (self.config.NAME or "mrcnn").lower()
        model_dir = os.path.abspath(self.model_dir)
        runs = sorted(d for d in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
                      if d.startswith(name) and os.path.isdir(os.path.join(model_dir, d)))
        skipped = []
        for d in reversed(runs):
            run_dir = os.path.join(self.model_dir, d)
            checkpoints = sorted(f for f in os.listdir(run_dir)
                                 if f.startswith("mask_rcnn") and f.endswith(".h5")
                                 and not f.endswith("_best.h5"))
            for f in reversed(checkpoints):
                path = os.path.join(run_dir, f)
                problem = weights_io.checkpoint_problem(path)
                if problem is None:
                    return path
                logger.warning("find_last: skipping checkpoint %s: it %s", path, problem)
                skipped.append(path)
        if not os.path.isdir(model_dir):
            where = "%s, which does not exist" % model_dir
        elif not runs:
            where = "%s, which holds no run directory %s<YYYYMMDDTHHMM>" % (model_dir, name)
        else:
            where = "%s and its run directories %s" % (model_dir, ", ".join(runs[::-1][:5])
                                                      + (", ..." if len(runs) > 5 else ""))
        raise FileNotFoundError(
            "Could not find a checkpoint of %r: looked in %s%s. Train first, pass a weights file, "
            "or use model_dir= the folder that holds the run directories."
            % (name, where, "; skipped %d unreadable: %s" % (len(skipped), ", ".join(skipped[:3]))
               if skipped else ""))

    def find_best(self):
        """Path of the best checkpoint (lowest validation loss) of the latest run that marks one.

        ``best.json`` names the numbered checkpoint and ``mask_rcnn_<name>_best.h5`` is its hard
        link (or copy). Returned is the ``_best.h5`` file when both agree (same file, or the same
        ``epoch`` attribute), else the numbered checkpoint that best.json names, with a warning:
        training was interrupted between the two writes, or a file is damaged. Unreadable files
        are skipped with a warning and earlier runs searched, as in ``find_last``.
        Raises FileNotFoundError naming the directories searched when there is none.
        """
        name = (self.config.NAME or "mrcnn").lower()
        model_dir = os.path.abspath(self.model_dir)
        runs = sorted(d for d in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
                      if d.startswith(name) and os.path.isdir(os.path.join(model_dir, d)))
        for d in reversed(runs):
            run_dir = os.path.join(self.model_dir, d)
            marked = sorted(f for f in os.listdir(run_dir)
                            if f.startswith("mask_rcnn") and f.endswith("_best.h5"))
            best_h5 = os.path.join(run_dir, marked[-1]) if marked else None
            record_path = os.path.join(run_dir, "best.json")
            record = None
            if os.path.isfile(record_path):
                try:
                    with open(record_path) as f:
                        record = json.load(f)
                    record = {"checkpoint": os.path.basename(str(record["checkpoint"])),
                              "epoch": int(record["epoch"])}
                except (OSError, ValueError, KeyError, TypeError) as e:
                    logger.warning("find_best: cannot read %s (%s)", record_path, e)
                    record = None
            if best_h5 is None and record is None:
                continue
            best_ok = best_h5 is not None and weights_io.checkpoint_problem(best_h5) is None
            if record is None:
                if best_ok:
                    return best_h5
                logger.warning("find_best: skipping %s: unreadable and no best.json", best_h5)
                continue
            numbered = os.path.join(run_dir, record["checkpoint"])
            numbered_ok = (os.path.isfile(numbered)
                           and weights_io.checkpoint_problem(numbered) is None)
            if best_ok:
                if numbered_ok and os.path.samefile(best_h5, numbered):
                    return best_h5
                try:
                    epoch = weights_io.read_attrs(best_h5).get("epoch")
                except (weights_io.WeightsFileError, OSError):
                    epoch = None
                if epoch == record["epoch"]:
                    return best_h5
            if numbered_ok:
                logger.warning("find_best: %s does not hold epoch %d that %s names; using %s",
                               best_h5 or "the _best.h5 file", record["epoch"], record_path,
                               numbered)
                return numbered
            logger.warning("find_best: skipping run %s: the best checkpoint %s is missing or "
                           "unreadable", run_dir, numbered)
        raise FileNotFoundError(
            "Could not find a best checkpoint of %r: looked in %s%s. Train first (each epoch marks "
            "the best one), or use model_dir= the folder that holds the run directories."
            % (name, model_dir, " and its run directories " + ", ".join(runs[::-1][:5])
               if runs else ", which holds no run directory %s<YYYYMMDDTHHMM>" % name))

    # ------------------------------------------------------------------ weights
    def load_weights(self, filepath, by_name=False, exclude=None):
        """Load weights from a Matterport-format HDF5 file (COCO weights, old checkpoints, ours).

        exclude: layer names to skip, e.g. ``CLASS_SPECIFIC_LAYERS`` when NUM_CLASSES differs.
        Returns the loader's report (loaded / skipped / missing layers).
        """
        report = weights_io.load_weights_h5(self.keras_model, filepath, by_name=by_name,
                                            exclude=exclude)
        self.set_log_dir(filepath)
        self._predict_fn = None
        return report

    def save_weights(self, filepath, **attrs):
        """Save all weights atomically in the Keras 2 HDF5 layout that ``load_weights`` reads."""
        weights_io.save_weights_h5(self.keras_model, filepath, attrs=attrs or None)

    def get_imagenet_weights(self):
        """Download (once, cached) the ImageNet ResNet-50 weights and return their path."""
        from mrcnn.download import download_imagenet_weights
        return download_imagenet_weights()

    def get_trainable_layers(self):
        """Layers that hold weights (nested models expanded), as (name, layer) pairs."""
        return list(weights_io.weighted_layers(self.keras_model))

    def find_trainable_layer(self, layer):
        """Matterport unwrapped TimeDistributed layers here; ours are plain layers."""
        return getattr(layer, "layer", layer)

    # ------------------------------------------------------------------ inference
    def get_anchors(self, image_shape):
        """Normalized anchors [A, 4] for a molded image shape (cached per shape)."""
        return anchors_lib.get_anchors(self.config, tuple(image_shape))

    def mold_inputs(self, images):
        """Resize and normalize a list of images (`mrcnn.molding.mold_inputs`).

        images: list of [H, W, C] arrays (grayscale, RGBA and 16-bit are converted to RGB uint8).
        Returns molded_images [N, h, w, 3] float32, image_metas [N, META] float32,
        windows [N, 4] int32 (y1, x1, y2, x2) of the image inside the padding, in molded pixels.
        """
        return molding.mold_inputs(images, self.config)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape,
                          window):
        """Detections of one image in original-image pixels (`mrcnn.molding.unmold_detections`).

        detections: [D, 6] (y1, x1, y2, x2 normalized to the molded image, class_id, score);
        mrcnn_mask: [D, mh, mw, C] float (Matterport's layout), or [D, mh, mw] already holding
        each detection's own class; window: (y1, x1, y2, x2) molded pixels.
        Returns boxes [n, 4] int32, class_ids [n] int32, scores [n] float32,
        masks [H, W, n] bool at the original size.
        """
        return molding.unmold_detections(detections, mrcnn_mask, original_image_shape,
                                         image_shape, window)

    def _winograd_mode(self):
        """The ``mrcnn.ops.winograd.enabled`` mode of detect()'s graph (Config.WINOGRAD),
        read once when that graph's function is built, as XLA is."""
        setting = self.config.WINOGRAD
        if isinstance(setting, str):  # "auto": GPUs' libraries pick their own algorithms
            return None if tf.config.list_logical_devices("GPU") else "auto"
        return "all" if setting else None

    def _predict_function(self):
        """The compiled forward pass of detect(), built on first use: a ``tf.function`` of
        (molded images [N, H, W, 3] float32, image metas [N, META] float32) returning
        (detections [N, D, 6], each detection's own class mask [N, D, mh, mw])."""
        if self._predict_fn is None:
            model = self.keras_model
            if self.mode != "inference":
                raise RuntimeError("detect() needs a model built with mode='inference'")

            # autograph=False: there is no Python control flow to convert, and AutoGraph's
            # conversion of this closure fails ("closure mismatch") with a warning per model.
            # XLA compiles one program per input shape: no shape-relaxed traces then.
            xla = bool(self.config.XLA)
            # The backbone's convolutions read their batch norm folded in ahead (refreshed in
            # _predict when weights change) instead of folding it in the graph: a smaller
            # graph, traced and optimized faster (mrcnn.layers.conv).
            self._fold_caches = conv_layers.fold_caches(model)
            for cache in self._fold_caches:
                cache.refresh()  # the variables must exist before the trace reads them

            winograd_mode = self._winograd_mode()

            @tf.function(reduce_retracing=not xla, autograph=False, jit_compile=xla or None)
            def predict(images, metas):
                with conv_layers.cached_folds(), winograd.enabled(winograd_mode):
                    out = model({"input_image": images, "input_image_meta": metas},
                                training=False)
                detections = out["mrcnn_detection"]
                # Only each detection's own class mask leaves the graph: [N, D, mh, mw] instead
                # of [N, D, mh, mw, C] (25 MB per image with COCO's 81 classes).
                class_ids = tf.cast(detections[..., 4], tf.int32)
                masks = tf.gather(tf.transpose(out["mrcnn_mask"], [0, 1, 4, 2, 3]), class_ids,
                                  axis=2, batch_dims=2)
                return detections, masks

            self._predict_fn = predict
        return self._predict_fn

    def _predict(self, molded_images, image_metas):
        predict = self._predict_function()
        for cache in self._fold_caches:
            cache.refresh()
        # The function is traced on its first call for each shape: in static shapes under XLA.
        with portable.xla_static() if self.config.XLA else contextlib.nullcontext():
            detections, masks = predict(
                tf.convert_to_tensor(molded_images, tf.float32),
                tf.convert_to_tensor(image_metas, tf.float32))
        return detections.numpy(), masks.numpy()

    def detect(self, images, verbose=0):
        """Detect instances in a list of images.

        images: list of [H, W, C] images of any size (RGB, grayscale, RGBA, 8 or 16 bit).
        Returns one dict per image: rois [n, 4] int32 (y1, x1, y2, x2 original pixels),
        class_ids [n] int32, scores [n] float32, masks [H, W, n] bool.
        Images are run in batches of BATCH_SIZE; images that mold to different shapes (resize
        modes other than "square") are run separately.
        """
        if self.mode != "inference":
            raise RuntimeError("detect() needs a model built with mode='inference'")
        if isinstance(images, np.ndarray) and images.ndim in (2, 3):
            raise TypeError("detect() takes a list of images; wrap a single image as [image]")
        images = [np.asarray(im) for im in images]
        if verbose:
            logger.info("Processing %d images", len(images))
        results = [None] * len(images)
        # One at a time: in "pad64" and "none" modes images mold to different shapes, which
        # cannot be stacked.
        molded, metas, windows = zip(*[(m[0], me[0], w[0]) for m, me, w in
                                       (self.mold_inputs([image]) for image in images)])
        metas = np.stack(metas)
        batch = max(1, int(self.config.BATCH_SIZE))
        groups = {}
        for i, m in enumerate(molded):
            groups.setdefault(m.shape, []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), batch):
                chunk = idx[start:start + batch]
                detections, masks = self._predict(np.stack([molded[i] for i in chunk]),
                                                  metas[chunk])
                for j, i in enumerate(chunk):
                    rois, class_ids, scores, full = self.unmold_detections(
                        detections[j], masks[j], images[i].shape, molded[i].shape, windows[i])
                    results[i] = {"rois": rois, "class_ids": class_ids, "scores": scores,
                                  "masks": full}
        return results

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already molded (as ``load_image_gt`` + ``mold_image`` give them).

        Returns dicts as ``detect``, in the coordinates of the original images the metas describe.
        """
        from mrcnn.meta import parse_image_meta
        meta = parse_image_meta(np.asarray(image_metas))
        detections, masks = self._predict(np.asarray(molded_images, np.float32),
                                          np.asarray(image_metas, np.float32))
        results = []
        for j in range(len(molded_images)):
            original_shape = tuple(int(v) for v in meta["original_image_shape"][j])
            rois, class_ids, scores, full = self.unmold_detections(
                detections[j], masks[j], original_shape, molded_images[j].shape,
                meta["window"][j])
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                            "masks": full})
        return results

    def run_graph(self, images, outputs, image_metas=None):
        """Run the graph and return named intermediate tensors for inspection.

        outputs: list of (name, layer name or Keras tensor) pairs, as in Matterport's notebooks,
        e.g. ``[("proposals", "ROI"), ("p2", "fpn_p2")]``.
        Returns an OrderedDict name -> NumPy array.
        """
        import collections
        tensors = []
        for _, spec in outputs:
            if isinstance(spec, str):
                layer = self.keras_model.get_layer(spec)
                tensors.append(layer.output)
            else:
                tensors.append(spec)
        probe = keras.Model(self.keras_model.inputs, tensors)
        molded, metas, _ = self.mold_inputs(images)
        if image_metas is not None:
            metas = image_metas
        values = probe({"input_image": molded, "input_image_meta": metas}, training=False)
        if not isinstance(values, (list, tuple)):
            values = [values]
        return collections.OrderedDict(
            (name, np.asarray(v)) for (name, _), v in zip(outputs, values))

    # ------------------------------------------------------------------ training
    def export(self, path, class_names=None, format=None, quantize=None):
        """Write this inference model for serving: a SavedModel directory or a TFLite file.

        path: the SavedModel directory, or the ``.tflite`` file (its ``.json`` goes beside it).
        class_names: NUM_CLASSES names, ``BG`` first; default ``config.CLASS_NAMES`` (set by
        the ``mrcnn`` command), else ``BG, class_1, ...``.
        format: ``"tf_saved_model"`` (`mrcnn.export.export_saved_model`: raw uint8 images in,
        molding and unmolding in the graph; alias ``"saved_model"``) or ``"tflite"``
        (`mrcnn.export.export_tflite`; alias ``"litert"``, TFLite's new name); default
        ``"tflite"`` when ``path`` ends in ``.tflite``, else ``"tf_saved_model"``.
        quantize: TFLite only: None (float32), ``"float16"`` or ``"dynamic-int8"``.
        Returns ``path``. Keras' own ``Model.export`` would export the bare network, without
        Matterport's pre- and post-processing; this one serves what ``detect()`` returns.
        """
        if format is None:
            format = "tflite" if os.fspath(path).lower().endswith(".tflite") else \
                "tf_saved_model"
        if format in ("tflite", "litert"):
            from mrcnn.export.tflite import export_tflite
            return export_tflite(self, path, class_names, quantize=quantize)
        if format not in ("tf_saved_model", "saved_model"):
            raise ValueError("export: format must be 'tf_saved_model' or 'tflite', got %r"
                             % (format,))
        if quantize not in (None, "float32"):
            raise ValueError("export: quantize=%r applies to TFLite files only (format='tflite' "
                             "or a path ending in .tflite)" % (quantize,))
        from mrcnn.export.saved_model import export_saved_model
        return export_saved_model(self, path, class_names)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None):
        """Train until epoch ``epochs`` (counted from the start, Matterport's meaning).

        layers: "heads", "3+", "4+", "5+", "all" or a regular expression over layer names.
        See ``mrcnn.training.trainer.train`` for the details.
        """
        if self.mode != "training":
            raise RuntimeError("train() needs a model built with mode='training'")
        from mrcnn.training.trainer import train
        return train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
                     augmentation=augmentation, custom_callbacks=custom_callbacks,
                     no_augmentation_sources=no_augmentation_sources)

    def set_trainable(self, layer_regex, verbose=0):
        """Make layers whose names fully match ``layer_regex`` trainable and freeze the rest."""
        from mrcnn.training.trainer import set_trainable
        return set_trainable(self.keras_model, layer_regex, verbose=verbose)
