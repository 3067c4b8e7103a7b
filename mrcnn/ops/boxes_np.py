"""Box operations in NumPy.

Boxes are ``[..., (y1, x1, y2, x2)]``. *Pixel* boxes follow Matterport's convention: ``(y2, x2)``
is one past the last pixel inside, so a box's height is ``y2 - y1``. *Normalized* boxes come from
`norm_boxes`. Deltas are ``(dy, dx, log(dh), log(dw))``: center shifts relative to the box's
height/width and log size ratios.

`encode_boxes_np` / `decode_boxes_np` are the reference for the TensorFlow codec in
``mrcnn.ops.boxes`` (same formulas, standard deviation applied inside).
"""

import numpy as np

__all__ = [
    "extract_bboxes", "compute_iou", "compute_overlaps", "compute_overlaps_masks",
    "non_max_suppression", "apply_box_deltas", "box_refinement", "encode_boxes_np",
    "decode_boxes_np", "norm_boxes", "denorm_boxes", "box_areas",
]


def extract_bboxes(mask):
    """Tight pixel boxes around instance masks.

    mask: [H, W, N] of bool (or any dtype; nonzero is inside).
    Returns: int32 [N, 4] ``(y1, x1, y2, x2)`` with ``y2``/``x2`` one past the last set pixel;
    an empty mask gets the box ``(0, 0, 0, 0)``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"extract_bboxes: mask must be [H, W, N], got shape {mask.shape}")
    n = mask.shape[-1]
    rows = np.any(mask, axis=1)  # [H, N]: instance i has a pixel in row y
    cols = np.any(mask, axis=0)  # [W, N]
    boxes = np.zeros((n, 4), np.int32)
    present = rows.any(axis=0)
    if not present.any():
        return boxes
    h, w = mask.shape[:2]
    # argmax finds the first True; on the reversed axis it finds the last one.
    boxes[:, 0] = np.argmax(rows, axis=0)
    boxes[:, 1] = np.argmax(cols, axis=0)
    boxes[:, 2] = h - np.argmax(rows[::-1], axis=0)
    boxes[:, 3] = w - np.argmax(cols[::-1], axis=0)
    boxes[~present] = 0
    return boxes


def box_areas(boxes):
    """Areas of boxes [..., 4] (``(y2 - y1) * (x2 - x1)``), same leading shape."""
    boxes = np.asarray(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box with each of ``boxes``.

    box: [4] ``(y1, x1, y2, x2)``; boxes: [B, 4]; box_area: scalar; boxes_area: [B]
    (areas are passed in so callers can compute them once).
    Returns: float [B] in [0, 1]; 0 where the union is empty.
    """
    box = np.asarray(box, np.float64)
    boxes = np.asarray(boxes, np.float64)
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + np.asarray(boxes_area, np.float64) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def compute_overlaps(boxes1, boxes2):
    """IoU of every pair of boxes.

    boxes1: [N1, 4], boxes2: [N2, 4] ``(y1, x1, y2, x2)``.
    Returns: float [N1, N2], ``overlaps[i, j] = IoU(boxes1[i], boxes2[j])`` in [0, 1].
    """
    b1 = np.asarray(boxes1, np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, np.float64).reshape(-1, 4)
    a1 = box_areas(b1)[:, None]
    a2 = box_areas(b2)[None, :]
    y1 = np.maximum(b1[:, None, 0], b2[None, :, 0])
    x1 = np.maximum(b1[:, None, 1], b2[None, :, 1])
    y2 = np.minimum(b1[:, None, 2], b2[None, :, 2])
    x2 = np.minimum(b1[:, None, 3], b2[None, :, 3])
    intersection = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)
    union = a1 + a2 - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def compute_overlaps_masks(masks1, masks2):
    """IoU of every pair of masks.

    masks1: [H, W, N1], masks2: [H, W, N2] (bool, or nonzero is inside).
    Returns: float32 [N1, N2] in [0, 1]; 0 for two empty masks.
    """
    masks1 = np.asarray(masks1)
    masks2 = np.asarray(masks2)
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if n1 == 0 or n2 == 0:
        return np.zeros((n1, n2), np.float32)
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(f"compute_overlaps_masks: mask sizes differ: {masks1.shape[:2]} vs "
                         f"{masks2.shape[:2]}")
    m1 = (np.reshape(masks1, (-1, n1)) > 0.5).astype(np.float32)
    m2 = (np.reshape(masks2, (-1, n2)) > 0.5).astype(np.float32)
    area1 = m1.sum(axis=0)
    area2 = m2.sum(axis=0)
    intersection = m1.T @ m2
    union = area1[:, None] + area2[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def non_max_suppression(boxes, scores, threshold):
    """Greedy non-max suppression.

    boxes: [N, 4] ``(y1, x1, y2, x2)``; scores: [N]; threshold: a box is dropped when its IoU
    with an already kept, higher-scoring box is above ``threshold``.
    Returns: int32 [K] indices into ``boxes`` of the kept boxes, highest score first
    (ties keep the lower index first).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"non_max_suppression: {len(boxes)} boxes but {len(scores)} scores")
    areas = box_areas(boxes)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        iou = compute_iou(boxes[i], boxes[order[1:]], areas[i], areas[order[1:]])
        order = order[1:][iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes, deltas):
    """Move and resize boxes by deltas (the inverse of `box_refinement`).

    boxes: [..., 4] ``(y1, x1, y2, x2)``; deltas: [..., 4] ``(dy, dx, log(dh), log(dw))``.
    Returns: float32 [..., 4] boxes in the frame of ``boxes``.
    """
    boxes = np.asarray(boxes, np.float64)
    deltas = np.asarray(deltas, np.float64)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    height = height * np.exp(deltas[..., 2])
    width = width * np.exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=-1).astype(np.float32)


def box_refinement(box, gt_box):
    """Deltas that move ``box`` onto ``gt_box`` (Matterport's encoding, no std-dev).

    box, gt_box: [..., 4] ``(y1, x1, y2, x2)`` in the same frame; boxes must have positive size.
    Returns: float32 [..., 4] ``(dy, dx, log(dh), log(dw))`` where dy, dx are the center shift
    divided by the box's height, width.
    """
    box = np.asarray(box, np.float64)
    gt_box = np.asarray(gt_box, np.float64)
    height = box[..., 2] - box[..., 0]
    width = box[..., 3] - box[..., 1]
    center_y = box[..., 0] + 0.5 * height
    center_x = box[..., 1] + 0.5 * width
    gt_height = gt_box[..., 2] - gt_box[..., 0]
    gt_width = gt_box[..., 3] - gt_box[..., 1]
    gt_center_y = gt_box[..., 0] + 0.5 * gt_height
    gt_center_x = gt_box[..., 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=-1).astype(np.float32)


def encode_boxes_np(boxes, gt_boxes, std_dev):
    """`box_refinement` divided by ``std_dev``: the training target of a box head.

    boxes, gt_boxes: [..., 4]; std_dev: [4]. Returns float32 [..., 4].
    """
    std_dev = np.asarray(std_dev, np.float64)
    deltas = box_refinement(boxes, gt_boxes).astype(np.float64)
    return (deltas / std_dev).astype(np.float32)


def decode_boxes_np(boxes, deltas, std_dev):
    """`apply_box_deltas` with ``deltas * std_dev`` (the inverse of `encode_boxes_np`).

    boxes: [..., 4]; deltas: [..., 4] as predicted by a box head; std_dev: [4].
    Returns float32 [..., 4].
    """
    std_dev = np.asarray(std_dev, np.float64)
    return apply_box_deltas(boxes, np.asarray(deltas, np.float64) * std_dev)


def _norm_scale_shift(shape):
    h, w = shape[0], shape[1]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], np.float64)
    shift = np.array([0, 0, 1, 1], np.float64)
    return scale, shift


def norm_boxes(boxes, shape):
    """Pixel boxes to normalized boxes.

    boxes: [..., 4] pixel ``(y1, x1, y2, x2)``; shape: ``(height, width)`` of the image.
    Returns: float32 [..., 4] ``(boxes - (0, 0, 1, 1)) / (h - 1, w - 1, h - 1, w - 1)``, so the
    full image ``(0, 0, h, w)`` becomes ``(0, 0, 1, 1)``.
    """
    scale, shift = _norm_scale_shift(shape)
    return ((np.asarray(boxes, np.float64) - shift) / scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalized boxes to pixel boxes (the inverse of `norm_boxes`).

    boxes: [..., 4] normalized; shape: ``(height, width)``.
    Returns: int32 [..., 4] ``round(boxes * (h - 1, w - 1, h - 1, w - 1) + (0, 0, 1, 1))``.
    """
    scale, shift = _norm_scale_shift(shape)
    return np.around(np.asarray(boxes, np.float64) * scale + shift).astype(np.int32)
