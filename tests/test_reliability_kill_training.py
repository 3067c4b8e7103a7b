"""Kill a real training anywhere (issue 14): a subprocess runs ``MaskRCNN.train()`` on a tiny
config (64 px images, ResNet-18, two steps and one validation step per epoch) and is SIGKILLed
at a moment chosen by seed, during a training step, during validation, during a checkpoint
write or during best-checkpoint marking. The next process resumes from ``find_last()`` and is
killed in turn at the next kill point; a last process completes two more epochs.

The child reports what it does through a pipe (markers written before and after each step,
validation step, checkpoint write, best.json write and ``_best.h5`` link), so the parent waits
for the chosen moment rather than guessing it, then kills after a seeded random delay within it.
The assertions hold wherever the kill lands. After each kill:

* every file with a checkpoint name is complete, carries its epoch, and ``find_last()`` is the
  last epoch fully written: no epoch the child reported written was lost, and its weights are
  the ones the child had when it wrote that epoch (a digest of every array);
* ``best.json`` names the epoch with the lowest metric among those written (the one just
  written may be missing when the kill fell between its write and its marking), ``find_best()``
  holds that epoch, and ``_best.h5`` holds it too unless the kill fell between the two renames;
* the only temporary file is the one being written when the kill came (what earlier kills left
  was removed when the next process started training);
* the next process loads ``find_last()`` (``load_weights``) and starts at the epoch after it.

The last process completes, leaves no temporary file, ``_best.h5`` is ``best.json``'s
checkpoint and ``history.csv`` has each epoch once.

The metric the checkpoint callback compares is scripted (``100 / epoch``, three times that for
some epochs), so the parent knows which epochs mark a new best: validation still runs, but its
loss on a barely trained model is noise. Runs that are to be killed while marking linger 50 ms
before best.json's rename, between it and the link, and before the link's rename, so kills land
in each of those steps. In the other windows (a step, validation, the 46 MB checkpoint write
with its fsync) the delay is drawn within the shortest such window timed so far (``_shortest``).
Where each kill landed is reported (``-s``) from the last marker the child sent.

Default run: ``KINDS`` in one chain (one kill point of each kind, five processes, 80 to 100 s
on 2 cores: each process imports TensorFlow and traces the train and test steps). ``-m slow``:
``SLOW_CHAINS`` chains of four with other seeds; every kind must land inside its window at least
once.
"""

import hashlib
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

from mrcnn import weights as weights_io

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
KINDS = ("step", "validation", "checkpoint", "best")
SLOW_CHAINS = 6
DEADLINE = 300  # seconds a child may take to reach its kill point (or to finish)
LINGER = 0.05

CHILD = textwrap.dedent("""
    import hashlib, json, os, sys, time
    model_dir, fd, epochs, worse, linger = sys.argv[1:6]
    fd, epochs, linger = int(fd), int(epochs), float(linger)
    worse = {int(e) for e in worse.split(",") if e}
    sys.path[:0] = REPO_AND_TESTS
    import numpy as np
    import keras
    from conftest import TinyConfig
    from mrcnn import model as modellib
    from mrcnn.datasets.synthetic import SyntheticShapesDataset
    from mrcnn.training import trainer


    def mark(*words):
        os.write(fd, (" ".join(str(w) for w in words) + "\\n").encode())


    def digest(arrays):
        parts = sorted(hashlib.sha256(np.ascontiguousarray(a).tobytes()).digest() for a in arrays)
        return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


    class Cfg(TinyConfig):
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 64
        STEPS_PER_EPOCH = 2
        VALIDATION_STEPS = 1


    def shapes(count, seed):
        d = SyntheticShapesDataset()
        d.load_shapes(count, 64, 64, seed=seed, max_shapes=2)
        d.prepare()
        return d


    def metric(epoch):  # what the checkpoint callback compares (see the module docstring)
        return 100.0 / epoch * (3.0 if epoch in worse else 1.0)


    real_end = trainer.CheckpointCallback.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        real_end(self, epoch, dict(logs or {}, val_loss=metric(epoch + 1)))

    trainer.CheckpointCallback.on_epoch_end = on_epoch_end

    real_save = modellib.MaskRCNN.save_weights

    def save_weights(self, path, **attrs):
        mark("ckpt", attrs["epoch"], digest(v.numpy() for v in self.keras_model.weights))
        real_save(self, path, **attrs)
        mark("ckpt-done", attrs["epoch"])

    modellib.MaskRCNN.save_weights = save_weights

    real_write, real_link, real_replace = trainer._write_atomic, trainer._link_atomic, os.replace

    def write_atomic(path, data):
        if not path.endswith("best.json"):
            return real_write(path, data)
        epoch = json.loads(data)["epoch"]
        mark("best", epoch)
        real_write(path, data)
        mark("best-done", epoch)

    def link_atomic(source, target):
        time.sleep(linger)  # between best.json and the link
        epoch = int(source[-7:-3])
        mark("link", epoch)
        real_link(source, target)
        mark("link-done", epoch)

    def replace(source, target):
        if target.endswith(("best.json", "_best.h5")):
            time.sleep(linger)  # the new file is complete, not yet renamed
        real_replace(source, target)

    trainer._write_atomic, trainer._link_atomic, os.replace = write_atomic, link_atomic, replace


    class Markers(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            mark("begin")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            mark("epoch", self.epoch)

        def on_train_batch_begin(self, batch, logs=None):
            mark("step", self.epoch, batch)

        def on_train_batch_end(self, batch, logs=None):
            mark("step-done", self.epoch, batch)

        def on_test_batch_begin(self, batch, logs=None):
            mark("val", self.epoch, batch)

        def on_test_batch_end(self, batch, logs=None):
            mark("val-done", self.epoch, batch)


    keras.utils.set_random_seed(epochs)
    model = modellib.MaskRCNN("training", Cfg(), model_dir)
    try:
        last = model.find_last()
    except FileNotFoundError:
        last = None
    if last:
        model.load_weights(last, by_name=True)
    mark("loaded", model.epoch, last)
    model.train(shapes(4, 1), shapes(2, 2), 0.001, epochs=epochs, layers="heads",
                custom_callbacks=[Markers()])
    mark("end", model.epoch)
""").replace("REPO_AND_TESTS", repr([REPO, TESTS]))

