"""Where detect() or a training step spends its time, op by op, from TensorFlow's profiler.

    python bench/profile_ops.py                              # detect, default config (1024 px)
    python bench/profile_ops.py --work train --only default --layers heads

Runs the work once to warm up, then ``--calls`` more times under ``tf.profiler``, and sums the
duration of every op the executor ran, grouped by the model's stage (from the Keras layer each op
was made in; ``gradient_tape/`` ops are the backward pass) and by op type. Unlike
bench/profile_detect.py (which cuts the graph after each stage and subtracts medians), every op
is measured in the graph detect() or train() actually runs.

TensorFlow runs independent ops concurrently (inter-op threads), and then each op's duration
counts the time it waited for the shared cores; this script therefore sets
``TF_NUM_INTEROP_THREADS=1`` (unless given) so that op durations add up to the wall time. On the
2-core machines here that does not change the time per call (docs/benchmarks.md).

detect: random weights, DETECTION_MIN_CONFIDENCE 0 (100 detections), a 480x640 random image.
train: ``MaskRCNN.train`` on generated shapes, batch 2 (configs of bench/train_step.py), the
profiler started at the third step.
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

from _common import (detect_image, inference_configs, machine,  # noqa: E402
                     shapes_dataset, training_configs)

# Stages by layer name; a layer that matches none (an unnamed Activation, Add, padding) belongs to
# the stage of the layer that feeds it. Keras lists a training model's layers with the classifier
# and mask heads interleaved, so the list order cannot tell them apart.
STAGE_RULES = [
    (r"(conv1|bn_conv1|res\d|bn\d)", "backbone"),
    (r"fpn_", "FPN"),
    (r"rpn_", "RPN heads"),
    (r"(anchors|ROI)$", "anchors + proposals"),
    (r"(norm_gt_boxes|norm_input_rois|proposal_targets)$", "detection targets"),
    (r"(roi_align_classifier|classifier_merge_rois|pool_squeeze|mrcnn_class|mrcnn_bbox)",
     "ROI align + classifier head"),
    (r"(mrcnn_detection|detection_boxes)$", "detection layer"),
    (r"(mask_rois|roi_align_mask|mask_merge_rois|mrcnn_mask)", "mask ROI align + mask head"),
]
STAGES = [stage for _, stage in STAGE_RULES]
OUTSIDE = "losses, optimizer, other"
CONV_OPS = re.compile(r"Conv2D")  # Conv2D, its fused forms, both backprops


def layer_stages(keras_model):
    """{layer name: stage} for every layer of the model (see STAGE_RULES)."""
    def stage_of(layer, depth=0):
        for pattern, stage in STAGE_RULES:
            if re.match(pattern, layer.name):
                return stage
        try:
            producer = layer.input._keras_history[0]
        except (AttributeError, ValueError, IndexError, TypeError):
            return "backbone"  # inputs and layers called more than once
        return stage_of(producer, depth + 1) if depth < 20 else "backbone"

    return {layer.name: stage_of(layer) for layer in keras_model.layers}


def op_stage(op_name, stages):
    """(stage, backward?) of a profiled op from its name scope, e.g.
    ``.../gradient_tape/mask_rcnn_1/fpn_p2_1/convolution/Conv2DBackpropInput``."""
    backward = "gradient_tape/" in op_name
    m = re.search(r"mask_rcnn(?:_\d+)?/([^/:]+)", op_name)
    if not m:
        return OUTSIDE, backward
    scope = m.group(1)
    for name in (scope, re.sub(r"_\d+$", "", scope)):
        if name in stages:
            return stages[name], backward
    return OUTSIDE, backward


def read_trace(logdir):
    """[(op name, op type, seconds)] of every op run on the executor's threads."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    ops = []
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id]
                # The executor's own spans (ExecutorState::Process) hold the ops; skip them.
                if ":" not in name or name.startswith("ExecutorState"):
                    continue
                op_name, op_type = name.rsplit(":", 1)
                ops.append((op_name, op_type, event.duration_ps / 1e12))
    return ops


def profile_detect(config_name, calls, logdir, precision):
    import tensorflow as tf
    from mrcnn import model as modellib
    cfg = inference_configs()[config_name]()
    cfg.PRECISION = precision
    model = modellib.MaskRCNN("inference", cfg, tempfile.mkdtemp())
    image = detect_image()
    model.detect([image])
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(calls):
        model.detect([image])
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    return model.keras_model, wall


