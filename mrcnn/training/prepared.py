"""One training image resized to the model's input, with its instances kept as crops.

`prepare_image` does the costly, deterministic part of an image's training inputs once: decode,
the data set's ``load_mask``, Matterport's resize and pad (``mrcnn.image.resize_image`` /
``resize_mask``). Instead of the ``[H, W, N]`` array of resized masks it keeps each instance as its
tight box in the molded image and the mask inside that box, taken straight from the original
masks: no full-size resized array (``N`` times the image) is ever made, so the memory an image
takes grows with its instances' areas, not with their number times the image size.

The result equals Matterport's ``load_image_gt`` arrays exactly (tests compare them): the crop of
instance ``i`` is ``resize_mask(mask, ...)[y1:y2, x1:x2, i]`` and its box is what
``extract_bboxes`` finds there. Boxes are pixel ``(y1, x1, y2, x2)``, ``y2``/``x2`` exclusive, in
the molded (resized and padded) image.
"""

from dataclasses import dataclass, field

import numpy as np

from mrcnn.image import minimize_crops, resize_image
from mrcnn.ops import resample_np
from mrcnn.ops.boxes_np import extract_bboxes
from mrcnn.ops.thread_pools import LazyThreadPool

__all__ = ["PreparedImage", "prepare_image", "instance_crops", "masks_for_training"]


@dataclass
class PreparedImage:
    """An image and its instances after resizing, before augmentation.

    pixels: uint8 (the data set's dtype) [h, w, C], the resized image inside ``window`` (the
        padding is added back by `image`); shape: (H, W, C) of the molded image;
    window: (y1, x1, y2, x2) of the image inside the molded one; scale, padding, crop: as
        `mrcnn.image.resize_image` returns them; original_shape: the image's shape as loaded;
    class_ids: int32 [N], the instances that survive resizing, in the data set's order;
    boxes: int32 [N, 4] their tight pixel boxes in the molded image;
    crops: N bool arrays, ``crops[i]`` of shape ``[y2 - y1, x2 - x1]`` for ``boxes[i]``.
    """

    pixels: np.ndarray
    shape: tuple
    window: tuple
    scale: float
    padding: list
    crop: tuple
    original_shape: tuple
    class_ids: np.ndarray
    boxes: np.ndarray
    crops: list = field(default_factory=list)

    @property
    def nbytes(self):
        """Bytes held by the arrays (what a cache entry costs)."""
        return (self.pixels.nbytes + self.class_ids.nbytes + self.boxes.nbytes
                + sum(c.nbytes for c in self.crops))

    def image(self):
        """The molded image, uint8 [H, W, C] (zero padding around the window)."""
        y1, x1, y2, x2 = self.window
        if self.pixels.shape[:2] == tuple(self.shape[:2]):
            return self.pixels
        out = np.zeros(tuple(self.shape), self.pixels.dtype)
        out[y1:y2, x1:x2] = self.pixels
        return out

    def dense_masks(self):
        """bool [H, W, N]: each instance's mask in the molded image (``resize_mask``'s result)."""
        out = np.zeros(tuple(self.shape[:2]) + (len(self.crops),), bool)
        for i, ((y1, x1, y2, x2), crop) in enumerate(zip(self.boxes, self.crops)):
            out[y1:y2, x1:x2, i] = crop
        return out

    def mini_masks(self, mini_shape):
        """bool [mini_h, mini_w, N]: `mrcnn.image.minimize_mask` of the dense masks, from the
        crops (which are exactly what it reads)."""
        return minimize_crops(self.crops, mini_shape)


def _first_last(flags):
    """For bool [L, N]: (first index, one past the last index) of True along axis 0 for each
    column, and whether the column has any."""
    present = flags.any(axis=0)
    first = np.argmax(flags, axis=0)
    last = flags.shape[0] - np.argmax(flags[::-1], axis=0)
    return first, last, present


def _any_along_width(mask, rows_per_block=64):
    """``mask.any(axis=1)`` for [H, W, N] masks, bool [H, N].

    NumPy reduces over a middle axis one short vector at a time; OR-ing the two halves of the
    width into each other until one column is left runs on whole rows instead (several times
    faster). Blocks of rows keep the temporaries to a fraction of the masks.
    """
    h, w, n = mask.shape
    out = np.empty((h, n), bool)
    bytewise = mask.dtype == np.bool_ or mask.dtype in (np.uint8, np.int8)
    for start in range(0, h, rows_per_block):
        x = mask[start:start + rows_per_block]
        x = x.view(np.uint8) if bytewise else (x != 0).view(np.uint8)
        width = w
        while width > 1:
            half = width // 2
            y = x[:, :half] | x[:, half:2 * half]
            if width % 2:
                y[:, 0] |= x[:, 2 * half]
            x, width = y, half
        out[start:start + rows_per_block] = x[:, 0] != 0
    return out


def _span(index, lo, hi):
    """(start, stop) of the run of ``index`` entries in [lo, hi). ``index`` rises, except for
    -1 entries (reads outside the source) that SciPy's rounding can put at either end."""
    inside = np.flatnonzero((index >= lo) & (index < hi))
    if not len(inside):
        return 0, 0
    return inside[0], inside[-1] + 1


