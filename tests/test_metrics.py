import numpy as np
import pytest

from mrcnn.metrics import compute_ap, compute_ap_range, compute_matches, compute_recall, trim_zeros
from mrcnn.ops.boxes_np import extract_bboxes


def masks_from_slices(shape, slices):
    masks = np.zeros(shape + (len(slices),), bool)
    for i, (ys, xs) in enumerate(slices):
        masks[ys, xs, i] = True
    return masks


# Ground truth on a 10x10 image: two class-1 instances.
#   gt0: rows 0-3, cols 0-3 (16 px); gt1: rows 5-9, cols 5-9 (25 px).
GT_MASKS = masks_from_slices((10, 10), [(slice(0, 4), slice(0, 4)),
                                        (slice(5, 10), slice(5, 10))])
GT_BOXES = extract_bboxes(GT_MASKS)
GT_CLASS_IDS = np.array([1, 1])

# Predictions, given out of score order:
#   p_a (0.7): rows 5-9, cols 5-8 plus pixel (5, 9) = 21 px inside gt1 -> IoU 21 / 25 = 0.84
#   p_b (0.9): exactly gt0                                              -> IoU 1.0
#   p_c (0.8): rows 0-3, cols 6-9, on background                        -> IoU 0
PRED_MASKS = masks_from_slices((10, 10), [(slice(5, 10), slice(5, 9)),
                                          (slice(0, 4), slice(0, 4)),
                                          (slice(0, 4), slice(6, 10))])
PRED_MASKS[5, 9, 0] = True
PRED_BOXES = extract_bboxes(PRED_MASKS)
PRED_CLASS_IDS = np.array([1, 1, 1])
PRED_SCORES = np.array([0.7, 0.9, 0.8])


def ap(iou_threshold=0.5, **overrides):
    args = dict(gt_boxes=GT_BOXES, gt_class_ids=GT_CLASS_IDS, gt_masks=GT_MASKS,
                pred_boxes=PRED_BOXES, pred_class_ids=PRED_CLASS_IDS, pred_scores=PRED_SCORES,
                pred_masks=PRED_MASKS)
    args.update(overrides)
    return compute_ap(**args, iou_threshold=iou_threshold)


def test_trim_zeros():
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(trim_zeros(x), [[1, 2, 3, 4], [0, 0, 1, 0]])
    with pytest.raises(ValueError):
        trim_zeros(np.zeros(4))


def test_compute_matches_hand_worked():
    gt_match, pred_match, overlaps = compute_matches(
        GT_BOXES, GT_CLASS_IDS, GT_MASKS, PRED_BOXES, PRED_CLASS_IDS, PRED_SCORES, PRED_MASKS)
    # Score order: p_b (0.9), p_c (0.8), p_a (0.7).
    np.testing.assert_array_equal(pred_match, [0, -1, 1])
    np.testing.assert_array_equal(gt_match, [0, 2])
    np.testing.assert_allclose(overlaps, [[1.0, 0.0], [0.0, 0.0], [0.0, 0.84]])


def test_compute_ap_hand_worked():
    # Score order p_b TP, p_c FP, p_a TP, 2 ground truths:
    #   precisions 1/1, 1/2, 2/3; recalls 0.5, 0.5, 1.0.
    #   Padded and made non-increasing from the right: precision 1 up to recall 0.5,
    #   2/3 up to recall 1. AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    m_ap, precisions, recalls, overlaps = ap(0.5)
    assert m_ap == pytest.approx(5 / 6)
    np.testing.assert_allclose(precisions, [1, 1, 2 / 3, 2 / 3, 0])
    np.testing.assert_allclose(recalls, [0, 0.5, 0.5, 1, 1])
    assert overlaps.shape == (3, 2)
    # At IoU 0.85, p_a (IoU 0.84) is a false positive: recall stops at 0.5, AP = 0.5 * 1.
    assert ap(0.85)[0] == pytest.approx(0.5)


