"""A user-style data set for the input pipeline tests, in a module of its own so that worker
processes started by spawn can import it (as they would a user's module).

Images are generated in memory (no files): sizes that do not divide evenly, polygons from large to
one pixel thin (some vanish when the image is shrunk), crowd regions (negative class ids), an
image without instances and one with more instances than a small ``MAX_GT_INSTANCES``.
"""

import numpy as np
import skimage.draw

from mrcnn import utils


class PolygonDataset(utils.Dataset):
    """``count`` images of ``height`` x ``width`` with up to ``max_instances`` polygons; image 1
    has no instances; ``load_mask`` returns ``mask_dtype`` masks."""

    def __init__(self, count=6, height=150, width=230, max_instances=10, seed=0,
                 mask_dtype=bool):
        super().__init__()
        self.mask_dtype = mask_dtype
        self.add_class("poly", 1, "a")
        self.add_class("poly", 2, "b")
        rng = np.random.default_rng(seed)
        for i in range(count):
            shapes = []
            n = 0 if i == 1 else int(rng.integers(1, max_instances + 1))
            for k in range(n):
                cy, cx = rng.uniform(0, height), rng.uniform(0, width)
                if k % 4 == 3:  # a one-pixel-thin line: may vanish when resized down
                    ys = np.array([cy, cy + rng.uniform(5, 40), cy + rng.uniform(5, 40), cy])
                    xs = np.array([cx, cx, cx + 0.9, cx + 0.9])
                else:
                    r = rng.uniform(3, 60)
                    angles = np.sort(rng.uniform(0, 2 * np.pi, 8))
                    ys = cy + r * rng.uniform(0.5, 1, 8) * np.sin(angles)
                    xs = cx + r * rng.uniform(0.5, 1, 8) * np.cos(angles)
                class_id = -1 if k == 2 else int(rng.integers(1, 3))  # instance 2 is a crowd
                shapes.append((class_id, ys, xs))
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            self.add_image("poly", image_id=i, path="memory://%d" % i, shapes=shapes,
                           pixels=pixels)
        self.prepare()

    def load_image(self, image_id):
        return self.image_info[image_id]["pixels"]

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        h, w = info["pixels"].shape[:2]
        mask = np.zeros([h, w, len(info["shapes"])], dtype=np.uint8)
        for i, (_, ys, xs) in enumerate(info["shapes"]):
            rr, cc = skimage.draw.polygon(ys, xs, shape=(h, w))
            mask[rr, cc, i] = 1
        ids = np.array([c for c, _, _ in info["shapes"]], np.int32)
        return mask.astype(self.mask_dtype), ids
