"""Peak resident memory of detect() and of training, each workload in a fresh process.

    python bench/memory.py                       # every workload below
    python bench/memory.py --only detect-default,train-default-heads

A process's peak resident set (``VmHWM``) only grows, so each workload runs in a child process
of its own (this script with ``--child NAME``), which builds its model, runs it, and prints its
peak; the parent prints one line per workload. The figure includes the Python interpreter,
TensorFlow's libraries and the model's weights, as a user's process would.

Workloads:
- detect-default / detect-default-bf16: the default config (ResNet-101, 1024 px, 81 classes),
  a 480x640 random image, random weights, DETECTION_MIN_CONFIDENCE 0 (100 detections); the first
  call and three more. detect-default-direct: the same with WINOGRAD = False.
- train-default-heads / train-default-all: COCO-size training (ResNet-101, 1024 px, batch 2,
  81 classes) through ``MaskRCNN.train`` on generated shapes, three steps.
- train-small-all: ResNet-50, 128 px, batch 2, all layers, five steps.
"""

import argparse
import os
import subprocess
import sys
import tempfile

from _common import (detect_image, inference_configs, machine, peak_rss_gib, shapes_dataset,
                     training_configs)

WORKLOADS = ("detect-default", "detect-default-direct", "detect-default-bf16",
             "train-default-heads", "train-default-all", "train-small-all")


def _detect(precision, winograd="auto"):
    from mrcnn import model as modellib
    cfg = inference_configs()["default"]()
    cfg.PRECISION = precision
    cfg.WINOGRAD = winograd
    model = modellib.MaskRCNN("inference", cfg, tempfile.mkdtemp())
    image = detect_image()
    for _ in range(4):
        result = model.detect([image])[0]
    assert len(result["scores"]) == cfg.DETECTION_MAX_INSTANCES


def _train(name, layers, steps):
    from mrcnn import model as modellib
    cfg = training_configs()[name]()
    cfg.STEPS_PER_EPOCH = steps
    dataset = shapes_dataset(int(cfg.IMAGE_SHAPE[0]))
    model = modellib.MaskRCNN("training", cfg, tempfile.mkdtemp())
    model.train(dataset, None, learning_rate=1e-3, epochs=1, layers=layers)


def child(name):
    if name == "detect-default":
        _detect("float32")
    elif name == "detect-default-direct":
        _detect("float32", winograd=False)
    elif name == "detect-default-bf16":
        _detect("mixed_bfloat16")
    elif name.startswith("train-"):
        _, config, layers = name.split("-")
        _train(config, layers, 3 if config == "default" else 5)
    else:
        raise SystemExit("unknown workload %r" % name)
    peak = peak_rss_gib()
    if peak is None:
        raise SystemExit("no VmHWM in /proc/self/status: peak memory is read on Linux only")
    print("PEAK_RSS_GIB %.3f" % peak)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated workloads: " + ", ".join(WORKLOADS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    print(machine())
    names = args.only.split(",") if args.only else WORKLOADS
    for name in names:
        if name not in WORKLOADS:
            raise SystemExit("unknown workload %r; choose from %s" % (name, ", ".join(WORKLOADS)))
    for name in names:
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name],
                             capture_output=True, text=True)
        peaks = [line.split()[1] for line in run.stdout.splitlines()
                 if line.startswith("PEAK_RSS_GIB")]
        if run.returncode or not peaks:
            print("%-22s failed (exit %d):\n%s" % (name, run.returncode, run.stderr[-2000:]))
            continue
        print("%-22s peak resident memory %s GiB" % (name, peaks[0]))


if __name__ == "__main__":
    main()
