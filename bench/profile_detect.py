"""Where detect() spends its time: each stage after the backbone, timed in one run.

    python bench/profile_detect.py [--only default|small] [--repeats 5] [--winograd auto|False]
                                   [--precision float32|mixed_bfloat16|mixed_float16]

The inference graph is cut after each stage (a Keras model from the inputs to that stage's
outputs, run compiled); a stage's time is the difference between the median of its cut and the
median of the cut before it; each cut's outputs are summed in its graph, so that copying them
out does not count. Molding and unmolding (NumPy) are timed alone. Random weights with
DETECTION_MIN_CONFIDENCE = 0, so the 100 detections Matterport's graph always computes; a 480x640
random image; ratios are to the bare ResNet-101 forward (bench/detect.py).
"""

import argparse
import statistics

from _common import (backbone_forward_anchor, detect_image, inference_configs, machine, report,
                     timed)

# (stage, the layers whose outputs end it)
STAGES = [
    ("backbone (ResNet)", ["res5c_out"]),
    ("FPN", ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6"]),
    ("RPN heads", ["rpn_class", "rpn_bbox"]),
    ("proposals (decode, NMS)", ["ROI"]),
    ("ROI align + classifier head", ["mrcnn_class", "mrcnn_bbox"]),
    ("detection layer", ["mrcnn_detection"]),
    ("mask ROI align + mask head", ["mrcnn_mask_padded"]),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["default", "small"], default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--winograd", default="auto", choices=["auto", "True", "False"],
                        help="Config.WINOGRAD")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_bfloat16", "mixed_float16"],
                        help="Config.PRECISION")
    args = parser.parse_args()

    import keras
    import tensorflow as tf
    from mrcnn import model as modellib
    from mrcnn.layers import conv as conv_layers
    from mrcnn.ops import winograd
    tf.get_logger().setLevel("ERROR")  # one trace per cut is the point, not a warning

    configs = inference_configs()

    print(machine())
    anchor = report("anchor: bare ResNet-101 forward, 1024", backbone_forward_anchor(args.repeats))
    cfg = configs[args.only]()
    cfg.WINOGRAD = {"True": True, "False": False}.get(args.winograd, args.winograd)
    cfg.PRECISION = args.precision
    model = modellib.MaskRCNN("inference", cfg, "/tmp/mrcnn_bench")
    km = model.keras_model
    model._predict_function()  # makes the backbone's folded kernels (mrcnn.layers.conv)
    image = detect_image()
    molded, metas, windows = model.mold_inputs([image])
    feed = {"input_image": tf.constant(molded), "input_image_meta": tf.constant(metas)}

    rows, before = [], 0.0
    mold = statistics.median(timed(lambda: model.mold_inputs([image]), args.repeats))
    rows.append(("molding (resize, pad, mean)", mold))
    for stage, names in STAGES:
        cut = keras.Model(km.inputs, [km.get_layer(n).output for n in names])

        # Each output summed in the graph: copying a cut's large outputs (all RPN scores at
        # 1024 px) out to NumPy would cost more than some stages, and make their times
        # negative. The sums need every element, so nothing of the cut is pruned.
        @tf.function
        def run(x, cut=cut):
            # As detect() runs: the backbone's folded kernels, Winograd's convolutions.
            with conv_layers.cached_folds(), winograd.enabled(model._winograd_mode()):
                return [tf.reduce_sum(t) for t in tf.nest.flatten(cut(x, training=False))]

        total = statistics.median(timed(lambda: [t.numpy() for t in run(feed)],
                                        args.repeats, warmup=1))
        rows.append((stage, total - before))
        before = total
    detections, masks = model._predict(molded, metas)
    unmold = statistics.median(timed(lambda: model.unmold_detections(
        detections[0], masks[0], image.shape, molded[0].shape, windows[0]), args.repeats))
    rows.append(("unmolding (boxes, 100 mask pastes)", unmold))
    whole = statistics.median(timed(lambda: model.detect([image]), args.repeats, warmup=1))
    print("\n%s (%s, %d px), %s, WINOGRAD %s, one 480x640 image, 100 detections; detect() %.3f s "
          "(%.2f x anchor)" % (args.only, cfg.BACKBONE, cfg.IMAGE_MAX_DIM, cfg.PRECISION,
                               cfg.WINOGRAD, whole, whole / anchor))
    print("| stage | seconds | share of detect() | x anchor |\n|---|---|---|---|")
    for stage, seconds in rows:
        print("| %s | %.3f | %.0f%% | %.2f |" % (stage, seconds, 100 * seconds / whole,
                                               seconds / anchor))


if __name__ == "__main__":
    main()
