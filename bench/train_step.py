"""Seconds per training step through MaskRCNN.train() (the path users take), against the bare
ResNet-50 training step.

    python bench/train_step.py                         # small and default, heads and all
    python bench/train_step.py --only small --repeats 10 --layers all

Each run trains one epoch of 1 + ``--warmup`` + ``--repeats`` steps on generated shapes through
``MaskRCNN.train`` (input pipeline, callbacks and all; no validation) and times every step with a
callback: the first step (tracing, graph optimization, first execution) is printed alone, the
warm-up steps are dropped, the median of the rest is reported. Ratios are to the anchor: Keras's
bare ResNet-50 forward + backward + SGD update on two 128x128 images, timed in the same run.

small: ResNet-50, 128x128, batch 2, 4 classes. default: ResNet-101, 1024x1024, batch 2, 81
classes. TRAIN_BN False (Matterport's default). ``--precision`` and ``--xla`` as in
bench/detect.py. ``--grads sparse,dense`` times each case twice in turn: with the RPN and FPN
convolutions' sparse backward pass (mrcnn/layers/sparse_grad_conv.py, the default) and with
autodiff's dense one.
"""

import argparse
import statistics
import tempfile
import time

from _common import (backbone_step_anchor, has_bf16, machine, report, shapes_dataset,
                     training_configs, variants)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["small", "default"])
    parser.add_argument("--layers", default="heads,all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    parser.add_argument("--precision", default="auto",
                        help="comma-separated PRECISION values, or auto (float32, and "
                             "mixed_bfloat16 where the CPU has native bfloat16)")
    parser.add_argument("--xla", default="float32",
                        help="comma-separated PRECISION values to run also with XLA = True "
                             "(empty: none)")
    parser.add_argument("--grads", default="sparse",
                        help="comma-separated: sparse (SparseGradConv2D's backward pass), dense "
                             "(autodiff's, for comparison)")
    args = parser.parse_args()

    import keras
    from mrcnn import model as modellib
    from mrcnn.layers.sparse_grad_conv import SparseGradConv2D

    sparse_applies = SparseGradConv2D._sparse_grad_applies

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    precisions = (["float32"] + (["mixed_bfloat16"] if has_bf16() else [])
                  if args.precision == "auto" else args.precision.split(","))
    print(machine())
    anchor = report("anchor: bare ResNet-50 step, 2x128", backbone_step_anchor(args.repeats))
    for name, cls in training_configs().items():
        if args.only and args.only != name:
            continue
        for precision, xla in variants(precisions, args.xla):
            for layers, grads in [(la, g) for la in args.layers.split(",")
                                  for g in args.grads.split(",")]:
                SparseGradConv2D._sparse_grad_applies = (
                    sparse_applies if grads == "sparse" else lambda self: False)
                cfg = cls()
                cfg.PRECISION = precision
                cfg.XLA = xla
                cfg.STEPS_PER_EPOCH = 1 + args.warmup + args.repeats
                size = int(cfg.IMAGE_SHAPE[0])
                dataset = shapes_dataset(size)
                model = modellib.MaskRCNN("training", cfg, tempfile.mkdtemp())
                timer = StepTimer()
                model.train(dataset, None, learning_rate=1e-3, epochs=1, layers=layers,
                            custom_callbacks=[timer])
                label = "train step %s (%s, %d px, batch 2), %s, %s%s%s" % (
                    name, cfg.BACKBONE, size, layers, precision, ", XLA" if xla else "",
                    ", dense grads" if grads == "dense" else "")
                first, rest = timer.times[0], timer.times[1 + args.warmup:]
                print("%-60s first step %.2f s (%.1f x anchor)" % (label, first, first / anchor))
                report(label, rest)
                print("%-60s %.2f x anchor" % ("", statistics.median(rest) / anchor))


if __name__ == "__main__":
    main()
