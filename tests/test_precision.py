"""Config.PRECISION: mixed precision builds, trains and detects, with coordinates in float32."""

import keras
import numpy as np
import pytest

from conftest import TinyConfig
from mrcnn import model as modellib
from mrcnn.config import ConfigError
from mrcnn.datasets.synthetic import SyntheticShapesDataset
from mrcnn.training.data import MaskRCNNSequence
from mrcnn.training.trainer import _optimizer, set_trainable

FLOAT32_LAYERS = ("anchors", "ROI", "proposal_targets", "norm_gt_boxes", "mask_rois",
                  "roi_align_classifier", "roi_align_mask", "mrcnn_class", "mrcnn_mask")


def test_precision_is_validated():
    cfg = TinyConfig()
    cfg.PRECISION = "float8"
    with pytest.raises(ConfigError, match="PRECISION.*float32, mixed_bfloat16, mixed_float16"):
        cfg.validate()


def _batch(config):
    dataset = SyntheticShapesDataset()
    dataset.load_shapes(config.BATCH_SIZE, 128, 128, seed=4)
    dataset.prepare()
    return MaskRCNNSequence(dataset, config, shuffle=False, seed=0)[0]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_with_float32_coordinates(tmp_path, precision):
    keras.utils.set_random_seed(0)

    class Cfg(TinyConfig):
        PRECISION = precision

    config = Cfg()
    model = modellib.MaskRCNN("training", config, str(tmp_path))
    assert keras.config.dtype_policy().name == "float32"      # the global policy is restored
    layers = {layer.name: layer for layer in _all_layers(model.keras_model)}
    assert layers["conv1"].dtype_policy.name == precision
    assert layers["conv1"].kernel.dtype == "float32"            # weights stay float32
    for name in FLOAT32_LAYERS:
        assert layers[name].dtype_policy.name == "float32", name

    km = model.keras_model
    set_trainable(km, ".*")
    km.compile(optimizer=_optimizer(config, 0.01), jit_compile=False)
    km.optimizer.build(km.trainable_variables)
    batch = _batch(config)
    before = [v.numpy().copy() for v in km.trainable_variables]
    # float16 may overflow at the first loss scales: those steps are skipped, the scale halves.
    for _ in range(12):
        logs = km.train_on_batch(batch, return_dict=True)
        assert all(np.isfinite(v) for v in logs.values()), logs
        if any(not np.array_equal(b, v.numpy()) for b, v in zip(before, km.trainable_variables)):
            break
    else:
        pytest.fail("no training step changed the weights")
    if precision == "mixed_float16":
        assert isinstance(km.optimizer, keras.optimizers.LossScaleOptimizer)


def test_float16_loss_scale_adapts(tmp_path):
    """From a scale that overflows float16, the optimizer skips the step and lowers the scale."""
    keras.utils.set_random_seed(0)

    class Cfg(TinyConfig):
        PRECISION = "mixed_float16"

    config = Cfg()
    model = modellib.MaskRCNN("training", config, str(tmp_path))
    km = model.keras_model
    set_trainable(km, ".*")
    inner = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    km.compile(optimizer=keras.optimizers.LossScaleOptimizer(inner, initial_scale=2.0 ** 30),
               jit_compile=False)
    km.optimizer.build(km.trainable_variables)
    batch = _batch(config)
    scales = []
    for _ in range(3):
        logs = km.train_on_batch(batch, return_dict=True)
        scales.append(float(km.optimizer.dynamic_scale.numpy()))
        assert np.isfinite(logs["loss"]), logs
    assert scales[-1] < 2.0 ** 30, scales
