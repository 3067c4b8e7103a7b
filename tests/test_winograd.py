"""Winograd F(4x4, 3x3) (mrcnn/ops/winograd.py): the transforms, the convolution against NumPy,
where it runs (only detect()'s graph, only eligible convolutions), and detect() with and without
it on a trained model."""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from conftest import OverfitInference, assert_same_detections, soft_mask_gaps
from mrcnn import model as modellib
from mrcnn.layers.conv import FoldableConv2D, fold_batch_norm
from mrcnn.layers.norm import BatchNorm
from mrcnn.layers.sparse_grad_conv import SparseGradConv2D
from mrcnn.ops import portable, winograd

# Float32 rounding through the transforms, relative to the largest output, or in `conv_error` to
# the largest sum of |x| * |kernel| terms (module doc: about 1e-5 at 256 channels; a wrong tap,
# sign or tile offset is off by order 1).
TOLERANCE = 3e-5


def relative_error(got, want):
    return np.abs(np.asarray(got, np.float64) - want).max() / max(np.abs(want).max(), 1e-12)


def conv_error(got, x, kernel):
    """The largest error of a convolution against the float64 reference, relative to the largest
    sum of ``|x| * |kernel|`` terms: float rounding scales with that sum, not with the result,
    which cancellation can bring near zero (one output pixel from a 1x1 input, say)."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    scale = ref.conv2d_same(np.abs(x), np.abs(kernel)).max()
    return np.abs(np.asarray(got, np.float64) - ref.conv2d_same(x, kernel)).max() / max(scale,
                                                                                         1e-12)


def tilings(graph):
    """How many times ``graph`` tiles an input for Winograd (one per band and convolution)."""
    return sum(op.type == "ExtractImagePatches" for op in graph.get_operations())


def uses_winograd(fn, *args):
    """Whether the graph ``fn`` (a tf.function) traces for ``args`` holds Winograd's tiling."""
    return tilings(fn.get_concrete_function(*args).graph) > 0


# ------------------------------------------------------------------------ the transforms
@pytest.mark.parametrize("points", [winograd.POINTS, (0, 1, -1, 2, -2), (0, 1, -1, 3, -3)])
def test_toom_cook_matrices_compute_a_1d_correlation(points):
    bt, g, at = winograd.toom_cook_matrices(points)
    assert bt.shape == (6, 6) and g.shape == (6, 3) and at.shape == (4, 6)
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, kernel = rng.normal(size=6), rng.normal(size=3)
        want = [kernel @ d[i:i + 3] for i in range(4)]
        np.testing.assert_allclose(at @ ((g @ kernel) * (bt @ d)), want, rtol=1e-12, atol=1e-12)


def test_toom_cook_matrices_reject_repeated_or_missing_points():
    with pytest.raises(ValueError, match="distinct"):
        winograd.toom_cook_matrices((0, 1, 1, 2, -2))
    with pytest.raises(ValueError, match="5 distinct"):
        winograd.toom_cook_matrices((0, 1, -1))


def test_transform_kernel_is_g_kernel_g_transposed():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    u = winograd.transform_kernel(tf.constant(kernel)).numpy()
    g = winograd.toom_cook_matrices()[1]
    want = np.einsum("ip,pqck,jq->ijck", g, kernel.astype(np.float64), g).reshape(36, 4, 5)
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ the convolution
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 14), w=st.integers(1, 14), c=st.integers(1, 6),
       k=st.integers(1, 5), grouped=st.sampled_from([True, False, None]),
       max_tiles=st.sampled_from([None, 1, 3, 8]), seed=st.integers(0, 2 ** 16))
def test_winograd_conv_equals_numpy(n, h, w, c, k, grouped, max_tiles, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, h, w, c)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, c, k)).astype(np.float32)
    got = winograd.winograd_conv3x3(tf.constant(x), winograd.transform_kernel(tf.constant(kernel)),
                                    grouped=grouped, max_tiles=max_tiles)
    assert got.shape == (n, h, w, k) and got.dtype == tf.float32
    assert conv_error(got, x, kernel) < TOLERANCE


def test_winograd_conv_with_unknown_shapes_equals_static():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 13, 22, 8)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 8, 6)).astype(np.float32)
    u = winograd.transform_kernel(tf.constant(kernel))
    static = winograd.winograd_conv3x3(tf.constant(x), u, max_tiles=4).numpy()
    dynamic = tf.function(lambda t: winograd.winograd_conv3x3(t, u, max_tiles=4),
                          input_signature=[tf.TensorSpec([None, None, None, 8])],
                          autograph=False)
    got = dynamic(tf.constant(x))
    assert got.shape == (3, 13, 22, 6)
    assert relative_error(got, ref.conv2d_same(x, kernel)) < TOLERANCE
    np.testing.assert_allclose(got.numpy(), static, rtol=1e-5, atol=1e-5)


