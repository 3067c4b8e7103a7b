"""mAP and COCO evaluation with fake models whose detections are known."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn.dataset import Dataset
from mrcnn.datasets import SyntheticShapesDataset
from mrcnn.evaluation import (detections_to_coco, evaluate_coco, evaluate_map, format_map_table,
                              to_coco_ground_truth)
from mrcnn.ops.boxes_np import extract_bboxes

# pycocotools' decoder trips NumPy 2's __array__(copy=...) deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


class ArrayDataset(Dataset):
    """Images and masks held in memory. Pixel (0, 0) of image i holds i so a fake model can
    tell which image it was given. ``matterport_empty``: images without instances return the
    base class's [0, 0, 0] mask, as Matterport's Dataset.load_mask does."""

    def __init__(self, items, matterport_empty=False):
        super().__init__()
        self.add_class("test", 1, "thing")
        self.add_class("test", 2, "other")
        self.matterport_empty = matterport_empty
        for i, (shape, masks, class_ids) in enumerate(items):
            self.add_image("test", image_id=i, path=None, height=shape[0], width=shape[1],
                           masks=masks, class_ids=class_ids)
        self.prepare()

    def load_image(self, image_id):
        info = self.image_info[image_id]
        image = np.full((info["height"], info["width"], 3), 50, np.uint8)
        image[0, 0, 0] = image_id
        return image

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        if info["masks"].shape[-1] == 0 and self.matterport_empty:
            return np.empty([0, 0, 0], bool), np.empty([0], np.int32)
        return info["masks"], np.asarray(info["class_ids"], np.int32)

    def image_reference(self, image_id):
        return f"array:{image_id}"


def detection(masks, class_ids, scores):
    masks = np.asarray(masks, bool)
    return {"rois": extract_bboxes(masks), "class_ids": np.asarray(class_ids, np.int32),
            "scores": np.asarray(scores, np.float32), "masks": masks}


def no_detection(height, width):
    return {"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros(0, np.int32),
            "scores": np.zeros(0, np.float32), "masks": np.zeros((height, width, 0), bool)}


class FakeModel:
    """detect() returns a stored result per image, found from pixel (0, 0)."""

    def __init__(self, results):
        self.results = results
        self.calls = 0

    def detect(self, images, verbose=0):
        assert len(images) == 1
        self.calls += 1
        return [self.results[int(images[0][0, 0, 0])]]


def square(top, left, size=20, height=64, width=64):
    m = np.zeros((height, width, 1), bool)
    m[top:top + size, left:left + size, 0] = True
    return m


def shifted(masks, dx):
    out = np.zeros_like(masks)
    out[:, dx:] = masks[:, :masks.shape[1] - dx]
    return out


# ------------------------------------------------------------------------- perfect predictions

class GroundTruthModel:
    """detect() returns the ground truth of a data set (crowd left out), scores 1.0."""

    def __init__(self, dataset, dx=0):
        self.dataset, self.dx = dataset, dx
        self.images = {i: dataset.load_image(i) for i in dataset.image_ids}

    def detect(self, images, verbose=0):
        image_id = next(i for i, im in self.images.items() if np.array_equal(im, images[0]))
        masks, class_ids = self.dataset.load_mask(image_id)
        masks = shifted(masks, self.dx) if self.dx else masks
        return [detection(masks, class_ids, np.ones(len(class_ids)))]


@pytest.fixture(scope="module")
def shapes():
    ds = SyntheticShapesDataset()
    ds.load_shapes(5, 64, 64, seed=11)
    ds.prepare()
    return ds


def test_ground_truth_predictions_score_one(shapes):
    model = GroundTruthModel(shapes)
    result = evaluate_map(model, shapes, iou_thresholds="coco", verbose=0)
    assert result["mAP@0.5"] == 1.0 and result["mAP@0.5:0.95"] == 1.0 and result["mAP"] == 1.0
    assert result["num_images"] == result["num_evaluated"] == 5
    assert [row["num_gt"] for row in result["rows"]] == \
        [shapes.load_mask(i)[0].shape[-1] for i in shapes.image_ids]
    coco = evaluate_coco(model, shapes, verbose=0)
    assert coco["bbox"] == pytest.approx(1.0) and coco["segm"] == pytest.approx(1.0)
    assert len(coco["bbox_stats"]) == 12 and len(coco["segm_stats"]) == 12


def test_shifted_predictions_score_lower(shapes):
    model = GroundTruthModel(shapes, dx=5)
    result = evaluate_map(model, shapes, iou_thresholds="coco", verbose=0)
    assert result["mAP@0.5:0.95"] < result["mAP@0.5"] <= 1.0
    assert result["mAP@0.5:0.95"] < 0.9
    coco = evaluate_coco(model, shapes, verbose=0)
    assert coco["bbox"] < 0.9 and coco["segm"] < 0.9


# ------------------------------------------------------------------------- hand-worked cases

def test_square_shifted_by_four_pixels():
    """20x20 square moved 4 px right: IoU = 16*20 / (2*400 - 320) = 2/3.
    Matterport AP: 1 at IoU 0.5, 0 at 0.75. COCO: matched at 0.50, 0.55, 0.60, 0.65 of the ten
    thresholds -> AP = 0.4; AP50 = 1, AP75 = 0 (same for boxes and masks)."""
    gt = square(10, 10)
    ds = ArrayDataset([((64, 64), gt, [1])])
    model = FakeModel({0: detection(shifted(gt, 4), [1], [0.9])})
    result = evaluate_map(model, ds, iou_thresholds=(0.5, 0.75), verbose=0)
    assert result["mAP_per_iou"] == {0.5: 1.0, 0.75: 0.0}
    assert result["mAP@0.5"] == 1.0 and result["mAP"] == 0.5
    assert "mAP@0.5:0.95" not in result
    assert result["rows"][0]["AP_per_iou"] == {0.5: 1.0, 0.75: 0.0}
    coco = evaluate_coco(model, ds, verbose=0)
    for t in ("bbox", "segm"):
        assert coco[t] == pytest.approx(0.4)
        assert coco[f"{t}_AP50"] == pytest.approx(1.0) and coco[f"{t}_AP75"] == pytest.approx(0.0)


def test_wrong_class_is_not_a_match():
    gt = square(10, 10)
    ds = ArrayDataset([((64, 64), gt, [1])])
    model = FakeModel({0: detection(gt, [2], [0.9])})
    assert evaluate_map(model, ds, verbose=0)["mAP"] == 0.0
    assert evaluate_coco(model, ds, iou_type="segm", verbose=0)["segm"] == pytest.approx(0.0)


def test_image_without_predictions_scores_zero():
    """Two images of one square each; only the first is detected. mAP = (1 + 0) / 2.
    COCO: recall reaches 1/2 at precision 1, so 51 of the 101 recall points have precision 1."""
    a, b = square(5, 5), square(30, 30)
    ds = ArrayDataset([((64, 64), a, [1]), ((64, 64), b, [1])])
    model = FakeModel({0: detection(a, [1], [0.8]), 1: no_detection(64, 64)})
    result = evaluate_map(model, ds, verbose=0)
    assert [row["AP"] for row in result["rows"]] == [1.0, 0.0]
    assert result["rows"][1]["num_pred"] == 0 and result["mAP"] == 0.5
    coco = evaluate_coco(model, ds, verbose=0)
    assert coco["segm"] == pytest.approx(51 / 101) and coco["bbox"] == pytest.approx(51 / 101)


def test_no_detections_at_all():
    ds = ArrayDataset([((64, 64), square(5, 5), [1])])
    model = FakeModel({0: no_detection(64, 64)})
    assert evaluate_map(model, ds, verbose=0)["mAP"] == 0.0
    coco = evaluate_coco(model, ds, verbose=0)
    assert coco["bbox"] == 0.0 and coco["segm"] == 0.0 and coco["num_detections"] == 0


@pytest.mark.parametrize("matterport_empty", [False, True])
def test_empty_ground_truth_image(matterport_empty):
    """Image 1 has no instances: no AP, left out of the mean. A false positive there with a
    higher score than the true positive of image 0 halves the COCO precision: AP = 0.5."""
    gt = square(10, 10)
    empty = np.zeros((48, 40, 0), bool)
    ds = ArrayDataset([((64, 64), gt, [1]), ((48, 40), empty, [])],
                      matterport_empty=matterport_empty)
    false_positive = np.zeros((48, 40, 1), bool)
    false_positive[5:15, 5:15] = True
    model = FakeModel({0: detection(gt, [1], [0.8]), 1: detection(false_positive, [1], [0.9])})
    result = evaluate_map(model, ds, verbose=0)
    assert result["mAP"] == 1.0
    assert result["num_evaluated"] == 1 and result["num_skipped"] == 1
    row = result["rows"][1]
    assert row["AP"] is None and row["num_gt"] == 0 and row["num_pred"] == 1
    assert "no ground-truth" in row["note"]
    assert "n/a" in format_map_table(result).splitlines()[2]
    coco = evaluate_coco(model, ds, verbose=0)
    assert coco["bbox"] == pytest.approx(0.5) and coco["segm"] == pytest.approx(0.5)
    gt_coco = to_coco_ground_truth(ds)
    assert gt_coco.imgs[1]["height"] == 48 and gt_coco.imgs[1]["width"] == 40


def test_only_empty_ground_truth_gives_nan():
    ds = ArrayDataset([((32, 32), np.zeros((32, 32, 0), bool), [])])
    result = evaluate_map(FakeModel({0: no_detection(32, 32)}), ds, verbose=0)
    assert np.isnan(result["mAP"]) and result["num_evaluated"] == 0


def test_crowd_ground_truth():
    """A crowd region (negative id) is not an instance for mAP; COCOeval ignores detections on
    it. The crowd detection has the top score: Matterport AP = 1/2, COCO AP = 1."""
    masks = np.concatenate([square(5, 5), square(35, 35)], axis=-1)
    ds = ArrayDataset([((64, 64), masks, [1, -1])])
    model = FakeModel({0: detection(masks, [1, 1], [0.5, 0.9])})
    result = evaluate_map(model, ds, verbose=0)
    assert result["rows"][0]["num_gt"] == 1 and result["mAP"] == 0.5
    coco = evaluate_coco(model, ds, iou_type="bbox", verbose=0)
    assert coco["bbox"] == pytest.approx(1.0) and "segm" not in coco


# ------------------------------------------------------------------------- COCO conversion

def test_to_coco_ground_truth():
    masks = np.concatenate([square(10, 12, size=20), square(40, 3, size=5)], axis=-1)
    ds = ArrayDataset([((64, 64), masks, [2, -1]), ((64, 64), square(0, 0, size=3), [1])])
    coco = to_coco_ground_truth(ds)
    assert sorted(coco.getImgIds()) == [0, 1]
    assert coco.loadCats(coco.getCatIds()) == [{"id": 1, "name": "thing"},
                                               {"id": 2, "name": "other"}]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[0]))
    assert [a["id"] for a in anns] == [1, 2]
    assert anns[0]["bbox"] == [12, 10, 20, 20] and anns[0]["area"] == 400
    assert anns[0]["category_id"] == 2 and anns[0]["iscrowd"] == 0
    assert anns[1]["bbox"] == [3, 40, 5, 5] and anns[1]["area"] == 25
    assert anns[1]["category_id"] == 1 and anns[1]["iscrowd"] == 1
    np.testing.assert_array_equal(coco.annToMask(anns[0]), masks[..., 0])
    assert coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]["id"] == 3


def test_detections_to_coco():
    masks = np.concatenate([square(10, 12, size=20), np.zeros((64, 64, 1), bool)], axis=-1)
    r = detection(masks, [2, 1], [0.75, 0.5])
    r["rois"][0] = [10, 12, 30, 32]
    out = detections_to_coco([r], [7])
    assert len(out) == 1  # the empty mask is dropped
    assert out[0]["image_id"] == 7 and out[0]["category_id"] == 2
    assert out[0]["bbox"] == [12.0, 10.0, 20.0, 20.0] and out[0]["score"] == 0.75
    assert isinstance(out[0]["segmentation"]["counts"], str)
    json.dumps(out)
    np.testing.assert_array_equal(mask_utils.decode(out[0]["segmentation"]), masks[..., 0])
    with pytest.raises(ValueError, match="2 image ids"):
        detections_to_coco([r], [1, 2])
    ds = ArrayDataset([((64, 64), square(0, 0), [1])])
    bad = detection(square(0, 0), [5], [0.5])
    with pytest.raises(ValueError, match="class id 5"):
        detections_to_coco([bad], [0], ds)


# ------------------------------------------------------------------------- options and errors

def test_image_ids_limit_and_table():
    items = [((64, 64), square(4 * i, 4 * i), [1]) for i in range(4)]
    ds = ArrayDataset(items)
    model = FakeModel({i: detection(items[i][1], [1], [1.0]) for i in range(4)})
    result = evaluate_map(model, ds, image_ids=[3, 1, 2], limit=2, verbose=0)
    assert [row["image_id"] for row in result["rows"]] == [3, 1]
    assert model.calls == 2
    table = format_map_table(result)
    assert "array:3" in table and "array:1" in table and "array:2" not in table
    coco = evaluate_coco(model, ds, image_ids=[0, 2], verbose=0)
    assert coco["num_images"] == 2 and coco["num_detections"] == 2


def test_verbose_prints_summary(capsys):
    ds = ArrayDataset([((64, 64), square(5, 5), [1])])
    model = FakeModel({0: detection(square(5, 5), [1], [1.0])})
    evaluate_map(model, ds, verbose=1)
    assert "mAP@0.5=1.0000" in capsys.readouterr().out
    evaluate_coco(model, ds, iou_type="segm", verbose=1)
    assert "Average Precision" in capsys.readouterr().out
    evaluate_coco(model, ds, iou_type="segm", verbose=0)
    assert capsys.readouterr().out == ""


def test_bad_arguments_and_bad_model_output():
    ds = ArrayDataset([((64, 64), square(5, 5), [1])])
    good = FakeModel({0: detection(square(5, 5), [1], [1.0])})
    with pytest.raises(ValueError, match="iou_thresholds"):
        evaluate_map(good, ds, iou_thresholds="voc", verbose=0)
    with pytest.raises(ValueError, match="iou_thresholds"):
        evaluate_map(good, ds, iou_thresholds=(0.0,), verbose=0)
    with pytest.raises(ValueError, match="iou_type"):
        evaluate_coco(good, ds, iou_type="keypoints", verbose=0)
    wrong_size = FakeModel({0: detection(np.ones((32, 32, 1), bool), [1], [1.0])})
    with pytest.raises(ValueError, match=r"original image size"):
        evaluate_map(wrong_size, ds, verbose=0)
    r = detection(square(5, 5), [1], [1.0])
    r["scores"] = np.ones(2)
    with pytest.raises(ValueError, match="disagree"):
        evaluate_map(FakeModel({0: r}), ds, verbose=0)
    del r["masks"]
    with pytest.raises(ValueError, match="masks"):
        evaluate_map(FakeModel({0: r}), ds, verbose=0)
