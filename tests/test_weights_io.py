"""Tests for mrcnn.weights: Keras 2 layout HDF5 weights (Matterport's files) for Keras 3 models.

Files are written by hand with h5py in the Keras 2 layout; expectations read variables through
layer attributes (``layer.kernel``, ``layer.moving_mean``), independently of the module's own
name matching.
"""

import logging
import os

import h5py
import keras
import numpy as np
import pytest
from keras import layers

from mrcnn.weights import (
    CLASS_HEADS_EXCLUDE,
    LoadReport,
    WeightsFileError,
    WeightsMismatchError,
    load_weights_h5,
    read_attrs,
    read_weights_h5,
    save_weights_h5,
    weighted_layers,
)

TOP_LEAVES = ["conv1", "bn_conv1", "fpn_c2p2", "mrcnn_class_conv1", "mrcnn_class_logits",
              "mrcnn_bbox_fc", "mrcnn_mask_deconv", "mrcnn_mask"]
RPN_INNER = ["rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"]
ALL_QUALNAMES = TOP_LEAVES + ["rpn_model/" + n for n in RPN_INNER]
EXTRA_WEIGHTLESS = ["lambda_4", "mrcnn_class_loss"]


def build_rpn(depth=4, anchors=2):
    inp = keras.Input((None, None, depth), name="input_rpn_feature_map")
    shared = layers.Conv2D(6, 3, padding="same", activation="relu", name="rpn_conv_shared")(inp)
    cls = layers.Conv2D(2 * anchors, 1, name="rpn_class_raw")(shared)
    bbox = layers.Conv2D(4 * anchors, 1, name="rpn_bbox_pred")(shared)
    return keras.Model(inp, [cls, bbox], name="rpn_model")


def build_model(num_classes=3, conv1_bias=True):
    """A miniature Mask R-CNN with Matterport's layer names (8x8x3 input)."""
    inp = keras.Input((8, 8, 3), name="input_image")
    x = layers.ZeroPadding2D(1, name="zero_padding2d_1")(inp)
    x = layers.Conv2D(4, 3, use_bias=conv1_bias, name="conv1")(x)
    x = layers.BatchNormalization(name="bn_conv1")(x)
    x = layers.Activation("relu", name="activation_1")(x)
    x = layers.Conv2D(4, 1, name="fpn_c2p2")(x)
    rpn_class, rpn_bbox = build_rpn()(x)
    pooled = layers.GlobalAveragePooling2D(name="pool")(x)
    seq = layers.Reshape((1, 4), name="roi_axis")(pooled)
    shared = layers.TimeDistributed(layers.Dense(5, name="mrcnn_class_dense"),
                                    name="mrcnn_class_conv1")(seq)
    shared = layers.Flatten(name="pool_squeeze")(shared)
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    bbox = layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    bbox = layers.Reshape((num_classes, 4), name="mrcnn_bbox")(bbox)
    mask = layers.Conv2DTranspose(3, 2, strides=2, name="mrcnn_mask_deconv")(x)
    mask = layers.Conv2D(num_classes, 1, name="mrcnn_mask")(mask)
    return keras.Model(inp, [rpn_class, rpn_bbox, logits, bbox, mask], name="mask_rcnn")


def named_vars(layer):
    """{short name: variable} through the layer's attributes."""
    inner = layer.layer if isinstance(layer, layers.TimeDistributed) else layer
    if isinstance(inner, layers.BatchNormalization):
        return {"gamma": inner.gamma, "beta": inner.beta, "moving_mean": inner.moving_mean,
                "moving_variance": inner.moving_variance}
    out = {"kernel": inner.kernel}
    if inner.use_bias:
        out["bias"] = inner.bias
    return out


def layer_by_qualname(model, qualname):
    outer, _, inner = qualname.partition("/")
    layer = model.get_layer(outer)
    return layer.get_layer(inner) if inner else layer


def random_arrays(layer, rng):
    out = {}
    for short, var in named_vars(layer).items():
        a = rng.standard_normal(tuple(var.shape)).astype(np.float32)
        out[short] = np.abs(a) + 0.5 if short == "moving_variance" else a
    return out


