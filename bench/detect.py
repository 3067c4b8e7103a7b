"""Seconds per MaskRCNN.detect() call on this machine.

    python bench/detect.py                 # default config (ResNet-101, 1024x1024) and small config
    python bench/detect.py --only small --repeats 10

Random weights: the timing of the graph does not depend on their values, except through the
number of detections, which is pinned to DETECTION_MAX_INSTANCES by DETECTION_MIN_CONFIDENCE = 0.
Each config runs twice: with 100 detections per image (the worst case; also what Matterport's
graph always pays, since it runs the mask head on all DETECTION_MAX_INSTANCES rows whatever the
image holds) and with 10 (``--detections``), closer to a fine-tuned model on a real photo: our
mask head runs on the real detections only.
"""

import argparse

import numpy as np

from _common import machine, report, timed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["default", "small"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--detections", default="100,10",
                        help="comma-separated detection counts per image to time")
    args = parser.parse_args()

    from mrcnn import model as modellib
    from mrcnn.config import Config

    class DefaultConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 81
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.0

    class SmallConfig(DefaultConfig):
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = 256
        IMAGE_MAX_DIM = 256
        RPN_ANCHOR_SCALES = (16, 32, 64, 128, 256)

    print(machine())
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    configs = [("default", DefaultConfig), ("small", SmallConfig)]
    for name, cls in configs:
        if args.only and args.only != name:
            continue
        for count in [int(v) for v in args.detections.split(",")]:
            cfg = cls()
            cfg.DETECTION_MAX_INSTANCES = count
            model = modellib.MaskRCNN("inference", cfg, "/tmp/mrcnn_bench")
            assert len(model.detect([image])[0]["scores"]) == count
            times = timed(lambda: model.detect([image]), args.repeats, warmup=1)
            report("detect %s (%s, %dx%d), %d detections" % (
                name, cfg.BACKBONE, cfg.IMAGE_MAX_DIM, cfg.IMAGE_MAX_DIM, count), times)


if __name__ == "__main__":
    main()
