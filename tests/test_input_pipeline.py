"""The training input pipeline (mrcnn.training: prepared, samples, sample_cache, input_workers,
data): what the model trains on equals Matterport's ``load_image_gt`` + the dense RPN targets for
the same seed, whether an image comes from a worker thread, a worker process or the cache; the
cache keeps its bound; worker processes get the user's data set, or a clear error."""

import pickle
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matterport_reference as mp
import reference as ref
from mrcnn.config import Config, ConfigError
from mrcnn.image import resize_mask
from mrcnn.ops.boxes_np import extract_bboxes
from mrcnn.training.data import MaskRCNNSequence
from mrcnn.training.input_workers import WorkerSetupError
from mrcnn.training.prepared import instance_crops
from mrcnn.training.sample_cache import SampleCache, clear_caches
from pipeline_data import PolygonDataset


class PipelineConfig(Config):
    NAME = "pipeline"
    NUM_CLASSES = 3
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MAX_GT_INSTANCES = 6
    MINI_MASK_SHAPE = (14, 14)
    INPUT_WORKERS = "threads"


def make_config(**settings_):
    config = PipelineConfig()
    for name, value in settings_.items():
        setattr(config, name, value)
    return config.validate()


def reference_item(dataset, config, image_id, rng, anchors):
    """One image's inputs by Matterport's load_image_gt (tests/matterport_reference.py), the
    dense RPN targets (tests/reference.py) and the generator draws in the pipeline's order."""
    mask, class_ids = dataset.load_mask(image_id)
    active = np.zeros([config.NUM_CLASSES], np.int32)
    active[dataset.source_class_ids[dataset.image_info[image_id]["source"]]] = 1
    image, meta, class_ids, boxes, masks = mp.load_image_gt(
        dataset.load_image(image_id), mask, np.asarray(class_ids, np.int32), config, image_id,
        active)
    if not np.any(class_ids > 0):
        return None
    rpn_match, rpn_bbox = ref.dense_rpn_targets(anchors, class_ids, boxes,
                                                config.RPN_TRAIN_ANCHORS_PER_IMAGE,
                                                config.RPN_BBOX_STD_DEV, rng=rng)
    if len(boxes) > config.MAX_GT_INSTANCES:
        keep = rng.choice(len(boxes), config.MAX_GT_INSTANCES, replace=False)
        class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]
    g, k = config.MAX_GT_INSTANCES, len(class_ids)
    gt_masks = np.zeros(masks.shape[:2] + (g,), np.uint8)
    gt_masks[:, :, :k] = masks
    gt_ids = np.zeros([g], np.int32)
    gt_ids[:k] = class_ids
    gt_boxes = np.zeros([g, 4], np.float32)
    gt_boxes[:k] = boxes
    return {"input_image": (image.astype(np.float32) - config.MEAN_PIXEL).astype(np.float32),
            "input_image_meta": meta.astype(np.float32),
            "input_rpn_match": rpn_match[:, None], "input_rpn_bbox": rpn_bbox,
            "input_gt_class_ids": gt_ids, "input_gt_boxes": gt_boxes, "input_gt_masks": gt_masks}


def reference_batch(seq, epoch, idx):
    """Batch ``idx`` of pass ``epoch`` as a sequential loop over image positions builds it."""
    position = (epoch * seq.steps + idx) * seq.batch_size
    items = []
    while len(items) < seq.batch_size:
        rng = np.random.default_rng([seq.seed, 1 << 20, position])
        item = reference_item(seq.dataset, seq.config, seq._image_at(position), rng, seq.anchors)
        position += 1
        if item is not None:
            items.append(item)
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


