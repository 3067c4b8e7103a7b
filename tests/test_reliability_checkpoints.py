"""find_last / find_best over damaged run directories; best.json and _best.h5 agreement;
CheckpointCallback's write order and disk-full behaviour (issue 14, issue 12 point 2)."""

import errno
import json
import logging
import os
import types

import numpy as np
import pytest

from conftest import new_facade
from mrcnn.training import trainer as trainer_lib
from mrcnn.weights import DiskFullError, read_attrs

RUN = "tiny20260102T0304"
CK = "mask_rcnn_tiny_%04d.h5"


def make_run(model, root, epochs, name=RUN, best=None):
    run = root / name
    run.mkdir()
    for e in epochs:
        model.save_weights(str(run / (CK % e)), epoch=e)
    if best is not None:
        os.link(run / (CK % best), run / "mask_rcnn_tiny_best.h5")
        (run / "best.json").write_text(json.dumps(
            {"checkpoint": CK % best, "epoch": best, "metric": "val_loss", "value": 1.0}))
    return run


@pytest.fixture
def facade(tiny_inference_model, tmp_path):
    return new_facade(tiny_inference_model, tmp_path)


def truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.unlink()  # break the hard link first: _best.h5 keeps its own copy
    path.write_bytes(data[:int(len(data) * fraction)])


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "half-synced"])
def test_find_last_skips_damaged_checkpoints_with_a_warning(facade, tmp_path, caplog, damage):
    run = make_run(facade, tmp_path, (1, 2, 3))
    last = run / (CK % 3)
    if damage == "truncated":
        truncate(last)
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "text":
        last.write_text("not weights")
    else:  # a sync tool that wrote the first block only
        last.write_bytes(last.read_bytes()[:4096])
    with caplog.at_level(logging.WARNING, logger="mrcnn"):
        found = facade.find_last()
    assert found == str(run / (CK % 2))
    assert any(CK % 3 in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)
    facade.set_log_dir(found)
    assert facade.epoch == 2


def test_find_last_falls_back_to_an_earlier_run(facade, tmp_path):
    make_run(facade, tmp_path, (1, 2), name="tiny20260102T0304")
    later = make_run(facade, tmp_path, (1,), name="tiny20260102T0305")
    (later / (CK % 1)).write_bytes(b"\x89HDF\r\n\x1a\n")
    assert facade.find_last() == str(tmp_path / "tiny20260102T0304" / (CK % 2))


