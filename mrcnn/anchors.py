"""Anchor boxes (NumPy).

Anchors are pixel boxes ``(y1, x1, y2, x2)`` centred on feature-map cells. Level ``i`` of the
pyramid (P2..P6) has cells every ``BACKBONE_STRIDES[i]`` pixels and anchors of side
``RPN_ANCHOR_SCALES[i]`` (for ratio 1) in each of ``RPN_ANCHOR_RATIOS`` (width / height).
"""

import functools
import math

import numpy as np

from mrcnn.ops.boxes_np import norm_boxes

__all__ = ["generate_anchors", "generate_pyramid_anchors", "compute_backbone_shapes",
           "get_anchors"]


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one feature map.

    scales: anchor side(s) in pixels, a number or 1-D array; ratios: width/height ratios, 1-D;
    shape: (rows, cols) of the feature map; feature_stride: pixels between cells;
    anchor_stride: place anchors every ``anchor_stride`` cells.
    Anchors are centred on ``(row * feature_stride, col * feature_stride)`` with height
    ``scale / sqrt(ratio)`` and width ``scale * sqrt(ratio)``.
    Returns float32 [rows' * cols' * len(scales) * len(ratios), 4] pixel boxes, ordered by
    position (row-major), then by ratio, then by scale (Matterport's order).
    """
    scales, ratios = np.meshgrid(np.asarray(scales, np.float64), np.asarray(ratios, np.float64))
    scales = scales.reshape(-1)
    ratios = ratios.reshape(-1)
    heights = scales / np.sqrt(ratios)  # [K]
    widths = scales * np.sqrt(ratios)

    shifts_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    shifts_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    # Positions row-major: [P] with P = len(shifts_y) * len(shifts_x).
    centers_y = np.repeat(shifts_y, len(shifts_x)).astype(np.float64)
    centers_x = np.tile(shifts_x, len(shifts_y)).astype(np.float64)

    cy = centers_y[:, None]  # [P, 1] against [K] sizes -> [P, K]
    cx = centers_x[:, None]
    boxes = np.stack([cy - 0.5 * heights, cx - 0.5 * widths,
                      cy + 0.5 * heights, cx + 0.5 * widths], axis=-1)
    return boxes.reshape(-1, 4).astype(np.float32)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of every pyramid level, concatenated (P2 first).

    scales: one anchor scale per level; ratios: width/height ratios shared by all levels;
    feature_shapes: [L, 2] (rows, cols) per level; feature_strides: [L]; anchor_stride: int.
    Returns float32 [A, 4] pixel boxes.
    """
    if not (len(scales) == len(feature_shapes) == len(feature_strides)):
        raise ValueError(f"generate_pyramid_anchors: {len(scales)} scales, "
                         f"{len(feature_shapes)} feature shapes and {len(feature_strides)} "
                         "strides; give one of each per pyramid level")
    anchors = [generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i],
                                anchor_stride) for i in range(len(scales))]
    return np.concatenate(anchors, axis=0)


def compute_backbone_shapes(config, image_shape):
    """Feature-map (rows, cols) of each pyramid level for an input of ``image_shape``.

    With a callable ``config.BACKBONE`` this is ``config.COMPUTE_BACKBONE_SHAPE(image_shape)``;
    otherwise ``[ceil(H / stride), ceil(W / stride)]`` for each of ``config.BACKBONE_STRIDES``.
    Returns int [L, 2].
    """
    if callable(config.BACKBONE):
        return np.asarray(config.COMPUTE_BACKBONE_SHAPE(image_shape))
    return np.array([[int(math.ceil(image_shape[0] / stride)),
                      int(math.ceil(image_shape[1] / stride))]
                     for stride in config.BACKBONE_STRIDES])


def get_anchors(config, image_shape):
    """Normalized anchors of the whole pyramid for an input of ``image_shape`` (H, W, ...).

    Cached per image size and anchor settings. Returns a read-only float32 [A, 4] array of
    normalized ``(y1, x1, y2, x2)`` boxes (see `mrcnn.ops.boxes_np.norm_boxes`); copy it before
    changing it.
    """
    backbone_shapes = compute_backbone_shapes(config, image_shape)
    return _cached_anchors(
        (int(image_shape[0]), int(image_shape[1])),
        tuple(float(s) for s in config.RPN_ANCHOR_SCALES),
        tuple(float(r) for r in config.RPN_ANCHOR_RATIOS),
        tuple(tuple(int(v) for v in s) for s in backbone_shapes),
        tuple(int(s) for s in config.BACKBONE_STRIDES),
        int(config.RPN_ANCHOR_STRIDE),
    )


@functools.lru_cache(maxsize=16)
def _cached_anchors(image_hw, scales, ratios, backbone_shapes, strides, anchor_stride):
    anchors = generate_pyramid_anchors(scales, ratios, backbone_shapes, strides, anchor_stride)
    anchors = norm_boxes(anchors, image_hw)
    anchors.flags.writeable = False
    return anchors
