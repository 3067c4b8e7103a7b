"""Anchors computed inside the graph from the image shape: constants, never trainable variables.

The NumPy generator (``mrcnn.anchors``) stays the reference; this twin is tested against it.
"""

import math

import keras
import numpy as np
import tensorflow as tf


def pyramid_anchors_tf(image_shape, scales, ratios, strides, anchor_stride, feature_shapes=None):
    """Normalized anchors for a molded image, in ``mrcnn.anchors.generate_pyramid_anchors`` order.

    image_shape: (h, w) int tensor or tuple. scales: one scale per level (pixels); ratios:
    width/height ratios; strides: feature stride per level; anchor_stride: anchor spacing in
    feature cells. feature_shapes: optional [(fh, fw)] per level (default ceil(h / stride)).
    Returns: [A, 4] float32 normalized (y1, x1, y2, x2).
    """
    h = tf.cast(image_shape[0], tf.float32)
    w = tf.cast(image_shape[1], tf.float32)
    ratios = np.asarray(ratios, np.float32)
    levels = []
    for i, (scale, stride) in enumerate(zip(scales, strides)):
        if feature_shapes is not None:
            fh, fw = [tf.cast(v, tf.float32) for v in feature_shapes[i]]
        else:
            fh, fw = tf.math.ceil(h / stride), tf.math.ceil(w / stride)
        cy = tf.range(0.0, fh, anchor_stride, dtype=tf.float32) * stride
        cx = tf.range(0.0, fw, anchor_stride, dtype=tf.float32) * stride
        cy, cx = tf.meshgrid(cy, cx, indexing="ij")
        centers = tf.stack([tf.reshape(cy, [-1]), tf.reshape(cx, [-1])], axis=1)  # [P, 2]
        sizes = np.stack([scale / np.sqrt(ratios), scale * np.sqrt(ratios)], axis=1)  # [K, 2]
        sizes = tf.constant(sizes, tf.float32)
        lo = centers[:, None, :] - 0.5 * sizes[None]
        hi = centers[:, None, :] + 0.5 * sizes[None]
        levels.append(tf.reshape(tf.concat([lo, hi], axis=2), [-1, 4]))
    anchors = tf.concat(levels, axis=0)
    scale = tf.stack([h, w, h, w]) - 1.0
    return (anchors - tf.constant([0.0, 0.0, 1.0, 1.0])) / scale


@keras.saving.register_keras_serializable(package="mrcnn")
class AnchorsLayer(keras.layers.Layer):
    """Input: molded images [N, H, W, C]. Output: anchors [1, A, 4] normalized (no weights)."""

    def __init__(self, scales, ratios, strides, anchor_stride=1, **kwargs):
        super().__init__(**kwargs)
        self.scales = [float(s) for s in scales]
        self.ratios = [float(r) for r in ratios]
        self.strides = [int(s) for s in strides]
        self.anchor_stride = int(anchor_stride)

    def call(self, images):
        static = tuple(images.shape[1:3])
        if None in static:
            anchors = pyramid_anchors_tf(tf.shape(images)[1:3], self.scales, self.ratios,
                                         self.strides, self.anchor_stride)
            return anchors[None]
        # A static image shape (training, "square" inference) has fixed anchors: computed
        # eagerly by the same ops, they enter the graph as one constant instead of some 300 ops
        # that the trace would build and Grappler would fold back into that constant.
        with tf.init_scope():
            anchors = pyramid_anchors_tf(static, self.scales, self.ratios, self.strides,
                                         self.anchor_stride).numpy()
        return tf.constant(anchors[None])

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1:3]
        if h is None or w is None:
            return (1, None, 4)
        count = sum(math.ceil(math.ceil(h / s) / self.anchor_stride)
                    * math.ceil(math.ceil(w / s) / self.anchor_stride)
                    for s in self.strides) * len(self.ratios)
        return (1, count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(scales=self.scales, ratios=self.ratios, strides=self.strides,
                      anchor_stride=self.anchor_stride)
        return config