def assert_batches_equal(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


SETTINGS = [
    {},  # square: shrink 230 px to 128, pad
    {"IMAGE_MIN_DIM": 200, "IMAGE_MAX_DIM": 256},  # square: grow, pad
    {"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 256,
     "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128)},
    {"USE_MINI_MASK": False},
]


@pytest.mark.parametrize("overrides", SETTINGS, ids=["square", "grow", "pad64", "full-masks"])
def test_batches_equal_matterport_inputs_over_passes(overrides):
    clear_caches()
    dataset = PolygonDataset(count=5, seed=3)
    seq = MaskRCNNSequence(dataset, make_config(**overrides), shuffle=True, seed=11, steps=3)
    for epoch in range(3):  # the first pass fills the cache, the others read it
        for idx in range(len(seq)):
            assert_batches_equal(seq.batch_at(epoch, idx), reference_batch(seq, epoch, idx))
    assert seq.cache is not None and len(seq.cache) == len(dataset.image_ids)
    assert seq.cache.hits > 0


def test_crop_mode_is_not_cached_and_equals_matterport():
    dataset = PolygonDataset(count=3, seed=4)
    config = make_config(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128)
    seq = MaskRCNNSequence(dataset, config, shuffle=False, seed=2)
    assert seq.cache is None
    for idx in range(len(seq)):
        random.seed(idx)  # the crop position comes from Python's random, as in Matterport
        got = seq.batch_at(0, idx)
        random.seed(idx)
        assert_batches_equal(got, reference_batch(seq, 0, idx))


@pytest.mark.parametrize("mask_dtype", [bool, np.uint8, np.float32])
def test_mask_dtypes_give_the_same_inputs(mask_dtype):
    clear_caches()
    dataset = PolygonDataset(count=3, seed=5, mask_dtype=mask_dtype)
    seq = MaskRCNNSequence(dataset, make_config(), shuffle=False, seed=0)
    assert_batches_equal(seq.batch_at(0, 0), reference_batch(seq, 0, 0))


def test_worker_processes_give_the_threads_batches():
    dataset = PolygonDataset(count=6, seed=6)
    clear_caches()
    threads = MaskRCNNSequence(dataset, make_config(), seed=9, steps=3, workers=2)
    want = [threads.batch_at(e, i) for e in range(2) for i in range(3)]
    clear_caches()
    procs = MaskRCNNSequence(dataset, make_config(INPUT_WORKERS="fork"), seed=9, steps=3,
                             workers=2)
    try:
        got = [procs.batch_at(e, i) for e in range(2) for i in range(3)]
    finally:
        procs.close()
    for g, w in zip(got, want):
        assert_batches_equal(g, w)
    # The parent kept what the processes prepared: the second pass came from its cache.
    assert len(procs.cache) == len(dataset.image_ids) and procs.cache.hits >= 5


def test_spawned_worker_receives_a_user_defined_dataset():
    # spawn pickles the data set to a fresh interpreter, which imports its class's module.
    dataset = PolygonDataset(count=3, seed=7)
    clear_caches()
    want = MaskRCNNSequence(dataset, make_config(TRAIN_CACHE_MB=0), seed=1).batch_at(0, 0)
    seq = MaskRCNNSequence(dataset, make_config(INPUT_WORKERS="spawn", TRAIN_CACHE_MB=0),
                           seed=1, workers=1)
    try:
        assert_batches_equal(seq.batch_at(0, 0), want)
    finally:
        seq.close()


class UnpicklableDataset(PolygonDataset):
    def __init__(self):
        super().__init__(count=2)
        self.reader = lambda path: path  # a lambda cannot be pickled


def test_unpicklable_dataset_names_itself_and_the_thread_fallback():
    with pytest.raises(WorkerSetupError) as info:
        MaskRCNNSequence(UnpicklableDataset(), make_config(INPUT_WORKERS="spawn"), workers=2,
                         name="training")
    message = str(info.value)
    assert "training data set" in message and "UnpicklableDataset" in message
    assert 'INPUT_WORKERS = "threads"' in message
    # Threads need no pickling, and fork inherits the data set: both work.
    for mode in ("threads", "fork"):
        seq = MaskRCNNSequence(UnpicklableDataset(), make_config(INPUT_WORKERS=mode), workers=2)
        try:
            assert seq.batch_at(0, 0)["input_image"].shape == (2, 128, 128, 3)
        finally:
            seq.close()


def test_sequence_pickles_without_its_workers():
    seq = MaskRCNNSequence(PolygonDataset(count=2), make_config(INPUT_WORKERS="fork"), workers=2)
    seq.batch_at(0, 0)
    copy = pickle.loads(pickle.dumps(seq))
    seq.close()
    assert_batches_equal(copy.batch_at(0, 0), seq.batch_at(0, 0))
    copy.close()
    seq.close()


# ---------------------------------------------------------------------------- the cache
def test_cache_keeps_within_its_bound_and_returns_what_was_stored():
    cache = SampleCache(max_bytes=1000)
    a = {"x": np.arange(100, dtype=np.int32)}  # 400 bytes
    b = {"x": np.arange(100, dtype=np.int32), "y": np.zeros(50, np.int32)}  # 600 bytes
    c = {"x": np.ones(2, np.int8)}
    assert cache.put("a", a) and cache.put("b", b)
    assert not cache.put("c", c)  # 1002 bytes: over the bound, not kept
    assert cache.nbytes == 1000 and "c" not in cache
    got = cache.get("a")
    assert got is a and not got["x"].flags.writeable  # frozen: later epochs see the same arrays
    assert cache.get("c") is None and (cache.hits, cache.misses) == (1, 1)


def test_sequence_cache_respects_the_setting_and_still_gives_the_same_batches():
    dataset = PolygonDataset(count=6, seed=8)
    clear_caches()
    unbounded = MaskRCNNSequence(dataset, make_config(), seed=4, steps=3)
    one_image = sum(len(np.asarray(v).tobytes()) for v in unbounded.sample(0).values())
    clear_caches()
    bound_mb = 2.5 * one_image / 2 ** 20  # room for two images' samples
    bounded = MaskRCNNSequence(dataset, make_config(TRAIN_CACHE_MB=bound_mb), seed=4, steps=3)
    for epoch in range(2):
        for idx in range(3):
            assert_batches_equal(bounded.batch_at(epoch, idx), reference_batch(bounded, epoch, idx))
    assert bounded.cache.nbytes <= bound_mb * 2 ** 20 and 1 <= len(bounded.cache) < 6
    clear_caches()
    off = MaskRCNNSequence(dataset, make_config(TRAIN_CACHE_MB=0), seed=4, steps=3)
    assert off.cache is None
    assert_batches_equal(off.batch_at(0, 0), reference_batch(off, 0, 0))


def test_augmented_images_cache_the_image_before_augmentation():
    A = pytest.importorskip("albumentations")
    dataset = PolygonDataset(count=3, seed=9)
    clear_caches()
    flip = A.HorizontalFlip(p=1.0)
    plain = MaskRCNNSequence(dataset, make_config(TRAIN_CACHE_MB=0), seed=3, augmentation=flip)
    cached = MaskRCNNSequence(dataset, make_config(), seed=3, augmentation=flip)
    for epoch in range(2):
        for idx in range(len(plain)):
            assert_batches_equal(cached.batch_at(epoch, idx), plain.batch_at(epoch, idx))
    kinds = {key[1] for key in cached.cache._entries}
    assert kinds == {"prepared"}


def test_config_checks_the_new_settings():
    for name, value in (("INPUT_WORKERS", "processes"), ("TRAIN_CACHE_MB", -1),
                        ("TRAIN_CACHE_MB", "lots")):
        config = PipelineConfig()
        setattr(config, name, value)
        with pytest.raises(ConfigError, match=name):
            config.validate()


# ---------------------------------------------------------------------------- instance crops
@st.composite
def masks_and_resizes(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    n = draw(st.integers(0, 5))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w, n), bool)
    for i in range(n):
        y, x = rng.integers(0, h), rng.integers(0, w)
        mask[y:y + rng.integers(1, h + 1), x:x + rng.integers(0, 3) + 1, i] = True
        mask[:, :, i] &= rng.random((h, w)) < draw(st.sampled_from([0.3, 1.0]))
    scale = draw(st.sampled_from([1, 0.37, 0.5, 0.9, 1.7, 2.5]))
    out_h, out_w = round(h * scale), round(w * scale)
    if out_h < 1 or out_w < 1:
        scale = 1
        out_h, out_w = h, w
    mode = draw(st.sampled_from(["pad", "crop"]))
    if mode == "pad":
        top, left = draw(st.integers(0, 6)), draw(st.integers(0, 6))
        padding = [(top, draw(st.integers(0, 6))), (left, draw(st.integers(0, 6))), (0, 0)]
        crop = None
    else:
        ch, cw = draw(st.integers(1, out_h)), draw(st.integers(1, out_w))
        crop = (draw(st.integers(0, out_h - ch)), draw(st.integers(0, out_w - cw)), ch, cw)
        padding = [(0, 0), (0, 0), (0, 0)]
    return mask, scale, padding, crop


@settings(max_examples=150, deadline=None)
@given(masks_and_resizes())
def test_instance_crops_equal_the_resized_masks(case):
    mask, scale, padding, crop = case
    dense = resize_mask(mask, scale, padding, crop)
    keep = dense.any(axis=(0, 1))
    boxes = extract_bboxes(dense[:, :, keep])
    got_keep, got_boxes, crops = instance_crops(mask, scale, padding, crop)
    np.testing.assert_array_equal(got_keep, keep)
    np.testing.assert_array_equal(got_boxes, boxes)
    for (y1, x1, y2, x2), crop_mask, i in zip(boxes, crops, np.flatnonzero(keep)):
        np.testing.assert_array_equal(crop_mask, dense[y1:y2, x1:x2, i])


ORPHAN_CHILD = """
import os, sys, time
sys.path[:0] = sys.argv[1:]
import test_input_pipeline as t
from mrcnn.training.data import MaskRCNNSequence
seq = MaskRCNNSequence(t.PolygonDataset(count=4), t.make_config(INPUT_WORKERS="fork"), workers=2)
seq.batch_at(0, 0)
print(" ".join(str(p) for p in seq.processes._pool._processes), flush=True)
time.sleep(600)
"""


def test_worker_processes_leave_when_training_is_killed():
    # A killed training process (SIGKILL, a notebook kernel restart) must not leave its input
    # workers behind, holding memory and the pipes it inherited.
    import os
    import signal
    import subprocess
    import sys
    import time
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_CHILD, here] + sys.path,
                            stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(pids) == 2

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with open("/proc/%d/stat" % pid) as f:  # a zombie waiting for init to reap it is gone
            return f.read().split(") ")[-1][0] != "Z"

    deadline = time.monotonic() + 20
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)