def test_error_at_256_channels_is_near_a_direct_float32_convolution():
    """The accuracy the module doc states, on the mask head's shape (256 -> 256 channels):
    max error within 1e-5 of the largest output, and not above 10 times float32's own."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 14, 14, 256)).astype(np.float32)
    kernel = (rng.normal(size=(3, 3, 256, 256)) / np.sqrt(9 * 256)).astype(np.float32)
    want = ref.conv2d_same(x, kernel)
    direct = relative_error(tf.nn.conv2d(x, kernel, 1, "SAME"), want)
    ours = relative_error(winograd.winograd_conv3x3(
        tf.constant(x), winograd.transform_kernel(tf.constant(kernel))), want)
    assert ours < 1e-5 and ours < 10 * direct, (ours, direct)


def test_bands_run_one_after_another_into_one_buffer():
    """With max_tiles, each band reads its rows of the input only once the previous band is
    written (bounded memory), and the bands are written into one buffer in place instead of
    concatenated (which would hold the output twice)."""
    x = tf.zeros((1, 16, 16, 2))
    u = winograd.transform_kernel(tf.zeros((3, 3, 2, 2)))
    fn = tf.function(lambda t: winograd.winograd_conv3x3(t, u, max_tiles=4), autograph=False)
    ops = fn.get_concrete_function(x).graph.get_operations()
    assert tilings(fn.get_concrete_function(x).graph) == 4  # 4 x 4 tiles, 4 per band
    writes = [op for op in ops if op.type == "InplaceUpdate"]
    assert len(writes) == 4 and not [op for op in ops if op.type == "ConcatV2"]
    # What bands 2-4 read waits for writes 1-3 (the slices' index constants carry the waits).
    awaited = {waited for op in ops for waited in op.control_inputs
               if waited.type == "InplaceUpdate"}
    assert awaited == set(writes[:3])


def test_banded_convolutions_of_one_shape_write_their_own_buffers():
    """Two convolutions of one shape in one graph: their in-place output buffers stay apart.
    A guard on the buffer's op: a stateless one (tf.zeros, a constant) could be merged by
    Grappler into one buffer for both, or folded into a constant written in place."""
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(2, 12, 8, 3)).astype(np.float32) for _ in range(2)]
    kernels = [rng.normal(size=(3, 3, 3, 4)).astype(np.float32) for _ in range(2)]

    @tf.function(autograph=False)
    def both(a, b):
        return [winograd.winograd_conv3x3(t, winograd.transform_kernel(tf.constant(k)),
                                          max_tiles=4) for t, k in zip((a, b), kernels)]

    for _ in range(2):  # and again, in buffers of the second call
        for got, x, kernel in zip(both(*xs), xs, kernels):
            assert relative_error(got, ref.conv2d_same(x, kernel)) < TOLERANCE


@pytest.mark.parametrize("max_tiles", [None, 4])
def test_an_epilogue_runs_on_each_band_and_only_its_output_is_whole(max_tiles):
    """conv2d(..., epilogue): the epilogue's output, position by position, equals the epilogue
    of the whole convolution; with bands, no tensor in the graph holds the convolution's
    output over the whole map (the point of the epilogue)."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 10, 13, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 7)).astype(np.float32)
    head = rng.normal(size=(1, 1, 7, 2)).astype(np.float32)

    def epilogue(y):
        return tf.nn.conv2d(tf.nn.relu(y), head, 1, "VALID")

    fn = tf.function(lambda t: winograd.winograd_conv3x3(
        t, winograd.transform_kernel(tf.constant(kernel)), max_tiles=max_tiles,
        epilogue=epilogue), autograph=False)
    got = fn(tf.constant(x))
    want = ref.conv2d_same(np.maximum(ref.conv2d_same(x, kernel), 0), head.astype(np.float64))
    assert got.shape == (2, 10, 13, 2)
    assert relative_error(got, want) < TOLERANCE
    shapes = [tuple(t.shape) for op in fn.get_concrete_function(tf.constant(x)).graph
              .get_operations() for t in op.outputs if t.shape.rank == 4]
    assert ((2, 12, 16, 7) in shapes) == (max_tiles is None)  # the whole output, 3 x 4 tiles


