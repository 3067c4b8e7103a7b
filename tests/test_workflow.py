"""The pieces of mrcnn.workflow that need no training: presets, data loading (VIA, COCO), run
directories and --weights values, settings files, stages, detection records, anchor fitting."""

import json
import os

import numpy as np
import pytest

from mrcnn import workflow
from mrcnn.datasets.synthetic import write_via_dataset
from mrcnn.workflow import runs
from mrcnn.workflow.errors import WorkflowError
from mrcnn.workflow.settings import merge, read_config_file
from mrcnn.workflow.stages import Stage, parse_stages

# pycocotools' decoder trips NumPy 2's __array__(copy=...) deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def facemask_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("facemask_data")
    write_via_dataset(str(root), n_train=4, n_val=2, image_size=(128, 128), scene="facemask",
                      seed=3)
    return str(root)


def test_importing_the_workflow_leaves_tensorflow_alone():
    import subprocess
    import sys

    code = "import sys, mrcnn.workflow, mrcnn.cli; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_make_config_presets_and_errors():
    config = workflow.make_config("standard", class_names=["a", "b"], name="balloons")
    assert (config.NAME, config.NUM_CLASSES, config.BACKBONE) == ("balloons", 3, "resnet101")
    assert (config.IMAGES_PER_GPU, config.STEPS_PER_EPOCH,
            config.DETECTION_MIN_CONFIDENCE) == (2, 100, 0.9)
    light = workflow.make_config("light", {"RPN_ANCHOR_SCALES": [4, 8, 16, 32, 64],
                                           "RPN_ANCHOR_RATIOS": [1.0]}, ["x"], inference=True)
    assert light.BATCH_SIZE == 1 and light.IMAGE_MAX_DIM == 128
    assert light.RPN_ANCHOR_SCALES == (4, 8, 16, 32, 64) and light.RPN_ANCHOR_RATIOS == [1.0]
    assert workflow.WorkflowConfig().NUM_CLASSES == 2
    with pytest.raises(WorkflowError, match="--preset"):
        workflow.make_config("huge")
    with pytest.raises(WorkflowError, match="IMAGE_SIZE_PX"):
        workflow.make_config("tiny", {"IMAGE_SIZE_PX": 3})
    from mrcnn.workflow.presets import run_name
    assert run_name("My Data-Set 2") == "my_data_set_2" and run_name("!!") == "mrcnn"


def test_make_config_class_names():
    """The data set's classes give CLASS_NAMES (what exports write); --set NUM_CLASSES (COCO's
    81 heads, say) drops them, and --set CLASS_NAMES is refused, naming where it came from."""
    config = workflow.make_config("tiny", class_names=["cat", "dog"])
    assert config.CLASS_NAMES == ("BG", "cat", "dog") and config.NUM_CLASSES == 3
    coco_heads = workflow.make_config("tiny", {"NUM_CLASSES": 81}, ["cat", "dog"])
    assert coco_heads.NUM_CLASSES == 81 and coco_heads.CLASS_NAMES is None
    with pytest.raises(WorkflowError, match="CLASS_NAMES comes from the data set's classes"):
        workflow.make_config("tiny", {"CLASS_NAMES": ["BG", "x", "y"]}, ["cat", "dog"])
    # Not an override a run records: settings.json keeps the classes on their own.
    from mrcnn.workflow.presets import config_overrides
    assert "CLASS_NAMES" not in config_overrides(config)


def test_via_train_val_share_class_ids(facemask_dir):
    train, val, names = workflow.load_train_val(facemask_dir, class_attribute="mask_type")
    assert names == sorted(names) and set(names) <= {"N95", "cloth", "surgical"}
    assert train.class_names == val.class_names == ["BG"] + names
    single, one = workflow.load_subset(facemask_dir, "val", classes=["mask"])
    assert one == ["mask"] and single.class_names == ["BG", "mask"]
    masks, class_ids = single.load_mask(single.image_ids[0])
    assert masks.dtype == bool and masks.shape[:2] == (128, 128) and set(class_ids) == {1}
    with pytest.raises(WorkflowError, match="--class-attribute"):
        workflow.load_subset(facemask_dir, "val", classes=["a", "b"])


@pytest.mark.parametrize("case", ["no_dir", "no_subset", "no_json", "empty", "coco_missing",
                                  "coco_attribute", "bad_format"])
