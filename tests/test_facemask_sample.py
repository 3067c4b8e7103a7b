"""samples/facemask.py: the ``mrcnn`` command with the face-mask defaults, and its
Matterport-style classes. Stage 1, then stage 2 alone from stage 1's best checkpoint, on a tiny
generated VIA data set (4 train, 2 val images of 128 px); the rest of the workflow is tested in
tests/test_workflow.py and tests/test_cli.py."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "samples"))

import facemask  # noqa: E402
from mrcnn.workflow import run_checkpoints  # noqa: E402

from test_workflow import facemask_dir, pytestmark as _workflow_marks  # noqa: E402,F401

# samples/facemask.py
pytestmark = [_workflow_marks, pytest.mark.repository]


def test_sample_is_short():
    with open(facemask.__file__) as f:
        assert len(f.read().splitlines()) < 300


def test_help_lists_every_command_and_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        facemask.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: facemask.py")
    for word in ("train", "evaluate", "detect", "anchors", "demo", "--weights", "--stage ",
                 "--stage1-epochs", "--stage2-epochs", "--steps-per-epoch", "--class-attribute",
                 "--logs", "--subset", "--limit", "--output", "--image", "--fast", "--preset",
                 "--anchor-scales", "--data"):
        assert word in out, word


def test_matterport_style_classes(facemask_dir):
    train, val = facemask.FaceMaskDataset(), facemask.FaceMaskDataset()
    names = train.load_facemask(facemask_dir, "train", class_attribute="mask_type")
    val.load_facemask(facemask_dir, "val", class_attribute="mask_type", class_names=names)
    train.prepare()
    val.prepare()
    assert train.class_names == val.class_names == ["BG"] + names
    single = facemask.FaceMaskDataset()
    assert single.load_facemask(facemask_dir, "val") == ["mask"]
    single.prepare()
    image_id = single.image_ids[0]
    assert single.image_reference(image_id) == os.path.join(facemask_dir, "val",
                                                            single.image_info[image_id]["id"])
    assert facemask.FaceMaskConfig().NUM_CLASSES == 2
    assert facemask.FaceMaskConfig(names).NUM_CLASSES == 1 + len(names)
    assert facemask.FaceMaskInferenceConfig().BATCH_SIZE == 1
    with pytest.raises(facemask.WorkflowError, match="via_region_data.json"):
        facemask.FaceMaskDataset().load_facemask(facemask_dir, "nosuchsubset")


def test_train_stage1_then_stage2_alone_from_the_best(facemask_dir, tmp_path, monkeypatch):
    import mrcnn.model as modellib

    loaded = []  # (mode, weights path) of every load_weights call
    original = modellib.MaskRCNN.load_weights

    def spy(self, filepath, by_name=False, exclude=None):
        loaded.append((self.mode, os.path.abspath(filepath)))
        return original(self, filepath, by_name=by_name, exclude=exclude)

    monkeypatch.setattr(modellib.MaskRCNN, "load_weights", spy)
    logs = str(tmp_path / "logs")

    # Stage 1 alone, from scratch, with the mask types as classes.
    assert facemask.main(["train", "--dataset", facemask_dir, "--logs", logs, "--preset", "tiny",
                          "--weights", "none", "--stage", "1", "--stage1-epochs", "2",
                          "--class-attribute", "mask_type"]) == 0
    assert loaded == []
    [run_dir] = [os.path.join(logs, d) for d in os.listdir(logs)]
    assert os.path.basename(run_dir).startswith("facemask")
    with open(os.path.join(run_dir, "best.json")) as f:
        best = json.load(f)
    assert best["metric"] == "val_loss" and best["epoch"] in (1, 2)
    stage1_best = os.path.join(run_dir, best["checkpoint"])
    stage1_bytes = {e: open(p, "rb").read() for e, p in run_checkpoints(run_dir)}
    assert sorted(stage1_bytes) == [1, 2]

    # Stage 2 alone: no --weights, --preset or classes: the best checkpoint and the settings of
    # the latest run.
    assert facemask.main(["train", "--dataset", facemask_dir, "--logs", logs, "--stage", "2",
                          "--stage2-epochs", "1"]) == 0
    assert loaded == [("training", os.path.abspath(stage1_best))]
    assert os.listdir(logs) == [os.path.basename(run_dir)]  # stage 2 continued the run ...
    checkpoints = dict(run_checkpoints(run_dir))
    assert sorted(checkpoints) == [1, 2, 3]  # ... after its last checkpoint
    for epoch, content in stage1_bytes.items():  # stage 1's checkpoints are untouched
        assert open(checkpoints[epoch], "rb").read() == content
    with open(os.path.join(run_dir, "settings.json")) as f:
        settings = json.load(f)
    assert settings["preset"] == "tiny" and settings["class_attribute"] == "mask_type"
    assert settings["class_names"] == sorted(settings["class_names"]) != ["mask"]
    stage1, stage2 = settings["stage_runs"]
    assert (stage1["stage"], stage1["layers"], stage1["learning_rate"]) == (1, "heads", 1e-3)
    assert (stage2["stage"], stage2["layers"], stage2["learning_rate"]) == (2, "all", 1e-5)
    assert os.path.abspath(stage2["initial_weights"]) == os.path.abspath(stage1_best)
    assert (stage2["first_epoch"], stage2["last_epoch"]) == (3, 3)


def test_demo_next_steps_name_the_sample():
    from mrcnn.workflow.demo import next_commands

    lines = next_commands(os.path.join("out", "demo"), "python samples/facemask.py")
    assert lines == ["python samples/facemask.py evaluate --logs out/demo/logs",
                     "python samples/facemask.py detect --logs out/demo/logs --image "
                     "out/demo/data/val --output out/demo/detect"]


def test_errors_name_the_sample(tmp_path, capsys):
    assert facemask.main(["evaluate", "--logs", str(tmp_path / "logs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("facemask.py evaluate: error: ") and str(tmp_path / "logs") in err


def test_train_facemask_is_the_workflow_with_the_sample_defaults(monkeypatch):
    calls = []
    monkeypatch.setattr(facemask, "run_training", lambda settings, base: calls.append(
        (settings, base)) or "result")
    assert facemask.train_facemask("DATASET", class_attribute="mask_type", preset="light") == \
        "result"
    [(settings, base)] = calls
    assert base is facemask.FaceMaskConfig
    assert settings == {"name": "facemask", "classes": None, "dataset": "DATASET",
                        "weights": "coco", "logs": "logs", "preset": "light",
                        "class_attribute": "mask_type"}