def test_instance_crops_where_scipy_reads_past_the_last_row():
    # 29 rows zoomed by 0.9 to 26: SciPy's nearest-neighbour rounding reads row 29, outside the
    # mask, for the last output row (its cval, 0), so the resized instance ends a row earlier.
    from mrcnn.ops import resample_np
    assert resample_np.zoom_nearest_indices(29, 26)[-1] == -1
    mask = np.zeros((29, 4, 1), bool)
    mask[2:, :, 0] = True
    dense = resize_mask(mask, 0.9, [(1, 2), (0, 0), (0, 0)])
    keep, boxes, crops = instance_crops(mask, 0.9, [(1, 2), (0, 0), (0, 0)])
    np.testing.assert_array_equal(boxes, extract_bboxes(dense))
    y1, x1, y2, x2 = boxes[0]
    np.testing.assert_array_equal(crops[0], dense[y1:y2, x1:x2, 0])


# ---------------------------------------------------------------------------- worker processes
def test_each_worker_process_draws_its_own_augmentations():
    # Forked (or unpickled) workers start with the same generator states; each must reseed, or
    # all workers would draw the same augmentations in step.
    import copy

    from mrcnn.training import input_workers
    from mrcnn.training.samples import SamplePreparer
    A = pytest.importorskip("albumentations")
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)

    def draws(preparer):
        return [bool((preparer.augmentation(image=image)["image"] != image).any())
                for _ in range(40)]

    parent = SamplePreparer(None, None, A.Compose([A.HorizontalFlip(p=0.5)]), (), None)
    twins = [copy.deepcopy(parent) for _ in range(2)]
    assert draws(copy.deepcopy(twins[0])) == draws(copy.deepcopy(twins[1]))  # without reseeding
    for twin in twins:
        input_workers._init(twin)  # what each worker process runs first
    assert draws(twins[0]) != draws(twins[1])


