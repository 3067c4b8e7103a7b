"""RPN anchor targets (mrcnn.training.rpn_targets) on hand-made cases and against the loop-by-loop
NumPy reference in tests/reference.py. Boxes are pixel (y1, x1, y2, x2), y2/x2 exclusive."""

import numpy as np
import pytest

import reference as ref
from mrcnn.training.rpn_targets import build_rpn_targets

# Deliberately asymmetric, so a delta divided by the wrong entry shows.
STD = np.array([0.1, 0.2, 0.3, 0.4])

GT_BOXES = np.array([[0, 0, 10, 10],        # G0, area 100
                     [40, 40, 60, 60],      # G1, area 400
                     [80, 80, 100, 100]])   # crowd, area 400
GT_IDS = np.array([1, 2, -1])

# Each anchor with its IoU worked out by hand, and the label that follows.
ANCHORS = np.array([
    [0, 0, 10, 10],       # a0  G0: 100/100 = 1.0                  -> positive
    [0, 0, 10, 8],        # a1  G0: 80/100 = 0.8                   -> positive
    [0, 0, 10, 6],        # a2  G0: 60/100 = 0.6                   -> neutral
    [0, 5, 10, 15],       # a3  G0: 50/150 = 0.33                  -> neutral
    [0, 8, 10, 18],       # a4  G0: 20/180 = 0.11                  -> negative
    [20, 20, 30, 30],     # a5  no overlap                         -> negative
    [40, 40, 60, 50],     # a6  G1: 200/400 = 0.5, G1's best       -> positive (below 0.7)
    [40, 40, 60, 45],     # a7  G1: 100/400 = 0.25                 -> negative
    [50, 50, 70, 70],     # a8  G1: 100/700 = 0.14                 -> negative
    [80, 80, 90, 90],     # a9  crowd: 100/400 = 0.25              -> neutral (not negative)
    [95, 95, 105, 105],   # a10 crowd: 25/475 = 0.05               -> neutral (not negative)
    [100, 100, 110, 110],  # a11 touches the crowd box, no overlap -> negative
    [80, 80, 100, 100],   # a12 crowd: 1.0, but a crowd is no target -> neutral
    [40, 50, 60, 60],     # a13 G1: 200/400 = 0.5, ties with a6   -> positive
], np.float32)
EXPECTED_MATCH = np.array([1, 1, 0, 0, -1, -1, 1, -1, -1, 0, 0, -1, 0, 1])
# Positives in anchor order: a0, a1 (onto G0), a6, a13 (onto G1). a1: centre x 4 -> 5 over width
# 8, width 8 -> 10; a6/a13: centre x 45 / 55 -> 50 over width 10, width 10 -> 20.
EXPECTED_DELTAS = np.array([
    [0, 0, 0, 0],
    [0, 0.125 / 0.2, 0, np.log(10 / 8) / 0.4],
    [0, 0.5 / 0.2, 0, np.log(2) / 0.4],
    [0, -0.5 / 0.2, 0, np.log(2) / 0.4],
])


def test_reference_agrees_with_hand_worked_labels():
    match, best_gt = ref.rpn_match(ANCHORS, GT_IDS, GT_BOXES)
    np.testing.assert_array_equal(match, EXPECTED_MATCH)
    assert list(best_gt[[0, 1, 6, 13]]) == [0, 0, 1, 1]


def test_hand_made_case():
    match, deltas = build_rpn_targets(ANCHORS, GT_IDS, GT_BOXES, 256, STD,
                                      rng=np.random.default_rng(0))
    assert match.shape == (14,) and match.dtype == np.int32
    assert deltas.shape == (256, 4) and deltas.dtype == np.float32
    np.testing.assert_array_equal(match, EXPECTED_MATCH)
    np.testing.assert_allclose(deltas[:4], EXPECTED_DELTAS, rtol=1e-5, atol=1e-6)
    assert not deltas[4:].any()


