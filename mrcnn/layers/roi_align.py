"""Multi-level RoIAlign over the feature pyramid.

Axes: N images, R boxes per image, C channels. Boxes are normalized ``(y1, x1, y2, x2)``.
"""

import keras
import numpy as np
import tensorflow as tf

from mrcnn.ops import portable


def _bilinear_taps(image_shape, boxes, box_indices, crop_size):
    """Where ``tf.image.crop_and_resize`` (bilinear) samples, as TensorFlow's kernel computes it.

    image_shape: [4] int32 (B, H, W, C). boxes: [n, 4] normalized. box_indices: int32 [n].
    Returns rows0, rows1 (int32 [n, ch, 1]: flat row of the upper and lower neighbours in an
    image reshaped to [B*H*W, C], column not added), cols0, cols1 (int32 [n, 1, cw]), y_lerp
    [n, ch, 1, 1], x_lerp [n, 1, cw, 1] and valid [n, ch, cw, 1] (0 where the sample falls
    outside the image, whose crop value is the extrapolation value 0).

    Written for few graph ops (one split, expand_dims and NumPy constants rather than slices):
    the training step traces this in eight crops' gradients.
    """
    ch, cw = int(crop_size[0]), int(crop_size[1])
    _, h, w, _ = tf.unstack(image_shape)
    hm1, wm1 = h - 1, w - 1
    hm1_f, wm1_f = tf.cast(hm1, tf.float32), tf.cast(wm1, tf.float32)
    y1, x1, y2, x2 = tf.split(boxes, 4, axis=1)                # [n, 1] each

    def positions(lo, hi, size_m1, count):
        if count > 1:
            step = (hi - lo) * size_m1 / float(count - 1)
            return lo * size_m1 + np.arange(count, dtype=np.float32)[None, :] * step
        return 0.5 * (lo + hi) * size_m1

    in_y = positions(y1, y2, hm1_f, ch)                        # [n, ch]
    in_x = positions(x1, x2, wm1_f, cw)                        # [n, cw]
    in_y3, in_x3 = tf.expand_dims(in_y, 2), tf.expand_dims(in_x, 1)   # [n, ch, 1], [n, 1, cw]
    valid = tf.expand_dims(tf.cast((in_y3 >= 0.0) & (in_y3 <= hm1_f), tf.float32)
                           * tf.cast((in_x3 >= 0.0) & (in_x3 <= wm1_f), tf.float32), 3)
    top, left = tf.floor(in_y3), tf.floor(in_x3)
    y_lerp = tf.expand_dims(in_y3 - top, 3)
    x_lerp = tf.expand_dims(in_x3 - left, 3)

    def index(v, limit_m1):
        return tf.minimum(tf.maximum(tf.cast(v, tf.int32), 0), limit_m1)

    y0, y1i = index(top, hm1), index(tf.math.ceil(in_y3), hm1)
    x0, x1i = index(left, wm1), index(tf.math.ceil(in_x3), wm1)
    base = tf.reshape(tf.cast(box_indices, tf.int32) * h, [-1, 1, 1])
    rows0, rows1 = (base + y0) * w, (base + y1i) * w          # [n, ch, 1]
    return rows0, rows1, x0, x1i, y_lerp, x_lerp, valid


def gather_crop_and_resize(image, boxes, box_indices, crop_size):
    """``tf.image.crop_and_resize`` (bilinear, extrapolation 0) out of gathers and arithmetic.

    TFLite has no builtin CropAndResize; this form uses only builtin ops (GATHER, FLOOR, ...),
    so a converted model runs in any TFLite interpreter. It follows TensorFlow's kernel step for
    step (the same sample positions, the same lerp order in float32), so both give the same
    numbers eagerly; in a compiled graph, where Grappler may fuse or reorder the arithmetic,
    they agree to float32 rounding (a few 1e-6).
    image: [B, H, W, C] float32. boxes: [n, 4] normalized (y1, x1, y2, x2).
    box_indices: int32 [n], the image of each box. crop_size: (ch, cw) Python ints.
    Returns: [n, ch, cw, C] float32.
    """
    shape = tf.shape(image)
    rows0, rows1, x0, x1i, y_lerp, x_lerp, valid = _bilinear_taps(
        shape, boxes, box_indices, crop_size)
    flat = tf.reshape(image, tf.stack([shape[0] * shape[1] * shape[2], shape[3]]))

    def pick(rows, cols):
        return tf.gather(flat, rows + cols)   # [n, ch, cw, C]

    top_left, top_right = pick(rows0, x0), pick(rows0, x1i)
    bottom_left, bottom_right = pick(rows1, x0), pick(rows1, x1i)
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    return (upper + (lower - upper) * y_lerp) * valid


