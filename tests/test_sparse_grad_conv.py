"""conv2d_sparse_grad and SparseGradConv2D (mrcnn/layers/sparse_grad_conv.py): the same
convolution and the same gradients as a dense one, whichever backward branch runs."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import reference as ref

from mrcnn.layers import sparse_grad_conv
from mrcnn.layers.sparse_grad_conv import SparseGradConv2D, conv2d_sparse_grad
from mrcnn.ops import portable


def numpy_conv_and_grads(x, kernel, dy):
    """Stride-1 "same" convolution of x [N, H, W, C] by kernel [kh, kw, C, O] and the gradients
    of sum(conv * dy) with respect to x and kernel, in float64."""
    kh, kw = kernel.shape[:2]
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(x.astype(np.float64), [(0, 0), (ph, ph), (pw, pw), (0, 0)])
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # [N, H, W, C, kh, kw]
    y = ref.conv2d_same(x, kernel)
    dk = np.einsum("nhwcij,nhwo->ijco", windows, dy)
    d_padded = np.zeros_like(padded)
    h, w = x.shape[1:3]
    for i in range(kh):
        for j in range(kw):
            d_padded[:, i:i + h, j:j + w] += dy @ kernel[i, j].T
    return y, d_padded[:, ph:ph + h, pw:pw + w], dk


def sparse_output_grad(rng, shape, density):
    """[N, H, W, O] normal values on a random share ``density`` of the positions, zero elsewhere;
    within a kept position about a third of the channels are zero too (what a ReLU leaves), so a
    row must count as non-zero by any of its channels."""
    keep = rng.random(shape[:3]) < density
    channels = rng.random(shape) < 0.67
    return (rng.normal(size=shape) * keep[..., None] * channels).astype(np.float32)


def autodiff_conv(x, kernel):
    """The plain convolution, whose gradients are TensorFlow's autodiff."""
    return tf.nn.conv2d(x, kernel, 1, "SAME")


def tf_conv_and_grads(fn, x, kernel, dy, dtype=tf.float32):
    x, kernel = tf.cast(x, dtype), tf.cast(kernel, dtype)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = fn(x, kernel)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * dy)
    dx, dk = tape.gradient(loss, [x, kernel])
    return [np.asarray(tf.cast(t, tf.float32)) for t in (y, dx, dk)]


def _check_against_numpy(kh, kw, n, h, w, density, fraction, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, h, w, 4)).astype(np.float32)
    kernel = rng.normal(size=(kh, kw, 4, 6)).astype(np.float32)
    dy = sparse_output_grad(rng, (n, h, w, 6), density)
    y, dx, dk = tf_conv_and_grads(
        lambda a, b: conv2d_sparse_grad(a, b, sparse_fraction=fraction), x, kernel, dy)
    ref_y, ref_dx, ref_dk = numpy_conv_and_grads(x, kernel, dy)
    for ours, ref in ((y, ref_y), (dx, ref_dx), (dk, ref_dk)):
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kh, kw", [(3, 3), (5, 3), (1, 1)])
@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_each_branch_equals_numpy(kh, kw, fraction):
    _check_against_numpy(kh, kw, 2, 7, 6, 0.2, fraction, seed=kh * 10 + kw)


@settings(max_examples=40, deadline=None)
@given(kh=st.sampled_from([1, 3, 5]), kw=st.sampled_from([1, 3]),
       n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9),
       density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       fraction=st.sampled_from([0.0, sparse_grad_conv.SPARSE_FRACTION, 1.0]),
       seed=st.integers(0, 2 ** 16))
def test_conv_and_gradients_equal_numpy(kh, kw, n, h, w, density, fraction, seed):
    """Forward and both gradients against NumPy, with either branch forced (fraction 1.0: always
    the sparse rows; 0.0: the dense kernels unless no row is non-zero) or chosen."""
    _check_against_numpy(kh, kw, n, h, w, density, fraction, seed)


