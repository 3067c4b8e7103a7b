"""Corrupt, foreign and half-written weights files; a full disk while saving (issue 14).

Every bad file gives one error of the library's own (WeightsFileError or WeightsMismatchError)
naming the file, the model is left as it was, and ``checkpoint_problem`` (the cheap check that
find_last/find_best use) flags it. Loading never deserializes code from a file.
"""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest

from test_weights_io import build_model
from mrcnn import weights as weights_io
from mrcnn.weights import (DiskFullError, WeightsFileError, WeightsMismatchError,
                           checkpoint_problem, load_weights_h5, save_weights_h5)

LIBRARY_ERRORS = (WeightsFileError, WeightsMismatchError)


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture
def good(tmp_path, model):
    path = tmp_path / "mask_rcnn_tiny_0001.h5"
    save_weights_h5(model, path, attrs={"epoch": 1})
    return path


def values(model):
    return [v.numpy().copy() for v in model.weights]


def assert_rejected(model, path, error=LIBRARY_ERRORS, match=None, cheap_check_flags=True):
    """``cheap_check_flags``: the damage is in the file's structure, which checkpoint_problem
    sees (it does not read weight groups and values)."""
    before = values(model)
    with pytest.raises(error) as info:
        load_weights_h5(model, path, by_name=True, verbose=0)
    message = str(info.value)
    assert os.fspath(path) in message, message
    if match:
        assert match in message, message
    for v, b in zip(model.weights, before):
        np.testing.assert_array_equal(v.numpy(), b)
    if cheap_check_flags:
        assert checkpoint_problem(path) is not None
    return message


def test_good_checkpoint_passes_the_cheap_check(good):
    assert checkpoint_problem(good) is None


def test_zero_byte_file(tmp_path, model):
    path = tmp_path / "empty.h5"
    path.write_bytes(b"")
    assert_rejected(model, path, WeightsFileError, "not an HDF5")
    assert checkpoint_problem(path) == "is empty"


def test_text_file_named_h5(tmp_path, model):
    path = tmp_path / "weights.h5"
    path.write_text("<html>404 Not Found</html>\n")
    assert_rejected(model, path, WeightsFileError, "not an HDF5")


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
def test_truncated_file(tmp_path, model, good, fraction):
    data = good.read_bytes()
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[:max(8, int(len(data) * fraction))])
    assert_rejected(model, path, WeightsFileError)


def test_signature_then_garbage(tmp_path, model):
    path = tmp_path / "garbage.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(4096))
    assert_rejected(model, path, WeightsFileError)


def test_hdf5_file_of_another_kind(tmp_path, model):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3)))
    assert_rejected(model, path, WeightsFileError, "layer_names")


def test_weights_file_of_another_model(tmp_path, model):
    inp = keras.Input((4,))
    other = keras.Model(inp, keras.layers.Dense(2, name="dense_classifier")(inp))
    path = tmp_path / "classifier.h5"
    save_weights_h5(other, path)
    assert checkpoint_problem(path) is None  # a sound file, of the wrong model
    assert_rejected(model, path, WeightsMismatchError, "another model", cheap_check_flags=False)


def test_checkpoint_of_another_num_classes(tmp_path, model):
    path = tmp_path / "five_classes.h5"
    save_weights_h5(build_model(num_classes=5), path)
    message = assert_rejected(model, path, WeightsMismatchError, "NUM_CLASSES",
                              cheap_check_flags=False)
    assert "exclude=" in message


def test_non_numeric_weight_values(tmp_path, model, good):
    path = tmp_path / "strings.h5"
    path.write_bytes(good.read_bytes())
    with h5py.File(path, "r+") as f:
        group = f["conv1"]
        name = [n.decode() for n in group.attrs["weight_names"]][0]
        del group[name]
        group.create_dataset(name, data=np.array(["x"] * 3, dtype=h5py.string_dtype()))
    assert_rejected(model, path, LIBRARY_ERRORS, cheap_check_flags=False)


def test_listed_group_missing(tmp_path, model, good):
    path = tmp_path / "nogroup.h5"
    path.write_bytes(good.read_bytes())
    with h5py.File(path, "r+") as f:
        del f["conv1"]
    assert_rejected(model, path, WeightsFileError, "conv1", cheap_check_flags=False)


