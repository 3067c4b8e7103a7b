import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn.ops.boxes_np import (
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

STD = np.array([0.1, 0.1, 0.2, 0.2])


@st.composite
def boxes_strategy(draw, n=None, min_size=1.0):
    """Float boxes (y1, x1, y2, x2) of positive size inside a 1000 px frame."""
    count = n if n is not None else draw(st.integers(1, 6))
    out = []
    for _ in range(count):
        y1 = draw(st.floats(0, 900, allow_nan=False))
        x1 = draw(st.floats(0, 900, allow_nan=False))
        h = draw(st.floats(min_size, 300, allow_nan=False))
        w = draw(st.floats(min_size, 300, allow_nan=False))
        out.append([y1, x1, y1 + h, x1 + w])
    return np.array(out, np.float64)


# ---------------------------------------------------------------- extract_bboxes
def test_extract_bboxes_one_past_last_pixel():
    mask = np.zeros((10, 12, 3), bool)
    mask[2:5, 3:9, 0] = True       # rows 2..4, cols 3..8
    mask[7, 11, 1] = True          # a single pixel in the corner column
    # instance 2 empty
    boxes = extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 9], [7, 11, 8, 12], [0, 0, 0, 0]])


def test_extract_bboxes_non_convex_and_empty_input():
    mask = np.zeros((6, 6, 1), np.uint8)
    mask[0, 1, 0] = 1
    mask[4, 5, 0] = 1
    np.testing.assert_array_equal(extract_bboxes(mask), [[0, 1, 5, 6]])
    assert extract_bboxes(np.zeros((4, 4, 0), bool)).shape == (0, 4)
    with pytest.raises(ValueError, match="shape"):
        extract_bboxes(np.zeros((4, 4), bool))


# ---------------------------------------------------------------- IoU
def test_compute_iou_hand_worked():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([[0, 0, 10, 10],    # identical -> 1
                      [0, 5, 10, 15],    # half overlap: 50 / 150
                      [20, 20, 30, 30],  # disjoint -> 0
                      [2, 2, 4, 4]])     # inside: 4 / 100
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = compute_iou(box, boxes, 100, areas)
    np.testing.assert_allclose(iou, [1.0, 50 / 150, 0.0, 0.04])


def test_compute_overlaps_hand_worked_and_shapes():
    a = np.array([[0, 0, 10, 10], [0, 0, 20, 20]])
    b = np.array([[5, 5, 15, 15]])
    # overlap of first pair: 5x5 = 25, union 100 + 100 - 25; second: 100 / (400 + 100 - 100)
    np.testing.assert_allclose(compute_overlaps(a, b), [[25 / 175], [100 / 400]])
    assert compute_overlaps(np.zeros((0, 4)), b).shape == (0, 1)
    assert compute_overlaps(a, np.zeros((0, 4))).shape == (2, 0)


def test_compute_overlaps_degenerate_boxes_give_zero():
    z = np.array([[3, 3, 3, 3]])
    np.testing.assert_array_equal(compute_overlaps(z, z), [[0.0]])


@settings(max_examples=60, deadline=None)
@given(boxes_strategy(), boxes_strategy())
def test_iou_in_unit_interval_and_symmetric(a, b):
    ab = compute_overlaps(a, b)
    ba = compute_overlaps(b, a)
    assert ab.shape == (len(a), len(b))
    assert np.all(ab >= 0) and np.all(ab <= 1 + 1e-12)
    np.testing.assert_allclose(ab, ba.T)
    # Each box overlaps itself fully.
    np.testing.assert_allclose(np.diag(compute_overlaps(a, a)), 1.0)
    # Agrees with the one-against-many form.
    areas_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    area_a0 = (a[0, 2] - a[0, 0]) * (a[0, 3] - a[0, 1])
    np.testing.assert_allclose(compute_iou(a[0], b, area_a0, areas_b), ab[0])


def test_compute_overlaps_masks_hand_worked():
    m1 = np.zeros((4, 4, 2), bool)
    m1[:2, :, 0] = True           # top half, 8 px
    m1[:, :, 1] = True            # all, 16 px
    m2 = np.zeros((4, 4, 2), bool)
    m2[:, :2, 0] = True           # left half, 8 px
    # m2[..., 1] empty
    ov = compute_overlaps_masks(m1, m2)
    # top half vs left half: intersection 4, union 12; all vs left: 8 / 16.
    np.testing.assert_allclose(ov, [[4 / 12, 0.0], [0.5, 0.0]])
    assert compute_overlaps_masks(m1, np.zeros((4, 4, 0), bool)).shape == (2, 0)
    assert compute_overlaps_masks(np.zeros((0, 0, 0), bool), m2).shape == (0, 2)


