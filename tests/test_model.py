"""The MaskRCNN facade: graph layout against the COCO weights file, detect(), weights round trip,
run directories and resuming, batch-norm momentum."""

import copy
import json
import logging
import os
import string

import h5py
import keras
import numpy as np
import pytest

from conftest import TinyConfig, freeze_clock, new_facade
from mrcnn import model as modellib
from mrcnn import weights as weights_io
from mrcnn.config import Config

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "matterport_coco_layer_names.json")


def matterport_coco_shapes():
    """Weight shapes of every weighted layer of mask_rcnn_coco.h5, written out from the published
    architecture (ResNet-101 C4 bottlenecks with biases, FPN 256, RPN 3 anchors, 81 classes)."""
    shapes = {}

    def conv(name, k, cin, cout):
        shapes[name] = {"kernel": (k, k, cin, cout), "bias": (cout,)}

    def bn(name, c):
        shapes[name] = {w: (c,) for w in ("gamma", "beta", "moving_mean", "moving_variance")}

    conv("conv1", 7, 3, 64)
    bn("bn_conv1", 64)
    cin = 64
    for stage, blocks, width in ((2, 3, 64), (3, 4, 128), (4, 23, 256), (5, 3, 512)):
        for i in range(blocks):
            b = string.ascii_lowercase[i]
            conv("res%d%s_branch2a" % (stage, b), 1, cin, width)
            bn("bn%d%s_branch2a" % (stage, b), width)
            conv("res%d%s_branch2b" % (stage, b), 3, width, width)
            bn("bn%d%s_branch2b" % (stage, b), width)
            conv("res%d%s_branch2c" % (stage, b), 1, width, 4 * width)
            bn("bn%d%s_branch2c" % (stage, b), 4 * width)
            if i == 0:
                conv("res%d%s_branch1" % (stage, b), 1, cin, 4 * width)
                bn("bn%d%s_branch1" % (stage, b), 4 * width)
            cin = 4 * width
    for level, c in ((5, 2048), (4, 1024), (3, 512), (2, 256)):
        conv("fpn_c%dp%d" % (level, level), 1, c, 256)
        conv("fpn_p%d" % level, 3, 256, 256)
    shapes["rpn_model"] = {"rpn_conv_shared/kernel": (3, 3, 256, 512),
                           "rpn_conv_shared/bias": (512,),
                           "rpn_class_raw/kernel": (1, 1, 512, 6), "rpn_class_raw/bias": (6,),
                           "rpn_bbox_pred/kernel": (1, 1, 512, 12), "rpn_bbox_pred/bias": (12,)}
    conv("mrcnn_class_conv1", 7, 256, 1024)
    bn("mrcnn_class_bn1", 1024)
    conv("mrcnn_class_conv2", 1, 1024, 1024)
    bn("mrcnn_class_bn2", 1024)
    shapes["mrcnn_class_logits"] = {"kernel": (1024, 81), "bias": (81,)}
    shapes["mrcnn_bbox_fc"] = {"kernel": (1024, 324), "bias": (324,)}
    for i in range(1, 5):
        conv("mrcnn_mask_conv%d" % i, 3, 256, 256)
        bn("mrcnn_mask_bn%d" % i, 256)
    shapes["mrcnn_mask_deconv"] = {"kernel": (2, 2, 256, 256), "bias": (256,)}
    conv("mrcnn_mask", 1, 256, 81)
    return shapes


def model_weight_shapes(keras_model):
    out = {}
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        if layer.name == "rpn_model":
            out["rpn_model"] = {"/".join(v.path.split("/")[-2:]): tuple(v.shape)
                                for v in layer.weights}
        else:
            out[layer.name] = {v.path.split("/")[-1]: tuple(v.shape) for v in layer.weights}
    return out


class CocoConfig(Config):
    NAME = "coco"
    NUM_CLASSES = 81
    BACKBONE = "resnet101"
    IMAGES_PER_GPU = 1


@pytest.fixture(scope="module")
def coco_training_model(tmp_path_factory):
    return modellib.MaskRCNN("training", CocoConfig(), str(tmp_path_factory.mktemp("coco")))