def test_best_anchor_of_each_box_is_positive_even_far_below_threshold():
    # The only anchor that touches the box has IoU 25/400 = 0.0625.
    anchors = np.array([[0, 0, 5, 5], [50, 50, 60, 60], [100, 0, 110, 10]], np.float32)
    match, deltas = build_rpn_targets(anchors, [1], [[0, 0, 20, 20]], 16, STD)
    np.testing.assert_array_equal(match, [1, -1, -1])
    # Centre 2.5 -> 10 over size 5, size 5 -> 20.
    expected = [7.5 / 5 / 0.1, 7.5 / 5 / 0.2, np.log(4) / 0.3, np.log(4) / 0.4]
    np.testing.assert_allclose(deltas[0], expected, rtol=1e-5)


def test_box_overlapping_no_anchor_makes_no_positive():
    anchors = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    match, _ = build_rpn_targets(anchors, [1], [[50, 50, 60, 60]], 16, STD)
    np.testing.assert_array_equal(match, [-1, -1])


def test_only_crowd_boxes_gives_negatives_away_from_them():
    anchors = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [30, 30, 40, 40]], np.float32)
    match, deltas = build_rpn_targets(anchors, [-1], [[0, 0, 10, 10]], 16, STD)
    np.testing.assert_array_equal(match, [0, 0, -1])
    assert not deltas.any()