# ------------------------------------------------------------------------ where it runs
def test_conv2d_is_tensorflows_outside_enabled_and_winograd_inside():
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(1, 9, 9, 4)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(3, 3, 4, 3)).astype(np.float32))

    def run(mode):
        fn = tf.function(lambda t: winograd.conv2d(t, kernel), autograph=False)
        with winograd.enabled(mode):
            return uses_winograd(fn, x), fn(x).numpy()

    used, outside = run(None)
    assert not used
    np.testing.assert_array_equal(outside, tf.nn.conv2d(x, kernel, 1, "SAME").numpy())
    used, inside = run("all")
    assert used and relative_error(inside, ref.conv2d_same(x.numpy(), kernel.numpy())) < TOLERANCE
    assert not run("auto")[0]  # 4 -> 3 channels: below MIN_AUTO_CHANNELS
    assert winograd.current_mode() is None


@pytest.mark.parametrize("case", ["stride", "dilation", "valid", "1x1", "5x5", "bfloat16",
                                  "float16"])
def test_ineligible_convolutions_stay_direct(case):
    x = tf.zeros((1, 8, 8, 4))
    kernel = tf.zeros((3, 3, 4, 4))
    kwargs = {}
    if case == "stride":
        kwargs["strides"] = 2
    elif case == "dilation":
        kwargs["dilations"] = 2
    elif case == "valid":
        kwargs["padding"] = "VALID"
    elif case == "1x1":
        kernel = tf.zeros((1, 1, 4, 4))
    elif case == "5x5":
        kernel = tf.zeros((5, 5, 4, 4))
    else:
        x, kernel = tf.cast(x, case), tf.cast(kernel, case)
    with winograd.enabled("all"):
        assert winograd.applies(x, kernel, **kwargs) is False
        assert winograd.applies(tf.zeros((1, 8, 8, 4)), tf.zeros((3, 3, 4, 4)))


def test_auto_mode_needs_128_channels_in_and_out():
    x = tf.zeros((1, 4, 4, 128))
    with winograd.enabled("auto"):
        assert winograd.applies(x, tf.zeros((3, 3, 128, 128)))
        assert not winograd.applies(x, tf.zeros((3, 3, 128, 64)))
        assert not winograd.applies(tf.zeros((1, 4, 4, 64)), tf.zeros((3, 3, 64, 256)))


def test_enabled_rejects_unknown_modes_and_restores_the_previous_one():
    with pytest.raises(ValueError, match="unknown Winograd mode"):
        with winograd.enabled("fast"):
            pass
    with winograd.enabled("all"):
        with winograd.enabled(None):
            assert winograd.current_mode() is None
        assert winograd.current_mode() == "all"
    assert winograd.current_mode() is None


def _layer_models():
    """{"folded": a FoldableConv2D with its batch norm folded, "sparse": a SparseGradConv2D
    with a ReLU}, each alone in a model on [N, 12, 12, 8] inputs, random weights."""
    rng = np.random.default_rng(5)
    models = {}
    for kind in ("folded", "sparse"):
        inputs = keras.Input((12, 12, 8))
        if kind == "folded":
            conv = FoldableConv2D(6, 3, padding="same", name="wino_conv")
            bn = BatchNorm(name="wino_bn")
            fold_batch_norm(conv, bn)
            outputs = bn(conv(inputs), training=False)
        else:
            outputs = SparseGradConv2D(5, 3, padding="same", activation="relu",
                                       name="wino_sparse")(inputs)
        model = keras.Model(inputs, outputs)
        for v in model.weights:
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
        models[kind] = model
    return models


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kind", ["folded", "sparse"])
def test_layers_use_it_in_inference_calls_inside_enabled_only(kind, training):
    model = _layer_models()[kind]
    x = tf.constant(np.random.default_rng(6).normal(size=(2, 12, 12, 8)).astype(np.float32))
    fn = tf.function(lambda t: model(t, training=training), autograph=False)
    assert not uses_winograd(fn, x)
    want = fn(x).numpy()
    fn = tf.function(lambda t: model(t, training=training), autograph=False)
    with winograd.enabled("all"):
        assert uses_winograd(fn, x) == (not training)
        got = fn(x).numpy()
    if training:  # TensorFlow's kernels, to the bit
        np.testing.assert_array_equal(got, want)
    else:
        assert 0 < relative_error(got, want) < TOLERANCE  # rounded otherwise, within bounds


