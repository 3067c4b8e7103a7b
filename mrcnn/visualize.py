"""Plotting helpers for images, instances, detections, weights and training curves.

Matplotlib (plus scikit-image for contours and resizing) only: importing this module never
imports TensorFlow or Keras, so it can be used in light environments and headless processes.

Conventions
-----------
- Images are ``[H, W, 3]`` RGB with values in ``0..255`` (``uint8`` or any numeric dtype);
  2-D grayscale and ``[H, W, 1]`` images are repeated to three channels, RGBA drops alpha.
- Boxes are ``[N, (y1, x1, y2, x2)]`` in pixels, ``(y2, x2)`` one past the last pixel inside.
- Instance masks are ``bool`` ``[H, W, N]`` (numeric masks: nonzero means inside).
- Colors are anything matplotlib understands; tuples hold components in ``0..1``.

Figures
-------
Every plotting function accepts ``ax`` (an Axes, or a sequence of Axes for the grid functions)
and returns the matplotlib ``Figure``. When a function creates its own figure and the backend
is interactive it calls ``plt.show()`` as Matterport did; under a non-interactive backend such as
Agg it never does, and the caller owns the figure (``plt.close(fig)`` when done). In a notebook
end the call with ``;`` so the returned Figure is not displayed a second time.

Functions
---------
random_colors(N, bright=True)
    ``N`` distinct RGB tuples in random order.
apply_mask(image, mask, color, alpha=0.5)
    A copy of ``image`` with ``mask`` blended in ``color``.
display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None, ax=None)
    A grid of images.
display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="",
                  figsize=(16, 16), ax=None, show_mask=True, show_bbox=True, colors=None,
                  captions=None)
    Instances as masks, mask contours, dashed boxes and captions.
display_differences(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                    pred_mask, class_names, title="", ax=None, show_mask=True, show_box=True,
                    iou_threshold=0.5, score_threshold=0.5)
    Ground truth (green) and predictions (red, captioned "score / IoU") on one image.
draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10, ax=None)
    Regions of interest, their refinements and their masks.
draw_box(image, box, color)
    A copy of ``image`` with a 2-pixel box outline burnt in.
display_top_masks(image, mask, class_ids, class_names, limit=4, ax=None)
    The image and the masks of its ``limit`` most prominent classes.
plot_precision_recall(AP, precisions, recalls, ax=None)
    A precision-recall curve.
plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names, threshold=0.5,
              ax=None)
    The IoU matrix between predictions and ground truth, marking matches.
draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None, visibilities=None,
           title="", ax=None)
    Boxes, refined boxes, masks and captions (anchors, proposals, detections).
display_table(table)
    An HTML table in a Jupyter kernel, a plain text table elsewhere; returns what it showed.
display_weight_stats(model)
    Per-weight shape, min, max and std of a Keras model; returns the table rows.
plot_history(history, metrics=None, ax=None)
    Training and validation curves, one subplot per loss.
save_figure(fig, path, **savefig_kwargs)
    Saves a figure, creating parent folders.
"""

import colorsys
import csv
import html
import math
import os
import random
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import matplotlib
import matplotlib.pyplot as plt
from matplotlib import colors as mcolors
from matplotlib import lines, patches
from skimage.measure import find_contours

__all__ = [
    "random_colors",
    "apply_mask",
    "display_images",
    "display_instances",
    "display_differences",
    "draw_rois",
    "draw_box",
    "display_top_masks",
    "plot_precision_recall",
    "plot_overlaps",
    "draw_boxes",
    "display_table",
    "display_weight_stats",
    "plot_history",
    "save_figure",
]

# Keys of a Keras history that are not losses and get no subplot of their own by default.
_NON_METRIC_KEYS = ("epoch", "lr", "learning_rate")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _is_interactive_backend():
    backend = str(matplotlib.get_backend()).lower()
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        non_interactive = backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        non_interactive = ["agg", "cairo", "pdf", "pgf", "ps", "svg", "template"]
    return backend not in {b.lower() for b in non_interactive}


def _new_axes(ax, figsize):
    """Returns ``(fig, ax, created)``; a new figure only when ``ax`` is None."""
    if ax is None:
        fig, ax = plt.subplots(1, figsize=figsize)
        return fig, ax, True
    if not hasattr(ax, "add_patch"):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax, False


def _axes_list(ax, needed, func):
    """Flattens ``ax`` (an Axes, a sequence or an array of Axes) and checks there are enough."""
    axes = list(np.ravel(np.asarray(ax, dtype=object)))
    for a in axes:
        if not hasattr(a, "imshow"):
            raise TypeError(f"{func}: ax must hold matplotlib Axes, got {type(a).__name__}")
    if len(axes) < needed:
        raise ValueError(f"{func}: ax holds {len(axes)} Axes but {needed} are needed")
    return axes


def _finish(fig, created):
    # Matterport showed figures it created itself; never do so on Agg & co., where show() warns.
    if created and _is_interactive_backend():
        plt.show()
    return fig


def _check_image(image, func, name="image"):
    """Returns ``image`` as an ``[H, W, 3]`` array (grayscale repeated, alpha dropped)."""
    if image is None:
        raise ValueError(f"{func}: {name} is None")
    image = np.asarray(image)
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise TypeError(f"{func}: {name} must be numeric, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 1:
        image = np.concatenate([image] * 3, axis=-1)
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    elif not (image.ndim == 3 and image.shape[-1] == 3):
        raise ValueError(
            f"{func}: {name} must have shape [H, W, 3] (or [H, W], [H, W, 1], [H, W, 4]), "
            f"got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{func}: {name} is empty, shape {image.shape}")
    return image


def _check_boxes(boxes, func, name):
    """Returns ``boxes`` as float ``[N, 4]``; an empty input becomes ``[0, 4]``."""
    if boxes is None:
        raise ValueError(f"{func}: {name} is None")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] < 4:
        raise ValueError(f"{func}: {name} must have shape [N, (y1, x1, y2, x2)], got {boxes.shape}")
    return boxes[:, :4]