NUMBERED = re.compile(r"mask_rcnn_tiny_(\d{4})\.h5$")
CHECKPOINT_TMP = re.compile(r"\.mask_rcnn_tiny_(\d{4})\.h5\.[0-9a-f]{12}\.tmp$")
BEST = "mask_rcnn_tiny_best.h5"


def _digest(path):
    arrays = [a for layer in weights_io.read_weights_h5(path).values() for a in layer.values()]
    parts = sorted(hashlib.sha256(np.ascontiguousarray(a).tobytes()).digest() for a in arrays)
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


class Child:
    """One training process; ``markers`` are the lines it reported, as tuples of words."""

    def __init__(self, model_dir, epochs, worse, linger, log):
        read, write = os.pipe()
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(model_dir), str(write), str(epochs),
                 ",".join(map(str, sorted(worse))), str(linger)],
                pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=err,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        os.close(write)
        self.fd, self.buffer, self.markers = read, b"", []
        self.times = []  # when each marker arrived (how long each window lasts, `_shortest`)

    def next(self, deadline):
        """The next marker, or None once the child has exited and said everything."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                self.proc.kill()
                raise AssertionError("child gave no marker in time; stderr:\n" + self._stderr())
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        words = line.decode().split()
        # Numbers become ints, except a ckpt marker's weights digest: hex that may be all digits.
        marker = tuple(int(w) if w.isdigit() and not (words[0] == "ckpt" and i == 2) else w
                       for i, w in enumerate(words))
        self.markers.append(marker)
        self.times.append(time.monotonic())
        return marker

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.drain()

    def drain(self):
        deadline = time.monotonic() + DEADLINE
        while self.next(deadline) is not None:
            pass
        os.close(self.fd)

    def _stderr(self):
        with open(self.log) as f:
            return f.read()[-4000:]


def _target(kind, start, rng, fresh):
    """The marker to kill at: an epoch of this process (not the first for a fresh run, so that
    a checkpoint exists), and a step within it."""
    epoch = start + 1 + rng.choice([1] if fresh else [0, 1])
    if kind == "step":
        batch = rng.choice([0, 1])
        return lambda m: m[:3] == ("step", epoch, batch)
    if kind == "validation":
        return lambda m: m[:3] == ("val", epoch, 0)
    if kind == "checkpoint":
        return lambda m: m[:2] == ("ckpt", epoch)
    # A best marking at that epoch or the next (never two 'worse' epochs in a row); markings
    # of earlier epochs are the ones train() redoes when it starts (kills there are not aimed).
    return lambda m: m[0] == "best" and m[1] >= epoch


WINDOWS = {"step": ("step", "step-done"), "validation": ("val", "val-done"),
           "checkpoint": ("ckpt", "ckpt-done")}
FIRST_GUESS = {"step": 0.05, "validation": 0.02, "checkpoint": 0.1}  # seconds, none timed yet


def _shortest(kind, children):
    """The shortest a ``kind`` window (from its marker to its -done marker) has lasted so far,
    outside each process's first epoch: there the first step and validation trace their
    function and take seconds, the others tens of milliseconds. A delay within the shortest
    lands inside the window, in the first epoch or a later one."""
    begin, end = WINDOWS[kind]
    seen = []
    for child in children:
        started, first = None, None
        for marker, when in zip(child.markers, child.times):
            if marker[0] == "epoch" and first is None:
                first = marker[1]
            if marker[0] == begin and marker[1] != first:
                started = when
            elif marker[0] == end and started is not None:
                seen.append(when - started)
                started = None
    return min(seen, default=FIRST_GUESS[kind])


def _delay(kind, rng, state, child):
    """How long after the target marker to kill: a random moment within the window."""
    if kind == "best":  # best.json's write, the gap before the link, the link's write
        return rng.uniform(0.0, 3.3 * LINGER)
    return rng.uniform(0.0, _shortest(kind, state.children + [child]))


def _landed(markers):
    """Where the kill fell, from the last thing the child said it was doing."""
    last = markers[-1]
    return {"step": "training step", "step-done": "between steps", "val": "validation",
            "val-done": "after validation", "ckpt": "checkpoint write",
            "ckpt-done": "between checkpoint and best.json", "best": "best.json write",
            "best-done": "between best.json and link", "link": "best link write",
            "link-done": "after best marking", "epoch": "epoch start"}.get(last[0], last[0])


class State:
    """What the children reported over a chain: the digest of each epoch's weights as last
    written, the epochs whose write completed, the metric of each epoch; the children."""

    def __init__(self, worse):
        self.worse = worse
        self.digests, self.done, self.last = {}, set(), 0
        self.children = []

    def metric(self, epoch):
        return 100.0 / epoch * (3.0 if epoch in self.worse else 1.0)

    def best_up_to(self, epoch):
        return min(range(1, epoch + 1), key=self.metric) if epoch else None

    def absorb(self, child):
        self.children.append(child)
        for marker in child.markers:
            if marker[0] == "ckpt":
                self.digests[marker[1]] = marker[2]
            elif marker[0] == "ckpt-done":
                self.done.add(marker[1])


def _check_after_kill(model_dir, state, child, final=False):
    """The run directory after ``child`` was killed (or completed). Returns find_last's epoch."""
    from mrcnn.model.core import MaskRCNN
    facade = types.SimpleNamespace(config=types.SimpleNamespace(NAME="tiny"),
                                   model_dir=str(model_dir))
    runs = os.listdir(model_dir)
    assert len(runs) == 1, runs
    log_dir = os.path.join(model_dir, runs[0])
    names = set(os.listdir(log_dir))
    last = child.markers[-1] if not final else ("end",)

    # Temporary files: only the one being written when the kill came.
    temporaries = {n for n in names if n.endswith(".tmp")}
    allowed = set()
    if last[0] == "ckpt":
        allowed = {n for n in temporaries if CHECKPOINT_TMP.match(n)
                   and int(CHECKPOINT_TMP.match(n).group(1)) == last[1]}
    elif last[0] in ("best", "link"):
        allowed = {"best.json.tmp" if last[0] == "best" else BEST + ".tmp"} & temporaries
    assert temporaries == allowed, (temporaries, last)
    assert names - temporaries <= ({"best.json", BEST, "history.csv", "train", "validation"}
                                   | {n for n in names if NUMBERED.match(n)}), names

    # Checkpoints: complete, each its epoch; find_last is the last one and lost nothing.
    numbered = sorted(int(NUMBERED.match(n).group(1)) for n in names if NUMBERED.match(n))
    for epoch in numbered:
        path = os.path.join(log_dir, "mask_rcnn_tiny_%04d.h5" % epoch)
        assert weights_io.checkpoint_problem(path) is None, path
        assert weights_io.read_attrs(path)["epoch"] == epoch
    found = MaskRCNN.find_last(facade)
    epoch = weights_io.read_attrs(found)["epoch"]
    assert found == os.path.join(log_dir, "mask_rcnn_tiny_%04d.h5" % epoch)
    assert epoch == numbered[-1]
    done = max(state.done, default=0)
    assert epoch >= done >= state.last  # nothing reported written was lost
    if epoch > done:  # renamed; killed before it could say so
        assert last[:2] == ("ckpt", epoch), last
    assert _digest(found) == state.digests[epoch]  # it loads in full: that epoch's weights

    # best.json names the best epoch written; find_best and _best.h5 hold it.
    with open(os.path.join(log_dir, "best.json")) as f:
        record = json.load(f)
    marking = last[:2] in (("ckpt", epoch), ("ckpt-done", epoch), ("best", epoch))
    assert (record["epoch"] == state.best_up_to(epoch)
            or (marking and record["epoch"] == state.best_up_to(epoch - 1))), (record, last)
    assert record["checkpoint"] == "mask_rcnn_tiny_%04d.h5" % record["epoch"]
    assert record["value"] == state.metric(record["epoch"])
    best = MaskRCNN.find_best(facade)
    assert weights_io.read_attrs(best)["epoch"] == record["epoch"]
    assert _digest(best) == state.digests[record["epoch"]]
    linked = (weights_io.read_attrs(os.path.join(log_dir, BEST))["epoch"]
              if BEST in names else None)
    if linked != record["epoch"]:  # only while best.json's epoch is being linked
        assert last[0] in ("best", "best-done", "link") and last[1] == record["epoch"], last
    if final:
        assert os.path.samefile(best, os.path.join(log_dir, record["checkpoint"]))
        with open(os.path.join(log_dir, "history.csv")) as f:
            rows = [line.split(",", 1)[0] for line in f.read().splitlines()]
        assert rows == ["epoch"] + [str(e) for e in range(1, epoch + 1)], rows
    return epoch


