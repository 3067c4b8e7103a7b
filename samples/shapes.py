"""Mask R-CNN on synthetic shapes (squares, circles, triangles): Matterport's classic example.

Trains from scratch on the CPU in minutes with the light ResNet-18 backbone; nothing to download.

    python samples/shapes.py train --logs logs --epochs 10
    python samples/shapes.py evaluate --weights last --logs logs --images 50
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mrcnn.config import Config  # noqa: E402
from mrcnn.datasets.synthetic import SyntheticShapesDataset  # noqa: E402
from mrcnn.workflow import deadline_callback, trained_weights  # noqa: E402
from mrcnn.workflow.errors import user_error_types  # noqa: E402


class ShapesConfig(Config):
    """A recipe for learning shapes from scratch on a 2-core CPU.

    Matterport's ShapesConfig (128x128 images, small anchors, 32 ROIs per image) with a light
    backbone and narrow pyramid/heads so that many steps fit in a few minutes, and trainable
    batch norm (random initial statistics are useless without pretrained weights) whose moving
    statistics follow the fast-changing weights closely (momentum 0.9).
    """

    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 8
    NUM_CLASSES = 1 + 3
    BACKBONE = "resnet18"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    PRE_NMS_LIMIT = 2000
    POST_NMS_ROIS_TRAINING = 500
    POST_NMS_ROIS_INFERENCE = 250
    TRAIN_ROIS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    DETECTION_MIN_CONFIDENCE = 0.5
    TRAIN_BN = True
    # Evaluation uses the moving statistics; at this learning rate Keras' 0.99 (an average over
    # ~100 steps) would lag behind the weights.
    BATCH_NORM_MOMENTUM = 0.9
    LEARNING_RATE = 0.02
    WARMUP_STEPS = 100
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 5


class InferenceConfig(ShapesConfig):
    IMAGES_PER_GPU = 1


def shapes_dataset(count, seed, size=128):
    dataset = SyntheticShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed)
    dataset.prepare()
    return dataset


def train(args):
    from mrcnn import model as modellib
    config = ShapesConfig()
    if args.steps_per_epoch:
        config.STEPS_PER_EPOCH = args.steps_per_epoch
    model = modellib.MaskRCNN("training", config, args.logs)
    if args.weights not in (None, "none"):
        model.load_weights(trained_weights(args.weights, args.logs, config.NAME), by_name=True)
    # mrcnn.workflow's deadline: the epoch ends (validated, checkpointed) once time is up.
    callbacks = [deadline_callback(time.time() + args.time_budget)] if args.time_budget else []
    model.train(shapes_dataset(args.train_images, seed=1), shapes_dataset(40, seed=2),
                learning_rate=config.LEARNING_RATE, epochs=args.epochs, layers="all",
                custom_callbacks=callbacks)
    return model


def evaluate(args, weights=None):
    from mrcnn import model as modellib
    from mrcnn.evaluation import evaluate_map
    model = modellib.MaskRCNN("inference", InferenceConfig(), args.logs)
    path = weights or trained_weights(args.weights, args.logs, "shapes")
    model.load_weights(path, by_name=True)
    result = evaluate_map(model, shapes_dataset(args.images, seed=args.seed), verbose=0)
    print("mAP@0.5 on %d new images: %.3f (weights %s)" % (args.images, result["mAP"], path))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="Mask R-CNN on synthetic shapes")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train from scratch (or continue)")
    t.add_argument("--logs", default="logs")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--weights", default="none", help="none, last or a .h5 path")
    t.add_argument("--train-images", type=int, default=2000)
    t.add_argument("--steps-per-epoch", type=int)
    t.add_argument("--time-budget", type=float, help="stop after this many seconds")
    e = sub.add_parser("evaluate", help="mAP@0.5 on newly generated images")
    e.add_argument("--logs", default="logs")
    e.add_argument("--weights", default="last")
    e.add_argument("--images", type=int, default=50)
    e.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    try:
        train(args) if args.command == "train" else evaluate(args)
    except user_error_types() as error:  # a missing run or file: its message, no traceback
        print(f"shapes.py {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
