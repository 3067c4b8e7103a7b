"""Fold the ROI axis into the batch axis and back.

The heads apply the same convolutions to every ROI. Matterport wrapped each layer in
TimeDistributed; folding [N, R, ...] into [N * R, ...] once runs the same weights (same names and
shapes, so weight files still load) as ordinary batched convolutions, which is faster.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="mrcnn")
class MergeRoiAxis(keras.layers.Layer):
    """[N, R, *rest] -> [N * R, *rest]."""

    def call(self, x):
        shape = tf.shape(x)
        return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))

    def compute_output_shape(self, input_shape):
        lead = None if None in input_shape[:2] else input_shape[0] * input_shape[1]
        return (lead,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn")
class SplitRoiAxis(keras.layers.Layer):
    """Inputs [x [N * R, *rest], reference [N, R, ...]] -> [N, R, *rest].

    ``squeeze=True`` also drops the two 1-sized spatial axes of a [N*R, 1, 1, C] tensor.
    """

    def __init__(self, squeeze=False, **kwargs):
        super().__init__(**kwargs)
        self.squeeze = bool(squeeze)

    def call(self, inputs):
        x, reference = inputs
        ref = tf.shape(reference)
        rest = tf.shape(x)[3:] if self.squeeze else tf.shape(x)[1:]
        return tf.reshape(x, tf.concat([ref[:2], rest], axis=0))

    def compute_output_shape(self, input_shapes):
        x, reference = input_shapes
        rest = tuple(x[3:]) if self.squeeze else tuple(x[1:])
        return tuple(reference[:2]) + rest

    def get_config(self):
        config = super().get_config()
        config["squeeze"] = self.squeeze
        return config