def _check_masks(masks, shape, func, name):
    """Returns ``masks`` as ``[H, W, N]`` matching the image ``shape``."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"{func}: {name} must have shape [H, W, N], got {masks.shape}")
    if masks.shape[:2] != tuple(shape[:2]):
        raise ValueError(
            f"{func}: {name} has height x width {masks.shape[:2]} but the image has "
            f"{tuple(shape[:2])}")
    return masks


def _check_1d(values, func, name, dtype=None):
    values = np.asarray(values, dtype=dtype)
    if values.ndim == 0:
        raise ValueError(f"{func}: {name} must be a 1-D sequence, got a scalar")
    if values.ndim != 1:
        raise ValueError(f"{func}: {name} must be 1-D, got shape {values.shape}")
    return values


def _check_counts(func, counts):
    """Raises when the named per-instance inputs disagree on the number of instances.

    ``counts`` is a list of ``(name, count, note)``; note describes where the count is read.
    """
    if len({c for _, c, _ in counts}) > 1:
        detail = ", ".join(f"{n} has {c}{' ' + note if note else ''}" for n, c, note in counts)
        names = [n for n, _, _ in counts]
        joined = ", ".join(names[:-1]) + " and " + names[-1]
        raise ValueError(
            f"{func}: {joined} must have one entry per instance, but {detail}")


def _check_class_ids(class_ids, class_names, func, name="class_ids"):
    n = len(class_names)
    bad = [int(c) for c in np.asarray(class_ids).ravel() if not 0 <= int(c) < n]
    if bad:
        raise ValueError(
            f"{func}: {name} must index class_names (0..{n - 1}), got {sorted(set(bad))}")


def _to_rgb(color, func="apply_mask", name="color"):
    try:
        return mcolors.to_rgb(tuple(color) if isinstance(color, np.ndarray) else color)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{func}: {name} must be a matplotlib color with components in 0..1, got {color!r}"
        ) from err


def _contour_patches(mask, color):
    """Polygons outlining ``mask``; padding closes contours that touch the image border."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    polygons = []
    for verts in find_contours(padded, 0.5):
        # find_contours gives (row, col) in the padded frame; Polygon wants (x, y) in the image.
        polygons.append(patches.Polygon(np.fliplr(verts) - 1, facecolor="none", edgecolor=color))
    return polygons


def _to_display_uint8(image):
    return np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Colors and image operations
# ----------------------------------------------------------------------------------------------

def random_colors(N, bright=True):
    """Returns ``N`` visually distinct colors in random order.

    Hues are evenly spaced in HSV at full saturation, value 1.0 (``bright``) or 0.7, then
    shuffled with Python's ``random`` module (seed it for reproducible colors).

    Returns:
        list of ``N`` ``(r, g, b)`` float tuples with components in ``0..1``.
    """
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 0:
        raise ValueError(f"random_colors: N must be a non-negative integer, got {N!r}")
    brightness = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / N, 1.0, brightness) for i in range(int(N))]
    random.shuffle(colors)
    return colors