def make_spec(model, rng, reverse=True):
    """{group: {owner: {short: array}}} in the Keras 2 layout for the model's weighted layers.

    reverse=True stores each layer's weights in reverse order, so only name matching loads it.
    """
    spec = {}
    for name in TOP_LEAVES:
        arrays = random_arrays(model.get_layer(name), rng)
        if reverse:
            arrays = dict(reversed(list(arrays.items())))
        spec[name] = {name: arrays}
    rpn = model.get_layer("rpn_model")
    spec["rpn_model"] = {n: random_arrays(rpn.get_layer(n), rng) for n in RPN_INNER}
    return spec


def file_layer_names(model, spec):
    names = [layer.name for layer in model.layers] + EXTRA_WEIGHTLESS
    return names + [g for g in spec if g not in names]


def write_keras2(path, spec, layer_names, under_model_weights=False):
    """Write a Keras 2 save_weights (or model.save: model_weights group) file with h5py."""
    with h5py.File(path, "w") as f:
        root = f
        if under_model_weights:
            f.attrs["model_config"] = b'{"class_name": "Model"}'
            f.attrs["keras_version"] = b"2.0.8"
            f.attrs["backend"] = b"tensorflow"
            root = f.create_group("model_weights")
        root.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.0.8"
        for name in layer_names:
            group = root.create_group(name)
            weights = [("%s/%s:0" % (owner, short), a)
                       for owner, arrays in spec.get(name, {}).items()
                       for short, a in arrays.items()]
            group.attrs["weight_names"] = np.array([w.encode() for w, _ in weights], dtype="S")
            for wname, array in weights:
                group.create_dataset(wname, data=array)


def spec_arrays(spec, qualname):
    outer, _, inner = qualname.partition("/")
    return spec[outer][inner or outer]


def assert_loaded(model, spec, qualnames):
    for q in qualnames:
        want = spec_arrays(spec, q)
        got = named_vars(layer_by_qualname(model, q))
        assert set(got) == set(want), q
        for short, var in got.items():
            np.testing.assert_array_equal(var.numpy(), want[short], err_msg="%s/%s" % (q, short))


def snapshot(model, qualnames):
    return {q: {s: v.numpy().copy() for s, v in named_vars(layer_by_qualname(model, q)).items()}
            for q in qualnames}


def assert_unchanged(model, snap):
    for q, arrays in snap.items():
        got = named_vars(layer_by_qualname(model, q))
        for short, a in arrays.items():
            np.testing.assert_array_equal(got[short].numpy(), a, err_msg="%s/%s" % (q, short))


def randomize(model, rng):
    for q in ALL_QUALNAMES:
        layer = layer_by_qualname(model, q)
        for short, a in random_arrays(layer, rng).items():
            named_vars(layer)[short].assign(a)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------------------------


def test_weighted_layers_walks_into_nested_model():
    model = build_model()
    pairs = list(weighted_layers(model))
    names = [n for n, _ in pairs]
    assert sorted(names) == sorted(ALL_QUALNAMES)
    assert [n for n in names if n.startswith("rpn_model/")] == ["rpn_model/" + n for n in RPN_INNER]
    for name, layer in pairs:
        assert layer is layer_by_qualname(model, name)


@pytest.mark.parametrize("under_model_weights", [False, True])
def test_load_keras2_file_sets_every_variable(tmp_path, rng, under_model_weights):
    model = build_model()
    spec = make_spec(model, rng)
    path = tmp_path / "mask_rcnn_coco.h5"
    write_keras2(path, spec, file_layer_names(model, spec), under_model_weights)

    report = load_weights_h5(model, path)

    assert_loaded(model, spec, ALL_QUALNAMES)
    assert isinstance(report, LoadReport)
    assert sorted(report.loaded) == sorted(ALL_QUALNAMES)
    assert report.skipped == report.missing_in_model == report.missing_in_file == []
    # conv1 2 + bn 4 + fpn 2 + td 2 + logits 2 + bbox_fc 2 + deconv 2 + mask 2 + rpn 3*2
    assert report.num_arrays == 24
    assert str(path) in str(report)


