"""Small wiring layers of the graph (registered, so the model serializes without Lambda layers)."""

import keras
import tensorflow as tf

from mrcnn.ops.boxes import norm_boxes_tf


@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(keras.layers.Layer):
    """Inputs [boxes [N, B, 4] pixels, images [N, H, W, C]] -> boxes normalized to the images."""

    def call(self, inputs):
        boxes, images = inputs
        return norm_boxes_tf(boxes, tf.shape(images)[1:3])

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionBoxes(keras.layers.Layer):
    """[N, D, 6] detections -> [N, D, 4] their normalized boxes."""

    def call(self, detections):
        return detections[..., :4]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (4,)


@keras.saving.register_keras_serializable(package="mrcnn")
class LeadingRois(keras.layers.Layer):
    """[N, T, ...] -> [N, count, ...]: the first ``count`` ROIs of each image."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, x):
        return x[:, :self.count]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config["count"] = self.count
        return config
