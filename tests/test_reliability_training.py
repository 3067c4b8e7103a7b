"""Bad numbers during training (issue 14): an image that makes the loss non-finite stops
training with an error naming the epoch, the step and the images of the batch; no checkpoint
is written for that epoch, so find_last() still returns the last good one, and training resumes
from it once the image is left out."""

import os
import types

import keras
import numpy as np
import pytest

from conftest import TinyConfig
from mrcnn import model as modellib
from mrcnn.datasets.synthetic import SyntheticShapesDataset
from mrcnn.training import data as data_lib
from mrcnn.training.trainer import TrainingDivergedError


class Cfg(TinyConfig):
    STEPS_PER_EPOCH = 3
    VALIDATION_STEPS = 1


def shapes(count, seed):
    d = SyntheticShapesDataset()
    d.load_shapes(count, 128, 128, seed=seed, max_shapes=3)
    d.prepare()
    return d


def test_non_finite_loss_names_step_and_images_and_keeps_last_good_checkpoint(tmp_path,
                                                                               monkeypatch):
    keras.utils.set_random_seed(3)
    train_ds, val_ds = shapes(6, 1), shapes(2, 2)
    model = modellib.MaskRCNN("training", Cfg(), str(tmp_path))
    model.train(train_ds, val_ds, 0.001, epochs=1, layers="heads")
    good = model.find_last()
    assert good.endswith("_0001.h5")

    victim = 4  # internal image id; its targets become infinite from now on
    real = data_lib.MaskRCNNSequence.load_one

    def load_one(self, image_id, rng):
        item = real(self, image_id, rng)
        if item is not None and self.dataset is train_ds and image_id == victim:
            item["input_rpn_bbox"] = np.full_like(item["input_rpn_bbox"], np.inf)
        return item

    monkeypatch.setattr(data_lib.MaskRCNNSequence, "load_one", load_one)
    with pytest.raises(TrainingDivergedError) as info:
        model.train(train_ds, val_ds, 0.001, epochs=3, layers="heads")
    record, message = info.value.record, str(info.value)
    assert record["epoch"] == 2 and 1 <= record["step"] <= Cfg.STEPS_PER_EPOCH
    assert train_ds.image_info[victim]["id"] in record["image_ids"]
    assert "epoch 2, step %d" % record["step"] in message
    assert repr(train_ds.image_info[victim]["id"]) in message
    assert "rpn_bbox_loss" in record["losses"]
    assert record["last_checkpoint"] == good and good in message
    # No checkpoint of the bad epoch: the last good one is still what find_last returns.
    assert model.find_last() == good
    assert not os.path.exists(good.replace("_0001.h5", "_0002.h5"))
    assert model.find_best().endswith(("_best.h5", "_0001.h5"))

    # Without that image, training resumes from the last good checkpoint and completes.
    monkeypatch.undo()
    resumed = modellib.MaskRCNN("training", Cfg(), str(tmp_path))
    resumed.load_weights(resumed.find_last(), by_name=True)
    assert resumed.epoch == 1
    # Its passes over the data count from epoch 1: with the same seed (the workers' shared one)
    # it would otherwise repeat the first epoch's batches.
    first_passes = []
    init = data_lib.MaskRCNNSequence.__init__

    def recording_init(self, *args, **kwargs):
        first_passes.append(kwargs.get("first_pass", 0))
        init(self, *args, **kwargs)

    monkeypatch.setattr(data_lib.MaskRCNNSequence, "__init__", recording_init)
    resumed.train(train_ds, val_ds, 0.001, epochs=2, layers="heads")
    assert resumed.find_last().endswith("_0002.h5")
    assert first_passes == [1, 1]  # training and validation


class SmallCfg(TinyConfig):
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    STEPS_PER_EPOCH = 3


def _ids(dataset, metas):
    return [dataset.image_info[int(i)]["id"] for i in np.asarray(metas)[:, 0]]


