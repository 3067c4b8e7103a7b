"""The pre- and post-processing give what Matterport's give (tests/matterport_reference.py calls
skimage / scipy with Matterport's arguments). Equality is exact: images to the grey level, masks to
the pixel, boxes to the pixel."""

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matterport_reference as mp
from mrcnn import image as mimage
from mrcnn.config import Config
from mrcnn.ops import resample_np

# (input h, w) -> scale up, scale down, non-square, tiny.
SHAPES = [(37, 53), (120, 90), (300, 410), (7, 5), (64, 64)]
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]


def random_image(rng, shape, dtype, channels):
    size = shape + ((channels,) if channels else ())
    if dtype == np.uint16:
        return rng.integers(0, 65536, size, dtype=np.uint16)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 256, size, dtype=dtype)
    return (rng.random(size) * 255).astype(dtype)


# ------------------------------------------------------------------------ resize
@pytest.mark.parametrize("dtype", DTYPES + [np.float16, np.int32])
@pytest.mark.parametrize("channels", [0, 1, 3, 4])
@pytest.mark.parametrize("preserve_range", [True, False])
def test_resize_equals_skimage(dtype, channels, preserve_range):
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        image = random_image(rng, shape, dtype, channels)
        for out in [(shape[0] * 2 + 1, shape[1] + 3), (max(shape[0] // 3, 1), shape[1] * 2),
                    (11, 13)]:
            want = mp.resize(image, out, preserve_range=preserve_range)
            got = mimage.resize(image, out, preserve_range=preserve_range)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def test_resize_with_other_arguments_is_skimage():
    from skimage.transform import resize as sk_resize
    image = np.random.default_rng(1).random((20, 30, 3))
    for kwargs in [dict(order=0), dict(mode="edge"), dict(anti_aliasing=True), dict(order=3)]:
        np.testing.assert_array_equal(mimage.resize(image, (9, 14), **kwargs),
                                      sk_resize(image, (9, 14), **{"order": 1, "mode": "constant",
                                                                   "anti_aliasing": False,
                                                                   **kwargs}))


def test_resize_blends_the_border_with_black_and_truncates():
    # Hand-worked: [[0, 100], [0, 100]] doubled. Along x the source coordinates of the four
    # output columns are -0.25, 0.25, 0.75, 1.25: 0, 25, 75 and 0.75 * 100 + 0.25 * 0 (outside)
    # = 75; the first and last rows take 0.75 of their row. 18.75 and 56.25 truncate.
    image = np.array([[0, 100], [0, 100]], np.uint8)[..., None].repeat(3, axis=2)
    out, window, scale, _, _ = mimage.resize_image(image, min_dim=4, max_dim=4)
    assert scale == 2 and window == (0, 0, 4, 4)
    np.testing.assert_array_equal(out[..., 0], [[0, 18, 56, 56], [0, 25, 75, 75],
                                                [0, 25, 75, 75], [0, 18, 56, 56]])


# ------------------------------------------------------------------------ resize_image
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("mode, kwargs", [
    ("square", dict(min_dim=96, max_dim=128)),      # scales up (small inputs) and down (large)
    ("square", dict(min_dim=None, max_dim=64)),
    ("square", dict(min_dim=50, max_dim=256, min_scale=1.5)),
    ("pad64", dict(min_dim=128)),
    ("pad64", dict(min_dim=64, min_scale=0.5)),
    ("crop", dict(min_dim=64)),
    ("none", dict(min_dim=64, max_dim=128)),
])
def test_resize_image_equals_matterport(dtype, channels, mode, kwargs):
    rng = np.random.default_rng(2)
    for shape in [(37, 53), (120, 90), (300, 410), (64, 64)]:
        image = random_image(rng, shape, dtype, channels)
        if mode == "crop" and min(shape) * max(1, 64 / min(shape)) < 64:
            continue
        random.seed(5)
        want = mp.resize_image(image, mode=mode, **kwargs)
        random.seed(5)
        got = mimage.resize_image(image, mode=mode, **kwargs)
        assert got[0].dtype == want[0].dtype == dtype
        np.testing.assert_array_equal(got[0], want[0])
        assert tuple(got[1]) == tuple(want[1])                    # window
        assert got[2] == want[2]                                  # scale
        assert [tuple(p) for p in got[3]] == [tuple(p) for p in want[3]]
        assert got[4] == want[4]                                  # crop


# ------------------------------------------------------------------------ resize_mask
@pytest.mark.parametrize("dtype", [bool, np.uint8])
@pytest.mark.parametrize("mode, kwargs", [("square", dict(min_dim=96, max_dim=128)),
                                          ("square", dict(min_dim=None, max_dim=40)),
                                          ("pad64", dict(min_dim=128)),
                                          ("crop", dict(min_dim=64))])
def test_resize_mask_equals_scipy_zoom(dtype, mode, kwargs):
    rng = np.random.default_rng(3)
    for shape in [(37, 53), (120, 90), (300, 410), (7, 5)]:
        if mode == "crop" and min(shape) < 10:
            continue
        mask = (rng.random(shape + (3,)) > 0.6).astype(dtype)
        random.seed(1)
        _, _, scale, padding, crop = mimage.resize_image(
            np.zeros(shape + (3,), np.uint8), mode=mode, **kwargs)
        got = mimage.resize_mask(mask, scale, padding, crop)
        want = mp.resize_mask(mask, scale, padding, crop)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300))