def test_data_errors_name_the_file_and_flag(case, tmp_path, facemask_dir):
    root = tmp_path / "ds"
    kwargs = {}
    expected = [str(root)]
    if case == "no_subset":
        (root / "val").mkdir(parents=True)
        expected = [str(root / "train"), "--data"]
    elif case == "no_json":
        (root / "train").mkdir(parents=True)
        expected = [str(root / "train" / "via_region_data.json"), "--annotation-file"]
    elif case == "empty":
        from PIL import Image
        (root / "train").mkdir(parents=True)
        Image.new("RGB", (64, 48)).save(root / "train" / "a.jpg")
        (root / "train" / "via_region_data.json").write_text(json.dumps(
            {"a.jpg1": {"filename": "a.jpg", "size": 1, "regions": []}}))
        expected = [str(root / "train" / "via_region_data.json"), "empty"]
    elif case == "coco_missing":
        root.mkdir()
        kwargs = {"format": "coco"}
        expected = [str(root / "annotations" / "instances_train.json"), "--annotation-file"]
    elif case == "coco_attribute":
        root = facemask_dir
        kwargs = {"format": "coco", "class_attribute": "x"}
        expected = ["--class-attribute"]
    elif case == "bad_format":
        root = facemask_dir
        kwargs = {"format": "yolo"}
        expected = ["--format"]
    with pytest.raises(WorkflowError) as info:
        workflow.load_subset(root, "train", **kwargs)
    for text in expected:
        assert text in str(info.value)


def fake_run(logs, name, stamp, epochs, best=None, settings=None):
    run_dir = os.path.join(logs, f"{name}{stamp}")
    os.makedirs(run_dir)
    for e in epochs:
        open(os.path.join(run_dir, f"mask_rcnn_{name}_{e:04d}.h5"), "w").close()
    if best:
        with open(os.path.join(run_dir, "best.json"), "w") as f:
            json.dump({"checkpoint": f"mask_rcnn_{name}_{best:04d}.h5", "epoch": best,
                       "metric": "val_loss", "value": 1.0}, f)
    if settings is not None:
        runs.write_settings(run_dir, settings)
    return run_dir


def test_runs_checkpoints_and_weight_specs(tmp_path):
    logs = str(tmp_path / "logs")
    old = fake_run(logs, "balloon", "20240101T1200", [1, 2, 3], best=2)
    new = fake_run(logs, "shapes", "20240102T0900", [1, 2], best=1, settings={"preset": "tiny"})
    os.makedirs(os.path.join(logs, "shapes20250101T0000"))  # newer, but no checkpoint
    assert runs.list_runs(logs) == [old, new, os.path.join(logs, "shapes20250101T0000")]
    assert runs.run_name_of(old) == "balloon"
    assert [e for e, _ in runs.run_checkpoints(old)] == [1, 2, 3]
    path, record = runs.best_checkpoint(old)
    assert path.endswith("mask_rcnn_balloon_0002.h5") and record["epoch"] == 2
    # The latest run with a checkpoint, of any name or of one.
    assert runs.find_run_checkpoint("last", logs).endswith("shapes20240102T0900/"
                                                           "mask_rcnn_shapes_0002.h5")
    assert runs.find_run_checkpoint("best", logs).endswith("mask_rcnn_shapes_0001.h5")
    assert runs.find_run_checkpoint("last", logs, "balloon").endswith("mask_rcnn_balloon_0003.h5")
    assert workflow.trained_weights(old).endswith("mask_rcnn_balloon_0002.h5")  # a run dir
    assert runs.read_settings(runs.find_run_checkpoint("best", logs)) == {"preset": "tiny"}
    assert runs.settings_of_weights("last", logs) == {"preset": "tiny"}
    for spec, flag in (("coco", "--weights coco"), (str(tmp_path / "x.h5"), "file not found")):
        with pytest.raises(WorkflowError, match=flag):
            workflow.trained_weights(spec, logs)


def test_nothing_found_names_the_places_and_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkflowError) as info:
        workflow.find_run_checkpoint("best", "logs")
    message = str(info.value)
    assert str(tmp_path / "logs") in message and str(tmp_path / "out" / "demo" / "logs") in message
    assert "--logs DIR" in message and "--weights PATH" in message
    # A demo run exists: the message says which --logs finds it.
    fake_run(os.path.join("out", "demo", "logs"), "facemask", "20240101T1200", [1], best=1)
    with pytest.raises(WorkflowError, match=r"pass --logs out/demo/logs"):
        workflow.find_run_checkpoint("best", "logs")


