"""Export a trained model as a TensorFlow SavedModel that serves raw images.

The whole of ``MaskRCNN.detect`` is in the exported graph: Matterport's molding (resize, pad,
mean subtraction, image meta), the network, and the unmolding (boxes to original pixels, masks
pasted at the original size), with the arithmetic of the NumPy path (``mrcnn.ops.resample_tf``),
so a server needs TensorFlow only, not ``mrcnn``.

Signatures of the SavedModel:

- ``serving_default``: ``image`` uint8 ``[H, W, 3]`` (any size, RGB) ->
  ``rois`` int32 ``[N, 4]`` (y1, x1, y2, x2 in original pixels), ``class_ids`` int32 ``[N]``,
  ``scores`` float32 ``[N]``, ``masks`` bool ``[H, W, N]``.
- ``metadata``: no input -> ``class_names`` string ``[NUM_CLASSES]`` (index = class id; 0 is
  ``BG``) and ``config`` (a JSON string of the Config).

``assets.extra/mrcnn.json`` holds the same class names and config for servers that read files.

Command line: ``mrcnn export`` (`mrcnn.export.command`).
"""

import json
import os

import numpy as np
import tensorflow as tf

from mrcnn.export.checks import check_exportable, check_resize_mode, export_class_names
from mrcnn.ops.resample_tf import paste_mask_tf, resize_image_uint8_tf
from mrcnn.workflow.runs import jsonable

__all__ = ["export_saved_model", "serving_function", "mold_image_tf", "unmold_detections_tf"]


def _molding_scale(h, w, config):
    """``resize_image``'s scale, in float64 as Python computes it (round half to even)."""
    h = tf.cast(h, tf.float64)
    w = tf.cast(w, tf.float64)
    scale = tf.constant(1.0, tf.float64)
    if config.IMAGE_MIN_DIM:
        scale = tf.maximum(scale, config.IMAGE_MIN_DIM / tf.minimum(h, w))
    if config.IMAGE_MIN_SCALE:
        scale = tf.maximum(scale, tf.constant(float(config.IMAGE_MIN_SCALE), tf.float64))
    if config.IMAGE_MAX_DIM and config.IMAGE_RESIZE_MODE == "square":
        longest = tf.maximum(h, w)
        scale = tf.where(tf.round(longest * scale) > config.IMAGE_MAX_DIM,
                         config.IMAGE_MAX_DIM / longest, scale)
    return scale


def mold_image_tf(image, config):
    """Matterport's ``mold_inputs`` for one uint8 image [H, W, 3], in the graph.

    Returns (molded float32 [h, w, 3], meta float32 [META], window int32 [4]).
    """
    check_resize_mode(config)
    mode = config.IMAGE_RESIZE_MODE
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    if mode == "none":
        scale = tf.constant(1.0, tf.float64)
        resized = image
    else:
        scale = _molding_scale(h, w, config)
        out_h = tf.cast(tf.round(tf.cast(h, tf.float64) * scale), tf.int32)
        out_w = tf.cast(tf.round(tf.cast(w, tf.float64) * scale), tf.int32)
        resized = tf.cond(tf.equal(scale, 1.0), lambda: image,
                          lambda: resize_image_uint8_tf(image, out_h, out_w))
    rh, rw = tf.shape(resized)[0], tf.shape(resized)[1]
    if mode == "square":
        size = int(config.IMAGE_MAX_DIM)
        pad_h, pad_w = size - rh, size - rw
    elif mode == "pad64":
        pad_h, pad_w = -rh % 64, -rw % 64
    else:
        pad_h = pad_w = tf.constant(0, tf.int32)
    top, left = pad_h // 2, pad_w // 2
    molded = tf.pad(resized, [[top, pad_h - top], [left, pad_w - left], [0, 0]])
    if mode == "square":
        molded = tf.ensure_shape(molded, [config.IMAGE_MAX_DIM, config.IMAGE_MAX_DIM, 3])
    # Matterport subtracts its float64 mean from float32 pixels: float64, then float32.
    mean = tf.constant(np.asarray(config.MEAN_PIXEL, np.float64))
    molded = tf.cast(tf.cast(tf.cast(molded, tf.float32), tf.float64) - mean, tf.float32)
    window = tf.stack([top, left, top + rh, left + rw])
    mshape = tf.shape(molded)
    meta = tf.concat([
        tf.zeros([1], tf.float32),
        tf.cast(tf.stack([h, w, 3, mshape[0], mshape[1], 3]), tf.float32),
        tf.cast(window, tf.float32),
        tf.cast(tf.reshape(scale, [1]), tf.float32),
        tf.zeros([config.NUM_CLASSES], tf.float32),
    ], axis=0)
    return molded, meta, window


