import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn.config import Config
from mrcnn.image import (
    expand_mask,
    minimize_mask,
    mold_image,
    resize_image,
    resize_mask,
    to_rgb_uint8,
    unmold_image,
    unmold_mask,
)
from mrcnn.ops.boxes_np import compute_overlaps_masks, extract_bboxes


# ---------------------------------------------------------------- to_rgb_uint8
def test_rgb_uint8_is_returned_without_copy():
    image = np.zeros((4, 5, 3), np.uint8)
    assert to_rgb_uint8(image) is image


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1)])
def test_grayscale_replicated(shape):
    gray = np.arange(20, dtype=np.uint8).reshape(shape)
    rgb = to_rgb_uint8(gray)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray.reshape(4, 5))


def test_rgba_drops_alpha_and_gray_alpha():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    np.testing.assert_array_equal(to_rgb_uint8(rgba)[0, 0], [10, 20, 30])
    la = np.zeros((2, 2, 2), np.uint8)
    la[..., 0], la[..., 1] = 77, 255
    np.testing.assert_array_equal(to_rgb_uint8(la)[1, 1], [77, 77, 77])


def test_16_bit_scaled_to_8_bit():
    image = np.array([[0, 257, 65535, 32896]], np.uint16)  # 32896 = 128 * 257
    out = to_rgb_uint8(image)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])


def test_float_and_bool_and_wide_int_inputs():
    unit = np.array([[0.0, 0.5, 1.0]], np.float32)            # skimage convention [0, 1]
    np.testing.assert_array_equal(to_rgb_uint8(unit)[0, :, 1], [0, 128, 255])
    wide = np.array([[0.0, 100.4, 300.0, np.nan]])             # [0, 255], clipped, NaN -> 0
    np.testing.assert_array_equal(to_rgb_uint8(wide)[0, :, 2], [0, 100, 255, 0])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[True, False]]))[0, :, 0], [255, 0])
    small = np.array([[0, 200]], np.int32)
    np.testing.assert_array_equal(to_rgb_uint8(small)[0, :, 0], [0, 200])
    big = np.array([[-1000, 1000000]], np.int64)               # rescaled min..max
    np.testing.assert_array_equal(to_rgb_uint8(big)[0, :, 0], [0, 255])


