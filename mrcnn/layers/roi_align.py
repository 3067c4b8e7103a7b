"""Multi-level RoIAlign over the feature pyramid.

Axes: N images, R boxes per image, C channels. Boxes are normalized ``(y1, x1, y2, x2)``.
"""

import keras
import tensorflow as tf


def roi_levels(boxes, image_shape):
    """Pyramid level (2..5) of each box, by the FPN paper's rule (Matterport's form).

    A 224x224 box (in molded-image pixels) maps to P4; each halving or doubling of its scale moves
    one level down or up.
    boxes: [..., 4] normalized float32. image_shape: (h, w) of the molded image.
    Returns: int32 [...] levels in [2, 5].
    """
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    image_area = tf.cast(image_shape[0] * image_shape[1], tf.float32)
    # In normalized units a 224-pixel box has side 224 / sqrt(image_area).
    level = tf.math.log(tf.sqrt(h * w) / (224.0 / tf.sqrt(image_area))) / tf.math.log(2.0)
    level = 4 + tf.cast(tf.round(level), tf.int32)
    return tf.clip_by_value(level, 2, 5)


def pyramid_roi_align(boxes, feature_maps, image_shape, pool_size):
    """Crop-and-resize every box from the pyramid level its size selects.

    boxes: [N, R, 4] normalized float32 (zero rows are padding; they are pooled too).
    feature_maps: list of 4 tensors [N, h_l, w_l, C] for P2..P5.
    image_shape: (h, w) of the molded image, used for the level rule.
    pool_size: (ph, pw).
    Returns: [N, R, ph, pw, C] pooled features in the order of ``boxes``.
    """
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    shape = tf.shape(boxes)
    n, r = shape[0], shape[1]
    flat_boxes = tf.reshape(boxes, [-1, 4])
    box_image = tf.repeat(tf.range(n), r)
    levels = roi_levels(flat_boxes, image_shape)
    pooled, order = [], []
    for i, level in enumerate(range(2, 6)):
        ix = tf.cast(tf.where(tf.equal(levels, level))[:, 0], tf.int32)
        fmap = feature_maps[i]
        crops = tf.image.crop_and_resize(
            tf.cast(fmap, tf.float32) if fmap.dtype != tf.float32 else fmap,
            tf.gather(flat_boxes, ix), tf.gather(box_image, ix), pool_size, method="bilinear")
        pooled.append(tf.cast(crops, fmap.dtype))
        order.append(ix)
    pooled = tf.concat(pooled, axis=0)
    # Every box lands on exactly one level, so the concatenated indices are a permutation.
    restore = tf.math.invert_permutation(tf.concat(order, axis=0))
    pooled = tf.gather(pooled, restore)
    out_shape = tf.concat([[n, r], tf.shape(pooled)[1:]], axis=0)
    return tf.reshape(pooled, out_shape)


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """Keras layer over ``pyramid_roi_align``.

    Inputs: [boxes [N, R, 4] normalized, image_meta [N, META], P2, P3, P4, P5].
    Output: [N, R, pool_h, pool_w, C].
    """

    def __init__(self, pool_shape, **kwargs):
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(v) for v in pool_shape)

    def call(self, inputs):
        boxes, image_meta = inputs[0], inputs[1]
        # Every image of a batch is molded to the same shape; meta[4:6] holds it (h, w).
        image_shape = tf.cast(image_meta[0, 4:6], tf.float32)
        return pyramid_roi_align(boxes, list(inputs[2:6]), image_shape, self.pool_shape)

    def compute_output_shape(self, input_shapes):
        boxes, fmap = input_shapes[0], input_shapes[2]
        return (boxes[0], boxes[1]) + self.pool_shape + (fmap[-1],)

    def get_config(self):
        config = super().get_config()
        config["pool_shape"] = self.pool_shape
        return config
