"""Image and mask resizing, mini masks, molding.

Images are ``[H, W, C]`` arrays (RGB ``uint8`` once they reach the model). Masks are ``[H, W, N]``
bool, one channel per instance. Boxes are pixel ``(y1, x1, y2, x2)`` with ``y2``/``x2`` one past the
last pixel inside.

Resizing is Matterport's, to the bit (the released weights were trained on it): images by
``skimage.transform.resize`` with order 1, ``mode="constant"`` (border pixels blend with black) and
no anti-aliasing, then truncated to the input dtype; masks by ``scipy.ndimage.zoom`` with order 0;
mask crops and pastes by the same bilinear resize, thresholded. ``mrcnn.ops.resample_np`` computes
each of them faster than those calls, with equal results (tests compare with the calls).
"""

import random

import numpy as np

from mrcnn.ops import resample_np

__all__ = [
    "to_rgb_uint8", "resize", "resize_image", "resize_mask", "minimize_mask", "minimize_crops",
    "expand_mask",
    "unmold_mask", "mold_image", "unmold_image",
]


# ---------------------------------------------------------------------------- conversion
def to_rgb_uint8(image):
    """Convert an image to RGB ``uint8`` ``[H, W, 3]``.

    image: array of shape ``[H, W]``, ``[H, W, 1]`` (grayscale, replicated to 3 channels),
    ``[H, W, 2]`` (grayscale + alpha), ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA; alpha dropped).
    Values are mapped to ``[0, 255]`` by dtype:

    - ``uint8``: unchanged (an RGB ``uint8`` input is returned as is, without a copy);
    - ``bool``: False -> 0, True -> 255;
    - ``uint16``: divided by 257 (65535 -> 255) and rounded;
    - other integers: kept if they lie in [0, 255], divided by 257 if in [0, 65535],
      else rescaled from [min, max] to [0, 255];
    - floats: multiplied by 255 if they lie in [0, 1] (skimage's convention), else taken as
      [0, 255]; clipped to [0, 255]; NaN becomes 0.

    Raises ValueError for other shapes.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4) or image.size == 0:
        raise ValueError(f"Expected an image of shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], "
                         f"got shape {image.shape}")
    channels = image.shape[2]
    if channels == 4:
        image = image[:, :, :3]
    elif channels == 2:
        image = image[:, :, :1]

    image = _to_uint8_values(image)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image


def _to_uint8_values(image):
    dtype = image.dtype
    if dtype == np.uint8:
        return image
    if dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    if dtype == np.uint16:
        return np.rint(image / 257.0).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        lo, hi = int(image.min()), int(image.max())
        if lo >= 0 and hi <= 255:
            return image.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return np.rint(image / 257.0).astype(np.uint8)
        return np.rint((image - lo) * (255.0 / max(hi - lo, 1))).astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if image.size and image.min() >= 0.0 and image.max() <= 1.0:
            image = image * 255.0
        return np.rint(np.clip(image, 0.0, 255.0)).astype(np.uint8)
    raise ValueError(f"Unsupported image dtype {dtype}")


# ---------------------------------------------------------------------------- resizing
def resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
           preserve_range=False, anti_aliasing=False, anti_aliasing_sigma=None):
    """Matterport's ``utils.resize``: ``skimage.transform.resize`` with Matterport's defaults
    (order 1, mode "constant", cval 0, clip, no anti-aliasing), same arguments, same result.

    image: [H, W] or [H, W, C]; output_shape: (out_h, out_w). Returns float32 for float16/float32
    input, else float64 (values scaled to [0, 1] for integers unless ``preserve_range``).
    Those defaults run through a faster, bit-equal implementation; other arguments call skimage.
    """
    image = np.asarray(image)
    shape = tuple(int(v) for v in output_shape)
    keeps_channels = len(shape) == 2 or (len(shape) == 3 and image.ndim == 3
                                         and shape[2] == image.shape[2])
    if (order == 1 and mode == "constant" and cval == 0 and clip and not anti_aliasing
            and image.ndim in (2, 3) and keeps_channels and image.size
            and image.dtype != np.bool_ and min(shape[:2]) > 0):
        return resample_np.sk_resize_linear(image, shape[0], shape[1],
                                            preserve_range=preserve_range)
    from skimage.transform import resize as sk_resize
    return sk_resize(image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
                     preserve_range=preserve_range, anti_aliasing=anti_aliasing,
                     anti_aliasing_sigma=anti_aliasing_sigma)


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None):
    """Resize an image keeping its aspect ratio, then pad or crop it (Matterport semantics).

    image: [H, W, C] array (any numeric dtype; the output keeps it). Resampled as Matterport
        does (see the module docstring): bilinear, borders blended with black, no anti-aliasing
        when shrinking, values truncated (not rounded) back to the dtype.
    min_dim: scale up (never down) so that the shorter side is at least ``min_dim``.
    max_dim: in "square" mode, scale down so the longer side is at most ``max_dim``, then pad to
        ``max_dim x max_dim``.
    min_scale: scale by at least this factor (after ``min_dim``).
    mode:
        - "none": return the image unchanged;
        - "square": resize as above, pad with zeros to ``[max_dim, max_dim, C]``;
        - "pad64": resize by ``min_dim``/``min_scale``, pad both sides up to multiples of 64;
        - "crop": resize by ``min_dim``/``min_scale``, take a random ``min_dim x min_dim`` crop.
    rng: optional ``np.random.Generator`` for the crop position (default: Python's ``random``).

    Returns ``(image, window, scale, padding, crop)``:
        image: the resized array, dtype of the input;
        window: ``(y1, x1, y2, x2)`` of the (unpadded) image inside the result;
        scale: the factor applied to the original image;
        padding: ``[(top, bottom), (left, right), (0, 0)]`` added around it;
        crop: ``(y, x, h, w)`` taken from the resized image in "crop" mode, else None.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"resize_image: expected an image of shape [H, W, C], got {image.shape}")
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None

    if mode == "none":
        return image, window, scale, padding, crop
    if mode not in ("square", "pad64", "crop"):
        raise ValueError(f"resize_image: unknown mode {mode!r}; use none, square, pad64 or crop")
    if mode == "square" and not max_dim:
        raise ValueError("resize_image: square mode needs max_dim")
    if mode == "crop" and not min_dim:
        raise ValueError("resize_image: crop mode needs min_dim (the crop size)")

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square":
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max

    if scale != 1:
        # Matterport: resize(..., preserve_range=True).astype(image.dtype), which truncates.
        image = resample_np.sk_resize_linear(image, round(h * scale), round(w * scale),
                                             preserve_range=True).astype(image.dtype)
    h, w = image.shape[:2]

    if mode == "square":
        top = (max_dim - h) // 2
        left = (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
        image = _pad(image, padding, (max_dim, max_dim))
        window = (top, left, top + h, left + w)
    elif mode == "pad64":
        pad_h = -h % 64
        pad_w = -w % 64
        top, left = pad_h // 2, pad_w // 2
        padding = [(top, pad_h - top), (left, pad_w - left), (0, 0)]
        image = _pad(image, padding, (h + pad_h, w + pad_w))
        window = (top, left, top + h, left + w)
    else:  # crop
        if rng is None:
            y = random.randint(0, h - min_dim)
            x = random.randint(0, w - min_dim)
        else:
            y = int(rng.integers(0, h - min_dim + 1))
            x = int(rng.integers(0, w - min_dim + 1))
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    return image, window, scale, padding, crop


def _pad(array, padding, out_hw):
    """Zero-pad the first two axes of ``array`` into an (out_h, out_w, ...) array."""
    (top, _), (left, _) = padding[0], padding[1]
    if out_hw == array.shape[:2]:
        return array
    out = np.zeros(tuple(out_hw) + array.shape[2:], array.dtype)
    out[top:top + array.shape[0], left:left + array.shape[1]] = array
    return out


def resize_mask(mask, scale, padding, crop=None):
    """Apply to masks the resize and pad/crop that `resize_image` applied to their image.

    mask: [H, W, N] (or [H, W]) of any dtype, kept; scale, padding, crop: as returned by
    `resize_image`. Matterport's ``scipy.ndimage.zoom(mask, [scale, scale, 1], order=0)``
    (nearest neighbour, corner-aligned: output pixel ``o`` reads ``round(o * (H - 1) /
    (out_h - 1))``), then the same padding or crop. The resized size is ``round(H * scale),
    round(W * scale)``, the image's.
    """
    mask = np.asarray(mask)
    h, w = mask.shape[:2]
    out_h, out_w = round(h * scale), round(w * scale)
    if (out_h, out_w) != (h, w):
        rows = resample_np.zoom_nearest_indices(h, out_h)
        cols = resample_np.zoom_nearest_indices(w, out_w)
        if rows.min() < 0 or cols.min() < 0:  # SciPy read outside: its cval, 0
            mask = np.concatenate([np.zeros((1,) + mask.shape[1:], mask.dtype), mask], axis=0)
            mask = np.concatenate([np.zeros((mask.shape[0], 1) + mask.shape[2:], mask.dtype),
                                   mask], axis=1)
            rows, cols = rows + 1, cols + 1
        mask = mask[rows][:, cols]
    if crop is not None:
        y, x, ch, cw = crop
        return mask[y:y + ch, x:x + cw]
    (top, bottom), (left, right) = padding[0], padding[1]
    return _pad(mask, padding, (out_h + top + bottom, out_w + left + right))


# ---------------------------------------------------------------------------- mini masks
def minimize_mask(bbox, mask, mini_shape):
    """Crop each instance mask to its box and resize it to ``mini_shape`` (saves memory).

    bbox: int [N, 4] pixel boxes (from `extract_bboxes`); mask: [H, W, N] (read as bool);
    mini_shape: (height, width).
    Returns bool [mini_h, mini_w, N]: Matterport's ``np.around(resize(crop.astype(float),
    mini_shape))``, so a mini pixel is on where the bilinear value exceeds 0.5.
    Raises ValueError for an instance whose box is empty.
    """
    bbox = np.asarray(bbox)
    mask = np.asarray(mask)
    crops = []
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        m = mask[y1:y2, x1:x2, i].astype(bool, copy=False)
        if m.size == 0:
            raise ValueError(f"minimize_mask: instance {i} has an empty box {[y1, x1, y2, x2]}")
        crops.append(m)
    return minimize_crops(crops, mini_shape)


def minimize_crops(crops, mini_shape):
    """`minimize_mask` of masks already cropped to their boxes.

    crops: N bool arrays ``[box_h, box_w]`` (non-empty); mini_shape: (height, width).
    Returns bool [mini_h, mini_w, N].
    """
    mini_h, mini_w = int(mini_shape[0]), int(mini_shape[1])
    mini_mask = np.zeros((mini_h, mini_w, len(crops)), dtype=bool)
    with resample_np.single_threaded_blas():
        for i, crop in enumerate(crops):
            mini_mask[:, :, i] = resample_np.resize_threshold(crop, mini_h, mini_w, "round")
    return mini_mask


def _paste(full, m, y1, x1):
    """Write ``m`` into 2-D ``full`` at (y1, x1), clipping to ``full``'s bounds."""
    h, w = m.shape
    fy1, fx1 = max(y1, 0), max(x1, 0)
    fy2, fx2 = min(y1 + h, full.shape[0]), min(x1 + w, full.shape[1])
    if fy2 > fy1 and fx2 > fx1:
        full[fy1:fy2, fx1:fx2] = m[fy1 - y1:fy2 - y1, fx1 - x1:fx2 - x1]


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of `minimize_mask`: paste each mini mask back into its box.

    bbox: int [N, 4] pixel boxes; mini_mask: [mini_h, mini_w, N]; image_shape: (H, W, ...).
    Returns bool [H, W, N]: Matterport's ``np.around(resize(mini, (y2 - y1, x2 - x1)))`` pasted
    into each box. Boxes with zero area give empty masks.
    """
    bbox = np.asarray(bbox)
    mini_mask = np.asarray(mini_mask)
    n = mini_mask.shape[-1]
    mask = np.zeros((int(image_shape[0]), int(image_shape[1]), n), dtype=bool)
    with resample_np.single_threaded_blas():
        for i in range(n):
            y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
            if y2 <= y1 or x2 <= x1:
                continue
            m = resample_np.resize_threshold(mini_mask[:, :, i], y2 - y1, x2 - x1, "round")
            _paste(mask[:, :, i], m, y1, x1)
    return mask


def unmold_mask(mask, bbox, image_shape):
    """Paste a mask predicted for one box into a full-image mask.

    mask: float [h, w] (e.g. the 28x28 output of the mask head, values in [0, 1]);
    bbox: pixel ``(y1, x1, y2, x2)``; image_shape: (H, W, ...).
    Returns bool [H, W]: Matterport's ``resize(mask, (y2 - y1, x2 - x1)) >= 0.5`` pasted into
    the box; parts of the box outside the image are dropped.
    """
    return paste_masks(np.asarray(mask)[None], np.asarray(bbox)[None, :4], image_shape)[:, :, 0]


def paste_masks(masks, boxes, image_shape):
    """`unmold_mask` for many boxes at once, writing only inside each box.

    masks: float [N, h, w] (one per box); boxes: int [N, 4] pixel ``(y1, x1, y2, x2)``;
    image_shape: (H, W, ...). Returns bool [H, W, N], equal to stacking ``unmold_mask`` results,
    without allocating and copying a full image per instance.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    full = np.zeros((height, width, len(boxes)), dtype=bool)
    with resample_np.single_threaded_blas():
        for i, (y1, x1, y2, x2) in enumerate(np.asarray(boxes, np.int64).reshape(-1, 4)):
            if y2 <= y1 or x2 <= x1:
                continue
            m = resample_np.resize_threshold(masks[i], int(y2 - y1), int(x2 - x1), "ge_half")
            _paste(full[:, :, i], m, int(y1), int(x1))
    return full


# ---------------------------------------------------------------------------- molding
def mold_image(images, config):
    """Network input from RGB images: float32, ``config.MEAN_PIXEL`` subtracted.

    images: [..., H, W, C] of any numeric dtype. Returns float32, same shape.
    As Matterport's ``images.astype(np.float32) - config.MEAN_PIXEL``: the subtraction is in
    float64 (MEAN_PIXEL is a float64 array) and the network receives it rounded to float32, which
    differs in the last bits from subtracting a float32 mean.
    """
    images = np.asarray(images).astype(np.float32, copy=False)
    return (images - np.asarray(config.MEAN_PIXEL, np.float64)).astype(np.float32)


def unmold_image(normalized_images, config):
    """Inverse of `mold_image`: add ``config.MEAN_PIXEL``, round, clip to [0, 255], uint8."""
    images = np.asarray(normalized_images, np.float32) + np.asarray(config.MEAN_PIXEL, np.float32)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)