def test_compute_ap_range_is_the_mean(capsys):
    assert compute_ap_range(GT_BOXES, GT_CLASS_IDS, GT_MASKS, PRED_BOXES, PRED_CLASS_IDS,
                            PRED_SCORES, PRED_MASKS, iou_thresholds=[0.5, 0.85],
                            verbose=1) == pytest.approx((5 / 6 + 0.5) / 2)
    out = capsys.readouterr().out
    assert "AP @0.50" in out and "AP @0.50-0.85" in out
    # Default thresholds 0.50 .. 0.95: 5/6 up to 0.80 (7 thresholds), 0.5 from 0.85 (3).
    assert compute_ap_range(GT_BOXES, GT_CLASS_IDS, GT_MASKS, PRED_BOXES, PRED_CLASS_IDS,
                            PRED_SCORES, PRED_MASKS, verbose=0) == pytest.approx(
        (7 * 5 / 6 + 3 * 0.5) / 10)


def test_wrong_class_and_duplicates_are_false_positives():
    # All predictions exactly gt0; one has the wrong class, one is a duplicate.
    masks = np.repeat(GT_MASKS[..., :1], 3, axis=2)
    m_ap, precisions, recalls, _ = ap(pred_masks=masks, pred_boxes=extract_bboxes(masks),
                                      pred_class_ids=np.array([2, 1, 1]),
                                      pred_scores=np.array([0.9, 0.8, 0.7]))
    # FP (class 2), TP, FP (gt0 taken): recall reaches 0.5 with precision 1/2 -> AP 0.25.
    assert m_ap == pytest.approx(0.25)


def test_zero_padding_is_ignored():
    pad_boxes = np.concatenate([GT_BOXES, np.zeros((2, 4), np.int32)])
    pad_ids = np.concatenate([GT_CLASS_IDS, [0, 0]])
    pad_masks = np.concatenate([GT_MASKS, np.zeros((10, 10, 2), bool)], axis=2)
    assert ap(gt_boxes=pad_boxes, gt_class_ids=pad_ids,
              gt_masks=pad_masks)[0] == pytest.approx(5 / 6)


def test_empty_predictions():
    m_ap, precisions, recalls, overlaps = ap(
        pred_boxes=np.zeros((0, 4)), pred_class_ids=np.zeros((0,), np.int32),
        pred_scores=np.zeros((0,)), pred_masks=np.zeros((10, 10, 0), bool))
    assert m_ap == 0.0
    assert overlaps.shape == (0, 2)
    gt_match, pred_match, _ = compute_matches(
        GT_BOXES, GT_CLASS_IDS, GT_MASKS, np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,)),
        np.zeros((10, 10, 0), bool))
    np.testing.assert_array_equal(gt_match, [-1, -1])
    assert pred_match.shape == (0,)


def test_empty_ground_truth():
    empty = dict(gt_boxes=np.zeros((0, 4)), gt_class_ids=np.zeros((0,), np.int32),
                 gt_masks=np.zeros((10, 10, 0), bool))
    m_ap, precisions, recalls, overlaps = ap(**empty)
    assert m_ap == 0.0 and np.all(np.isfinite(precisions)) and np.all(np.isfinite(recalls))
    assert overlaps.shape == (3, 0)
    assert ap(**empty, pred_boxes=np.zeros((0, 4)), pred_class_ids=np.zeros((0,)),
              pred_scores=np.zeros((0,)), pred_masks=np.zeros((10, 10, 0), bool))[0] == 1.0


def test_compute_recall_hand_worked():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    pred = np.array([[0, 0, 10, 10],     # IoU 1 with gt0
                     [0, 5, 10, 15],     # IoU 50 / 150 with gt0
                     [50, 50, 60, 60]])  # nothing
    recall, positive_ids = compute_recall(pred, gt, 0.5)
    assert recall == 0.5
    np.testing.assert_array_equal(positive_ids, [0])
    recall, positive_ids = compute_recall(pred, gt, 0.3)
    assert recall == 0.5   # both positives hit gt0
    np.testing.assert_array_equal(positive_ids, [0, 1])
    assert compute_recall(np.zeros((0, 4)), gt, 0.5)[0] == 0.0
    assert compute_recall(pred, np.zeros((0, 4)), 0.5)[0] == 0.0
