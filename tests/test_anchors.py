import numpy as np
import pytest

from mrcnn.anchors import (
    compute_backbone_shapes,
    generate_anchors,
    generate_pyramid_anchors,
    get_anchors,
)
from mrcnn.config import Config
from mrcnn.ops.boxes_np import denorm_boxes


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