def apply_mask(image, mask, color, alpha=0.5):
    """Blends ``color`` into the pixels of ``image`` where ``mask`` is set.

    Inside the mask each of the first three channels becomes
    ``image * (1 - alpha) + alpha * 255 * color``; pixels outside are unchanged.

    Args:
        image: ``[H, W, C]`` array, ``C >= 3``, values in ``0..255``. Not modified.
        mask: ``[H, W]`` bool (numeric: nonzero is inside).
        color: matplotlib color, e.g. an ``(r, g, b)`` tuple in ``0..1``; alpha is ignored.
        alpha: opacity of the color in ``[0, 1]``.

    Returns:
        A new array with the dtype and shape of ``image``; integer dtypes are rounded and
        clipped to their range.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] < 3:
        raise ValueError(f"apply_mask: image must have shape [H, W, 3], got {image.shape}")
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"apply_mask: mask must have the image's height x width {image.shape[:2]}, "
            f"got {mask.shape}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"apply_mask: alpha must be in [0, 1], got {alpha}")
    rgb = np.asarray(_to_rgb(color), dtype=np.float64)
    inside = mask if mask.dtype == bool else mask != 0

    out = image.copy()
    pixels = out[..., :3][inside].astype(np.float64)
    blended = pixels * (1.0 - alpha) + alpha * 255.0 * rgb
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        blended = np.clip(np.rint(blended), info.min, info.max)
    rows, cols = np.nonzero(inside)
    out[rows, cols, :3] = blended.astype(out.dtype)
    return out


def draw_box(image, box, color):
    """Burns a 2-pixel outline of ``box`` into a copy of ``image``.

    The top and left edges lie on rows ``y1, y1 + 1`` and columns ``x1, x1 + 1``; the bottom and
    right edges on rows ``y2, y2 + 1`` and columns ``x2, x2 + 1`` (just outside the box, as in
    Matterport). Parts outside the image are clipped.

    Args:
        image: ``[H, W, C]`` array. Not modified.
        box: ``(y1, x1, y2, x2)`` integer pixel coordinates.
        color: a value per channel in the image's units, e.g. ``(255, 0, 0)`` for ``uint8`` RGB.

    Returns:
        The new image, same shape and dtype as ``image``.
    """
    image = np.array(image, copy=True)
    if image.ndim not in (2, 3):
        raise ValueError(f"draw_box: image must have shape [H, W] or [H, W, C], got {image.shape}")
    box = np.asarray(box).ravel()
    if box.shape[0] != 4:
        raise ValueError(f"draw_box: box must be (y1, x1, y2, x2), got {box.tolist()}")
    # Negative coordinates would wrap around in slicing; clamp them to the border.
    y1, x1, y2, x2 = (max(int(v), 0) for v in box)
    color = np.asarray(color)
    image[y1:y1 + 2, x1:x2] = color
    image[y2:y2 + 2, x1:x2] = color
    image[y1:y2, x1:x1 + 2] = color
    image[y1:y2, x2:x2 + 2] = color
    return image


# ----------------------------------------------------------------------------------------------
# Image grids
# ----------------------------------------------------------------------------------------------

def display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None,
                   ax=None):
    """Shows images in a grid with ``cols`` columns.

    Args:
        images: sequence of ``[H, W]`` (drawn through ``cmap``/``norm``) or ``[H, W, 3|4]``
            arrays (values ``0..255``, cast to ``uint8`` like Matterport).
        titles: optional sequence of one title per image.
        cols: number of grid columns when a new figure is made.
        cmap, norm, interpolation: passed to ``imshow``.
        ax: optional sequence (or array) of at least ``len(images)`` Axes to draw into.

    Returns:
        The Figure.
    """
    func = "display_images"
    images = list(images)
    if not images:
        raise ValueError(f"{func}: images is empty")
    titles = [""] * len(images) if titles is None else list(titles)
    if len(titles) != len(images):
        raise ValueError(
            f"{func}: titles has {len(titles)} entries but images has {len(images)}")
    if isinstance(cols, bool) or not isinstance(cols, (int, np.integer)) or cols < 1:
        raise ValueError(f"{func}: cols must be a positive integer, got {cols!r}")

    if ax is None:
        rows = math.ceil(len(images) / cols)
        ncols = min(cols, len(images))
        fig, grid = plt.subplots(rows, ncols, figsize=(14, 14 * rows / cols), squeeze=False)
        axes = list(grid.ravel())
        for a in axes[len(images):]:
            a.axis("off")
        created = True
    else:
        axes = _axes_list(ax, len(images), func)
        fig, created = axes[0].figure, False

    for i, (a, image, title) in enumerate(zip(axes, images, titles)):
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] in (3, 4):
            image = _to_display_uint8(image)
        elif image.ndim != 2:
            raise ValueError(
                f"{func}: images[{i}] must have shape [H, W] or [H, W, 3|4], got {image.shape}")
        a.set_title(title, fontsize=9)
        a.axis("off")
        a.imshow(image, cmap=cmap, norm=norm, interpolation=interpolation)
    return _finish(fig, created)


def display_top_masks(image, mask, class_ids, class_names, limit=4, ax=None):
    """Shows the image next to the masks of its ``limit`` most prominent classes.

    Classes are ranked by total mask area; each panel labels a class's instances 1, 2, ... and
    draws them with the ``Blues_r`` colormap. Missing classes give empty panels titled "-".

    Args:
        image: ``[H, W, 3]`` image.
        mask: ``[H, W, N]`` bool instance masks.
        class_ids: ``[N]`` int class of each instance.
        class_names: list of class names indexed by class id.
        limit: number of class panels.
        ax: optional sequence of at least ``limit + 1`` Axes.

    Returns:
        The Figure.
    """
    func = "display_top_masks"
    image = _check_image(image, func)
    mask = _check_masks(mask, image.shape, func, "mask")
    class_ids = _check_1d(class_ids, func, "class_ids").astype(np.int64)
    _check_counts(func, [("mask", mask.shape[-1], "(last axis)"),
                         ("class_ids", len(class_ids), "")])
    _check_class_ids(class_ids, class_names, func)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"{func}: limit must be a positive integer, got {limit!r}")

    panels = [image]
    titles = [f"H x W={image.shape[0]}x{image.shape[1]}"]
    unique_ids = np.unique(class_ids)
    areas = [mask[:, :, class_ids == c].sum() for c in unique_ids]
    ranked = sorted(zip(unique_ids, areas), key=lambda r: r[1], reverse=True)
    top_ids = [int(c) for c, area in ranked if area > 0]
    for i in range(limit):
        class_id = top_ids[i] if i < len(top_ids) else -1
        m = mask[:, :, class_ids == class_id].astype(np.int64)
        panels.append(np.sum(m * np.arange(1, m.shape[-1] + 1), axis=-1))
        titles.append(class_names[class_id] if class_id != -1 else "-")
    return display_images(panels, titles=titles, cols=limit + 1, cmap="Blues_r", ax=ax)


# ----------------------------------------------------------------------------------------------
# Instances
# ----------------------------------------------------------------------------------------------

def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="",
                      figsize=(16, 16), ax=None, show_mask=True, show_bbox=True, colors=None,
                      captions=None):
    """Draws instances: blended masks, mask contours, dashed boxes and captions.

    Instances whose box is all zeros are skipped (Matterport's marker for an instance cropped
    out of the image). With no instances the image is drawn with a "No instances to display"
    note.

    Args:
        image: ``[H, W, 3]`` image, values ``0..255``.
        boxes: ``[N, (y1, x1, y2, x2)]`` pixel boxes.
        masks: ``[H, W, N]`` bool masks, or None to draw no masks or contours.
        class_ids: ``[N]`` int class ids indexing ``class_names``.
        class_names: list of class names.
        scores: optional ``[N]`` confidences, appended to the captions.
        title: axes title.
        figsize: size of the figure created when ``ax`` is None.
        ax: optional Axes to draw into.
        show_mask: blend the masks into the image (contours are drawn either way).
        show_bbox: draw the boxes.
        colors: optional sequence of at least ``N`` colors; random colors otherwise.
        captions: optional ``N`` strings replacing "class score".

    Returns:
        The Figure; the drawn image is ``ax.images[-1]``.
    """
    func = "display_instances"
    image = _check_image(image, func)
    height, width = image.shape[:2]
    boxes = _check_boxes(boxes, func, "boxes")
    class_ids = _check_1d(class_ids, func, "class_ids")
    counts = [("boxes", boxes.shape[0], "rows")]
    if masks is not None:
        masks = _check_masks(masks, image.shape, func, "masks")
        counts.append(("masks", masks.shape[-1], "(last axis)"))
    counts.append(("class_ids", len(class_ids), ""))
    if scores is not None:
        scores = _check_1d(scores, func, "scores", dtype=np.float64)
        counts.append(("scores", len(scores), ""))
    if captions is not None:
        captions = list(captions)
        counts.append(("captions", len(captions), ""))
    _check_counts(func, counts)
    n = boxes.shape[0]
    if captions is None and n:
        _check_class_ids(class_ids, class_names, func)
    if colors is not None:
        colors = list(colors)
        if len(colors) < n:
            raise ValueError(
                f"{func}: colors has {len(colors)} entries but there are {n} instances")
        for i, c in enumerate(colors[:n]):
            _to_rgb(c, func, f"colors[{i}]")

    fig, ax, created = _new_axes(ax, figsize)
    # Leave a margin so boxes on the border stay visible.
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)

    if n == 0:
        ax.imshow(_to_display_uint8(image))
        ax.text(width / 2, height / 2, "No instances to display", color="w", size=11,
                ha="center", va="center",
                bbox={"facecolor": "black", "alpha": 0.5, "edgecolor": "none"})
        return _finish(fig, created)

    colors = colors if colors is not None else random_colors(n)
    masked_image = image.astype(np.float64)
    for i in range(n):
        color = colors[i]
        if not np.any(boxes[i]):
            continue
        y1, x1, y2, x2 = boxes[i]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=0.7,
                                           linestyle="dashed", edgecolor=color,
                                           facecolor="none"))
        if captions is None:
            label = class_names[int(class_ids[i])]
            caption = f"{label} {scores[i]:.3f}" if scores is not None else label
        else:
            caption = captions[i]
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")

        if masks is not None:
            mask = masks[:, :, i]
            if show_mask:
                masked_image = apply_mask(masked_image, mask, color)
            for polygon in _contour_patches(mask, color):
                ax.add_patch(polygon)
    ax.imshow(_to_display_uint8(masked_image))
    return _finish(fig, created)


def _mask_iou(masks1, masks2):
    """IoU between ``[H, W, A]`` and ``[H, W, B]`` masks as ``[A, B]`` (0 for empty unions)."""
    pixels = masks1.shape[0] * masks1.shape[1]
    m1 = masks1.reshape(pixels, masks1.shape[-1]).astype(np.float64)
    m2 = masks2.reshape(pixels, masks2.shape[-1]).astype(np.float64)
    inter = m1.T @ m2
    union = m1.sum(0)[:, None] + m2.sum(0)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _align_to_matches(scores, iou, returned_overlaps):
    """Maps each row of compute_matches' output to a row of our score-sorted predictions.

    compute_matches sorts predictions by score itself; ours are already sorted, so only the
    order inside groups of equal scores can differ. Those rows are identified by their IoU row.
    Returns ``perm`` with ``returned row r == our row perm[r]``.
    """
    n = len(scores)
    perm = np.arange(n)
    returned_overlaps = np.asarray(returned_overlaps, dtype=np.float64)
    if returned_overlaps.shape != iou.shape:
        return perm
    start = 0
    while start < n:
        end = start + 1
        while end < n and scores[end] == scores[start]:
            end += 1
        if end - start > 1:
            free = list(range(start, end))
            for r in range(start, end):
                dist = [np.abs(returned_overlaps[r] - iou[k]).max() for k in free]
                perm[r] = free.pop(int(np.argmin(dist)))
        start = end
    return perm


def display_differences(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                        pred_mask, class_names, title="", ax=None, show_mask=True, show_box=True,
                        iou_threshold=0.5, score_threshold=0.5):
    """Draws ground truth (green) and predictions (red) on one image.

    Predictions are matched to ground truth with ``mrcnn.metrics.compute_matches``; each
    prediction is captioned ``"score / IoU"``, the IoU being with its matched ground-truth
    instance, or the largest IoU with any instance when unmatched. Rows whose box is all zeros
    (padding) are dropped first.

    Args:
        image: ``[H, W, 3]`` image.
        gt_box, gt_class_id, gt_mask: ``[G, 4]`` pixel boxes, ``[G]`` ids, ``[H, W, G]`` masks.
        pred_box, pred_class_id, pred_score, pred_mask: ``[P, 4]``, ``[P]``, ``[P]``,
            ``[H, W, P]`` predictions.
        class_names: list of class names.
        title: axes title; a legend-like default when empty.
        ax: optional Axes.
        show_mask, show_box: draw masks / boxes.
        iou_threshold, score_threshold: passed to ``compute_matches``.

    Returns:
        The Figure.
    """
    func = "display_differences"
    image = _check_image(image, func)
    gt_box = _check_boxes(gt_box, func, "gt_box")
    gt_class_id = _check_1d(gt_class_id, func, "gt_class_id").astype(np.int64)
    gt_mask = _check_masks(gt_mask, image.shape, func, "gt_mask")
    _check_counts(func, [("gt_box", len(gt_box), "rows"),
                         ("gt_class_id", len(gt_class_id), ""),
                         ("gt_mask", gt_mask.shape[-1], "(last axis)")])
    pred_box = _check_boxes(pred_box, func, "pred_box")
    pred_class_id = _check_1d(pred_class_id, func, "pred_class_id").astype(np.int64)
    pred_score = _check_1d(pred_score, func, "pred_score", dtype=np.float64)
    pred_mask = _check_masks(pred_mask, image.shape, func, "pred_mask")
    _check_counts(func, [("pred_box", len(pred_box), "rows"),
                         ("pred_class_id", len(pred_class_id), ""),
                         ("pred_score", len(pred_score), ""),
                         ("pred_mask", pred_mask.shape[-1], "(last axis)")])

    keep = np.any(gt_box != 0, axis=1)
    gt_box, gt_class_id, gt_mask = gt_box[keep], gt_class_id[keep], gt_mask[..., keep]
    keep = np.any(pred_box != 0, axis=1)
    pred_box, pred_class_id = pred_box[keep], pred_class_id[keep]
    pred_score, pred_mask = pred_score[keep], pred_mask[..., keep]
    # Sort like compute_matches does, so its outputs index our arrays.
    order = np.argsort(-pred_score, kind="stable")
    pred_box, pred_class_id = pred_box[order], pred_class_id[order]
    pred_score, pred_mask = pred_score[order], pred_mask[..., order]

    n_gt, n_pred = len(gt_box), len(pred_box)
    iou = _mask_iou(pred_mask, gt_mask)
    matched_gt = np.full(n_pred, -1, dtype=np.int64)
    if n_gt and n_pred:
        from mrcnn.metrics import compute_matches

        gt_match, pred_match, overlaps = compute_matches(
            gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
            iou_threshold=iou_threshold, score_threshold=score_threshold)
        pred_match = np.asarray(pred_match)
        if len(pred_match) != n_pred or len(np.asarray(gt_match)) != n_gt:
            raise RuntimeError(
                f"{func}: compute_matches returned {len(np.asarray(gt_match))} gt matches and "
                f"{len(pred_match)} prediction matches for {n_gt} and {n_pred} instances")
        perm = _align_to_matches(pred_score, iou, overlaps)
        matched_gt[perm] = pred_match.astype(np.int64)

    captions = [""] * n_gt
    for i in range(n_pred):
        if matched_gt[i] > -1:
            value = iou[i, matched_gt[i]]
        else:
            value = iou[i].max() if n_gt else 0.0
        captions.append(f"{pred_score[i]:.2f} / {value:.2f}")
    colors = [(0, 1, 0, 0.8)] * n_gt + [(1, 0, 0, 1)] * n_pred
    title = title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU"
    return display_instances(
        image,
        np.concatenate([gt_box, pred_box], axis=0),
        np.concatenate([gt_mask.astype(bool), pred_mask.astype(bool)], axis=-1),
        np.concatenate([gt_class_id, pred_class_id]),
        class_names,
        np.concatenate([np.zeros(n_gt), pred_score]),
        title=title, ax=ax, show_mask=show_mask, show_bbox=show_box, colors=colors,
        captions=captions)


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10, ax=None):
    """Draws regions of interest with their refinements and masks (training targets).

    At most ``limit`` ROIs, picked at random with NumPy's global generator, are drawn. Negative
    ROIs (class 0) get a gray dashed box; positive ones a dashed box, a solid refined box, a
    line joining their top-left corners, the class name and the mask. Counts of positive and
    negative ROIs are printed.

    Args:
        image: ``[H, W, 3]`` image.
        rois: ``[R, (y1, x1, y2, x2)]`` pixel boxes.
        refined_rois: ``[R, (y1, x1, y2, x2)]`` refined pixel boxes.
        mask: ``[R, mh, mw]`` float masks in each ROI's frame, pasted with
            ``mrcnn.image.unmold_mask`` (bilinear resize to the ROI, threshold 0.5).
        class_ids: ``[R]`` int class ids, 0 for background.
        class_names: list of class names.
        limit: most ROIs to draw.
        ax: optional Axes.

    Returns:
        The Figure.
    """
    # Same pasting as MaskRCNN.detect; mrcnn.image is NumPy/SciPy only (no TensorFlow).
    from mrcnn.image import unmold_mask

    func = "draw_rois"
    image = _check_image(image, func)
    rois = _check_boxes(rois, func, "rois")
    refined_rois = _check_boxes(refined_rois, func, "refined_rois")
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"{func}: mask must have shape [R, mh, mw], got {mask.shape}")
    class_ids = _check_1d(class_ids, func, "class_ids").astype(np.int64)
    _check_counts(func, [("rois", len(rois), "rows"), ("refined_rois", len(refined_rois), "rows"),
                         ("mask", len(mask), "(first axis)"), ("class_ids", len(class_ids), "")])
    _check_class_ids(class_ids, class_names, func)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"{func}: limit must be a positive integer, got {limit!r}")

    masked_image = image.astype(np.float64)
    ids = np.arange(len(rois))
    if len(ids) > limit:
        ids = np.random.choice(ids, limit, replace=False)
    fig, ax, created = _new_axes(ax, (12, 12))
    if len(rois) > limit:
        ax.set_title(f"Showing {len(ids)} random ROIs out of {len(rois)}")
    else:
        ax.set_title(f"{len(ids)} ROIs")
    ax.set_ylim(image.shape[0] + 20, -20)
    ax.set_xlim(-50, image.shape[1] + 20)
    ax.axis("off")

    for roi_id in ids:
        color = np.random.rand(3)
        class_id = class_ids[roi_id]
        y1, x1, y2, x2 = rois[roi_id]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                       edgecolor=color if class_id else "gray",
                                       facecolor="none", linestyle="dashed"))
        if class_id:
            ry1, rx1, ry2, rx2 = refined_rois[roi_id]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
            ax.text(rx1, ry1 + 8, f"{class_names[class_id]}", color="w", size=11,
                    backgroundcolor="none")
            full = unmold_mask(mask[roi_id], rois[roi_id].astype(np.int32), image.shape)
            masked_image = apply_mask(masked_image, full, color)
    ax.imshow(_to_display_uint8(masked_image))

    positives = int(np.sum(class_ids > 0))
    negatives = int(np.sum(class_ids == 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", negatives)
    if len(class_ids):
        print(f"Positive Ratio: {positives / len(class_ids):.2f}")
    return _finish(fig, created)


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None,
               visibilities=None, title="", ax=None):
    """Draws boxes and/or refined boxes with optional masks and captions.

    Useful for anchors (``boxes``) and their refinements (``refined_boxes``), joined by a line
    between top-left corners. Visibility per box: 0 gray dotted (refinement hidden), 1 colored
    dotted, 2 colored solid. Boxes that are all zeros are skipped.

    Args:
        image: ``[H, W, 3]`` image.
        boxes: optional ``[N, (y1, x1, y2, x2)]`` pixel boxes.
        refined_boxes: optional ``[N, (y1, x1, y2, x2)]`` pixel boxes.
        masks: optional ``[H, W, N]`` bool masks.
        captions: optional ``N`` strings, placed on the refined box when there is one.
        visibilities: optional ``[N]`` values in {0, 1, 2}; default 1.
        title: axes title.
        ax: optional Axes.

    Returns:
        The Figure.
    """
    func = "draw_boxes"
    image = _check_image(image, func)
    if boxes is None and refined_boxes is None:
        raise ValueError(f"{func}: pass boxes, refined_boxes or both")
    counts = []
    if boxes is not None:
        boxes = _check_boxes(boxes, func, "boxes")
        counts.append(("boxes", len(boxes), "rows"))
    if refined_boxes is not None:
        refined_boxes = _check_boxes(refined_boxes, func, "refined_boxes")
        counts.append(("refined_boxes", len(refined_boxes), "rows"))
    if masks is not None:
        masks = _check_masks(masks, image.shape, func, "masks")
        counts.append(("masks", masks.shape[-1], "(last axis)"))
    if captions is not None:
        captions = list(captions)
        counts.append(("captions", len(captions), ""))
    if visibilities is not None:
        visibilities = _check_1d(visibilities, func, "visibilities")
        counts.append(("visibilities", len(visibilities), ""))
        bad = sorted({int(v) for v in visibilities if v not in (0, 1, 2)})
        if bad:
            raise ValueError(f"{func}: visibilities must be 0, 1 or 2, got {bad}")
    if len(counts) > 1:
        _check_counts(func, counts)
    n = counts[0][1]

    fig, ax, created = _new_axes(ax, (12, 12))
    colors = random_colors(n)
    # Show the area outside the image, where anchors may reach.
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)

    masked_image = image.astype(np.float64)
    for i in range(n):
        visibility = visibilities[i] if visibilities is not None else 1
        if visibility == 0:
            color, style, alpha = "gray", "dotted", 0.5
        elif visibility == 1:
            color, style, alpha = colors[i], "dotted", 1.0
        else:
            color, style, alpha = colors[i], "solid", 1.0

        x1 = y1 = None
        if boxes is not None:
            if not np.any(boxes[i]):
                continue
            y1, x1, y2, x2 = boxes[i]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=alpha,
                                           linestyle=style, edgecolor=color, facecolor="none"))
        if refined_boxes is not None and visibility > 0:
            ry1, rx1, ry2, rx2 = refined_boxes[i]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            if boxes is not None:
                ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
            y1, x1 = ry1, rx1
        if captions is not None and x1 is not None:
            ax.text(x1, y1, captions[i], size=11, verticalalignment="top", color="w",
                    backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            mask = masks[:, :, i]
            masked_image = apply_mask(masked_image, mask, color)
            for polygon in _contour_patches(mask, color):
                ax.add_patch(polygon)
    ax.imshow(_to_display_uint8(masked_image))
    return _finish(fig, created)


# ----------------------------------------------------------------------------------------------
# Evaluation plots
# ----------------------------------------------------------------------------------------------

def plot_precision_recall(AP, precisions, recalls, ax=None):
    """Plots a precision-recall curve titled with ``AP``.

    Args:
        AP: average precision (float), shown in the title as AP@50.
        precisions, recalls: 1-D sequences of the same length (e.g. from ``compute_ap``).
        ax: optional Axes.

    Returns:
        The Figure.
    """
    func = "plot_precision_recall"
    precisions = _check_1d(precisions, func, "precisions", dtype=np.float64)
    recalls = _check_1d(recalls, func, "recalls", dtype=np.float64)
    if len(precisions) != len(recalls):
        raise ValueError(
            f"{func}: precisions has {len(precisions)} values but recalls has {len(recalls)}")
    fig, ax, created = _new_axes(ax, None)
    ax.set_title(f"Precision-Recall Curve. AP@50 = {float(AP):.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.plot(recalls, precisions)
    return _finish(fig, created)


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names,
                  threshold=0.5, ax=None):
    """Draws the IoU matrix between predictions (rows) and ground truth (columns).

    Class id 0 entries (padding) are dropped first. Each cell shows the IoU and, above
    ``threshold``, "match" when the classes agree or "wrong" when they do not.

    Args:
        gt_class_ids: ``[G]`` int ids.
        pred_class_ids: ``[P]`` int ids.
        pred_scores: ``[P]`` confidences, shown next to the prediction labels.
        overlaps: ``[P, G]`` IoU (after dropping class 0 entries).
        class_names: list of class names.
        threshold: IoU above which a cell is labelled.
        ax: optional Axes.

    Returns:
        The Figure.
    """
    func = "plot_overlaps"
    gt_class_ids = _check_1d(gt_class_ids, func, "gt_class_ids").astype(np.int64)
    pred_class_ids = _check_1d(pred_class_ids, func, "pred_class_ids").astype(np.int64)
    pred_scores = _check_1d(pred_scores, func, "pred_scores", dtype=np.float64)
    gt_class_ids = gt_class_ids[gt_class_ids != 0]
    pred_class_ids = pred_class_ids[pred_class_ids != 0]
    overlaps = np.asarray(overlaps, dtype=np.float64)
    expected = (len(pred_class_ids), len(gt_class_ids))
    if overlaps.ndim != 2 or overlaps.shape != expected:
        raise ValueError(
            f"{func}: overlaps must have shape [predictions, ground truth] = {expected} "
            f"(non-zero class ids), got {overlaps.shape}")
    if len(pred_scores) < len(pred_class_ids):
        raise ValueError(
            f"{func}: pred_scores has {len(pred_scores)} values for {len(pred_class_ids)} "
            f"predictions")
    _check_class_ids(gt_class_ids, class_names, func, "gt_class_ids")
    _check_class_ids(pred_class_ids, class_names, func, "pred_class_ids")

    fig, ax, created = _new_axes(ax, (12, 10))
    ax.imshow(overlaps, interpolation="nearest", cmap=plt.cm.Blues)
    ax.set_yticks(np.arange(len(pred_class_ids)))
    ax.set_yticklabels([f"{class_names[c]} ({pred_scores[i]:.2f})"
                        for i, c in enumerate(pred_class_ids)])
    ax.set_xticks(np.arange(len(gt_class_ids)))
    ax.set_xticklabels([class_names[c] for c in gt_class_ids], rotation=90)
    half = overlaps.max() / 2.0 if overlaps.size else 0.0
    for i in range(overlaps.shape[0]):
        for j in range(overlaps.shape[1]):
            value = overlaps[i, j]
            text = ""
            if value > threshold:
                text = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
            color = "white" if value > half else "black" if value > 0 else "grey"
            ax.text(j, i, f"{value:.3f}\n{text}", horizontalalignment="center",
                    verticalalignment="center", fontsize=9, color=color)
    ax.set_xlabel("Ground Truth")
    ax.set_ylabel("Predictions")
    if created:
        fig.tight_layout()
    return _finish(fig, created)


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------

def _in_jupyter_kernel():
    # A kernel always has IPython imported already; never import it here.
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # a broken or stub IPython must not break plotting
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _text_table(rows):
    if not rows:
        return ""
    n_cols = max(len(r) for r in rows)
    widths = [max((len(r[c]) for r in rows if c < len(r)), default=0) for c in range(n_cols)]
    return "\n".join("  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r)).rstrip()
                     for r in rows)


def display_table(table):
    """Shows a table: HTML inside a Jupyter kernel, plain text (printed) elsewhere.

    Args:
        table: sequence of rows, each a sequence of cells (converted with ``str``).

    Returns:
        The HTML string when displayed in a kernel, else the text table.
    """
    if isinstance(table, (str, bytes)) or not hasattr(table, "__iter__"):
        raise TypeError(
            f"display_table: table must be a sequence of rows, got {type(table).__name__}")
    rows = []
    for i, row in enumerate(table):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise TypeError(
                f"display_table: table[{i}] must be a sequence of cells, got {type(row).__name__}")
        rows.append([str(cell) for cell in row])

    if _in_jupyter_kernel():
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in rows)
        markup = f"<table>{body}</table>"
        try:
            import IPython.display as ipd

            ipd.display(ipd.HTML(markup))
            return markup
        except Exception:  # fall back to text rather than fail
            pass
    text = _text_table(rows)
    print(text)
    return text


def _weight_layers(model, _depth=0):
    """Layers holding weights, flattening nested models (duck-typed, no Keras import)."""
    if _depth == 0 and hasattr(model, "get_trainable_layers"):
        # Matterport returns layers; mrcnn's MaskRCNN returns (name, layer) pairs.
        return [item[1] if isinstance(item, tuple) and len(item) == 2 else item
                for item in model.get_trainable_layers()]
    if _depth == 0 and hasattr(model, "keras_model") and not hasattr(model, "layers"):
        return _weight_layers(model.keras_model, 0)
    if hasattr(model, "layers") and model.layers is not None:
        found = []
        for layer in model.layers:
            if getattr(layer, "layers", None):
                found.extend(_weight_layers(layer, _depth + 1))
            elif getattr(layer, "weights", None):
                found.append(layer)
        return found
    if hasattr(model, "get_weights") and hasattr(model, "weights"):
        return [model]
    raise TypeError(
        "display_weight_stats: model must be a Keras model, an object with "
        "get_trainable_layers() or keras_model, or a layer with weights and get_weights(); "
        f"got {type(model).__name__}")


def display_weight_stats(model):
    """Tabulates name, shape, min, max and std of every weight of a model.

    Works on a Keras model, a Matterport-style wrapper (``get_trainable_layers()`` or
    ``keras_model``) or anything whose layers have ``weights`` (objects with ``path`` or
    ``name``) and ``get_weights()`` (NumPy arrays). Names get "*** dead?" when all values are
    equal (except convolution biases), "*** Overflow?" when ``|value| > 1000`` and
    "*** NaN/Inf?" for non-finite values.

    Returns:
        The table as a list of rows of strings, header first; it is also shown with
        ``display_table``.
    """
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]]
    for layer in _weight_layers(model):
        values = layer.get_weights()
        variables = layer.weights
        if len(values) != len(variables):
            raise ValueError(
                f"display_weight_stats: layer {getattr(layer, 'name', layer)!r} has "
                f"{len(variables)} weights but get_weights() returned {len(values)} arrays")
        is_conv = "conv" in type(layer).__name__.lower()
        for i, (w, var) in enumerate(zip(values, variables)):
            w = np.asarray(w, dtype=np.float64)
            name = str(getattr(var, "path", None) or getattr(var, "name", None)
                       or f"{getattr(layer, 'name', 'layer')}/{i}")
            alert = ""
            if w.size == 0:
                w_min = w_max = w_std = float("nan")
            else:
                finite = np.isfinite(w)
                if not finite.all():
                    alert += " *** NaN/Inf?"
                    w = w[finite] if finite.any() else np.array([np.nan])
                w_min, w_max, w_std = float(w.min()), float(w.max()), float(w.std())
                is_bias = i == 1 or name.endswith("bias")
                if w_min == w_max and not (is_conv and is_bias):
                    alert += " *** dead?"
                if abs(w_min) > 1000 or abs(w_max) > 1000:
                    alert += " *** Overflow?"
            table.append([name + alert, str(tuple(np.shape(values[i]))), f"{w_min:+9.4f}",
                          f"{w_max:+10.4f}", f"{w_std:+9.4f}"])
    display_table(table)
    return table


# ----------------------------------------------------------------------------------------------
# Training curves and files
# ----------------------------------------------------------------------------------------------

def _read_csv_log(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"plot_history: {path} has no header row")
        columns = {name: [] for name in reader.fieldnames}
        for line, row in enumerate(reader, start=2):
            for name in reader.fieldnames:
                cell = (row.get(name) or "").strip()
                try:
                    columns[name].append(float(cell) if cell else np.nan)
                except ValueError as err:
                    raise ValueError(
                        f"plot_history: {path} line {line}, column {name!r}: "
                        f"{cell!r} is not a number") from err
    return columns


def _history_data(history):
    """Returns ``(columns, epochs)``: metric name -> float array, and 1-based epoch numbers.

    A Keras ``History`` counts epochs from 0 (``.epoch``); so does a CSV log written by Keras's
    own ``CSVLogger``, while the ``history.csv`` that ``MaskRCNN.train`` writes counts from 1, like
    the checkpoint names. An ``epoch`` column holding a 0 is taken as counted from 0.
    """
    epochs = None
    if isinstance(history, (str, os.PathLike)):
        data = _read_csv_log(history)
    elif isinstance(getattr(history, "history", None), Mapping):
        data = history.history
        epochs = getattr(history, "epoch", None)
        if epochs is not None:
            epochs = np.asarray(epochs, dtype=np.float64) + 1
    elif isinstance(history, Mapping):
        data = history
    else:
        raise TypeError(
            "plot_history: history must be a Keras History, a dict of metric -> values or a "
            f"path to a CSV log, got {type(history).__name__}")
    data = {str(k): np.asarray(v, dtype=np.float64).ravel() for k, v in data.items()}
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"plot_history: metrics have different lengths: {lengths}")
    if "epoch" in data:
        epochs = data["epoch"]
        if len(epochs) and np.nanmin(epochs) == 0:
            epochs = epochs + 1
    n = next(iter(lengths.values()), 0)
    if epochs is None or len(epochs) != n:
        epochs = np.arange(1, n + 1)
    return data, np.asarray(epochs, dtype=np.float64)


def plot_history(history, metrics=None, ax=None):
    """Plots training and validation curves, one subplot per metric.

    Each subplot shows ``name`` (solid) and ``val_name`` (dashed) when present, against 1-based
    epoch numbers, which match checkpoint names (a Keras ``History``'s 0-based ``epoch`` plus
    one; ``history.csv`` as ``MaskRCNN.train`` writes it).

    Args:
        history: a Keras ``History`` (uses ``.history`` and ``.epoch``), a dict of metric name
            -> per-epoch values, or a path to a CSV log as written by ``CSVLogger``.
        metrics: names to plot (``"val_"`` prefix optional); default every metric but
            ``epoch``, ``lr`` and ``learning_rate``, in the history's order.
        ax: optional Axes (one metric) or sequence of at least ``len(metrics)`` Axes.

    Returns:
        The Figure.
    """
    func = "plot_history"
    data, epochs = _history_data(history)
    if metrics is None:
        metrics = []
        for key in data:
            base = key[4:] if key.startswith("val_") else key
            if base not in _NON_METRIC_KEYS and base not in metrics:
                metrics.append(base)
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        metrics = [m[4:] if m.startswith("val_") and (m in data or m[4:] in data) else m
                   for m in metrics]
        for m in metrics:
            if m not in data and f"val_{m}" not in data:
                raise ValueError(
                    f"{func}: metric {m!r} not found in history; available: {sorted(data)}")
    if not metrics:
        raise ValueError(f"{func}: history holds no metrics to plot (keys: {sorted(data)})")

    if ax is None:
        cols = min(len(metrics), 3)
        rows = math.ceil(len(metrics) / cols)
        fig, grid = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
        axes = list(grid.ravel())
        for a in axes[len(metrics):]:
            a.axis("off")
        created = True
    else:
        axes = _axes_list(ax, len(metrics), func)
        fig, created = axes[0].figure, False

    x = epochs
    for a, name in zip(axes, metrics):
        if name in data:
            a.plot(x, data[name], label=name)
        if f"val_{name}" in data:
            a.plot(x, data[f"val_{name}"], label=f"val_{name}", linestyle="--")
        a.set_title(name)
        a.set_xlabel("epoch")
        a.legend()
    if created:
        fig.tight_layout()
    return _finish(fig, created)


def save_figure(fig, path, **savefig_kwargs):
    """Saves ``fig`` to ``path`` (format from the extension), creating parent folders.

    Extra keyword arguments go to ``Figure.savefig`` (e.g. ``dpi``, ``bbox_inches``).

    Returns:
        The path as a ``pathlib.Path``.
    """
    if not hasattr(fig, "savefig"):
        raise TypeError(f"save_figure: fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **savefig_kwargs)
    return path