def _shifted_positives_and_far_negatives(n_pos, n_neg):
    """One box [20, 20, 60, 60]; n_pos anchors shifted down by 0..n_pos-1 px (IoU >= 0.7 up to a
    shift of 7: (40 - k) * 40 / (3200 - (40 - k) * 40)), n_neg anchors far away."""
    pos = [[20 + k, 20, 60 + k, 60] for k in range(n_pos)]
    neg = [[200 + 12 * k, 200, 210 + 12 * k, 210] for k in range(n_neg)]
    return np.array(pos + neg, np.float32), np.array([[20, 20, 60, 60]], np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balancing_keeps_at_most_half_positives(seed):
    anchors, gt = _shifted_positives_and_far_negatives(8, 20)
    full, _ = ref.rpn_match(anchors, [1], gt)
    assert (full == 1).sum() == 8 and (full == -1).sum() == 20
    match, deltas = build_rpn_targets(anchors, [1], gt, 8, STD, rng=np.random.default_rng(seed))
    positives = np.flatnonzero(match == 1)
    negatives = np.flatnonzero(match == -1)
    assert len(positives) == 4 and len(negatives) == 4
    assert set(positives) <= set(np.flatnonzero(full == 1))
    assert set(negatives) <= set(np.flatnonzero(full == -1))
    expected = [ref.encode(anchors[a], gt[0], STD) for a in positives]  # anchor order
    np.testing.assert_allclose(deltas[:4], expected, rtol=1e-5, atol=1e-6)
    assert not deltas[4:].any()


def test_balancing_fills_with_negatives_when_positives_are_few():
    anchors, gt = _shifted_positives_and_far_negatives(1, 20)
    match, _ = build_rpn_targets(anchors, [1], gt, 8, STD, rng=np.random.default_rng(0))
    assert match[0] == 1 and (match == 1).sum() == 1 and (match == -1).sum() == 7


def test_subsampling_is_random():
    anchors, gt = _shifted_positives_and_far_negatives(8, 20)
    picks = {tuple(np.flatnonzero(build_rpn_targets(anchors, [1], gt, 8, STD,
                                                    rng=np.random.default_rng(s))[0] == 1))
             for s in range(10)}
    assert len(picks) > 1


@pytest.mark.parametrize("seed", range(4))
def test_random_scenes_match_reference(seed):
    rng = np.random.default_rng(seed)
    # Float coordinates: exact IoU ties (where float32 and float64 could disagree) have
    # probability zero.
    def boxes(n, lo, hi):
        yx = rng.uniform(0, 120, size=(n, 2))
        hw = rng.uniform(lo, hi, size=(n, 2))
        return np.concatenate([yx, yx + hw], axis=1)

    anchors = boxes(300, 4, 40).astype(np.float32)
    gt = boxes(5, 8, 40).astype(np.float32)
    ids = np.array([1, 2, 3, -1, 1])
    full, best_gt = ref.rpn_match(anchors, ids, gt)
    match, deltas = build_rpn_targets(anchors, ids, gt, 1000, STD)
    np.testing.assert_array_equal(match, full)
    positives = np.flatnonzero(full == 1)
    assert len(positives) >= 4  # at least each real box's best anchor
    expected = [ref.encode(anchors[a].astype(np.float64), gt[best_gt[a]].astype(np.float64), STD)
                for a in positives]
    np.testing.assert_allclose(deltas[:len(positives)], expected, rtol=1e-4, atol=1e-4)
    assert not deltas[len(positives):].any()


# ---------------------------------------------------------------------------- against the dense form
# The anchor index must give exactly what the dense [anchors, boxes] IoU table gives (the
# implementation before it, kept in tests/reference.py), labels and deltas, bit for bit.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors  # noqa: E402
from mrcnn.training.rpn_targets import AnchorIndex, match_anchors  # noqa: E402


def _pyramid(size, scales):
    class Shapes:
        BACKBONE = "resnet50"
        BACKBONE_STRIDES = [4, 8, 16, 32, 64]
    shapes = compute_backbone_shapes(Shapes, (size, size, 3))
    return generate_pyramid_anchors(scales, [0.5, 1, 2], shapes, Shapes.BACKBONE_STRIDES, 1)


PYRAMID_256 = _pyramid(256, (16, 32, 64, 128, 256))
INDEX_256 = AnchorIndex(PYRAMID_256)


@st.composite
def scenes(draw):
    """Integer boxes as extract_bboxes makes them (tiny, thin, large, at the border, repeated so
    that IoU ties happen), some of them crowds."""
    n = draw(st.integers(0, 24))
    boxes, ids = [], []
    for _ in range(n):
        y1 = draw(st.integers(-8, 255))
        x1 = draw(st.integers(-8, 255))
        h = draw(st.sampled_from([0, 1, 2, 3, 5, 8, 16, 23, 32, 45, 64, 90, 128, 181, 256, 300]))
        w = draw(st.sampled_from([0, 1, 2, 4, 7, 16, 32, 40, 64, 100, 128, 256]))
        boxes.append([y1, x1, y1 + h, x1 + w])
        ids.append(draw(st.sampled_from([1, 1, 1, 2, -1])))
    if n and draw(st.booleans()):  # a repeated box makes every one of its anchors tie
        boxes.append(list(boxes[0]))
        ids.append(ids[0] if ids[0] > 0 else 1)
    return (np.array(ids, np.int32).reshape(-1),
            np.array(boxes, np.float32).reshape(-1, 4))


@settings(max_examples=60, deadline=None)
@given(scenes(), st.integers(0, 2 ** 31 - 1), st.sampled_from([16, 64, 256]))
def test_indexed_targets_equal_the_dense_targets_on_the_pyramid(scene, seed, per_image):
    ids, boxes = scene
    want = ref.dense_rpn_targets(PYRAMID_256, ids, boxes, per_image, STD,
                                 rng=np.random.default_rng(seed))
    got = build_rpn_targets(PYRAMID_256, ids, boxes, per_image, STD,
                            rng=np.random.default_rng(seed), index=INDEX_256)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_indexed_targets_equal_the_dense_targets_on_arbitrary_anchors(seed):
    # Anchors of every size and place (no pyramid structure), float coordinates.
    rng = np.random.default_rng(seed)
    yx = rng.uniform(-20, 120, size=(400, 2))
    anchors = np.concatenate([yx, yx + rng.uniform(0.5, 60, size=(400, 2))], 1)
    n = int(rng.integers(0, 8))
    gy = rng.uniform(0, 110, size=(n, 2))
    gt = np.concatenate([gy, gy + rng.uniform(0, 50, size=(n, 2))], 1).astype(np.float32)
    ids = rng.choice([1, 2, -1], size=n)
    want = ref.dense_rpn_targets(anchors, ids, gt, 64, STD, rng=np.random.default_rng(seed))
    got = build_rpn_targets(anchors, ids, gt, 64, STD, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_labels_before_sampling_leave_the_sampling_to_the_generator():
    # Labels are a function of the boxes alone; only sampling draws from the generator.
    ids, boxes = np.array([1, 1]), np.array([[10, 10, 60, 80], [100, 120, 200, 160]], np.float32)
    first, kept = match_anchors(INDEX_256, ids, boxes)
    second, _ = match_anchors(INDEX_256, ids, boxes)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(kept, boxes)
    assert (first == 1).sum() >= 2 and (first == -1).sum() > 1000
