"""Quantized TFLite files against float32 and ``detect()``: file size, seconds per image and
agreement, in one run.

    mrcnn demo --output out/demo --classes types              # a trained tiny model, once
    python bench/quantize.py --logs out/demo/logs --images out/demo/data/val
    python bench/quantize.py --resnet101                      # ResNet-101, 1024 px, 81 classes

For each of float32, float16 and dynamic-int8 it exports the model (`export_tflite`), runs the
file with `TFLiteDetector` (both cores) on the images and compares its detections with the
float32 model's ``detect()`` on the same images. A detection of ``detect()`` counts as matched
when the file has one of the same class with every box edge within 2 px and mask IoU >= 0.9
(each of the file's detections pairs with one of detect()'s at most); "extra" counts the file's
detections that paired with none.

``--logs``: the best checkpoint of the latest run there (as ``mrcnn export`` takes it), its
configuration and class names from the run's settings.json. ``--resnet101``: random weights,
DETECTION_MIN_CONFIDENCE 0 (so 100 detections per image, scores close together), on
``--images`` or, without it, one 480x640 random image: its agreement says how much the
quantization moves an untrained network's outputs, not how a trained one fares: with scores
that close, which 100 detections survive turns on their last digits (even the float32 file
matches only part of them).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import detect_image, inference_configs, machine  # noqa: E402

def load_images(folder, limit):
    """The first ``limit`` images of ``folder`` as RGB uint8, read as ``mrcnn detect`` reads
    them."""
    from mrcnn.dataset import read_image
    from mrcnn.workflow.detect_files import list_images
    return [read_image(path) for path in list_images(folder)[0][:limit]]


def per_image_seconds(detector, images, repeats):
    """Median seconds of ``detector.detect([image])`` over ``repeats`` passes over ``images``."""
    times = []
    for _ in range(repeats):
        for image in images:
            start = time.perf_counter()
            detector.detect([image])
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def build(args):
    """(model, class names, images, what) for the chosen model."""
    from mrcnn import model as modellib
    if args.resnet101:
        import keras
        keras.utils.set_random_seed(0)      # the same random network in every run
        cls = inference_configs()["default"]
        model = modellib.MaskRCNN("inference", cls(), tempfile.mkdtemp())
        images = load_images(args.images, args.max_images) if args.images else [detect_image()]
        return model, None, images, "ResNet-101, 1024 px, 81 classes, random weights"
    from mrcnn.workflow.inference import inference_model
    model, names, path, _ = inference_model("best", args.logs,
                                            overrides={"PRECISION": "float32"})
    if not args.images:
        raise SystemExit("--logs needs --images (a folder of the data set's images)")
    images = load_images(args.images, args.max_images)
    what = "%s, %d px, %d classes, trained (%s)" % (
        model.config.BACKBONE, model.config.IMAGE_MAX_DIM, model.config.NUM_CLASSES, path)
    return model, names, images, what


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", help="a logs folder with a trained run (mrcnn demo's)")
    parser.add_argument("--resnet101", action="store_true",
                        help="ResNet-101 at 1024 px with random weights instead of --logs")
    parser.add_argument("--images", help="a folder of images to detect on")
    parser.add_argument("--max-images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3,
                        help="passes over the images for the timings (median per image)")
    args = parser.parse_args()
    if not (args.logs or args.resnet101):
        parser.error("give --logs (a trained run) or --resnet101")

    from mrcnn.export import TFLiteDetector, export_tflite
    from mrcnn.export.agreement import detection_agreement

    print(machine())
    model, names, images, what = build(args)
    print("model: %s; %d images" % (what, len(images)))
    expected = model.detect(images)
    detect_s = per_image_seconds(model, images, args.repeats)
    print("detect(): %.3f s per image (median), %d detections"
          % (detect_s, sum(len(r["rois"]) for r in expected)))

    folder = tempfile.mkdtemp()
    rows, float32_size = [], None
    for quantize in (None, "float16", "dynamic-int8"):
        label = quantize or "float32"
        path = os.path.join(folder, label + ".tflite")
        start = time.perf_counter()
        export_tflite(model, path, names, quantize=quantize)
        export_s = time.perf_counter() - start
        size = os.path.getsize(path)
        float32_size = float32_size or size
        detector = TFLiteDetector(path)
        got = detector.detect(images)
        seconds = per_image_seconds(detector, images, args.repeats)
        matched, total, extra = detection_agreement(expected, got, box_px=2, mask_iou=0.9)
        rows.append((label, size / 1e6, size / float32_size, export_s, seconds,
                     seconds / detect_s, matched, total, extra))
        del detector
    print()
    print("| file | size MB | of float32 | export s | s per image | of detect() "
          "| matched | extra |")
    print("|---|---|---|---|---|---|---|---|")
    for label, mb, share, export_s, per_image, ratio, matched, total, extra in rows:
        print("| %s | %.1f | %.0f%% | %.0f | %.3f | %.2fx | %d of %d (%.1f%%) | %d |"
              % (label, mb, 100 * share, export_s, per_image, ratio, matched, total,
                 100.0 * matched / max(total, 1), extra))


if __name__ == "__main__":
    main()
