"""Matterport's resampling, reproduced exactly and faster.

Matterport resizes images and masks with two library calls, and the released weights were trained
on what they produce:

- ``skimage.transform.resize(x, shape, order=1, mode="constant", cval=0, clip=True,
  anti_aliasing=False)``: bilinear interpolation at pixel centers (source coordinate
  ``(o + 0.5) * in / out - 0.5``), where samples beyond the edge read 0, so border pixels blend with
  black; no low-pass filter when shrinking; the result clipped to the input's value range. It runs
  ``scipy.ndimage.zoom(..., order=1, mode="grid-constant", grid_mode=True)`` on a float copy.
- ``scipy.ndimage.zoom(mask, [s, s, 1], order=0)``: nearest neighbour with the corner-aligned
  mapping ``o * (in - 1) / (out - 1)`` (not the pixel-center one the image uses).

This module gives the same numbers. Images go through ``scipy.ndimage.zoom`` itself, one channel
at a time (what skimage does for all channels at once, at less cost and on several threads); the
results are equal to the bit. Mask thresholds (the 28x28 mask head output pasted into a box, mini
masks) are computed separably in NumPy, and the few pixels whose value lies within rounding
distance of the threshold are recomputed with SciPy's own arithmetic (the four taps summed in its
order, with its weights), so the decision is SciPy's to the bit as well.

Arrays are ``[H, W]`` planes or ``[H, W, C]`` images; sizes are ``(out_h, out_w)`` in pixels.
"""

import contextlib
import os

import numpy as np
import scipy.ndimage as ndi

from mrcnn.ops.thread_pools import LazyThreadPool

__all__ = ["sk_resize_linear", "linear_taps", "resize_threshold", "zoom_nearest_indices",
           "single_threaded_blas"]

# Below this many output values per channel, threads cost more than they save.
_THREADED_MIN_PIXELS = 1 << 18
_pool = LazyThreadPool(min(4, os.cpu_count() or 1), "mrcnn-resize")


_blas = None


@contextlib.contextmanager
def single_threaded_blas():
    """Run the enclosed NumPy matrix products on one BLAS thread.

    `resize_threshold` multiplies matrices of a few thousand values, where a multi-threaded BLAS
    only adds synchronization: with OpenBLAS on two busy cores 100 mask pastes took 0.5 s on two
    threads and 4.5 ms on one. Wrap loops of `resize_threshold` calls in this (it costs ~20 us);
    the previous thread count is restored on exit.
    """
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        yield


def _to_float(array, preserve_range):
    """skimage's ``convert_to_float``: float32 and float64 stay as they are, float16 becomes
    float32; other types become float64, their values kept with ``preserve_range``, else scaled
    to [0, 1] (``img_as_float``; bool becomes 0.0 / 1.0)."""
    dtype = array.dtype
    if dtype == np.float16:
        return array.astype(np.float32)
    if dtype == np.float32 or dtype == np.float64:
        return array
    if preserve_range or dtype == np.bool_:
        return array.astype(np.float64)
    from skimage.util import img_as_float
    return img_as_float(array)


def _value_range(array):
    """(min, max) of ``array`` as skimage's clip takes them (NaN-safe for floats)."""
    lo, hi = np.min(array), np.max(array)
    if np.isnan(lo):
        lo, hi = np.nanmin(array), np.nanmax(array)
    return lo, hi


def _clip_bounds(lo, hi, result, ftype, cval=0.0):
    """The bounds skimage's ``_clip_warp_output`` clips ``result`` to (mode "constant"): the
    input's range, widened to ``cval`` when cval lies outside it but inside the result's range
    (the black border blended in is then kept)."""
    lo, hi = ftype(lo), ftype(hi)
    # Every output mixes at least one input sample with a positive weight and the rest with
    # cval's 0, so with all samples above cval no output reaches it: skip the two passes.
    if hi < cval and np.min(result) <= cval <= np.max(result):
        lo, hi = min(lo, ftype(cval)), max(hi, ftype(cval))
    return lo, hi


