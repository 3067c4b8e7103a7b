"""What the first detect() call of a new model spends its time on, in one run.

    python bench/profile_first_call.py [--only default|small] [--top 25]

The first call is split into: computing the batch-norm folds of the backbone's convolutions
(``FoldCache``, made when detect()'s function is built), tracing detect()'s ``tf.function`` into a graph
(``get_concrete_function``, Python and Keras work), the first run of that graph (TensorFlow's
graph optimization, kernel selection, the run itself), and a later run (the run alone). The
traced graph's ops are counted by type and by the top-level name scope they were made in, and
the trace is profiled with cProfile (the ``--top`` functions by cumulative time). Random
weights, DETECTION_MIN_CONFIDENCE 0, a 480x640 random image; ratios to the bare ResNet-101
forward (bench/detect.py).
"""

import argparse
import collections
import cProfile
import io
import pstats
import statistics
import time

from _common import (backbone_forward_anchor, detect_image, inference_configs, machine, report,
                     timed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["default", "small"], default="default")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--winograd", default="auto", choices=["auto", "True", "False"],
                        help="Config.WINOGRAD")
    parser.add_argument("--no-profile", action="store_true",
                        help="time the trace without cProfile (which slows Python down)")
    args = parser.parse_args()

    import tensorflow as tf
    from mrcnn import model as modellib

    print(machine())
    anchor = report("anchor: bare ResNet-101 forward, 1024", backbone_forward_anchor(5))

    cfg = inference_configs()[args.only]()
    cfg.WINOGRAD = {"True": True, "False": False}.get(args.winograd, args.winograd)
    start = time.perf_counter()
    model = modellib.MaskRCNN("inference", cfg, "/tmp/mrcnn_bench")
    build = time.perf_counter() - start
    image = detect_image()
    molded, metas, _ = model.mold_inputs([image])
    images = tf.convert_to_tensor(molded, tf.float32)
    metas = tf.convert_to_tensor(metas, tf.float32)

    start = time.perf_counter()
    predict = model._predict_function()  # also computes the folded kernels (FoldCache)
    prepare = time.perf_counter() - start
    profiler = None if args.no_profile else cProfile.Profile()
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    concrete = predict.get_concrete_function(images, metas)
    if profiler:
        profiler.disable()
    trace = time.perf_counter() - start

    start = time.perf_counter()
    [t.numpy() for t in predict(images, metas)]
    first_run = time.perf_counter() - start
    run = statistics.median(timed(lambda: [t.numpy() for t in predict(images, metas)], 3,
                                  warmup=0))

    print("%s config (%s, %d px), %s, WINOGRAD %s" % (args.only, cfg.BACKBONE, cfg.IMAGE_MAX_DIM,
                                                      cfg.PRECISION, cfg.WINOGRAD))
    for label, secs in [("model build", build),
                        ("folded kernels (_predict_function)", prepare),
                        ("trace (get_concrete_function)", trace),
                        ("first run (optimize + run)", first_run), ("later run", run),
                        ("first run - later run", first_run - run),
                        ("first call = the three before", prepare + trace + first_run)]:
        print("  %-34s %7.2f s  %5.2f x anchor" % (label, secs, secs / anchor))

    ops = concrete.graph.get_operations()
    print("  traced graph: %d ops" % len(ops))
    by_type = collections.Counter(op.type for op in ops)
    print("  by type: " + ", ".join("%s %d" % kv for kv in by_type.most_common(15)))
    by_scope = collections.Counter(op.name.split("/")[0] for op in ops)
    print("  by top-level scope: " + ", ".join("%s %d" % kv for kv in by_scope.most_common(15)))
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