@pytest.mark.parametrize("static", [True, False])
def test_it_compiles_under_xla_in_static_shapes_and_bands(monkeypatch, static):
    """Under XLA (detect()'s XLA graph, or any jit_compile function), which has no
    InplaceUpdate kernel, the bands are concatenated."""
    monkeypatch.setattr(winograd, "MAX_TILES", 4)  # 2 x 3 x 2 tiles: three bands
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=(2, 10, 7, 3)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    fn = tf.function(lambda t: winograd.conv2d(t, kernel), jit_compile=True, autograph=False)
    with winograd.enabled("all"), portable.xla_static() if static else contextlib.nullcontext():
        graph = fn.get_concrete_function(x).graph
        got = fn(x)
    assert tilings(graph) == 3
    assert not [op for op in graph.get_operations() if op.type == "InplaceUpdate"]
    assert relative_error(got, ref.conv2d_same(x.numpy(), kernel.numpy())) < TOLERANCE


def test_winograd_convolutions_in_one_graph_run_one_after_another():
    """conv2d: each Winograd convolution of a graph waits for the previous one traced there,
    also when their inputs do not depend on each other (the RPN's five levels), so that one
    kernel transform and one band's products are alive at a time; direct ones do not wait."""
    rng = np.random.default_rng(11)
    x = tf.constant(rng.normal(size=(1, 8, 8, 3)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(3, 3, 3, 3)).astype(np.float32))

    def three(t):
        return [winograd.conv2d(t * float(i), kernel) for i in (1, 2, 3)]

    fn = tf.function(three, autograph=False)
    with winograd.enabled("all"):
        graph = fn.get_concrete_function(x).graph
        got = fn(x)
    outputs = [op for op in graph.get_operations() if op.type == "EnsureShape"]
    assert len(outputs) == 3
    waits = [op for op in graph.get_operations()
             if op.type == "Identity" and op.control_inputs]
    assert [op.control_inputs for op in waits] == [[outputs[0]], [outputs[1]]]
    for i, y in zip((1, 2, 3), got):
        assert relative_error(y, ref.conv2d_same(x.numpy() * i, kernel.numpy())) < TOLERANCE
    fn = tf.function(three, autograph=False)  # outside enabled(): TensorFlow's, no waits
    assert not [op for op in fn.get_concrete_function(x).graph.get_operations()
                if op.control_inputs]


def test_an_unknown_batch_still_cuts_bands_and_unknown_sizes_stay_direct(monkeypatch):
    """detect() retraces with an unknown batch (a last, smaller batch of images) or unknown
    sizes (a second image shape in "pad64" mode): the first keeps its bands (per image), the
    second keeps TensorFlow's kernel (no bands can be cut at trace time)."""
    monkeypatch.setattr(winograd, "MAX_TILES", 8)
    rng = np.random.default_rng(8)
    x = tf.constant(rng.normal(size=(2, 16, 16, 3)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(3, 3, 3, 2)).astype(np.float32))
    for spec, bands in [([None, 16, 16, 3], 2), ([None, None, None, 3], 0),
                        ([2, None, 16, 3], 0)]:
        fn = tf.function(lambda t: winograd.conv2d(t, kernel), autograph=False,
                         input_signature=[tf.TensorSpec(spec)])
        with winograd.enabled("all"):
            graph = fn.get_concrete_function().graph
            got = fn(x)
        assert tilings(graph) == bands
        assert relative_error(got, ref.conv2d_same(x.numpy(), kernel.numpy())) < TOLERANCE


def test_the_mode_is_per_thread_and_restored_after_an_error():
    import threading
    seen = []
    with winograd.enabled("all"):
        other = threading.Thread(target=lambda: seen.append(winograd.current_mode()))
        other.start()
        other.join()
        with pytest.raises(RuntimeError):
            with winograd.enabled(None):
                raise RuntimeError("a trace fails")
        assert winograd.current_mode() == "all"
    assert seen == [None] and winograd.current_mode() is None


