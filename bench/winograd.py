"""Winograd F(4x4, 3x3) against TensorFlow's convolution on detect()'s 3x3 shapes, in one run.

    python bench/winograd.py [--repeats 7] [--max-tiles 512,0]

For each shape of the default config at 1024 px (the RPN's shared conv and the FPN's output conv
on P2, the backbone's 3x3 convs of each stage, the mask head's on 100 ROIs), the median seconds
of ``tf.nn.conv2d`` and of ``mrcnn.ops.winograd.winograd_conv3x3`` (kernel transform included,
as detect() runs it) for each ``--max-tiles`` (tiles per band; 0: one pass), their ratio, and
Winograd's largest error relative to the largest output, against a float64 convolution. Random
inputs of order 1, kernels scaled as He initialization would. Which shapes gain decides
``MIN_AUTO_CHANNELS``; the band sizes, ``MAX_TILES``.
"""

import argparse
import statistics

from _common import machine, timed

# (name, [N, H, W, C], K)
SHAPES = [
    ("RPN shared conv, P2", [1, 256, 256, 256], 512),
    ("FPN output conv, P2", [1, 256, 256, 256], 256),
    ("res2 3x3 (64 ch), 256 x 256", [1, 256, 256, 64], 64),
    ("res3 3x3 (128 ch), 128 x 128", [1, 128, 128, 128], 128),
    ("res4 3x3 (256 ch), 64 x 64", [1, 64, 64, 256], 256),
    ("res5 3x3 (512 ch), 32 x 32", [1, 32, 32, 512], 512),
    ("mask head conv, 100 ROIs of 14 x 14", [100, 14, 14, 256], 256),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-tiles", default="512,0",
                        help="comma-separated tiles per band to time (0: one pass)")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    from mrcnn.ops import winograd

    print(machine())
    bands = [int(v) for v in args.max_tiles.split(",")]
    print("| convolution | direct s | " + " | ".join(
        "Winograd s (bands of %s) | ratio" % (b or "all") for b in bands) + " | max error |")
    print("|---|---|" + "---|---|" * len(bands) + "---|")
    rng = np.random.default_rng(0)
    for name, shape, k in SHAPES:
        c = shape[-1]
        x = tf.constant(rng.normal(size=shape).astype(np.float32))
        kernel = tf.constant((rng.normal(size=(3, 3, c, k)) * np.sqrt(2 / (9 * c)))
                             .astype(np.float32))
        # An unknown batch, as detect()'s mask head has (its ROI count depends on the image):
        # bands and the product form are then chosen per image, as in detect().
        spec = [tf.TensorSpec([None] + shape[1:])]
        direct = tf.function(lambda t: tf.nn.conv2d(t, kernel, 1, "SAME"), autograph=False,
                             input_signature=spec)
        base = statistics.median(timed(lambda: direct(x).numpy(), args.repeats, warmup=1))
        cells, got = [], None
        for band in bands:
            fn = tf.function(lambda t, band=band: winograd.winograd_conv3x3(
                t, winograd.transform_kernel(kernel), max_tiles=band), autograph=False,
                input_signature=spec)
            secs = statistics.median(timed(lambda: fn(x).numpy(), args.repeats, warmup=1))
            cells.append("%.4f | %.2f" % (secs, secs / base))
            got = fn(x).numpy()
        # The float64 reference on a slice of the batch keeps the check quick.
        want = tf.nn.conv2d(tf.cast(x[:2], tf.float64), tf.cast(kernel, tf.float64), 1,
                            "SAME").numpy()
        error = np.abs(got[:2] - want).max() / np.abs(want).max()
        print("| %s, %d -> %d | %.4f | %s | %.1e |" % (name, c, k, base, " | ".join(cells),
                                                       error))


if __name__ == "__main__":
    main()
