"""End-to-end test of samples/facemask.py on a tiny generated VIA data set (4 train, 2 val images
of 128 px): train stage 1, then stage 2 alone from stage 1's best checkpoint, evaluate, detect,
anchors; plus the command line's errors and the pieces that need no training."""

import json
import os
import re
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "samples"))

import facemask  # noqa: E402
from mrcnn.datasets.synthetic import write_via_dataset  # noqa: E402

# pycocotools' decoder trips NumPy 2's __array__(copy=...) deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("facemask_data")
    write_via_dataset(str(root), n_train=4, n_val=2, image_size=(128, 128), scene="facemask",
                      seed=3)
    return str(root)


def test_help_lists_every_command_and_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        facemask.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("train", "evaluate", "detect", "anchors", "demo", "--weights", "--stage ",
                 "--stage1-epochs", "--stage2-epochs", "--steps-per-epoch", "--class-attribute",
                 "--logs", "--subset", "--limit", "--output", "--image", "--fast", "--preset",
                 "--anchor-scales"):
        assert word in out, word


def run_dirs(logs):
    return sorted(os.path.join(logs, d) for d in os.listdir(logs))


def test_train_both_stages_evaluate_detect(data_dir, tmp_path, monkeypatch, capsys):
    import mrcnn.model as modellib

    loaded = []  # (mode, weights path) of every load_weights call
    original = modellib.MaskRCNN.load_weights

    def spy(self, filepath, by_name=False, exclude=None):
        loaded.append((self.mode, os.path.abspath(filepath)))
        return original(self, filepath, by_name=by_name, exclude=exclude)

    monkeypatch.setattr(modellib.MaskRCNN, "load_weights", spy)
    logs = str(tmp_path / "logs")

    # Stage 1 alone, from scratch.
    assert facemask.main(["train", "--dataset", data_dir, "--logs", logs, "--preset", "tiny",
                          "--weights", "none", "--stage", "1", "--stage1-epochs", "2"]) == 0
    assert loaded == []
    [run_dir] = run_dirs(logs)
    with open(os.path.join(run_dir, "best.json")) as f:
        best = json.load(f)
    assert best["metric"] == "val_loss" and best["epoch"] in (1, 2)
    stage1_best = os.path.join(run_dir, best["checkpoint"])
    stage1_bytes = {e: open(p, "rb").read() for e, p in facemask.run_checkpoints(run_dir)}
    assert sorted(stage1_bytes) == [1, 2]

    # Stage 2 alone: no --weights, no --preset: the best checkpoint and the settings of the
    # latest run.
    assert facemask.main(["train", "--dataset", data_dir, "--logs", logs, "--stage", "2",
                          "--stage2-epochs", "1"]) == 0
    assert loaded == [("training", os.path.abspath(stage1_best))]
    assert run_dirs(logs) == [run_dir]  # stage 2 continued the run ...
    checkpoints = dict(facemask.run_checkpoints(run_dir))
    assert sorted(checkpoints) == [1, 2, 3]  # ... after its last checkpoint
    for epoch, content in stage1_bytes.items():  # stage 1's checkpoints are untouched
        assert open(checkpoints[epoch], "rb").read() == content
    with open(os.path.join(run_dir, "settings.json")) as f:
        settings = json.load(f)
    assert settings["preset"] == "tiny" and settings["class_names"] == ["mask"]
    stage1, stage2 = settings["stages"]
    assert (stage1["stage"], stage1["layers"], stage1["learning_rate"]) == (1, "heads", 1e-3)
    assert (stage2["stage"], stage2["layers"], stage2["learning_rate"]) == (2, "all", 1e-5)
    assert os.path.abspath(stage2["initial_weights"]) == os.path.abspath(stage1_best)
    assert (stage2["first_epoch"], stage2["last_epoch"]) == (3, 3)
    history = open(os.path.join(run_dir, "history.csv")).read().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2"]

    # Evaluate the best checkpoint of the run; the preset comes from settings.json.
    best_link = os.path.join(run_dir, "mask_rcnn_facemask_best.h5")
    figures_path = str(tmp_path / "eval" / "figures.json")
    capsys.readouterr()
    assert facemask.main(["evaluate", "--dataset", data_dir, "--logs", logs, "--weights",
                          best_link, "--output", figures_path]) == 0
    out = capsys.readouterr().out
    with open(figures_path) as f:
        figures = json.load(f)
    assert loaded[-1] == ("inference", os.path.abspath(best_link))
    assert figures["num_images"] == 2 and len(figures["rows"]) == 2
    for key in ("mAP@0.5", "mAP@0.5:0.95"):
        assert 0.0 <= figures[key] <= 1.0
        assert re.search(r"%s\s+%.3f" % (re.escape(key), figures[key]), out), key
    for iou_type in ("bbox", "segm"):
        value = figures["coco"][iou_type]
        assert value == -1 or 0.0 <= value <= 1.0  # COCOeval's -1: nothing to score
        assert f"COCO AP {iou_type}" in out
    for row in figures["rows"]:
        assert os.path.basename(row["reference"]) in out
        assert row["num_gt"] >= 1 and 0.0 <= row["AP@0.5"] <= 1.0

    # Detect on a folder holding two images, a corrupt one and a text file.
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in sorted(os.listdir(os.path.join(data_dir, "val"))):
        if name.endswith(".jpg"):
            shutil.copy(os.path.join(data_dir, "val", name), photos / name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("not an image")
    out_dir = tmp_path / "detections"
    assert facemask.main(["detect", "--weights", best_link, "--image", str(photos),
                          "--output", str(out_dir)]) == 0
    err = capsys.readouterr().err
    assert "broken.jpg" in err
    from pycocotools import mask as mask_utils
    from PIL import Image
    stems = sorted(p[:-4] for p in os.listdir(photos) if p.startswith("facemask"))
    assert sorted(os.listdir(out_dir)) == sorted([s + ".png" for s in stems]
                                                 + [s + ".json" for s in stems])
    for stem in stems:
        with Image.open(out_dir / (stem + ".png")) as im:
            assert im.format == "PNG" and min(im.size) > 100
        with open(out_dir / (stem + ".json")) as f:
            record = json.load(f)
        assert record["image"] == os.path.abspath(photos / (stem + ".jpg"))
        assert (record["height"], record["width"]) == (128, 128)
        assert record["class_names"] == ["BG", "mask"]
        for d in record["detections"]:
            assert d["class_name"] == record["class_names"][d["class_id"]]
            assert 0.0 <= d["score"] <= 1.0
            y1, x1, y2, x2 = d["box"]
            assert 0 <= y1 < y2 <= 128 and 0 <= x1 < x2 <= 128
            assert d["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            mask = mask_utils.decode({"size": d["segmentation"]["size"],
                                      "counts": d["segmentation"]["counts"].encode()})
            assert mask.shape == (128, 128) and int(mask.sum()) == d["area"]

    # A single missing or corrupt file is an error naming it.
    for bad in (photos / "missing.jpg", photos / "broken.jpg"):
        assert facemask.main(["detect", "--weights", best_link, "--image", str(bad),
                              "--output", str(tmp_path / "none")]) == 1
        assert str(bad) in capsys.readouterr().err