def _zoom_plane(plane, out_h, out_w, out):
    # skimage's zoom factors (1 / (in / out)); SciPy recomputes in / out from the shapes.
    h, w = plane.shape
    ndi.zoom(plane, (1 / (h / out_h), 1 / (w / out_w)), output=out, order=1,
             mode="grid-constant", cval=0.0, grid_mode=True)


def sk_resize_linear(image, out_h, out_w, preserve_range=False):
    """``skimage.transform.resize(image, (out_h, out_w), order=1, mode="constant", cval=0,
    clip=True, preserve_range=preserve_range, anti_aliasing=False)``, equal to the bit.

    image: [H, W] or [H, W, C] of any numeric or bool dtype. Returns float32 (float16/float32
    input) or float64 (everything else) of shape [out_h, out_w] or [out_h, out_w, C].
    """
    image = np.asarray(image)
    if preserve_range and np.issubdtype(image.dtype, np.integer):
        # SciPy reads each integer sample as a double: no float copy of the image is needed.
        source, ftype = image, np.float64
    else:
        source = _to_float(image, preserve_range)
        ftype = source.dtype.type
    planes = [source] if image.ndim == 2 else [source[:, :, c] for c in range(image.shape[2])]
    buffers = [np.empty((out_h, out_w), ftype) for _ in planes]

    def work(c):
        _zoom_plane(np.ascontiguousarray(planes[c]), out_h, out_w, buffers[c])

    if len(planes) > 1 and out_h * out_w >= _THREADED_MIN_PIXELS:
        list(_pool.get().map(work, range(len(planes))))
    else:
        for c in range(len(planes)):
            work(c)
    out = buffers[0] if image.ndim == 2 else np.stack(buffers, axis=-1)
    lo, hi = _clip_bounds(*_value_range(source), out, ftype)
    np.clip(out, lo, hi, out=out)
    return out


def linear_taps(n_in, n_out):
    """SciPy's order-1, ``grid_mode`` interpolation taps along one axis.

    Returns (i0, w0, w1) for the ``n_out`` output positions: each output reads source samples
    ``i0`` and ``i0 + 1`` (either may be -1 or ``n_in``: outside, read as 0) with weights ``w0``
    and ``w1``, computed as SciPy computes them (``w1 = 1 - w0``, not the fraction itself).
    """
    zoom = np.float64(n_in) / np.float64(n_out)
    coord = (np.arange(n_out, dtype=np.float64) + 0.5) * zoom - 0.5
    start = np.floor(coord)
    w0 = 1.0 - (coord - start)
    w1 = 1.0 - w0
    return start.astype(np.intp), w0, w1


def _tap_matrix(start, w0, w1, n_in):
    """[n_out, n_in] matrix of the taps of `linear_taps` (``start`` shifted by the one-sample
    border); taps outside the source read 0 and are left out."""
    n_out = len(start)
    m = np.zeros((n_out, n_in + 2), np.float64)
    rows = np.arange(n_out)
    m[rows, start] = w0
    m[rows, start + 1] = w1
    return m[:, 1:-1]


def _exact_values(padded, ry, wy0, wy1, cx, wx0, wx1):
    """SciPy's sum for chosen output pixels: the four taps in its order (x fastest), each
    ``value * wy * wx``, accumulated from 0. ``padded`` has a zero border of one sample;
    ry/cx are already shifted into it."""
    t = np.zeros(ry.shape, np.float64)
    t += padded[ry, cx] * wy0 * wx0
    t += padded[ry, cx + 1] * wy0 * wx1
    t += padded[ry + 1, cx] * wy1 * wx0
    t += padded[ry + 1, cx + 1] * wy1 * wx1
    return t