def test_exclude_leaves_excluded_layers_untouched(tmp_path, rng, caplog):
    model = build_model(num_classes=3)
    # The file's heads are for 5 classes: excluded layers must not even be shape-checked.
    spec = make_spec(build_model(num_classes=5), rng)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    excluded = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask", "rpn_model/rpn_bbox_pred"]
    before = snapshot(model, excluded)

    with caplog.at_level(logging.WARNING, logger="mrcnn.weights"):
        report = load_weights_h5(model, path, exclude=CLASS_HEADS_EXCLUDE + ["rpn_bbox_pred"])

    assert_unchanged(model, before)
    kept = [q for q in ALL_QUALNAMES if q not in excluded]
    assert_loaded(model, spec, kept)
    assert sorted(report.loaded) == sorted(kept)
    assert sorted(report.skipped) == sorted(excluded)
    assert report.missing_in_model == report.missing_in_file == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_exclude_whole_nested_model(tmp_path, rng):
    model = build_model()
    spec = make_spec(model, rng)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    rpn_names = ["rpn_model/" + n for n in RPN_INNER]
    before = snapshot(model, rpn_names)
    report = load_weights_h5(model, path, exclude=["rpn_model"])
    assert_unchanged(model, before)
    assert sorted(report.skipped) == sorted(rpn_names)
    assert report.missing_in_model == []


def test_unknown_exclude_name_is_warned(tmp_path, rng, caplog):
    model = build_model()
    spec = make_spec(model, rng)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    with caplog.at_level(logging.WARNING, logger="mrcnn.weights"):
        load_weights_h5(model, path, exclude=["mrcnn_bbox", "no_such_layer"])
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "no_such_layer" in text
    assert "mrcnn_bbox" not in text  # a real (weightless) layer of the model


@pytest.mark.parametrize("head,kernel_shape", [
    ("mrcnn_class_logits", (5, 7)),
    ("mrcnn_bbox_fc", (5, 28)),
    ("mrcnn_mask", (1, 1, 3, 7)),
])
def test_class_head_shape_mismatch_explains_num_classes(tmp_path, rng, head, kernel_shape):
    model = build_model(num_classes=3)
    spec = make_spec(model, rng)
    # The same head trained with 7 classes.
    spec[head] = {head: {"kernel": rng.standard_normal(kernel_shape).astype(np.float32),
                         "bias": rng.standard_normal(kernel_shape[-1:]).astype(np.float32)}}
    path = tmp_path / "coco.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    before = snapshot(model, ALL_QUALNAMES)

    with pytest.raises(WeightsMismatchError) as info:
        load_weights_h5(model, path)

    msg = str(info.value)
    model_shape = tuple(named_vars(model.get_layer(head))["kernel"].shape)
    assert isinstance(info.value, ValueError)
    assert head in msg and "kernel" in msg and str(path) in msg
    assert str(kernel_shape) in msg and str(model_shape) in msg
    assert "NUM_CLASSES" in msg
    assert "exclude=['mrcnn_class_logits', 'mrcnn_bbox_fc', 'mrcnn_bbox', 'mrcnn_mask']" in msg
    # Everything is checked before anything is assigned.
    assert_unchanged(model, before)


def test_backbone_shape_mismatch_names_layer_and_fix(tmp_path, rng):
    model = build_model()
    spec = make_spec(model, rng)
    spec["conv1"]["conv1"]["kernel"] = np.zeros((3, 3, 3, 6), np.float32)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    with pytest.raises(WeightsMismatchError) as info:
        load_weights_h5(model, path)
    msg = str(info.value)
    assert "'conv1'" in msg and "kernel" in msg
    assert "(3, 3, 3, 6)" in msg and "(3, 3, 3, 4)" in msg
    assert "exclude=['conv1']" in msg
    assert "NUM_CLASSES" not in msg


def test_nested_layer_shape_mismatch_names_inner_layer(tmp_path, rng):
    model = build_model()
    spec = make_spec(model, rng)
    spec["rpn_model"]["rpn_class_raw"]["bias"] = np.zeros((6,), np.float32)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    expected = r"rpn_model/rpn_class_raw.*bias.*\(6,\).*\(4,\)"
    with pytest.raises(WeightsMismatchError, match=expected):
        load_weights_h5(model, path)


def test_weight_in_file_that_layer_lacks_is_an_error(tmp_path, rng):
    model = build_model(conv1_bias=False)
    spec = make_spec(build_model(conv1_bias=True), rng)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    with pytest.raises(WeightsMismatchError, match=r"conv1.*\bbias\b.*kernel"):
        load_weights_h5(model, path)


