"""Training: constant anchors, layer freezing, epochs and resume, checkpoints, random ROIs,
tf.distribute, the input pipeline, and what each epoch logs.

Building and tracing a training model costs tens of seconds on a CPU, so one module fixture
(``run``) plays a whole training story once and records what the tests then check:

1. model ``first`` trains the heads to epoch 2, then to epoch 3 (two ``train`` calls), then is
   asked for epochs 3 and 1 (nothing to do);
2. a new model ``resumed`` (random ROIs: USE_RPN_ROIS False) loads ``find_last()`` and trains
   layers "4+" for one more epoch.
"""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
import warnings

import albumentations as A
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from conftest import TinyConfig, freeze_clock, new_facade
from mrcnn import model as modellib
from mrcnn import weights as weights_io
from mrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors
from mrcnn.dataset import Dataset
from mrcnn.datasets.synthetic import SyntheticShapesDataset
from mrcnn.image import mold_image
from mrcnn.training import trainer as trainer_lib
from mrcnn.training.data import MaskRCNNSequence, load_image_gt
from mrcnn.training.losses import LOSS_NAMES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEARNING_RATE = 0.005


class TrainConfig(TinyConfig):
    STEPS_PER_EPOCH = 1
    VALIDATION_STEPS = 1
    # Batch statistics train where a BN layer is trainable, so freezing must also hold the
    # moving mean/variance of frozen layers.
    TRAIN_BN = True
    # Large enough that the decay term shows in val_loss next to the five losses.
    WEIGHT_DECAY = 1.0
    LOSS_WEIGHTS = {"rpn_class_loss": 1.0, "rpn_bbox_loss": 0.5, "mrcnn_class_loss": 2.0,
                    "mrcnn_bbox_loss": 1.0, "mrcnn_mask_loss": 1.5}


class RandomRoisConfig(TrainConfig):
    USE_RPN_ROIS = False


def shapes_dataset(count, seed):
    dataset = SyntheticShapesDataset()
    dataset.load_shapes(count, 128, 128, seed=seed, max_shapes=3)
    dataset.prepare()
    return dataset


def snapshot(maskrcnn):
    """{variable path: value} of every variable of the model (trainable or not)."""
    return {v.path: np.array(v.numpy()) for v in maskrcnn.keras_model.weights}


def owner(path):
    """Name of the layer that holds a variable (nested rpn_model layers included)."""
    return path.split("/")[0]


def changed(before, after):
    return {p for p in before if not np.array_equal(before[p], after[p])}


def checkpoints(log_dir):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(log_dir, "mask_rcnn_*.h5"))
                  if not p.endswith("_best.h5"))


