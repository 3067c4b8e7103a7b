"""The floor under detect(): its convolutions' arithmetic at the best rate this machine reaches.

    python bench/conv_bound.py [--only default|small] [--precision mixed_bfloat16] [--repeats 7]

detect() spends 94-97% of its op time in convolutions (bench/profile_ops.py). This script counts
their floating-point operations in one detect() (2 x multiply-adds, by stage: the layers' real
input and output shapes in one eager call, so the classifier's 1000 proposals and the mask head's
detections are counted as run), times this machine's rate on the largest of them (a 3x3
convolution with bias and ReLU, as oneDNN runs it in the precision's compute dtype), and prints
the time the convolutions alone would take at that rate: the fastest detect() that computing
Matterport's convolutions directly allows here, whatever else is made faster. Divided into the
Matterport-equivalent's 2.56 x anchor (the speed issue's figure), it is the largest speed-up over
Matterport such a detect() can show on this machine. Winograd (float32 only, mrcnn/ops/winograd.py)
does fewer operations and is not bounded by it.

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


def count_conv_flops(model, molded, metas):
    """{stage: GFLOP} of every Conv2D / Conv2DTranspose call in one eager inference pass.

    Each layer's ``call`` is wrapped for the pass, so layers applied several times (the RPN on
    five levels) and inside TimeDistributed (the heads, on [rois, h, w, c]) count every call.
    """
    import keras

    flops = collections.Counter()
    patched = []

    def visit(layer):
        inner = getattr(layer, "layer", None)  # TimeDistributed
        if isinstance(layer, keras.Model):
            for sub in layer.layers:
                visit(sub)
        elif inner is not None:
            visit(inner)
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            call = layer.call

            def counted(x, *args, _call=call, _layer=layer, **kwargs):
                y = _call(x, *args, **kwargs)
                kh, kw = _layer.kernel_size
                # Per multiply-add: the output pixels of a convolution read kh*kw*cin inputs;
                # each input pixel of a transposed one writes kh*kw*cout outputs.
                pixels = (x if isinstance(_layer, keras.layers.Conv2DTranspose) else y).shape[:3]
                macs = int(pixels[0]) * int(pixels[1]) * int(pixels[2]) * kh * kw * \
                    int(x.shape[-1]) * int(y.shape[-1])
                flops[stage_of(_layer.name)] += 2 * macs / 1e9
                return y

            layer.call = counted
            patched.append(layer)

    visit(model)
    try:
        model({"input_image": molded, "input_image_meta": metas}, training=False)
    finally:
        for layer in patched:
            del layer.call  # back to the class's method
    return flops


def conv_rate(dtype, repeats, hw, cin, cout):
    """GFLOP/s of a 3x3 same-padded convolution + bias + ReLU on one [hw, hw, cin] map."""
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(size=(1, hw, hw, cin)), dtype)
    w = tf.cast(rng.normal(size=(3, 3, cin, cout)) * 0.05, dtype)
    b = tf.cast(rng.normal(size=(cout,)), dtype)
    conv = tf.function(lambda x: tf.nn.relu(tf.nn.bias_add(
        tf.nn.conv2d(x, w, 1, "SAME"), b)))
    seconds = statistics.median(timed(lambda: conv(x).numpy(), repeats, warmup=2))
    return 2 * hw * hw * 9 * cin * cout / 1e9 / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["default", "small"], default="default")
    parser.add_argument("--precision", default="auto",
                        help="Config.PRECISION; auto: mixed_bfloat16 where the CPU has native "
                             "bfloat16, else float32")
    parser.add_argument("--repeats", type=int, default=7)
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
    cfg.WINOGRAD = False  # the direct convolutions' count
    cfg.validate()
    model = modellib.MaskRCNN("inference", cfg, "/tmp/mrcnn_bench")
    molded, metas, _ = model.mold_inputs([detect_image()])
    flops = count_conv_flops(model.keras_model, tf.constant(molded), tf.constant(metas))
    total = sum(flops.values())

    size = cfg.IMAGE_MAX_DIM // cfg.BACKBONE_STRIDES[0]
    compute = tf.bfloat16 if "bfloat16" in precision else (
        tf.float16 if "float16" in precision else tf.float32)
    # The largest convolution of detect(): the RPN's 3x3 on P2, channels as configured.
    shape = (size, cfg.TOP_DOWN_PYRAMID_SIZE, 512)
    rate = conv_rate(compute, args.repeats, *shape)
    floor = total / rate

    print("\n%s (%s, %d px), %s: convolutions of one detect(), 100 detections" % (
        args.only, cfg.BACKBONE, cfg.IMAGE_MAX_DIM, precision))
    print("| stage | GFLOP | share |\n|---|---|---|")
    for stage, gflop in sorted(flops.items(), key=lambda kv: -kv[1]):
        print("| %s | %.1f | %.0f%% |" % (stage, gflop, 100 * gflop / total))
    print("| all | %.1f | 100%% |" % total)
    print("\n%s 3x3 convolution %dx%d px, %d -> %d channels: %.0f GFLOP/s (median of %d)" % (
        compute.name, size, size, shape[1], shape[2], rate, args.repeats))
    print("convolutions alone at that rate: %.3f s = %.2f x anchor; at most %.2f times the "
          "Matterport-equivalent's %.2f x anchor" % (
              floor, floor / anchor, MATTERPORT_DETECT_X_ANCHOR * anchor / floor,
              MATTERPORT_DETECT_X_ANCHOR))


if __name__ == "__main__":
    main()