def instance_crops(mask, scale, padding, crop=None):
    """Each instance's tight box and mask crop after ``resize_mask(mask, scale, padding, crop)``,
    without making that resized array.

    mask: [H, W, N] (nonzero is inside). Returns (keep bool [N]: the instance has pixels after
    resizing, boxes int32 [K, 4] in the resized frame, crops: K bool arrays), K = keep.sum().
    """
    mask = np.asarray(mask)
    h, w, n = mask.shape
    if n == 0 or h == 0 or w == 0:
        return np.zeros([n], bool), np.zeros([0, 4], np.int32), []
    out_h, out_w = round(h * scale), round(w * scale)
    if (out_h, out_w) != (h, w):
        rows = resample_np.zoom_nearest_indices(h, out_h)  # -1: SciPy reads its cval, 0
        cols = resample_np.zoom_nearest_indices(w, out_w)
    else:
        rows, cols = np.arange(h), np.arange(w)
    if crop is not None:
        cy, cx, ch, cw = crop
        rows, cols = rows[cy:cy + ch], cols[cx:cx + cw]
        top = left = 0
    else:
        top, left = padding[0][0], padding[1][0]

    # One pass over the original masks for the rows and one for the columns each instance uses.
    r_first, r_last, present = _first_last(_any_along_width(mask))
    c_first, c_last, _ = _first_last(mask.any(axis=0))
    keep = np.zeros([n], bool)
    boxes, crops = [], []
    for i in np.flatnonzero(present):
        # The output rows and columns whose source lies inside the instance's.
        r0, r1 = _span(rows, r_first[i], r_last[i])
        c0, c1 = _span(cols, c_first[i], c_last[i])
        if r1 <= r0 or c1 <= c0:
            continue
        sub_rows, sub_cols = rows[r0:r1], cols[c0:c1]
        block = mask[np.maximum(sub_rows, 0)[:, None], np.maximum(sub_cols, 0)[None, :], i]
        block = block.astype(bool)
        block[sub_rows < 0] = False  # SciPy's reads outside the image: its cval, 0
        block[:, sub_cols < 0] = False
        y0, x0, y1, x1 = extract_bboxes(block[:, :, None])[0]
        if y1 == 0:  # the resampling skipped every pixel of a thin instance
            continue
        keep[i] = True
        boxes.append([top + r0 + y0, left + c0 + x0, top + r0 + y1, left + c0 + x1])
        crops.append(np.ascontiguousarray(block[y0:y1, x0:x1]))
    boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
    return keep, boxes, crops


# Its own pool: resize_image waits on mrcnn.ops.resample_np's pool, and a task waiting on tasks
# of its own pool could take the thread they need.
_loader = LazyThreadPool(4, "mrcnn-load")


def _reads_files(dataset):
    """Whether ``dataset.load_image`` is the library's (`mrcnn.dataset.Dataset.load_image`:
    reads the file at ``image_info[id]["path"]``, keeps no state), safe to run beside
    ``load_mask``."""
    from mrcnn.dataset import Dataset
    return getattr(type(dataset), "load_image", None) is Dataset.load_image


def _load_resized(dataset, config, image_id):
    image = dataset.load_image(image_id)
    resized, window, scale, padding, crop = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    return resized, image.shape, (window, scale, padding, crop)


def prepare_image(dataset, config, image_id):
    """Load image ``image_id`` and its masks, resize them for ``config`` and crop the instances.

    Instances with no pixel left after resizing are dropped (as ``load_image_gt`` drops them).
    Returns a `PreparedImage`. Reads ``config.IMAGE_MIN_DIM``, ``IMAGE_MAX_DIM``,
    ``IMAGE_MIN_SCALE`` and ``IMAGE_RESIZE_MODE`` ("crop" takes a random crop, from Python's
    ``random``, as Matterport does).
    """
    if _reads_files(dataset):
        # The library's own file reader: decoding and resizing (C code that releases the GIL)
        # run in a helper thread while load_mask (usually Python that holds it) runs here. A
        # data set with its own load_image keeps the one-after-the-other order it may rely on.
        image_future = _loader.get().submit(_load_resized, dataset, config, image_id)
        try:
            mask, class_ids = dataset.load_mask(image_id)
        except BaseException:
            image_future.result()  # an image that cannot be read is the error to report first
            raise
        image, original_shape, (window, scale, padding, crop) = image_future.result()
    else:
        image, original_shape, (window, scale, padding, crop) = _load_resized(
            dataset, config, image_id)
        mask, class_ids = dataset.load_mask(image_id)
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[:, :, None]
    class_ids = np.asarray(class_ids, np.int32).reshape(-1)
    if mask.ndim != 3 or mask.shape[-1] != len(class_ids):
        raise ValueError("load_mask returned masks of shape %s for %d class ids; expected "
                         "[height, width, instances] with one class id per instance"
                         % (mask.shape, len(class_ids)))
    if mask.shape[-1] and mask.shape[:2] != tuple(original_shape[:2]):
        raise ValueError("load_mask returned masks of %dx%d pixels for an image of %dx%d"
                         % (mask.shape[0], mask.shape[1], original_shape[0], original_shape[1]))
    keep, boxes, crops = instance_crops(mask, scale, padding, crop)
    del mask  # the data set's full-size masks: the largest array of all, no longer needed
    y1, x1, y2, x2 = window
    pixels = np.ascontiguousarray(image[y1:y2, x1:x2])
    return PreparedImage(pixels=pixels, shape=tuple(image.shape), window=tuple(window),
                         scale=scale, padding=padding, crop=crop,
                         original_shape=tuple(original_shape), class_ids=class_ids[keep],
                         boxes=boxes, crops=crops)


def masks_for_training(prepared, use_mini_mask, mini_shape):
    """(boxes, masks) as ``load_image_gt`` returns them for an unaugmented image: masks are
    bool [mini_h, mini_w, N] mini masks, or bool [H, W, N] without mini masks."""
    if use_mini_mask:
        return prepared.boxes, prepared.mini_masks(mini_shape)
    return prepared.boxes, prepared.dense_masks()

