"""The floor under detect(): its convolutions, each timed alone, on this machine.

    python bench/conv_bound.py [--only default|small] [--precision mixed_bfloat16] [--repeats 5]
                               [--float32]

detect() spends 94-97% of its op time in convolutions (bench/profile_ops.py). This script records
every Conv2D / Conv2DTranspose call of one eager inference pass (the layers' real input shapes,
so the RPN's five levels, the classifier's 1000 proposals and the mask head's detections count as
run), counts their floating-point operations (2 x multiply-adds) by stage, and times each
distinct call alone, in its layer's compute dtype, as TensorFlow's kernels run it (convolution and
bias in one tf.function, one value of the output fetched). The sum is what the convolutions cost
with nothing else in detect(): no molding, NMS, ROI align, casts or unmolding. It is also given
at the fastest call's rate for all (an optimistic floor: small and 1x1 convolutions never reach
it), and beside detect() itself, timed in the same process. With ``--only default`` both are
divided into the Matterport-equivalent's 2.56 x anchor (the speed issue's figure, ResNet-101 at
1024 px): the largest speed-up over Matterport a detect() that computes Matterport's
convolutions directly could show here. Winograd (float32 only, mrcnn/ops/winograd.py) does
fewer operations and is not bounded by it.

With ``--float32``, each call is also timed in float32 (same shapes): the speed-up half
precision gives the same arithmetic on this processor. The Matterport-equivalent computes these
convolutions in float32, so the "at most" figure below is that speed-up times the
Matterport-equivalent's time over the float32 convolutions alone.

Same benchmark inputs as bench/detect.py: random weights, DETECTION_MIN_CONFIDENCE 0 (100
detections), a 480x640 random image.
"""

import argparse
import collections
import statistics

from _common import (backbone_forward_anchor, detect_image, has_bf16, inference_configs,
                     machine, report, timed)

# The speed issue's Matterport-equivalent detect(), float32, in bare ResNet-101 forwards.
MATTERPORT_DETECT_X_ANCHOR = 2.56


def stage_of(name):
    if name.startswith("fpn_"):
        return "FPN"
    if name.startswith("rpn_"):
        return "RPN heads"
    if name.startswith("mrcnn_class"):
        return "classifier head"
    if name.startswith("mrcnn_mask"):
        return "mask head"
    return "backbone (ResNet)"


def record_convs(model, molded, metas):
    """Counter of the Conv2D / Conv2DTranspose calls of one eager inference pass, keyed by
    (stage, transposed, input shape, kernel shape, strides, padding, compute dtype).

    Each layer's ``call`` is wrapped for the pass (restored after), so layers applied several
    times (the RPN on five levels) count every call, with their real input shapes.
    """
    import keras

    calls = collections.Counter()
    patched = []

    def visit(layer):
        if isinstance(layer, keras.Model):
            for sub in layer.layers:
                visit(sub)
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            def counted(x, *args, _call=layer.call, _layer=layer, **kwargs):
                calls[(stage_of(_layer.name),
                       isinstance(_layer, keras.layers.Conv2DTranspose),
                       tuple(int(d) for d in x.shape), tuple(_layer.kernel.shape),
                       tuple(_layer.strides), _layer.padding.upper(),
                       _layer.compute_dtype)] += 1
                return _call(x, *args, **kwargs)

            layer.call = counted
            patched.append(layer)

    visit(model)
    try:
        model({"input_image": molded, "input_image_meta": metas}, training=False)
    finally:
        for layer in patched:
            del layer.call  # back to the class's method
    return calls


