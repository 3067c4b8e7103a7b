"""Detection metrics for one image: matching, average precision, recall (Matterport semantics).

Matching uses *mask* IoU. Boxes are pixel ``(y1, x1, y2, x2)``; masks ``[H, W, N]`` bool.
Rows of all zeros at the end of ``gt_boxes`` / ``pred_boxes`` are padding and are dropped
together with the matching entries of the other arrays.
"""

import numpy as np

from mrcnn.ops.boxes_np import compute_overlaps, compute_overlaps_masks

__all__ = ["trim_zeros", "compute_matches", "compute_ap", "compute_ap_range", "compute_recall"]


def trim_zeros(x):
    """Drop the rows of a 2-D array that are all zeros (padding). x: [N, K] -> [N', K]."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros: expected a 2-D array, got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]


def _trim(boxes, *others):
    """Trim zero-padding rows of ``boxes`` and the same entries of ``others`` (last axis for
    masks [H, W, N], first axis otherwise)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    keep = ~np.all(boxes == 0, axis=1)
    out = [boxes[keep]]
    for arr, axis in others:
        arr = np.asarray(arr)
        out.append(np.compress(keep, arr, axis=axis) if arr.shape[axis] == len(keep) else arr)
    return out


def compute_matches(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
                    pred_masks, iou_threshold=0.5, score_threshold=0.0):
    """Match predictions to ground truth, greedily by descending score.

    gt_boxes: [G, 4]; gt_class_ids: [G]; gt_masks: [H, W, G];
    pred_boxes: [P, 4]; pred_class_ids: [P]; pred_scores: [P]; pred_masks: [H, W, P].
    iou_threshold: minimum mask IoU of a match.
    score_threshold: ground truths with IoU below this are not considered for a prediction.

    Each prediction, from the highest score down, takes the unmatched ground truth of the same
    class with the highest mask IoU, if that IoU is at least ``iou_threshold``.

    Returns ``(gt_match, pred_match, overlaps)``:
        gt_match: float [G], index of the matched prediction (in score order) or -1;
        pred_match: float [P], index of the matched ground truth or -1, predictions sorted by
            descending score;
        overlaps: float32 [P, G] mask IoUs, predictions sorted by descending score.
    """
    gt_boxes, gt_class_ids, gt_masks = _trim(gt_boxes, (gt_class_ids, 0), (gt_masks, -1))
    pred_boxes, pred_class_ids, pred_scores, pred_masks = _trim(
        pred_boxes, (pred_class_ids, 0), (pred_scores, 0), (pred_masks, -1))

    # Highest score first; stable so equal scores keep their input order.
    order = np.argsort(-np.asarray(pred_scores, np.float64), kind="stable")
    pred_class_ids = pred_class_ids[order]
    pred_masks = pred_masks[..., order]

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)

    pred_match = -1 * np.ones([len(pred_boxes)])
    gt_match = -1 * np.ones([len(gt_boxes)])
    for i in range(len(pred_boxes)):
        candidates = np.argsort(-overlaps[i], kind="stable")
        for j in candidates:
            iou = overlaps[i, j]
            if iou < score_threshold or iou < iou_threshold:
                break  # candidates are in descending IoU, so no later one qualifies
            if gt_match[j] > -1:
                continue
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
               pred_masks, iou_threshold=0.5):
    """Average precision at one mask-IoU threshold (Pascal VOC style, all points interpolated).

    Arguments as in `compute_matches`. Precision is made monotonically non-increasing from the
    right, then integrated over the recall steps.

    With no ground truth, recall is undefined: the AP is 1.0 if there are no predictions either
    (nothing to find, nothing wrong) and 0.0 otherwise.

    Returns ``(mAP, precisions, recalls, overlaps)``: the AP (float), the interpolated precisions
    and the recalls ([P + 2] each, padded with a leading and trailing point) and the mask IoUs
    [P, G] of `compute_matches`.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold)
    if len(gt_match) == 0:
        ap = 1.0 if len(pred_match) == 0 else 0.0
        precisions = np.concatenate([[0], np.zeros(len(pred_match)), [0]])
        recalls = np.concatenate([[0], np.zeros(len(pred_match)), [1]])
        return ap, precisions, recalls, overlaps

    true_positives = np.cumsum(pred_match > -1)
    precisions = true_positives / (np.arange(len(pred_match)) + 1)
    recalls = true_positives.astype(np.float32) / len(gt_match)

    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    # Interpolation: precision at recall r is the best precision at any recall >= r.
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]

    steps = np.where(recalls[:-1] != recalls[1:])[0] + 1
    ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                     pred_mask, iou_thresholds=None, verbose=1):
    """Mean of `compute_ap` over several IoU thresholds (default 0.50, 0.55, ..., 0.95).

    Prints the AP of each threshold and the mean when ``verbose``. Returns the mean AP (float).
    """
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    iou_thresholds = np.atleast_1d(np.asarray(iou_thresholds, np.float64))
    aps = []
    for iou_threshold in iou_thresholds:
        ap, _, _, _ = compute_ap(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id,
                                 pred_score, pred_mask, iou_threshold=iou_threshold)
        if verbose:
            print(f"AP @{iou_threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou):
    """Box recall: the fraction of ground-truth boxes that some prediction overlaps.

    pred_boxes: [P, 4]; gt_boxes: [G, 4]; iou: minimum box IoU.
    Each prediction counts for the ground truth it overlaps most; a ground truth is recalled if
    some prediction counts for it with IoU >= ``iou``.
    Returns ``(recall, positive_ids)``: recall in [0, 1] (0.0 when there is no ground truth) and
    int [K] indices of the predictions whose best IoU is >= ``iou``.
    """
    pred_boxes = np.asarray(pred_boxes).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    if len(gt_boxes) == 0 or len(pred_boxes) == 0:
        return 0.0, np.zeros([0], np.int64)
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    iou_max = np.max(overlaps, axis=1)
    iou_argmax = np.argmax(overlaps, axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    matched_gt_boxes = iou_argmax[positive_ids]
    recall = len(set(matched_gt_boxes.tolist())) / gt_boxes.shape[0]
    return recall, positive_ids
