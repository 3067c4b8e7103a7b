"""Seconds for the NumPy work around the graph: molding an image, pasting 100 masks, and one
image's training targets, ours against the library calls Matterport makes.

    python bench/preprocess.py [--repeats 7]

Matterport's figures call ``skimage.transform.resize`` / ``scipy.ndimage.zoom`` with its
arguments (as its utils do); ours call ``mrcnn.image`` (whatever ``mrcnn`` is importable, so
``PYTHONPATH=/path/to/other/checkout`` times another version of it).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_flags, report, timed  # noqa: E402


def sk_resize(image, shape, preserve_range=False):
    from skimage.transform import resize
    return resize(image, shape, order=1, mode="constant", cval=0, clip=True,
                  preserve_range=preserve_range, anti_aliasing=False)


def matterport_mold(image, max_dim):
    h, w = image.shape[:2]
    scale = min(max(1, 800 / min(h, w)), max_dim / max(h, w))
    out = sk_resize(image, (round(h * scale), round(w * scale)), preserve_range=True)
    top, left = (max_dim - out.shape[0]) // 2, (max_dim - out.shape[1]) // 2
    out = np.pad(out, [(top, max_dim - out.shape[0] - top),
                       (left, max_dim - out.shape[1] - left), (0, 0)])
    return out.astype(image.dtype).astype(np.float32) - np.array([123.7, 116.8, 103.9])


def matterport_paste(masks, boxes, shape):
    full = []
    for m, (y1, x1, y2, x2) in zip(masks, boxes):
        f = np.zeros(shape[:2], bool)
        f[y1:y2, x1:x2] = sk_resize(m, (y2 - y1, x2 - x1)) >= 0.5
        full.append(f)
    return np.stack(full, -1)


def matterport_targets(mask, scale, padding, mini_shape):
    import scipy.ndimage as ndi
    mask = np.pad(ndi.zoom(mask, [scale, scale, 1], order=0), padding)
    out = np.zeros(mini_shape + (mask.shape[-1],), bool)
    for i in range(mask.shape[-1]):
        rows, cols = np.nonzero(np.any(mask[..., i], 1))[0], np.nonzero(np.any(mask[..., i], 0))[0]
        m = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1, i]
        out[..., i] = np.around(sk_resize(m.astype(float), mini_shape)).astype(bool)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from mrcnn.config import Config
    from mrcnn.image import minimize_mask, mold_image, paste_masks, resize_image, resize_mask
    from mrcnn.ops.boxes_np import extract_bboxes
    import mrcnn

    print(cpu_flags(), "; mrcnn from", os.path.dirname(mrcnn.__file__))
    config = Config()
    rng = np.random.default_rng(0)

    def ours_mold(image):
        m = resize_image(image, min_dim=800, max_dim=1024, mode="square")[0]
        return mold_image(m, config)

    for shape in [(480, 640), (3000, 4000)]:
        image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
        mp = report("mold %dx%d -> 1024, Matterport" % shape,
                    timed(lambda: matterport_mold(image, 1024), args.repeats))
        us = report("mold %dx%d -> 1024, mrcnn" % shape,
                    timed(lambda: ours_mold(image), args.repeats))
        print("  ratio Matterport / mrcnn: %.2f" % (mp / us))

    # 100 detections on a 480x640 photo: boxes 10-300 px, sigmoid mask-head outputs.
    n, shape = 100, (480, 640, 3)
    y1 = rng.integers(0, 400, n)
    x1 = rng.integers(0, 560, n)
    boxes = np.stack([y1, x1, np.minimum(y1 + rng.integers(10, 300, n), 480),
                      np.minimum(x1 + rng.integers(10, 300, n), 640)], 1)
    masks = (1 / (1 + np.exp(-rng.normal(0, 3, (n, 28, 28))))).astype(np.float32)
    mp = report("paste 100 masks into 480x640, Matterport",
                timed(lambda: matterport_paste(masks, boxes, shape), args.repeats))
    us = report("paste 100 masks into 480x640, mrcnn",
                timed(lambda: paste_masks(masks, boxes, shape), args.repeats))
    print("  ratio Matterport / mrcnn: %.2f" % (mp / us))

    # Training targets of one 480x640 image with 10 instances, molded to 1024, 56x56 mini masks.
    mask = np.zeros((480, 640, 10), bool)
    yy, xx = np.mgrid[:480, :640]
    for i in range(10):
        cy, cx, r = rng.integers(60, 420), rng.integers(60, 580), rng.integers(15, 60)
        mask[..., i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    _, _, scale, padding, crop = resize_image(np.zeros((480, 640, 3), np.uint8), 800, 1024)

    def ours_targets():
        m = resize_mask(mask, scale, padding, crop)
        return minimize_mask(extract_bboxes(m), m, (56, 56))

    mp = report("targets 10 instances, Matterport",
                timed(lambda: matterport_targets(mask, scale, padding, (56, 56)), args.repeats))
    us = report("targets 10 instances, mrcnn", timed(ours_targets, args.repeats))
    print("  ratio Matterport / mrcnn: %.2f" % (mp / us))


if __name__ == "__main__":
    main()