def gflop(key):
    """Floating-point operations of one call (2 x multiply-adds), in GFLOP."""
    _, transposed, shape, kernel, strides, padding, _ = key
    kh, kw, a, b = kernel  # Conv2D: [kh, kw, cin, cout]; transposed: [kh, kw, cout, cin]
    n, h, w = shape[:3]
    if transposed:  # each input pixel writes kh x kw x cout outputs
        return 2 * n * h * w * kh * kw * a * b / 1e9
    if padding == "SAME":
        oh, ow = -(-h // strides[0]), -(-w // strides[1])
    else:
        oh, ow = (h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1
    return 2 * n * oh * ow * kh * kw * a * b / 1e9


def time_alone(key, repeats):
    """Median seconds of one such call alone: convolution and bias, random data."""
    import numpy as np
    import tensorflow as tf
    _, transposed, shape, kernel, strides, padding, dtype = key
    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(size=shape), dtype)
    w = tf.cast(rng.normal(size=kernel) * 0.05, dtype)
    if transposed:
        out = (shape[0], shape[1] * strides[0], shape[2] * strides[1], kernel[2])
        b = tf.cast(rng.normal(size=kernel[2]), dtype)
        def conv(x):
            return tf.nn.bias_add(tf.nn.conv2d_transpose(x, w, out, strides, padding), b)
    else:
        b = tf.cast(rng.normal(size=kernel[3]), dtype)
        def conv(x):
            return tf.nn.bias_add(tf.nn.conv2d(x, w, strides, padding), b)
    # One value out: the convolution still runs whole, and copying its output to NumPy (32 MB
    # for the backbone's first stage) does not count.
    first = tf.function(lambda x: conv(x)[0, 0, 0, 0])
    return statistics.median(timed(lambda: first(x).numpy(), repeats, warmup=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["default", "small"], default="default")
    parser.add_argument("--precision", default="auto",
                        help="Config.PRECISION; auto: mixed_bfloat16 where the CPU has native "
                             "bfloat16, else float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--float32", action="store_true",
                        help="also time every call in float32, for the speed-up of the "
                             "precision over float32 on the same convolutions")
    args = parser.parse_args()
    precision = args.precision
    if precision == "auto":
        precision = "mixed_bfloat16" if has_bf16() else "float32"

    import tensorflow as tf
    from mrcnn import model as modellib

    print(machine())
    anchor = report("anchor: bare ResNet-101 forward, 1024", backbone_forward_anchor(5))
    cfg = inference_configs()[args.only]()
    cfg.PRECISION = precision
    cfg.WINOGRAD = False  # the direct convolutions
    model = modellib.MaskRCNN("inference", cfg, "/tmp/mrcnn_bench")
    image = detect_image()
    molded, metas, _ = model.mold_inputs([image])
    calls = record_convs(model.keras_model, tf.constant(molded), tf.constant(metas))
    whole = statistics.median(timed(lambda: model.detect([image]), args.repeats, warmup=1))

    flops, seconds = collections.Counter(), collections.Counter()
    seconds32 = collections.Counter()
    best = (0.0, None)
    for key, count in calls.items():
        alone = time_alone(key, args.repeats)
        flops[key[0]] += count * gflop(key)
        seconds[key[0]] += count * alone
        best = max(best, (gflop(key) / alone, key))
        if args.float32:
            seconds32[key[0]] += count * time_alone(key[:6] + ("float32",), args.repeats)
    total, floor = sum(flops.values()), sum(seconds.values())

    print("\n%s (%s, %d px), %s: the %d convolution calls of one detect() (%d distinct), "
          "100 detections, each timed alone (median of %d)" % (
              args.only, cfg.BACKBONE, cfg.IMAGE_MAX_DIM, precision, sum(calls.values()),
              len(calls), args.repeats))
    print("| stage | GFLOP | share | seconds alone | GFLOP/s |\n|---|---|---|---|---|")
    for stage in sorted(flops, key=lambda s: -flops[s]):
        print("| %s | %.1f | %.0f%% | %.3f | %.0f |" % (
            stage, flops[stage], 100 * flops[stage] / total, seconds[stage],
            flops[stage] / seconds[stage]))
    print("| all | %.1f | 100%% | %.3f | %.0f |" % (total, floor, total / floor))
    if args.float32:
        floor32 = sum(seconds32.values())
        print("\nthe same calls in float32 (median of %d)" % args.repeats)
        print("| stage | float32 s | GFLOP/s | %s over float32 |\n|---|---|---|---|" % precision)
        for stage in sorted(flops, key=lambda s: -flops[s]):
            print("| %s | %.3f | %.0f | %.2f times faster |" % (
                stage, seconds32[stage], flops[stage] / seconds32[stage],
                seconds32[stage] / seconds[stage]))
        print("| all | %.3f | %.0f | %.2f times faster |" % (
            floor32, total / floor32, floor32 / floor))
    rate, key = best
    print("\nfastest call: %s %s %s -> %d channels, %.0f GFLOP/s" % (
        key[0], key[6], "x".join(map(str, key[2])), key[3][2 if key[1] else 3], rate))
    print("convolutions alone: %.3f s = %.2f x anchor; all of them at the fastest call's rate: "
          "%.3f s = %.2f x anchor" % (floor, floor / anchor, total / rate, total / rate / anchor))
    print("detect() itself (same model, WINOGRAD False): %.3f s = %.2f x anchor, %.2f times its "
          "convolutions alone" % (whole, whole / anchor, whole / floor))
    if args.float32:
        print("float32 convolutions alone: %.3f s = %.2f x anchor" % (floor32, floor32 / anchor))
    if args.only == "default":
        print("at most %.2f times the Matterport-equivalent's %.2f x anchor (%.2f at the fastest "
              "call's rate)" % (MATTERPORT_DETECT_X_ANCHOR * anchor / floor,
                                MATTERPORT_DETECT_X_ANCHOR,
                                MATTERPORT_DETECT_X_ANCHOR * anchor * rate / total))


if __name__ == "__main__":
    main()
