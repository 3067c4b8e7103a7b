"""What the traced training step is made of: its ops by type and by the line that made them.

    python bench/train_graph.py                      # small config, all layers, float32
    python bench/train_graph.py --layers heads --precision mixed_bfloat16 --top 30

The first training step traces the step (Python builds every op of the forward pass, the losses,
the gradients and the optimizer's updates), then TensorFlow's graph optimizer (Grappler) rewrites
the whole graph before it first runs; both grow with the number of ops, about 0.3-0.4 ms per op
each on the machines of docs/benchmarks.md. This script runs one step through ``MaskRCNN.train``
(so the graph is the one users get), keeps the graph ``train_step`` was traced into, and counts
the ops it added: by op type, by scope (forward model, gradient, optimizer, the rest), and by the
``mrcnn`` source line that created them (gradient ops are credited to the ``tape.gradient`` line).
No timing: op counts are the same on every machine.
"""

import argparse
import collections
import os
import tempfile

from _common import shapes_dataset, training_configs


def origin(op):
    """'path:line' of the innermost mrcnn frame that created ``op`` ('?' if none)."""
    for frame in reversed(op.traceback):
        if "mrcnn" + os.sep in frame.filename and "site-packages" not in frame.filename:
            return "%s:%d" % (frame.filename.split(os.sep + "mrcnn" + os.sep, 1)[-1],
                              frame.lineno)
    return "?"


def scope(op):
    top = op.name.split("/", 1)[0]
    if top.startswith("gradient_tape"):
        return "gradient"
    if top.startswith("mask_rcnn"):
        return "forward model"
    if top.startswith(("momentum_sgd", "loss_scale_optimizer")):
        return "optimizer"
    return "the rest: losses, weight decay, clipping, custom gradients, metrics"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["small", "default"], default="small")
    parser.add_argument("--layers", default="all")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--top", type=int, default=15, help="rows per table")
    args = parser.parse_args()

    import tensorflow as tf
    from mrcnn import model as modellib
    from mrcnn.training.trainer import MaskRCNNTrainer

    cfg = training_configs()[args.only]()
    cfg.PRECISION = args.precision
    cfg.STEPS_PER_EPOCH = 1
    model = modellib.MaskRCNN("training", cfg, tempfile.mkdtemp())
    traced = {}
    train_step = MaskRCNNTrainer.train_step

    def recording_step(self, data):
        graph = tf.compat.v1.get_default_graph()
        first = len(graph.get_operations())
        result = train_step(self, data)
        traced["ops"] = graph.get_operations()[first:]
        return result

    MaskRCNNTrainer.train_step = recording_step
    try:
        model.train(shapes_dataset(int(cfg.IMAGE_SHAPE[0])), None, learning_rate=1e-3,
                    epochs=1, layers=args.layers)
    finally:
        MaskRCNNTrainer.train_step = train_step
    ops = traced["ops"]
    print("\n%s config (%s, %d px), layers %s, %s: %d ops in the traced train_step" % (
        args.only, cfg.BACKBONE, int(cfg.IMAGE_SHAPE[0]), args.layers, args.precision,
        len(ops)))
    for title, key in [("scope", scope), ("op type", lambda op: op.type),
                       ("created at (mrcnn/...)", origin)]:
        counts = collections.Counter(key(op) for op in ops)
        print("\n| %s | ops |\n|---|---|" % title)
        for name, count in counts.most_common(args.top):
            print("| %s | %d |" % (name, count))


if __name__ == "__main__":
    main()