# ---------------------------------------------------------------- NMS
def test_non_max_suppression_hand_worked():
    boxes = np.array([[0, 0, 10, 10],
                      [0, 1, 10, 11],     # IoU with box 0 = 90 / 110 = 0.82
                      [20, 20, 30, 30],
                      [0, 5, 10, 15]])    # IoU with box 0 = 50 / 150 = 0.33
    scores = np.array([0.9, 0.95, 0.5, 0.8])
    keep = non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    # 1 (best) suppresses 0; 3 has IoU 60/140 = 0.43 with 1 -> kept; 2 disjoint -> kept.
    np.testing.assert_array_equal(keep, [1, 3, 2])
    # A threshold just below 0.43 also suppresses box 3.
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.4), [1, 2])


def test_non_max_suppression_empty():
    keep = non_max_suppression(np.zeros((0, 4)), np.zeros((0,)), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int32


@settings(max_examples=40, deadline=None)
@given(boxes_strategy(), st.floats(0.1, 0.9))
def test_non_max_suppression_kept_boxes_do_not_overlap(boxes, threshold):
    scores = np.linspace(1, 0, len(boxes))
    keep = non_max_suppression(boxes, scores, threshold)
    ov = compute_overlaps(boxes[keep], boxes[keep])
    np.fill_diagonal(ov, 0)
    assert np.all(ov <= threshold)
    # Every dropped box overlaps some kept box above the threshold.
    dropped = np.setdiff1d(np.arange(len(boxes)), keep)
    if len(dropped):
        assert np.all(compute_overlaps(boxes[dropped], boxes[keep]).max(axis=1) > threshold)


# ---------------------------------------------------------------- deltas
def test_box_refinement_hand_worked():
    box = np.array([[0, 0, 10, 20]])       # h 10, w 20, center (5, 10)
    gt = np.array([[5, 0, 25, 20]])        # h 20, w 20, center (15, 10)
    deltas = box_refinement(box, gt)
    np.testing.assert_allclose(deltas, [[1.0, 0.0, np.log(2.0), 0.0]], rtol=1e-6)
    np.testing.assert_allclose(encode_boxes_np(box, gt, STD),
                               [[10.0, 0.0, np.log(2.0) / 0.2, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(apply_box_deltas(box, deltas), gt, atol=1e-5)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_refinement_round_trip(data):
    n = data.draw(st.integers(1, 5))
    boxes = data.draw(boxes_strategy(n=n))
    gt = data.draw(boxes_strategy(n=n))
    deltas = box_refinement(boxes, gt)
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(apply_box_deltas(boxes, deltas), gt, rtol=1e-5, atol=1e-2)
    std = np.array(data.draw(st.lists(st.floats(0.05, 2.0), min_size=4, max_size=4)))
    encoded = encode_boxes_np(boxes, gt, std)
    np.testing.assert_allclose(encoded * std, deltas, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(decode_boxes_np(boxes, encoded, std), gt, rtol=1e-5, atol=1e-2)


def test_deltas_accept_leading_axes():
    boxes = np.array([[[0, 0, 10, 10], [5, 5, 15, 25]]], np.float32)  # [1, 2, 4]
    deltas = np.zeros_like(boxes)
    np.testing.assert_allclose(apply_box_deltas(boxes, deltas), boxes)
    assert box_refinement(boxes, boxes).shape == (1, 2, 4)


# ---------------------------------------------------------------- normalization
def test_norm_boxes_hand_worked():
    shape = (101, 201)  # scale (100, 200, 100, 200), shift (0, 0, 1, 1)
    boxes = np.array([[0, 0, 101, 201], [10, 20, 51, 101]])
    norm = norm_boxes(boxes, shape)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm, [[0, 0, 1, 1], [0.1, 0.1, 0.5, 0.5]], rtol=1e-6)
    den = denorm_boxes(norm, shape)
    assert den.dtype == np.int32
    np.testing.assert_array_equal(den, boxes)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 2000), st.integers(2, 2000), st.data())
def test_norm_denorm_round_trip(h, w, data):
    y1 = data.draw(st.integers(0, h - 1))
    x1 = data.draw(st.integers(0, w - 1))
    y2 = data.draw(st.integers(y1 + 1, h))
    x2 = data.draw(st.integers(x1 + 1, w))
    boxes = np.array([[y1, x1, y2, x2]])
    np.testing.assert_array_equal(denorm_boxes(norm_boxes(boxes, (h, w)), (h, w)), boxes)
