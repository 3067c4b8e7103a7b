"""Shared test fixtures: tiny configs (128 px, ResNet-18) and prebuilt models."""

import copy
import datetime
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
#: The repository: tests marked ``repository`` read its files beyond tests/ (samples/,
#: notebooks/, README.md, constraints/, pyproject.toml). From a clone, its mrcnn/ is importable
#: without installing; .ci/run's wheel leg runs the suite in a copy without mrcnn/, so that the
#: installed wheel is what the tests import.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mrcnn.config import Config  # noqa: E402

#: The start of a script run in a fresh interpreter where ``import mrcnn`` must fail (what an
#: exported model is loaded in); it checks that it does.
WITHOUT_MRCNN = """\
import sys
sys.modules["mrcnn"] = None
import numpy as np
import tensorflow as tf
try:
    import mrcnn  # noqa: F401
    raise SystemExit("mrcnn was importable")
except ImportError:
    pass
"""


def pytest_configure(config):
    """With MRCNN_TEST_INSTALLED=1 (.ci/run's wheel leg), refuse to run unless ``mrcnn`` is
    imported from an installed copy, not from a source tree beside these tests."""
    if os.environ.get("MRCNN_TEST_INSTALLED") == "1":
        import mrcnn
        where = os.path.dirname(os.path.abspath(mrcnn.__file__))
        if os.path.commonpath([where, REPO]) == REPO or "site-packages" not in where:
            raise pytest.UsageError("MRCNN_TEST_INSTALLED=1, but mrcnn is imported from %s, "
                                    "not from an installed wheel" % where)


class TinyConfig(Config):
    """A configuration small enough for CPU tests: 128x128 images, ResNet-18, narrow heads."""

    NAME = "tiny"
    BACKBONE = "resnet18"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 3
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    PRE_NMS_LIMIT = 600
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 50
    TRAIN_ROIS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    DETECTION_MAX_INSTANCES = 10
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1


class OverfitConfig(TinyConfig):
    """`overfit_run`'s training: one shapes scene at four sizes, learned by heart."""
    NAME = "overfit"
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 25
    # Two batches of two: every validation pass sees all four images, so the best checkpoint
    # (find_best) is the best on all of them, not on a random pair (with one step, a run now and
    # then kept an epoch that missed an object on the largest canvas).
    VALIDATION_STEPS = 2
    LEARNING_RATE = 0.02
    WARMUP_STEPS = 20
    TRAIN_BN = True  # from scratch: random-init statistics are useless (samples/shapes.py)
    DETECTION_MIN_CONFIDENCE = 0.5
    RPN_NMS_THRESHOLD = 0.7


class OverfitInference(OverfitConfig):
    IMAGES_PER_GPU = 1


OVERFIT_EPOCHS = 10


def _overfit_train(dataset, directory):
    """Train the overfit model on ``dataset`` into ``directory``; returns (best weights path,
    history dict)."""
    import keras
    from mrcnn import model as modellib
    from mrcnn.training.trainer import train

    keras.utils.set_random_seed(3)
    config = OverfitConfig()
    model = modellib.MaskRCNN("training", config, str(directory))
    # MaskRCNN.train with a fixed seed of the batches' order and sampling too: the same data in
    # every run (TensorFlow's threaded reductions still vary the last bits).
    history = train(model, dataset, dataset, config.LEARNING_RATE, OVERFIT_EPOCHS, "all", seed=3)
    return model.find_best(), {k: [float(v) for v in vs] for k, vs in history.history.items()}


#: The canvases of `_overfit_dataset`: (height, width, top, left) of the shapes image in each.
OVERFIT_CANVASES = ((160, 144, 12, 8), (200, 176, 20, 8), (256, 192, 60, 30))