def test_every_coco_weight_layer_exists_with_matterport_shapes(coco_training_model):
    with open(FIXTURE) as f:
        names = json.load(f)["layer_names"]
    expected = matterport_coco_shapes()
    # Each weighted layer of the file is in the fixture's list, and the counts are the file's.
    assert set(expected) <= set(names)
    assert len(expected) - 1 + 3 == 235  # rpn_model holds three layers
    assert sum(int(np.prod(s)) for w in expected.values() for s in w.values()) == 64158584
    got = model_weight_shapes(coco_training_model.keras_model)
    assert set(got) == set(expected)
    for name, weights in expected.items():
        assert got[name] == weights, name


def test_coco_layout_file_loads_into_model(coco_training_model, tmp_path):
    """A file with the COCO file's names and shapes (small random values for the backbone-free
    layers, zeros elsewhere to keep it quick) loads by name with nothing missing."""
    from mrcnn.weights import read_weights_h5
    expected = matterport_coco_shapes()
    path = tmp_path / "coco_layout.h5"
    rng = np.random.default_rng(0)
    with open(FIXTURE) as f:
        names = json.load(f)["layer_names"]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for name in names:
            g = f.create_group(name)
            weights = expected.get(name, {})
            wnames = []
            for short, shape in weights.items():
                full = (short if "/" in short else name + "/" + short) + ":0"
                wnames.append(full.encode())
                value = (rng.normal(size=shape).astype(np.float32) if name.startswith("mrcnn")
                         else np.zeros(shape, np.float32))
                g.create_dataset(full, data=value)
            g.attrs["weight_names"] = wnames
    report = coco_training_model.load_weights(str(path), by_name=True)
    assert not report.missing_in_file and not report.missing_in_model
    assert len(report.loaded) == 235  # rpn_model counts as its three inner layers
    stored = read_weights_h5(str(path))
    layer = coco_training_model.keras_model.get_layer("mrcnn_mask_conv3")
    np.testing.assert_array_equal(layer.weights[0].numpy(), stored["mrcnn_mask_conv3"]["kernel"])


def test_class_count_mismatch_names_the_exclude_fix(tmp_path):
    cfg = TinyConfig()
    model = modellib.MaskRCNN("inference", cfg, str(tmp_path))
    path = str(tmp_path / "w.h5")
    model.save_weights(path)

    class Other(TinyConfig):
        NUM_CLASSES = 3

    other = modellib.MaskRCNN("inference", Other(), str(tmp_path))
    with pytest.raises(ValueError) as err:
        other.load_weights(path, by_name=True)
    msg = str(err.value)
    assert "NUM_CLASSES" in msg and "mrcnn_bbox_fc" in msg and "exclude" in msg
    report = other.load_weights(path, by_name=True, exclude=modellib.CLASS_SPECIFIC_LAYERS)
    assert "mrcnn_class_logits" in report.skipped


