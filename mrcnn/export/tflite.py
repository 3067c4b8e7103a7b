"""Convert a trained model to TFLite, and run the converted file as ``detect()`` does.

The ``.tflite`` file holds the network from the molded image to the detections: backbone, FPN,
RPN, proposals (NMS included), ROI align, heads and the detection layer, in TFLite builtin ops
only (traced inside `mrcnn.ops.portable.tflite_builtins`: ROI align's crop out of gathers, and
NMS kept clear of a TFLite kernel quirk, both with TensorFlow's numbers), so it runs in any
TFLite interpreter, no Flex delegate needed.
Molding the image and pasting the masks stay outside, as on a phone they belong to the app:
`TFLiteDetector` does them with ``detect()``'s own code (`mrcnn.molding`).

The file's signature ``serving_default``:

- inputs ``image`` float32 ``[1, h, w, 3]`` (molded: resized, padded, MEAN_PIXEL subtracted;
  ``h = w = IMAGE_MAX_DIM`` in "square" mode, any multiple of 64 in "pad64") and ``image_meta``
  float32 ``[1, IMAGE_META_SIZE]``;
- outputs ``detections`` float32 ``[DETECTION_MAX_INSTANCES, 6]`` (y1, x1, y2, x2 normalized to
  the molded image, class id, score; rows after the first zero class id are padding) and
  ``masks`` float32 ``[DETECTION_MAX_INSTANCES, mh, mw]`` (each detection's own class mask).

``<file>.json`` beside it holds the class names, the configuration (which `TFLiteDetector` reads
to mold images as the model was trained) and the quantization.

Quantization (``export_tflite(..., quantize=...)``, ``mrcnn export --tflite --quantize``), with
TFLite's post-training converters; the signature is the same for all three, float32 in and out:

- ``None``: float32 weights and arithmetic, TensorFlow's numbers;
- ``"float16"``: weights stored as float16 (half the file), turned back to float32 when the
  interpreter loads them, so the arithmetic stays float32;
- ``"dynamic-int8"``: dynamic-range quantization: convolution and dense weights stored as int8
  with a scale per output channel (a quarter of their size), activations quantized on the fly
  for those ops; everything else float32.

What each costs in file size, speed and agreement with ``detect()`` is in docs/benchmarks.md
(``bench/quantize.py``).
"""

import json
import os

import numpy as np
import tensorflow as tf

from mrcnn.export.checks import check_exportable, export_class_names
from mrcnn.ops.portable import tflite_builtins
from mrcnn.workflow.runs import jsonable

__all__ = ["tflite_function", "export_tflite", "TFLiteDetector", "metadata_path",
           "QUANTIZATIONS"]

#: The ``quantize`` choices of `export_tflite` besides ``None`` (float32).
QUANTIZATIONS = ("float16", "dynamic-int8")

# Config values the runner needs to mold images and read the outputs.
_MOLDING_SETTINGS = ("NAME", "NUM_CLASSES", "IMAGE_CHANNEL_COUNT", "IMAGE_MIN_DIM",
                     "IMAGE_MAX_DIM", "IMAGE_MIN_SCALE", "IMAGE_RESIZE_MODE", "MEAN_PIXEL")


def metadata_path(path):
    """Where the class names and config of a ``.tflite`` file are: ``<path>.json``."""
    return os.fspath(path) + ".json"


def tflite_function(model):
    """The ``tf.function`` that `export_tflite` converts, for an inference ``MaskRCNN``.

    Trace it inside `mrcnn.ops.portable.tflite_builtins` to get builtin ops only.
    """
    config, keras_model = check_exportable(model), model.keras_model
    if config.PRECISION != "float32":
        raise ValueError("export --tflite: PRECISION is %r; TFLite conversion needs a float32 "
                         "model (build the inference model with PRECISION = 'float32' and load "
                         "the same weights)" % (config.PRECISION,))
    side = int(config.IMAGE_MAX_DIM) if config.IMAGE_RESIZE_MODE == "square" else None
    channels = int(config.IMAGE_CHANNEL_COUNT)
    num_classes = int(config.NUM_CLASSES)

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([1, side, side, channels], tf.float32, name="image"),
        tf.TensorSpec([1, config.IMAGE_META_SIZE], tf.float32, name="image_meta")])
    def detect(image, image_meta):
        out = keras_model({"input_image": image, "input_image_meta": image_meta},
                          training=False)
        detections = tf.cast(out["mrcnn_detection"][0], tf.float32)
        masks = tf.cast(out["mrcnn_mask"][0], tf.float32)            # [D, mh, mw, C]
        # Each detection's own class by a one-hot sum (exact: the other terms are zeros), which
        # keeps only 1/C of the mask output and needs no batched gather.
        pick = tf.one_hot(tf.cast(detections[:, 4], tf.int32), num_classes, dtype=tf.float32)
        return {"detections": detections,
                "masks": tf.reduce_sum(masks * pick[:, None, None, :], axis=-1)}

    return detect


def check_quantize(quantize):
    """``quantize`` as `export_tflite` takes it: None (float32) or one of `QUANTIZATIONS`;
    raises ValueError naming the setting otherwise."""
    if quantize in (None, "float32", "none"):
        return None
    if quantize not in QUANTIZATIONS:
        raise ValueError("export: quantize must be one of %s (or None for float32), got %r"
                         % (", ".join(QUANTIZATIONS), quantize))
    return quantize


