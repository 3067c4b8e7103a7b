"""``import mrcnn.model as modellib``: the MaskRCNN class and the helpers Matterport's model.py had.

The implementation lives in focused modules; this package re-exports the old names so existing
scripts keep working.
"""

import logging

import numpy as np

from mrcnn.anchors import compute_backbone_shapes
from mrcnn.image import mold_image, unmold_image
from mrcnn.meta import compose_image_meta, parse_image_meta, parse_image_meta_graph
from mrcnn.model.core import CLASS_SPECIFIC_LAYERS, MaskRCNN


def log(text, array=None):
    """Print ``text`` and, for an array, its shape, min, max and dtype (Matterport's helper)."""
    if array is not None:
        array = np.asarray(array)
        text = text.ljust(25)
        if array.size:
            text += "shape: {:20}  min: {:10.5f}  max: {:10.5f}  {}".format(
                str(array.shape), float(array.min()), float(array.max()), array.dtype)
        else:
            text += "shape: {:20}  (empty)  {}".format(str(array.shape), array.dtype)
    print(text)


def load_image_gt(dataset, config, image_id, augmentation=None, use_mini_mask=None):
    """Image and ground truth of one data set image, molded for training (see mrcnn.training)."""
    from mrcnn.training.data import load_image_gt as _load
    return _load(dataset, config, image_id, augmentation=augmentation,
                 use_mini_mask=use_mini_mask)


logging.getLogger("mrcnn").addHandler(logging.NullHandler())

__all__ = ["CLASS_SPECIFIC_LAYERS", "MaskRCNN", "compose_image_meta", "compute_backbone_shapes",
           "load_image_gt", "log", "mold_image", "parse_image_meta", "parse_image_meta_graph",
           "unmold_image"]
