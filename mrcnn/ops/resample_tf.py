"""TensorFlow twins of ``mrcnn.ops.resample_np``: Matterport's molding and mask pasting inside a
graph, for exported models (``mrcnn.export``) that take raw images.

The arithmetic is SciPy's, in float64 and in its order (four taps, ``value * wy * wx``, summed
from 0), so results equal the NumPy path: images to the grey level, masks to the pixel. Shapes
are dynamic; images are ``[H, W, C]`` ``uint8``, boxes pixel ``(y1, x1, y2, x2)``.
"""

import tensorflow as tf

__all__ = ["linear_taps_tf", "resize_image_uint8_tf", "paste_mask_tf"]


def linear_taps_tf(n_in, n_out):
    """`resample_np.linear_taps` in TF: (i0 int32 [n_out], w0, w1 float64 [n_out])."""
    zoom = tf.cast(n_in, tf.float64) / tf.cast(n_out, tf.float64)
    coord = (tf.range(tf.cast(n_out, tf.float64), dtype=tf.float64) + 0.5) * zoom - 0.5
    start = tf.floor(coord)
    w0 = 1.0 - (coord - start)
    w1 = 1.0 - w0
    return tf.cast(start, tf.int32), w0, w1


def _four_taps(padded, ry, wy0, wy1, cx, wx0, wx1):
    """SciPy's order-1 sum on ``padded`` [h + 2, w + 2, ...] (one zero sample around), for row
    taps ``ry`` [oh] and column taps ``cx`` [ow] already shifted into the border: [oh, ow, ...]."""
    rows0, rows1 = tf.gather(padded, ry, axis=0), tf.gather(padded, ry + 1, axis=0)
    extra = [1] * (len(padded.shape) - 2)
    wy0 = tf.reshape(wy0, [-1, 1] + extra)
    wy1 = tf.reshape(wy1, [-1, 1] + extra)
    wx0 = tf.reshape(wx0, [1, -1] + extra)
    wx1 = tf.reshape(wx1, [1, -1] + extra)
    t = tf.gather(rows0, cx, axis=1) * wy0 * wx0
    t = t + tf.gather(rows0, cx + 1, axis=1) * wy0 * wx1
    t = t + tf.gather(rows1, cx, axis=1) * wy1 * wx0
    t = t + tf.gather(rows1, cx + 1, axis=1) * wy1 * wx1
    return t


def resize_image_uint8_tf(image, out_h, out_w):
    """Matterport's ``resize(image, (out_h, out_w), preserve_range=True).astype(uint8)``.

    image: uint8 [H, W, C]. Returns uint8 [out_h, out_w, C]: bilinear at pixel centers, borders
    blended with black, clipped to the image's range, truncated.
    """
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    ry, wy0, wy1 = linear_taps_tf(h, out_h)
    cx, wx0, wx1 = linear_taps_tf(w, out_w)
    padded = tf.pad(tf.cast(image, tf.float64), [[1, 1], [1, 1], [0, 0]])
    out = _four_taps(padded, ry + 1, wy0, wy1, cx + 1, wx0, wx1)
    # skimage clips to the input's range; with uint8 input the black border is never kept
    # outside it (see resample_np._clip_bounds).
    lo = tf.cast(tf.reduce_min(image), tf.float64)
    hi = tf.cast(tf.reduce_max(image), tf.float64)
    return tf.cast(tf.clip_by_value(out, lo, hi), tf.uint8)


def paste_mask_tf(mask, box, height, width):
    """Matterport's ``unmold_mask`` for one float32 mask [mh, mw] and pixel box [4] (int32):
    bool [height, width], ``resize(mask, box size) >= 0.5`` inside the box, False elsewhere.
    The part of the box outside the image is dropped."""
    y1, x1, y2, x2 = box[0], box[1], box[2], box[3]
    bh, bw = tf.maximum(y2 - y1, 1), tf.maximum(x2 - x1, 1)
    mh, mw = tf.shape(mask)[0], tf.shape(mask)[1]
    ry, wy0, wy1 = linear_taps_tf(mh, bh)
    cx, wx0, wx1 = linear_taps_tf(mw, bw)
    padded = tf.pad(tf.cast(mask, tf.float64), [[1, 1], [1, 1]])
    values = tf.cast(_four_taps(padded, ry + 1, wy0, wy1, cx + 1, wx0, wx1), mask.dtype)
    # skimage clips to the mask's range (it widens the range to 0 only for an all-negative
    # mask, which is all below 0.5 either way).
    inside = tf.clip_by_value(values, tf.reduce_min(mask), tf.reduce_max(mask)) >= 0.5

    def place():
        # The [bh, bw] box into the image, cropping what lies outside it.
        top, left = tf.maximum(y1, 0), tf.maximum(x1, 0)
        bottom, right = tf.minimum(y2, height), tf.minimum(x2, width)
        part = inside[top - y1:bottom - y1, left - x1:right - x1]
        full = tf.pad(part, [[top, height - bottom], [left, width - right]])
        return tf.reshape(full, [height, width])

    empty = ((y2 <= y1) | (x2 <= x1) | (tf.minimum(y2, height) <= tf.maximum(y1, 0))
             | (tf.minimum(x2, width) <= tf.maximum(x1, 0)))
    return tf.cond(empty, lambda: tf.zeros([height, width], tf.bool), place)