def _chain(tmp_path, seed, kinds):
    """Kill points ``kinds`` in a row on one run, each process resuming from what the previous
    one left; a last process completes two more epochs. Returns (kind, where it landed) per
    kill point."""
    rng = random.Random(seed)
    worse = set()
    for epoch in range(2, 100):
        if epoch - 1 not in worse and rng.random() < 0.3:
            worse.add(epoch)
    state = State(worse)
    model_dir = tmp_path / ("chain%d" % seed)
    model_dir.mkdir()
    landed = []
    for k, kind in enumerate(kinds + ("complete",)):
        final = kind == "complete"
        epochs = state.last + 2 if final else 100
        child = Child(model_dir, epochs, worse, LINGER if kind == "best" else 0.0,
                      tmp_path / ("child%d_%d.log" % (seed, k)))
        deadline = time.monotonic() + DEADLINE
        loaded = child.next(deadline)
        assert loaded is not None and loaded[:2] == ("loaded", state.last), (
            loaded, child._stderr())
        target = None if final else _target(kind, state.last, rng, fresh=k == 0)
        first_epoch = None
        while True:
            marker = child.next(deadline)
            assert marker is not None or final, (
                "the kill point was never reached", kind, child.markers[-3:], child._stderr())
            if marker is None:
                break
            if marker[0] == "epoch" and first_epoch is None:
                first_epoch = marker[1]
                assert first_epoch == state.last + 1  # resumed at the epoch after find_last's
            if target is not None and target(marker):
                assert first_epoch == state.last + 1
                time.sleep(_delay(kind, rng, state, child))
                child.kill()
                break
        state.absorb(child)
        if final:
            child.proc.wait(timeout=DEADLINE)
            os.close(child.fd)
            assert child.proc.returncode == 0, child._stderr()
            assert child.markers[-1] == ("end", epochs) and first_epoch == state.last + 1
            assert _check_after_kill(model_dir, state, child, final=True) == epochs
        else:
            landed.append((kind, _landed(child.markers)))
            state.last = _check_after_kill(model_dir, state, child)
    return landed