def _overfit_dataset():
    """One generated 128 px shapes image (three shapes) and the same image on larger canvases
    of its own background colour (`OVERFIT_CANVASES`): four sizes of one scene.

    Trained on the 128 px image alone, the model fell apart on anything else: a larger
    background or a shift gave no detection or a dozen spurious ones, depending on the run,
    and the tests that compare inference paths on other sizes compared noise. With the
    canvases in training, every size the tests use is one the model has learned.
    """
    from mrcnn.datasets.synthetic import SHAPE_CLASSES, make_shapes_image
    from mrcnn.utils import Dataset

    class Canvases(Dataset):
        def load_image(self, image_id):
            return self._scene(image_id)[0]

        def load_mask(self, image_id):
            _, masks, ids = self._scene(image_id)
            return masks, np.array([self.map_source_class_id("shapes.%d" % c) for c in ids],
                                   np.int32)

        def _scene(self, image_id):
            image, masks, ids, _ = make_shapes_image(128, 128, np.random.default_rng([7, 0]), 3)
            canvas = self.image_info[image_id]["canvas"]
            if canvas is None:
                return image, masks, ids
            h, w, y, x = canvas
            big = np.empty((h, w, 3), np.uint8)
            big[:] = image[0, 0]  # the background colour: no shape touches the border
            big[y:y + 128, x:x + 128] = image
            big_masks = np.zeros((h, w, masks.shape[-1]), bool)
            big_masks[y:y + 128, x:x + 128] = masks
            return big, big_masks, ids

    dataset = Canvases()
    for i, name in enumerate(SHAPE_CLASSES):
        dataset.add_class("shapes", i + 1, name)
    for i, canvas in enumerate((None,) + OVERFIT_CANVASES):
        h, w = (128, 128) if canvas is None else canvas[:2]
        dataset.add_image("shapes", image_id=i, path=None, height=h, width=w, canvas=canvas)
    dataset.prepare()
    return dataset


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory):
    """A tiny model trained (all layers, OVERFIT_EPOCHS) on `_overfit_dataset` (one shapes
    scene at four image sizes): a model with real detections, for tests that compare inference
    paths. About a minute, once
    per session. Returns a namespace: dataset, history (``.history``: {metric: [per epoch]}),
    weights (the best checkpoint).

    Under pytest-xdist the workers share one training: the first to need it trains into the
    session's shared temporary directory while the others wait for its result file (xdist's
    own grouping cannot pin these tests to one worker with pytest 9.2, pytest-xdist#1386).
    """
    dataset = _overfit_dataset()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        weights, history = _shared_overfit_train(dataset, tmp_path_factory)
    else:
        weights, history = _overfit_train(dataset, tmp_path_factory.mktemp("overfit"))
    return types.SimpleNamespace(dataset=dataset, weights=weights,
                                 history=types.SimpleNamespace(history=history))