NOTEBOOK_SESSION = """
import sys
sys.path[:0] = sys.argv[1:]
import test_input_pipeline as t
from mrcnn.training.data import MaskRCNNSequence
from mrcnn.training.input_workers import WorkerSetupError

class NotebookDataset(t.PolygonDataset):  # defined in __main__, as in a notebook cell
    pass

try:
    MaskRCNNSequence(NotebookDataset(count=2), t.make_config(INPUT_WORKERS="spawn"), workers=2)
except WorkerSetupError as err:
    print("ERROR", err)
"""


def test_spawn_refuses_a_dataset_class_defined_in_a_notebook():
    # pickle.dumps accepts such a class; a spawned process cannot import it and would never
    # answer. The error comes before any process starts.
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", NOTEBOOK_SESSION, here] + sys.path,
                         capture_output=True, text=True, timeout=300)
    line = [x for x in out.stdout.splitlines() if x.startswith("ERROR")]
    assert line, out.stdout + out.stderr[-2000:]
    assert "NotebookDataset" in line[0] and "__main__" in line[0]
    assert 'INPUT_WORKERS = "threads"' in line[0]


class CodedError(OSError):
    def __init__(self, path, code):  # not the (message) constructor pickle calls
        super().__init__("cannot read %s (code %d)" % (path, code))