def test_anchors_command(data_dir, tmp_path, capsys):
    out_json = str(tmp_path / "anchors.json")
    assert facemask.main(["anchors", "--dataset", data_dir, "--preset", "light",
                          "--output", out_json]) == 0
    out = capsys.readouterr().out
    scales = [int(v) for v in re.search(r"RPN_ANCHOR_SCALES = \(([^)]*)\)", out)
              .group(1).split(",")]
    ratios = [float(v) for v in re.search(r"RPN_ANCHOR_RATIOS = \[([^\]]*)\]", out)
              .group(1).split(",")]
    assert len(scales) == 5 and scales == sorted(scales)
    assert len(ratios) == 3 and ratios == sorted(ratios)
    with open(out_json) as f:
        fit = json.load(f)
    assert fit["scales"] == scales and fit["ratios"] == ratios
    # The scales lie within the sizes of the boxes measured in the 128 px network input.
    assert fit["sizes"][0] - 1 <= scales[0] and scales[-1] <= fit["sizes"][2] + 1
    assert fit["sizes"][2] <= 128
    # The printed IoU figures are those of the printed anchors.
    from mrcnn.anchors import best_anchor_iou
    dataset, _ = facemask.load_subset(data_dir, "train")
    config = facemask.make_config("light")
    groups = facemask.molded_boxes(dataset, config)
    iou = np.concatenate([best_anchor_iou(b, shape, scales, ratios, config.BACKBONE_STRIDES)
                          for shape, b in groups.items()])
    assert fit["suggested"]["mean_iou"] == pytest.approx(iou.mean())
    assert f"suggested {iou.mean():.3f}" in out
    assert fit["num_boxes"] == len(iou)


def test_molded_boxes_follow_resize_image(data_dir):
    from mrcnn.image import resize_image
    from mrcnn.ops.boxes_np import extract_bboxes

    dataset, _ = facemask.load_subset(data_dir, "train")
    config = facemask.make_config("standard")  # 128 px images padded and scaled to 1024
    groups = facemask.molded_boxes(dataset, config)
    assert list(groups) == [(1024, 1024)]
    expected = []
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, _ = dataset.load_mask(image_id)
        _, window, scale, _, _ = resize_image(image, min_dim=800, max_dim=1024, mode="square")
        expected.append(extract_bboxes(masks) * scale + np.tile(window[:2], 2))
    np.testing.assert_allclose(groups[(1024, 1024)], np.concatenate(expected))


