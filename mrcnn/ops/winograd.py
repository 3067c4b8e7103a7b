"""Winograd F(4x4, 3x3): 3x3 'same' convolutions with a quarter of the multiplications.

detect() spends nearly all of its time in convolutions, most of them 3x3 with stride 1 (the RPN's
shared conv on P2 alone is 77 G multiply-adds at 1024 px), and TensorFlow's CPU kernels already
run them near the machine's peak. Winograd's minimal filtering computes each 4x4 block of outputs
from a 6x6 block of inputs with 36 multiplications per channel pair instead of 144:

    Y = A^T [ (G g G^T) * (B^T d B) ] A      (g: 3x3 kernel, d: 6x6 input tile, * elementwise)

Over channels, the elementwise products become 36 independent matrix products
[tiles, C] x [C, K], which is where the time goes; the input and output transforms are cheap
linear maps over the tile axes. On a 2-core AVX-512 CPU this runs the 256 -> 512 channel RPN conv
over 256 x 256 in 0.45 to 0.55 of the direct kernel's time (docs/benchmarks.md).

Numbers: the transforms are exact in real arithmetic; in float32 they add rounding. The
interpolation points 0, -1, 1, 1/2, -2 (and infinity) keep the transform coefficients small
(Barabasz et al., "Error analysis and improving the accuracy of Winograd convolution for deep
neural networks", 2020): over 256 input channels with outputs of order 1, the largest error
was 7.6e-6 against 1.4e-6 for a direct float32 sum (2.7e-5 with the usual points 0, +-1, +-2),
the root-mean-square error 1.2e-6. Only float32 is transformed: half precision would lose too
much.

Memory: the transformed tiles and their products take 2.25 times the input's and the output's
size, so the work goes through bands of MAX_TILES tiles, one after another, written in place into
the output; each convolution waits for the previous one in its graph; an ``epilogue`` lets a
caller reduce each band before the next (the RPN's 1x1 heads, ``mrcnn.heads.rpn``). detect() at
1024 px then peaks lower than with TensorFlow's kernels (bench/memory_live.py).

Where it runs: only in graphs traced inside ``enabled()`` (detect()'s compiled function, when
``Config.WINOGRAD`` allows), never in training or exported graphs, so gradients, SavedModels and
TFLite files keep TensorFlow's convolution.
"""

import contextlib
import threading
import weakref
from fractions import Fraction

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from mrcnn.ops import portable

#: Interpolation points of the Toom-Cook construction (infinity is the sixth).
POINTS = (0, -1, 1, Fraction(1, 2), -2)
#: Outputs per tile side (m) and kernel size (r); tiles are m + r - 1 = 6 inputs wide.
TILE, KERNEL = 4, 3
#: In "auto" mode, convolutions with fewer input or output channels stay direct: at 64 -> 64
#: channels the transforms cost more than the products save (docs/benchmarks.md).
MIN_AUTO_CHANNELS = 128
#: Tiles per band (``winograd_conv3x3``'s max_tiles) in detect(): bounds the transforms' extra
#: memory; bands of 128 to 2048 tiles ran detect() equally fast (docs/benchmarks.md).
MAX_TILES = 512
#: From this many tiles per image in a band (or an unknown number) the 36 products run as one
#: grouped 1x1 convolution, below it as one batched matmul. The grouped form is faster on long
#: inputs and makes fewer copies; the batched one on short ones (a 32 x 32 map, a band).
GROUPED_CONV_MIN_TILES = 1024

# The mode of graphs being traced in this thread: None (off), "auto" or "all". Per thread, so
# that a graph traced elsewhere meanwhile (an export, a training step) keeps TensorFlow's kernels.
_tracing = threading.local()
# Per graph, a weak reference to the output of the last convolution traced in it by ``conv2d``.
_last_output = weakref.WeakKeyDictionary()


def current_mode():
    """The ``enabled()`` mode of graphs being traced in this thread (None: off)."""
    return getattr(_tracing, "mode", None)