def test_nearest_indices_equal_scipy(n_in, n_out):
    import scipy.ndimage as ndi
    ramp = np.arange(n_in, dtype=np.float64)
    want = ndi.zoom(ramp, n_out / n_in, order=0)
    idx = resample_np.zoom_nearest_indices(n_in, n_out)
    assert len(idx) == len(want)
    np.testing.assert_array_equal(np.where(idx >= 0, ramp[np.maximum(idx, 0)], 0.0), want)


# ------------------------------------------------------------------------ mini masks
def _instances(rng, h, w, n):
    """Random blobs, full rectangles and thin strips: the shapes that stress a resize."""
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w, n), bool)
    for i in range(n):
        y1, x1 = rng.integers(0, h - 1), rng.integers(0, w - 1)
        y2, x2 = rng.integers(y1 + 1, h + 1), rng.integers(x1 + 1, w + 1)
        kind = i % 3
        if kind == 0:
            mask[y1:y2, x1:x2, i] = True
        elif kind == 1:
            cy, cx, ry, rx = (y1 + y2) / 2, (x1 + x2) / 2, (y2 - y1) / 2 + .5, (x2 - x1) / 2 + .5
            mask[..., i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask[y1:y2, x1:x2, i] = rng.random((y2 - y1, x2 - x1)) > 0.5
        if not mask[..., i].any():
            mask[y1, x1, i] = True
    return mask


@pytest.mark.parametrize("mini_shape", [(56, 56), (28, 28), (7, 9)])
def test_minimize_and_expand_mask_equal_matterport(mini_shape):
    rng = np.random.default_rng(4)
    for h, w in [(64, 80), (200, 130), (31, 17)]:
        mask = _instances(rng, h, w, 12)
        bbox = mp.extract_bboxes(mask)
        mini = mimage.minimize_mask(bbox, mask, mini_shape)
        np.testing.assert_array_equal(mini, mp.minimize_mask(bbox, mask, mini_shape))
        np.testing.assert_array_equal(mimage.expand_mask(bbox, mini, mask.shape),
                                      mp.expand_mask(bbox, mini, mask.shape))


# ------------------------------------------------------------------------ mask pasting
def _boxes(rng, n, h, w):
    boxes = []
    for i in range(n):
        bh = int(rng.integers(1, 4)) if i % 4 == 0 else int(rng.integers(1, h + 1))
        bw = int(rng.integers(1, 4)) if i % 4 == 1 else int(rng.integers(1, w + 1))
        y1 = 0 if i % 5 == 2 else int(rng.integers(0, h - bh + 1))   # touching the top
        x1 = w - bw if i % 5 == 3 else int(rng.integers(0, w - bw + 1))  # touching the right
        boxes.append([y1, x1, y1 + bh, x1 + bw])
    return np.array(boxes, np.int32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paste_masks_equal_matterport_unmold_mask(dtype):
    rng = np.random.default_rng(5)
    for h, w in [(480, 640), (50, 37), (128, 128)]:
        n = 40
        logits = rng.normal(0, 3, (n, 28, 28))
        masks = (1 / (1 + np.exp(-logits))).astype(dtype)
        masks[::7] = 0.5                      # ties at the threshold
        masks[3::7] = 0.75                    # a mask wholly above it
        boxes = _boxes(rng, n, h, w)
        got = mimage.paste_masks(masks, boxes, (h, w, 3))
        want = np.stack([mp.unmold_mask(m, b, (h, w, 3)) for m, b in zip(masks, boxes)], -1)
        np.testing.assert_array_equal(got, want)
        for i in range(3):
            np.testing.assert_array_equal(mimage.unmold_mask(masks[i], boxes[i], (h, w)),
                                          want[..., i])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 200), st.integers(1, 200),
       st.integers(0, 2 ** 31), st.sampled_from(["sigmoid", "binary", "flat"]))
