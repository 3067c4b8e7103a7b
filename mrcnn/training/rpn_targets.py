"""RPN training targets for one image (NumPy, runs in the input pipeline).

Anchors and ground-truth boxes are pixel ``(y1, x1, y2, x2)`` in the molded image.
"""

import numpy as np

from mrcnn.ops.boxes_np import compute_overlaps, encode_boxes_np


def build_rpn_targets(anchors, gt_class_ids, gt_boxes, train_anchors_per_image, std_dev,
                      rng=None):
    """Label anchors and encode the positives' box deltas.

    anchors: [A, 4] pixels. gt_class_ids: [G] int (negative = crowd). gt_boxes: [G, 4] pixels.
    train_anchors_per_image: anchors kept per image (at most half of them positive).
    std_dev: [4] the deltas are divided by (RPN_BBOX_STD_DEV).
    Returns rpn_match [A] int32 (1 positive, -1 negative, 0 ignored) and
    rpn_bbox [train_anchors_per_image, 4] float32: the positives' deltas in anchor order,
    zero-padded.

    Positive: IoU >= 0.7 with a ground-truth box, or the best anchor(s) of a ground-truth box.
    Negative: IoU < 0.3 with every box and not overlapping a crowd box.
    """
    rng = np.random.default_rng() if rng is None else rng
    anchors = np.asarray(anchors, np.float32)
    gt_class_ids = np.asarray(gt_class_ids)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros([train_anchors_per_image, 4], dtype=np.float32)

    crowd = gt_class_ids < 0
    if crowd.any():
        crowd_iou = compute_overlaps(anchors, gt_boxes[crowd])
        no_crowd = crowd_iou.max(axis=1) < 0.001
        gt_boxes = gt_boxes[~crowd]
    else:
        no_crowd = np.ones([anchors.shape[0]], dtype=bool)

    if len(gt_boxes):
        overlaps = compute_overlaps(anchors, gt_boxes)  # [A, G]
        best_gt = overlaps.argmax(axis=1)
        best_iou = overlaps[np.arange(len(anchors)), best_gt]
        rpn_match[(best_iou < 0.3) & no_crowd] = -1
        # Every gt box gets its best anchor(s), even below 0.7; a box that overlaps no anchor at
        # all gets none (otherwise every zero-IoU anchor would tie for best).
        gt_best = overlaps.max(axis=0)
        ties = np.argwhere((overlaps == gt_best[None]) & (gt_best[None] > 0))[:, 0]
        rpn_match[ties] = 1
        rpn_match[best_iou >= 0.7] = 1
    else:
        best_gt = np.zeros([anchors.shape[0]], dtype=np.int64)
        rpn_match[no_crowd] = -1

    # Balance: at most half positives, negatives fill the rest.
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
        rpn_bbox[:len(positive)] = encode_boxes_np(anchors[positive], gt_boxes[best_gt[positive]],
                                                   std_dev)
    return rpn_match, rpn_bbox
