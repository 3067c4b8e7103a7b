"""Backward pass of one 3x3 convolution, sparse rows against TensorFlow's dense kernels, by the
share of output positions that carry gradient: where ``SPARSE_FRACTION`` should sit.

    python bench/sparse_grad_conv.py
    python bench/sparse_grad_conv.py --size 128 --cout 512 --fractions 0.01,0.1,0.3

The convolution is the FPN's P2 output convolution at 1024 px by default (batch 2, 256 x 256,
256 to 256 channels). Each case times, in one compiled function, both gradients (input and
kernel) of ``sum(conv * dy)`` for a ``dy`` that is non-zero on a random share of the positions,
with ``conv2d_sparse_grad`` forced to its sparse rows (sparse_fraction 1) and to the dense kernels
(sparse_fraction 0). The function returns only the gradients, so graph optimization drops the
forward convolution: the figures are the backward pass alone.
"""

import argparse
import time

from _common import machine, report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="feature map height and width")
    parser.add_argument("--cin", type=int, default=256)
    parser.add_argument("--cout", type=int, default=256)
    parser.add_argument("--fractions", default="0.003,0.03,0.1,0.2,0.35,0.5")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf
    from mrcnn.layers.sparse_grad_conv import conv2d_sparse_grad

    print(machine())
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, args.size, args.size, args.cin)), tf.float32)
    kernel = tf.Variable(rng.normal(size=(3, 3, args.cin, args.cout)) * 0.05, dtype=tf.float32)

    def step_fn(forced):
        @tf.function
        def step(x, dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = conv2d_sparse_grad(x, kernel, sparse_fraction=forced)
                loss = tf.reduce_sum(y * dy)
            dx, dk = tape.gradient(loss, [x, kernel])
            return tf.reduce_sum(dx) + tf.reduce_sum(dk)
        return step

    steps = {"sparse": step_fn(1.0), "dense": step_fn(0.0)}
    for fraction in (float(f) for f in args.fractions.split(",")):
        keep = rng.random((2, args.size, args.size, 1)) < fraction
        dy = tf.constant(rng.normal(size=(2, args.size, args.size, args.cout)) * keep, tf.float32)
        medians = {}
        for name, step in steps.items():
            step(x, dy)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                step(x, dy).numpy()
                times.append(time.perf_counter() - start)
            medians[name] = report("%s rows, %.1f%% of positions" % (name, 100 * fraction), times)
        print("%-40s sparse / dense %.2f" % ("", medians["sparse"] / medians["dense"]))


if __name__ == "__main__":
    main()