def test_the_rpn_runs_its_heads_on_each_band_with_the_same_outputs(monkeypatch):
    """rpn_model in detect()'s Winograd graph: the shared 512-channel conv's bias, ReLU and
    both 1x1 heads run on each band (its output over the whole map never exists), and the
    three outputs equal the plain model's; in training calls and outside the mode the graph
    is the plain one."""
    from mrcnn.heads.rpn import build_rpn_model

    monkeypatch.setattr(winograd, "MAX_TILES", 8)
    rpn = build_rpn_model(1, 3, 16)
    rng = np.random.default_rng(10)
    for v in rpn.weights:
        v.assign(rng.normal(scale=0.3, size=v.shape).astype(np.float32))
    x = tf.constant(rng.normal(size=(2, 12, 20, 16)).astype(np.float32))

    def run(mode, training=False):
        fn = tf.function(lambda t: rpn(t, training=training), autograph=False)
        with winograd.enabled(mode):
            graph = fn.get_concrete_function(x).graph
            outputs = [o.numpy() for o in fn(x)]
        whole = any(tuple(t.shape) == (2, 12, 20, 512) for op in graph.get_operations()
                    for t in op.outputs)
        return outputs, tilings(graph), whole

    want, tiled, whole = run(None)
    assert not tiled and whole
    got, tiled, whole = run("all")
    assert tiled == 3 and not whole  # 3 x 5 tiles per image, 2 tile rows per band
    for g, w in zip(got, want):
        assert g.shape == w.shape and relative_error(g, w) < TOLERANCE
    trained, tiled, whole = run("all", training=True)
    assert not tiled and whole
    for g, w in zip(trained, want):
        np.testing.assert_array_equal(g, w)


def test_the_rpn_model_survives_keras_serialization():
    from mrcnn.heads.rpn import RPNModel, build_rpn_model

    rpn = build_rpn_model(1, 3, 16)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(rpn))
    assert type(again) is RPNModel
    assert [w.path for w in again.weights] == [w.path for w in rpn.weights]


# ------------------------------------------------------------------------ Config and detect()
def test_auto_is_off_where_tensorflow_sees_a_gpu(tmp_path, monkeypatch):
    model = modellib.MaskRCNN("inference", OverfitInference(), str(tmp_path))
    assert model._winograd_mode() == "auto"
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert model._winograd_mode() is None
    model.config.WINOGRAD = True
    assert model._winograd_mode() == "all"
    model.config.WINOGRAD = False
    assert model._winograd_mode() is None


@pytest.mark.parametrize("xla", [False, True])
def test_detections_with_winograd_agree_with_tensorflows_convolutions(overfit_run, tmp_path,
                                                                     xla):
    """The trained tiny model, detect() with WINOGRAD True (every 3x3 convolution, whatever
    its channels) against False, with and without XLA: the same objects, boxes within 1 px,
    scores within 1e-4, masks IoU >= 0.9, their soft masks within 1e-4 and every pixel that
    differs once thresholded one that such a gap can flip (a CI run saw IoU 0.96 on a small,
    flat mask); and the graphs do (not) tile."""
    class Direct(OverfitInference):
        WINOGRAD = False
        XLA = xla

    class Winograd(Direct):
        WINOGRAD = True

    dataset = overfit_run.dataset
    images = [dataset.load_image(i) for i in dataset.image_ids]
    models = []
    for cls in (Direct, Winograd):
        model = modellib.MaskRCNN("inference", cls(), str(tmp_path))
        model.load_weights(overfit_run.weights, by_name=True)
        models.append(model)
    matched = assert_same_detections(*[m.detect(images) for m in models], box_pixels=1,
                                     score_atol=1e-4, min_mask_iou=0.9)
    assert matched >= 4
    soft = [g for image in images
            for g in soft_mask_gaps(*[lambda x, t, m=m: [o[0] for o in m._predict(x, t)]
                                      for m in models], *models[0].mold_inputs([image])[:2])]
    assert len(soft) >= matched and max(g[0] for g in soft) <= 1e-4, soft
    assert sum(g[2] for g in soft) == 0, soft
    graphs = [m._predict_fn.get_concrete_function(
        tf.TensorSpec([1] + list(m.config.IMAGE_SHAPE), tf.float32),
        tf.TensorSpec([1, m.config.IMAGE_META_SIZE], tf.float32)).graph for m in models]
    assert [tilings(g) > 0 for g in graphs] == [False, True]


@pytest.mark.parametrize("n,th,top,band_rows", [(1, 64, 0, 8), (3, 10, 4, 3), (2, 5, 4, 1)])
def test_band_rows_static_and_dynamic_batch_agree(n, th, top, band_rows):
    """The output-buffer rows of a band: one constant for a static batch, ops for an unknown
    one; both image by image, the band's tile rows within each image."""
    from mrcnn.ops.winograd import _band_rows
    static = _band_rows(n, th, top, band_rows)
    dynamic = _band_rows(tf.constant(n), th, top, band_rows).numpy()
    expected = [i * th + top + r for i in range(n) for r in range(band_rows)]
    assert static.dtype == np.int32 and static.tolist() == expected
    assert dynamic.tolist() == expected