def toom_cook_matrices(points=POINTS, m=TILE, r=KERNEL):
    """(B^T [n, n], G [n, r], A^T [m, n]) float64, n = m + r - 1, for 1-D correlation
    ``y[i] = sum_k g[k] d[i + k]``: ``y = A^T ((G g) * (B^T d))``, from ``n - 1`` finite points
    and the point at infinity (built in exact fractions)."""
    n = m + r - 1
    p = [Fraction(x) for x in points]
    if len(p) != n - 1 or len(set(p)) != len(p):
        raise ValueError(f"need {n - 1} distinct finite points for F({m}, {r}), got {points}")

    def poly_times(a, b):
        out = [Fraction(0)] * (len(a) + len(b) - 1)
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                out[i + j] += x * y
        return out

    def product_except(skip):  # ascending coefficients of prod_{l != skip} (x - p_l)
        poly = [Fraction(1)]
        for l, x in enumerate(p):
            if l != skip:
                poly = poly_times(poly, [-x, Fraction(1)])
        return poly + [Fraction(0)] * (n - len(poly))

    at = [[p[j] ** i for j in range(n - 1)] + [Fraction(int(i == m - 1))] for i in range(m)]
    scale = [np.prod([p[j] - p[l] for l in range(n - 1) if l != j]) for j in range(n - 1)]
    g = ([[p[j] ** k / scale[j] for k in range(r)] for j in range(n - 1)]
         + [[Fraction(int(k == r - 1)) for k in range(r)]])
    bt = [product_except(j) for j in range(n - 1)] + [product_except(None)[:n]]
    return tuple(np.array(x, dtype=np.float64) for x in (bt, g, at))


_BT, _G, _AT = toom_cook_matrices()
_N = TILE + KERNEL - 1
# The 2-D transforms as single matrices over the flattened tile, row-major (i, j):
# V[ij] = sum_pq BB[ij, pq] d[pq], Y[rs] = sum_ij AA[rs, ij] M[ij].
_BB = np.kron(_BT, _BT).astype(np.float32)
_AA = np.kron(_AT, _AT).astype(np.float32)


@contextlib.contextmanager
def enabled(mode="auto"):
    """Within the block, graphs being traced run eligible 3x3 convolutions (``conv2d``) by
    Winograd. mode: "auto" (float32, at least MIN_AUTO_CHANNELS in and out), "all" (every
    eligible float32 convolution, whatever its channels), or None (off)."""
    if mode not in (None, "auto", "all"):
        raise ValueError(f"unknown Winograd mode {mode!r}: use 'auto', 'all' or None")
    saved, _tracing.mode = current_mode(), mode
    try:
        yield
    finally:
        _tracing.mode = saved


def applies(x, kernel, strides=1, padding="SAME", dilations=1):
    """Whether ``conv2d`` would use Winograd for these arguments in graphs traced now.

    The input's height, width and channels must be known when traced (the batch need not be):
    bands of tiles are cut at trace time, and one pass over a large map of unknown size could
    take far more memory than the direct kernel. (detect() retraces with unknown sizes after a
    second image shape in "pad64" or "none" resizing; those graphs keep TensorFlow's kernel.)
    """
    current = current_mode()
    if current is None:
        return False
    # as_dtype: a Keras variable's dtype is a string.
    if (tuple(kernel.shape[:2]) != (KERNEL, KERNEL) or padding.upper() != "SAME"
            or tf.as_dtype(x.dtype) != tf.float32 or tf.as_dtype(kernel.dtype) != tf.float32
            or x.shape.rank != 4 or any(d is None for d in x.shape[1:])
            or x.shape[-1] != kernel.shape[2]):
        return False
    if any(s != 1 for s in np.ravel(strides)) or any(d != 1 for d in np.ravel(dilations)):
        return False
    if current == "auto":
        return min(kernel.shape[2], kernel.shape[3]) >= MIN_AUTO_CHANNELS
    return True


def conv2d(x, kernel, strides=1, padding="SAME", dilations=1, epilogue=None):
    """``tf.nn.conv2d`` (NHWC), by Winograd where ``applies`` says so (module doc), followed by
    ``epilogue`` if given (``winograd_conv3x3``: by Winograd, it runs on each band).

    In a graph, each convolution it runs by Winograd waits for the previous one traced in the
    same graph: one runs at a time, so one set of band intermediates and one kernel transform
    is alive at a time. (detect()'s executor otherwise interleaves the RPN's five levels, each
    holding its transformed kernel, its band products and its output: 0.2 GB more at 1024 px.)
    Trace order is an order in which the graph can run, so the waits add no cycle. (A banded
    convolution whose output is unused still runs: its buffer's op is stateful.)
    """
    if not applies(x, kernel, strides, padding, dilations):
        y = tf.nn.conv2d(x, kernel, strides=strides, padding=padding.upper(),
                         dilations=dilations)
        return y if epilogue is None else epilogue(y)
    graph = None if tf.executing_eagerly() else tf.compat.v1.get_default_graph()
    previous = _last_output[graph]() if graph is not None and graph in _last_output else None
    waits = [x] if previous is None else [x, previous]
    # The kernel is transformed once its input exists: otherwise the executor runs every
    # layer's transform at the start of the graph and holds them all (four times the weights).
    with tf.control_dependencies(waits):
        x = tf.identity(x)
        u = transform_kernel(kernel)
    y = winograd_conv3x3(x, u, max_tiles=MAX_TILES, epilogue=epilogue)
    if graph is not None:
        # A weak reference: the graph holds the tensor, which must not hold the graph's entry.
        _last_output[graph] = weakref.ref(y)
    return y


