"""RPN training targets for one image (NumPy, runs in the input pipeline).

Anchors and ground-truth boxes are pixel ``(y1, x1, y2, x2)`` in the molded image.

Matterport's rules: an anchor is positive with IoU >= 0.7 against a box, or when it is a box's
best anchor (ties included, even below 0.7); negative when its best IoU is below 0.3 and it does
not touch a crowd box (IoU >= 0.001); then at most half of ``train_anchors_per_image`` positives
are kept, and negatives fill the rest.

Only a few anchors of the pyramid's quarter million can reach IoU 0.3 with a given box: those whose
area is within a factor 1 / 0.3 of the box's and which overlap it. `AnchorIndex` groups the anchors
by area and sorts each group by ``y1``, so those are found by a binary search and a few vector
comparisons, and only their IoU is computed, with the same float64 arithmetic as
``mrcnn.ops.boxes_np.compute_overlaps``. The labels are therefore the ones the dense
``[anchors, boxes]`` IoU table gives, bit for bit, without building that table.

`match_anchors` gives the labels before sampling (they depend only on the boxes, so a cache can
keep them across epochs); `sample_rpn_targets` draws the kept anchors and encodes their deltas.
"""

import numpy as np

from mrcnn.ops.boxes_np import compute_overlaps, encode_boxes_np

__all__ = ["AnchorIndex", "match_anchors", "sample_rpn_targets", "build_rpn_targets"]

POSITIVE_IOU = 0.7
NEGATIVE_IOU = 0.3
CROWD_IOU = 0.001

# Groups of anchors whose areas lie within a factor 2 ** (1 / 4) of each other: a pyramid level's
# anchors (one area for all ratios) form one group.
_AREA_BINS_PER_OCTAVE = 4
# IoU <= min(area) / max(area); a group is searched when that bound reaches the threshold less
# this relative margin, so float rounding in the IoU can never hide an anchor.
_BOUND_MARGIN = 1e-9


class AnchorIndex:
    """Anchors grouped by area and sorted by ``y1`` for box-overlap queries.

    anchors: [A, 4] pixel boxes (cast to float32, as the targets use them). Build it once per set
    of anchors (the pyramid of an image size) and query it for every image.
    """

    def __init__(self, anchors):
        anchors = np.asarray(anchors, np.float32).reshape(-1, 4)
        self.anchors = anchors
        self.count = len(anchors)
        a = anchors.astype(np.float64)
        area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            key = np.floor(np.log2(np.where(area > 0, area, np.nan)) * _AREA_BINS_PER_OCTAVE)
        key = np.where(np.isfinite(key), key, np.iinfo(np.int64).min).astype(np.int64)
        self.groups = []
        for value in np.unique(key):
            members = np.flatnonzero(key == value)
            members = members[np.argsort(a[members, 0], kind="stable")]
            boxes = a[members]
            heights = boxes[:, 2] - boxes[:, 0]
            self.groups.append({
                "index": members,
                "y1": np.ascontiguousarray(boxes[:, 0]),
                "boxes": boxes,
                "area": area[members],
                "min_area": float(area[members].min()),
                "max_area": float(area[members].max()),
                # One pixel of slack: y1 > box_y1 - max_height is then implied by y2 > box_y1
                # whatever the rounding of y2 - y1.
                "reach": float(np.nanmax(heights)) + 1.0 if len(heights) else 1.0,
            })

    def overlapping(self, box, min_iou=0.0):
        """Anchors that overlap ``box`` (positive intersection area) and whose area allows an
        IoU of at least ``min_iou`` with it (0: every overlapping anchor).

        box: [4] pixels (float64). Returns (indices [K] int64 into the anchors, ascending,
        iou [K] float64 computed as ``compute_overlaps`` computes it).
        """
        by1, bx1, by2, bx2 = (float(v) for v in box)
        box_area = (by2 - by1) * (bx2 - bx1)
        found, ious = [], []
        for g in self.groups:
            if min_iou > 0:
                if not box_area > 0:
                    continue
                bound = (min(g["max_area"], box_area) / max(g["min_area"], box_area))
                if bound < min_iou * (1 - _BOUND_MARGIN):
                    continue
            lo = np.searchsorted(g["y1"], by1 - g["reach"], side="right")
            hi = np.searchsorted(g["y1"], by2, side="left")
            if hi <= lo:
                continue
            b = g["boxes"][lo:hi]
            y1 = np.maximum(b[:, 0], by1)
            x1 = np.maximum(b[:, 1], bx1)
            y2 = np.minimum(b[:, 2], by2)
            x2 = np.minimum(b[:, 3], bx2)
            hit = (y2 > y1) & (x2 > x1)
            if not hit.any():
                continue
            inter = (y2[hit] - y1[hit]) * (x2[hit] - x1[hit])
            union = g["area"][lo:hi][hit] + box_area - inter
            iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            found.append(g["index"][lo:hi][hit])
            ious.append(iou)
        if not found:
            return np.zeros([0], np.int64), np.zeros([0], np.float64)
        index = np.concatenate(found)
        iou = np.concatenate(ious)
        order = np.argsort(index, kind="stable")
        return index[order], iou[order]