def read_history_csv(log_dir):
    with open(os.path.join(log_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def datasets():
    return shapes_dataset(4, seed=1), shapes_dataset(2, seed=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory, datasets):
    train_ds, val_ds = datasets
    model_dir = str(tmp_path_factory.mktemp("logs"))
    keras.utils.set_random_seed(0)
    r = types.SimpleNamespace(model_dir=model_dir)
    first = modellib.MaskRCNN("training", TrainConfig(), model_dir)
    r.first = first
    r.anchors_before = first.keras_model.get_layer("anchors")(
        np.zeros((1, 128, 128, 3), np.float32)).numpy()
    r.w_initial = snapshot(first)

    r.h_first = first.train(train_ds, val_ds, LEARNING_RATE, epochs=2, layers="heads")
    r.epoch_after_first = first.epoch
    r.checkpoints_after_first = checkpoints(first.log_dir)
    r.w_after_first = snapshot(first)

    r.h_second = first.train(train_ds, val_ds, LEARNING_RATE, epochs=3, layers="heads")
    r.checkpoints_after_second = checkpoints(first.log_dir)
    r.history_rows_after_second = read_history_csv(first.log_dir)
    r.w_after_second = snapshot(first)

    r.noop = [first.train(train_ds, val_ds, LEARNING_RATE, epochs=e, layers="heads")
              for e in (3, 1)]
    r.checkpoints_after_noop = checkpoints(first.log_dir)
    r.history_rows_after_noop = read_history_csv(first.log_dir)
    r.w_after_noop = snapshot(first)
    r.epoch_after_noop = first.epoch

    resumed = modellib.MaskRCNN("training", RandomRoisConfig(), model_dir)
    r.resumed = resumed
    r.found_last = resumed.find_last()
    resumed.load_weights(r.found_last, by_name=True)
    r.resumed_epoch_after_load = resumed.epoch
    r.resumed_log_dir_after_load = resumed.log_dir
    r.w_resumed_loaded = snapshot(resumed)
    r.h_resumed = resumed.train(train_ds, val_ds, LEARNING_RATE, epochs=resumed.epoch + 1,
                                layers="4+")
    r.w_resumed_after = snapshot(resumed)
    r.log_dir = first.log_dir
    return r


# ------------------------------------------------------------------------------------ anchors
def test_anchors_are_graph_constants_not_variables(run):
    c = TrainConfig()
    expected = generate_pyramid_anchors(c.RPN_ANCHOR_SCALES, c.RPN_ANCHOR_RATIOS,
                                        compute_backbone_shapes(c, c.IMAGE_SHAPE),
                                        c.BACKBONE_STRIDES, c.RPN_ANCHOR_STRIDE)
    # 128 px: feature maps 32, 16, 8, 4, 2 -> (1024 + 256 + 64 + 16 + 4) * 3 ratios.
    assert expected.shape == (4092, 4)
    for maskrcnn in (run.first, run.resumed):
        model = maskrcnn.keras_model
        assert not model.get_layer("anchors").weights
        for v in model.weights:
            assert tuple(v.shape)[-2:] != (4092, 4), v.path
            assert "anchor" not in v.path.lower(), v.path
    normalized = (expected - [0, 0, 1, 1]) / 127.0  # Matterport's norm_boxes for 128 x 128
    after = run.first.keras_model.get_layer("anchors")(np.zeros((1, 128, 128, 3), np.float32))
    np.testing.assert_array_equal(after.numpy(), run.anchors_before)
    np.testing.assert_allclose(run.anchors_before[0], normalized, atol=1e-6)


# ------------------------------------------------------------------------------------ freezing
HEADS = ("mrcnn_", "rpn_", "fpn_")


def test_heads_training_changes_heads_only(run):
    backbone = {p for p in run.w_initial if not owner(p).startswith(HEADS)}
    assert any(p.endswith("moving_mean") for p in backbone)
    # Backbone kernels, BN gamma/beta and (frozen) BN moving statistics: bit-identical after
    # each train() call.
    for before, after in ((run.w_initial, run.w_after_first),
                          (run.w_after_first, run.w_after_second)):
        moved = changed(before, after)
        assert not moved & backbone, sorted(moved & backbone)[:10]
    moved = changed(run.w_initial, run.w_after_second)
    # Every head layer trains. The RPN, FPN and classifier always get a gradient from the RPN and
    # class losses; the box and mask branches only when a positive ROI was sampled.
    trainable = {v.path for v in run.first.keras_model.trainable_weights}
    head = {p for p in run.w_initial if owner(p).startswith(HEADS)
            and not p.endswith(("moving_mean", "moving_variance"))}
    assert trainable == head
    always = {p for p in head if p.endswith("/kernel")
              and owner(p).startswith(("rpn_", "fpn_", "mrcnn_class_"))}
    assert len(always) == 3 + 8 + 3
    assert always <= moved, sorted(always - moved)


def test_4plus_training_freezes_stages_1_to_3(run):
    moved = changed(run.w_resumed_loaded, run.w_resumed_after)
    frozen_prefixes = ("conv1", "bn_conv1", "res2", "bn2", "res3", "bn3")
    frozen = {p for p in run.w_resumed_loaded if owner(p).startswith(frozen_prefixes)}
    assert len(frozen) > 20
    assert not moved & frozen, sorted(moved & frozen)[:10]
    stage45_kernels = {p for p in run.w_resumed_loaded
                       if owner(p).startswith(("res4", "res5")) and p.endswith("/kernel")}
    assert len(stage45_kernels) == 10  # ResNet-18: 2 blocks x (2 convs) + 1 shortcut, per stage
    assert stage45_kernels <= moved, sorted(stage45_kernels - moved)
    # Trainable BN layers of stages 4-5 learn batch statistics (TRAIN_BN True).
    assert "bn4a_branch2a/moving_mean" in moved and "bn5b_branch2b/moving_variance" in moved
    assert "mrcnn_class_logits/kernel" in moved


# ------------------------------------------------------------------------------------ epochs
def test_epochs_count_from_the_start_across_train_calls(run):
    name = "mask_rcnn_tiny_%04d.h5"
    assert run.epoch_after_first == 2
    assert run.h_first.epoch == [0, 1] and run.h_second.epoch == [2]
    assert run.checkpoints_after_first == [name % 1, name % 2]
    assert run.checkpoints_after_second == [name % 1, name % 2, name % 3]
    # history.csv counts epochs as the checkpoint names do (Keras's CSVLogger would from 0).
    assert [row["epoch"] for row in run.history_rows_after_second] == ["1", "2", "3"]
    for n in (1, 2, 3):
        assert weights_io.read_attrs(os.path.join(run.log_dir, name % n))["epoch"] == n


def test_train_to_an_epoch_already_reached_does_nothing(run):
    assert run.noop == [None, None]
    assert run.epoch_after_noop == 3
    assert run.checkpoints_after_noop == run.checkpoints_after_second
    assert run.history_rows_after_noop == run.history_rows_after_second
    assert not changed(run.w_after_second, run.w_after_noop)


# ------------------------------------------------------------------------------------ resume
def test_resume_from_find_last_continues_the_run(run):
    name = "mask_rcnn_tiny_%04d.h5"
    assert run.found_last == os.path.join(run.log_dir, name % 3)
    assert run.resumed_epoch_after_load == 3
    assert run.resumed_log_dir_after_load == run.log_dir
    # The checkpoint restored every variable, BN statistics included.
    assert not changed(run.w_after_second, run.w_resumed_loaded)
    assert run.h_resumed.epoch == [3] and run.resumed.epoch == 4
    assert checkpoints(run.log_dir) == [name % n for n in (1, 2, 3, 4)]
    assert os.listdir(run.model_dir) == [os.path.basename(run.log_dir)]  # one run directory
    assert run.resumed.find_last() == os.path.join(run.log_dir, name % 4)


def test_best_checkpoint_is_the_lowest_val_loss(run):
    rows = read_history_csv(run.log_dir)
    val = [float(row["val_loss"]) for row in rows]
    best_epoch = int(rows[int(np.argmin(val))]["epoch"])  # history.csv's epoch is the checkpoint's
    best = run.resumed.find_best()
    assert best == os.path.join(run.log_dir, "mask_rcnn_tiny_best.h5")
    with open(os.path.join(run.log_dir, "best.json")) as f:
        record = json.load(f)
    assert record["epoch"] == best_epoch and record["metric"] == "val_loss"
    np.testing.assert_allclose(record["value"], min(val), rtol=1e-6)
    marked = weights_io.read_weights_h5(best)
    source = weights_io.read_weights_h5(
        os.path.join(run.log_dir, "mask_rcnn_tiny_%04d.h5" % best_epoch))
    assert marked.keys() == source.keys()
    for layer in marked:
        for w in marked[layer]:
            np.testing.assert_array_equal(marked[layer][w], source[layer][w])


class StopAfterFirstBatch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        self.model.stop_training = True


def test_same_minute_runs_early_stop_and_resume_from_best(run, datasets, tmp_path, monkeypatch):
    """Two runs started in the same minute keep apart; one stopped early by a callback counts
    the epochs it did; loading the newest run's best checkpoint resumes that run at its epoch.

    Reuses ``run.first``'s Keras model through new facades and restores its weights after."""
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    train_ds, val_ds = datasets
    freeze_clock(monkeypatch, 2026, 1, 2, 3, 4)
    keras_model = run.first.keras_model
    saved = keras_model.get_weights()
    try:
        # Run a started this minute: train() claimed its directory (create_log_dir) and the
        # first epoch left its files there.
        a = new_facade(run.first, tmp_path)
        a.create_log_dir()
        a_files = {"best.json": b"{}", "mask_rcnn_tiny_0001.h5": b"a's", "history.csv": b"a"}
        for name, content in a_files.items():
            with open(os.path.join(a.log_dir, name), "wb") as f:
                f.write(content)

        b = new_facade(run.first, tmp_path)
        assert b.log_dir == a.log_dir  # same minute: Matterport's name would be shared
        history = b.train(train_ds, val_ds, LEARNING_RATE, epochs=3, layers="heads",
                          custom_callbacks=[StopAfterFirstBatch()])
        assert history.epoch == [0] and b.epoch == 1  # not 3: the epochs actually done
        assert sorted(os.listdir(tmp_path)) == ["tiny20260102T0304", "tiny20260102T0305"]
        assert b.log_dir == str(tmp_path / "tiny20260102T0305")
        assert checkpoints(b.log_dir) == ["mask_rcnn_tiny_0001.h5"]
        assert [row["epoch"] for row in read_history_csv(b.log_dir)] == ["1"]
        assert os.path.isfile(os.path.join(b.log_dir, "best.json"))
        assert sorted(os.listdir(a.log_dir)) == sorted(a_files)
        for name, content in a_files.items():  # b wrote none of a's files
            assert read(os.path.join(a.log_dir, name)) == content, name

        # Matterport's second stage loads the best checkpoint, then trains on from its epoch.
        c = new_facade(run.first, tmp_path)
        assert c.find_last() == os.path.join(b.log_dir, "mask_rcnn_tiny_0001.h5")
        best = c.find_best()
        assert best == os.path.join(b.log_dir, "mask_rcnn_tiny_best.h5")
        c.load_weights(best, by_name=True)
        assert c.epoch == 1 and c.log_dir == b.log_dir
        assert c.checkpoint_path.format(epoch=2) == os.path.join(b.log_dir,
                                                                 "mask_rcnn_tiny_0002.h5")
    finally:
        keras_model.set_weights(saved)


# ------------------------------------------------------------------------------------ logging
def test_each_loss_and_its_val_counterpart_logged_per_epoch(run):
    rows = read_history_csv(run.log_dir)
    names = ("loss",) + LOSS_NAMES
    assert set(rows[0]) == {"epoch"} | set(names) | {"val_" + n for n in names}
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4"]
    history = {}
    for h in (run.h_first, run.h_second, run.h_resumed):
        for key, values in h.history.items():
            history.setdefault(key, []).extend(values)
    for key in rows[0]:
        if key != "epoch":
            np.testing.assert_allclose([float(row[key]) for row in rows], history[key],
                                       rtol=1e-6, err_msg=key)
            assert np.all(np.isfinite(history[key])), key

    def scalars(subdir):
        out = {}
        for path in glob.glob(os.path.join(run.log_dir, subdir, "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.tag.startswith("epoch_"):
                        out[(value.tag[len("epoch_"):], event.step)] = float(
                            tf.make_ndarray(value.tensor))
        return out

    train_scalars, val_scalars = scalars("train"), scalars("validation")
    for name in names:  # TensorBoard's step N is epoch N, from 1 too
        assert sorted(e for n, e in train_scalars if n == name) == [1, 2, 3, 4]
        for epoch in range(4):
            np.testing.assert_allclose(train_scalars[(name, epoch + 1)], history[name][epoch],
                                       rtol=1e-6, err_msg=name)
            np.testing.assert_allclose(val_scalars[(name, epoch + 1)],
                                       history["val_" + name][epoch], rtol=1e-6, err_msg=name)


def test_history_plot_puts_epoch_n_at_n_like_the_checkpoints(run):
    from mrcnn import visualize
    rows = read_history_csv(run.log_dir)
    fig = visualize.plot_history(os.path.join(run.log_dir, "history.csv"), metrics=["loss"])
    (line,) = [l for l in fig.axes[0].lines if l.get_label() == "val_loss"]
    assert list(line.get_xdata()) == [1, 2, 3, 4]
    np.testing.assert_allclose(line.get_ydata(), [float(r["val_loss"]) for r in rows])
    # A Keras History counts from 0: the same epochs land at the same x.
    fig = visualize.plot_history(run.h_resumed, metrics=["loss"])
    assert list(fig.axes[0].lines[0].get_xdata()) == [4]


@pytest.mark.parametrize("which", ["first", "resumed"])
def test_val_loss_is_weighted_losses_plus_matterport_weight_decay(run, which):
    # After its last epoch a model still holds the weights its validation step ran with, and
    # its trainable weights are the ones that train() selected.
    maskrcnn = getattr(run, which)
    row = read_history_csv(run.log_dir)[maskrcnn.epoch - 1]
    config = maskrcnn.config
    weighted = sum(config.LOSS_WEIGHTS[n] * float(row["val_" + n]) for n in LOSS_NAMES)
    trainable = maskrcnn.keras_model.trainable_weights
    decay = ref.weight_decay([(v.path.split("/")[-1], v.numpy()) for v in trainable],
                             config.WEIGHT_DECAY)
    tolerance = 1e-4 + 1e-5 * abs(float(row["val_loss"]))
    np.testing.assert_allclose(float(row["val_loss"]), weighted + decay, rtol=0, atol=tolerance)
    # The tolerance tells the right term from the wrong ones: decay over frozen layers too, or
    # over trainable BN gamma/beta too.
    everything = ref.weight_decay([(v.path.split("/")[-1], v.numpy())
                                   for v in maskrcnn.keras_model.weights
                                   if not v.path.endswith(("moving_mean", "moving_variance"))],
                                  config.WEIGHT_DECAY)
    with_gamma = ref.weight_decay([("w", v.numpy()) for v in trainable], config.WEIGHT_DECAY)
    assert everything - decay > 10 * tolerance and with_gamma - decay > 10 * tolerance


# ------------------------------------------------------------------------------------ random ROIs
def test_random_rois_training_runs_and_uses_the_given_rois(run, datasets):
    assert all(np.isfinite(v).all() for v in run.h_resumed.history.values())
    config = RandomRoisConfig()
    seq = MaskRCNNSequence(datasets[0], config, shuffle=False)
    batch = seq[0]
    assert batch["input_roi"].shape == (2, config.POST_NMS_ROIS_TRAINING, 4)
    # Only the ground-truth boxes as ROIs: they must come back as the sampled positives, with
    # zero deltas and the mini masks as mask targets (the ROI is the mini mask's own frame).
    batch["input_roi"][:] = 0
    counts = (batch["input_gt_class_ids"] > 0).sum(axis=1)
    for i, k in enumerate(counts):
        batch["input_roi"][i, :k] = batch["input_gt_boxes"][i, :k]
    out = run.resumed.keras_model(run.resumed.keras_model.graph_inputs(batch), training=False)
    for i, k in enumerate(counts):
        ids = out["target_class_ids"][i].numpy()
        rois = out["output_rois"][i].numpy()
        assert (ids > 0).sum() == k and not ids[k:].any()
        gt = batch["input_gt_boxes"][i, :k]
        gt_norm = (gt - [0, 0, 1, 1]) / 127.0
        for row in range(k):
            g = int(np.argmin(np.abs(gt_norm - rois[row]).sum(axis=1)))
            np.testing.assert_allclose(rois[row], gt_norm[g], atol=1e-5)
            assert ids[row] == batch["input_gt_class_ids"][i, g]
            np.testing.assert_allclose(out["target_bbox"][i, row].numpy(), 0, atol=1e-4)
            np.testing.assert_array_equal(out["target_mask"][i, row].numpy(),
                                          batch["input_gt_masks"][i, :, :, g])


def test_mask_head_on_the_positives_alone_gives_the_fixed_rows_loss_and_gradients(
        datasets, tmp_path, monkeypatch):
    """With frozen batch norm (TRAIN_BN False) the training mask head runs on the batch's
    positive ROIs only (PositiveRois); its loss and gradients must equal those of the head over
    the fixed int(T * ROI_POSITIVE_RATIO) leading rows (LeadingRois)."""
    from mrcnn.layers.misc import PositiveRois, leading_rows
    from mrcnn.model.graph import mask_roi_count
    from mrcnn.training.losses import mrcnn_mask_loss

    class FrozenBnRois(TinyConfig):
        USE_RPN_ROIS = False  # the ground-truth boxes as the only ROIs: known positives

    config = FrozenBnRois()
    keras.utils.set_random_seed(4)
    model = modellib.MaskRCNN("training", config, str(tmp_path)).keras_model
    batch = MaskRCNNSequence(datasets[0], config, shuffle=False)[0]
    batch["input_roi"][:] = 0
    counts = (batch["input_gt_class_ids"] > 0).sum(axis=1)
    for i, k in enumerate(counts):
        batch["input_roi"][i, :k] = batch["input_gt_boxes"][i, :k]
    head = [v for v in model.trainable_variables if "mrcnn_mask" in v.path]

    def loss_and_grads():
        with tf.GradientTape() as tape:
            out = model(model.graph_inputs(batch), training=True)
            loss = mrcnn_mask_loss(out["target_mask"], out["target_class_ids"], out["mrcnn_mask"])
        return int(out["mrcnn_mask"].shape[1]), float(loss), tape.gradient(loss, head)

    rows, loss, grads = loss_and_grads()
    assert rows == counts.max() < mask_roi_count(config), (rows, counts)
    monkeypatch.setattr(PositiveRois, "call",
                        lambda self, inputs: leading_rows(inputs[0], self.count))
    fixed_rows, fixed_loss, fixed_grads = loss_and_grads()
    assert fixed_rows == mask_roi_count(config)
    assert loss > 0
    np.testing.assert_allclose(loss, fixed_loss, rtol=1e-5)
    for g, f in zip(grads, fixed_grads):
        np.testing.assert_allclose(np.asarray(g), np.asarray(f), rtol=1e-4, atol=1e-6)


def test_image_without_ground_truth_gives_zero_box_and_mask_loss(run, datasets):
    from mrcnn.training.losses import compute_losses
    batch = MaskRCNNSequence(datasets[0], TrainConfig(), shuffle=False)[0]
    for key in ("input_gt_class_ids", "input_gt_boxes", "input_gt_masks"):
        batch[key][:] = 0
    out = run.first.keras_model(run.first.keras_model.graph_inputs(batch), training=False)
    assert not out["target_class_ids"].numpy().any()
    values = {k: float(v) for k, v in compute_losses(
        batch, out, batch["input_image_meta"][:, 12:]).items()}
    assert values["mrcnn_bbox_loss"] == 0.0 and values["mrcnn_mask_loss"] == 0.0
    assert all(np.isfinite(v) for v in values.values()), values


def test_random_rois_model_builds_without_input_name_warnings():
    from mrcnn.model.graph import build_graph
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs, outputs = build_graph("training", RandomRoisConfig())
        keras.Model(inputs=inputs, outputs=outputs)
    assert not [w for w in caught if "must match the names" in str(w.message)]
    assert all(key == tensor.name for key, tensor in inputs.items())


@pytest.mark.parametrize("config_class", [TrainConfig, RandomRoisConfig])
def test_every_training_input_feeds_a_layer(config_class):
    """Keras before 3.14 (Colab's 3.13 among them) refuses a functional model with an input that
    no layer takes ("`inputs` not connected to `outputs`"); later versions build it. So the check
    those versions make is made here, on whichever Keras runs the tests."""
    from mrcnn.model.graph import build_graph
    inputs, _ = build_graph("training", config_class())
    assert "input_rpn_match" not in inputs  # a batch entry for the losses, not a graph input
    for name, tensor in inputs.items():
        assert tensor._keras_history.operation._outbound_nodes, name


# ------------------------------------------------------------------------------------ checkpoints
def _fail_after(monkeypatch, datasets_written):
    """Make the HDF5 writer raise after ``datasets_written`` weight arrays."""
    original = h5py.Group.create_dataset
    count = {"n": 0}

    def create_dataset(self, *args, **kwargs):
        if count["n"] == datasets_written:
            raise OSError("disk full (simulated)")
        count["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    return count


def _same_weights(path_a, path_b):
    a, b = weights_io.read_weights_h5(path_a), weights_io.read_weights_h5(path_b)
    return a.keys() == b.keys() and all(
        np.array_equal(a[layer][w], b[layer][w]) for layer in a for w in a[layer])


def test_interrupted_checkpoint_write_keeps_the_previous_one(run, tmp_path, monkeypatch):
    log_dir = str(tmp_path / os.path.basename(run.log_dir))
    shutil.copytree(run.log_dir, log_dir)
    last = os.path.join(log_dir, "mask_rcnn_tiny_0004.h5")
    best = os.path.join(log_dir, "mask_rcnn_tiny_best.h5")
    with open(last, "rb") as f:
        last_bytes = f.read()
    with open(best, "rb") as f:
        best_bytes = f.read()
    with open(os.path.join(log_dir, "best.json")) as f:
        best_record = f.read()
    listing = sorted(os.listdir(log_dir))
    model = run.resumed.keras_model

    count = _fail_after(monkeypatch, 5)
    # 1. Overwriting an existing checkpoint.
    with pytest.raises(OSError, match="simulated"):
        weights_io.save_weights_h5(model, last, attrs={"epoch": 99})
    assert count["n"] == 5  # it failed midway, not before writing anything
    # 2. The end-of-epoch callback of train(): its new checkpoint would also be the best.
    facade = types.SimpleNamespace(
        log_dir=log_dir, epoch=4,
        checkpoint_path=os.path.join(log_dir, "mask_rcnn_tiny_{epoch:04d}.h5"),
        save_weights=lambda path, **attrs: weights_io.save_weights_h5(model, path, attrs=attrs))
    callback = trainer_lib.CheckpointCallback(facade)
    count["n"] = 0
    with pytest.raises(OSError, match="simulated"):
        callback.on_epoch_end(4, {"val_loss": -1.0})

    assert sorted(os.listdir(log_dir)) == listing  # no partial or temporary file left
    with open(last, "rb") as f:
        assert f.read() == last_bytes
    with open(best, "rb") as f:
        assert f.read() == best_bytes
    with open(os.path.join(log_dir, "best.json")) as f:
        assert f.read() == best_record
    assert weights_io.read_attrs(last)["epoch"] == 4
    probe = modellib.MaskRCNN("inference", TrainConfig(), str(tmp_path))
    report = probe.load_weights(last, by_name=True)
    assert not report.missing_in_file and probe.epoch == 4

    # Once the disk "recovers", the same callback writes epoch 5 and marks it best.
    monkeypatch.undo()
    callback.on_epoch_end(4, {"val_loss": -1.0})
    new = os.path.join(log_dir, "mask_rcnn_tiny_0005.h5")
    assert weights_io.read_attrs(new)["epoch"] == 5 and facade.epoch == 5
    assert _same_weights(best, new)
    with open(os.path.join(log_dir, "best.json")) as f:
        assert json.load(f)["epoch"] == 5


# ------------------------------------------------------------------------------------ distribute
MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]

    attempts = []

    class ImportSpy:
        # Records any attempt to import imgaug, installed or not, guarded or not.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "imgaug":
                attempts.append(name)
            return None

    sys.meta_path.insert(0, ImportSpy())
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import mrcnn.training.data, mrcnn.training.trainer
    from mrcnn import model as modellib
    from mrcnn.datasets.synthetic import SyntheticShapesDataset
    from conftest import TinyConfig
    print("IMPORTS " + json.dumps(attempts), flush=True)

    class Cfg(TinyConfig):
        STEPS_PER_EPOCH = 2  # two training steps; batch of 2 = one image per replica

    keras.utils.set_random_seed(0)
    dataset = SyntheticShapesDataset()
    dataset.load_shapes(4, 128, 128, seed=1, max_shapes=3)
    dataset.prepare()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        maskrcnn = modellib.MaskRCNN("training", Cfg(), sys.argv[3])
    model = maskrcnn.keras_model
    before = {v.path: v.numpy().copy() for v in model.weights}
    history = maskrcnn.train(dataset, None, 0.005, epochs=1, layers="all")
    after = {v.path: v.numpy() for v in model.weights}
    replicas_agree = all(
        all(np.array_equal(np.asarray(x), np.asarray(copies[0])) for x in copies)
        for copies in (strategy.experimental_local_results(v.value) for v in model.weights))
    print("RESULT " + json.dumps({
        "enclosing_strategy_used": maskrcnn.strategy is strategy,
        "replicas": strategy.num_replicas_in_sync,
        "copies": len(strategy.experimental_local_results(model.weights[0].value)),
        "steps": int(model.optimizer.iterations.numpy()),
        "history": history.history,
        "changed": sorted(p for p in before if not np.array_equal(before[p], after[p])),
        "trainable": sorted(v.path for v in model.trainable_weights),
        "replicas_agree": replicas_agree,
        "imgaug_imports": attempts,
    }), flush=True)
""")


@pytest.fixture(scope="module", autouse=True)
def mirrored_process(request, tmp_path_factory):
    """Starts the MirroredStrategy script at the start of this module when a selected test needs
    it, so it trains on the second core while this process builds and traces its own models."""
    if not any("mirrored" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    work = tmp_path_factory.mktemp("mirrored")
    (work / "mirrored.py").write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    # Output to files, not pipes: nobody reads a pipe while the script runs, and a full one
    # would block it.
    with open(work / "stdout", "w") as out, open(work / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, str(work / "mirrored.py"), REPO,
                                 os.path.join(REPO, "tests"), str(work / "logs")],
                                env=env, stdout=out, stderr=err, cwd=str(work))
    proc.work = work
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def mirrored(mirrored_process):
    """(stderr tail, {"IMPORTS": [...], "RESULT": {...}}) of the MirroredStrategy script."""
    mirrored_process.wait(timeout=540)
    stdout = (mirrored_process.work / "stdout").read_text()
    stderr = (mirrored_process.work / "stderr").read_text()
    lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1])
             for line in stdout.splitlines() if line.startswith(("IMPORTS ", "RESULT "))}
    return stderr[-4000:], lines


def test_two_steps_under_mirrored_strategy_on_two_cpus(mirrored):
    stderr, lines = mirrored
    assert "RESULT" in lines, stderr
    r = lines["RESULT"]
    assert r["enclosing_strategy_used"] and r["replicas"] == 2 and r["copies"] == 2
    assert r["steps"] == 2
    for name in ("loss",) + LOSS_NAMES:
        assert np.all(np.isfinite(r["history"][name])), (name, r["history"])
    assert {"conv1/kernel", "rpn_class_raw/kernel", "fpn_p2/kernel",
            "mrcnn_class_logits/kernel"} <= set(r["changed"])
    assert set(r["changed"]) <= set(r["trainable"])
    assert r["replicas_agree"]


def test_library_never_imports_imgaug(mirrored):
    stderr, lines = mirrored
    assert "IMPORTS" in lines, stderr
    assert lines["IMPORTS"] == []
    if "RESULT" in lines:  # nor while training
        assert lines["RESULT"]["imgaug_imports"] == []


# ------------------------------------------------------------------------------------ data
class TwoSourceDataset(Dataset):
    """Images from sources "a" and "b", each with one L-shaped instance (class 1 of its source)
    left of centre, so a horizontal flip shows in masks and boxes."""

    def __init__(self, fail=None):
        super().__init__()
        self.fail = fail or {}
        for source in ("a", "b"):
            self.add_class(source, 1, "thing")
        for i, source in enumerate(["a", "b", "a"]):
            self.add_image(source, image_id=i, path="/data/%s/img_%d.png" % (source, i))
        self.prepare()

    def image_reference(self, image_id):
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        if image_id in self.fail:
            raise self.fail[image_id]
        rng = np.random.default_rng(image_id)
        return rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8)

    def load_mask(self, image_id):
        mask = np.zeros((128, 128, 1), bool)
        mask[20:60, 10:30, 0] = True
        mask[50:60, 10:50, 0] = True
        source = self.image_info[image_id]["source"]
        return mask, np.array([self.map_source_class_id("%s.1" % source)], np.int32)


def test_pipeline_batches_have_the_documented_shapes():
    config = TinyConfig()
    seq = MaskRCNNSequence(shapes_dataset(3, seed=5), config, shuffle=False)
    batch = seq[0]
    expected = {
        "input_image": ((2, 128, 128, 3), np.float32),
        "input_image_meta": ((2, 12 + 4), np.float32),
        "input_rpn_match": ((2, 4092, 1), np.int32),
        "input_rpn_bbox": ((2, 64, 4), np.float32),
        "input_gt_class_ids": ((2, 8), np.int32),
        "input_gt_boxes": ((2, 8, 4), np.float32),
        "input_gt_masks": ((2, 28, 28, 8), np.uint8),
    }
    assert set(batch) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert batch[key].shape == shape and batch[key].dtype == dtype, key
    match = batch["input_rpn_match"][..., 0]
    assert set(np.unique(match)) <= {-1, 0, 1}
    assert ((match == 1).sum(axis=1) <= 32).all() and ((match != 0).sum(axis=1) <= 64).all()
    for i in range(2):
        k = (batch["input_gt_class_ids"][i] > 0).sum()
        assert k > 0 and not batch["input_gt_boxes"][i, k:].any()
        assert batch["input_gt_masks"][i, ..., :k].any(axis=(0, 1)).all()
        assert not batch["input_gt_masks"][i, ..., k:].any()
    image, meta, _, _, _ = load_image_gt(seq.dataset, config, seq.dataset.image_ids[0])
    np.testing.assert_allclose(batch["input_image"][0], mold_image(image.astype(np.float32),
                                                                   config))
    np.testing.assert_array_equal(batch["input_image_meta"][0], meta)

    class Full(TinyConfig):
        USE_MINI_MASK = False
        USE_RPN_ROIS = False

    batch = MaskRCNNSequence(seq.dataset, Full(), shuffle=False)[0]
    assert batch["input_gt_masks"].shape == (2, 128, 128, 8)
    rois = batch["input_roi"]
    assert rois.shape == (2, 100, 4) and rois.dtype == np.float32
    assert (rois[..., 2] > rois[..., 0]).all() and (rois[..., 3] > rois[..., 1]).all()
    assert rois.min() >= 0 and rois.max() <= 128


def test_empty_data_sets_are_named_in_the_error(tmp_path):
    empty = SyntheticShapesDataset()
    empty.prepare()
    with pytest.raises(ValueError, match=r"SyntheticShapesDataset.*no images"):
        MaskRCNNSequence(empty, TinyConfig())
    facade = types.SimpleNamespace(config=TinyConfig(), keras_model=None, epoch=0,
                                   log_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"training data set \(SyntheticShapesDataset\) has no"):
        trainer_lib.train(facade, empty, shapes_dataset(1, 0), 0.01, 1, "heads")
    with pytest.raises(ValueError, match=r"validation data set \(SyntheticShapesDataset\) has no"):
        trainer_lib.train(facade, shapes_dataset(1, 0), empty, 0.01, 1, "heads")


@pytest.mark.parametrize("error,raised", [
    (OSError("truncated file"), OSError),
    (ValueError("bad pixel data"), ValueError),
    # Its constructor needs (msg, doc, pos): the context comes back as its base, ValueError.
    (json.JSONDecodeError("Expecting value", "{", 1), ValueError),
])
@pytest.mark.parametrize("mode", ["threads", "fork"])
def test_image_that_fails_to_load_is_named(error, raised, mode):
    dataset = TwoSourceDataset(fail={1: error})
    config = TinyConfig()
    config.INPUT_WORKERS = mode
    seq = MaskRCNNSequence(dataset, config, shuffle=False, name="training", workers=2)
    try:
        with pytest.raises(raised) as info:
            seq[0]  # images 0 and 1
    finally:
        seq.close()
    message = str(info.value)
    assert "id 1" in message and "/data/b/img_1.png" in message
    assert "training data set" in message and str(error) in message
    if mode == "threads":
        assert info.value.__cause__ is error
    else:  # raised in a worker process: the cause is its copy, sent back
        cause = info.value.__cause__
        assert type(cause) is type(error) and str(cause) == str(error)


def test_missing_image_file_is_named():
    dataset = Dataset()
    dataset.add_class("x", 1, "thing")
    dataset.add_image("x", image_id=0, path="/nonexistent/photo_7.jpg")
    dataset.prepare()
    with pytest.raises(FileNotFoundError, match=r"id 0.*photo_7\.jpg"):
        MaskRCNNSequence(dataset, TinyConfig()).load_one(0, np.random.default_rng(0))


def _flipped_box(box, width=128):
    y1, x1, y2, x2 = box
    return [y1, width - x2, y2, width - x1]  # x2 is one past the last pixel


def test_geometric_augmentation_moves_masks_with_the_image():
    dataset, config = TwoSourceDataset(), TinyConfig()
    image, meta, ids, boxes, masks = load_image_gt(dataset, config, 0, use_mini_mask=False)
    assert boxes.tolist() == [[20, 10, 60, 50]]
    out = load_image_gt(dataset, config, 0, augmentation=A.HorizontalFlip(p=1.0),
                        use_mini_mask=False)
    np.testing.assert_array_equal(out[0], image[:, ::-1])
    np.testing.assert_array_equal(out[4], masks[:, ::-1])
    assert out[3].tolist() == [_flipped_box(boxes[0])] == [[20, 78, 60, 118]]
    np.testing.assert_array_equal(out[1], meta)
    np.testing.assert_array_equal(out[2], ids)


def test_pixel_augmentation_touches_the_image_only():
    dataset, config = TwoSourceDataset(), TinyConfig()
    image, _, _, boxes, masks = load_image_gt(dataset, config, 0, use_mini_mask=False)
    out = load_image_gt(dataset, config, 0, augmentation=A.Compose([A.InvertImg(p=1.0)]),
                        use_mini_mask=False)
    np.testing.assert_array_equal(out[0], 255 - image)
    np.testing.assert_array_equal(out[4], masks)
    np.testing.assert_array_equal(out[3], boxes)


def test_augmentation_of_an_image_without_instances():
    class Empty(TwoSourceDataset):
        def load_mask(self, image_id):
            return np.zeros((128, 128, 0), bool), np.zeros([0], np.int32)

    out = load_image_gt(Empty(), TinyConfig(), 0, augmentation=A.HorizontalFlip(p=1.0))
    assert out[3].shape == (0, 4) and out[4].shape[-1] == 0


def test_no_augmentation_sources_are_left_alone():
    dataset, config = TwoSourceDataset(), TinyConfig()
    seq = MaskRCNNSequence(dataset, config, shuffle=False, augmentation=A.HorizontalFlip(p=1.0),
                           no_augmentation_sources=["b"])
    rng = np.random.default_rng(0)
    original = [20, 10, 60, 50]
    assert seq.load_one(0, rng)["input_gt_boxes"][0].tolist() == _flipped_box(original)  # "a"
    assert seq.load_one(1, rng)["input_gt_boxes"][0].tolist() == original                # "b"
    assert seq.load_one(2, rng)["input_gt_boxes"][0].tolist() == _flipped_box(original)  # "a"


def test_augmentation_works_without_imgaug(monkeypatch):
    # imgaug 0.4 does not import on NumPy 2; make any import of it fail.
    monkeypatch.setitem(sys.modules, "imgaug", None)
    dataset = TwoSourceDataset()
    seq = MaskRCNNSequence(dataset, TinyConfig(), shuffle=False,
                           augmentation=A.Compose([A.HorizontalFlip(p=1.0),
                                                   A.RandomBrightnessContrast(p=1.0)]))
    item = seq.load_one(0, np.random.default_rng(0))
    assert item["input_gt_boxes"][0].tolist() == _flipped_box([20, 10, 60, 50])


# ------------------------------------------------------------------------------ folded batch norm
def test_frozen_layers_read_fresh_folds_after_an_all_layers_run(tmp_path):
    """Heads training reads the frozen backbone's batch norm folded ahead (mrcnn.layers.conv).
    An all-layers run between two heads runs writes those weights inside its graph, where the
    caches cannot see it: each train() must refresh them, and the cached step must equal the
    uncached one."""
    from mrcnn.layers import conv as conv_layers

    class Cfg(TinyConfig):
        STEPS_PER_EPOCH = 1
        VALIDATION_STEPS = 0
        TRAIN_BN = False

    keras.utils.set_random_seed(4)
    maskrcnn = modellib.MaskRCNN("training", Cfg(), str(tmp_path))
    data = shapes_dataset(2, seed=3)
    maskrcnn.train(data, None, LEARNING_RATE, epochs=1, layers="heads")  # makes the caches
    maskrcnn.train(data, None, LEARNING_RATE * 10, epochs=2, layers="all")
    maskrcnn.train(data, None, LEARNING_RATE, epochs=3, layers="heads")
    model = maskrcnn.keras_model
    # heads: the whole backbone is frozen (the classifier and mask heads' convs train, and
    # get no cache: training never reads one for a trainable layer).
    folded = [layer for layer in model._flatten_layers()
              if isinstance(layer, conv_layers.FoldableConv2D) and layer._folded_bn is not None]
    caches = [layer._fold_cache for layer in folded if layer._fold_cache is not None]
    frozen = conv_layers.fold_caches(model, frozen_only=True)
    assert frozen and frozen == caches
    assert {layer.name for layer in folded if layer._fold_cache is None} == {
        "mrcnn_class_conv1", "mrcnn_class_conv2", "mrcnn_mask_conv1", "mrcnn_mask_conv2",
        "mrcnn_mask_conv3", "mrcnn_mask_conv4"}
    for cache in frozen:
        kernel, bias = cache.conv.folded_kernel_and_bias()
        np.testing.assert_allclose(cache.kernel.numpy(), kernel.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(cache.bias.numpy(), bias.numpy(), rtol=1e-6, atol=1e-7)

    # One batch through the heads step's forward and gradients, with and without the caches.
    inputs = {k: tf.constant(v) for k, v in
              MaskRCNNSequence(data, Cfg(), shuffle=False)[0].items()}

    def step():
        tf.random.set_seed(0)  # the same ROI sample both times
        with tf.GradientTape() as tape:
            total, _ = model._forward_losses(inputs, training=True)
        return total.numpy(), [g.numpy() for g in tape.gradient(total, model.trainable_variables)]

    def rsqrt_ops():  # one per batch norm folded in the graph
        graph = tf.function(lambda: model._forward_losses(inputs, training=True)
                            ).get_concrete_function().graph
        return sum(op.type == "Rsqrt" for op in graph.get_operations())

    cached, cached_rsqrt = step(), rsqrt_ops()
    for cache in caches:
        object.__setattr__(cache.conv, "_fold_cache", None)
    try:
        plain, plain_rsqrt = step(), rsqrt_ops()
    finally:
        for cache in caches:
            object.__setattr__(cache.conv, "_fold_cache", cache)
    assert plain_rsqrt - cached_rsqrt == len(frozen)
    np.testing.assert_allclose(cached[0], plain[0], rtol=1e-5)
    for a, b in zip(cached[1], plain[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_sparse_backward_of_rpn_and_fpn_convs_gives_autodiffs_gradients(datasets, tmp_path,
                                                                        monkeypatch):
    """The RPN's shared conv and the FPN's 3x3 convs (SparseGradConv2D) compute their backward
    pass from the positions the losses reach; every trainable variable's gradient of the total
    loss must be the one of autodiff's dense backward pass, and the sparse rows must have run."""
    from mrcnn.layers import sparse_grad_conv
    from mrcnn.layers.sparse_grad_conv import SparseGradConv2D
    from mrcnn.training.losses import compute_losses

    config = TinyConfig()
    keras.utils.set_random_seed(5)
    model = modellib.MaskRCNN("training", config, str(tmp_path)).keras_model
    batch = MaskRCNNSequence(datasets[0], config, shuffle=False)[0]
    sparse_calls = []
    original = sparse_grad_conv._sparse_grads
    monkeypatch.setattr(sparse_grad_conv, "_sparse_grads",
                        lambda *a: sparse_calls.append(1) or original(*a))

    def loss_and_grads():
        keras.utils.set_random_seed(11)  # the same ROI sampling in both runs
        with tf.GradientTape() as tape:
            out = model(model.graph_inputs(batch), training=True)
            loss = tf.add_n(list(compute_losses(batch, out,
                                                batch["input_image_meta"][:, 12:]).values()))
        return float(loss), tape.gradient(loss, model.trainable_variables)

    loss, grads = loss_and_grads()
    assert sparse_calls, "no sparse backward ran"
    monkeypatch.setattr(SparseGradConv2D, "_sparse_grad_applies", lambda self: False)
    dense_loss, dense_grads = loss_and_grads()
    assert loss == dense_loss
    checked = set()
    for v, g, d in zip(model.trainable_variables, grads, dense_grads):
        if d is None:
            assert g is None, v.path
            continue
        scale = float(np.abs(d).max())
        np.testing.assert_allclose(np.asarray(g), np.asarray(d), rtol=1e-4,
                                   atol=1e-5 * max(scale, 1e-6), err_msg=v.path)
        checked.add(owner(v.path))
    assert {"rpn_conv_shared", "fpn_p2", "fpn_c2p2", "res2a_branch2a"} <= checked, checked
