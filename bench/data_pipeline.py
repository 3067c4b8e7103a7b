"""The training input pipeline against Matterport's, on real-size photos: seconds per image, worker
scaling and peak memory.

    python bench/data_pipeline.py [--images 24] [--crowded-images 8] [--data DIR]

Data: generated 1920x1080 JPEGs (bench/_photos.py) with 20 polygons each (``--images`` of them)
and with 100 polygons each (``--crowded-images``), read by a user-style ``Dataset`` subclass like
Matterport's balloon sample (``skimage.draw.polygon`` into a uint8 array, returned as bool). Both
sides read the same files through the same ``load_mask``. Settings: Matterport's defaults (1024 px
square, ResNet-101 anchors, 56x56 mini masks, 256 RPN anchors, batches of 2), no augmentation.

Figures, each from a fresh process (alternating the two sides, ``--rounds`` times, medians):
- Matterport-equivalent: tests/matterport_reference.py's ``training_item`` (``skimage.io.imread``,
  ``load_image_gt``, ``build_rpn_targets`` with its per-box IoU loop, the MAX_GT cut,
  ``mold_image``), one thread, three passes, batches stacked as its generator fills them.
- mrcnn, one thread: ``MaskRCNNSequence.batch_at`` over three passes with a fresh cache, first
  pass and all three.
- mrcnn through Keras's PyDataset enqueuer (the path fit takes), cache off, two passes: 1 and 2 workers,
  as threads and as processes, images per second.
- The steps of a first pass, each timed alone (milliseconds per image).
- Peak traced memory (tracemalloc) while one image with 100 and one with 300 instances is
  prepared, and the part of it beyond what the data set's ``load_mask`` returned ("extra").
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import _photos  # noqa: E402
from _common import machine  # noqa: E402


def make_config(**overrides):
    from mrcnn.config import Config

    class BenchConfig(Config):
        NAME = "bench"
        NUM_CLASSES = 2
        GPU_COUNT = 1
        IMAGES_PER_GPU = 2

    config = BenchConfig()
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def matterport_passes(dataset, config, anchors, passes):
    """Seconds per pass of the Matterport-equivalent over every image, in batches of 2."""
    import matterport_reference as mp
    np.random.seed(0)
    ids = list(dataset.image_ids)
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        for b in range(0, len(ids), config.BATCH_SIZE):
            items = [mp.training_item(dataset, config, i, anchors) for i in ids[b:b + 2]]
            [np.stack(parts) for parts in zip(*[it[:4] for it in items])]
        times.append(time.perf_counter() - start)
    return times


def mrcnn_passes(dataset, config, passes):
    """Seconds per pass of ``MaskRCNNSequence.batch_at`` in this thread, from a cold cache."""
    from mrcnn.training.data import MaskRCNNSequence
    from mrcnn.training.sample_cache import clear_caches
    clear_caches()
    config.INPUT_WORKERS = "threads"
    seq = MaskRCNNSequence(dataset, config, shuffle=True, seed=0, workers=1)
    times = []
    for epoch in range(passes):
        start = time.perf_counter()
        for i in range(len(seq)):
            seq.batch_at(epoch, i)
        times.append(time.perf_counter() - start)
    return times


def enqueued_rate(dataset, config, workers, mode, passes=1):
    """Images per second through Keras's PyDataset adapter (fit's path), cache off."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from mrcnn.training.data import MaskRCNNSequence
    config.INPUT_WORKERS = mode
    config.TRAIN_CACHE_MB = 0
    seq = MaskRCNNSequence(dataset, config, shuffle=True, seed=1, workers=workers,
                           steps=len(dataset.image_ids) // config.BATCH_SIZE)
    adapter = PyDatasetAdapter(seq, shuffle=False)
    seq.batch_at(0, 0)  # start worker processes outside the timing
    images = 0
    start = time.perf_counter()
    for _ in range(passes):
        adapter.on_epoch_begin()
        for batch in adapter.get_numpy_iterator():
            images += len(batch["input_image"])
        adapter.on_epoch_end()
    seconds = time.perf_counter() - start
    seq.close()
    return images / seconds


def peak_memory(dataset, config, prepare):
    """(peak traced MB while ``prepare(image_id)`` runs, peak MB beyond what was held when the
    data set's load_mask returned)."""
    image_id = dataset.image_ids[0]
    marks = {}
    real = dataset.load_mask

    def load_mask(i):
        result = real(i)
        marks["held"] = tracemalloc.get_traced_memory()[0]
        marks["peak_before"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        return result

    dataset.load_mask = load_mask
    try:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        prepare(image_id)
        after_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        del dataset.load_mask
    total = max(marks["peak_before"], after_peak) - base
    extra = after_peak - marks["held"]
    return total / 2 ** 20, extra / 2 ** 20


def stage_times(dataset, config):
    """Milliseconds per image of each step of a first pass, each step timed alone in this
    thread (the pipeline overlaps decoding and resizing with load_mask)."""
    from mrcnn.image import resize_image
    from mrcnn.training.data import MaskRCNNSequence
    from mrcnn.training.prepared import instance_crops, prepare_image
    from mrcnn.training.rpn_targets import match_anchors
    config.INPUT_WORKERS, config.TRAIN_CACHE_MB = "threads", 0
    seq = MaskRCNNSequence(dataset, config, shuffle=False, seed=0)
    totals = {}

    def timed_step(name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
        return out

    for image_id in dataset.image_ids:
        image = timed_step("load_image (decode)", dataset.load_image, image_id)
        mask, _ = timed_step("load_mask (the data set's)", dataset.load_mask, image_id)
        _, _, scale, padding, crop = timed_step(
            "resize_image", resize_image, image, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM,
            config.IMAGE_MIN_SCALE, config.IMAGE_RESIZE_MODE)
        timed_step("instance crops", instance_crops, mask, scale, padding, crop)
        prepared = prepare_image(dataset, config, image_id)
        timed_step("mini masks", prepared.mini_masks, config.MINI_MASK_SHAPE)
        timed_step("anchor labels", match_anchors, seq.preparer.anchor_index,
                   prepared.class_ids, prepared.boxes)
        timed_step("whole image (load_one)", seq.load_one, image_id, np.random.default_rng(0))
    return {k: 1000 * v / len(dataset.image_ids) for k, v in totals.items()}


def child(kind, folder, passes, workers=1, mode="threads"):
    """One measurement in this (fresh) process; prints one JSON line."""
    import json
    dataset = _photos.photo_dataset(folder)
    n = len(dataset.image_ids)
    if kind == "matterport":
        from mrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors
        config = make_config()
        anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                           compute_backbone_shapes(config, config.IMAGE_SHAPE),
                                           config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
        result = [t / n for t in matterport_passes(dataset, config, anchors, passes)]
    elif kind == "mrcnn":
        result = [t / n for t in mrcnn_passes(dataset, make_config(), passes)]
    elif kind == "stages":
        result = stage_times(dataset, make_config())
    elif kind == "rate":
        result = enqueued_rate(dataset, make_config(), workers, mode, passes)
    else:  # memory
        import matterport_reference as mp
        from mrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors
        from mrcnn.training.data import MaskRCNNSequence
        config = make_config()
        anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                           compute_backbone_shapes(config, config.IMAGE_SHAPE),
                                           config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
        mp_mb = peak_memory(dataset, config,
                            lambda i: mp.training_item(dataset, config, i, anchors))
        cfg = make_config(INPUT_WORKERS="threads", TRAIN_CACHE_MB=0)
        seq = MaskRCNNSequence(dataset, cfg, shuffle=False, seed=0)
        ours = peak_memory(dataset, cfg, lambda i: seq.load_one(i, np.random.default_rng(0)))
        result = [mp_mb, ours]
    print("RESULT " + json.dumps(result))


def run_child(*args):
    """Run `child` in a fresh Python process (no allocator or cache state carried over from
    another measurement) and return its result."""
    import json
    import subprocess
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"]
                         + [str(a) for a in args], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("measurement %s failed:\n%s" % (args, out.stderr[-3000:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--crowded-images", type=int, default=8)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2,
                        help="times each measurement is repeated, alternating the two sides")
    parser.add_argument("--data", help="folder for the generated photos (default: a temporary "
                        "folder; an existing one is reused)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder, passes = args.child[:3]
        extra = args.child[3:]
        return child(kind, folder, int(passes), *([int(extra[0]), extra[1]] if extra else []))
    print(machine())

    root = args.data or tempfile.mkdtemp(prefix="mrcnn-photos-")
    sets = {"20": (args.images, 20, 0), "100": (args.crowded_images, 100, 1),
            "mem100": (1, 100, 2), "mem300": (1, 300, 3)}
    folders = {}
    for name, (count, polygons, seed) in sets.items():
        folders[name] = os.path.join(root, "polygons%s" % name)
        if not os.path.exists(os.path.join(folders[name], "regions.json")):
            _photos.write_photos(folders[name], count, polygons, seed=seed)
    print("data: %s (1920x1080 JPEGs); each figure from a fresh process, median of %d rounds"
          % (root, args.rounds))

    print("\n== seconds per image, one thread, %d passes ==" % args.passes)
    print("%-22s %12s %12s %12s %12s %8s %8s" % ("data set", "MP 1st", "MP all", "ours 1st",
                                                  "ours all", "x 1st", "x all"))
    for name, count in (("20", args.images), ("100", args.crowded_images)):
        mp_runs, our_runs = [], []
        for _ in range(args.rounds):
            mp_runs.append(run_child("matterport", folders[name], args.passes))
            our_runs.append(run_child("mrcnn", folders[name], args.passes))
        mp_first = statistics.median(r[0] for r in mp_runs)
        mp_all = statistics.median(sum(r) for r in mp_runs)
        first = statistics.median(r[0] for r in our_runs)
        total = statistics.median(sum(r) for r in our_runs)
        print("%-22s %12.3f %12.3f %12.3f %12.3f %8.2f %8.2f" % (
            "%d photos, %s polygons" % (count, name), mp_first, mp_all, first, total,
            mp_first / first, mp_all / total))

    print("\n== milliseconds per image of each step, first pass, 20 polygons ==")
    for step, ms in run_child("stages", folders["20"], 1).items():
        print("%-28s %7.1f" % (step, ms))

    print("\n== images/s through Keras's PyDataset enqueuer, cache off, 2 passes (20 polygons) ==")
    for mode in ("threads", "fork"):
        rates = {w: statistics.median(run_child("rate", folders["20"], 2, w, mode)
                                      for _ in range(args.rounds)) for w in (1, 2)}
        for w in (1, 2):
            print("%-8s workers %d: %6.2f images/s" % (mode, w, rates[w]))
        print("%-8s 2 workers / 1: %.2f" % (mode, rates[2] / rates[1]))

    print("\n== peak traced memory preparing one photo (MB) ==")
    for name in ("mem100", "mem300"):
        (mp_total, mp_extra), (total, extra) = run_child("memory", folders[name], 1)
        print("%s instances: Matterport-equivalent %7.0f total, %7.0f extra | mrcnn %7.0f "
              "total, %7.0f extra" % (name[3:], mp_total, mp_extra, total, extra))


if __name__ == "__main__":
    main()
