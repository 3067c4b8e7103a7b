import numpy as np
import pytest

from mrcnn.anchors import (
    best_anchor_iou,
    compute_backbone_shapes,
    generate_anchors,
    generate_pyramid_anchors,
    get_anchors,
    kmeans_1d,
    suggest_anchors,
)
from mrcnn.config import Config
from mrcnn.ops.boxes_np import compute_overlaps, denorm_boxes


def reference_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Plain loops: positions row-major, then ratio, then scale."""
    out = []
    for row in range(0, shape[0], anchor_stride):
        for col in range(0, shape[1], anchor_stride):
            cy, cx = row * feature_stride, col * feature_stride
            for ratio in np.atleast_1d(ratios):
                for scale in np.atleast_1d(scales):
                    h = scale / np.sqrt(ratio)
                    w = scale * np.sqrt(ratio)
                    out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out)


def test_generate_anchors_hand_worked():
    # 2x2 feature map, stride 16, one scale 32, ratios 1 and 4 (4 = twice as wide as 32,
    # half as tall: h = 32 / 2 = 16, w = 32 * 2 = 64).
    a = generate_anchors(32, [1, 4], (2, 2), 16, 1)
    assert a.dtype == np.float32 and a.shape == (8, 4)
    np.testing.assert_allclose(a[0], [-16, -16, 16, 16])
    np.testing.assert_allclose(a[1], [-8, -32, 8, 32])
    np.testing.assert_allclose(a[2], [-16, 0, 16, 32])      # second position: (0, 16)
    np.testing.assert_allclose(a[6], [16 - 16, 16 - 16, 16 + 16, 16 + 16])  # last: (16, 16)


@pytest.mark.parametrize("scales, ratios, shape, stride, anchor_stride", [
    (32, [0.5, 1, 2], (4, 3), 4, 1),
    ([16, 32], [0.5, 2], (3, 5), 8, 2),
    (64, [1], (5, 5), 16, 3),
])
def test_generate_anchors_matches_loops(scales, ratios, shape, stride, anchor_stride):
    np.testing.assert_allclose(generate_anchors(scales, ratios, shape, stride, anchor_stride),
                               reference_anchors(scales, ratios, shape, stride, anchor_stride),
                               rtol=1e-6, atol=1e-4)


def test_compute_backbone_shapes():
    c = Config()
    np.testing.assert_array_equal(compute_backbone_shapes(c, (1024, 1024, 3)),
                                  [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]])
    # ceil for sizes that are not multiples of the stride: 100 / 64 -> 2.
    np.testing.assert_array_equal(compute_backbone_shapes(c, (100, 60, 3))[[0, 4]],
                                  [[25, 15], [2, 1]])


def test_compute_backbone_shapes_callable():
    class Custom(Config):
        BACKBONE = staticmethod(lambda x: x)
        COMPUTE_BACKBONE_SHAPE = staticmethod(lambda shape: [[shape[0] // 8, shape[1] // 8]] * 5)
    shapes = compute_backbone_shapes(Custom(), (64, 128, 3))
    np.testing.assert_array_equal(shapes, [[8, 16]] * 5)


def test_default_config_has_261888_anchors_at_1024():
    # 3 ratios x (256^2 + 128^2 + 64^2 + 32^2 + 16^2) positions = 3 x 87296.
    anchors = get_anchors(Config(), (1024, 1024, 3))
    assert anchors.shape == (261888, 4)
    assert anchors.dtype == np.float32


def test_get_anchors_normalized_cached_and_read_only():
    c = Config()
    a = get_anchors(c, (256, 256, 3))
    assert get_anchors(c, np.array([256, 256, 3])) is a
    with pytest.raises(ValueError):
        a[0, 0] = 1.0
    pixels = generate_pyramid_anchors(c.RPN_ANCHOR_SCALES, c.RPN_ANCHOR_RATIOS,
                                      compute_backbone_shapes(c, (256, 256)),
                                      c.BACKBONE_STRIDES, c.RPN_ANCHOR_STRIDE)
    # Normalized: (y1 / 255, x1 / 255, (y2 - 1) / 255, (x2 - 1) / 255).
    np.testing.assert_allclose(a[:, 0], pixels[:, 0] / 255, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[:, 2], (pixels[:, 2] - 1) / 255, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(denorm_boxes(a, (256, 256)), np.round(pixels))
    # Different anchor settings are not served from the same cache entry.
    c2 = Config()
    c2.RPN_ANCHOR_RATIOS = [1]
    assert len(get_anchors(c2, (256, 256, 3))) == len(a) // 3


def test_pyramid_levels_are_concatenated_in_order():
    a = generate_pyramid_anchors((8, 16), [1], [[2, 2], [1, 1]], [4, 8], 1)
    np.testing.assert_allclose(a, np.concatenate([generate_anchors(8, [1], (2, 2), 4, 1),
                                                  generate_anchors(16, [1], (1, 1), 8, 1)]))
    with pytest.raises(ValueError, match="per pyramid level"):
        generate_pyramid_anchors((8,), [1], [[2, 2], [1, 1]], [4, 8], 1)


# ---------------------------------------------------------------------------------------------
# Fitting anchors to boxes


def boxes_of(heights, widths, centers):
    """Pixel boxes [N, (y1, x1, y2, x2)] of the given sizes around the given (cy, cx) centres."""
    h, w = np.asarray(heights, float), np.asarray(widths, float)
    cy, cx = np.asarray(centers, float).T
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1)


def test_kmeans_1d_finds_separated_clusters():
    rng = np.random.default_rng(0)
    truth = np.array([-3.0, 0.0, 2.0, 7.0])
    values = np.concatenate([rng.normal(c, 0.1, size=n) for c, n in zip(truth, [5, 40, 10, 3])])
    centers = kmeans_1d(rng.permutation(values), 4)
    np.testing.assert_allclose(centers, truth, atol=0.1)
    assert np.all(np.diff(centers) >= 0)
    np.testing.assert_allclose(kmeans_1d([5.0, 5.0, 5.0], 2), [5.0, 5.0])
    with pytest.raises(ValueError, match="no values"):
        kmeans_1d([], 2)


def test_suggest_anchors_recovers_the_sizes_and_ratios_boxes_were_drawn_around():
    rng = np.random.default_rng(1)
    true_scales, true_ratios = [12, 30, 70, 150, 330], [0.4, 1.0, 2.5]
    # Unequal group sizes, +-5 % jitter on both: k-means must not just split the largest group.
    n = 600
    s = np.array(true_scales)[rng.integers(0, 5, n)] * rng.uniform(0.95, 1.05, n)
    r = np.array(true_ratios)[rng.choice(3, n, p=[0.2, 0.5, 0.3])] * rng.uniform(0.95, 1.05, n)
    boxes = boxes_of(s / np.sqrt(r), s * np.sqrt(r), rng.uniform(100, 900, (n, 2)))
    scales, ratios = suggest_anchors(boxes, num_scales=5, num_ratios=3)
    np.testing.assert_allclose(scales, true_scales, rtol=0.05)
    np.testing.assert_allclose(ratios, true_ratios, rtol=0.05)
    # Degenerate boxes are ignored, not clustered as zero sizes.
    with_empty = np.concatenate([boxes, [[5, 5, 5, 9], [3, 3, 1, 8]]])
    np.testing.assert_allclose(suggest_anchors(with_empty)[0], scales)
    with pytest.raises(ValueError, match="positive height and width"):
        suggest_anchors([[0, 0, 0, 10]])


def test_best_anchor_iou_equals_brute_force_over_the_pyramid():
    rng = np.random.default_rng(2)
    image_shape = (192, 256, 3)
    scales, ratios, strides = (10, 24, 40, 90, 150), [0.5, 1, 2], [4, 8, 16, 32, 64]
    y = np.sort(rng.uniform(-10, 200, (300, 2)), axis=1)
    x = np.sort(rng.uniform(-10, 265, (300, 2)), axis=1)
    boxes = np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1)
    for anchor_stride in (1, 2):
        feature_shapes = [[int(np.ceil(image_shape[0] / s)), int(np.ceil(image_shape[1] / s))]
                          for s in strides]
        anchors = generate_pyramid_anchors(scales, ratios, feature_shapes, strides, anchor_stride)
        expected = compute_overlaps(boxes, anchors).max(axis=1)
        got = best_anchor_iou(boxes, image_shape, scales, ratios, strides, anchor_stride)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)


def test_suggested_anchors_fit_better_than_mismatched_ones():
    rng = np.random.default_rng(3)
    # Tall boxes around 40 px in a 256 px image: the default 32..512 anchors fit them poorly.
    n = 200
    h = rng.uniform(45, 70, n)
    boxes = boxes_of(h, h * rng.uniform(0.5, 0.7, n), rng.uniform(40, 216, (n, 2)))
    strides = [4, 8, 16, 32, 64]
    scales, ratios = suggest_anchors(boxes)
    fitted = best_anchor_iou(boxes, (256, 256), scales, ratios, strides).mean()
    default = best_anchor_iou(boxes, (256, 256), (32, 64, 128, 256, 512), [0.5, 1, 2],
                              strides).mean()
    assert fitted > default + 0.05, (fitted, default)
    assert np.all(ratios < 1)  # tall boxes: width / height below 1