def test_nothing_found_names_the_directories_looked_in(facade, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        facade.find_last()
    message = str(info.value)
    assert str(tmp_path) in message and "no run directory tiny" in message
    assert "model_dir" in message

    run = make_run(facade, tmp_path, (1,))
    (run / (CK % 1)).write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        facade.find_last()
    message = str(info.value)
    assert str(tmp_path) in message and RUN in message and "skipped 1 unreadable" in message
    with pytest.raises(FileNotFoundError) as info:
        facade.find_best()
    assert str(tmp_path) in str(info.value) and RUN in str(info.value)

    missing = new_facade(facade, tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        missing.find_last()


def test_find_best_returns_the_link_when_best_json_agrees(facade, tmp_path):
    run = make_run(facade, tmp_path, (1, 2, 3), best=2)
    assert facade.find_best() == str(run / "mask_rcnn_tiny_best.h5")


def test_find_best_accepts_a_copy_holding_the_same_epoch(facade, tmp_path):
    run = make_run(facade, tmp_path, (1, 2, 3), best=2)
    best = run / "mask_rcnn_tiny_best.h5"
    data = best.read_bytes()
    best.unlink()
    best.write_bytes(data)  # a file system without hard links got a copy
    assert facade.find_best() == str(best)


def test_find_best_when_killed_between_best_json_and_link(facade, tmp_path, caplog):
    """best.json names epoch 3, _best.h5 still holds epoch 2: the two disagree, and the
    checkpoint best.json names is returned."""
    run = make_run(facade, tmp_path, (1, 2, 3), best=2)
    (run / "best.json").write_text(json.dumps(
        {"checkpoint": CK % 3, "epoch": 3, "metric": "val_loss", "value": 0.5}))
    with caplog.at_level(logging.WARNING, logger="mrcnn"):
        assert facade.find_best() == str(run / (CK % 3))
    assert any("does not hold epoch 3" in r.getMessage() for r in caplog.records)


def test_find_best_with_damaged_best_file_uses_the_numbered_checkpoint(facade, tmp_path):
    run = make_run(facade, tmp_path, (1, 2, 3), best=2)
    truncate(run / "mask_rcnn_tiny_best.h5")
    assert facade.find_best() == str(run / (CK % 2))


def test_find_best_with_unreadable_best_json(facade, tmp_path, caplog):
    run = make_run(facade, tmp_path, (1, 2), best=1)
    (run / "best.json").write_text('{"checkpoint": ')  # half-synced
    with caplog.at_level(logging.WARNING, logger="mrcnn"):
        assert facade.find_best() == str(run / "mask_rcnn_tiny_best.h5")
    assert any("best.json" in r.getMessage() for r in caplog.records)


def test_find_best_falls_back_to_an_earlier_run(facade, tmp_path):
    early = make_run(facade, tmp_path, (1, 2), name="tiny20260102T0304", best=2)
    later = make_run(facade, tmp_path, (1,), name="tiny20260102T0305", best=1)
    truncate(later / (CK % 1))
    truncate(later / "mask_rcnn_tiny_best.h5")
    assert facade.find_best() == str(early / "mask_rcnn_tiny_best.h5")


# ---------------------------------------------------------------------- CheckpointCallback
def _callback(facade, tmp_path):
    facade.model_dir = str(tmp_path)
    facade.set_log_dir()
    facade.create_log_dir()
    return trainer_lib.CheckpointCallback(facade)


def test_best_json_and_best_h5_agree_after_each_epoch(facade, tmp_path):
    callback = _callback(facade, tmp_path)
    for epoch, val in enumerate([3.0, 2.0, 2.5, 1.0]):
        callback.on_epoch_end(epoch, {"loss": 9.0, "val_loss": val})
        with open(os.path.join(facade.log_dir, "best.json")) as f:
            record = json.load(f)
        best = os.path.join(facade.log_dir, "mask_rcnn_tiny_best.h5")
        assert read_attrs(best)["epoch"] == record["epoch"]
        assert os.path.samefile(best, os.path.join(facade.log_dir, record["checkpoint"]))
        assert facade.find_best() == best
    assert record["epoch"] == 4
    assert not [f for f in os.listdir(facade.log_dir) if "tmp" in f]


def test_best_compares_values_of_one_metric_only(facade, tmp_path, caplog):
    """Resumed without validation data, a run measures loss where best.json holds val_loss: a
    loss of 5.0 is no better or worse than a val_loss of 1.0. The new metric takes over (with a
    warning), and its later epochs compare by it."""
    callback = _callback(facade, tmp_path)
    callback.on_epoch_end(0, {"loss": 9.0, "val_loss": 1.0})
    with caplog.at_level(logging.WARNING, logger="mrcnn"):
        callback.on_epoch_end(1, {"loss": 5.0})
    assert "by val_loss" in caplog.text and "measures loss" in caplog.text
    record = json.loads(open(os.path.join(facade.log_dir, "best.json")).read())
    assert (record["epoch"], record["metric"], record["value"]) == (2, "loss", 5.0)
    callback.on_epoch_end(2, {"loss": 6.0})
    callback.on_epoch_end(3, {"loss": 4.0})
    record = json.loads(open(os.path.join(facade.log_dir, "best.json")).read())
    assert (record["epoch"], record["metric"], record["value"]) == (4, "loss", 4.0)
    assert read_attrs(facade.find_best())["epoch"] == 4


def test_unreadable_best_json_does_not_stop_training(facade, tmp_path):
    callback = _callback(facade, tmp_path)
    callback.on_epoch_end(0, {"val_loss": 2.0})
    with open(os.path.join(facade.log_dir, "best.json"), "w") as f:
        f.write("{")
    callback.on_epoch_end(1, {"val_loss": 3.0})
    with open(os.path.join(facade.log_dir, "best.json")) as f:
        assert json.load(f)["epoch"] == 2  # marked anew


def test_disk_full_while_marking_best_leaves_no_residue(facade, tmp_path, monkeypatch):
    callback = _callback(facade, tmp_path)
    callback.on_epoch_end(0, {"val_loss": 2.0})

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_space)
    monkeypatch.setattr("shutil.copyfile", no_space)
    with pytest.raises(DiskFullError, match="disk is full"):
        callback.on_epoch_end(1, {"val_loss": 1.0})
    monkeypatch.undo()
    assert not [f for f in os.listdir(facade.log_dir) if "tmp" in f]
    assert facade.find_last().endswith(CK % 2)  # the checkpoint itself was written
    # best.json already names epoch 2; _best.h5 still holds epoch 1: find_best sees it.
    assert facade.find_best().endswith(CK % 2)


# ------------------------------------------------- what a killed process left, put right
def _resume(facade, run, epoch):
    """``facade`` as after ``load_weights`` of ``run``'s checkpoint ``epoch``, and the callback
    train() would start with."""
    facade.set_log_dir(str(run / (CK % epoch)))
    assert facade.epoch == epoch and facade.log_dir == str(run)
    callback = trainer_lib.CheckpointCallback(facade)
    callback.on_train_begin()
    return callback


def _best(run):
    with open(run / "best.json") as f:
        return json.load(f)


def _scored_run(facade, tmp_path, values, best):
    """Checkpoints carrying ``val_loss`` values (epoch from 1), best.json naming ``best``."""
    run = tmp_path / RUN
    run.mkdir()
    for e, v in enumerate(values, 1):
        facade.save_weights(str(run / (CK % e)), epoch=e, metric="val_loss", metric_value=v)
    os.link(run / (CK % best), run / "mask_rcnn_tiny_best.h5")
    (run / "best.json").write_text(json.dumps(
        {"checkpoint": CK % best, "epoch": best, "metric": "val_loss",
         "value": values[best - 1]}))
    return run


def test_train_begin_removes_the_temporaries_a_kill_left(facade, tmp_path):
    run = _scored_run(facade, tmp_path, [2.0, 3.0], best=1)
    left = [".mask_rcnn_tiny_0003.h5.0123456789ab.tmp", "best.json.tmp",
            "mask_rcnn_tiny_best.h5.tmp"]
    others = ["notes.tmp", ".mask_rcnn_tiny_0003.h5.tmp", "mask_rcnn_tiny_0002.h5"]
    for name in left + others[:2]:
        (run / name).write_bytes(b"partial")
    _resume(facade, run, 2)
    assert sorted(n for n in os.listdir(run) if n in left + others) == sorted(others)
    assert _best(run)["epoch"] == 1  # epoch 2 was worse: nothing to re-mark
    assert os.path.samefile(run / "mask_rcnn_tiny_best.h5", run / (CK % 1))


def test_train_begin_marks_the_checkpoint_a_kill_left_unmarked(facade, tmp_path):
    """Killed after epoch 2's checkpoint, before its marking: best.json still names epoch 1."""
    run = _scored_run(facade, tmp_path, [2.0, 1.0], best=1)
    _resume(facade, run, 2)
    assert _best(run) == {"checkpoint": CK % 2, "epoch": 2, "metric": "val_loss", "value": 1.0}
    assert os.path.samefile(run / "mask_rcnn_tiny_best.h5", run / (CK % 2))
    assert facade.find_best() == str(run / "mask_rcnn_tiny_best.h5")


def test_train_begin_links_the_best_a_kill_left_unlinked(facade, tmp_path):
    """Killed between best.json naming epoch 2 and the link: _best.h5 still holds epoch 1."""
    run = _scored_run(facade, tmp_path, [2.0, 1.0], best=1)
    (run / "best.json").write_text(json.dumps(
        {"checkpoint": CK % 2, "epoch": 2, "metric": "val_loss", "value": 1.0}))
    _resume(facade, run, 2)
    assert _best(run)["epoch"] == 2
    assert os.path.samefile(run / "mask_rcnn_tiny_best.h5", run / (CK % 2))


def test_train_begin_leaves_a_run_without_metric_attributes_alone(facade, tmp_path):
    """Checkpoints written before they carried the metric: nothing to compare, nothing
    re-marked."""
    run = make_run(facade, tmp_path, (1, 2), best=1)
    before = _best(run)
    _resume(facade, run, 2)
    assert _best(run) == before
    assert os.path.samefile(run / "mask_rcnn_tiny_best.h5", run / (CK % 1))


def test_history_rows_after_the_resumed_epoch_are_dropped(tmp_path):
    """A process killed after writing epochs 3 and 4's rows (4's cut short) but before epoch
    3's checkpoint: resumed from epoch 2, the rows of 3 and 4 go, the others stay as written."""
    path = tmp_path / "history.csv"
    kept = "epoch,loss,val_loss\r\n1,3.0,3.5\r\n2,2.0,2.5\r\n"
    path.write_bytes((kept + "3,1.0,1.5\r\n4,0.9").encode())
    logger = trainer_lib.HistoryCSVLogger(str(path), last_epoch=2, append=True)
    logger.on_train_begin()
    logger.on_train_end()
    assert path.read_bytes() == kept.encode()
    # A row cut short is dropped even when its epoch is not after the resumed one.
    path.write_bytes((kept + "3,1.0").encode())
    logger = trainer_lib.HistoryCSVLogger(str(path), last_epoch=3, append=True)
    logger.on_train_begin()
    logger.on_train_end()
    assert path.read_bytes() == kept.encode()
