"""Seconds to export a SavedModel and a TFLite file, and per image served by each against
``MaskRCNN.detect()``, in one run.

    python bench/export.py [--only small|default] [--repeats 5] [--no-tflite]

Random weights with DETECTION_MIN_CONFIDENCE = 0 (so DETECTION_MAX_INSTANCES detections), a
480x640 random image; the SavedModel is loaded back with ``tf.saved_model.load`` in this process
and called through its ``serving_default`` signature, molding and unmolding included. The
TFLite file runs through ``TFLiteDetector.detect`` (molding and mask pasting in NumPy, as
``detect()`` does them), with the interpreter's default threads. The three alternate, so that a
change in the machine's speed hits them alike.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import detect_image, inference_configs, machine, report, timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["default", "small"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-tflite", action="store_true", help="SavedModel only")
    args = parser.parse_args()

    import tensorflow as tf
    from mrcnn import model as modellib
    from mrcnn.export import TFLiteDetector, export_saved_model, export_tflite

    configs = inference_configs()
    print(machine())
    image = detect_image()
    for name in ("small", "default"):
        cls = configs[name]
        if args.only and args.only != name:
            continue
        model = modellib.MaskRCNN("inference", cls(), tempfile.mkdtemp())
        path = os.path.join(tempfile.mkdtemp(), "saved_model")
        start = time.perf_counter()
        export_saved_model(model, path)
        print("%-40s %.1f s" % ("export %s" % name, time.perf_counter() - start))
        serve = tf.saved_model.load(path).signatures["serving_default"]
        tensor = tf.constant(image)
        start = time.perf_counter()
        serve(image=tensor)
        print("%-40s %.1f s" % ("first SavedModel call %s" % name, time.perf_counter() - start))
        detector = None
        if not args.no_tflite:
            tflite = os.path.join(tempfile.mkdtemp(), "model.tflite")
            start = time.perf_counter()
            export_tflite(model, tflite)
            print("%-40s %.1f s, %.1f MB" % ("export TFLite %s" % name,
                                            time.perf_counter() - start,
                                            os.path.getsize(tflite) / 1e6))
            detector = TFLiteDetector(tflite)
            start = time.perf_counter()
            detector.detect([image])
            print("%-40s %.1f s" % ("first TFLite call %s" % name, time.perf_counter() - start))
        ours, saved, lite = [], [], []
        model.detect([image])
        for _ in range(args.repeats):
            ours += timed(lambda: model.detect([image]), 1, warmup=0)
            saved += timed(lambda: serve(image=tensor)["masks"].numpy(), 1, warmup=0)
            if detector is not None:
                lite += timed(lambda: detector.detect([image]), 1, warmup=0)
        a = report("detect() %s" % name, ours)
        b = report("SavedModel %s" % name, saved)
        print("  ratio SavedModel / detect(): %.2f" % (b / a))
        if lite:
            c = report("TFLiteDetector.detect() %s" % name, lite)
            print("  ratio TFLite / detect(): %.2f" % (c / a))


if __name__ == "__main__":
    main()