def crop_and_resize_summed_grad(image, boxes, box_indices, crop_size):
    """``tf.image.crop_and_resize`` (bilinear) whose gradient to ``image`` loses no update.

    TensorFlow's CPU kernel for that gradient (CropAndResizeGradImage) splits the boxes among
    threads that add into the same output without synchronization, so where boxes of two threads
    sample the same pixels some additions are lost: in a tiny model's training step, gradients
    of the FPN and backbone then differed by up to 8% from one run to the next (unless op
    determinism is on, which serializes it). This gradient adds every sample's four bilinear
    shares with one ``scatter_nd``, whose CPU kernel sums duplicate indices on one thread.
    Forward values are TensorFlow's kernel's; there is no gradient to the boxes (ROI align stops
    it, as Matterport's does).
    image: [B, H, W, C] float32. boxes: [n, 4] normalized. box_indices: int32 [n].
    Returns: [n, ch, cw, C] float32.
    """
    @tf.custom_gradient
    def crop(image):
        def grad(dy):
            shape = tf.shape(image)
            rows0, rows1, x0, x1i, y_lerp, x_lerp, valid = _bilinear_taps(
                shape, boxes, box_indices, crop_size)
            dy = dy * valid
            upper, lower = dy * (1.0 - y_lerp), dy * y_lerp
            updates = tf.concat([upper * (1.0 - x_lerp), upper * x_lerp,
                                 lower * (1.0 - x_lerp), lower * x_lerp], axis=0)
            where = tf.concat([rows0 + x0, rows0 + x1i, rows1 + x0, rows1 + x1i], axis=0)
            channels = shape[3:]
            summed = tf.scatter_nd(tf.reshape(where, [-1, 1]),
                                   tf.reshape(updates, tf.concat([[-1], channels], 0)),
                                   tf.concat([[tf.reduce_prod(shape[:3])], channels], 0))
            return tf.reshape(summed, shape)
        return tf.image.crop_and_resize(image, boxes, box_indices, crop_size), grad

    return crop(image)


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


def pyramid_roi_align(boxes, feature_maps, image_shape, pool_size, training=False):
    """Crop-and-resize every box from the pyramid level its size selects.

    boxes: [N, R, 4] normalized float32 (zero rows are padding; they are pooled too).
    feature_maps: list of 4 tensors [N, h_l, w_l, C] for P2..P5.
    image_shape: (h, w) of the molded image, used for the level rule.
    pool_size: (ph, pw).
    training: crops take ``crop_and_resize_summed_grad``'s gradient (no lost updates).
    Returns: [N, R, ph, pw, C] pooled features in the order of ``boxes``.
    """
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    shape = tf.shape(boxes)
    n, r = shape[0], shape[1]
    flat_boxes = tf.reshape(boxes, [-1, 4])
    box_image = tf.repeat(tf.range(n), r)
    levels = roi_levels(flat_boxes, image_shape)
    if portable.gathered_crops():
        crop = gather_crop_and_resize
    else:
        crop = crop_and_resize_summed_grad if training else tf.image.crop_and_resize
    if portable.static():
        # Static shapes (XLA): every box is pooled from every level, and each keeps its own
        # level's crop. Four times the crops, which cost little beside the heads.
        pooled = None
        for i, level in enumerate(range(2, 6)):
            fmap = feature_maps[i]
            crops = tf.cast(crop(tf.cast(fmap, tf.float32), flat_boxes, box_image, pool_size),
                            fmap.dtype)
            pooled = crops if pooled is None else tf.where(
                tf.equal(levels, level)[:, None, None, None], crops, pooled)
        return tf.reshape(pooled, tf.concat([[n, r], tf.shape(pooled)[1:]], axis=0))
    pooled, order = [], []
    for i, level in enumerate(range(2, 6)):
        ix = tf.cast(tf.where(tf.equal(levels, level))[:, 0], tf.int32)
        fmap = feature_maps[i]
        crops = crop(tf.cast(fmap, tf.float32) if fmap.dtype != tf.float32 else fmap,
                     tf.gather(flat_boxes, ix), tf.gather(box_image, ix), pool_size)
        pooled.append(tf.cast(crops, fmap.dtype))
        order.append(ix)
    pooled = tf.concat(pooled, axis=0)
    # Every box lands on exactly one level, so the concatenated indices are a permutation; its
    # inverse by a scatter (TFLite has no InvertPermutation).
    order = tf.concat(order, axis=0)
    restore = tf.scatter_nd(order[:, None], tf.range(tf.size(order)), tf.shape(order))
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

    def call(self, inputs, training=None):
        boxes, image_meta = inputs[0], inputs[1]
        # Every image of a batch is molded to the same shape; meta[4:6] holds it (h, w).
        image_shape = tf.cast(image_meta[0, 4:6], tf.float32)
        return pyramid_roi_align(boxes, list(inputs[2:6]), image_shape, self.pool_shape,
                                 training=bool(training))

    def compute_output_shape(self, input_shapes):
        boxes, fmap = input_shapes[0], input_shapes[2]
        return (boxes[0], boxes[1]) + self.pool_shape + (fmap[-1],)

    def get_config(self):
        config = super().get_config()
        config["pool_shape"] = self.pool_shape
        return config
