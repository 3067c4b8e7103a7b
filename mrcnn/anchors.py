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
           "get_anchors", "kmeans_1d", "suggest_anchors", "best_anchor_iou"]


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


# ---------------------------------------------------------------------------------------------
# Fitting anchors to a data set


def _lloyd_1d(values, centers, iterations):
    """Lloyd's rounds from ``centers``; returns (sorted centres, sum of squared distances)."""
    k = len(centers)
    for _ in range(int(iterations)):
        # With sorted centres the nearest one is found from the midpoints between neighbours.
        centers = np.sort(centers)
        labels = np.searchsorted(0.5 * (centers[1:] + centers[:-1]), values)
        sums = np.bincount(labels, weights=values, minlength=k)
        counts = np.bincount(labels, minlength=k)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
        if np.allclose(updated, centers, rtol=0, atol=1e-12):
            break
        centers = updated
    centers = np.sort(centers)
    labels = np.searchsorted(0.5 * (centers[1:] + centers[:-1]), values)
    return centers, float(np.sum((values - centers[labels]) ** 2))


def kmeans_1d(values, k, iterations=100, restarts=10, seed=0):
    """k-means on scalars: the best of several Lloyd runs (least sum of squared distances).

    The first run starts at the quantiles, the others from k-means++ starts drawn with
    ``seed``, so the result is deterministic. Restarts matter when one cluster holds most of the
    values: quantile starts then put several centres inside it and Lloyd's rounds cannot move
    them out.

    Args:
        values: 1-D array of N finite numbers (N >= 1).
        k: number of clusters, >= 1.
        iterations: at most this many assignment/update rounds per run.
        restarts: number of k-means++ runs besides the quantile run.
        seed: seed of the k-means++ draws.

    Returns:
        float64 [k] cluster centres, ascending. With fewer than ``k`` distinct values some
        centres repeat.
    """
    values = np.sort(np.asarray(values, np.float64).reshape(-1))
    k = int(k)
    if k < 1:
        raise ValueError(f"kmeans_1d: k must be >= 1, got {k}")
    if len(values) == 0:
        raise ValueError("kmeans_1d: no values to cluster")
    if not np.all(np.isfinite(values)):
        raise ValueError("kmeans_1d: values must be finite")
    best = _lloyd_1d(values, np.quantile(values, (np.arange(k) + 0.5) / k), iterations)
    rng = np.random.default_rng(seed)
    for _ in range(int(restarts)):
        # k-means++: each new centre drawn with probability proportional to the squared
        # distance to the nearest centre so far.
        centers = [values[rng.integers(len(values))]]
        for _ in range(k - 1):
            d2 = np.min((values[:, None] - np.asarray(centers)[None, :]) ** 2, axis=1)
            total = d2.sum()
            centers.append(values[rng.choice(len(values), p=d2 / total)] if total > 0
                           else values[rng.integers(len(values))])
        run = _lloyd_1d(values, np.asarray(centers), iterations)
        if run[1] < best[1] - 1e-12:
            best = run
    return best[0]