def _shared_overfit_train(dataset, tmp_path_factory):
    """``_overfit_train`` once for all xdist workers: the first trains into the session's
    shared temporary directory, the others wait for its result file."""
    import json
    import time

    shared = tmp_path_factory.getbasetemp().parent / "overfit_run"
    shared.mkdir(exist_ok=True)
    result, failed = shared / "result.json", shared / "failed.txt"
    try:
        os.close(os.open(shared / "owner.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        owner = True
    except FileExistsError:
        owner = False
    if owner:
        try:
            weights, history = _overfit_train(dataset, shared / "logs")
        except BaseException as err:
            failed.write_text("%s: %s" % (type(err).__name__, err))
            raise
        partial = shared / "result.json.partial"
        partial.write_text(json.dumps({"weights": weights, "history": history}))
        os.replace(partial, result)  # readers never see half a file
    deadline = time.monotonic() + 1800
    while not result.exists():
        if failed.exists():
            pytest.fail("overfit_run failed in another worker: " + failed.read_text())
        if time.monotonic() > deadline:
            pytest.fail("overfit_run: no result from the training worker in %s" % shared)
        time.sleep(1)
    data = json.loads(result.read_text())
    return data["weights"], data["history"]

@pytest.fixture
def tiny_config():
    return TinyConfig()


@pytest.fixture(scope="session")
def tiny_inference_model(tmp_path_factory):
    """One inference model shared by read-only tests (building costs a few seconds)."""
    import keras
    from mrcnn import model as modellib

    class Cfg(TinyConfig):
        DETECTION_MIN_CONFIDENCE = 0.0  # an untrained model must still return detections

    keras.utils.set_random_seed(1)
    return modellib.MaskRCNN("inference", Cfg(),
                             model_dir=str(tmp_path_factory.mktemp("logs")))


def assert_same_detections(want, got, box_pixels, score_atol, min_mask_iou):
    """Two inference paths' detect() results (lists of per-image dicts) hold the same objects
    in the same order: equal class ids, boxes within ``box_pixels``, scores within
    ``score_atol``, each mask's IoU with its twin at least ``min_mask_iou``. Returns the number
    of detections compared."""
    matched = 0
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(b["class_ids"], a["class_ids"])
        if not len(a["class_ids"]):
            continue
        assert np.abs(b["rois"] - a["rois"]).max() <= box_pixels
        np.testing.assert_allclose(b["scores"], a["scores"], atol=score_atol)
        ious = np.diag(mask_agreement(b["masks"], a["masks"]))
        assert ious.min() >= min_mask_iou, ious
        matched += len(ious)
    return matched


def soft_mask_gaps(predict_a, predict_b, molded, metas):
    """Two inference paths' raw outputs on one molded image, paired by class and box.

    predict_a, predict_b: ``(molded [1, h, w, 3], metas [1, META]) -> (detections [D, 6]
    (normalized y1, x1, y2, x2, class id, score), masks [D, mh, mw] float)``.
    Returns one (gap, flips, unexplained) per pair: the largest difference between the two soft
    masks; how many pixels differ once both are pasted into the box at molded size and
    thresholded at 0.5; and how many of those have side a's interpolated value farther than
    ``gap`` from 0.5. Linear interpolation moves no value by more than the largest difference of
    its inputs, so float noise alone leaves ``unexplained`` at 0: where a mask is flat near 0.5,
    noise flips pixels and lowers the IoU of the thresholded masks, and this tells it from an
    error.
    """
    from mrcnn.ops.boxes_np import denorm_boxes
    from mrcnn.ops.resample_np import resize_threshold, sk_resize_linear

    da, ma = predict_a(molded, metas)
    db, mb = predict_b(molded, metas)
    out = []
    for i in np.nonzero(da[:, 4] > 0)[0]:
        same = [j for j in np.nonzero(db[:, 4] == da[i, 4])[0]
                if np.abs(db[j, :4] - da[i, :4]).max() <= 1e-4]
        if not same:
            continue  # found by one side only: for the detect()-level check
        j = same[0]
        gap = float(np.abs(ma[i] - mb[j]).max())
        y1, x1, y2, x2 = (int(v) for v in denorm_boxes(da[i, :4], molded.shape[1:3]))
        if y2 <= y1 or x2 <= x1:
            continue
        flips = (resize_threshold(ma[i], y2 - y1, x2 - x1, "ge_half")
                 != resize_threshold(mb[j], y2 - y1, x2 - x1, "ge_half"))
        near = np.abs(sk_resize_linear(ma[i], y2 - y1, x2 - x1) - 0.5) <= gap + 1e-6
        out.append((gap, int(flips.sum()), int((flips & ~near).sum())))
    return out


def mask_agreement(masks1, masks2):
    """IoU of every pair of masks ([H, W, N1], [H, W, N2] -> [N1, N2]), where two empty masks
    agree fully (1.0; `compute_overlaps_masks` gives them 0): what tests comparing two inference
    paths need, since a weakly trained mask head can leave a detection's mask empty on both."""
    from mrcnn.ops.boxes_np import compute_overlaps_masks

    ious = compute_overlaps_masks(masks1, masks2)
    empty1 = ~np.asarray(masks1).any(axis=(0, 1))
    empty2 = ~np.asarray(masks2).any(axis=(0, 1))
    ious[empty1[:, None] & empty2[None, :]] = 1.0
    return ious


def random_boxes(rng, n, min_size=0.05):
    """n random normalized boxes [n, 4] with positive size."""
    y = np.sort(rng.uniform(0, 1, size=(n, 2)), axis=1)
    x = np.sort(rng.uniform(0, 1, size=(n, 2)), axis=1)
    y[:, 1] = np.maximum(y[:, 1], np.minimum(y[:, 0] + min_size, 1.0))
    x[:, 1] = np.maximum(x[:, 1], np.minimum(x[:, 0] + min_size, 1.0))
    return np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1).astype(np.float32)


def freeze_clock(monkeypatch, *when):
    """Make the facade's clock read ``datetime(*when)``: runs started 'in the same minute'."""
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(*when)

    from mrcnn.model import core

    monkeypatch.setattr(core, "datetime",
                        types.SimpleNamespace(datetime=Frozen, timedelta=datetime.timedelta))


def new_facade(model, model_dir):
    """Another MaskRCNN over ``model``'s Keras model, as if just built for ``model_dir``."""
    other = copy.copy(model)
    other.model_dir = str(model_dir)
    other._predict_fn = None
    other.set_log_dir()
    return other