def match_anchors(index, gt_class_ids, gt_boxes):
    """Anchor labels before sampling.

    index: `AnchorIndex` of the anchors; gt_class_ids: [G] int (negative = crowd);
    gt_boxes: [G, 4] pixels. Returns (rpn_match [A] int32: 1 positive, -1 negative, 0 neutral;
    boxes [G', 4] float32: the non-crowd boxes, which `sample_rpn_targets` encodes against).
    """
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    crowd = gt_class_ids < 0
    rpn_match = np.zeros([index.count], dtype=np.int32)

    no_crowd = np.ones([index.count], dtype=bool)
    for box in gt_boxes[crowd].astype(np.float64):
        hit, iou = index.overlapping(box)
        no_crowd[hit[iou >= CROWD_IOU]] = False
    boxes = gt_boxes[~crowd]

    if not len(boxes):
        rpn_match[no_crowd] = -1
        return rpn_match, boxes

    best_iou = np.zeros([index.count], np.float64)
    winners = []
    for box in boxes.astype(np.float64):
        hit, iou = index.overlapping(box, NEGATIVE_IOU)
        if not (len(iou) and iou.max() >= NEGATIVE_IOU):
            # The box's best anchor is below 0.3 (a tiny or very thin box): it is among all the
            # anchors that touch it. Anchors outside the first query stay below 0.3, so their
            # best IoU only matters as "below 0.3", which they already are.
            hit, iou = index.overlapping(box)
        np.maximum.at(best_iou, hit, iou)
        if len(iou):
            top = iou.max()
            if top > 0:
                winners.append(hit[iou == top])
    rpn_match[(best_iou < NEGATIVE_IOU) & no_crowd] = -1
    if winners:
        rpn_match[np.concatenate(winners)] = 1
    rpn_match[best_iou >= POSITIVE_IOU] = 1
    return rpn_match, boxes


def sample_rpn_targets(anchors, rpn_match, gt_boxes, train_anchors_per_image, std_dev, rng):
    """Keep at most half positives and fill with negatives, then encode the positives' deltas.

    anchors: [A, 4] float32 pixels; rpn_match: [A] labels from `match_anchors` (any integer
    dtype; not changed);
    gt_boxes: [G', 4] the non-crowd boxes it returned; rng: ``np.random.Generator``.
    Returns rpn_match [A] int32 and rpn_bbox [train_anchors_per_image, 4] float32: the kept
    positives' deltas (each against the box it overlaps most) in anchor order, zero-padded.
    """
    rpn_match = np.array(rpn_match, np.int32)  # a copy, in the dtype the model reads
    rpn_bbox = np.zeros([train_anchors_per_image, 4], dtype=np.float32)
    positive = np.flatnonzero(rpn_match == 1)
    extra = len(positive) - train_anchors_per_image // 2
    if extra > 0:
        rpn_match[rng.choice(positive, extra, replace=False)] = 0
    negative = np.flatnonzero(rpn_match == -1)
    extra = len(negative) - (train_anchors_per_image - np.count_nonzero(rpn_match == 1))
    if extra > 0:
        rpn_match[rng.choice(negative, extra, replace=False)] = 0

    positive = np.flatnonzero(rpn_match == 1)
    if len(positive):
        best_gt = compute_overlaps(anchors[positive], gt_boxes).argmax(axis=1)
        rpn_bbox[:len(positive)] = encode_boxes_np(anchors[positive], gt_boxes[best_gt], std_dev)
    return rpn_match, rpn_bbox


def build_rpn_targets(anchors, gt_class_ids, gt_boxes, train_anchors_per_image, std_dev,
                      rng=None, index=None):
    """Label anchors and encode the positives' box deltas.

    anchors: [A, 4] pixels. gt_class_ids: [G] int (negative = crowd). gt_boxes: [G, 4] pixels.
    train_anchors_per_image: anchors kept per image (at most half of them positive).
    std_dev: [4] the deltas are divided by (RPN_BBOX_STD_DEV).
    index: an `AnchorIndex` of ``anchors`` to reuse (built here when None).
    Returns rpn_match [A] int32 (1 positive, -1 negative, 0 ignored) and
    rpn_bbox [train_anchors_per_image, 4] float32: the positives' deltas in anchor order,
    zero-padded.
    """
    rng = np.random.default_rng() if rng is None else rng
    index = AnchorIndex(anchors) if index is None else index
    rpn_match, boxes = match_anchors(index, gt_class_ids, gt_boxes)
    return sample_rpn_targets(index.anchors, rpn_match, boxes, train_anchors_per_image, std_dev,
                              rng)