INSIDE = {"step": {"training step"}, "validation": {"validation"},
          "checkpoint": {"checkpoint write"},
          "best": {"best.json write", "between best.json and link", "best link write"}}


def _report(landed):
    counts = {}
    for kind, where in landed:
        counts.setdefault(kind, {}).setdefault(where, 0)
        counts[kind][where] += 1
    print("\nkill points tried and survived: %d" % len(landed))
    for kind in KINDS:
        print("  %-10s %d: %s" % (kind, sum(counts.get(kind, {}).values()),
                                   counts.get(kind, {})))


def test_kill_training_anywhere_then_resume(tmp_path):
    kinds = list(KINDS)
    random.Random(0).shuffle(kinds)
    _report(_chain(tmp_path, 0, tuple(kinds)))


@pytest.mark.slow
def test_kill_training_anywhere_then_resume_slow(tmp_path):
    landed = []
    for seed in range(1, SLOW_CHAINS + 1):
        kinds = list(KINDS)
        random.Random(seed).shuffle(kinds)
        landed += _chain(tmp_path, seed, tuple(kinds))
    _report(landed)
    # The harness aims right: each kind of kill landed inside its window at least once.
    for kind in KINDS:
        assert any(k == kind and where in INSIDE[kind] for k, where in landed), (kind, landed)