def test_weight_in_layer_that_file_lacks_is_an_error(tmp_path, rng):
    model = build_model(conv1_bias=True)
    spec = make_spec(build_model(conv1_bias=False), rng)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    with pytest.raises(WeightsMismatchError) as info:
        load_weights_h5(model, path)
    assert "conv1" in str(info.value) and "only in the model: [bias]" in str(info.value)


def test_layers_missing_on_either_side_are_reported_and_logged(tmp_path, rng, caplog):
    model = build_model()
    spec = make_spec(model, rng)
    del spec["mrcnn_mask"]
    del spec["rpn_model"]["rpn_bbox_pred"]
    spec["rpn_model"]["rpn_extra"] = {"kernel": np.ones((1, 1, 6, 2), np.float32)}
    spec["conv_extra"] = {"conv_extra": {"kernel": np.ones((1, 1, 4, 4), np.float32),
                                         "bias": np.ones((4,), np.float32)}}
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    before = snapshot(model, ["mrcnn_mask", "rpn_model/rpn_bbox_pred"])

    with caplog.at_level(logging.WARNING, logger="mrcnn.weights"):
        report = load_weights_h5(model, path, verbose=0)

    assert sorted(report.missing_in_file) == ["mrcnn_mask", "rpn_model/rpn_bbox_pred"]
    assert sorted(report.missing_in_model) == ["conv_extra", "rpn_model/rpn_extra"]
    assert_unchanged(model, before)
    loaded = [q for q in ALL_QUALNAMES if q not in ("mrcnn_mask", "rpn_model/rpn_bbox_pred")]
    assert_loaded(model, spec, loaded)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    text = "\n".join(warnings)
    for name in ["mrcnn_mask", "rpn_model/rpn_bbox_pred", "conv_extra", "rpn_model/rpn_extra"]:
        assert name in text
    assert "conv_extra" in str(report) and "rpn_model/rpn_bbox_pred" in str(report)


def test_long_missing_list_is_truncated_in_warning(tmp_path, rng, caplog):
    model = build_model()
    spec = make_spec(model, rng)
    for i in range(25):
        spec["extra_%02d" % i] = {"extra_%02d" % i: {"kernel": np.ones((2,), np.float32)}}
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    with caplog.at_level(logging.WARNING, logger="mrcnn.weights"):
        report = load_weights_h5(model, path, verbose=0)
    assert report.missing_in_model == ["extra_%02d" % i for i in range(25)]
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "extra_00" in message and "extra_09" in message
    assert "extra_10" not in message and "extra_24" not in message
    assert "and 15 more" in message and "25" in message


def test_save_load_round_trip_is_bit_exact(tmp_path, rng):
    source = build_model()
    randomize(source, rng)
    path = tmp_path / "mask_rcnn_0003.h5"
    save_weights_h5(source, path, attrs={"epoch": 3, "note": "shapes"})

    target = build_model()
    report = load_weights_h5(target, path)

    assert sorted(report.loaded) == sorted(ALL_QUALNAMES)
    assert len(source.weights) == len(target.weights) == 24
    for a, b in zip(source.weights, target.weights):
        assert a.path == b.path
        assert a.numpy().dtype == b.numpy().dtype
        assert a.numpy().tobytes() == b.numpy().tobytes(), a.path

    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == [layer.name for layer in source.layers]
        assert f.attrs["backend"] in (b"tensorflow", "tensorflow")
        version = f.attrs["keras_version"]
        assert (version.decode() if isinstance(version, bytes) else version) == keras.__version__
        np.testing.assert_array_equal(f["conv1"]["conv1/kernel:0"][()],
                                      source.get_layer("conv1").kernel.numpy())
        assert list(f["bn_conv1"].attrs["weight_names"]) == [
            b"bn_conv1/gamma:0", b"bn_conv1/beta:0", b"bn_conv1/moving_mean:0",
            b"bn_conv1/moving_variance:0"]
        assert list(f["mrcnn_class_conv1"].attrs["weight_names"]) == [
            b"mrcnn_class_conv1/kernel:0", b"mrcnn_class_conv1/bias:0"]
        assert list(f["rpn_model"].attrs["weight_names"]) == [
            ("%s/%s:0" % (n, s)).encode() for n in RPN_INNER for s in ("kernel", "bias")]
        assert len(f["activation_1"].attrs["weight_names"]) == 0

    attrs = read_attrs(path)
    assert attrs["epoch"] == 3 and attrs["note"] == "shapes"
    assert attrs["backend"] == "tensorflow" and attrs["keras_version"] == keras.__version__
    assert attrs["layer_names"] == [layer.name for layer in source.layers]

    arrays = read_weights_h5(path)
    assert sorted(arrays) == sorted(ALL_QUALNAMES)
    rpn_bbox = source.get_layer("rpn_model").get_layer("rpn_bbox_pred")
    np.testing.assert_array_equal(arrays["rpn_model/rpn_bbox_pred"]["bias"], rpn_bbox.bias.numpy())
    np.testing.assert_array_equal(arrays["bn_conv1"]["moving_variance"],
                                  source.get_layer("bn_conv1").moving_variance.numpy())


