"""Kill anywhere while checkpoints are written (issue 14): a subprocess runs the real
CheckpointCallback epoch after epoch on a small model as fast as it can (numbered checkpoint,
best.json, _best.h5 link), and is SIGKILLed at a random moment, many times. After each kill
find_last() returns an intact checkpoint that is the last epoch fully written, find_best() and
best.json agree, no partial file carries a checkpoint name, and a new process resumes from it.

``SLOW_KILLS`` kill points, each resumed by the next process; it runs with ``-m slow`` only, as
the default run's kill harness is tests/test_reliability_kill_training.py, which kills a real
training in a checkpoint write and in best marking too. Runs take turns lingering 50 ms in one of the best-marking steps (before best.json's
rename, before the link's rename, between the two), so kills land there too, not only in the
checkpoint write that dominates the loop. (Training steps and
validation are not in the loop: a kill there loses only the epoch in progress, which has written
nothing yet.)
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

from mrcnn import weights as weights_io

SLOW_KILLS = 40
TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
RUN = "tiny20260102T0304"

WRITER = textwrap.dedent("""
    import json, os, random, sys, types
    sys.path[:0] = [{repo!r}, {tests!r}]
    import numpy as np
    from test_weights_io import build_model
    from mrcnn.training.trainer import CheckpointCallback
    log_dir, start, seed, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5]
    model = build_model()
    # To land kills in the short best-marking steps too, a run may linger in one of them.
    import time
    from mrcnn.training import trainer
    real_replace, real_link = os.replace, trainer._link_atomic

    def replace(src, dst):
        if (pause == "best.json" and dst.endswith("best.json")) or (
                pause == "link" and dst.endswith("_best.h5")):
            time.sleep(0.05)
        real_replace(src, dst)

    def link_atomic(src, dst):
        if pause == "between":
            time.sleep(0.05)
        real_link(src, dst)

    os.replace, trainer._link_atomic = replace, link_atomic
    rng = random.Random(seed)

    def save_weights(path, **attrs):
        from mrcnn.weights import save_weights_h5
        save_weights_h5(model, path, attrs=attrs)

    mr = types.SimpleNamespace(log_dir=log_dir, epoch=start, save_weights=save_weights,
                               checkpoint_path=os.path.join(log_dir,
                                                            "mask_rcnn_tiny_{{epoch:04d}}.h5"))
    callback = CheckpointCallback(mr)
    print("ready", flush=True)
    epoch, stop = start, start + int(sys.argv[4])
    while epoch < stop:
        for v in model.weights:  # every weight holds the epoch number: content is checkable
            v.assign(np.full(v.shape, epoch + 1, np.float32))
        # Mostly improving, sometimes not: most epochs mark a new best.
        val_loss = 100.0 / (epoch + 1) * (2.0 if rng.random() < 0.3 else 1.0)
        callback.on_epoch_end(epoch, {{"val_loss": val_loss}})
        epoch += 1
    print("done", flush=True)
""")


PAUSES = ["none", "best.json", "link", "between"]


def _writer(log_dir, start, seed, epochs, pause="none"):
    code = WRITER.format(repo=REPO, tests=TESTS)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-c", code, str(log_dir), str(start), str(seed),
                             str(epochs), pause], stdout=subprocess.PIPE, text=True, env=env)


def _facade(model_dir):
    from mrcnn.model.core import MaskRCNN
    fake = types.SimpleNamespace(config=types.SimpleNamespace(NAME="tiny"),
                                 model_dir=str(model_dir))
    return (lambda: MaskRCNN.find_last(fake)), (lambda: MaskRCNN.find_best(fake))


def _epoch_of(path):
    return weights_io.read_attrs(path)["epoch"]


def _check_intact(path):
    """Loads in full, every value is its epoch number."""
    epoch = _epoch_of(path)
    for layer in weights_io.read_weights_h5(path).values():
        for array in layer.values():
            assert np.all(array == epoch), path
    return epoch


def _check_after_kill(model_dir, log_dir):
    find_last, find_best = _facade(model_dir)
    names = os.listdir(log_dir)
    numbered = sorted(n for n in names if n.startswith("mask_rcnn_") and n[-7:-3].isdigit())
    if not numbered:
        with pytest.raises(FileNotFoundError):
            find_last()
        return 0
    for name in numbered:  # a checkpoint name only ever holds a complete file
        assert weights_io.checkpoint_problem(os.path.join(log_dir, name)) is None, name
    last = find_last()
    assert os.path.basename(last) == numbered[-1]
    epoch = _check_intact(last)
    assert last.endswith("_%04d.h5" % epoch)
    best = find_best()
    with open(os.path.join(log_dir, "best.json")) as f:
        record = json.load(f)
    assert _check_intact(best) == record["epoch"]
    assert record["epoch"] <= epoch
    # Leftovers of an interrupted write are hidden temporary names only.
    for name in names:
        assert name in numbered or name in ("best.json", "mask_rcnn_tiny_best.h5") \
            or name.endswith(".tmp"), name
    return epoch


def _kill_points(tmp_path, seed, kills):
    """``kills`` kill points in a row on one run directory, each one's survivor resumed by the
    next process; a last process completes three more epochs. Returns the epochs reached."""
    rng = random.Random(seed)
    log_dir = tmp_path / RUN
    log_dir.mkdir()
    epoch, reached, landed = 0, [], []
    for k in range(kills):
        before = set(os.listdir(log_dir))
        proc = _writer(log_dir, epoch, seed * 1000 + k, 10 ** 6, PAUSES[k % len(PAUSES)])
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed.append(_where_it_landed(log_dir, before))
        survived = _check_after_kill(tmp_path, log_dir)
        assert survived >= epoch  # nothing already written was lost
        epoch = survived
        reached.append(epoch)
    proc = _writer(log_dir, epoch, seed * 1000 + kills, 3)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.split() == ["ready", "done"]
    assert _check_after_kill(tmp_path, log_dir) == epoch + 3
    # Each interrupted write was redone by the next process, which removed its leftovers.
    assert not [n for n in os.listdir(log_dir) if n.endswith(".tmp")]
    print("kill points: %d, where they landed: %s" % (
        kills, {k: landed.count(k) for k in sorted(set(landed))}))
    return reached


def _where_it_landed(log_dir, before):
    """What the kill interrupted, judged from the temporary files it left (for the figures)."""
    names = set(os.listdir(log_dir)) - {n for n in before if n.endswith(".tmp")}
    if any(n.startswith(".") and n.endswith(".tmp") for n in names):
        return "checkpoint write"
    if "best.json.tmp" in names:
        return "best.json write"
    if "mask_rcnn_tiny_best.h5.tmp" in names:
        return "best link write"
    best = os.path.join(log_dir, "mask_rcnn_tiny_best.h5")
    if os.path.exists(best) and os.path.exists(os.path.join(log_dir, "best.json")):
        with open(os.path.join(log_dir, "best.json")) as f:
            if json.load(f)["epoch"] != _epoch_of(best):
                return "between best.json and link"
    return "between files"


@pytest.mark.slow
def test_kill_while_writing_checkpoints_then_resume_slow(tmp_path):
    reached = _kill_points(tmp_path, 1, SLOW_KILLS)
    assert len(reached) == SLOW_KILLS