def test_resize_threshold_equals_skimage(h, w, out_h, out_w, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "binary":
        plane = rng.random((h, w)) > 0.5
        want = np.around(mp.resize(plane.astype(float), (out_h, out_w))).astype(bool)
        rule = "round"
    else:
        plane = (1 / (1 + np.exp(-rng.normal(0, 3, (h, w))))).astype(np.float32)
        if kind == "flat":
            plane[:] = rng.choice([0.5, 0.25, 1.0])
        want = mp.resize(plane, (out_h, out_w)) >= 0.5
        rule = "ge_half"
    np.testing.assert_array_equal(resample_np.resize_threshold(plane, out_h, out_w, rule), want)


# ------------------------------------------------------------------------ molding, unmolding
class _Cfg(Config):
    NAME = "fidelity"
    NUM_CLASSES = 1 + 3
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 192
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


@pytest.mark.parametrize("shape", [(100, 150), (400, 300), (192, 192), (57, 301)])
def test_mold_inputs_equals_matterport(tiny_inference_model, shape):
    from mrcnn import model as modellib
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    config = _Cfg()
    facade = modellib.MaskRCNN.__new__(modellib.MaskRCNN)
    facade.config = config
    molded, metas, windows = facade.mold_inputs([image])
    want_molded, want_metas, want_windows = mp.mold_inputs([image], config)
    assert molded.dtype == np.float32
    np.testing.assert_array_equal(molded, want_molded)
    np.testing.assert_array_equal(metas, want_metas)
    np.testing.assert_array_equal(windows, want_windows)


def test_unmold_detections_equals_matterport(tiny_inference_model):
    rng = np.random.default_rng(7)
    model = tiny_inference_model
    for original in [(480, 640, 3), (100, 60, 3), (128, 128, 3)]:
        image = np.zeros(original, np.uint8)
        _, _, windows = model.mold_inputs([image])
        molded_shape = (model.config.IMAGE_MAX_DIM,) * 2 + (3,)
        d = 30
        # The detection layer clips boxes to the window (normalized to the molded image).
        wy1, wx1, wy2, wx2 = mp.norm_boxes(windows[0], molded_shape[:2])
        y = np.sort(rng.uniform(wy1, wy2, (d, 2)), axis=1)
        x = np.sort(rng.uniform(wx1, wx2, (d, 2)), axis=1)
        boxes = np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1)
        boxes[:4, 2] = boxes[:4, 0]                       # zero height: dropped
        boxes[4:6] = [wy1, wx1, wy2, wx2]                 # the whole window
        detections = np.zeros((40, 6), np.float32)
        detections[:d, :4] = boxes
        detections[:d, 4] = rng.integers(1, 4, d)
        detections[:d, 5] = rng.uniform(0.5, 1, d)
        masks = (1 / (1 + np.exp(-rng.normal(0, 3, (40, 28, 28, 4))))).astype(np.float32)
        got = model.unmold_detections(detections, masks, original, molded_shape, windows[0])
        want = mp.unmold_detections(detections, masks, original, molded_shape, windows[0])
        for g, w_ in zip(got, want):
            np.testing.assert_array_equal(g, w_)


def test_load_image_gt_equals_matterport(tiny_config):
    from mrcnn.datasets.synthetic import SyntheticShapesDataset
    from mrcnn.training.data import load_image_gt

    class Cfg(type(tiny_config)):
        IMAGE_MIN_DIM = 100
        IMAGE_MAX_DIM = 128

    config = Cfg()
    dataset = SyntheticShapesDataset()
    dataset.load_shapes(4, 90, 150, seed=3)
    dataset.prepare()
    for image_id in dataset.image_ids:
        got = load_image_gt(dataset, config, image_id)
        image = dataset.load_image(image_id)
        mask, class_ids = dataset.load_mask(image_id)
        active = np.zeros([config.NUM_CLASSES], np.int32)
        active[dataset.source_class_ids[dataset.image_info[image_id]["source"]]] = 1
        want = mp.load_image_gt(image, mask, np.asarray(class_ids, np.int32), config,
                                image_id, active)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1].astype(np.float32))
        for g, w_ in zip(got[2:], want[2:]):
            np.testing.assert_array_equal(g, w_)