def test_read_weights_h5_of_hand_written_file(tmp_path, rng):
    model = build_model()
    spec = make_spec(model, rng)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec), under_model_weights=True)
    arrays = read_weights_h5(path)
    assert sorted(arrays) == sorted(ALL_QUALNAMES)
    for q in ALL_QUALNAMES:
        want = spec_arrays(spec, q)
        assert set(arrays[q]) == set(want)
        for short in want:
            np.testing.assert_array_equal(arrays[q][short], want[short])
    attrs = read_attrs(path)
    assert attrs["keras_version"] == "2.0.8" and attrs["model_config"].startswith("{")
    assert attrs["layer_names"] == file_layer_names(model, spec)


def _failing_create_dataset(monkeypatch, fail_at):
    original = h5py.Group.create_dataset
    calls = {"n": 0}

    def create_dataset(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("disk full (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    return calls


def test_save_is_atomic_when_writing_fails(tmp_path, rng, monkeypatch):
    model = build_model()
    randomize(model, rng)
    path = tmp_path / "weights.h5"
    save_weights_h5(model, path, attrs={"epoch": 1})
    old_bytes = path.read_bytes()

    randomize(model, rng)
    calls = _failing_create_dataset(monkeypatch, fail_at=5)
    with pytest.raises(RuntimeError, match="simulated"):
        save_weights_h5(model, path, attrs={"epoch": 2})

    assert calls["n"] == 5
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["weights.h5"]
    assert read_attrs(path)["epoch"] == 1


def test_failed_save_to_new_path_leaves_nothing(tmp_path, rng, monkeypatch):
    model = build_model()
    _failing_create_dataset(monkeypatch, fail_at=2)
    with pytest.raises(RuntimeError):
        save_weights_h5(model, tmp_path / "new.h5")
    assert os.listdir(tmp_path) == []


def test_save_replaces_existing_file(tmp_path, rng):
    model = build_model()
    path = tmp_path / "weights.h5"
    save_weights_h5(model, path, attrs={"epoch": 1})
    randomize(model, rng)
    save_weights_h5(model, path, attrs={"epoch": 2})
    assert os.listdir(tmp_path) == ["weights.h5"]
    assert read_attrs(path)["epoch"] == 2
    np.testing.assert_array_equal(read_weights_h5(path)["mrcnn_mask"]["kernel"],
                                  model.get_layer("mrcnn_mask").kernel.numpy())


def test_save_rejects_unstorable_attr_and_keeps_no_temp(tmp_path):
    model = build_model()
    with pytest.raises(ValueError, match="attrs\\['config'\\]"):
        save_weights_h5(model, tmp_path / "w.h5", attrs={"config": {"a": 1}})
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="layer_names"):
        save_weights_h5(model, tmp_path / "w.h5", attrs={"layer_names": ["x"]})


def test_save_into_missing_directory_names_it(tmp_path):
    target = tmp_path / "no_dir" / "w.h5"
    with pytest.raises(FileNotFoundError, match="no_dir"):
        save_weights_h5(build_model(), target)


def test_missing_file_error_names_path(tmp_path):
    path = tmp_path / "mask_rcnn_coco.h5"
    with pytest.raises(FileNotFoundError) as info:
        load_weights_h5(build_model(), path)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="mask_rcnn_coco.h5"):
        read_weights_h5(path)


