"""Image meta: the per-image attributes that travel with an image through the model.

Layout of the 1-D meta vector (Matterport's), ``12 + NUM_CLASSES`` values::

    [0]       image_id
    [1:4]     original_image_shape  (H, W, C) before resizing
    [4:7]     image_shape           (H, W, C) after resizing and padding
    [7:11]    window                (y1, x1, y2, x2) of the real image inside the padded one, pixels
    [11]      scale                 resize factor applied to the original image
    [12:]     active_class_ids      1 for classes of the image's source data set, else 0

Values are stored as float32, so image ids are exact only up to 2**24.
"""

import numpy as np

__all__ = ["compose_image_meta", "parse_image_meta", "parse_image_meta_graph", "META_FIELDS"]

#: (name, start, stop) of each field; ``stop`` None means "to the end".
META_FIELDS = (
    ("image_id", 0, 1),
    ("original_image_shape", 1, 4),
    ("image_shape", 4, 7),
    ("window", 7, 11),
    ("scale", 11, 12),
    ("active_class_ids", 12, None),
)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack image attributes into a float32 vector of ``12 + len(active_class_ids)`` values.

    image_id: int; original_image_shape, image_shape: (H, W, C); window: (y1, x1, y2, x2) pixels;
    scale: float; active_class_ids: [NUM_CLASSES] of 0/1.
    """
    parts = [
        np.reshape(np.asarray(image_id, np.float64), [1]),
        np.reshape(np.asarray(original_image_shape, np.float64), [-1]),
        np.reshape(np.asarray(image_shape, np.float64), [-1]),
        np.reshape(np.asarray(window, np.float64), [-1]),
        np.reshape(np.asarray(scale, np.float64), [1]),
        np.reshape(np.asarray(active_class_ids, np.float64), [-1]),
    ]
    for name, part, size in zip(("original_image_shape", "image_shape", "window"),
                                parts[1:4], (3, 3, 4)):
        if part.size != size:
            raise ValueError(f"compose_image_meta: {name} must have {size} values, "
                             f"got {part.size}")
    return np.concatenate(parts).astype(np.float32)


def parse_image_meta(meta):
    """Unpack meta vectors (NumPy).

    meta: [N, 12 + NUM_CLASSES] (a single 1-D vector is treated as N = 1).
    Returns a dict of arrays with a leading N axis: ``image_id`` int32 [N],
    ``original_image_shape`` int32 [N, 3], ``image_shape`` int32 [N, 3], ``window`` int32 [N, 4],
    ``scale`` float32 [N], ``active_class_ids`` int32 [N, NUM_CLASSES].
    """
    meta = np.asarray(meta)
    if meta.ndim == 1:
        meta = meta[None]
    if meta.ndim != 2 or meta.shape[1] < 13:
        raise ValueError(f"parse_image_meta: expected meta of shape [N, 12 + NUM_CLASSES], "
                         f"got {meta.shape}")
    return {
        "image_id": np.rint(meta[:, 0]).astype(np.int32),
        "original_image_shape": np.rint(meta[:, 1:4]).astype(np.int32),
        "image_shape": np.rint(meta[:, 4:7]).astype(np.int32),
        "window": np.rint(meta[:, 7:11]).astype(np.int32),
        "scale": meta[:, 11].astype(np.float32),
        "active_class_ids": np.rint(meta[:, 12:]).astype(np.int32),
    }


def parse_image_meta_graph(meta):
    """Unpack meta vectors inside a TensorFlow graph.

    meta: float tensor [N, 12 + NUM_CLASSES].
    Returns a dict of float32 tensors with the keys of `parse_image_meta` (no integer casts,
    as in Matterport): image_id [N], original_image_shape [N, 3], image_shape [N, 3],
    window [N, 4], scale [N], active_class_ids [N, NUM_CLASSES].
    """
    import tensorflow as tf

    meta = tf.convert_to_tensor(meta)
    return {
        "image_id": meta[:, 0],
        "original_image_shape": meta[:, 1:4],
        "image_shape": meta[:, 4:7],
        "window": meta[:, 7:11],
        "scale": meta[:, 11],
        "active_class_ids": meta[:, 12:],
    }
