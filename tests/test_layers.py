"""Numerical layers against the NumPy references in tests/reference.py."""

import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from conftest import random_boxes
from mrcnn.layers.anchors import AnchorsLayer, pyramid_anchors_tf
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.detection_targets import DetectionTargetLayer
from mrcnn.layers.proposals import ProposalLayer
from mrcnn.layers.roi_align import PyramidROIAlign, crop_and_resize_summed_grad
from mrcnn.ops import boxes as tfboxes
from mrcnn.ops import boxes_np

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def _meta(n, image_shape, window, num_classes=4):
    meta = np.zeros((n, 12 + num_classes), np.float32)
    meta[:, 4:7] = image_shape
    meta[:, 7:11] = window
    meta[:, 11] = 1.0
    return meta


def test_codec_matches_numpy_twin_and_round_trips():
    rng = np.random.default_rng(0)
    a = random_boxes(rng, 50) * 100
    b = random_boxes(rng, 50) * 100
    deltas = tfboxes.encode_boxes(a, b, STD).numpy()
    np.testing.assert_allclose(deltas, boxes_np.encode_boxes_np(a, b, STD), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tfboxes.decode_boxes(a, deltas, STD).numpy(), b, atol=1e-3)
    np.testing.assert_allclose(boxes_np.decode_boxes_np(a, deltas, STD), b, atol=1e-3)


