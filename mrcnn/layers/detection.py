"""DetectionLayer: final boxes, classes and scores from the classifier head (inference only).

Axes: N images, R ROIs, C classes, D = max detections. Boxes are normalized ``(y1, x1, y2, x2)``.
"""

import keras
import numpy as np
import tensorflow as tf

from mrcnn.ops import portable
from mrcnn.ops.batching import map_images
from mrcnn.ops.boxes import (clip_boxes, decode_boxes, non_max_suppression,
                              non_max_suppression_padded)


def refine_detections(rois, probs, deltas, window, max_instances, min_confidence,
                      nms_threshold, std_dev):
    """Detections of one image.

    rois: [R, 4] normalized; probs: [R, C]; deltas: [R, C, 4] (divided by ``std_dev``);
    window: [4] normalized image area inside the padding.
    Returns: [max_instances, 6] float32 rows (y1, x1, y2, x2, class_id, score), sorted by score,
    zero-padded.

    Each ROI keeps its best class. Non-max suppression runs per class; it is done in one call by
    shifting each class's boxes to a disjoint region (boxes are within [0, 1], class k is moved by
    2k), which gives the same survivors as one NMS per class, already merged and ranked by score.
    """
    class_ids = tf.argmax(probs, axis=1, output_type=tf.int32)
    r = tf.range(tf.shape(probs)[0])
    idx = tf.stack([r, class_ids], axis=1)
    scores = tf.gather_nd(probs, idx)
    boxes = decode_boxes(rois, tf.gather_nd(deltas, idx), std_dev)
    boxes = clip_boxes(boxes, window)
    kept = (class_ids > 0) & (scores >= min_confidence)
    shifted = boxes + 2.0 * tf.cast(class_ids, tf.float32)[:, None]

    def rows(selected):
        return tf.concat([tf.gather(boxes, selected),
                          tf.cast(tf.gather(class_ids, selected), tf.float32)[:, None],
                          tf.gather(scores, selected)[:, None]], axis=1)

    if portable.static():
        # The same survivors: a score of -inf takes a box out of the NMS (see
        # non_max_suppression_padded), and the others keep their order.
        selected, valid = non_max_suppression_padded(
            shifted, tf.where(kept, scores, float("-inf")), max_instances, nms_threshold)
        return tf.where((tf.range(max_instances) < valid)[:, None], rows(selected), 0.0)
    keep = tf.where(kept)[:, 0]
    selected = tf.gather(keep, non_max_suppression(tf.gather(shifted, keep),
                                                   tf.gather(scores, keep), max_instances,
                                                   nms_threshold))
    out = rows(selected)
    return tf.pad(out, [[0, max_instances - tf.shape(out)[0]], [0, 0]])


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Keras layer over ``refine_detections``, batched.

    Inputs: [rois [N, R, 4], mrcnn_class [N, R, C], mrcnn_bbox [N, R, C, 4], image_meta [N, META]].
    Output: [N, max_instances, 6] (y1, x1, y2, x2, class_id, score), normalized coordinates.
    """

    def __init__(self, max_instances=100, min_confidence=0.7, nms_threshold=0.3,
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**kwargs)
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = [float(v) for v in np.asarray(bbox_std_dev).reshape(-1)]

    def call(self, inputs):
        rois, probs, deltas, meta = [tf.cast(t, tf.float32) for t in inputs]
        # meta layout: id(1) original shape(3) image shape(3) window(4) ...
        image_shape = meta[0, 4:6]
        scale = tf.concat([image_shape, image_shape], axis=0) - 1.0
        windows = (meta[:, 7:11] - tf.constant([0.0, 0.0, 1.0, 1.0])) / scale

        def one_image(args):
            return refine_detections(*args, self.max_instances, self.min_confidence,
                                     self.nms_threshold, self.bbox_std_dev)

        return map_images(one_image, (rois, probs, deltas, windows),
                          fn_output_signature=tf.TensorSpec([self.max_instances, 6], tf.float32))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.max_instances, 6)

    def get_config(self):
        config = super().get_config()
        config.update(max_instances=self.max_instances, min_confidence=self.min_confidence,
                      nms_threshold=self.nms_threshold, bbox_std_dev=self.bbox_std_dev)
        return config
