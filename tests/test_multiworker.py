"""Training on several machines: MultiWorkerMirroredStrategy configured by TF_CONFIG, here two
worker processes on 127.0.0.1, each holding one image of the batch, for two epochs with
validation, against one process running MirroredStrategy over two logical CPUs (one image per
replica): the same computation, so the same losses step by step."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import types
import zlib

import numpy as np
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

# argv: index (-1: one process, MirroredStrategy over two logical CPUs), comma-separated ports,
# model_dir, result file, seed
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
    if index >= 0:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    import keras
    from conftest import TinyConfig
    import mrcnn.model as modellib
    from mrcnn.datasets.synthetic import SyntheticShapesDataset
    from mrcnn.training.trainer import train

    class Cfg(TinyConfig):
        NAME = "multi"
        IMAGES_PER_GPU = 1 if index >= 0 else 2      # one image per worker / per replica
        STEPS_PER_EPOCH = 3
        VALIDATION_STEPS = 1
        # Every proposal is a sampling candidate and only positives are kept, so the ROI sample
        # is all positive proposals: no random draw that would differ between the runs.
        TRAIN_ROIS_PER_IMAGE = TinyConfig.POST_NMS_ROIS_TRAINING
        ROI_POSITIVE_RATIO = 1.0

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
    with strategy.scope():
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
    assert model.strategy is strategy
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


def test_two_workers_train_as_one_process_with_two_replicas(tmp_path):
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

    # The one process first (it writes the starting weights), then the workers.
    for group in ([-1], [0, 1]):
        procs = [start(i) for i in group]
        try:
            # Generous: two TensorFlow processes on two cores beside the other xdist worker.
            outputs = [p.communicate(timeout=600)[0] for p in procs]
        finally:
            for p in procs:
                p.kill()
        for p, out in zip(procs, outputs):
            assert p.returncode == 0, out[-4000:]
    chief, other, single = (json.loads((tmp_path / ("result%d.json" % i)).read_text())
                            for i in (0, 1, -1))
    assert len(chief["steps"]) == len(single["steps"]) == len(other["steps"]) == 6
    assert chief["epoch"] == other["epoch"] == 2
    # The workers report the same (averaged) results.
    for step in range(6):
        for name, value in chief["steps"][step].items():
            assert np.isclose(value, other["steps"][step][name], rtol=1e-5), (step, name)
    # Step by step, every loss is the two-replica process's: the workers got its images (worker
    # i the image of replica i), took the same updates, and averaged the same way. The first
    # step is before any update; later ones differ only by the rounding of separately threaded
    # kernels, carried through the updates.
    assert set(chief["steps"][0]) == set(single["steps"][0]) >= {"loss", "rpn_bbox_loss"}
    for step in range(6):
        for name, value in single["steps"][step].items():
            np.testing.assert_allclose(chief["steps"][step][name], value,
                                       rtol=1e-4 if step == 0 else 2e-3, atol=1e-5,
                                       err_msg="step %d, %s" % (step, name))
    np.testing.assert_allclose(chief["val_loss"], single["val_loss"], rtol=2e-3)
    assert np.all(np.isfinite(chief["val_loss"]))
    # Only the chief writes checkpoints and logs, and leaves no temporary file.
    runs = os.listdir(tmp_path / "logs0")
    assert len(runs) == 1
    files = os.listdir(tmp_path / "logs0" / runs[0])
    assert {"mask_rcnn_multi_0001.h5", "mask_rcnn_multi_0002.h5"} <= set(files)
    assert not [f for f in files if ".tmp" in f]
    assert not os.path.exists(tmp_path / "logs1") or not os.listdir(tmp_path / "logs1")


def test_worker_batches_feed_every_epoch_and_validation():
    """Keras keeps one iterator of a dataset of unknown length for all epochs when
    steps_per_epoch is set: the worker's training dataset must go on pass after pass (a single
    pass left epoch 2 without data: "Your input ran out of data", an epoch of no steps). Its
    validation makes a new iterator every epoch, which must read the next pass (an endless one
    there had been run ahead by the abandoned iterator's prefetch: the second validation read
    a later pass, on each worker whichever its prefetch had reached). Passes count from the
    sequence's first_pass (a resumed run's epoch). Worker 1 of 2, in one process under the
    default strategy."""
    import warnings

    import keras
    import tensorflow as tf

    from mrcnn.training.trainer import _worker_batches

    class Sequence:
        def __init__(self, length, offset, first_pass=0):
            self.length, self.offset, self.first_pass = length, offset, first_pass

        def __len__(self):
            return self.length

        def batch_at(self, epoch, idx):
            return {"x": np.full((1, 2), self.offset + epoch * 100 + idx, np.float32)}

        def __getitem__(self, idx):
            return self.batch_at(0, idx)

    seen = {"train": [], "val": []}

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def _record(self, data, key):
            tf.py_function(lambda v: seen[key].append(int(v[0, 0])), [data["x"]], [])
            return {"n": tf.reduce_sum(data["x"])}

        def train_step(self, data):
            return self._record(data, "train")

        def test_step(self, data):
            return self._record(data, "val")

    model = Recorder()
    model.compile(optimizer="sgd")
    model(np.zeros((1, 2), np.float32))
    strategy = tf.distribute.get_strategy()
    data = _worker_batches(strategy, Sequence(6, 0), 1, 2)
    # Validation of a run resumed at epoch 1: passes count from there.
    val = _worker_batches(strategy, Sequence(4, 1000, first_pass=1), 1, 2,
                          pass_per_iterator=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*ran out of data")
        history = model.fit(data, epochs=3, steps_per_epoch=3, validation_data=val,
                            validation_steps=2, verbose=0, shuffle=False)
    assert len(history.epoch) == 3
    assert seen["train"] == [1, 3, 5, 101, 103, 105, 201, 203, 205]
    assert seen["val"] == [1101, 1103, 1201, 1203, 1301, 1303]


def test_a_worker_with_several_replicas_is_refused():
    """Each worker gets one whole batch per step, which needs one replica per worker: a worker
    whose strategy spans several GPUs is told how to run instead (one process per GPU)."""
    from mrcnn.training.trainer import check_one_replica_per_worker

    check_one_replica_per_worker(types.SimpleNamespace(num_replicas_in_sync=2), 2)
    with pytest.raises(ValueError, match=r"2 workers has 4 replicas.*one worker process per GPU"
                                         r".*CUDA_VISIBLE_DEVICES"):
        check_one_replica_per_worker(types.SimpleNamespace(num_replicas_in_sync=4), 2)