def test_coco_weights_come_from_the_download_cache(tmp_path, monkeypatch):
    import mrcnn.download
    from mrcnn.model import CLASS_SPECIFIC_LAYERS

    calls = []

    def fake_download(path, *args, **kwargs):  # nothing can be downloaded here
        calls.append(path)
        return path

    monkeypatch.setattr(mrcnn.download, "download_trained_weights", fake_download)
    monkeypatch.setenv("MRCNN_HOME", str(tmp_path / "cache"))
    for names, excluded in ((["mask"], list(CLASS_SPECIFIC_LAYERS)),
                            ([str(i) for i in range(80)], [])):
        config = workflow.make_config("standard", class_names=names)
        path, exclude, _ = workflow.resolve_weights("coco", config, str(tmp_path / "logs"))
        assert path == str(tmp_path / "cache" / "mask_rcnn_coco.h5") == calls[-1]
        assert exclude == excluded
    with pytest.raises(WorkflowError, match="resnet101"):
        workflow.resolve_weights("coco", workflow.make_config("tiny"), "logs")


def test_settings_file_and_stages(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"dataset": "d", "config": {"IMAGE_MAX_DIM": 512},
                                "stages": [{"layers": "heads", "lr": 0.01, "epochs": 3}],
                                "class_names": ["ignored"]}))
    settings = read_config_file(path)
    assert settings == {"dataset": "d", "overrides": {"IMAGE_MAX_DIM": 512},
                        "stages": [{"layers": "heads", "lr": 0.01, "epochs": 3}]}
    assert merge({"overrides": {"A": 1}, "preset": "light"}, {"overrides": {"B": 2},
                                                              "preset": None}) == \
        {"overrides": {"A": 1, "B": 2}, "preset": "light"}
    [stage] = parse_stages(settings["stages"])
    assert stage == Stage("heads", 0.01, 3)
    assert [s.to_dict() for s in workflow.FINE_TUNE] == [
        {"layers": "heads", "learning_rate": 1e-3, "epochs": 20, "start": "best"},
        {"layers": "all", "learning_rate": 1e-5, "epochs": 20, "start": "best"}]
    for bad, text in (({"dataset": "d", "learning_rate": 1}, "unknown setting(s) learning_rate"),
                      ({"stages": [{"layer": "heads"}]}, "unknown stage setting(s) layer"),
                      ({"stages": [{"epochs": 0}]}, "epochs >= 1"),
                      ({"stages": []}, "at least one stage")):
        path.write_text(json.dumps(bad))
        with pytest.raises(WorkflowError, match=r"--config .*run\.json") as info:
            read_config_file(path)
        assert text in str(info.value)
    path.write_text("{")
    with pytest.raises(WorkflowError, match="not valid JSON"):
        read_config_file(path)