def test_box_iou_matches_numpy():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 7), random_boxes(rng, 9)
    expected = np.array([[ref.iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(tfboxes.box_iou(a, b).numpy(), expected, atol=1e-6)


def test_proposal_layer_matches_reference():
    rng = np.random.default_rng(2)
    n, a = 2, 300
    anchors = random_boxes(rng, a, min_size=0.1)
    logits = rng.normal(size=(n, a, 2)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    deltas = rng.normal(scale=0.5, size=(n, a, 4)).astype(np.float32)
    layer = ProposalLayer(proposal_count=40, nms_threshold=0.6, pre_nms_limit=120,
                          bbox_std_dev=STD)
    out = layer([probs, deltas, anchors[None]]).numpy()
    assert out.shape == (n, 40, 4)
    for i in range(n):
        expected = ref.proposals(probs[i], deltas[i], anchors, 40, 0.6, 120, STD)
        np.testing.assert_allclose(out[i], expected, atol=1e-5)


def test_proposal_layer_pads_with_zeros_when_few_boxes_survive():
    anchors = np.tile(np.array([[0.1, 0.1, 0.5, 0.5]], np.float32), (5, 1))
    probs = np.tile(np.array([[0.2, 0.8]], np.float32), (1, 5, 1))
    out = ProposalLayer(10, 0.5, 100, STD)([probs, np.zeros((1, 5, 4), np.float32),
                                            anchors[None]]).numpy()
    # Identical boxes collapse to one survivor; the rest is zero padding.
    assert np.count_nonzero(out[0].sum(axis=1)) == 1
    np.testing.assert_allclose(out[0, 0], anchors[0], atol=1e-6)


@pytest.mark.parametrize("image_shape", [(512, 512), (448, 320)])
def test_pyramid_roi_align_matches_reference(image_shape):
    rng = np.random.default_rng(3)
    h, w = image_shape
    maps = [rng.normal(size=(2, h // s, w // s, 3)).astype(np.float32) for s in (4, 8, 16, 32)]
    boxes = random_boxes(rng, 2 * 12, min_size=0.02).reshape(2, 12, 4)
    # Make sure several levels are used: tiny, medium and whole-image boxes.
    boxes[0, 0] = [0.1, 0.1, 0.15, 0.15]
    boxes[0, 1] = [0.0, 0.0, 1.0, 1.0]
    meta = _meta(2, (h, w, 3), (0, 0, h, w))
    out = PyramidROIAlign((5, 4))([boxes, meta] + maps).numpy()
    expected = ref.pyramid_roi_align(boxes, maps, (h, w), (5, 4))
    levels = {ref.roi_level(b, (h, w)) for b in boxes.reshape(-1, 4)}
    assert len(levels) >= 3
    np.testing.assert_allclose(out, expected, atol=1e-4)


def _crop_grads(crop, image, boxes, box_indices, size, dy):
    image = tf.constant(image)
    with tf.GradientTape() as tape:
        tape.watch(image)
        crops = crop(image, boxes, box_indices, size)
        loss = tf.reduce_sum(crops * dy)
    return crops.numpy(), tape.gradient(loss, image).numpy()


@pytest.mark.parametrize("size", [(7, 7), (5, 4), (1, 1), (14, 14)])
def test_crop_and_resize_summed_grad_loses_no_update(size):
    """Forward: TensorFlow's kernel. Gradient to the image: the NumPy adjoint, with 400 boxes
    piled on the same pixels of two images (where TensorFlow's threaded CPU gradient loses
    additions) and some boxes partly outside the image; and the same bits on every run."""
    rng = np.random.default_rng(7)
    n = 400  # enough work per call that TensorFlow's kernel runs on several threads
    image = rng.normal(size=(2, 16, 20, 64)).astype(np.float32)
    centers = rng.uniform(0.35, 0.55, size=(n, 2))
    halves = rng.uniform(0.05, 0.4, size=(n, 2))
    boxes = np.concatenate([centers - halves, centers + halves], axis=1).astype(np.float32)
    boxes[:3] = [[-0.2, 0.1, 0.5, 0.6], [0.5, 0.7, 1.3, 1.1], [0.2, -0.5, 0.4, -0.1]]
    box_indices = rng.integers(0, 2, n).astype(np.int32)
    dy = rng.normal(size=(n,) + size + (64,)).astype(np.float32)
    crops, grad = _crop_grads(crop_and_resize_summed_grad, image, boxes, box_indices, size, dy)
    np.testing.assert_array_equal(
        crops, tf.image.crop_and_resize(image, boxes, box_indices, size).numpy())
    expected = np.zeros(image.shape)
    for k in range(len(boxes)):
        expected[box_indices[k]] += ref.crop_and_resize_image_grad(image.shape[1:], boxes[k],
                                                                    size, dy[k])
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-3)
    again = [_crop_grads(crop_and_resize_summed_grad, image, boxes, box_indices, size, dy)[1]
             for _ in range(3)]
    assert all(np.array_equal(grad, g) for g in again)


def test_pyramid_roi_align_training_gradient_matches_reference():
    """In training calls the feature maps' gradient is the NumPy adjoint over every level."""
    rng = np.random.default_rng(8)
    h, w = 256, 256
    maps = [tf.constant(rng.normal(size=(2, h // s, w // s, 2)).astype(np.float32))
            for s in (4, 8, 16, 32)]
    boxes = random_boxes(rng, 2 * 40, min_size=0.02).reshape(2, 40, 4)
    boxes[0, :20] = [0.2, 0.2, 0.3, 0.3]   # twenty boxes on the same P2 pixels
    meta = _meta(2, (h, w, 3), (0, 0, h, w))
    dy = rng.normal(size=(2, 40, 3, 3, 2)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(maps)
        out = PyramidROIAlign((3, 3))([boxes, meta] + maps, training=True)
        loss = tf.reduce_sum(out * dy)
    grads = tape.gradient(loss, maps)
    expected = [np.zeros(m.shape) for m in maps]
    for i in range(2):
        for k in range(40):
            level = ref.roi_level(boxes[i, k], (h, w))
            expected[level - 2][i] += ref.crop_and_resize_image_grad(
                maps[level - 2].shape[1:], boxes[i, k], (3, 3), dy[i, k])
    assert len({ref.roi_level(b, (h, w)) for b in boxes.reshape(-1, 4)}) >= 3
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-4, atol=1e-4)


def test_detection_layer_matches_reference():
    rng = np.random.default_rng(4)
    n, r, c = 2, 60, 4
    rois = random_boxes(rng, n * r, min_size=0.05).reshape(n, r, 4)
    logits = rng.normal(scale=2.0, size=(n, r, c)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    deltas = rng.normal(scale=0.5, size=(n, r, c, 4)).astype(np.float32)
    meta = _meta(n, (128, 128, 3), (16, 0, 112, 128))
    layer = DetectionLayer(max_instances=15, min_confidence=0.3, nms_threshold=0.3,
                           bbox_std_dev=STD)
    out = layer([rois, probs, deltas, meta]).numpy()
    window = boxes_np.norm_boxes(np.array([[16, 0, 112, 128]]), (128, 128))[0]
    for i in range(n):
        expected = ref.detections(rois[i], probs[i], deltas[i], window, 15, 0.3, 0.3, STD)
        np.testing.assert_allclose(out[i], expected, atol=1e-5)
    assert np.all(out[..., 0] >= window[0] - 1e-6) and np.all(out[..., 2] <= window[2] + 1e-6)


def test_detection_layer_returns_zeros_when_nothing_is_confident():
    probs = np.zeros((1, 5, 3), np.float32)
    probs[..., 0] = 1.0  # everything is background
    out = DetectionLayer(4, 0.5, 0.3, STD)([np.full((1, 5, 4), 0.2, np.float32), probs,
                                            np.zeros((1, 5, 3, 4), np.float32),
                                            _meta(1, (64, 64, 3), (0, 0, 64, 64), 3)]).numpy()
    assert out.shape == (1, 4, 6) and not out.any()


def test_in_graph_anchors_match_numpy_generator(tiny_config):
    from mrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors
    for shape in [(128, 128), (192, 320)]:
        c = tiny_config
        expected = generate_pyramid_anchors(c.RPN_ANCHOR_SCALES, c.RPN_ANCHOR_RATIOS,
                                            compute_backbone_shapes(c, shape + (3,)),
                                            c.BACKBONE_STRIDES, c.RPN_ANCHOR_STRIDE)
        expected = boxes_np.norm_boxes(expected, shape)
        got = pyramid_anchors_tf(shape, c.RPN_ANCHOR_SCALES, c.RPN_ANCHOR_RATIOS,
                                 c.BACKBONE_STRIDES, c.RPN_ANCHOR_STRIDE).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)
        layer_out = AnchorsLayer(c.RPN_ANCHOR_SCALES, c.RPN_ANCHOR_RATIOS, c.BACKBONE_STRIDES)(
            np.zeros((1,) + shape + (3,), np.float32))
        assert layer_out.shape == (1,) + expected.shape


def test_detection_targets_sampling_and_encoding():
    # Two gt boxes, proposals: 2 exact copies (positives), 1 crowd overlap, 5 far negatives.
    gt_boxes = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8], [0.0, 0.6, 0.2, 0.9],
                         [0, 0, 0, 0]], np.float32)
    gt_ids = np.array([1, 2, -1, 0], np.int32)
    proposals = np.zeros((12, 4), np.float32)
    proposals[0] = [0.12, 0.1, 0.4, 0.42]
    proposals[1] = [0.5, 0.52, 0.88, 0.8]
    proposals[2] = [0.0, 0.62, 0.2, 0.9]  # on the crowd box: neither positive nor negative
    proposals[3:8] = [[0.4, 0.0, 0.5, 0.1], [0.9, 0.0, 1.0, 0.1], [0.4, 0.4, 0.5, 0.5],
                      [0.2, 0.4, 0.3, 0.5], [0.9, 0.9, 1.0, 1.0]]
    masks = np.zeros((28, 28, 4), bool)
    masks[:14, :, 0] = True  # top half of gt 0 (mini mask frame)
    masks[:, :, 1] = True
    layer = DetectionTargetLayer(train_rois_per_image=9, roi_positive_ratio=0.5,
                                 mask_shape=(6, 6), use_mini_mask=True, bbox_std_dev=STD)
    rois, ids, deltas, tmasks = [t.numpy()[0] for t in layer(
        [proposals[None], gt_ids[None], gt_boxes[None], masks[None]])]
    assert rois.shape == (9, 4) and tmasks.shape == (9, 6, 6)
    positives = ids > 0
    # int(9 * 0.5) = 4 positives allowed, 2 exist; negatives = int(2 / 0.5) - 2 = 2.
    assert positives.sum() == 2 and np.count_nonzero(rois.sum(1)) == 4
    assert not any(np.allclose(r, proposals[2]) for r in rois)
    for k in np.flatnonzero(positives):
        g = 0 if np.allclose(rois[k], proposals[0]) else 1
        assert ids[k] == gt_ids[g]
        np.testing.assert_allclose(deltas[k], boxes_np.encode_boxes_np(
            rois[k][None], gt_boxes[g][None], STD)[0], atol=1e-4)
        gy1, gx1, gy2, gx2 = gt_boxes[g]
        y1, x1, y2, x2 = rois[k]
        in_gt = [(y1 - gy1) / (gy2 - gy1), (x1 - gx1) / (gx2 - gx1),
                 (y2 - gy1) / (gy2 - gy1), (x2 - gx1) / (gx2 - gx1)]
        expected = np.round(ref.crop_and_resize(masks[..., g:g + 1].astype(np.float64), in_gt,
                                                (6, 6))[..., 0])
        np.testing.assert_array_equal(tmasks[k], expected)
        assert 0 < tmasks[k].sum() < 36 if g == 0 else tmasks[k].sum() >= 30
    assert not deltas[~positives].any() and not tmasks[~positives].any()


def test_detection_targets_without_ground_truth_give_empty_targets():
    layer = DetectionTargetLayer(8, 0.33, (4, 4), False, STD)
    out = layer([random_boxes(np.random.default_rng(5), 6)[None], np.zeros((1, 3), np.int32),
                 np.zeros((1, 3, 4), np.float32), np.zeros((1, 16, 16, 3), bool)])
    rois, ids, deltas, masks = [t.numpy() for t in out]
    assert not rois.any() and not ids.any() and not deltas.any() and not masks.any()


@pytest.mark.parametrize("layer", [
    ProposalLayer(10, 0.7, 100, STD, name="p"),
    DetectionLayer(5, 0.5, 0.3, STD, name="d"),
    PyramidROIAlign((7, 7), name="r"),
    DetectionTargetLayer(8, 0.33, (28, 28), True, STD, name="t"),
    AnchorsLayer((8, 16), (0.5, 1.0), (4, 8), 1, name="a"),
])
def test_custom_layers_config_equals_constructor_arguments(layer):
    import keras
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    own = {k: v for k, v in config.items() if k not in keras.layers.Layer(name="x").get_config()}
    import inspect
    params = set(inspect.signature(type(layer).__init__).parameters) - {"self", "kwargs"}
    assert set(own) == params


@pytest.mark.parametrize("train_bn,training", [(False, True), (False, False), (True, False)])
def test_folded_batch_norm_equals_separate_layers(train_bn, training):
    import keras
    from mrcnn.backbone.resnet import conv_bn
    rng = np.random.default_rng(7)
    inp = keras.Input((9, 9, 3))
    model = keras.Model(inp, conv_bn(inp, 5, 3, 2, "c", "b", train_bn, True))
    conv, bn = model.get_layer("c"), model.get_layer("b")
    bn.set_weights([rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.normal(size=5),
                    rng.uniform(0.5, 2, 5)])
    conv.set_weights([rng.normal(size=(3, 3, 3, 5)), rng.normal(size=5)])
    x = tf.constant(rng.normal(size=(2, 9, 9, 3)), tf.float32)

    def run():
        with tf.GradientTape() as tape:
            y = model(x, training=training)
            loss = tf.reduce_sum(y * y)
        return y.numpy(), [g.numpy() for g in tape.gradient(loss, [bn.gamma, bn.beta,
                                                                    conv.kernel, conv.bias])]

    folded_y, folded_g = run()
    assert bn.folded
    object.__setattr__(conv, "_folded_bn", None)
    bn.folded = False
    plain_y, plain_g = run()
    np.testing.assert_allclose(folded_y, plain_y, rtol=1e-4, atol=1e-4)
    for a, b in zip(folded_g, plain_g):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_upsample2x_equals_repeat_and_keras_upsampling():
    import keras
    from mrcnn.layers.misc import Upsample2x
    x = np.random.default_rng(8).normal(size=(2, 3, 5, 4)).astype(np.float32)
    expected = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(Upsample2x()(x).numpy(), expected)
    np.testing.assert_array_equal(keras.layers.UpSampling2D(2)(x).numpy(), expected)


# Hand-made DetectionTargetLayer scene on an 11 x 11 image (normalized = pixel / 10 for the
# box corners, so the crop sample positions land on round numbers). Pixel gt boxes:
# gt1 rows 0-10, cols 0-4 -> normalized (0, 0, 1, 0.4); gt2 rows 6-10, cols 6-10 ->
# (0.6, 0.6, 1, 1).
_GT_BOXES = np.array([[0.0, 0.0, 1.0, 0.4], [0.6, 0.6, 1.0, 1.0], [0, 0, 0, 0]], np.float32)
_GT_IDS = np.array([3, 2, 0], np.int32)
_PROPOSALS = np.zeros((8, 4), np.float32)
_PROPOSALS[:5] = [[0.0, 0.1, 1.0, 0.5],    # p0: gt1 IoU 0.3 / 0.5 = 0.6  -> positive
                  [0.0, 0.8, 0.2, 1.0],    # p1: no overlap              -> negative
                  [0.6, 0.6, 1.0, 1.0],    # p2: gt2 IoU 1               -> positive
                  [0.2, 0.5, 0.4, 0.7],    # p3: no overlap              -> negative
                  [0.0, 0.0, 1.0, 0.9]]    # p4: gt1 IoU 0.4 / 0.9 = 0.44 -> negative


def _targets(masks, use_mini_mask, mask_shape):
    # T = 6, ratio 0.5: up to 3 positives; 2 exist, so int(2 / 0.5) - 2 = 2 negatives.
    layer = DetectionTargetLayer(train_rois_per_image=6, roi_positive_ratio=0.5,
                                 mask_shape=mask_shape, use_mini_mask=use_mini_mask,
                                 bbox_std_dev=STD)
    return [t.numpy()[0] for t in layer([_PROPOSALS[None], _GT_IDS[None], _GT_BOXES[None],
                                         masks[None]])]


def _check_sampling(rois, ids, deltas):
    which = [next((p for p in range(5) if np.allclose(r, _PROPOSALS[p])), None) for r in rois]
    assert sorted(which[:2]) == [0, 2]                   # positives first, in either order
    assert set(which[2:4]) <= {1, 3, 4} and len(set(which[2:4])) == 2
    assert not rois[4:].any()
    assert list(ids[2:]) == [0, 0, 0, 0] and not deltas[2:].any()
    row = {p: k for k, p in enumerate(which[:2])}
    assert ids[row[0]] == 3 and ids[row[2]] == 2
    # p0 -> gt1: centre x 0.3 -> 0.2 over width 0.4, same size; p2 is gt2 itself.
    np.testing.assert_allclose(deltas[row[0]], [0, -0.1 / 0.4 / 0.1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(deltas[row[2]], [0, 0, 0, 0], atol=1e-6)
    return row


def test_detection_targets_full_masks_hand_made():
    masks = np.zeros((11, 11, 3), bool)
    masks[:, :5, 0] = True
    masks[6:, 6:, 1] = True
    masks[6:8, 9:, 1] = False  # gt2 misses its top-right 2 x 2 corner
    rois, ids, deltas, tmasks = _targets(masks, False, (6, 6))
    row = _check_sampling(rois, ids, deltas)
    # p0 samples columns 1, 1.8, 2.6, 3.4, 4.2, 5 of rows 0, 2, ..., 10: bilinear 1, 1, 1, 1,
    # 0.8, 0 -> rounded 1, 1, 1, 1, 1, 0.
    np.testing.assert_array_equal(tmasks[row[0]], np.tile([1, 1, 1, 1, 1, 0], (6, 1)))
    # p2 samples 6, 6.8, 7.6, 8.4, 9.2, 10 both ways; rows 6 and 6.8 see the cut corner
    # (8.4 -> 0.6 -> 1, 9.2 and 10 -> 0), from 7.6 down row 8 outweighs it.
    expected = np.ones((6, 6))
    expected[:2, 4:] = 0
    np.testing.assert_array_equal(tmasks[row[2]], expected)
    assert not tmasks[2:].any()


def test_detection_targets_mini_masks_hand_made():
    # 4 x 4 mini masks in each gt box's own frame.
    mini = np.zeros((4, 4, 3), bool)
    mini[:, :, 0] = np.outer([1, 1, 1, 0], [0, 1, 1, 0])
    mini[:, :, 1] = np.outer([0, 1, 1, 1], [1, 1, 1, 1])
    rois, ids, deltas, tmasks = _targets(mini, True, (5, 5))
    row = _check_sampling(rois, ids, deltas)
    # p0 in gt1's frame is (0, 0.25, 1, 1.25): rows sampled at 0, .75, 1.5, 2.25, 3 -> 1, 1, 1,
    # .75, 0; columns at .75, 1.5, 2.25, 3, 3.75 (outside: 0) -> .75, 1, .75, 0, 0. The mask is
    # separable, so each target pixel is a product (smallest nonzero .5625 -> 1).
    np.testing.assert_array_equal(tmasks[row[0]], np.outer([1, 1, 1, 1, 0], [1, 1, 1, 0, 0]))
    # p2 is gt2's own box: rows 0, .75, ... -> 0, .75, 1, 1, 1.
    np.testing.assert_array_equal(tmasks[row[2]], np.outer([0, 1, 1, 1, 1], np.ones(5)))
    assert not tmasks[2:].any()


def test_detection_targets_cap_positives_by_ratio():
    gt = np.array([[0.2, 0.2, 0.6, 0.6]], np.float32)
    proposals = np.concatenate([
        np.tile(gt, (10, 1)) + np.linspace(0, 0.05, 10)[:, None],    # IoU >= 0.6: positives
        [[0.8 + 0.01 * k, 0.8, 0.9 + 0.01 * k, 0.9] for k in range(10)],  # negatives
    ]).astype(np.float32)
    masks = np.ones((1, 8, 8, 1), bool)
    layer = DetectionTargetLayer(8, 0.25, (4, 4), True, STD)
    rois, ids, _, _ = [t.numpy()[0] for t in layer([proposals[None], np.array([[1]], np.int32),
                                                    gt[None], masks])]
    # int(8 * 0.25) = 2 positives, then int(2 / 0.25) - 2 = 6 negatives.
    assert list(ids) == [1, 1, 0, 0, 0, 0, 0, 0]
    assert all(np.any(np.all(np.isclose(r, proposals[:10]), axis=1)) for r in rois[:2])
    assert all(np.any(np.all(np.isclose(r, proposals[10:]), axis=1)) for r in rois[2:])


def test_fold_cache_equals_the_in_graph_fold_and_follows_every_write():
    import keras
    from mrcnn.backbone.resnet import conv_bn
    from mrcnn.layers import conv as conv_layers
    rng = np.random.default_rng(8)
    inp = keras.Input((9, 9, 3))
    model = keras.Model(inp, conv_bn(inp, 5, 3, 1, "c", "b", False, True))
    conv, bn = model.get_layer("c"), model.get_layer("b")
    x = tf.constant(rng.normal(size=(2, 9, 9, 3)), tf.float32)
    (cache,) = conv_layers.fold_caches(model)
    assert cache.stale and conv_layers.fold_caches(model) == [cache]  # one cache per layer
    cache.refresh()

    @tf.function
    def cached(x):
        with conv_layers.cached_folds():
            return model(x, training=False)

    graph = cached.get_concrete_function(x).graph
    assert "Rsqrt" not in {op.type for op in graph.get_operations()}
    plain = tf.function(lambda x: model(x, training=False))
    assert "Rsqrt" in {op.type for op in plain.get_concrete_function(x).graph.get_operations()}

    writes = [
        lambda: bn.set_weights([rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.normal(size=5),
                                rng.uniform(0.5, 2, 5)]),
        lambda: conv.kernel.assign(rng.normal(size=(3, 3, 3, 5))),
        lambda: conv.bias.assign_add(rng.normal(size=5)),
        lambda: bn.moving_variance.assign_sub(np.full(5, -0.7)),
        lambda: bn.gamma.assign(rng.uniform(0.5, 2, 5)),
    ]
    np.testing.assert_allclose(cached(x).numpy(), model(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)
    for write in writes:
        before = cached(x).numpy()
        write()
        assert cache.stale
        cache.refresh()
        assert not cache.stale
        after = cached(x).numpy()
        assert not np.allclose(before, after)
        np.testing.assert_allclose(after, model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert cached.experimental_get_tracing_count() == 1


def test_anchors_of_a_static_shape_are_one_constant_equal_to_the_dynamic_ones(tiny_config):
    c = tiny_config
    layer = AnchorsLayer(c.RPN_ANCHOR_SCALES, c.RPN_ANCHOR_RATIOS, c.BACKBONE_STRIDES)
    static = tf.function(lambda x: layer(x)).get_concrete_function(
        tf.TensorSpec([1, 192, 320, 3], tf.float32))
    dynamic = tf.function(lambda x: layer(x)).get_concrete_function(
        tf.TensorSpec([1, None, None, 3], tf.float32))
    types = [op.type for op in static.graph.get_operations()]
    assert types.count("Const") == 1 and len(types) <= 4, types  # input, constant, identity
    assert len(dynamic.graph.get_operations()) > 50
    x = tf.zeros([1, 192, 320, 3])
    np.testing.assert_array_equal(static(x).numpy(), dynamic(x).numpy())