def test_non_hdf5_file_error_names_path(tmp_path):
    path = tmp_path / "not_weights.h5"
    path.write_bytes(b"<html>404 Not Found</html>" * 10)
    with pytest.raises(WeightsFileError) as info:
        load_weights_h5(build_model(), path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_hdf5_error_names_path(tmp_path, rng):
    model = build_model()
    path = tmp_path / "partial_download.h5"
    save_weights_h5(model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError) as info:
        load_weights_h5(model, path)
    assert str(path) in str(info.value)


def test_hdf5_without_keras_layout_is_rejected(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 2)))
    with pytest.raises(WeightsFileError, match="layer_names"):
        load_weights_h5(build_model(), path)


def test_by_name_false_loads_in_layer_order(tmp_path, rng):
    model = build_model()
    weighted_tops = [layer.name for layer in model.layers if layer.weights]
    assert len(weighted_tops) == len(TOP_LEAVES) + 1
    # Keras 2 auto-generated names, weights in Keras' storage order.
    spec, renamed = {}, {}
    for i, top in enumerate(weighted_tops):
        group = "layer_%d" % i
        layer = model.get_layer(top)
        if top == "rpn_model":
            spec[group] = {"inner_%s" % n: random_arrays(layer.get_layer(n), rng)
                           for n in RPN_INNER}
        else:
            spec[group] = {group: random_arrays(layer, rng)}
        renamed[top] = group
    path = tmp_path / "w.h5"
    write_keras2(path, spec, ["input_1"] + list(spec) + ["activation_9"])

    report = load_weights_h5(model, path, by_name=False)

    assert sorted(report.loaded) == sorted(ALL_QUALNAMES)
    for q in ALL_QUALNAMES:
        outer, _, inner = q.partition("/")
        group = renamed[outer]
        want = spec[group]["inner_" + inner] if inner else spec[group][group]
        for short, var in named_vars(layer_by_qualname(model, q)).items():
            np.testing.assert_array_equal(var.numpy(), want[short], err_msg=q)

    # The same file by name: nothing matches, which is an error naming both sides and the fix.
    fresh = build_model()
    before = [v.numpy().copy() for v in fresh.weights]
    with pytest.raises(WeightsMismatchError) as info:
        load_weights_h5(fresh, path, by_name=True, verbose=0)
    message = str(info.value)
    assert str(path) in message and "another model" in message and "by_name=False" in message
    assert "layer_0" in message and "conv1" in message
    for v, b in zip(fresh.weights, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_by_name_false_with_exclude(tmp_path, rng):
    model = build_model()
    spec = make_spec(model, rng, reverse=False)
    layer_names = [layer.name for layer in model.layers]  # same order as the model
    path = tmp_path / "w.h5"
    write_keras2(path, spec, layer_names)
    before = snapshot(model, ["mrcnn_mask", "rpn_model/rpn_class_raw"])
    report = load_weights_h5(model, path, by_name=False, exclude=["mrcnn_mask", "rpn_class_raw"])
    assert_unchanged(model, before)
    assert sorted(report.skipped) == ["mrcnn_mask", "rpn_model/rpn_class_raw"]
    assert_loaded(model, spec, [q for q in ALL_QUALNAMES
                                if q not in ("mrcnn_mask", "rpn_model/rpn_class_raw")])


def test_by_name_false_count_mismatch_is_clear(tmp_path, rng):
    model = build_model()
    spec = make_spec(model, rng, reverse=False)
    del spec["mrcnn_mask"]
    path = tmp_path / "w.h5"
    write_keras2(path, spec, file_layer_names(model, spec))
    with pytest.raises(WeightsMismatchError, match=r"by_name=False.*9 top-level.*8"):
        load_weights_h5(model, path, by_name=False)


def test_chunked_layer_names_attribute_is_read(tmp_path, rng):
    model = build_model()
    spec = make_spec(model, rng)
    names = file_layer_names(model, spec)
    path = tmp_path / "w.h5"
    write_keras2(path, spec, names)
    with h5py.File(path, "a") as f:  # Keras 2 splits big attributes into numbered chunks
        del f.attrs["layer_names"]
        f.attrs["layer_names0"] = np.array([n.encode() for n in names[:7]])
        f.attrs["layer_names1"] = np.array([n.encode() for n in names[7:]])
    load_weights_h5(model, path)
    assert_loaded(model, spec, ALL_QUALNAMES)
    assert read_attrs(path)["layer_names"] == names


def test_values_are_cast_to_variable_dtype(tmp_path, rng):
    inp = keras.Input((3,), name="x")
    h = layers.Dense(4, dtype="float16", name="d16")(inp)
    out = layers.Dense(2, dtype="mixed_float16", name="dmix")(h)
    model = keras.Model(inp, out)
    arrays = {"d16": {"kernel": rng.standard_normal((3, 4)), "bias": rng.standard_normal(4)},
              "dmix": {"kernel": rng.standard_normal((4, 2)).astype(np.float32),
                       "bias": rng.standard_normal(2).astype(np.float32)}}
    spec = {name: {name: a} for name, a in arrays.items()}
    path = tmp_path / "w.h5"
    write_keras2(path, spec, ["x", "d16", "dmix"])
    load_weights_h5(model, path)
    d16 = model.get_layer("d16")
    assert d16.kernel.numpy().dtype == np.float16
    np.testing.assert_array_equal(d16.kernel.numpy(), arrays["d16"]["kernel"].astype(np.float16))
    dmix = model.get_layer("dmix")
    assert dmix.kernel.numpy().dtype == np.float32
    np.testing.assert_array_equal(dmix.bias.numpy(), arrays["dmix"]["bias"])


@pytest.mark.parametrize("filename", ["keras3.weights.h5", "keras3_named_plainly.h5"])
def test_keras3_weights_file_is_delegated(tmp_path, rng, filename):
    source = build_model()
    randomize(source, rng)
    path = tmp_path / filename
    source.save_weights(tmp_path / "keras3.weights.h5")
    if filename != "keras3.weights.h5":
        os.replace(tmp_path / "keras3.weights.h5", path)
    target = build_model()
    report = load_weights_h5(target, path, verbose=0)
    assert report.file_format == "keras3"
    assert sorted(report.loaded) == sorted(ALL_QUALNAMES)
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert sorted(os.listdir(tmp_path)) == [filename]


@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")
def test_keras3_weights_file_cannot_honour_exclude_or_other_architecture(tmp_path):
    source = build_model()
    path = tmp_path / "k3.weights.h5"
    source.save_weights(path)
    with pytest.raises(ValueError, match=r"exclude") as info:
        load_weights_h5(build_model(), path, exclude=["mrcnn_mask"])
    assert str(path) in str(info.value)
    with pytest.raises(WeightsMismatchError, match="Keras 3") as info:
        load_weights_h5(build_model(num_classes=5), path, verbose=0)
    assert str(path) in str(info.value)


def test_unbuilt_model_is_rejected(tmp_path):
    model = keras.Sequential([layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match="holds no weights"):
        load_weights_h5(model, tmp_path / "w.h5")


def test_long_layer_names_attribute_is_chunked_like_keras2(tmp_path, rng):
    # Over the 64 KB HDF5 object header limit: Keras 2 writes layer_names0, layer_names1, ...
    inp = keras.Input((2,), name="x")
    h = inp
    for i in range(140):
        h = layers.Identity(name="identity_%03d_" % i + "n" * 480)(h)
    out = layers.Dense(3, name="dense_out")(h)
    model = keras.Model(inp, out)
    model.get_layer("dense_out").kernel.assign(rng.standard_normal((2, 3)).astype(np.float32))
    path = tmp_path / "w.h5"
    save_weights_h5(model, path)
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f.attrs
        assert "layer_names0" in f.attrs and "layer_names1" in f.attrs
    assert read_attrs(path)["layer_names"] == [layer.name for layer in model.layers]
    fresh = keras.models.clone_model(model)
    load_weights_h5(fresh, path)
    np.testing.assert_array_equal(fresh.get_layer("dense_out").kernel.numpy(),
                                  model.get_layer("dense_out").kernel.numpy())


def test_saved_file_gets_ordinary_permissions(tmp_path):
    path = tmp_path / "w.h5"
    save_weights_h5(build_model(), path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