def test_to_rgb_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        to_rgb_uint8(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        to_rgb_uint8(np.zeros((2, 4, 4, 3), np.uint8))


# ---------------------------------------------------------------- resize_image
def test_square_mode_hand_worked():
    # min_dim 800 would scale 480 -> 800 (x5/3) but 640 * 5/3 = 1067 > 1024, so the long side
    # caps the scale at 1024 / 640 = 1.6: 768 x 1024, padded by (1024 - 768) / 2 = 128 rows.
    image = np.full((480, 640, 3), 50, np.uint8)
    out, window, scale, padding, crop = resize_image(image, min_dim=800, max_dim=1024,
                                                     mode="square")
    assert out.shape == (1024, 1024, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(1.6)
    assert tuple(window) == (128, 0, 896, 1024)
    assert padding == [(128, 128), (0, 0), (0, 0)]
    assert crop is None
    assert np.all(out[128:896] == 50)
    assert np.all(out[:128] == 0) and np.all(out[896:] == 0)


def test_square_mode_min_dim_wins_when_it_fits():
    # 500 x 500: 800 / 500 = 1.6 -> 800 x 800, padding 112 each side.
    out, window, scale, padding, _ = resize_image(np.ones((500, 500, 3), np.uint8), 800, 1024)
    assert scale == pytest.approx(1.6)
    assert tuple(window) == (112, 112, 912, 912)
    assert padding == [(112, 112), (112, 112), (0, 0)]


def test_square_mode_never_scales_up_below_one_and_min_scale():
    # A large image is scaled down by max_dim only (min_dim never shrinks).
    out, window, scale, _, _ = resize_image(np.ones((2048, 1024, 3), np.uint8), 800, 1024)
    assert scale == pytest.approx(0.5)
    assert tuple(window) == (0, 256, 1024, 768)
    # min_scale forces at least x2: 100 -> 200, padded into 256.
    out, window, scale, _, _ = resize_image(np.ones((100, 100, 3), np.uint8), None, 256,
                                            min_scale=2)
    assert scale == 2 and tuple(window) == (28, 28, 228, 228)


def test_none_mode_is_identity():
    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    out, window, scale, padding, crop = resize_image(image, 800, 1024, mode="none")
    assert out is image
    assert tuple(window) == (0, 0, 30, 40) and scale == 1 and crop is None
    assert padding == [(0, 0), (0, 0), (0, 0)]


def test_pad64_mode_hand_worked():
    # No scaling (min_dim None); 100 -> 128 (28 = 14 + 14), 150 -> 192 (42 = 21 + 21).
    image = np.full((100, 150, 3), 9, np.uint8)
    out, window, scale, padding, crop = resize_image(image, mode="pad64")
    assert out.shape == (128, 192, 3)
    assert tuple(window) == (14, 21, 114, 171)
    assert padding == [(14, 14), (21, 21), (0, 0)]
    np.testing.assert_array_equal(out[14:114, 21:171], image)
    assert out.sum() == image.sum()
    # Already a multiple of 64: untouched.
    out, window, _, padding, _ = resize_image(np.ones((64, 128, 3), np.uint8), mode="pad64")
    assert out.shape == (64, 128, 3) and padding == [(0, 0), (0, 0), (0, 0)]


def test_crop_mode_takes_a_window_of_the_image():
    image = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    out, window, scale, padding, crop = resize_image(image, min_dim=256, mode="crop",
                                                     rng=np.random.default_rng(3))
    assert out.shape == (256, 256, 3)
    assert tuple(window) == (0, 0, 256, 256) and scale == 1
    y, x, h, w = crop
    assert (h, w) == (256, 256) and 0 <= y <= 44 and 0 <= x <= 144
    np.testing.assert_array_equal(out, image[y:y + 256, x:x + 256])


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="stretch"):
        resize_image(np.zeros((10, 10, 3), np.uint8), 8, 16, mode="stretch")


def test_resize_keeps_dtype():
    # Values and borders are Matterport's (tests/test_fidelity.py); here only the dtype.
    for dtype in (np.uint8, np.uint16, np.float32):
        out, _, scale, _, _ = resize_image(np.ones((8, 16, 3), dtype), min_dim=16, max_dim=64)
        assert out.dtype == dtype and scale == 2


# ---------------------------------------------------------------- resize_mask
def test_resize_mask_follows_resize_image_hand_worked():
    mask = np.zeros((480, 640, 2), bool)
    mask[100:200, 160:320, 0] = True
    image, window, scale, padding, crop = resize_image(np.zeros((480, 640, 3), np.uint8),
                                                       800, 1024)
    out = resize_mask(mask, scale, padding, crop)
    assert out.shape == (1024, 1024, 2) and out.dtype == bool
    # Rows 100..199 scale by 1.6 to 160..319, then shift by the 128-row top padding.
    np.testing.assert_array_equal(extract_bboxes(out), [[288, 256, 448, 512], [0, 0, 0, 0]])


@pytest.mark.parametrize("mode, kwargs", [("square", dict(min_dim=100, max_dim=192)),
                                          ("pad64", dict(min_dim=100)),
                                          ("crop", dict(min_dim=64))])
def test_resize_mask_shape_matches_image(mode, kwargs):
    image = np.zeros((70, 90, 3), np.uint8)
    mask = np.ones((70, 90, 3), bool)
    out, window, scale, padding, crop = resize_image(image, mode=mode, **kwargs)
    m = resize_mask(mask, scale, padding, crop)
    assert m.shape[:2] == out.shape[:2]
    y1, x1, y2, x2 = window
    assert m[y1:y2, x1:x2].all()
    assert m.sum() == (y2 - y1) * (x2 - x1) * 3


# ---------------------------------------------------------------- mini masks
@st.composite
def convex_masks(draw):
    """Filled ellipses and rectangles at random positions in a 128 x 160 image."""
    h, w = 128, 160
    n = draw(st.integers(1, 3))
    mask = np.zeros((h, w, n), bool)
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        ry = draw(st.integers(8, 40))
        rx = draw(st.integers(8, 50))
        cy = draw(st.integers(ry, h - ry))
        cx = draw(st.integers(rx, w - rx))
        if draw(st.booleans()):
            mask[..., i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask[cy - ry:cy + ry, cx - rx:cx + rx, i] = True
    return mask


@settings(max_examples=40, deadline=None)
@given(convex_masks(), st.sampled_from([(56, 56), (28, 28)]))
def test_minimize_expand_keeps_shape(mask, mini_shape):
    bbox = extract_bboxes(mask)
    mini = minimize_mask(bbox, mask, mini_shape)
    assert mini.shape == mini_shape + (mask.shape[-1],) and mini.dtype == bool
    back = expand_mask(bbox, mini, mask.shape)
    assert back.shape == mask.shape and back.dtype == bool
    ious = np.diag(compute_overlaps_masks(mask, back))
    assert np.all(ious > 0.9), ious
    # Nothing leaks outside the instance's box.
    for i, (y1, x1, y2, x2) in enumerate(bbox):
        outside = back[..., i].copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any()


def test_minimize_mask_rejects_empty_box():
    mask = np.zeros((10, 10, 2), bool)
    mask[2:5, 2:5, 0] = True
    with pytest.raises(ValueError, match="instance 1"):
        minimize_mask(extract_bboxes(mask), mask, (8, 8))


def test_expand_mask_zero_area_box_gives_empty_mask():
    out = expand_mask(np.array([[5, 5, 5, 9]]), np.ones((4, 4, 1), bool), (10, 10))
    assert out.shape == (10, 10, 1) and not out.any()


# ---------------------------------------------------------------- unmold_mask
def test_unmold_mask_hand_worked():
    # Left half of a 28x28 mask is on. Resized to a 40 px wide box, output column c samples
    # source x = (c + 0.5) * 28 / 40 - 0.5, which is <= 13.5 (value >= 0.5) for c <= 19.
    mask = np.zeros((28, 28), np.float32)
    mask[:, :14] = 1.0
    full = unmold_mask(mask, (10, 20, 30, 60), (64, 80, 3))
    assert full.shape == (64, 80) and full.dtype == bool
    expected = np.zeros((64, 80), bool)
    expected[10:30, 20:40] = True
    np.testing.assert_array_equal(full, expected)


def test_unmold_mask_threshold_and_clipping():
    # 0.4 everywhere stays off; a box hanging over the image edge is clipped.
    assert not unmold_mask(np.full((28, 28), 0.4), (0, 0, 10, 10), (20, 20)).any()
    full = unmold_mask(np.ones((28, 28)), (-5, 15, 10, 30), (20, 20))
    expected = np.zeros((20, 20), bool)
    expected[0:10, 15:20] = True
    np.testing.assert_array_equal(full, expected)


# ---------------------------------------------------------------- mold / unmold
def test_mold_unmold_round_trip():
    config = Config()
    images = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    molded = mold_image(images, config)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0, 0], images[0, 0, 0] - np.array([123.7, 116.8, 103.9]),
                               rtol=1e-5)
    back = unmold_image(molded, config)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, images)