class FailingMasks(PolygonDataset):
    def load_mask(self, image_id):
        if image_id == 1:
            raise CodedError("masks/1.png", 7)
        return super().load_mask(image_id)


def test_an_error_that_cannot_travel_back_keeps_its_message():
    # An exception the parent cannot unpickle must not read as a dead worker.
    seq = MaskRCNNSequence(FailingMasks(count=3), make_config(INPUT_WORKERS="fork"), workers=2,
                           shuffle=False, name="training")
    try:
        with pytest.raises(OSError) as info:
            seq.batch_at(0, 0)
    finally:
        seq.close()
    message = str(info.value)
    assert "CodedError: cannot read masks/1.png (code 7)" in message
    assert "id 1" in message and "training data set" in message


class ThreadBoundDataset(PolygonDataset):
    """load_mask reads what load_image left, and insists on the same thread (a handle tied to
    its thread, as sqlite3's are)."""

    def load_image(self, image_id):
        import threading
        self.loading = (image_id, threading.get_ident())
        return super().load_image(image_id)

    def load_mask(self, image_id):
        import threading
        assert self.loading == (image_id, threading.get_ident())
        return super().load_mask(image_id)


def test_a_dataset_with_its_own_load_image_keeps_the_sequential_order():
    seq = MaskRCNNSequence(ThreadBoundDataset(count=3), make_config(TRAIN_CACHE_MB=0))
    assert seq.batch_at(0, 0)["input_image"].shape == (2, 128, 128, 3)


def test_closed_sequence_makes_batches_without_new_processes():
    seq = MaskRCNNSequence(PolygonDataset(count=3), make_config(INPUT_WORKERS="fork",
                                                                TRAIN_CACHE_MB=0), workers=2)
    first = seq.batch_at(0, 0)
    assert seq.processes._pool is not None
    seq.close()
    again = seq.batch_at(0, 0)  # a batch asked for after close (training was interrupted)
    assert seq.processes._pool is None
    assert_batches_equal(again, first)