def profile_train(config_name, layers, calls, logdir, precision):
    import keras
    import tensorflow as tf
    from mrcnn import model as modellib

    class Profile(keras.callbacks.Callback):
        first = 2  # after the first step (trace) and a warm-up step

        def on_train_batch_begin(self, batch, logs=None):
            if batch == self.first:
                tf.profiler.experimental.start(logdir)
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch == self.first + calls - 1:
                self.wall = time.perf_counter() - self.start
                tf.profiler.experimental.stop()

    cfg = training_configs()[config_name]()
    cfg.PRECISION = precision
    cfg.STEPS_PER_EPOCH = Profile.first + calls
    model = modellib.MaskRCNN("training", cfg, tempfile.mkdtemp())
    profile = Profile()
    model.train(shapes_dataset(int(cfg.IMAGE_SHAPE[0])), None, learning_rate=1e-3, epochs=1,
                layers=layers, custom_callbacks=[profile])
    return model.keras_model, profile.wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", choices=["detect", "train"], default="detect")
    parser.add_argument("--only", choices=["default", "small"], default="default")
    parser.add_argument("--layers", choices=["heads", "all"], default="heads",
                        help="with --work train")
    parser.add_argument("--precision", default="float32", help="Config.PRECISION")
    parser.add_argument("--calls", type=int, default=3, help="calls or steps profiled")
    parser.add_argument("--top", type=int, default=12, help="op types and ops listed")
    parser.add_argument("--trace", help="summarize this earlier run's profile directory (the "
                                        "same --work, --only and --calls) instead of running")
    args = parser.parse_args()
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")

    print(machine())
    print("TF_NUM_INTEROP_THREADS=%s" % os.environ["TF_NUM_INTEROP_THREADS"])
    label = ("detect %s" % args.only if args.work == "detect"
             else "train step %s, %s" % (args.only, args.layers)) + ", " + args.precision
    if args.trace:
        from mrcnn import model as modellib
        configs = inference_configs() if args.work == "detect" else training_configs()
        mode = "inference" if args.work == "detect" else "training"
        keras_model = modellib.MaskRCNN(mode, configs[args.only](), tempfile.mkdtemp()).keras_model
        logdir, wall = args.trace, None
    else:
        logdir = tempfile.mkdtemp(prefix="mrcnn_profile_")
        print("profile in %s" % logdir)
        if args.work == "detect":
            keras_model, wall = profile_detect(args.only, args.calls, logdir, args.precision)
        else:
            keras_model, wall = profile_train(args.only, args.layers, args.calls, logdir,
                                              args.precision)
    ops = read_trace(logdir)
    stages = layer_stages(keras_model)
    n = args.calls
    total = sum(s for _, _, s in ops)
    print("%s: %s per call (wall, profiler on); ops %.3f s per call" % (
        label, "%.3f s" % (wall / n) if wall else "-", total / n))

    by_stage = collections.defaultdict(lambda: [0.0, 0.0, 0.0])  # forward, backward, of it conv
    by_type, by_op = collections.Counter(), collections.Counter()
    for name, kind, seconds in ops:
        stage, backward = op_stage(name, stages)
        by_stage[stage][1 if backward else 0] += seconds
        if CONV_OPS.search(kind):
            by_stage[stage][2] += seconds
        by_type[kind] += seconds
        by_op[name] += seconds
    order = list(dict.fromkeys(STAGES + [OUTSIDE]))
    print("\n%-30s %10s %10s %8s %12s" % ("stage (per call)", "forward", "backward", "share",
                                          "convolution"))
    for stage in order:
        if stage not in by_stage:
            continue
        fwd, bwd, conv = by_stage[stage]
        print("%-30s %9.3fs %9.3fs %7.1f%% %11.1f%%" % (
            stage, fwd / n, bwd / n, 100 * (fwd + bwd) / total, 100 * conv / max(fwd + bwd, 1e-12)))
    conv = sum(v for k, v in by_type.items() if CONV_OPS.search(k))
    print("%-30s %21s %7.1f%% of op time" % ("all convolutions", "", 100 * conv / total))
    print("\nop types:")
    for kind, seconds in by_type.most_common(args.top):
        print("  %-45s %8.3f s %6.1f%%" % (kind, seconds / n, 100 * seconds / total))
    print("\nops:")
    for name, seconds in by_op.most_common(args.top):
        print("  %-90s %8.3f s" % (name[-90:], seconds / n))


if __name__ == "__main__":
    sys.exit(main())
