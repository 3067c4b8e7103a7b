"""Seconds per MaskRCNN.detect() call on this machine.

    python bench/detect.py                 # default config (ResNet-101, 1024x1024) and small config
    python bench/detect.py --only small --repeats 10

Random weights: the timing of the graph does not depend on their values, except through the
number of detections, which is pinned to DETECTION_MAX_INSTANCES by DETECTION_MIN_CONFIDENCE = 0
(the worst case for the mask head and mask pasting).
"""

import argparse

import numpy as np

from _common import machine, report, timed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["default", "small"])
    parser.add_argument("--repeats", type=int, default=5)
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
        cfg = cls()
        model = modellib.MaskRCNN("inference", cfg, "/tmp/mrcnn_bench")
        times = timed(lambda: model.detect([image]), args.repeats, warmup=2)
        report("detect %s (%s, %dx%d)" % (name, cfg.BACKBONE, cfg.IMAGE_MAX_DIM,
                                          cfg.IMAGE_MAX_DIM), times)


if __name__ == "__main__":
    main()
