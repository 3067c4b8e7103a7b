"""SavedModel export: the exported graph serves raw images in a process without mrcnn, and gives
detect()'s results."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import WITHOUT_MRCNN
from mrcnn.ops.boxes_np import compute_overlaps_masks

SIZES = [(100, 150), (300, 200), (128, 128)]

# Runs in a fresh interpreter in which ``import mrcnn`` fails.
SERVER = WITHOUT_MRCNN + textwrap.dedent("""
    model = tf.saved_model.load(sys.argv[1])
    serve = model.signatures["serving_default"]
    images = np.load(sys.argv[2])
    out = {}
    for i in range(len(images.files)):
        result = serve(image=tf.constant(images["image%d" % i]))
        for key, value in result.items():
            out["%s%d" % (key, i)] = value.numpy()
    meta = model.signatures["metadata"]()
    out["class_names"] = meta["class_names"].numpy().astype(str)
    out["config"] = np.array(meta["config"].numpy().decode())
    np.savez(sys.argv[3], **out)
""")


@pytest.fixture(scope="module")
def exported(tiny_inference_model, tmp_path_factory):
    from mrcnn.export import export_saved_model
    path = str(tmp_path_factory.mktemp("export") / "model")
    export_saved_model(tiny_inference_model, path, ["BG", "circle", "square", "triangle"])
    return path


def test_saved_model_serves_raw_images_without_mrcnn(tiny_inference_model, exported, tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for size in SIZES]
    np.savez(tmp_path / "images.npz", **{"image%d" % i: im for i, im in enumerate(images)})
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    env = dict(os.environ, PYTHONPATH="")   # nothing of the repository on the path
    proc = subprocess.run([sys.executable, str(script), exported, str(tmp_path / "images.npz"),
                           str(tmp_path / "out.npz")], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert list(out["class_names"]) == ["BG", "circle", "square", "triangle"]
    assert json.loads(str(out["config"]))["NUM_CLASSES"] == 4

    for i, image in enumerate(images):
        want = tiny_inference_model.detect([image])[0]
        rois, class_ids = out["rois%d" % i], out["class_ids%d" % i]
        scores, masks = out["scores%d" % i], out["masks%d" % i]
        assert rois.dtype == np.int32 and class_ids.dtype == np.int32
        assert scores.dtype == np.float32 and masks.dtype == bool
        assert masks.shape == image.shape[:2] + (len(want["scores"]),)
        assert len(want["scores"]) > 0                   # the test must compare something
        np.testing.assert_array_equal(class_ids, want["class_ids"])
        np.testing.assert_allclose(rois, want["rois"], atol=1)
        np.testing.assert_allclose(scores, want["scores"], atol=1e-4)
        ious = np.diag(compute_overlaps_masks(masks, want["masks"]))
        empty = (masks.sum((0, 1)) == 0) & (want["masks"].sum((0, 1)) == 0)
        assert np.all((ious >= 0.99) | empty), ious


def test_in_graph_molding_equals_mold_inputs(tiny_inference_model):
    import tensorflow as tf
    from mrcnn.export import mold_image_tf
    rng = np.random.default_rng(1)
    for size in SIZES + [(37, 500), (1, 1)]:
        image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        molded, meta, window = mold_image_tf(tf.constant(image), tiny_inference_model.config)
        want_molded, want_meta, want_window = tiny_inference_model.mold_inputs([image])
        np.testing.assert_array_equal(molded.numpy(), want_molded[0])
        np.testing.assert_array_equal(meta.numpy(), want_meta[0])
        np.testing.assert_array_equal(window.numpy(), want_window[0])


@pytest.mark.parametrize("mode, kwargs", [("pad64", dict(IMAGE_MIN_DIM=64)),
                                          ("none", dict()),
                                          ("square", dict(IMAGE_MIN_DIM=100, IMAGE_MIN_SCALE=2.0))])
def test_in_graph_molding_other_modes(mode, kwargs):
    import tensorflow as tf
    from mrcnn import model as modellib
    from mrcnn.config import Config
    from mrcnn.export import mold_image_tf

    cfg = type("Cfg", (Config,), dict(NAME="m", IMAGE_RESIZE_MODE=mode, IMAGE_MAX_DIM=256,
                                      GPU_COUNT=1, IMAGES_PER_GPU=1, **kwargs))()
    facade = modellib.MaskRCNN.__new__(modellib.MaskRCNN)
    facade.config = cfg
    rng = np.random.default_rng(2)
    for size in [(70, 90), (128, 64), (200, 130)]:
        image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        molded, meta, window = mold_image_tf(tf.constant(image), cfg)
        want_molded, want_meta, want_window = facade.mold_inputs([image])
        np.testing.assert_array_equal(molded.numpy(), want_molded[0])
        np.testing.assert_array_equal(meta.numpy(), want_meta[0])
        np.testing.assert_array_equal(window.numpy(), want_window[0])


def test_in_graph_paste_equals_paste_masks():
    import tensorflow as tf
    from mrcnn.image import paste_masks
    from mrcnn.ops.resample_tf import paste_mask_tf, resize_image_uint8_tf
    from mrcnn.ops.resample_np import sk_resize_linear

    rng = np.random.default_rng(3)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(10, 120, 2))
        mask = (1 / (1 + np.exp(-rng.normal(0, 3, (28, 28))))).astype(np.float32)
        y1, x1 = int(rng.integers(-5, h)), int(rng.integers(-5, w))
        box = np.array([y1, x1, y1 + rng.integers(0, 90), x1 + rng.integers(0, 90)], np.int32)
        got = paste_mask_tf(tf.constant(mask), tf.constant(box), h, w).numpy()
        np.testing.assert_array_equal(got, paste_masks(mask[None], box[None], (h, w))[..., 0])
    for _ in range(10):
        h, w, oh, ow = (int(v) for v in rng.integers(3, 200, 4))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(
            resize_image_uint8_tf(tf.constant(image), oh, ow).numpy(),
            sk_resize_linear(image, oh, ow, preserve_range=True).astype(np.uint8))


def test_export_rejects_bad_input(tiny_inference_model, tmp_path):
    from mrcnn.export import export_saved_model
    with pytest.raises(ValueError, match="NUM_CLASSES = 4"):
        export_saved_model(tiny_inference_model, str(tmp_path / "m"), ["BG", "one"])
    assert not os.path.exists(tmp_path / "m")


def test_unmolding_without_detections(tiny_inference_model):
    """An image where nothing is found: empty results of the right shapes, as detect() gives."""
    import tensorflow as tf
    from mrcnn.export import unmold_detections_tf
    detections = tf.zeros([10, 6], tf.float32)
    masks = tf.zeros([10, 28, 28], tf.float32)
    rois, class_ids, scores, full = unmold_detections_tf(
        detections, masks, tf.constant([50, 70]), tf.constant([128, 128]),
        tf.constant([0, 0, 91, 128]))
    want = tiny_inference_model.unmold_detections(np.zeros((10, 6), np.float32),
                                                  np.zeros((10, 28, 28), np.float32),
                                                  (50, 70, 3), (128, 128, 3), (0, 0, 91, 128))
    for got, expected in zip((rois, class_ids, scores, full), want):
        assert got.numpy().shape == expected.shape
    assert full.dtype == tf.bool


def test_export_keeps_a_directory_that_is_not_a_saved_model(tiny_inference_model, tmp_path):
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exported exists and is not a SavedModel"):
        tiny_inference_model.export(str(tmp_path / "exported"))
    assert (tmp_path / "exported" / "notes.txt").read_text() == "mine"


def test_model_export_method(tiny_inference_model, tmp_path):
    """``MaskRCNN.export(path)`` writes the SavedModel of `export_saved_model`, with the class
    names of ``config.CLASS_NAMES`` when none are passed; it serves detect()'s detections."""
    import tensorflow as tf

    model, names = tiny_inference_model, ("BG", "circle", "square", "triangle")
    model.config.CLASS_NAMES = names
    try:
        path = str(tmp_path / "model")
        assert model.export(path) == path
    finally:
        model.config.CLASS_NAMES = None
    with open(os.path.join(path, "assets.extra", "mrcnn.json")) as f:
        assert json.load(f)["class_names"] == list(names)
    image = np.random.default_rng(3).integers(0, 255, (96, 120, 3), dtype=np.uint8)
    served = tf.saved_model.load(path).signatures["serving_default"](image=tf.constant(image))
    want = model.detect([image])[0]
    np.testing.assert_array_equal(served["class_ids"].numpy(), want["class_ids"])
    np.testing.assert_allclose(served["rois"].numpy(), want["rois"], atol=1)
    # Exporting again replaces the SavedModel.
    assert model.export(path, class_names=["BG", "a", "b", "c"]) == path
    with open(os.path.join(path, "assets.extra", "mrcnn.json")) as f:
        assert json.load(f)["class_names"] == ["BG", "a", "b", "c"]
