"""samples/coco.py: train and evaluate on a tiny COCO-format data set, through its command line."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "samples", "coco.py")
sys.path.insert(0, os.path.join(REPO, "samples"))

import coco as coco_sample  # noqa: E402  (samples/coco.py)

pytestmark = pytest.mark.repository

H, W = 96, 128
# Non-consecutive category ids, as in COCO (1 person, 3 car, ...).
CATEGORIES = [{"id": 2, "name": "box"}, {"id": 5, "name": "blob"}]


def rect(x, y, w, h):
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def uncompressed_rle(mask):
    """Run lengths of the column-major flattening, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": [mask.shape[0], mask.shape[1]], "counts": ([0] + counts) if flat[0] else counts}


def write_subset(root, subset, count, seed, first_id):
    """``count`` images of coloured rectangles (polygons), an ellipse blob (compressed RLE) and a
    crowd region (uncompressed RLE, iscrowd 1), plus one image without annotations."""
    rng = np.random.default_rng(seed)
    folder = root / subset
    folder.mkdir(parents=True)
    images, annotations = [], []
    for k in range(count + 1):
        image_id = first_id + k
        pixels = np.full((H, W, 3), rng.integers(0, 80), np.uint8)
        name = f"{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": name, "height": H, "width": W})
        if k < count:  # the last image stays without annotations
            x, y = int(rng.integers(4, 40)), int(rng.integers(4, 30))
            pixels[y:y + 30, x:x + 40] = (220, 60, 60)
            annotations.append({"id": len(annotations) + 1000 * first_id, "image_id": image_id,
                                "category_id": 2, "iscrowd": 0, "area": 1200,
                                "bbox": [x, y, 40, 30], "segmentation": [rect(x, y, 40, 30)]})
            yy, xx = np.mgrid[:H, :W]
            blob = ((yy - 60) / 18.0) ** 2 + ((xx - 95) / 22.0) ** 2 <= 1
            pixels[blob] = (60, 200, 90)
            annotations.append({"id": len(annotations) + 1000 * first_id, "image_id": image_id,
                                "category_id": 5, "iscrowd": 0, "area": int(blob.sum()),
                                "bbox": [73, 42, 44, 36], "segmentation": compressed_rle(blob)})
            crowd = np.zeros((H, W), bool)
            crowd[80:94, 4:30] = True
            pixels[crowd] = (230, 230, 60)
            annotations.append({"id": len(annotations) + 1000 * first_id, "image_id": image_id,
                                "category_id": 2, "iscrowd": 1, "area": int(crowd.sum()),
                                "bbox": [4, 80, 26, 14], "segmentation": uncompressed_rle(crowd)})
        Image.fromarray(pixels).save(folder / name, quality=95)
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def write_coco(root, year="2017", counts=(("train", 3), ("val", 2))):
    """``root/annotations/instances_<subset><year>.json`` and ``root/<subset><year>/``."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for n, (subset, count) in enumerate(counts):
        data = write_subset(root, f"{subset}{year}", count, seed=n, first_id=100 * (n + 1))
        (root / "annotations" / f"instances_{subset}{year}.json").write_text(json.dumps(data))
    return root


def run(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def test_config_and_subsets():
    config = coco_sample.CocoConfig()
    assert (config.NAME, config.NUM_CLASSES, config.IMAGES_PER_GPU) == ("coco", 81, 2)
    assert coco_sample.subsets("2014") == (["train", "valminusminival"], "minival")
    assert coco_sample.subsets("2017") == (["train"], "val")
    helped = run("--help")  # runs as a script
    assert helped.returncode == 0 and "--stage3-epochs" in helped.stdout, helped.stderr


def test_load_coco_2014_layout(tmp_path):
    # minival's images live in val2014/, as in Matterport's layout.
    (tmp_path / "annotations").mkdir()
    data = write_subset(tmp_path, "val2014", 2, seed=0, first_id=7)
    (tmp_path / "annotations" / "instances_minival2014.json").write_text(json.dumps(data))
    dataset = coco_sample.CocoDataset()
    coco = dataset.load_coco(tmp_path, "minival", year=2014, return_coco=True)
    dataset.prepare()
    assert sorted(coco.getImgIds()) == [7, 8, 9]
    assert dataset.num_images == 2  # the image without annotations is left out
    assert dataset.class_names == ["BG", "box", "blob"]
    assert dataset.image_info[0]["path"] == str(tmp_path / "val2014" / "000000000007.jpg")
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (H, W, 3)
    assert sorted(class_ids.tolist()) == [-1, 1, 2]  # the crowd region is negative
    assert dataset.load_image(0).shape == (H, W, 3)


def test_missing_dataset_is_named(tmp_path, capsys):
    assert coco_sample.main(["evaluate", "--dataset", str(tmp_path), "--weights", "last"]) == 1
    err = capsys.readouterr().err
    assert "instances_val2017.json not found" in err and str(tmp_path) in err
    write_coco(tmp_path / "coco", counts=(("val", 1),))
    assert coco_sample.main(["evaluate", "--dataset", str(tmp_path / "coco"),
                             "--weights", "coco"]) == 1
    assert "--weights coco detects the 80 COCO categories but the data set has 2" in \
        capsys.readouterr().err
    (tmp_path / "coco" / "annotations" / "instances_val2017.json").write_text("{")
    assert coco_sample.main(["evaluate", "--dataset", str(tmp_path / "coco"),
                             "--weights", "last"]) == 1
    assert "instances_val2017.json: invalid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        coco_sample.parse_args(["train", "--dataset", str(tmp_path), "--weights", "none",
                                "--stage1-epochs", "5", "--stage2-epochs", "3"])


class FakeMaskRCNN:
    """Records ``train`` calls; loading a checkpoint of epoch 120 resumes its run there."""

    def __init__(self, mode, config, model_dir):
        self.mode, self.config, self.epoch = mode, config, 0
        self.log_dir = os.path.join(str(model_dir), "coco20990101T0000")
        self.calls = []
        FakeMaskRCNN.instance = self

    def create_log_dir(self):
        os.makedirs(self.log_dir, exist_ok=True)
        return self.log_dir

    def find_last(self):
        return os.path.join(self.log_dir, "mask_rcnn_coco_%04d.h5" % self.epoch)

    def load_weights(self, path, by_name=False, exclude=None):
        assert by_name and path.endswith("mask_rcnn_coco_0120.h5")
        self.epoch, self.log_dir = 120, os.path.dirname(path)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
              custom_callbacks=None):
        assert train_dataset.num_images == 3 and val_dataset.num_images == 2
        self.calls.append((layers, learning_rate, epochs))
        self.epoch = epochs


@pytest.mark.parametrize("extra, weights, calls", [
    ([], "none", [("heads", 1e-3, 40), ("4+", 1e-3, 120), ("all", 1e-4, 160)]),
    (["--lr", "0.02", "--stage3-epochs", "200"], "none",
     [("heads", 0.02, 40), ("4+", 0.02, 120), ("all", 0.002, 200)]),
    ([], "last", [("all", 1e-4, 160)]),  # resumed at epoch 120: stages 1 and 2 are done
])
def test_training_schedule(tmp_path, monkeypatch, capsys, extra, weights, calls):
    import mrcnn.model as modellib

    monkeypatch.setattr(modellib, "MaskRCNN", FakeMaskRCNN)
    data = write_coco(tmp_path / "coco")
    logs = tmp_path / "logs"
    (logs / "coco20240101T0000").mkdir(parents=True)
    (logs / "coco20240101T0000" / "mask_rcnn_coco_0120.h5").write_bytes(b"")
    args = coco_sample.parse_args(["train", "--dataset", str(data), "--weights", weights,
                                   "--logs", str(logs), *extra])
    coco_sample.train(args)
    model = FakeMaskRCNN.instance
    assert model.calls == [(layers, pytest.approx(lr), epochs) for layers, lr, epochs in calls]
    assert model.config.NAME == "coco" and model.config.NUM_CLASSES == 3  # the data set's classes
    assert model.config.BACKBONE == "resnet101" and model.config.IMAGES_PER_GPU == 2
    assert model.config.TRAIN_BN == (weights == "none")
    if weights == "last":
        assert "Stage 1 (heads, to epoch 40): already done at epoch 120, skipped" in \
            capsys.readouterr().out
    with open(os.path.join(model.log_dir, "settings.json")) as f:
        assert json.load(f)["format"] == "coco"


def test_train_then_evaluate(tmp_path, capsys):
    data = write_coco(tmp_path / "coco")
    logs = tmp_path / "logs"
    # One real stage keeps the test short: stages 2 and 3 end where stage 1 does, so they are
    # skipped (test_training_schedule covers the schedule; the notebook test trains all layers).
    # In this process (a subprocess would import TensorFlow again); main() is the command line.
    assert coco_sample.main(["train", "--dataset", str(data), "--year", "2017", "--weights",
                             "none", "--logs", str(logs), "--tiny", "--limit", "2",
                             "--stage1-epochs", "1", "--stage2-epochs", "1",
                             "--stage3-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Training images: 2 (train), validation images: 2 (val), classes: 2" in out
    assert "Stage 1: layers='heads', learning rate 0.001, epochs 1..1" in out
    assert "Stage 2 (4+, to epoch 1): already done at epoch 1, skipped" in out
    assert "Stage 3 (all, to epoch 1): already done at epoch 1, skipped" in out
    runs = os.listdir(logs)
    assert len(runs) == 1 and runs[0].startswith("coco")
    run_dir = logs / runs[0]
    files = set(os.listdir(run_dir))
    assert {"mask_rcnn_coco_0001.h5", "mask_rcnn_coco_best.h5", "history.csv"} <= files
    with open(run_dir / "history.csv") as f:
        assert [row.split(",")[0] for row in f.read().split()[1:]] == ["1"]
    assert f"Last checkpoint: {run_dir / 'mask_rcnn_coco_0001.h5'}" in out
    # The run's settings.json lets the mrcnn command rebuild the model (mrcnn evaluate --logs).
    with open(run_dir / "settings.json") as f:
        settings = json.load(f)
    assert (settings["format"], settings["year"], settings["class_names"]) == \
        ("coco", "2017", ["box", "blob"])
    assert settings["overrides"]["BACKBONE"] == "resnet18" and "preset" not in settings
    from mrcnn.workflow import inference_model
    model, names, _, _ = inference_model("last", str(logs))
    assert names == ["BG", "box", "blob"] and model.config.IMAGE_MAX_DIM == 128

    assert coco_sample.main(["evaluate", "--dataset", str(data), "--year", "2017", "--weights",
                             "last", "--logs", str(logs), "--tiny", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert (f"Running COCO evaluation on 2 images of val2017 "
            f"(weights {run_dir / 'mask_rcnn_coco_0001.h5'})") in out
    for iou_type in ("bbox", "segm"):
        match = re.search(rf"^COCO AP {iou_type}: (\d\.\d{{3}}) \(AP50 (\d\.\d{{3}}), "
                          rf"AP75 (\d\.\d{{3}})\)$", out, re.M)
        assert match, out
        assert all(0.0 <= float(v) <= 1.0 for v in match.groups())
    # pycocotools' own summary is printed too.
    assert out.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 2