def _image(rng, shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("shape", [(97, 131, 3), (131, 97, 3), (120, 77), (90, 110, 4),
                                   (64, 200, 1)])
def test_detect_shapes_dtypes_and_bounds(tiny_inference_model, shape):
    r = tiny_inference_model.detect([_image(np.random.default_rng(0), shape)])[0]
    n = len(r["class_ids"])
    assert r["rois"].dtype == np.int32 and r["rois"].shape == (n, 4)
    assert r["class_ids"].dtype == np.int32 and r["scores"].dtype == np.float32
    assert r["masks"].dtype == bool and r["masks"].shape == (shape[0], shape[1], n)
    assert n > 0  # min confidence 0: the untrained model detects something
    assert (r["rois"][:, :2] >= 0).all()
    assert (r["rois"][:, 2] <= shape[0]).all() and (r["rois"][:, 3] <= shape[1]).all()
    assert (r["rois"][:, 2] > r["rois"][:, 0]).all() and (r["class_ids"] > 0).all()


def test_detect_with_no_detections_returns_empty_arrays(tmp_path):
    m = modellib.MaskRCNN("inference", TinyConfig(), str(tmp_path))
    # Make every ROI certain background: no detection can pass.
    logits = m.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = logits.get_weights()
    bias[:] = 0.0
    bias[0] = 100.0
    logits.set_weights([np.zeros_like(kernel), bias])
    r = m.detect([_image(np.random.default_rng(1), (80, 100, 3))])[0]
    assert r["rois"].shape == (0, 4) and r["rois"].dtype == np.int32
    assert r["class_ids"].shape == (0,) and r["class_ids"].dtype == np.int32
    assert r["scores"].shape == (0,) and r["scores"].dtype == np.float32
    assert r["masks"].shape == (80, 100, 0) and r["masks"].dtype == bool


def test_save_then_load_reproduces_detect_exactly(tmp_path):
    class Cfg(TinyConfig):
        DETECTION_MIN_CONFIDENCE = 0.0

    images = [_image(np.random.default_rng(2), (100, 120, 3)),
              _image(np.random.default_rng(3), (128, 90, 3))]
    a = modellib.MaskRCNN("inference", Cfg(), str(tmp_path))
    before = a.detect(images)
    path = str(tmp_path / "ours.h5")
    a.save_weights(path)
    b = modellib.MaskRCNN("inference", Cfg(), str(tmp_path))
    b.load_weights(path, by_name=True)
    after = b.detect(images)
    for x, y in zip(before, after):
        for key in ("rois", "class_ids", "scores", "masks"):
            np.testing.assert_array_equal(x[key], y[key])


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_repeated_detect_neither_retraces_nor_grows_memory(tiny_inference_model):
    rng = np.random.default_rng(4)
    # Images of different sizes that mold to the same square shape share one trace.
    images = [_image(rng, (100, 100, 3)), _image(rng, (90, 120, 3)), _image(rng, (128, 70, 3))]
    for image in images * 10:  # warm up: allocator pools and caches settle
        tiny_inference_model.detect([image])
    traces = tiny_inference_model._predict_fn.experimental_get_tracing_count()
    settled = _rss_bytes()
    for i in range(200):
        tiny_inference_model.detect([images[i % 3]])
    assert tiny_inference_model._predict_fn.experimental_get_tracing_count() == traces
    # A leak of even one molded image (128 x 128 x 3 float32, 196 KB) per call would add 39 MB.
    growth = _rss_bytes() - settled
    assert growth < 20 * 2**20, "RSS grew by %.1f MB over 200 detect calls" % (growth / 2**20)


def test_detect_batches_images_of_several_shapes(tiny_inference_model):
    rng = np.random.default_rng(5)
    images = [_image(rng, (60, 80, 3)), _image(rng, (80, 60, 3)), _image(rng, (50, 50, 3))]
    results = tiny_inference_model.detect(images)
    assert [r["masks"].shape[:2] for r in results] == [(60, 80), (80, 60), (50, 50)]


def test_detect_in_pad64_mode_takes_images_that_mold_to_different_shapes(tmp_path):
    # pad64 molds 60x200 to 64x256 and 130x70 to 192x128: one list, no stacking of the two.
    import keras

    class Pad64(TinyConfig):
        IMAGES_PER_GPU = 2
        IMAGE_RESIZE_MODE = "pad64"
        IMAGE_MIN_DIM = None
        DETECTION_MIN_CONFIDENCE = 0.0

    keras.utils.set_random_seed(2)
    model = modellib.MaskRCNN("inference", Pad64(), str(tmp_path))
    rng = np.random.default_rng(9)
    images = [_image(rng, (60, 200, 3)), _image(rng, (130, 70, 3)), _image(rng, (64, 64, 3))]
    together = model.detect(images)
    for image, r in zip(images, together):
        alone = model.detect([image])[0]
        assert r["masks"].shape[:2] == image.shape[:2]
        for key in ("rois", "class_ids", "scores", "masks"):
            np.testing.assert_array_equal(r[key], alone[key])


def test_run_graph_returns_named_intermediates(tiny_inference_model):
    out = tiny_inference_model.run_graph([_image(np.random.default_rng(6), (128, 128, 3))],
                                         [("proposals", "ROI"), ("p2", "fpn_p2")])
    assert out["proposals"].shape == (1, TinyConfig.POST_NMS_ROIS_INFERENCE, 4)
    assert out["p2"].shape == (1, 32, 32, TinyConfig.TOP_DOWN_PYRAMID_SIZE)


def test_find_last_and_log_dir(tmp_path):
    model = modellib.MaskRCNN("inference", TinyConfig(), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="tiny"):
        model.find_last()
    run = tmp_path / "tiny20260102T0304"
    run.mkdir()
    model.save_weights(str(run / "mask_rcnn_tiny_0001.h5"), epoch=1)
    model.save_weights(str(run / "mask_rcnn_tiny_0007.h5"), epoch=7)
    last = model.find_last()
    assert last.endswith("mask_rcnn_tiny_0007.h5")
    model.set_log_dir(last)
    assert model.epoch == 7 and model.log_dir == str(run)
    assert model.checkpoint_path.format(epoch=8) == str(run / "mask_rcnn_tiny_0008.h5")


def test_new_runs_started_in_the_same_minute_get_their_own_directories(
        tiny_inference_model, tmp_path, monkeypatch):
    freeze_clock(monkeypatch, 2026, 1, 2, 3, 4, 59)
    a = new_facade(tiny_inference_model, tmp_path)
    b = new_facade(tiny_inference_model, tmp_path)
    assert a.log_dir == b.log_dir == str(tmp_path / "tiny20260102T0304")  # Matterport's name
    assert a.create_log_dir() == str(tmp_path / "tiny20260102T0304")
    assert b.create_log_dir() == str(tmp_path / "tiny20260102T0305")  # the next free minute
    assert b.log_dir == str(tmp_path / "tiny20260102T0305")
    assert b.checkpoint_path.format(epoch=1) == str(
        tmp_path / "tiny20260102T0305" / "mask_rcnn_tiny_0001.h5")
    assert a.create_log_dir() == a.log_dir == str(tmp_path / "tiny20260102T0304")  # kept
    (tmp_path / "tiny20260102T0306").mkdir()  # any existing directory is taken, empty or not
    c = new_facade(tiny_inference_model, tmp_path)
    assert c.create_log_dir() == str(tmp_path / "tiny20260102T0307")
    assert sorted(os.listdir(tmp_path)) == ["tiny20260102T%04d" % t for t in (304, 305, 306, 307)]

    for run in (a, b):
        tiny_inference_model.save_weights(run.checkpoint_path.format(epoch=1), epoch=1)
    # Later runs sort after earlier ones: the newest run with a checkpoint is b's.
    assert c.find_last() == os.path.join(b.log_dir, "mask_rcnn_tiny_0001.h5")
    # Resuming continues in the checkpoint's directory although it exists.
    c.set_log_dir(os.path.join(a.log_dir, "mask_rcnn_tiny_0001.h5"))
    assert (c.epoch, c.create_log_dir()) == (1, a.log_dir)
    assert len(os.listdir(tmp_path)) == 4


def test_loading_the_best_checkpoint_continues_its_run_at_its_epoch(tiny_inference_model,
                                                                    tmp_path):
    run = tmp_path / "tiny20260102T0304"
    run.mkdir()
    for epoch in (1, 2, 3):
        tiny_inference_model.save_weights(str(run / ("mask_rcnn_tiny_%04d.h5" % epoch)),
                                          epoch=epoch)
    # What CheckpointCallback leaves when epoch 2 had the lowest validation loss.
    os.link(run / "mask_rcnn_tiny_0002.h5", run / "mask_rcnn_tiny_best.h5")
    (run / "best.json").write_text(json.dumps(
        {"checkpoint": "mask_rcnn_tiny_0002.h5", "epoch": 2, "metric": "val_loss",
         "value": 1.5}))
    model = new_facade(tiny_inference_model, tmp_path)
    best = model.find_best()
    assert best == str(run / "mask_rcnn_tiny_best.h5")
    model.load_weights(best, by_name=True)
    assert model.epoch == 2 and model.log_dir == str(run)
    assert model.checkpoint_path.format(epoch=3) == str(run / "mask_rcnn_tiny_0003.h5")
    assert model.create_log_dir() == str(run) and os.listdir(tmp_path) == [run.name]

    # Without best.json nothing tells which epoch the file is: a new run, as for foreign weights.
    (run / "best.json").unlink()
    model.load_weights(best, by_name=True)
    assert model.epoch == 0 and model.log_dir != str(run)


def test_new_predict_function_logs_no_autograph_warning(tiny_inference_model, monkeypatch,
                                                        caplog, capsys):
    # AutoGraph converts a function by re-parsing its source; for _predict's closure that can
    # fail ("closure mismatch") with a warning for every new model. Make every conversion fail
    # that way: the predict function must not be handed to AutoGraph at all.
    from tensorflow.python.autograph.impl import api as autograph_api

    def fail(entity, program_ctx):
        raise ValueError("closure mismatch, requested ('model',), but source function had ()")

    monkeypatch.setattr(autograph_api, "_convert_actual", fail)
    model = copy.copy(tiny_inference_model)
    model._predict_fn = None  # a new inference function, traced on first use
    molded, metas, _ = model.mold_inputs([_image(np.random.default_rng(10), (128, 128, 3))])
    with caplog.at_level(logging.WARNING):
        detections, _ = model._predict(molded, metas)
    assert detections.shape == (1, TinyConfig.DETECTION_MAX_INSTANCES, 6)
    out, err = capsys.readouterr()
    for text in (caplog.text, out, err):
        assert "AutoGraph" not in text and "could not transform" not in text, text


def _batch_norms(keras_model):
    return {name: layer for name, layer in weights_io.weighted_layers(keras_model)
            if isinstance(layer, keras.layers.BatchNormalization)}


@pytest.mark.parametrize("mode", ["training", "inference"])
def test_every_batch_norm_gets_the_configured_momentum(mode, tiny_inference_model):
    from mrcnn.model.graph import build_graph

    class Cfg(TinyConfig):
        TRAIN_BN = True
        BATCH_NORM_MOMENTUM = 0.9

    inputs, outputs = build_graph(mode, Cfg())
    bns = _batch_norms(keras.Model(inputs, outputs))
    # Backbone stem, blocks and shortcuts, and both heads.
    assert {"bn_conv1", "bn2a_branch2a", "bn3a_branch1", "bn5b_branch2b", "mrcnn_class_bn1",
            "mrcnn_class_bn2", "mrcnn_mask_bn1", "mrcnn_mask_bn4"} <= set(bns)
    assert {name: bn.momentum for name, bn in bns.items()} == dict.fromkeys(bns, 0.9)
    default = _batch_norms(tiny_inference_model.keras_model)
    assert set(default) == set(bns)
    assert {bn.momentum for bn in default.values()} == {0.99}  # Keras' and Matterport's


def test_custom_backbone_gets_the_momentum_only_if_it_declares_it():
    from mrcnn.backbone import resnet_graph
    from mrcnn.model.graph import _backbone_features

    seen = []

    def matterport_style(input_image, stage5=False, train_bn=True):
        seen.append("no momentum")
        return resnet_graph(input_image, "resnet18", stage5, train_bn)

    def with_momentum(input_image, stage5=False, train_bn=True, bn_momentum=0.99):
        seen.append(bn_momentum)
        return resnet_graph(input_image, "resnet18", stage5, train_bn, bn_momentum)

    for backbone in (matterport_style, with_momentum):
        config = TinyConfig()
        config.BACKBONE = backbone
        config.BATCH_NORM_MOMENTUM = 0.9
        _backbone_features(keras.Input((128, 128, 3)), config)
    assert seen == ["no momentum", 0.9]


def test_invalid_mode_and_batch_size_errors(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        modellib.MaskRCNN("train", TinyConfig(), str(tmp_path))
    cfg = TinyConfig()
    cfg.IMAGE_MAX_DIM = 100
    with pytest.raises(ValueError, match="IMAGE_MAX_DIM"):
        modellib.MaskRCNN("inference", cfg, str(tmp_path))


def test_mask_head_runs_on_real_detections_only_and_output_keeps_its_shape():
    from mrcnn.layers.misc import DetectionBoxes, LeadingRois
    detections = np.zeros([2, 6, 6], np.float32)
    detections[0, :3] = [[0.1, 0.1, 0.5, 0.5, 2, 0.9]] * 3
    detections[1, :5] = [[0.2, 0.2, 0.6, 0.6, 1, 0.8]] * 5
    boxes = np.asarray(DetectionBoxes()(detections))
    # Five rows: the most real detections of any image; image 0's rows 3-4 are its zero padding.
    np.testing.assert_array_equal(boxes, detections[:, :5, :4])
    none = np.asarray(DetectionBoxes()(np.zeros([1, 6, 6], np.float32)))
    np.testing.assert_array_equal(none, np.zeros([1, 1, 4]))  # one zero row, never an empty batch
    masks = np.random.default_rng(0).random([2, 5, 4, 4, 3]).astype(np.float32)
    padded = np.asarray(LeadingRois(6)(masks))
    assert padded.shape == (2, 6, 4, 4, 3)
    np.testing.assert_array_equal(padded[:, :5], masks)
    assert not padded[:, 5:].any()
    np.testing.assert_array_equal(np.asarray(LeadingRois(3)(masks)), masks[:, :3])
    assert LeadingRois(6).get_config()["count"] == 6


def test_positive_rois_keep_the_leading_rows_that_hold_every_positive():
    from mrcnn.layers.misc import PositiveRois
    from mrcnn.ops import portable
    rois = np.random.default_rng(1).random([2, 8, 4]).astype(np.float32)
    ids = np.zeros([2, 8], np.int32)
    ids[0, :2] = 3
    ids[1, :5] = 1
    np.testing.assert_array_equal(np.asarray(PositiveRois(6)([rois, ids])), rois[:, :5])
    np.testing.assert_array_equal(np.asarray(PositiveRois(4)([rois, ids])), rois[:, :4])  # cap
    # No positive anywhere: one row, never an empty batch for the mask head's convolutions.
    np.testing.assert_array_equal(np.asarray(PositiveRois(6)([rois, 0 * ids])), rois[:, :1])
    with portable.xla_static():
        np.testing.assert_array_equal(np.asarray(PositiveRois(6)([rois, ids])), rois[:, :6])
    assert PositiveRois(6).get_config()["count"] == 6


def test_detect_masks_equal_the_mask_head_on_each_detection_box(tiny_inference_model):
    """Trimming the mask head's rows must not change any detection's mask."""
    model = tiny_inference_model
    image = _image(np.random.default_rng(9), (128, 128, 3))
    molded, metas, _ = model.mold_inputs([image])
    detections, masks = model._predict(molded, metas)
    n = int(np.count_nonzero(detections[0, :, 4] > 0))
    assert 0 < n
    # The mask head alone, on the detection boxes padded to all D rows as Matterport runs it.
    import keras
    probe = keras.Model(
        model.keras_model.inputs,
        [model.keras_model.get_layer(name).output
         for name in ("fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5")])
    feature_maps = probe({"input_image": molded, "input_image_meta": metas})
    km = model.keras_model
    x = km.get_layer("roi_align_mask")([detections[:, :, :4], metas] + list(feature_maps))
    x = km.get_layer("mask_merge_rois")(x)
    for i in range(1, 5):
        x = km.get_layer("mrcnn_mask_conv%d" % i)(x)
        x = km.get_layer("mrcnn_mask_bn%d" % i)(x)
        x = keras.activations.relu(x)
    x = km.get_layer("mrcnn_mask")(km.get_layer("mrcnn_mask_deconv")(x))
    full = np.asarray(x).reshape((1, -1) + tuple(x.shape[1:]))
    class_ids = detections[0, :n, 4].astype(int)
    expected = full[0, np.arange(n), :, :, class_ids]
    np.testing.assert_allclose(masks[0, :n], expected, atol=1e-5)


def test_detect_follows_weights_changed_after_its_first_call(tmp_path):
    """detect() reads the backbone's batch norm folded ahead (mrcnn.layers.conv.FoldCache): a
    later load_weights, set_weights or direct assign must show in the next call, without a
    new trace, exactly as a new model with those weights gives."""
    class Cfg(TinyConfig):
        DETECTION_MIN_CONFIDENCE = 0.0

    image = _image(np.random.default_rng(5), (110, 128, 3))
    keras.utils.set_random_seed(11)
    other = modellib.MaskRCNN("inference", Cfg(), str(tmp_path))
    path = str(tmp_path / "other.h5")
    other.save_weights(path)
    keras.utils.set_random_seed(12)
    model = modellib.MaskRCNN("inference", Cfg(), str(tmp_path))
    molded, metas, _ = model.mold_inputs([image])

    def in_graph_fold():  # the Keras model called directly folds in its graph, uncached
        return model.keras_model.predict_on_batch(
            {"input_image": molded, "input_image_meta": metas})["mrcnn_detection"]

    first = model._predict(molded, metas)[0]  # the first call builds the caches
    model.load_weights(path, by_name=True)
    assert not np.allclose(first, model._predict(molded, metas)[0])
    loaded, expected = model.detect([image])[0], other.detect([image])[0]
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(loaded[key], expected[key])

    traces = model._predict_fn.experimental_get_tracing_count()
    bn = model.keras_model.get_layer("bn_conv1")
    rng = np.random.default_rng(6)
    for write in [lambda: model.keras_model.set_weights(
                      [w * rng.uniform(0.9, 1.1, w.shape) for w in model.keras_model.get_weights()]),
                  lambda: bn.moving_variance.assign(rng.uniform(0.5, 2.0, bn.moving_variance.shape))]:
        before = model._predict(molded, metas)[0]
        write()
        after = model._predict(molded, metas)[0]
        assert not np.allclose(before, after)
        np.testing.assert_allclose(after, in_graph_fold(), rtol=1e-4, atol=1e-4)
    assert model._predict_fn.experimental_get_tracing_count() == traces