def test_bad_loss_names_all_workers_images_of_the_step_under_multi_worker():
    """Under MultiWorkerMirroredStrategy worker i trains on batch s * n + i at step s and the
    loss is averaged over the workers: the error names every worker's images of the bad step,
    each as that worker actually fed it (checked against the batches of ``_worker_batches``,
    iterated as Keras does, one iterator for all epochs). No second process needed: worker 1
    of 2 with the seed the workers share, as ``worker_role`` gives it."""
    import tensorflow as tf
    from mrcnn.training import trainer

    worker, n_workers, seed = 1, 2, 1234
    dataset = shapes(5, 3)  # 5 images, batches of 2: each pass shuffles anew and shifts
    config = SmallCfg()
    # A run resumed at epoch 5: fit's epochs and the passes over the data count from there.
    sequence = data_lib.MaskRCNNSequence(dataset, config, steps=config.STEPS_PER_EPOCH * n_workers,
                                         seed=seed, workers=1, first_pass=5)
    strategy = tf.distribute.get_strategy()
    fed = {}  # (worker, pass from the first, step) -> image ids
    for w in range(n_workers):
        iterator = iter(trainer._worker_batches(strategy, sequence, w, n_workers))
        for p in range(3):
            for s in range(config.STEPS_PER_EPOCH):
                fed[w, p, s] = _ids(dataset, next(iterator)["input_image_meta"])
    # Whole batches, the workers' distinct, every pass a new order.
    assert all(len(ids) == config.BATCH_SIZE for ids in fed.values())
    assert fed[0, 0, 0] != fed[1, 0, 0] or fed[0, 0, 1] != fed[1, 0, 1]
    assert [fed[1, 0, s] for s in range(3)] != [fed[1, 2, s] for s in range(3)]

    for p, s in ((0, 0), (2, 1), (2, 2)):  # the bad step: pass p (an epoch of fit), step s
        callback = trainer.StopOnBadLoss(sequence, n_workers)
        callback.set_model(types.SimpleNamespace(stop_training=False))
        for epoch in range(5, 5 + p + 1):
            callback.on_epoch_begin(epoch)
        for b in range(s):
            callback.on_train_batch_end(b, {"loss": 1.0})
        callback.on_train_batch_end(s, {"loss": float("nan"), "rpn_bbox_loss": float("inf")})
        bad = callback.bad
        assert callback.model.stop_training and bad["epoch"] == 5 + p + 1 and bad["step"] == s + 1
        assert bad["worker_image_ids"][worker] == fed[worker, p, s]
        assert bad["worker_image_ids"] == [fed[w, p, s] for w in range(n_workers)]
        assert bad["image_ids"] == fed[0, p, s] + fed[1, p, s]
        assert set(bad["losses"]) == {"loss", "rpn_bbox_loss"}
        # What each worker's train() raises: all of those images, and where to resume.
        last = "/runs/multi/mask_rcnn_multi_0005.h5"
        with pytest.raises(TrainingDivergedError) as info:
            trainer._raise_diverged(types.SimpleNamespace(find_last=lambda: last), bad)
        message = str(info.value)
        assert "epoch %d, step %d" % (5 + p + 1, s + 1) in message
        assert "the batches of all 2 workers" in message and last in message
        assert all(repr(i) in message for i in bad["image_ids"])

    # One process: the ids are those of the sequence's own batch of that step, as before.
    single = data_lib.MaskRCNNSequence(dataset, config, seed=seed, workers=1,
                                       steps=config.STEPS_PER_EPOCH)
    callback = trainer.StopOnBadLoss(single)
    callback.set_model(types.SimpleNamespace(stop_training=False))
    callback.on_epoch_begin(0)
    callback.on_epoch_begin(1)
    callback.on_train_batch_end(2, {"loss": float("inf")})
    single.epoch = 1
    assert callback.bad["image_ids"] == _ids(dataset, single[2]["input_image_meta"])
    assert "worker_image_ids" not in callback.bad