def unmold_detections_tf(detections, class_masks, original_hw, molded_hw, window):
    """``MaskRCNN.unmold_detections`` in the graph.

    detections: [D, 6] (normalized boxes, class id, score); class_masks: [D, mh, mw] float32
    (each detection's own class); original_hw, molded_hw: int32 [2]; window: int32 [4].
    Returns rois int32 [n, 4], class_ids int32 [n], scores float32 [n], masks bool [H, W, n].
    """
    zero = tf.where(tf.equal(detections[:, 4], 0.0))[:, 0]
    n = tf.cond(tf.size(zero) > 0, lambda: tf.cast(zero[0], tf.int32),
                lambda: tf.shape(detections)[0])
    boxes, class_ids = detections[:n, :4], tf.cast(detections[:n, 4], tf.int32)
    scores, masks = detections[:n, 5], class_masks[:n]

    def norm_scale(hw):
        hw = tf.cast(hw, tf.float64)
        return tf.stack([hw[0] - 1, hw[1] - 1, hw[0] - 1, hw[1] - 1])

    shift64 = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float64)
    win = tf.cast((tf.cast(window, tf.float64) - shift64) / norm_scale(molded_hw), tf.float32)
    shift = tf.stack([win[0], win[1], win[0], win[1]])
    extent = tf.stack([win[2] - win[0], win[3] - win[1], win[2] - win[0], win[3] - win[1]])
    boxes = (boxes - shift) / extent
    boxes = tf.cast(tf.round(tf.cast(boxes, tf.float64) * norm_scale(original_hw) + shift64),
                    tf.int32)
    keep = tf.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[:, 0]
    boxes, class_ids = tf.gather(boxes, keep), tf.gather(class_ids, keep)
    scores, masks = tf.gather(scores, keep), tf.gather(masks, keep)
    height, width = original_hw[0], original_hw[1]

    def paste_all():
        pasted = tf.map_fn(lambda args: paste_mask_tf(args[0], args[1], height, width),
                           (masks, boxes), fn_output_signature=tf.TensorSpec([None, None],
                                                                             tf.bool))
        return tf.reshape(pasted, [-1, height, width])

    # map_fn cannot stack an empty list: an image without detections gets [0, H, W] directly.
    full = tf.cond(tf.size(keep) > 0, paste_all,
                   lambda: tf.zeros(tf.stack([0, height, width]), tf.bool))
    return boxes, class_ids, scores, tf.transpose(full, [1, 2, 0])


def serving_function(model):
    """The ``serving_default`` function of `export_saved_model` for an inference ``MaskRCNN``:
    a ``tf.function`` of one uint8 ``[H, W, 3]`` image returning the dict described above."""
    config, keras_model = check_exportable(model), model.keras_model
    if int(config.IMAGE_CHANNEL_COUNT) != 3:
        raise ValueError("export: IMAGE_CHANNEL_COUNT must be 3 (RGB) to serve uint8 images")

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
    def serve(image):
        molded, meta, window = mold_image_tf(image, config)
        out = keras_model({"input_image": molded[None], "input_image_meta": meta[None]},
                          training=False)
        detections = tf.cast(out["mrcnn_detection"][0], tf.float32)
        masks = tf.cast(out["mrcnn_mask"][0], tf.float32)           # [D, mh, mw, C]
        ids = tf.cast(detections[:, 4], tf.int32)
        class_masks = tf.gather(tf.transpose(masks, [0, 3, 1, 2]), ids, axis=1, batch_dims=1)
        rois, class_ids, scores, full = unmold_detections_tf(
            detections, class_masks, tf.shape(image)[:2], tf.shape(molded)[:2], window)
        return {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": full}

    return serve


def export_saved_model(model, path, class_names=None):
    """Write ``model`` (an inference ``MaskRCNN``) as a SavedModel directory at ``path``.

    class_names: NUM_CLASSES names, background first (default: ``config.CLASS_NAMES``, else
    ``BG, class_1, ...``).
    Returns ``path``. The directory is written beside the target and moved into place, so an
    interrupted export never leaves a half-written model under ``path``; a SavedModel already
    there is replaced, anything else at ``path`` raises FileExistsError.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        # Replacing a SavedModel is what re-exporting does; anything else there is the user's.
        raise FileExistsError("export: %s exists and is not a SavedModel; choose another path "
                              "or remove it" % path)
    class_names = export_class_names(model.config, class_names)
    config_json = json.dumps(jsonable(model.config.to_dict()), default=str, sort_keys=True)
    module = tf.Module()
    module.model = model.keras_model
    module.serve = serving_function(model)
    module.metadata = tf.function(
        lambda: {"class_names": tf.constant(class_names), "config": tf.constant(config_json)},
        input_signature=[])
    tmp = path.rstrip("/\\") + ".tmp-export"
    if os.path.exists(tmp):
        import shutil
        shutil.rmtree(tmp)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve,
                                                 "metadata": module.metadata})
    os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
    with open(os.path.join(tmp, "assets.extra", "mrcnn.json"), "w") as f:
        json.dump({"class_names": class_names, "config": json.loads(config_json)}, f, indent=1)
    if os.path.exists(path):
        import shutil
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path