def export_tflite(model, path, class_names=None, quantize=None):
    """Convert ``model`` (an inference ``MaskRCNN``, float32) to a TFLite file at ``path``.

    class_names: NUM_CLASSES names, background first (default: ``config.CLASS_NAMES``, else
    ``BG, class_1, ...``).
    quantize: None (float32 weights), ``"float16"`` or ``"dynamic-int8"`` (see the module
    docstring); the file's inputs and outputs are float32 in every case.
    Writes ``path`` and ``<path>.json`` (class names and config), each to a temporary name first
    and moved into place, so an interrupted export leaves no half-written file. Returns ``path``.
    """
    quantize = check_quantize(quantize)
    class_names = export_class_names(model.config, class_names)
    function = tflite_function(model)
    with tflite_builtins():
        concrete = function.get_concrete_function()
    # The weights become constants of the file: left as resource variables, they need an
    # initialization subgraph that interpreters do not run by themselves (the model then
    # computes on uninitialized memory).
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    frozen = convert_variables_to_constants_v2(concrete)
    names = sorted(concrete.structured_outputs)      # the frozen function's flat output order

    # Freezing loses the output names; a wrapper gives them back to the file's signature.
    @tf.function(input_signature=function.input_signature, autograph=False)
    def named(image, image_meta):
        return dict(zip(names, frozen(image, image_meta)))

    # The frozen graph holds no variables, so an empty module serves as its trackable object
    # (the model itself would be saved to a temporary SavedModel: twice the conversion time).
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [named.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    flatbuffer = converter.convert()
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    meta = {"class_names": class_names,
            "config": jsonable(model.config.to_dict()),
            "quantization": quantize or "float32",
            "inputs": ["image", "image_meta"], "outputs": ["detections", "masks"]}
    for target, data in ((metadata_path(path), json.dumps(meta, indent=1, default=str).encode()),
                         (path, flatbuffer)):
        tmp = target + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    return path


def _interpreter_class():
    # LiteRT is TFLite's runtime now (tf.lite.Interpreter warns that it is deprecated); use it
    # when it is installed, else TensorFlow's own copy, which has the same interface.
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter


class TFLiteDetector:
    """A ``.tflite`` file written by `export_tflite`, with ``detect()``'s interface.

    path: the ``.tflite`` file; its ``<path>.json`` must be beside it.
    num_threads: the interpreter's threads (default: every core, ``os.cpu_count()``; the
    interpreter's own default runs most kernels on one thread, 1.6 times slower on 2 cores).
    ``detect(images)`` returns what ``MaskRCNN.detect`` returns for the same images: one dict per
    image with ``rois`` int32 [n, 4] (original pixels), ``class_ids`` int32 [n], ``scores``
    float32 [n], ``masks`` bool [H, W, n].
    ``quantization`` is the file's: ``"float32"``, ``"float16"`` or ``"dynamic-int8"``.
    """

    def __init__(self, path, num_threads=None):
        from mrcnn.config import Config
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError("TFLite model %s does not exist" % path)
        meta_file = metadata_path(path)
        try:
            with open(meta_file) as f:
                meta = json.load(f)
            settings = {k: meta["config"][k] for k in _MOLDING_SETTINGS}
            self.class_names = [str(c) for c in meta["class_names"]]
            # Files written before quantization existed carry no such entry: float32.
            self.quantization = str(meta.get("quantization", "float32"))
        except FileNotFoundError:
            raise FileNotFoundError("%s: its metadata %s is missing (export_tflite writes both; "
                                    "copy them together)" % (path, meta_file)) from None
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError("%s: not the metadata of an mrcnn TFLite export (%s)"
                             % (meta_file, e)) from None
        settings["MEAN_PIXEL"] = np.asarray(settings["MEAN_PIXEL"], np.float64)
        self.config = type("TFLiteConfig", (Config,), settings)()
        if num_threads is None:
            num_threads = os.cpu_count() or 1
        self.interpreter = _interpreter_class()(model_path=path, num_threads=num_threads)
        self._run = self.interpreter.get_signature_runner()

    def detect_molded(self, molded_image, image_meta):
        """Run the network on one molded image [h, w, 3] float32 and its meta [META].

        Returns (detections [D, 6], masks [D, mh, mw]) float32, as the file's outputs.
        """
        out = self._run(image=np.asarray(molded_image, np.float32)[None],
                        image_meta=np.asarray(image_meta, np.float32)[None])
        return out["detections"], out["masks"]

    def detect(self, images, verbose=0):
        """Detect instances in a list of [H, W, C] images (see the class docstring)."""
        from mrcnn.molding import mold_inputs, unmold_detections
        if isinstance(images, np.ndarray) and images.ndim in (2, 3):
            raise TypeError("detect() takes a list of images; wrap a single image as [image]")
        results = []
        for image in images:
            image = np.asarray(image)
            molded, metas, windows = mold_inputs([image], self.config)
            detections, masks = self.detect_molded(molded[0], metas[0])
            rois, class_ids, scores, full = unmold_detections(
                detections, masks, image.shape, molded[0].shape, windows[0])
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                            "masks": full})
        return results