def test_dataset_classes_and_config(data_dir):
    train, val, names = facemask.load_train_val(data_dir, class_attribute="mask_type")
    assert names == sorted(names) and set(names) <= {"N95", "cloth", "surgical"}
    # Same ids in both subsets: the class tables are identical.
    assert train.class_names == val.class_names == ["BG"] + names
    config = facemask.make_config("standard", class_names=names)
    assert config.NUM_CLASSES == 1 + len(names) and config.NAME == "facemask"
    assert (config.IMAGES_PER_GPU, config.STEPS_PER_EPOCH,
            config.DETECTION_MIN_CONFIDENCE) == (2, 100, 0.9)
    assert facemask.FaceMaskConfig().NUM_CLASSES == 2
    inference = facemask.make_config("light", {"BACKBONE": "resnet50"}, names, inference=True)
    assert inference.BATCH_SIZE == 1 and inference.BACKBONE == "resnet50"
    single, _ = facemask.load_subset(data_dir, "val")
    assert single.class_names == ["BG", "mask"]
    image_id = single.image_ids[0]
    assert single.image_reference(image_id) == os.path.join(data_dir, "val",
                                                            single.image_info[image_id]["id"])
    masks, class_ids = single.load_mask(image_id)
    assert masks.dtype == bool and masks.shape[:2] == (128, 128) and set(class_ids) == {1}


def test_detection_record_round_trips_masks():
    from pycocotools import mask as mask_utils

    masks = np.zeros((20, 30, 2), bool)
    masks[2:5, 3:9, 0] = True
    masks[10:20, 0:4, 1] = True
    r = {"rois": np.array([[2, 3, 5, 9], [10, 0, 20, 4]]), "class_ids": np.array([2, 1]),
         "scores": np.array([0.97, 0.5]), "masks": masks}
    records = facemask.detection_record(r, ["BG", "cloth", "N95"], (20, 30, 3))
    assert [d["class_name"] for d in records] == ["N95", "cloth"]
    assert records[0]["box"] == [2, 3, 5, 9] and records[0]["bbox"] == [3, 2, 6, 3]
    for k, d in enumerate(json.loads(json.dumps(records))):
        rle = dict(d["segmentation"], counts=d["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), masks[..., k])
        assert d["area"] == masks[..., k].sum()


def test_coco_weights_come_from_the_download_cache(tmp_path, monkeypatch):
    import mrcnn.download
    import mrcnn.model as modellib

    calls = []

    def fake_download(path, *args, **kwargs):  # nothing can be downloaded here
        calls.append(path)
        return path

    monkeypatch.setattr(mrcnn.download, "download_trained_weights", fake_download)
    monkeypatch.setenv("MRCNN_HOME", str(tmp_path / "cache"))
    for names, excluded in ((["mask"], list(modellib.CLASS_SPECIFIC_LAYERS)),
                            ([str(i) for i in range(80)], [])):
        config = facemask.make_config("standard", class_names=names)
        path, exclude, _ = facemask.resolve_weights("coco", config, str(tmp_path / "logs"))
        assert path == str(tmp_path / "cache" / "mask_rcnn_coco.h5") == calls[-1]
        assert exclude == excluded


@pytest.mark.parametrize("case", ["no_dir", "no_subset", "no_json", "empty", "bad_weights",
                                  "coco_backbone", "no_weights", "no_run"])
def test_errors_name_the_file_or_setting(case, data_dir, tmp_path, capsys):
    dataset = str(tmp_path / "ds")
    argv = ["train", "--dataset", dataset, "--weights", "none", "--logs", str(tmp_path / "logs"),
            "--preset", "tiny"]
    expected = dataset
    if case == "no_subset":
        os.makedirs(os.path.join(dataset, "val"))
        expected = os.path.join(dataset, "train")
    elif case == "no_json":
        os.makedirs(os.path.join(dataset, "train"))
        expected = os.path.join(dataset, "train", "via_region_data.json")
    elif case == "empty":
        from PIL import Image
        os.makedirs(os.path.join(dataset, "train"))
        Image.new("RGB", (64, 48)).save(os.path.join(dataset, "train", "a.jpg"))
        with open(os.path.join(dataset, "train", "via_region_data.json"), "w") as f:
            json.dump({"a.jpg1": {"filename": "a.jpg", "size": 1, "regions": []}}, f)
        expected = os.path.join(dataset, "train", "via_region_data.json")
    elif case == "bad_weights":
        argv = ["train", "--dataset", data_dir, "--weights", str(tmp_path / "nope.h5"),
                "--preset", "tiny", "--logs", str(tmp_path / "logs")]
        expected = str(tmp_path / "nope.h5")
    elif case == "coco_backbone":
        argv = ["train", "--dataset", data_dir, "--weights", "coco", "--preset", "tiny",
                "--logs", str(tmp_path / "logs")]
        expected = "resnet101"
    elif case == "no_weights":
        argv = ["train", "--dataset", data_dir, "--preset", "tiny"]
        expected = "--weights"
    elif case == "no_run":
        argv = ["evaluate", "--dataset", data_dir, "--weights", "last", "--logs",
                str(tmp_path / "logs")]
        expected = str(tmp_path / "logs")
    assert facemask.main(argv) == 1
    err = capsys.readouterr().err
    assert expected in err, err
    assert err.startswith("facemask.py ")