def suggest_anchors(boxes, num_scales=5, num_ratios=3, iterations=100):
    """Anchor scales and ratios that fit a set of boxes, by k-means in log space.

    An anchor of scale ``s`` and ratio ``r`` is ``s / sqrt(r)`` high and ``s * sqrt(r)`` wide
    (see `generate_anchors`), so a box of height ``h`` and width ``w`` is matched in shape by
    ``s = sqrt(h * w)`` and ``r = w / h``. The two are clustered separately because Matterport's
    anchors are a product: one scale per pyramid level times ratios shared by every level. Log
    space makes the distance relative (16 vs 32 px is as far apart as 128 vs 256 px), as IoU is.

    Args:
        boxes: [N, (y1, x1, y2, x2)] pixel boxes, in the coordinates of the network input (the
            molded image, after `mrcnn.image.resize_image`), since that is where anchors live.
            Boxes with a non-positive height or width are ignored.
        num_scales: number of scales, one per pyramid level (5 for P2..P6).
        num_ratios: number of width/height ratios.
        iterations: k-means rounds at most.

    Returns:
        ``(scales, ratios)``: float64 [num_scales] and [num_ratios], each ascending, so the
        smallest scale goes to the finest level (P2, stride 4) as in Matterport's defaults.

    Raises:
        ValueError: no box with a positive size.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    heights = boxes[:, 2] - boxes[:, 0]
    widths = boxes[:, 3] - boxes[:, 1]
    valid = (heights > 0) & (widths > 0)
    if not valid.any():
        raise ValueError(f"suggest_anchors: none of the {len(boxes)} boxes has a positive "
                         "height and width")
    heights, widths = heights[valid], widths[valid]
    log_scales = 0.5 * (np.log(heights) + np.log(widths))
    log_ratios = np.log(widths) - np.log(heights)
    scales = np.exp(kmeans_1d(log_scales, num_scales, iterations))
    ratios = np.exp(kmeans_1d(log_ratios, num_ratios, iterations))
    return scales, ratios


def best_anchor_iou(boxes, image_shape, scales, ratios, feature_strides, anchor_stride=1):
    """For each box, the highest IoU with any anchor of the pyramid the model would build.

    Anchors are placed exactly as `generate_pyramid_anchors` places them for an input of
    ``image_shape`` (level ``i``: scale ``scales[i]``, centres every
    ``feature_strides[i] * anchor_stride`` pixels from 0 over ``ceil(H / stride)`` x
    ``ceil(W / stride)`` cells), so the figure accounts for the grid spacing as well as the
    shapes. It is exact without building the whole pyramid: for anchors of one shape the IoU
    with a box only grows as the centres get closer along each axis, so the best anchor of each
    shape sits at the grid centre nearest the box centre.

    Args:
        boxes: [N, (y1, x1, y2, x2)] pixel boxes in the network-input image.
        image_shape: (H, W, ...) of the network input.
        scales: one anchor scale per level (pixels); ratios: width/height ratios.
        feature_strides: one stride per level (pixels), e.g. ``config.BACKBONE_STRIDES``.
        anchor_stride: anchors every this many feature-map cells.

    Returns:
        float64 [N], each in [0, 1] (0 for a box without area).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(scales) != len(feature_strides):
        raise ValueError(f"best_anchor_iou: {len(scales)} scales but {len(feature_strides)} "
                         "strides; give one scale per pyramid level")
    cy = 0.5 * (boxes[:, 0] + boxes[:, 2])
    cx = 0.5 * (boxes[:, 1] + boxes[:, 3])
    box_area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    best = np.zeros(len(boxes))
    for scale, stride in zip(scales, feature_strides):
        step = float(stride) * int(anchor_stride)
        rows = len(range(0, int(math.ceil(image_shape[0] / stride)), int(anchor_stride)))
        cols = len(range(0, int(math.ceil(image_shape[1] / stride)), int(anchor_stride)))
        ay = np.clip(np.round(cy / step), 0, rows - 1) * step
        ax = np.clip(np.round(cx / step), 0, cols - 1) * step
        for ratio in np.atleast_1d(np.asarray(ratios, np.float64)):
            h = float(scale) / math.sqrt(ratio)
            w = float(scale) * math.sqrt(ratio)
            inter_h = np.maximum(np.minimum(boxes[:, 2], ay + h / 2)
                                 - np.maximum(boxes[:, 0], ay - h / 2), 0)
            inter_w = np.maximum(np.minimum(boxes[:, 3], ax + w / 2)
                                 - np.maximum(boxes[:, 1], ax - w / 2), 0)
            inter = inter_h * inter_w
            union = box_area + h * w - inter
            best = np.maximum(best, np.divide(inter, union, out=np.zeros_like(inter),
                                              where=union > 0))
    return best
