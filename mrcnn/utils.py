"""Matterport's ``mrcnn.utils`` import path: re-exports of the NumPy helpers and `Dataset`.

``from mrcnn import utils; utils.resize_image(...)`` works as in Matterport. Importing this module
does not import TensorFlow (`batch_slice` imports it when called).
"""

from mrcnn.anchors import (  # noqa: F401
    compute_backbone_shapes,
    generate_anchors,
    generate_pyramid_anchors,
    get_anchors,
)
from mrcnn.dataset import Dataset, ImageLoadError, read_image  # noqa: F401
from mrcnn.download import (  # noqa: F401
    COCO_MODEL_SIZE,
    COCO_MODEL_URL,
    download_file,
    download_imagenet_weights,
    download_trained_weights,
    get_cache_dir,
)
from mrcnn.image import (  # noqa: F401
    expand_mask,
    minimize_mask,
    mold_image,
    resize,
    resize_image,
    resize_mask,
    to_rgb_uint8,
    unmold_image,
    unmold_mask,
)
from mrcnn.meta import compose_image_meta, parse_image_meta, parse_image_meta_graph  # noqa: F401
from mrcnn.metrics import (  # noqa: F401
    compute_ap,
    compute_ap_range,
    compute_matches,
    compute_recall,
    trim_zeros,
)
from mrcnn.ops.boxes_np import (  # noqa: F401
    apply_box_deltas,
    box_refinement,
    compute_iou,
    compute_overlaps,
    compute_overlaps_masks,
    decode_boxes_np,
    denorm_boxes,
    encode_boxes_np,
    extract_bboxes,
    non_max_suppression,
    norm_boxes,
)


# The public names, for ``from mrcnn.utils import *`` and the API reference (docs/api/utils.md).
__all__ = [
    "compute_backbone_shapes", "generate_anchors", "generate_pyramid_anchors", "get_anchors",
    "Dataset", "ImageLoadError", "read_image",
    "COCO_MODEL_SIZE", "COCO_MODEL_URL", "download_file", "download_imagenet_weights",
    "download_trained_weights", "get_cache_dir",
    "expand_mask", "minimize_mask", "mold_image", "resize", "resize_image", "resize_mask",
    "to_rgb_uint8", "unmold_image", "unmold_mask",
    "compose_image_meta", "parse_image_meta", "parse_image_meta_graph",
    "compute_ap", "compute_ap_range", "compute_matches", "compute_recall", "trim_zeros",
    "apply_box_deltas", "box_refinement", "compute_iou", "compute_overlaps",
    "compute_overlaps_masks", "decode_boxes_np", "denorm_boxes", "encode_boxes_np",
    "extract_bboxes", "non_max_suppression", "norm_boxes",
    "batch_slice",
]


def batch_slice(inputs, graph_fn, batch_size, names=None):
    """Run ``graph_fn`` on each item of a batch and stack the results (TensorFlow).

    inputs: a tensor or list of tensors, each with a leading batch axis of ``batch_size``.
    graph_fn: called as ``graph_fn(*[x[i] for x in inputs])`` for each ``i``; returns a tensor
        or a list/tuple of tensors whose shapes agree across items.
    names: optional names of the stacked outputs.
    Returns the stacked output(s): one tensor if ``graph_fn`` returns one, else a list.
    """
    import tensorflow as tf

    if not isinstance(inputs, list):
        inputs = [inputs]
    outputs = []
    for i in range(batch_size):
        output_slice = graph_fn(*[x[i] for x in inputs])
        if not isinstance(output_slice, (tuple, list)):
            output_slice = [output_slice]
        outputs.append(output_slice)
    outputs = list(zip(*outputs))
    if names is None:
        names = [None] * len(outputs)
    result = [tf.stack(list(o), axis=0, name=n) for o, n in zip(outputs, names)]
    if len(result) == 1:
        result = result[0]
    return result