def test_sparse_rows_are_the_branch_taken_and_agree_with_autodiff(monkeypatch):
    """At RPN-like sparsity the sparse branch runs (eager tf.cond runs one branch) and its
    gradients are autodiff's; at full density the dense branch runs."""
    calls = []
    original = sparse_grad_conv._sparse_grads
    monkeypatch.setattr(sparse_grad_conv, "_sparse_grads",
                        lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 24, 24, 16)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 16, 32)).astype(np.float32)
    for density, expect_sparse in ((0.02, True), (1.0, False)):
        calls.clear()
        dy = sparse_output_grad(rng, (2, 24, 24, 32), density)
        ours = tf_conv_and_grads(conv2d_sparse_grad, x, kernel, dy)
        autodiff = tf_conv_and_grads(autodiff_conv, x, kernel, dy)
        assert bool(calls) == expect_sparse, density
        for a, b in zip(ours, autodiff):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_half_precision_gradients_follow_autodiffs_in_the_same_dtype(dtype, fraction):
    """In bfloat16 and float16, either branch against autodiff's gradients in that dtype (the
    sparse rows sum into the input's gradient in float32, so they may be the closer to float32)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 12, 12, 8)).astype(np.float32)
    kernel = (rng.normal(size=(3, 3, 8, 16)) * 0.3).astype(np.float32)
    dy = sparse_output_grad(rng, (2, 12, 12, 16), 0.05)
    ours = tf_conv_and_grads(lambda a, b: conv2d_sparse_grad(a, b, sparse_fraction=fraction),
                             x, kernel, dy, dtype)
    autodiff = tf_conv_and_grads(autodiff_conv, x, kernel, dy, dtype)
    eps = 2.0 ** -7 if dtype == tf.bfloat16 else 2.0 ** -10
    for a, b in zip(ours, autodiff):
        scale = np.abs(b).max()
        assert scale > 0
        np.testing.assert_allclose(a / scale, b / scale, atol=4 * eps)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_output_gradient_reaches_both_gradients(bad):
    """A NaN or Inf in the output gradient (a float16 loss-scale overflow) is a non-zero row: both
    gradients turn non-finite as autodiff's do, so a loss-scale optimizer still skips the step."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 16, 16, 4)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    dy = np.zeros((1, 16, 16, 5), np.float32)
    dy[0, 7, 9, 2] = bad
    _, dx, dk = tf_conv_and_grads(conv2d_sparse_grad, x, kernel, dy)
    _, ref_dx, ref_dk = tf_conv_and_grads(autodiff_conv, x, kernel, dy)
    np.testing.assert_array_equal(np.isfinite(dx), np.isfinite(ref_dx))
    np.testing.assert_array_equal(np.isfinite(dk), np.isfinite(ref_dk))
    assert not np.isfinite(dk).all() and not np.isfinite(dx).all()


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_layer_under_a_mixed_policy_matches_conv2d(policy):
    """Under a Keras mixed policy the layer reads its float32 kernel in the compute dtype, as
    Conv2D does: same outputs, and kernel and bias gradients in float32 equal to Conv2D's."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        ours, plain, x = _layer_pair()
        got, want = _output_and_grads(ours, x, True), _output_and_grads(plain, x, True)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    assert ours.kernel.dtype == "float32" and got[0].dtype == want[0].dtype
    eps = 2.0 ** -7 if policy == "mixed_bfloat16" else 2.0 ** -10
    for a, b in zip(got, want):
        scale = float(np.abs(np.asarray(b, np.float32)).max())
        np.testing.assert_allclose(np.asarray(a, np.float32) / scale,
                                   np.asarray(b, np.float32) / scale, atol=4 * eps)


def test_even_kernel_is_refused():
    with pytest.raises(ValueError, match="odd"):
        conv2d_sparse_grad(tf.zeros((1, 4, 4, 1)), tf.zeros((2, 2, 1, 1)))


def _layer_pair(**kwargs):
    """A SparseGradConv2D and a keras Conv2D with the same weights."""
    kwargs = dict(filters=6, kernel_size=3, padding="same", activation="relu") | kwargs
    # Seeded: the weights decide which outputs the ReLU passes, so without a seed every run
    # (and, under xdist, every order of tests before it) compared different sums.
    keras.utils.set_random_seed(0)
    ours, plain = SparseGradConv2D(**kwargs), keras.layers.Conv2D(**kwargs)
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 10, 10, 5)), tf.float32)
    ours(x), plain(x)
    plain.set_weights(ours.get_weights())
    return ours, plain, x


def _output_and_grads(layer, x, training):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        # Only a few positions carry loss, as the RPN's sampled anchors do.
        loss = tf.reduce_sum(tf.cast(y[:, 2:4, 5:6], tf.float32) * tf.range(1.0, 7.0))
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    return [np.asarray(t) for t in [y] + grads]


def _assert_close(got, want):
    """Equal to float32 rounding of sums of terms as large as the largest entry: a gradient
    entry where terms cancel can be off by that much in absolute terms."""
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(b).max()))


def test_layer_matches_conv2d_in_training_and_inference(monkeypatch):
    ours, plain, x = _layer_pair()
    calls = []
    original = sparse_grad_conv.conv2d_sparse_grad
    monkeypatch.setattr(sparse_grad_conv, "conv2d_sparse_grad",
                        lambda *a: calls.append(1) or original(*a))
    for training in (True, False, None):
        calls.clear()
        got, want = _output_and_grads(ours, x, training), _output_and_grads(plain, x, training)
        assert bool(calls) == bool(training)
        _assert_close(got, want)


@pytest.mark.parametrize("kwargs", [dict(strides=2), dict(padding="valid"),
                                    dict(dilation_rate=2), dict(kernel_size=2)])
def test_layer_falls_back_to_conv2d_where_the_sparse_form_does_not_apply(kwargs, monkeypatch):
    ours, plain, x = _layer_pair(**kwargs)
    monkeypatch.setattr(sparse_grad_conv, "conv2d_sparse_grad",
                        lambda *a: pytest.fail("sparse form used for %s" % kwargs))
    _assert_close(_output_and_grads(ours, x, True), _output_and_grads(plain, x, True))


def test_layer_is_dense_when_traced_for_xla(monkeypatch):
    ours, _, x = _layer_pair()
    monkeypatch.setattr(sparse_grad_conv, "conv2d_sparse_grad",
                        lambda *a: pytest.fail("tf.where has no static shape for XLA"))
    with portable.xla_static():
        ours(x, training=True)


def test_layer_config_round_trip():
    ours, _, x = _layer_pair()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ours))
    assert type(clone) is SparseGradConv2D and clone.get_config() == ours.get_config()
