"""Seconds per MaskRCNN.detect() call on this machine, against the bare ResNet-101 forward pass.

    python bench/detect.py                 # default config (ResNet-101, 1024x1024) and small config
    python bench/detect.py --only small --repeats 10

Random weights: the timing of the graph does not depend on their values, except through the
number of detections, which is pinned to DETECTION_MAX_INSTANCES by DETECTION_MIN_CONFIDENCE = 0.
Each config runs with 100 detections per image (the worst case; also what Matterport's graph
always pays, since it runs the mask head on all DETECTION_MAX_INSTANCES rows whatever the image
holds) and with 10 (``--detections``), closer to a fine-tuned model on a real photo: our mask head
runs on the real detections only.

Printed per config: the first call of a new model (tracing and graph optimization included),
and what it costs beyond a later call (first call - median: the trace and first-run overhead),
the median of ``--repeats`` calls, each as a ratio to the anchor, a forward pass of Keras's bare
ResNet-101 on one 1024x1024 image (the speed issue's yardstick, timed in the same run); and the
same with PRECISION = "mixed_bfloat16" on CPUs with native bfloat16 (``--precision``), and with
XLA = True (``--xla``, float32 by default; its first call includes XLA's compilation). Float32
runs are timed with each ``--winograd`` setting (Config.WINOGRAD; default: "auto", then False, so
that one run shows what Winograd's convolutions save).
"""

import argparse
import time

from _common import (backbone_forward_anchor, detect_image, has_bf16, inference_configs,
                     machine, report, timed, variants)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["default", "small"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--detections", default="100,10",
                        help="comma-separated detection counts per image to time")
    parser.add_argument("--precision", default="auto",
                        help="comma-separated PRECISION values; auto: float32, and "
                             "mixed_bfloat16 where the CPU has native bfloat16")
    parser.add_argument("--xla", default="float32",
                        help="comma-separated PRECISION values to run also with XLA = True "
                             "(empty: none)")
    parser.add_argument("--winograd", default="auto,False",
                        help="comma-separated WINOGRAD values (auto, True, False) for float32 "
                             "runs; other precisions run with 'auto' only (no effect there)")
    args = parser.parse_args()
    winograds = [{"true": True, "false": False}.get(v.strip().lower(), v.strip())
                 for v in args.winograd.split(",")]

    from mrcnn import model as modellib

    configs = inference_configs()

    precisions = (["float32"] + (["mixed_bfloat16"] if has_bf16() else [])
                  if args.precision == "auto" else args.precision.split(","))
    print(machine())
    anchor = report("anchor: bare ResNet-101 forward, 1024", backbone_forward_anchor(args.repeats))
    image = detect_image()
    for name, cls in configs.items():
        if args.only and args.only != name:
            continue
        runs = [(precision, xla, winograd) for precision, xla in variants(precisions, args.xla)
                for winograd in (winograds if precision == "float32" else ["auto"])]
        for precision, xla, winograd in runs:
            for count in [int(v) for v in args.detections.split(",")]:
                cfg = cls()
                cfg.DETECTION_MAX_INSTANCES = count
                cfg.PRECISION = precision
                cfg.XLA = xla
                cfg.WINOGRAD = winograd
                cfg.validate()
                model = modellib.MaskRCNN("inference", cfg, "/tmp/mrcnn_bench")
                start = time.perf_counter()
                first = model.detect([image])[0]
                first_time = time.perf_counter() - start
                assert len(first["scores"]) == count
                label = "detect %s (%s, %d px), %s%s%s, %d detections" % (
                    name, cfg.BACKBONE, cfg.IMAGE_MAX_DIM, precision, ", XLA" if xla else "",
                    "" if precision != "float32" else ", Winograd %s" % winograd, count)
                print("%-60s first call %.2f s (%.2f x anchor)" % (label, first_time,
                                                                  first_time / anchor))
                median = report(label, timed(lambda: model.detect([image]), args.repeats,
                                             warmup=1))
                print("%-60s %.2f x anchor; first call - median %.2f s (%.2f x anchor)" % (
                    "", median / anchor, first_time - median, (first_time - median) / anchor))


if __name__ == "__main__":
    main()
