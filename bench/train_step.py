"""Seconds per training step (forward, five losses, backward, SGD update) on this machine.

    python bench/train_step.py                  # small (ResNet-50, 128x128, batch 2) and default
    python bench/train_step.py --only small --repeats 10

The batch is built once by the real input pipeline from synthetic shapes and fed again for each
step, so the figure is the compiled train step alone (the pipeline runs in parallel workers
during fit). All layers train (layers="all"), TRAIN_BN False as in Matterport's defaults.
"""

import argparse

from _common import machine, report, timed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["small", "default", "shapes"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    args = parser.parse_args()

    from mrcnn import model as modellib
    from mrcnn.config import Config
    from mrcnn.datasets.synthetic import SyntheticShapesDataset
    from mrcnn.training.data import MaskRCNNSequence
    from mrcnn.training.trainer import _optimizer, set_trainable

    class SmallConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 4
        IMAGES_PER_GPU = 2
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = 128
        IMAGE_MAX_DIM = 128
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        TRAIN_ROIS_PER_IMAGE = 32

    class DefaultConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 4
        IMAGES_PER_GPU = 2
        BACKBONE = "resnet101"

    configs = [("small", SmallConfig), ("default", DefaultConfig)]
    try:
        import os
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "samples"))
        from shapes import ShapesConfig
        configs.append(("shapes", ShapesConfig))
    except ImportError:
        pass
    print(machine())
    for name, cls in configs:
        if args.only and args.only != name:
            continue
        cfg = cls()
        dataset = SyntheticShapesDataset()
        dataset.load_shapes(cfg.BATCH_SIZE, int(cfg.IMAGE_SHAPE[0]), int(cfg.IMAGE_SHAPE[1]))
        dataset.prepare()
        batch = MaskRCNNSequence(dataset, cfg, steps=1, seed=0)[0]
        model = modellib.MaskRCNN("training", cfg, "/tmp/mrcnn_bench")
        set_trainable(model.keras_model, ".*")
        model.keras_model.compile(optimizer=_optimizer(cfg, 1e-3), jit_compile=False)
        step = lambda: model.keras_model.train_on_batch(batch, return_dict=True)  # noqa: E731
        times = timed(step, args.repeats, warmup=args.warmup)
        report("train step %s (%s, %dx%d, batch %d)" % (
            name, cfg.BACKBONE, cfg.IMAGE_SHAPE[0], cfg.IMAGE_SHAPE[1], cfg.BATCH_SIZE), times)


if __name__ == "__main__":
    main()
