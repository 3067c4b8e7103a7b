"""ProposalLayer: turn RPN scores and deltas into a fixed number of ROIs per image.

Axes: N images, A anchors, P proposals. Boxes are normalized ``(y1, x1, y2, x2)``.
"""

import keras
import numpy as np
import tensorflow as tf

from mrcnn.ops import portable
from mrcnn.ops.batching import map_images
from mrcnn.ops.boxes import (clip_boxes, decode_boxes, non_max_suppression,
                              non_max_suppression_padded)


def nms_padded(boxes, scores, max_output, iou_threshold):
    """Greedy NMS of one image, zero-padded to ``max_output`` rows.

    boxes: [K, 4] float32; scores: [K]. Returns (boxes [max_output, 4], scores [max_output],
    indices [max_output] int32 with -1 for padding).
    """
    if portable.static():
        keep, valid = non_max_suppression_padded(boxes, scores, max_output, iou_threshold)
        live = tf.range(max_output) < valid
        return (tf.where(live[:, None], tf.gather(boxes, keep), 0.0),
                tf.where(live, tf.gather(scores, keep), 0.0), tf.where(live, keep, -1))
    keep = non_max_suppression(boxes, scores, max_output, iou_threshold)
    pad = max_output - tf.shape(keep)[0]
    kept_boxes = tf.pad(tf.gather(boxes, keep), [[0, pad], [0, 0]])
    kept_scores = tf.pad(tf.gather(scores, keep), [[0, pad]])
    keep = tf.pad(keep, [[0, pad]], constant_values=-1)
    return kept_boxes, kept_scores, keep


def generate_proposals(rpn_probs, rpn_deltas, anchors, proposal_count, nms_threshold,
                       pre_nms_limit, std_dev):
    """Top-scoring anchors, refined by their deltas, clipped to the image, then NMS.

    rpn_probs: [N, A, 2]; rpn_deltas: [N, A, 4] (divided by ``std_dev``);
    anchors: [N or 1, A, 4] normalized.
    Returns: proposals [N, proposal_count, 4] normalized, sorted by score, zero-padded.
    """
    scores = rpn_probs[..., 1]
    n = tf.shape(scores)[0]
    k = tf.minimum(pre_nms_limit, tf.shape(anchors)[1])
    top_scores, ix = tf.math.top_k(scores, k=k, sorted=True)
    deltas = tf.gather(rpn_deltas, ix, batch_dims=1)
    anchors = tf.broadcast_to(anchors, tf.concat([[n], tf.shape(anchors)[1:]], axis=0))
    pre_anchors = tf.gather(anchors, ix, batch_dims=1)
    boxes = decode_boxes(pre_anchors, deltas, std_dev)
    boxes = clip_boxes(boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))

    def one_image(args):
        b, s = args
        return nms_padded(b, s, proposal_count, nms_threshold)[0]

    proposals = map_images(one_image, (boxes, top_scores),
                           fn_output_signature=tf.TensorSpec([proposal_count, 4], tf.float32))
    return proposals


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Keras layer over ``generate_proposals``.

    Inputs: [rpn_probs [N, A, 2], rpn_bbox [N, A, 4], anchors [N or 1, A, 4] normalized].
    Output: [N, proposal_count, 4] normalized proposals, zero-padded.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit=6000,
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.bbox_std_dev = [float(v) for v in np.asarray(bbox_std_dev).reshape(-1)]

    def call(self, inputs):
        probs, deltas, anchors = inputs
        probs = tf.cast(probs, tf.float32)
        deltas = tf.cast(deltas, tf.float32)
        return tf.stop_gradient(generate_proposals(
            probs, deltas, tf.cast(anchors, tf.float32), self.proposal_count,
            self.nms_threshold, self.pre_nms_limit, self.bbox_std_dev))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(proposal_count=self.proposal_count, nms_threshold=self.nms_threshold,
                      pre_nms_limit=self.pre_nms_limit, bbox_std_dev=self.bbox_std_dev)
        return config
