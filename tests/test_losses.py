"""The five Mask R-CNN losses and the weight decay term against the loop-by-loop NumPy
references in tests/reference.py, on small random inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from mrcnn.training import losses

N, A, K, T, C, H, W = 2, 24, 6, 8, 4, 5, 5


def _rpn_inputs(rng, positives_per_image):
    match = rng.choice([-1, 0], size=(N, A))
    for i, p in enumerate(positives_per_image):
        match[i, rng.choice(A, p, replace=False)] = 1
    target = np.zeros((N, K, 4), np.float32)
    for i, p in enumerate(positives_per_image):
        target[i, :p] = rng.normal(size=(p, 4))
    logits = rng.normal(scale=2.0, size=(N, A, 2)).astype(np.float32)
    pred = rng.normal(scale=1.5, size=(N, A, 4)).astype(np.float32)  # |diff| on both sides of 1
    return match.astype(np.int32), target, logits, pred


@pytest.mark.parametrize("seed", range(3))
def test_rpn_class_loss(seed):
    match, _, logits, _ = _rpn_inputs(np.random.default_rng(seed), [3, 5])
    expected = ref.rpn_class_loss(match, logits)
    # Matterport feeds rpn_match as [N, A, 1]; both layouts are accepted.
    for m in (match, match[..., None]):
        np.testing.assert_allclose(float(losses.rpn_class_loss(m, logits)), expected, rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_rpn_bbox_loss(seed):
    # Different positive counts per image: the packed targets must pair with each image's own
    # positive anchors.
    match, target, _, pred = _rpn_inputs(np.random.default_rng(seed), [2, 6])
    expected = ref.rpn_bbox_loss(target, match, pred)
    got = float(losses.rpn_bbox_loss(target, match[..., None], pred))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_rpn_losses_with_nothing_to_average_are_zero():
    match = np.zeros((N, A, 1), np.int32)
    logits = np.ones((N, A, 2), np.float32)
    assert float(losses.rpn_class_loss(match, logits)) == 0.0
    assert float(losses.rpn_bbox_loss(np.zeros((N, K, 4), np.float32), match,
                                      np.ones((N, A, 4), np.float32))) == 0.0


def _head_inputs(rng, with_positives=True):
    ids = rng.integers(0, C, size=(N, T)).astype(np.int32) if with_positives else \
        np.zeros((N, T), np.int32)
    target_bbox = np.where(ids[..., None] > 0, rng.normal(size=(N, T, 4)), 0).astype(np.float32)
    pred_bbox = rng.normal(scale=1.5, size=(N, T, C, 4)).astype(np.float32)
    target_mask = np.where(ids[..., None, None] > 0, rng.integers(0, 2, size=(N, T, H, W)),
                           0).astype(np.float32)
    pred_mask = rng.uniform(0, 1, size=(N, T - 3, H, W, C)).astype(np.float32)
    pred_mask[0, 0, 0, 0] = [0.0, 1.0, 0.0, 1.0]  # exercises the clipping
    logits = rng.normal(scale=2.0, size=(N, T, C)).astype(np.float32)
    return ids, target_bbox, pred_bbox, target_mask, pred_mask, logits


@pytest.mark.parametrize("seed", range(3))
def test_mrcnn_class_loss_counts_only_active_predictions(seed):
    rng = np.random.default_rng(seed)
    ids, _, _, _, _, logits = _head_inputs(rng)
    # Image 0's source has classes {0, 1}, image 1's {0, 2, 3}; some ROIs are predicted as an
    # inactive class, so the weighting matters.
    active = np.array([[1, 1, 0, 0], [1, 0, 1, 1]], np.int32)
    logits[0, 0, 2] = logits[0, 0].max() + 1.0
    logits[1, 0, 1] = logits[1, 0].max() + 1.0
    expected = ref.mrcnn_class_loss(ids, logits, active)
    all_active = ref.mrcnn_class_loss(ids, logits, np.ones_like(active))
    assert abs(expected - all_active) > 1e-3
    np.testing.assert_allclose(float(losses.mrcnn_class_loss(ids, logits, active)), expected,
                               rtol=1e-5)


def test_mrcnn_class_loss_with_no_active_prediction_is_zero():
    logits = np.zeros((1, 3, 3), np.float32)
    logits[..., 2] = 5.0  # every ROI predicted as class 2, inactive
    got = float(losses.mrcnn_class_loss(np.ones((1, 3), np.int32), logits,
                                        np.array([[1, 1, 0]], np.float32)))
    assert got == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_mrcnn_bbox_loss(seed):
    ids, target, pred, _, _, _ = _head_inputs(np.random.default_rng(seed))
    assert (ids > 0).any() and (ids == 0).any()
    np.testing.assert_allclose(float(losses.mrcnn_bbox_loss(target, ids, pred)),
                               ref.mrcnn_bbox_loss(target, ids, pred), rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_mrcnn_mask_loss_on_the_predicted_leading_rois(seed):
    ids, _, _, target, pred, _ = _head_inputs(np.random.default_rng(seed))
    # The training graph predicts masks for the first T - 3 ROIs only; positive ROIs beyond
    # them (none in the graph, where positives come first) are not counted.
    np.testing.assert_allclose(float(losses.mrcnn_mask_loss(target, ids, pred)),
                               ref.mrcnn_mask_loss(target, ids, pred), rtol=1e-5)


def test_empty_ground_truth_gives_zero_box_and_mask_loss():
    ids, target_bbox, pred_bbox, target_mask, pred_mask, logits = _head_inputs(
        np.random.default_rng(0), with_positives=False)
    bbox = float(losses.mrcnn_bbox_loss(target_bbox, ids, pred_bbox))
    mask = float(losses.mrcnn_mask_loss(target_mask, ids, pred_mask))
    assert bbox == 0.0 and mask == 0.0
    # The classifier still learns "background" from those ROIs.
    assert float(losses.mrcnn_class_loss(ids, logits, np.ones((N, C), np.float32))) > 0


def test_mask_loss_gradient_is_finite_at_saturated_predictions():
    import tensorflow as tf
    ids = np.array([[1, 2]], np.int32)
    target = np.array([[[[0.0, 1.0]], [[1.0, 0.0]]]], np.float32)   # [1, 2, 1, 2]
    pred = tf.Variable(np.zeros((1, 2, 1, 2, 3), np.float32))       # log(0) without clipping
    with tf.GradientTape() as tape:
        loss = losses.mrcnn_mask_loss(target, ids, pred)
    grad = tape.gradient(loss, pred)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad.numpy()))
    np.testing.assert_allclose(float(loss), ref.mrcnn_mask_loss(target, ids, pred.numpy()),
                               rtol=1e-5)


def test_weight_decay_matches_matterport_formula_and_skips_batch_norm_scale_and_shift():
    from mrcnn.layers.norm import BatchNorm
    rng = np.random.default_rng(0)
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inp)
    x = BatchNorm(name="bn")(x)
    x = keras.layers.BatchNormalization(name="keras_bn")(x)
    out = keras.layers.Dense(2, name="dense")(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    for v in model.weights:
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    named = [(v.path.split("/")[-1], v.numpy()) for v in model.trainable_weights]
    assert {"gamma", "beta", "kernel", "bias"} <= {n for n, _ in named}
    expected = ref.weight_decay(named, 0.01)
    got = float(losses.weight_decay_loss(model.trainable_weights, 0.01))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Matterport's terms by hand for the conv kernel alone: 0.01 * sum(w^2) / size(w).
    kernel = model.get_layer("conv").kernel
    np.testing.assert_allclose(float(losses.weight_decay_loss([kernel], 0.01)),
                               0.01 * np.sum(kernel.numpy() ** 2) / kernel.numpy().size,
                               rtol=1e-5)
    assert float(losses.weight_decay_loss([model.get_layer("bn").gamma], 0.01)) == 0.0
    assert float(losses.weight_decay_loss([], 0.01)) == 0.0


def test_weight_decay_gradient_is_its_formula_and_traces_no_size_ops():
    """d/dw of decay * sum(w^2) / size(w) is 2 * decay * w / size(w); the sizes are static, so
    the traced term holds no Size op (whose division autodiff would also differentiate)."""
    rng = np.random.default_rng(1)
    a = tf.Variable(rng.normal(size=(3, 3, 2, 4)).astype(np.float32))
    b = tf.Variable(rng.normal(size=(5,)).astype(np.float32))

    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            loss = losses.weight_decay_loss([a, b], 0.01)
        return tape.gradient(loss, [a, b])

    for g, v in zip(grads(), [a, b]):
        np.testing.assert_allclose(g.numpy(), 2 * 0.01 * v.numpy() / v.numpy().size, rtol=1e-6)
    types = {op.type for op in grads.get_concrete_function().graph.get_operations()}
    assert "Size" not in types and "RealDiv" not in types
