"""Box operations in TensorFlow: the one codec shared by targets and decoding.

Boxes are ``[..., (y1, x1, y2, x2)]`` float32. Unless a function says otherwise they are
*normalized*: divided by ``(h - 1, w - 1)`` after shifting the far corner by one pixel (Matterport's
convention, see ``mrcnn.ops.boxes_np.norm_boxes``). Deltas are ``[..., (dy, dx, log(dh), log(dw))]``
divided by a standard deviation vector ``std_dev`` of 4 values, so the network predicts
unit-variance targets. ``mrcnn.ops.boxes_np`` holds the NumPy twin, tested against this module.
"""

import tensorflow as tf

from mrcnn.ops import portable


def encode_boxes(boxes, gt_boxes, std_dev):
    """Deltas that move ``boxes`` onto ``gt_boxes``, divided by ``std_dev``.

    boxes, gt_boxes: [..., 4] float32, the same coordinate frame (pixels or normalized).
    std_dev: [4] float.
    Returns: [..., 4] float32 deltas (dy, dx, log(dh), log(dw)) / std_dev.
    """
    boxes = tf.cast(boxes, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    cy = boxes[..., 0] + 0.5 * h
    cx = boxes[..., 1] + 0.5 * w
    gh = gt_boxes[..., 2] - gt_boxes[..., 0]
    gw = gt_boxes[..., 3] - gt_boxes[..., 1]
    gcy = gt_boxes[..., 0] + 0.5 * gh
    gcx = gt_boxes[..., 1] + 0.5 * gw
    deltas = tf.stack([(gcy - cy) / h, (gcx - cx) / w,
                       tf.math.log(gh / h), tf.math.log(gw / w)], axis=-1)
    return deltas / tf.constant(std_dev, tf.float32)


def decode_boxes(boxes, deltas, std_dev):
    """Apply ``deltas * std_dev`` to ``boxes`` (the inverse of ``encode_boxes``).

    boxes: [..., 4] float32; deltas: [..., 4] float32 (as predicted); std_dev: [4] float.
    Returns: [..., 4] float32 boxes in the frame of ``boxes``.
    """
    boxes = tf.cast(boxes, tf.float32)
    deltas = tf.cast(deltas, tf.float32) * tf.constant(std_dev, tf.float32)
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    cy = boxes[..., 0] + 0.5 * h + deltas[..., 0] * h
    cx = boxes[..., 1] + 0.5 * w + deltas[..., 1] * w
    h = h * tf.exp(deltas[..., 2])
    w = w * tf.exp(deltas[..., 3])
    y1 = cy - 0.5 * h
    x1 = cx - 0.5 * w
    return tf.stack([y1, x1, y1 + h, x1 + w], axis=-1)


def clip_boxes(boxes, window):
    """Clip ``boxes`` [..., 4] to ``window`` (y1, x1, y2, x2), broadcastable to boxes."""
    window = tf.cast(window, boxes.dtype)
    wy1, wx1, wy2, wx2 = tf.unstack(window, axis=-1)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    # Expand window components so a per-image window [N, 4] broadcasts over [N, R, 4] boxes.
    if boxes.shape.rank is not None and window.shape.rank is not None:
        for _ in range(boxes.shape.rank - window.shape.rank):
            wy1, wx1, wy2, wx2 = [tf.expand_dims(t, -1) for t in (wy1, wx1, wy2, wx2)]
    y1 = tf.clip_by_value(y1, wy1, wy2)
    x1 = tf.clip_by_value(x1, wx1, wx2)
    y2 = tf.clip_by_value(y2, wy1, wy2)
    x2 = tf.clip_by_value(x2, wx1, wx2)
    return tf.stack([y1, x1, y2, x2], axis=-1)


def box_iou(boxes1, boxes2):
    """IoU of every pair: boxes1 [N, 4], boxes2 [M, 4] -> [N, M] float32 in [0, 1]."""
    b1 = tf.cast(boxes1, tf.float32)[:, None, :]
    b2 = tf.cast(boxes2, tf.float32)[None, :, :]
    y1 = tf.maximum(b1[..., 0], b2[..., 0])
    x1 = tf.maximum(b1[..., 1], b2[..., 1])
    y2 = tf.minimum(b1[..., 2], b2[..., 2])
    x2 = tf.minimum(b1[..., 3], b2[..., 3])
    inter = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - inter
    return tf.math.divide_no_nan(inter, union)


def norm_boxes_tf(boxes, shape):
    """Pixel boxes [..., 4] -> normalized, for an image of ``shape`` (h, w) (tensor or tuple)."""
    h = tf.cast(shape[0], tf.float32)
    w = tf.cast(shape[1], tf.float32)
    scale = tf.stack([h, w, h, w]) - 1.0
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return (tf.cast(boxes, tf.float32) - shift) / scale


def denorm_boxes_tf(boxes, shape):
    """Normalized boxes [..., 4] -> pixel boxes (int32), for an image of ``shape`` (h, w)."""
    h = tf.cast(shape[0], tf.float32)
    w = tf.cast(shape[1], tf.float32)
    scale = tf.stack([h, w, h, w]) - 1.0
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.cast(tf.round(tf.cast(boxes, tf.float32) * scale + shift), tf.int32)


def trim_zero_rows(boxes, name="trim_zeros"):
    """Drop all-zero rows (padding) of ``boxes`` [N, 4]; returns (boxes [M, 4], bool mask [N])."""
    non_zeros = tf.cast(tf.reduce_sum(tf.abs(boxes), axis=1), tf.bool)
    return tf.boolean_mask(boxes, non_zeros, name=name), non_zeros


def non_max_suppression(boxes, scores, max_output_size, iou_threshold):
    """``tf.image.non_max_suppression``: indices (int32 [k], k <= max_output_size) of the boxes
    greedy NMS keeps, by decreasing score.

    boxes: [K, 4] float32 (y1, x1, y2, x2, any units); scores: [K] float32, finite.
    The same kernel through its padded form (NonMaxSuppressionV4), cut to the valid count here:
    TFLite's builtin NMS returns padded indices, and a converted ``non_max_suppression`` kept
    the padding (index 0 repeated as extra detections). Traced for TFLite
    (`mrcnn.ops.portable`), it takes a form that TFLite's kernel runs with these results.
    """
    if portable.active():
        return _nms_tflite(boxes, scores, max_output_size, iou_threshold)
    selected, valid = non_max_suppression_padded(boxes, scores, max_output_size, iou_threshold)
    return selected[:valid]


def non_max_suppression_padded(boxes, scores, max_output_size, iou_threshold):
    """``non_max_suppression`` with a static shape (XLA compiles it): (indices int32
    [max_output_size], valid count int32 scalar). Rows past the count are padding (index 0).

    A score of -inf keeps a box out altogether: it is neither selected nor suppresses others,
    as if it had been removed before the call.
    Traced in static shapes (`mrcnn.ops.portable.xla_static`), the boxes go in sorted by
    (score, index) with their ranks as scores: XLA's NMS orders equal scores otherwise than
    TensorFlow's kernel, which takes the lower index first.
    """
    if portable.static():
        order, boxes, ranked = _by_rank(boxes, scores)
        selected, valid = tf.raw_ops.NonMaxSuppressionV4(
            boxes=boxes, scores=ranked, max_output_size=max_output_size,
            iou_threshold=iou_threshold, score_threshold=float("-inf"),
            pad_to_max_output_size=True)
        return tf.gather(order, selected), valid
    return tf.raw_ops.NonMaxSuppressionV4(
        boxes=boxes, scores=scores, max_output_size=max_output_size,
        iou_threshold=iou_threshold, score_threshold=float("-inf"),
        pad_to_max_output_size=True)


def _nms_tflite(boxes, scores, max_output_size, iou_threshold):
    """`non_max_suppression` in a form TFLite's NMS kernel runs as TensorFlow's.

    Two differences of that kernel are worked round. Among equal scores TensorFlow takes the
    lower index first and TFLite's heap takes any: the boxes go in sorted by (score, index),
    with their ranks as scores, so no two are equal. And TFLite puts every selected box back in
    its queue (for soft NMS) and drops it when it meets itself, overlapping fully; a box of zero
    area overlaps nothing (IoU 0, TensorFlow's rule too), so it would be selected again and
    again: such boxes stay out (a score of -inf is under the kernel's threshold). As they
    neither suppress nor are suppressed, they join the selection afterwards, in rank order.
    """
    order, boxes, ranked = _by_rank(boxes, scores)
    flat = tf.equal(tf.abs(boxes[:, 2] - boxes[:, 0]) * tf.abs(boxes[:, 3] - boxes[:, 1]), 0.0)
    selected, valid = tf.raw_ops.NonMaxSuppressionV4(
        boxes=boxes, scores=tf.where(flat, float("-inf"), ranked),
        max_output_size=max_output_size, iou_threshold=iou_threshold,
        score_threshold=float("-inf"), pad_to_max_output_size=True)
    ranks = tf.concat([selected[:valid], tf.cast(tf.where(flat)[:, 0], tf.int32)], axis=0)
    ascending = -tf.math.top_k(-ranks, tf.size(ranks)).values
    return tf.gather(order, ascending[:max_output_size])


def _by_rank(boxes, scores):
    """(order, boxes[order], ranks): the boxes sorted by (score, index) and distinct scores
    that keep that order (0, -1, -2, ...; -inf stays -inf), for NMS kernels that order equal
    scores otherwise than TensorFlow's, which takes the lower index first."""
    count = scores.shape[0] if scores.shape[0] is not None else tf.size(scores)
    order = tf.math.top_k(scores, count).indices              # by score, ties by index
    rank = -tf.cast(tf.range(count), tf.float32)              # exact up to 2**24 boxes
    ranked = tf.where(tf.gather(scores, order) == float("-inf"), float("-inf"), rank)
    return order, tf.gather(boxes, order), ranked
