"""The ``mrcnn`` command end to end, by the command alone: the fast demo then the evaluate and
detect lines it prints; a shapes data set in VIA 2.x with two classes from a region attribute
(through a --config file); a COCO-format data set; ``anchors`` following the run it is about."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from mrcnn import cli
from mrcnn.datasets.synthetic import write_via_dataset

# pycocotools' decoder trips NumPy 2's __array__(copy=...) deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def mrcnn(*argv):
    """``mrcnn ARGV`` in this process; returns the exit status."""
    return cli.main([str(a) for a in argv])


def check_detections(out_dir, stems, class_names, size=(128, 128)):
    from pycocotools import mask as mask_utils
    from PIL import Image

    h, w = size
    assert sorted(os.listdir(out_dir)) == sorted([s + ".png" for s in stems]
                                                 + [s + ".json" for s in stems])
    for stem in stems:
        with Image.open(os.path.join(out_dir, stem + ".png")) as im:
            assert im.format == "PNG" and min(im.size) > 100
        with open(os.path.join(out_dir, stem + ".json")) as f:
            record = json.load(f)
        assert (record["height"], record["width"]) == (h, w)
        assert record["class_names"] == class_names
        for d in record["detections"]:
            assert d["class_name"] == class_names[d["class_id"]] and 0 <= d["score"] <= 1
            y1, x1, y2, x2 = d["box"]
            assert 0 <= y1 < y2 <= h and 0 <= x1 < x2 <= w
            assert d["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            mask = mask_utils.decode({"size": d["segmentation"]["size"],
                                      "counts": d["segmentation"]["counts"].encode()})
            assert mask.shape == (h, w) and int(mask.sum()) == d["area"]


def test_console_script_and_module_help():
    # The install puts the script beside this interpreter, on PATH or not (venv not activated).
    script = (shutil.which("mrcnn", path=os.path.dirname(sys.executable))
              or shutil.which("mrcnn"))
    assert script, "no mrcnn console script: install the package (README)"
    for command in ([script], [sys.executable, "-m", "mrcnn"]):
        out = subprocess.run(command + ["--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        for word in ("train", "evaluate", "detect", "anchors", "demo", "--data", "--format",
                     "--classes", "--class-attribute", "--config", "--weights", "--logs",
                     "--stage1-epochs", "--image", "--fast", "--max-minutes", "--preset"):
            assert word in out.stdout, word


def test_demo_flows_into_evaluate_detect_and_anchors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert mrcnn("demo", "--fast") == 0
    out = capsys.readouterr().out
    for name in ("metrics.json", "detections.png", "training_curves.png"):
        assert os.path.isfile(os.path.join("out", "demo", name)), name
    with open(os.path.join("out", "demo", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["class_names"] == ["mask"] and metrics["num_images"] == 8
    [run_dir] = os.listdir(os.path.join("out", "demo", "logs"))
    with open(os.path.join("out", "demo", "logs", run_dir, "settings.json")) as f:
        settings = json.load(f)
    assert (settings["preset"], settings["name"], settings["class_names"]) == \
        ("light", "facemask", ["mask"])
    assert [(s["stage"], s["layers"], s["learning_rate"]) for s in settings["stage_runs"]] == \
        [(1, "all", 0.02), (2, "all", 0.002)]

    # The printed next steps work as printed, with no repeated option.
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("mrcnn ")]
    assert [line.split()[1] for line in lines] == ["evaluate", "detect"]
    for line in lines:
        assert mrcnn(*shlex.split(line)[1:]) == 0, line
    printed = capsys.readouterr().out
    assert re.search(r"mAP@0\.5\s+%.3f" % metrics["mAP@0.5"], printed)
    stems = sorted(f[:-4] for f in os.listdir(os.path.join("out", "demo", "data", "val"))
                   if f.endswith(".jpg"))
    check_detections(os.path.join("out", "demo", "detect"), stems, ["BG", "mask"])

    # Without --logs nothing is found in ./logs: the error names both places and the option.
    assert mrcnn("evaluate") == 1
    err = capsys.readouterr().err
    assert err.startswith("mrcnn evaluate: error: ")
    assert str(tmp_path / "logs") in err and "pass --logs out/demo/logs" in err

    # anchors assumes the run's 128 px input (the light preset), not the 1024 px default.
    for argv in (["--data", "out/demo/data"], ["--logs", "out/demo/logs"]):
        assert mrcnn("anchors", *argv, "--output", "anchors.json") == 0
        printed = capsys.readouterr().out
        assert "Image size assumed: 128x128" in printed and run_dir in printed, printed
        with open("anchors.json") as f:
            fit = json.load(f)
        assert max(fit["scales"]) <= 128 and run_dir in fit["assumed"]
    assert mrcnn("anchors", "--data", "out/demo/data", "--preset", "standard") == 0
    assert "Image size assumed: 1024x1024" in capsys.readouterr().out


def shapes_via(root):
    """Shapes in VIA 2.x; two classes from the region attribute ``kind``: ``round`` (circles)
    and ``angular`` (squares, triangles)."""
    write_via_dataset(str(root), n_train=4, n_val=2, image_size=(128, 128), version=2,
                      scene="shapes", seed=5)
    for subset in ("train", "val"):
        path = root / subset / "via_region_data.json"
        data = json.loads(path.read_text())
        for entry in data.values():
            for region in entry["regions"]:
                shape = region["region_attributes"].pop("shape")
                region["region_attributes"]["kind"] = "round" if shape == "circle" else "angular"
        path.write_text(json.dumps(data))
    return root


def test_via_shapes_with_a_class_attribute_through_a_config_file(tmp_path, capsys):
    data = shapes_via(tmp_path / "shapes")
    logs = tmp_path / "logs"
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "dataset": str(data), "format": "via", "class_attribute": "kind", "preset": "tiny",
        "weights": "none", "overrides": {"STEPS_PER_EPOCH": 1},
        "stages": [{"layers": "heads", "learning_rate": 0.001, "epochs": 1},
                   {"layers": "all", "learning_rate": 0.0005, "epochs": 1}]}))
    assert mrcnn("train", "--config", config, "--logs", logs, "--max-minutes", "30") == 0
    out = capsys.readouterr().out
    assert "Classes: angular, round (NUM_CLASSES=3)" in out
    [run_dir] = [logs / d for d in os.listdir(logs)]
    assert run_dir.name.startswith("shapes")  # NAME from the data set folder
    with open(run_dir / "settings.json") as f:
        settings = json.load(f)
    assert settings["class_names"] == ["angular", "round"]
    first, second = settings["stage_runs"]
    assert (first["first_epoch"], first["last_epoch"], second["first_epoch"]) == (1, 1, 2)
    # Stage 2 started from the best checkpoint of stage 1.
    assert second["initial_weights"] == str(run_dir / first["best_checkpoint"])
    assert f"Next: mrcnn evaluate --logs {logs}" in out

    assert mrcnn("evaluate", "--logs", logs, "--min-confidence", "0", "--output",
                 tmp_path / "eval.json") == 0
    with open(tmp_path / "eval.json") as f:
        figures = json.load(f)
    assert figures["class_names"] == ["angular", "round"] and figures["num_images"] == 2
    assert figures["dataset"] == str(data) and figures["subset"] == "val"
    for key in ("mAP@0.5", "mAP@0.5:0.95"):
        assert 0.0 <= figures[key] <= 1.0

    # A folder holding two images, a corrupt one and a text file.
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in os.listdir(data / "val"):
        if name.endswith(".jpg"):
            shutil.copy(data / "val" / name, photos / name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert mrcnn("detect", "--logs", logs, "--image", photos, "--output", tmp_path / "det",
                 "--min-confidence", "0") == 0
    assert "broken.jpg" in capsys.readouterr().err
    stems = sorted(p[:-4] for p in os.listdir(photos) if p.startswith("shapes"))
    check_detections(tmp_path / "det", stems, ["BG", "angular", "round"])
    # A single missing or corrupt file is an error naming it and the flag.
    for bad in (photos / "missing.jpg", photos / "broken.jpg"):
        assert mrcnn("detect", "--logs", logs, "--image", bad, "--output", tmp_path / "x") == 1
        err = capsys.readouterr().err
        assert str(bad) in err and "--image" in err


def test_coco_format_data_set(tmp_path, capsys):
    from test_coco_sample import write_coco

    data = write_coco(tmp_path / "coco", year="")
    logs = tmp_path / "logs"
    assert mrcnn("train", "--data", data, "--format", "coco", "--preset", "tiny", "--weights",
                 "none", "--stage", "1", "--stage1-epochs", "1", "--logs", logs) == 0
    assert "Classes: box, blob (NUM_CLASSES=3)" in capsys.readouterr().out
    assert mrcnn("evaluate", "--logs", logs, "--output", tmp_path / "eval.json") == 0
    with open(tmp_path / "eval.json") as f:
        figures = json.load(f)
    assert figures["class_names"] == ["box", "blob"] and figures["num_images"] == 2
    assert mrcnn("detect", "--logs", logs, "--image", data / "val", "--output",
                 tmp_path / "det") == 0
    stems = sorted(f[:-4] for f in os.listdir(data / "val"))
    check_detections(tmp_path / "det", stems, ["BG", "box", "blob"], size=(96, 128))


@pytest.mark.parametrize("argv, expected", [
    (["train", "--data", "nowhere", "--weights", "none"], "nowhere"),
    (["train", "--data", "DATA"], "--weights"),
    (["train", "--data", "DATA", "--weights", "none", "--stage", "3"], "--stage 3"),
    (["train", "--data", "DATA", "--weights", "nope.h5", "--preset", "tiny"], "nope.h5"),
    (["train", "--data", "DATA", "--weights", "coco", "--preset", "tiny"], "resnet101"),
    (["train", "--config", "missing.json"], "--config missing.json"),
    (["train", "--data", "DATA", "--weights", "none", "--set", "NOT_A_SETTING=1"],
     "NOT_A_SETTING"),
    (["evaluate", "--logs", "nologs"], "--logs DIR"),
    (["detect", "--weights", "x.h5", "--image", "y.jpg"], "x.h5"),
    (["anchors", "--data", "DATA", "--logs", "nologs"], "--logs nologs"),
    (["export", "--logs", "nologs", "--output", "x"], "--logs DIR"),
    (["export", "--logs", "nologs", "--output", "x", "--quantize", "float16"],
     "--quantize float16 applies to TFLite files only; add --tflite"),
    # A .tflite output implies --tflite: past the --quantize check, to the missing run.
    (["export", "--logs", "nologs", "--output", "x.tflite", "--quantize", "float16"],
     "--logs DIR"),
])
def test_errors_name_the_file_flag_and_fix(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_via_dataset("DATA", n_train=1, n_val=1, image_size=(64, 64), seed=1)
    assert mrcnn(*argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mrcnn {argv[0]}: error: ") and expected in err, err
    assert "Traceback" not in err


@pytest.mark.repository
def test_shapes_sample_reports_a_missing_run(tmp_path, capsys):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "samples"))
    import shapes

    assert shapes.main(["evaluate", "--logs", str(tmp_path / "nologs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("shapes.py evaluate: error: ") and "--logs DIR" in err


def test_set_reads_json_python_words_and_strings():
    from mrcnn.cli import _setting
    assert _setting("IMAGE_MAX_DIM=512") == ("IMAGE_MAX_DIM", 512)
    assert _setting("XLA=false") == ("XLA", False)
    assert _setting("XLA=False") == ("XLA", False)
    assert _setting("WINOGRAD=True") == ("WINOGRAD", True)
    assert _setting("GRADIENT_CLIP_NORM=None") == ("GRADIENT_CLIP_NORM", None)
    assert _setting("WINOGRAD=auto") == ("WINOGRAD", "auto")
    assert _setting("NAME=False positives") == ("NAME", "False positives")