# ---------------------------------------------------------------- image meta
def test_compose_and_parse_image_meta():
    from mrcnn.meta import compose_image_meta, parse_image_meta

    active = np.array([1, 1, 0, 1])
    meta = compose_image_meta(7, (480, 640, 3), (1024, 1024, 3), (128, 0, 896, 1024), 1.6,
                              active)
    assert meta.dtype == np.float32
    assert meta.shape == (type("C", (Config,), {"NUM_CLASSES": 4})().IMAGE_META_SIZE,)
    np.testing.assert_allclose(meta, [7, 480, 640, 3, 1024, 1024, 3, 128, 0, 896, 1024, 1.6,
                                      1, 1, 0, 1], rtol=1e-6)
    parsed = parse_image_meta(np.stack([meta, meta]))
    np.testing.assert_array_equal(parsed["image_id"], [7, 7])
    np.testing.assert_array_equal(parsed["original_image_shape"][0], [480, 640, 3])
    np.testing.assert_array_equal(parsed["image_shape"][1], [1024, 1024, 3])
    np.testing.assert_array_equal(parsed["window"][0], [128, 0, 896, 1024])
    np.testing.assert_allclose(parsed["scale"], [1.6, 1.6], rtol=1e-6)
    np.testing.assert_array_equal(parsed["active_class_ids"][0], active)
    with pytest.raises(ValueError, match="window"):
        compose_image_meta(7, (480, 640, 3), (1024, 1024, 3), (0, 0, 1), 1.0, active)


def test_parse_image_meta_graph_and_batch_slice():
    import tensorflow as tf

    from mrcnn.meta import compose_image_meta, parse_image_meta, parse_image_meta_graph
    from mrcnn.utils import batch_slice

    metas = np.stack([compose_image_meta(i, (10, 20, 3), (64, 64, 3), (1, 2, 3, 4), 0.5 * i,
                                         [1, 0]) for i in range(3)])
    graph = parse_image_meta_graph(tf.constant(metas))
    numpy = parse_image_meta(metas)
    for key, value in numpy.items():
        np.testing.assert_allclose(graph[key].numpy(), value, rtol=1e-6)

    x = tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4))
    y = tf.constant(np.ones((3, 4), np.float32))
    total, first = batch_slice([x, y], lambda a, b: (a + b, a[:1]), 3)
    np.testing.assert_allclose(total.numpy(), x.numpy() + 1)
    np.testing.assert_allclose(first.numpy(), x.numpy()[:, :1])
    single = batch_slice(x, lambda a: a * 2, 3)
    np.testing.assert_allclose(single.numpy(), x.numpy() * 2)


def test_paste_masks_equals_stacked_unmold_mask():
    from mrcnn.image import paste_masks, unmold_mask
    rng = np.random.default_rng(11)
    masks = rng.uniform(size=(6, 28, 28)).astype(np.float32)
    boxes = np.array([[0, 0, 10, 12], [5, 7, 40, 33], [30, 30, 50, 64], [-3, -4, 8, 9],
                      [10, 10, 10, 20], [45, 50, 70, 90]])  # partly outside, empty, overflowing
    got = paste_masks(masks, boxes, (50, 64, 3))
    expected = np.stack([unmold_mask(m, b, (50, 64, 3)) for m, b in zip(masks, boxes)], axis=-1)
    assert got.shape == (50, 64, 6) and got.dtype == bool
    np.testing.assert_array_equal(got, expected)