def test_detection_record_round_trips_masks():
    from pycocotools import mask as mask_utils

    masks = np.zeros((20, 30, 2), bool)
    masks[2:5, 3:9, 0] = True
    masks[10:20, 0:4, 1] = True
    r = {"rois": np.array([[2, 3, 5, 9], [10, 0, 20, 4]]), "class_ids": np.array([2, 1]),
         "scores": np.array([0.97, 0.5]), "masks": masks}
    records = workflow.detection_record(r, ["BG", "cloth", "N95"], (20, 30, 3))
    assert [d["class_name"] for d in records] == ["N95", "cloth"]
    assert records[0]["box"] == [2, 3, 5, 9] and records[0]["bbox"] == [3, 2, 6, 3]
    for k, d in enumerate(json.loads(json.dumps(records))):
        rle = dict(d["segmentation"], counts=d["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), masks[..., k])
        assert d["area"] == masks[..., k].sum()


def test_molded_boxes_follow_resize_image(facemask_dir):
    from mrcnn.image import resize_image
    from mrcnn.ops.boxes_np import extract_bboxes

    dataset, _ = workflow.load_subset(facemask_dir, "train")
    config = workflow.make_config("standard")  # 128 px images padded and scaled to 1024
    groups = workflow.molded_boxes(dataset, config)
    assert list(groups) == [(1024, 1024)]
    expected = []
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, _ = dataset.load_mask(image_id)
        _, window, scale, _, _ = resize_image(image, min_dim=800, max_dim=1024, mode="square")
        expected.append(extract_bboxes(masks) * scale + np.tile(window[:2], 2))
    np.testing.assert_allclose(groups[(1024, 1024)], np.concatenate(expected))


def test_fit_anchors_reports_the_printed_anchors(facemask_dir):
    from mrcnn.anchors import best_anchor_iou

    dataset, _ = workflow.load_subset(facemask_dir, "train")
    config = workflow.make_config("light")
    fit = workflow.fit_anchors(dataset, config)
    scales, ratios = fit["scales"], fit["ratios"]
    assert len(scales) == 5 and scales == sorted(scales)
    assert len(ratios) == 3 and ratios == sorted(ratios)
    assert fit["sizes"][0] - 1 <= scales[0] and scales[-1] <= fit["sizes"][2] + 1 <= 129
    groups = workflow.molded_boxes(dataset, config)
    iou = np.concatenate([best_anchor_iou(b, shape, scales, ratios, config.BACKBONE_STRIDES)
                          for shape, b in groups.items()])
    assert fit["suggested"]["mean_iou"] == pytest.approx(iou.mean())
    text = workflow.format_anchor_report(fit, config, "DIR/train", "preset 'light'")
    assert "Image size assumed: 128x128" in text and f"suggested {iou.mean():.3f}" in text
    assert f"--anchor-scales {','.join(map(str, scales))}" in text


class FakeTrainingModel:
    """MaskRCNN's training surface without a network: ``train`` writes a checkpoint per epoch and
    marks the best by the validation losses in ``LOSSES``; loading one of our checkpoints
    continues its run at its epoch (as MaskRCNN does)."""

    LOSSES = {1: 0.5, 2: 0.9, 3: 0.4, 4: 0.6}

    def __init__(self, mode, config, model_dir):
        self.config, self.epoch, self.stop_training = config, 0, False
        self.log_dir = os.path.join(str(model_dir), f"{config.NAME}20990101T0000")
        self.loaded, self.calls = [], []
        FakeTrainingModel.instance = self

    def create_log_dir(self):
        os.makedirs(self.log_dir, exist_ok=True)
        return self.log_dir

    def load_weights(self, path, by_name=False, exclude=None):
        self.loaded.append(path)
        self.epoch = int(os.path.basename(path)[-7:-3])
        self.log_dir = os.path.dirname(path)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
              custom_callbacks=None):
        self.calls.append((layers, learning_rate, epochs))
        for callback in custom_callbacks or []:
            callback.set_model(self)
            callback.on_train_batch_end(0)
        for epoch in range(self.epoch + 1, epochs + 1):
            name = f"mask_rcnn_{self.config.NAME}_{epoch:04d}.h5"
            open(os.path.join(self.log_dir, name), "w").close()
            best = min((e for e in self.LOSSES if e <= epoch), key=self.LOSSES.get)
            with open(os.path.join(self.log_dir, "best.json"), "w") as f:
                json.dump({"checkpoint": f"mask_rcnn_{self.config.NAME}_{best:04d}.h5",
                           "epoch": best, "metric": "val_loss", "value": self.LOSSES[best]}, f)
            self.epoch = epoch
            if self.stop_training:
                break


def test_train_stages_carry_the_best_over_and_keep_the_time_limit(tmp_path, monkeypatch):
    import time
    import types

    import mrcnn.model as modellib

    monkeypatch.setattr(modellib, "MaskRCNN", FakeTrainingModel)
    data = types.SimpleNamespace(class_names=["BG", "a", "b"])
    config = workflow.make_config("tiny", class_names=["a", "b"], name="fake")
    stages = [Stage("heads", 1e-3, 2), Stage("4+", 1e-4, 2), Stage("all", 1e-5, 1)]
    result = workflow.train_stages(data, data, config, stages, weights="none",
                                   logs=str(tmp_path), settings={"dataset": "d"},
                                   deadlines=[None, time.time() + 600, time.time() - 1])
    model = FakeTrainingModel.instance
    run_dir = model.log_dir
    # Stage 2 from stage 1's best (epoch 1), trained after the run's last checkpoint (epoch 2);
    # stage 3 found its time limit passed and was skipped.
    assert model.loaded == [os.path.join(run_dir, "mask_rcnn_fake_0001.h5")]
    assert model.calls == [("heads", 1e-3, 2), ("4+", 1e-4, 4)]
    assert [(r["stage"], r["first_epoch"], r["last_epoch"]) for r in result["records"]] == \
        [(1, 1, 2), (2, 3, 4)]
    assert result["best"] == os.path.join(run_dir, "mask_rcnn_fake_0003.h5")
    saved = runs.read_settings(run_dir)
    assert saved["class_names"] == ["a", "b"] and saved["dataset"] == "d"
    assert [r["stage"] for r in saved["stage_runs"]] == [1, 2]
    assert saved["overrides"]["BACKBONE"] == "resnet18"  # a Config without preset is recorded
    # A stage past its deadline stops after its first batch (the epoch still ends).
    result = workflow.train_stages(data, data, config, [Stage("all", 1e-3, 3)], weights="none",
                                   logs=str(tmp_path / "again"), deadlines=[time.time() - 1])
    assert result["records"][0]["stopped_by_time_limit"] and \
        result["records"][0]["last_epoch"] == 1
    with pytest.raises(WorkflowError, match="--stage 4"):
        workflow.train_stages(data, data, config, stages, weights="none", only=[4])