def transform_kernel(kernel):
    """kernel [3, 3, C, K] float32 -> U [36, C, K] float32, ``U[6 i + j] = (G g G^T)[i, j]``
    (two matmuls: TensorFlow's einsum would transpose)."""
    c, k = kernel.shape[2], kernel.shape[3]
    g = tf.constant(_G, tf.float32)
    u = tf.matmul(g, tf.reshape(kernel, [KERNEL, KERNEL * c * k]))  # [i, (q, c, k)]
    u = tf.matmul(g, tf.reshape(u, [_N, KERNEL, c * k]))  # [i, j, (c, k)]
    return tf.reshape(u, [_N * _N, c, k])


def winograd_conv3x3(x, u, grouped=None, max_tiles=None, epilogue=None):
    """A 3x3 convolution, stride 1, 'same' zero padding (as ``tf.nn.conv2d(x, kernel, 1,
    "SAME")``), by Winograd F(4x4, 3x3).

    x: [N, H, W, C] float32, any N, H, W >= 1 (static or not), static C.
    u: [36, C, K] float32 from ``transform_kernel(kernel)``.
    grouped: run the 36 products as a grouped 1x1 convolution (True) or a batched matmul (False);
    None picks by the number of tiles per image in a band (GROUPED_CONV_MIN_TILES; grouped when
    unknown).
    max_tiles: with a static height and width, work through bands of tile rows of at most this
    many tiles (an unknown batch counts as one image; one tile row if it holds more), one band
    after another: the transformed tiles and their products take 2.25 times the input's and the
    output's memory, and in one pass the RPN's P2 convolution at 1024 px needed 0.55 GB more
    than the direct kernel (0.06 GB in bands of 512). None or 0: one pass. ``conv2d`` passes
    MAX_TILES.
    epilogue: None, or a map applied position by position to the convolution's output, [n, h',
    w', K] -> [n, h', w', K'] (a bias, an activation, 1x1 convolutions): it runs on each band as
    soon as the band is computed, so that only its output, not the convolution's, is held
    whole. (The RPN's shared 512-channel conv on P2 at 1024 px is 128 MB; its two 1x1 heads'
    outputs are 4.5 MB.) The bands it sees may hold positions past H and W, cropped after it.
    Returns [N, H, W, K] float32 ([N, H, W, K'] with an epilogue).
    """
    c, k = x.shape[-1], u.shape[-1]
    if u.shape[1] != c:
        raise ValueError(f"transformed kernel has {u.shape[1]} input channels, input has {c}")
    # Python ints where the shape is static: fewer graph ops, a faster trace.
    dynamic = tf.shape(x) if any(d is None for d in x.shape[:3]) else None
    n, h, w = [x.shape[i] if x.shape[i] is not None else dynamic[i] for i in range(3)]
    th, tw = (h + TILE - 1) // TILE, (w + TILE - 1) // TILE  # tiles down and across
    # Bands are cut when the height and width are static; an unknown batch counts as one image
    # (a band then holds max_tiles tiles per image).
    images = n if isinstance(n, int) else 1
    if (isinstance(th, int) and isinstance(tw, int) and max_tiles
            and images * th * tw > max_tiles):
        y = _banded(x, u, n, th, tw, max(1, max_tiles // (images * tw)), grouped, epilogue)
    else:
        # One zero row/column before ('same' padding of a 3x3 kernel), enough after for
        # th x tw tiles of 6 x 6 inputs at a stride of 4.
        xp = tf.pad(x, [[0, 0], [1, th * TILE + 1 - h], [1, tw * TILE + 1 - w], [0, 0]])
        y = _tiled_products(xp, u, n, th, tw, grouped)
        if epilogue is not None:
            y = epilogue(y)
    if dynamic is not None or h % TILE or w % TILE:
        y = y[:, :h, :w]
    return tf.ensure_shape(y, x.shape[:3].concatenate([y.shape[-1]]))


def _in_xla():
    return portable.static() or control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph())


def _banded(x, u, n, th, tw, rows, grouped, epilogue=None):
    """``winograd_conv3x3``'s output [n, 4 th, 4 tw, k] (before its crop to h x w; k: the
    epilogue's channels if there is one) from bands of ``rows`` tile rows, each band's reads of x
    waiting for the previous band's output.

    The bands are written into one output buffer in place (InplaceUpdate aliases its input),
    so that the output takes its own size once: a concatenation would hold every band and the
    result at the same time, twice the output (128 MB more for the RPN on P2 at 1024 px). XLA has
    no InplaceUpdate kernel and plans its buffers itself: there the bands are concatenated.
    """
    h, w = x.shape[1], x.shape[2]
    in_place = not _in_xla()
    bands, previous = [], None
    for top in range(0, th, rows):
        band_rows = min(rows, th - top)
        # The input rows under this band's tiles: 4 band_rows + 2, from one row above (the
        # 'same' padding's zero row above the first) to one below.
        lo, hi = top * TILE - 1, (top + band_rows) * TILE + 1
        with tf.control_dependencies([] if previous is None else [previous]):
            band = x[:, max(lo, 0):min(hi, h)]
        band = tf.pad(band, [[0, 0], [max(0, -lo), hi - min(hi, h)],
                             [1, tw * TILE + 1 - w], [0, 0]])
        products = _tiled_products(band, u, n, band_rows, tw, grouped)
        if epilogue is not None:
            products = epilogue(products)
        k = products.shape[-1]
        row_size = TILE * tw * TILE * k  # one tile row of one image's output
        if not in_place:
            previous = products
            bands.append(products)
            continue
        if previous is None:
            # The rows of every image, tile row by tile row, allocated once the first band is
            # done (an op without inputs would run, and take its memory, when the graph
            # starts). Empty is stateful, so it is never constant-folded or shared with
            # another convolution's buffer.
            with tf.control_dependencies([products]):
                out = tf.raw_ops.Empty(shape=tf.stack([n * th, row_size]), dtype=products.dtype)
        index = _band_rows(n, th, top, band_rows)
        out = previous = tf.raw_ops.InplaceUpdate(
            x=out, i=index, v=tf.reshape(products, [-1, row_size]))
    if not in_place:
        return tf.concat(bands, axis=1)
    return tf.reshape(out, [n, th * TILE, tw * TILE, k])


def _band_rows(n, th, top, band_rows):
    """int32 [n * band_rows]: the rows of ``_banded``'s output buffer ([n * th, ...], image by
    image) that tile rows ``top`` .. ``top + band_rows - 1`` of every image go to. One constant
    for a static batch (detect()'s graph has some forty bands; ops built for each made its
    trace slower)."""
    if isinstance(n, int):
        return (np.arange(n)[:, None] * th + top + np.arange(band_rows)[None]).reshape(-1).astype(
            np.int32)
    return tf.reshape(tf.range(n)[:, None] * th + (top + tf.range(band_rows))[None], [-1])


def _tiled_products(xp, u, n, th, tw, grouped):
    """xp: [n, 4 th + 2, 4 tw + 2, c] padded input -> [n, 4 th, 4 tw, k], the convolution's
    'valid' outputs, th x tw tiles of 4 x 4."""
    c, k = xp.shape[-1], u.shape[-1]
    count = n * th * tw
    d = tf.image.extract_patches(xp, [1, _N, _N, 1], [1, TILE, TILE, 1], [1, 1, 1, 1], "VALID")
    d = tf.reshape(d, [count, _N * _N, c])  # tile-major, tile positions (p, q) row-major
    if grouped is None:
        # By the tiles of one image, not of the batch: the two forms round differently, and an
        # image's results should not depend on how many others share its call.
        per_image = th * tw
        grouped = not isinstance(per_image, int) or per_image >= GROUPED_CONV_MIN_TILES
    bb, aa = tf.constant(_BB), tf.constant(_AA)
    if grouped:
        # The 36 products as a 1x1 convolution in 36 groups over a [1, 1, tiles, 36 c] image;
        # depth_to_space then puts each tile's 4x4 outputs in place.
        v = tf.matmul(bb, d)  # [tiles, 36, c]
        filters = tf.reshape(tf.transpose(u, [1, 0, 2]), [1, 1, c, _N * _N * k])
        prod = tf.nn.conv2d(tf.reshape(v, [1, 1, count, _N * _N * c]), filters, 1, "VALID")
        y = tf.matmul(aa, tf.reshape(prod, [count, _N * _N, k]))  # [tiles, 16, k]
        return tf.nn.depth_to_space(tf.reshape(y, [n, th, tw, TILE * TILE * k]), TILE)
    # Position-major [36, tiles, c]: the products are one batched matmul.
    d = tf.reshape(tf.transpose(d, [1, 0, 2]), [_N * _N, count * c])
    v = tf.reshape(tf.matmul(bb, d), [_N * _N, count, c])
    prod = tf.matmul(v, u)  # [36, tiles, k]
    y = tf.matmul(aa, tf.reshape(prod, [_N * _N, count * k]))  # [16, tiles k]
    y = tf.transpose(tf.reshape(y, [TILE, TILE, n, th, tw, k]), [2, 3, 0, 4, 1, 5])
    return tf.reshape(y, [n, th * TILE, tw * TILE, k])
