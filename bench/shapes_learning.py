"""Does it learn? Train shapes from scratch on this CPU within a time budget, then report mAP.

    python bench/shapes_learning.py                    # 20-minute budget, 50 new test images
    python bench/shapes_learning.py --minutes 5

Trains samples/shapes.py's ShapesConfig (ResNet-18, 128x128, batch 8, trainable batch norm, SGD
with warmup) on generated images, stops when the budget is spent (the budget covers training,
checkpointing and validation, not the final evaluation), then evaluates Matterport-style
mAP@0.5 (mask IoU, utils.compute_ap) on 50 images from a seed never used in training.
"""

import argparse
import os
import sys
import tempfile
import time

from _common import machine

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--logs", default=None)
    args = parser.parse_args()

    import shapes

    print(machine())
    logs = args.logs or tempfile.mkdtemp(prefix="shapes_learning_")
    budget = args.minutes * 60
    start = time.time()
    train_args = argparse.Namespace(logs=logs, epochs=1000, weights="none", train_images=4000,
                                    steps_per_epoch=100, time_budget=budget)
    model = shapes.train(train_args)
    trained = time.time() - start
    steps = model.keras_model.optimizer.iterations.numpy()
    eval_args = argparse.Namespace(logs=logs, weights="last", images=args.images, seed=12345)
    result = shapes.evaluate(eval_args, weights=model.find_last())
    print("trained %d steps (%d images) in %.0f s; mAP@0.5 on %d new images = %.3f"
          % (steps, steps * shapes.ShapesConfig().BATCH_SIZE, trained, args.images,
             result["mAP"]))


if __name__ == "__main__":
    main()
