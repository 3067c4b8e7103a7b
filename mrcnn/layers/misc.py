"""Small wiring layers of the graph (registered, so the model serializes without Lambda layers)."""

import keras
import tensorflow as tf

from mrcnn.ops import portable
from mrcnn.ops.boxes import norm_boxes_tf


@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(keras.layers.Layer):
    """Inputs [boxes [N, B, 4] pixels, images [N, H, W, C]] -> boxes normalized to the images."""

    def call(self, inputs):
        boxes, images = inputs
        return norm_boxes_tf(boxes, tf.shape(images)[1:3])

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


def leading_row_count(real, cap=None):
    """The number of leading rows that hold every real row of every image: the largest count of
    True values in a row of ``real`` ([N, R] bool, real rows first in each image), at least 1
    (oneDNN's CPU convolution mishandles an empty batch, see DetectionBoxes) and at most ``cap``.
    Returns a scalar int32 tensor."""
    n = tf.reduce_max(tf.reduce_sum(tf.cast(real, tf.int32), axis=1))
    if cap is not None:
        n = tf.minimum(n, cap)
    return tf.maximum(n, 1)


def leading_rows(x, count):
    """[N, T, ...] -> [N, count, ...]: the first ``count`` rows of each image, zero rows appended
    when T < count; the result has a static row count."""
    x = x[:, :count]
    pad = count - tf.shape(x)[1]
    paddings = tf.concat([[[0, 0], [0, pad]], tf.zeros([tf.rank(x) - 2, 2], tf.int32)], 0)
    out = tf.pad(x, paddings)
    # A static annotation, not an EnsureShape op (TFLite has none).
    out.set_shape((x.shape[0], count) + tuple(x.shape[2:]))
    return out


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionBoxes(keras.layers.Layer):
    """[N, D, 6] detections -> [N, n, 4] normalized boxes of their first n rows.

    n is the largest number of real detections (class id > 0) of any image in the batch. The
    DetectionLayer sorts detections by score and zero-pads the tail, so rows past n are padding
    in every image: the mask head, the costliest part of inference after the backbone, then runs
    on the detections alone instead of on all D rows. At least one row is kept (n >= 1), a zero
    box when nothing was detected: oneDNN's CPU convolution returns a wrongly shaped result for
    an empty batch (TensorFlow 2.21), and one row costs next to nothing.
    """

    def call(self, detections):
        if portable.static():
            return detections[..., :4]  # all D rows, a static shape (XLA)
        return detections[:, :leading_row_count(detections[..., 4] > 0), :4]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, 4)


@keras.saving.register_keras_serializable(package="mrcnn")
class LeadingRois(keras.layers.Layer):
    """[N, T, ...] -> [N, count, ...]: the first ``count`` ROIs of each image, zero rows
    appended when T < count."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, x):
        return leading_rows(x, self.count)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config["count"] = self.count
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class PositiveRois(keras.layers.Layer):
    """Inputs [rois [N, T, 4], target_class_ids [N, T]] -> rois [N, k, 4]: the leading rows that
    hold every image's positive ROIs (class id > 0), at most ``count``.

    DetectionTargetLayer puts each image's positives first (at most ``count`` of them), and the
    mask loss only reads positive rows, so the mask head need not run on more: k is the largest
    number of positives of any image in the batch (at least one row). Matterport's head runs on
    all T rows; early in training, or on images with few objects, most of those are negatives.
    Every mask head row is computed independently of the others only while its batch norm is
    frozen, which is when the graph uses this layer (TRAIN_BN False). Under
    ``portable.xla_static()`` the shape stays static: the first ``count`` rows.
    """

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.count = int(count)

    def call(self, inputs):
        rois, class_ids = inputs
        if portable.static():
            return leading_rows(rois, self.count)
        return rois[:, :leading_row_count(class_ids > 0, self.count)]

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], None, input_shapes[0][2])

    def get_config(self):
        config = super().get_config()
        config["count"] = self.count
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class Upsample2x(keras.layers.Layer):
    """Nearest-neighbour 2x upsampling, [N, H, W, C] -> [N, 2H, 2W, C].

    The same values as ``keras.layers.UpSampling2D(2)``, which lowers to ``tf.repeat`` (a gather,
    with a scatter for its gradient); broadcasting then reshaping is a copy forward and a plain
    reduction backward, several times cheaper on the 256x256 P2 maps of a 1024 px image.
    """

    def call(self, x):
        shape = tf.shape(x)
        n, h, w = shape[0], shape[1], shape[2]
        c = x.shape[-1] if x.shape[-1] is not None else shape[3]
        # A reshape rather than x[:, :, None, :, None, :]: TFLite slices have at most 5 axes.
        y = tf.broadcast_to(tf.reshape(x, [n, h, 1, w, 1, c]), [n, h, 2, w, 2, c])
        return tf.reshape(y, [n, 2 * h, 2 * w, c])

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, c)
