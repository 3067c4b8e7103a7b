"""Bad numbers during training (issue 14): an image that makes the loss non-finite stops
training with an error naming the epoch, the step and the images of the batch; no checkpoint
is written for that epoch, so find_last() still returns the last good one, and training resumes
from it once the image is left out."""

import os

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
    resumed.train(train_ds, val_ds, 0.001, epochs=2, layers="heads")
    assert resumed.find_last().endswith("_0002.h5")
