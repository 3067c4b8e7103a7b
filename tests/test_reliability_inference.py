"""Long inference: many detect() calls on images of five sizes hold memory flat and trace once
per molded shape. The default run makes 100 calls; ``-m slow`` makes 1,000 (docs/reliability.md).
"""

import os

import keras
import numpy as np
import pytest

from conftest import TinyConfig
from mrcnn import model as modellib

SIZES = [(70, 90), (130, 190), (150, 60), (200, 210), (40, 250)]


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _long_inference(tmp_path, calls):
    class Cfg(TinyConfig):
        # pad64: each size molds to its own shape, so each gets (and keeps) its own trace.
        IMAGE_RESIZE_MODE = "pad64"
        IMAGE_MIN_DIM = 64
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.0

    keras.utils.set_random_seed(2)
    model = modellib.MaskRCNN("inference", Cfg(), str(tmp_path))
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for size in SIZES]
    shapes = {model.mold_inputs([im])[0].shape for im in images}
    assert len(shapes) == len(SIZES)
    for _ in range(3):                       # the first pass of each size, then allocators settle
        for image in images:
            assert len(model.detect([image])[0]["scores"]) > 0
    traces = model._predict_fn.experimental_get_tracing_count()
    assert traces <= len(SIZES)
    settled = _rss_bytes()
    for i in range(calls):
        model.detect([images[i % len(images)]])
    assert model._predict_fn.experimental_get_tracing_count() == traces
    drift = (_rss_bytes() - settled) / settled
    print("RSS %.0f MB after the first passes, drift %+.2f%% over %d detect() calls"
          % (settled / 2**20, 100 * drift, calls))
    assert drift <= 0.05, "resident memory grew by %.1f%% over %d calls" % (100 * drift, calls)


def test_long_inference_holds_memory_and_traces(tmp_path):
    _long_inference(tmp_path, 100)


@pytest.mark.slow
def test_long_inference_holds_memory_and_traces_slow(tmp_path):
    _long_inference(tmp_path, 1000)
