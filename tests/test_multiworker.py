"""Training on several machines: MultiWorkerMirroredStrategy configured by TF_CONFIG, here two
worker processes on 127.0.0.1, each holding half of the batch, for two epochs with validation."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import zlib

import numpy as np

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

# argv: index (-1: one process, no strategy), comma-separated ports, model_dir, result file, seed
SCRIPT = textwrap.dedent("""
    import json, os, sys
    index, ports, model_dir, result, seed = sys.argv[1:6]
    index = int(index)
    if index >= 0:
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": ["127.0.0.1:%s" % p for p in ports.split(",")]},
            "task": {"type": "worker", "index": index}})
    sys.path[:0] = [ROOT, TESTS]
    import mrcnn  # noqa: F401  (before TensorFlow: its settings)
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if index >= 0 else None
    import keras
    from conftest import TinyConfig
    import mrcnn.model as modellib
    from mrcnn.datasets.synthetic import SyntheticShapesDataset
    from mrcnn.training.trainer import train

    class Cfg(TinyConfig):
        NAME = "multi"
        IMAGES_PER_GPU = 1 if index >= 0 else 2      # each worker half of the batch
        STEPS_PER_EPOCH = 3
        VALIDATION_STEPS = 1

    class Steps(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.logs = []

        def on_train_batch_end(self, batch, logs=None):
            self.logs.append({k: float(v) for k, v in logs.items()})

    keras.utils.set_random_seed(0)
    dataset = SyntheticShapesDataset()
    dataset.load_shapes(8, 128, 128, seed=1)
    dataset.prepare()
    if strategy is not None:
        with strategy.scope():
            model = modellib.MaskRCNN("training", Cfg(), model_dir)
    else:
        model = modellib.MaskRCNN("training", Cfg(), model_dir)
    # The same starting weights everywhere: the one process saves them, the workers load them.
    initial = os.path.join(os.path.dirname(result), "initial.h5")
    if index < 0:
        model.save_weights(initial)
    else:
        model.load_weights(initial, by_name=True)
        model.set_log_dir()   # a new run, not a continuation of the file's
    steps = Steps()
    # Two epochs with validation: each epoch must get its batches (Keras keeps one iterator).
    history = train(model, dataset, dataset, 0.001, 2, "heads", custom_callbacks=[steps],
                    seed=None if index >= 0 else int(seed))
    with open(result, "w") as f:
        json.dump({"steps": steps.logs, "epoch": model.epoch,
                   "val_loss": [float(v) for v in history.history["val_loss"]]}, f)
""").replace("ROOT, TESTS", repr(ROOT) + ", " + repr(TESTS))


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_train_as_one_process_on_the_whole_batch(tmp_path):
    ports = _free_ports(2)
    spec = {"worker": ["127.0.0.1:%d" % p for p in ports]}
    seed = zlib.crc32(json.dumps(spec, sort_keys=True).encode())   # what the workers share
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)

    def start(index):
        args = [sys.executable, str(script), str(index), ",".join(map(str, ports)),
                str(tmp_path / ("logs%d" % index)), str(tmp_path / ("result%d.json" % index)),
                str(seed)]
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    # One process on the whole batch first (it writes the starting weights), then the workers.
    for group in ([-1], [0, 1]):
        procs = [start(i) for i in group]
        try:
            outputs = [p.communicate(timeout=300)[0] for p in procs]
        finally:
            for p in procs:
                p.kill()
        for p, out in zip(procs, outputs):
            assert p.returncode == 0, out[-4000:]
    chief, other, single = (json.loads((tmp_path / ("result%d.json" % i)).read_text())
                            for i in (0, 1, -1))
    assert len(chief["steps"]) == len(single["steps"]) == len(other["steps"]) == 6
    assert chief["epoch"] == other["epoch"] == 2
    assert len(chief["val_loss"]) == 2 and np.all(np.isfinite(chief["val_loss"]))
    # The workers stay in step with each other.
    for step in range(3):
        for name, value in chief["steps"][step].items():
            assert np.isclose(value, other["steps"][step][name], rtol=1e-5), (step, name)
    # Before any update, the workers' halves give the whole batch's losses: those averaged over
    # a fixed number of samples per image (anchors, ROIs) to rounding, the total (which also
    # averages over each image's positives: per worker, or over the batch) closely.
    for name in ("rpn_class_loss", "mrcnn_class_loss"):
        np.testing.assert_allclose(chief["steps"][0][name], single["steps"][0][name], rtol=1e-4,
                                   err_msg=name)
    np.testing.assert_allclose(chief["steps"][0]["loss"], single["steps"][0]["loss"], rtol=0.1)
    # After updates they train alike (gradient clipping and those per-positive averages act on
    # each worker's gradient, so the runs are not identical).
    for step in (1, 2):
        np.testing.assert_allclose(chief["steps"][step]["loss"], single["steps"][step]["loss"],
                                   rtol=0.15, err_msg="step %d" % step)
    # Only the chief writes checkpoints and logs, and leaves no temporary file.
    runs = os.listdir(tmp_path / "logs0")
    assert len(runs) == 1
    files = os.listdir(tmp_path / "logs0" / runs[0])
    assert {"mask_rcnn_multi_0001.h5", "mask_rcnn_multi_0002.h5"} <= set(files)
    assert not [f for f in files if ".tmp" in f]
    assert not os.path.exists(tmp_path / "logs1") or not os.listdir(tmp_path / "logs1")


def test_worker_batches_feed_every_epoch():
    """Keras keeps one iterator of a dataset of unknown length for all epochs when
    steps_per_epoch is set: the worker's dataset must go on pass after pass (a single pass left
    epoch 2 without data: "Your input ran out of data", an epoch of no steps). Worker 1 of 2,
    in one process under the default strategy."""
    import warnings

    import keras
    import tensorflow as tf

    from mrcnn.training.trainer import _worker_batches

    class Sequence:
        def __len__(self):
            return 6

        def batch_at(self, epoch, idx):
            return {"x": np.full((1, 2), epoch * 100 + idx, np.float32)}

        def __getitem__(self, idx):
            return self.batch_at(0, idx)

    seen = []

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def train_step(self, data):
            tf.py_function(lambda v: seen.append(int(v[0, 0])), [data["x"]], [])
            return {"n": tf.reduce_sum(data["x"])}

    model = Recorder()
    model.compile(optimizer="sgd")
    model(np.zeros((1, 2), np.float32))
    data = _worker_batches(tf.distribute.get_strategy(), Sequence(), 1, 2)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*ran out of data")
        history = model.fit(data, epochs=3, steps_per_epoch=3, verbose=0, shuffle=False)
    assert len(history.epoch) == 3
    assert seen == [1, 3, 5, 101, 103, 105, 201, 203, 205]