WRITER = textwrap.dedent("""
    import os, sys
    import h5py, numpy as np
    f = h5py.File(sys.argv[1], "w")
    f.attrs["layer_names"] = np.array([b"conv1", b"bn_conv1"])
    g = f.create_group("conv1")
    g.attrs["weight_names"] = np.array([b"conv1/kernel:0", b"conv1/bias:0"])
    g.create_dataset("conv1/kernel:0", data=np.ones((3, 3, 3, 4), np.float32))
    f.flush()
    g.create_dataset("conv1/bias:0", data=np.ones((4,), np.float32))
    os.kill(os.getpid(), 9)  # killed in the middle of writing: the file is never closed
""")


def test_file_whose_write_was_interrupted(tmp_path, model):
    """A file another program was writing when it was killed (not one of ours: ours are
    written to a hidden temporary name and renamed once complete)."""
    path = tmp_path / "interrupted.h5"
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path)])
    assert proc.returncode == -signal.SIGKILL
    assert path.exists()
    assert_rejected(model, path, LIBRARY_ERRORS, cheap_check_flags=False)


def test_loading_never_deserializes_code(tmp_path, model, good, monkeypatch):
    """A file may carry a model_config with a Lambda layer (marshalled bytecode) and pickled
    bytes; loading reads only layer_names, weight_names and numeric datasets."""
    path = tmp_path / "with_config.h5"
    path.write_bytes(good.read_bytes())
    lam = {"class_name": "Lambda", "config": {"function": ["4wAAAAAAAAAA", None, None],
                                              "function_type": "lambda"}}
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {
            "layers": [lam]}}).encode()
        f.attrs["training_config"] = np.void(pickle.dumps(os.system))

    def forbidden(*args, **kwargs):
        raise AssertionError("loading deserialized something")

    for module, name in [(pickle, "loads"), (pickle, "load"), (keras.saving, "load_model"),
                         (keras.saving, "deserialize_keras_object"),
                         (keras.models, "model_from_json")]:
        monkeypatch.setattr(module, name, forbidden)
    import marshal
    monkeypatch.setattr(marshal, "loads", forbidden)
    report = load_weights_h5(model, path, by_name=True, verbose=0)
    assert report.loaded and not report.missing_in_file
    assert weights_io.read_attrs(path)["epoch"] == 1


def test_weights_module_has_no_deserializer():
    """Static check of the same promise: the module's code (its names, not its messages) uses no
    pickle, marshal, eval/exec or Keras model deserialization."""
    import ast
    tree = ast.parse(open(weights_io.__file__).read())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            used.update(a.name for a in node.names)
            used.add(getattr(node, "module", None) or "")
    forbidden = {"pickle", "marshal", "dill", "eval", "exec", "load_model", "model_from_json",
                 "model_from_config", "deserialize_keras_object", "deserialize", "from_config"}
    assert not used & forbidden, used & forbidden


# ---------------------------------------------------------------------------------- disk full
def _fail_halfway(monkeypatch, exc):
    """Make the HDF5 writer fail with ``exc`` after half of the datasets were written."""
    real = h5py.Group.create_dataset
    calls = {"n": 0}

    def create_dataset(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 6:
            raise exc
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    return calls


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    # How HDF5 itself reports it, without an errno on the exception.
    OSError("Unable to synchronously write data (file write failed: time = Wed Dec  2, "
            "filename = 'x', file descriptor = 5, errno = 28, error message = 'No space left "
            "on device', buf = 0x1, total write size = 64, bytes this sub-write = 64, bytes "
            "actually written = 18446744073709551615, offset = 2048)"),
], ids=["errno", "hdf5-message"])
def test_disk_full_keeps_previous_checkpoint_and_says_so(tmp_path, model, good, monkeypatch, exc):
    before = good.read_bytes()
    calls = _fail_halfway(monkeypatch, exc)
    with pytest.raises(DiskFullError) as info:
        save_weights_h5(model, good, attrs={"epoch": 2})
    assert calls["n"] > 6  # it did fail halfway
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert "disk is full" in message and str(good) in message and "unchanged" in message
    assert good.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [good.name]  # no .tmp residue
    monkeypatch.undo()
    assert checkpoint_problem(good) is None
    assert weights_io.read_attrs(good)["epoch"] == 1


def test_other_write_errors_are_not_called_disk_full(tmp_path, model, good, monkeypatch):
    _fail_halfway(monkeypatch, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError) as info:
        save_weights_h5(model, good)
    assert not isinstance(info.value, DiskFullError)
    assert sorted(os.listdir(tmp_path)) == [good.name]