def resize_threshold(plane, out_h, out_w, rule):
    """Resize a small plane as `sk_resize_linear` does and threshold it, equal to the bit.

    plane: float or bool [h, w] (bool is read as 0.0 / 1.0, as Matterport's ``astype(float)``).
    rule: ``"ge_half"`` for ``resize(plane) >= 0.5`` (Matterport's ``unmold_mask``: the value is
        first rounded to the plane's float type, float32 for the mask head's output), or
        ``"round"`` for ``np.around(resize(plane)).astype(bool)`` (``minimize_mask`` /
        ``expand_mask`` on 0/1 masks: above 0.5, since 0.5 rounds to even 0).
    Returns bool [out_h, out_w].
    """
    plane = np.asarray(plane)
    source = _to_float(plane, preserve_range=False)
    ftype = source.dtype.type
    h, w = plane.shape
    if h == 0 or w == 0 or out_h <= 0 or out_w <= 0:
        raise ValueError(f"resize_threshold: cannot resize a {plane.shape} plane to "
                         f"({out_h}, {out_w})")
    ry, wy0, wy1 = linear_taps(h, out_h)
    cx, wx0, wx1 = linear_taps(w, out_w)
    ry, cx = ry + 1, cx + 1

    # The same interpolation as two small matrix products (BLAS): within a few units in the last
    # place of SciPy's sum; pixels within ``band`` of the threshold are recomputed below.
    approx = _tap_matrix(ry, wy0, wy1, h) @ source.astype(np.float64, copy=False)
    approx = approx @ _tap_matrix(cx, wx0, wx1, w).T

    threshold = 0.5
    if rule == "ge_half":
        decide = (lambda v: np.clip(v.astype(ftype), lo, hi) >= threshold)
    elif rule == "round":
        decide = (lambda v: np.around(np.clip(v.astype(ftype), lo, hi)) != 0)
    else:
        raise ValueError(f"resize_threshold: unknown rule {rule!r}")
    lo, hi = _clip_bounds(*_value_range(source), approx, ftype)
    # Covers float32 rounding at the threshold (half a unit: 1.5e-8) with a wide margin.
    band = 1e-7 * max(1.0, float(np.max(np.abs(source))))
    if lo < threshold - band and threshold + band < hi:
        # Clipping to [lo, hi] cannot move a value across the threshold, and the rounding to
        # float32 matters only within ``band`` of it: decide the bulk on the separable values.
        result = approx >= threshold if rule == "ge_half" else approx > threshold
    else:
        # A plane wholly on one side of the threshold: clipping decides (``decide`` is monotone).
        result = decide(approx)
    # Pixels within ``band`` of the threshold are decided on SciPy's exact sum.
    approx -= threshold
    np.abs(approx, out=approx)
    near = approx <= band
    if near.any():
        padded = np.zeros((h + 2, w + 2), np.float64)
        padded[1:-1, 1:-1] = source
        yy, xx = np.nonzero(near)
        exact = _exact_values(padded, ry[yy], wy0[yy], wy1[yy], cx[xx], wx0[xx], wx1[xx])
        result[yy, xx] = decide(exact)
    return result


def zoom_nearest_indices(n_in, n_out):
    """Source indices that ``scipy.ndimage.zoom(..., order=0)`` (default ``grid_mode=False``)
    reads along an axis of ``n_in`` samples zoomed to ``n_out``; -1 where it reads outside (its
    ``cval``, 0).

    Computed by SciPy itself on an index ramp, so rounding ties fall as they do for the mask.
    """
    ramp = np.arange(1, n_in + 1, dtype=np.float64)[:, None]
    picked = ndi.zoom(ramp, (n_out / n_in, 1), order=0)
    if picked.shape[0] != n_out:
        raise ValueError(f"zoom_nearest_indices: SciPy gave {picked.shape[0]} samples for "
                         f"{n_in} -> {n_out}")
    return picked[:, 0].astype(np.intp) - 1
