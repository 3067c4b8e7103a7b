"""COCO JSON loader: polygons, RLE, uncompressed RLE, crowd, class mapping, layout, errors."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn.datasets.coco import COCODataset

H, W = 20, 30


def uncompressed_rle(mask):
    """COCO uncompressed RLE in plain NumPy: run lengths of the column-major flattening,
    starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [mask.shape[0], mask.shape[1]], "counts": counts}


def block(y1, y2, x1, x2, height=H, width=W):
    m = np.zeros((height, width), bool)
    m[y1:y2, x1:x2] = True
    return m


RLE_BLOCK = block(10, 15, 15, 25)
CROWD_BLOCK = block(0, 4, 26, 30)


def make_coco(root, image_dir_name="images"):
    """Three images: 1 with polygon/RLE/crowd/sub-pixel annotations, 2 with one polygon,
    3 without annotations. Categories 3 'cat' and 7 'dog' (non-consecutive on purpose)."""
    image_dir = root / image_dir_name
    image_dir.mkdir(parents=True, exist_ok=True)
    for name in ("one.png", "two.png", "three.png"):
        Image.fromarray(np.full((H, W, 3), 100, np.uint8)).save(image_dir / name)
    rle = mask_utils.encode(np.asfortranarray(RLE_BLOCK.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    data = {
        "images": [{"id": 1, "file_name": "one.png", "height": H, "width": W},
                   {"id": 2, "file_name": "two.png", "height": H, "width": W},
                   {"id": 5, "file_name": "three.png", "height": H, "width": W}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            # Rectangle x 2..12, y 3..9: pixels with centres inside -> rows 3..8, cols 2..11.
            {"id": 11, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 60,
             "bbox": [2, 3, 10, 6], "segmentation": [[2, 3, 12, 3, 12, 9, 2, 9]]},
            {"id": 12, "image_id": 1, "category_id": 7, "iscrowd": 0, "area": 50,
             "bbox": [15, 10, 10, 5], "segmentation": rle},
            {"id": 13, "image_id": 1, "category_id": 7, "iscrowd": 1, "area": 16,
             "bbox": [26, 0, 4, 4], "segmentation": uncompressed_rle(CROWD_BLOCK)},
            # A sliver between pixel centres: no pixel, skipped.
            {"id": 14, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 0.01,
             "bbox": [5.1, 15.1, 0.2, 0.2],
             "segmentation": [[5.1, 15.1, 5.3, 15.1, 5.3, 15.3]]},
            {"id": 21, "image_id": 2, "category_id": 3, "iscrowd": 0, "area": 4,
             "bbox": [0, 0, 2, 2], "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
        ],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path, image_dir


def test_masks_class_ids_and_crowd(tmp_path):
    path, image_dir = make_coco(tmp_path)
    ds = COCODataset()
    coco = ds.load_coco_json(str(path), str(image_dir), return_coco=True)
    ds.prepare()
    assert isinstance(coco, COCO)
    assert ds.class_names == ["BG", "cat", "dog"]
    assert ds.map_source_class_id("coco.3") == 1 and ds.map_source_class_id("coco.7") == 2
    # Image 5 has no annotation and is left out, like Matterport.
    assert [info["id"] for info in ds.image_info] == [1, 2]

    masks, class_ids = ds.load_mask(0)
    assert masks.dtype == bool and masks.shape == (H, W, 3)
    assert class_ids.dtype == np.int32
    assert class_ids.tolist() == [1, 2, -2]
    np.testing.assert_array_equal(masks[..., 0], block(3, 9, 2, 12))
    np.testing.assert_array_equal(masks[..., 1], RLE_BLOCK)
    np.testing.assert_array_equal(masks[..., 2], CROWD_BLOCK)

    masks2, class_ids2 = ds.load_mask(1)
    np.testing.assert_array_equal(masks2[..., 0], block(0, 2, 0, 2))
    assert class_ids2.tolist() == [1]
    assert ds.image_reference(0) == str(image_dir / "one.png")
    assert ds.load_image(0).shape == (H, W, 3)


def test_class_ids_filter(tmp_path):
    path, image_dir = make_coco(tmp_path)
    ds = COCODataset()
    ds.load_coco_json(str(path), str(image_dir), class_ids=[7])
    ds.prepare()
    assert ds.class_names == ["BG", "dog"]
    assert [info["id"] for info in ds.image_info] == [1]
    masks, class_ids = ds.load_mask(0)
    assert class_ids.tolist() == [1, -1]
    np.testing.assert_array_equal(masks[..., 0], RLE_BLOCK)


def test_keep_negatives_gives_empty_masks(tmp_path):
    path, image_dir = make_coco(tmp_path)
    ds = COCODataset()
    ds.load_coco_json(str(path), str(image_dir), keep_negatives=True)
    ds.prepare()
    assert [info["id"] for info in ds.image_info] == [1, 2, 5]
    masks, class_ids = ds.load_mask(2)
    assert masks.shape == (H, W, 0) and class_ids.shape == (0,)


def test_custom_source(tmp_path):
    path, image_dir = make_coco(tmp_path)
    ds = COCODataset()
    ds.load_coco_json(str(path), str(image_dir), source="pets")
    ds.prepare()
    assert ds.map_source_class_id("pets.7") == 2
    assert ds.load_mask(0)[1].tolist() == [1, 2, -2]


def test_load_coco_standard_layout(tmp_path):
    make_coco(tmp_path, image_dir_name="val2017")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "instances.json").rename(tmp_path / "annotations" / "instances_val2017.json")
    ds = COCODataset()
    coco = ds.load_coco(str(tmp_path), "val", year="2017", return_coco=True)
    ds.prepare()
    assert isinstance(coco, COCO)
    assert ds.num_images == 2
    assert ds.image_info[0]["path"] == str(tmp_path / "val2017" / "one.png")

    # minival reads its own annotation file but the val images.
    (tmp_path / "annotations" / "instances_val2017.json").rename(
        tmp_path / "annotations" / "instances_minival2017.json")
    ds = COCODataset()
    ds.load_coco(str(tmp_path), "minival", year="2017")
    assert ds.image_info[0]["path"] == str(tmp_path / "val2017" / "one.png")

    with pytest.raises(ValueError, match="auto_download"):
        COCODataset().load_coco(str(tmp_path), "val", year="2017", auto_download=True)


def test_errors_name_the_file(tmp_path):
    path, image_dir = make_coco(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        COCODataset().load_coco_json(str(tmp_path / "missing.json"), str(image_dir))
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(ValueError, match=r"bad\.json.*invalid JSON"):
        COCODataset().load_coco_json(str(bad), str(image_dir))
    bad.write_text(json.dumps({"images": [], "annotations": {}, "categories": []}))
    with pytest.raises(ValueError, match=r"bad\.json.*'annotations' must be a list"):
        COCODataset().load_coco_json(str(bad), str(image_dir))
    with pytest.raises(ValueError, match=r"class_ids \[99\]"):
        COCODataset().load_coco_json(str(path), str(image_dir), class_ids=[3, 99])


def test_wrong_size_rle(tmp_path):
    """A non-crowd RLE of another size is an error; a crowd one covers the image (Matterport)."""
    path, image_dir = make_coco(tmp_path)
    data = json.loads(path.read_text())
    small = uncompressed_rle(block(0, 2, 0, 2, height=5, width=5))
    data["annotations"] = [{"id": 1, "image_id": 2, "category_id": 3, "iscrowd": 1,
                            "segmentation": small, "area": 4, "bbox": [0, 0, 2, 2]}]
    path.write_text(json.dumps(data))
    ds = COCODataset()
    ds.load_coco_json(str(path), str(image_dir))
    ds.prepare()
    masks, class_ids = ds.load_mask(0)
    assert class_ids.tolist() == [-1] and masks.all()

    data["annotations"][0]["iscrowd"] = 0
    path.write_text(json.dumps(data))
    ds = COCODataset()
    ds.load_coco_json(str(path), str(image_dir))
    ds.prepare()
    with pytest.raises(ValueError, match="annotation 1"):
        ds.load_mask(0)


# ------------------------------------------------------------------------- hostile input
# (tests/test_fuzz_annotations.py mutates files at random; these are the exact cases.)
from mrcnn.datasets.coco import COCOFormatError, COCOWarning  # noqa: E402


def _load_with(tmp_path, mutate):
    path, image_dir = make_coco(tmp_path)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    ds = COCODataset()
    ds.load_coco_json(str(path), str(image_dir))
    ds.prepare()
    return ds, [ds.load_mask(i) for i in ds.image_ids]


@pytest.mark.parametrize("segmentation, pattern", [
    ({"size": [H, W], "counts": [5, 10]}, "cover 15 pixels"),
    ({"size": [H, W], "counts": [-5, H * W + 5]}, "non-negative"),
    ({"size": [H, W], "counts": "zzzz"}, "invalid character|truncated|cover"),
    ({"size": [H, W], "counts": "PP"}, "cover|truncated"),
    ({"size": [0, W], "counts": []}, "positive"),
    ({"size": [H, W], "counts": None}, "list or a string"),
], ids=["short", "negative", "garbage", "truncated", "zero-size", "null"])
def test_damaged_rle_is_rejected_before_pycocotools_decodes_it(tmp_path, segmentation, pattern):
    """pycocotools' C decoder does not check run lengths against the mask size; a damaged RLE
    would write past the mask. It is rejected first, naming the file and the annotation."""
    def mutate(data):
        data["annotations"][1]["segmentation"] = segmentation
    with pytest.raises(COCOFormatError, match=pattern) as info:
        _load_with(tmp_path, mutate)
    assert "instances.json" in str(info.value) and "annotation 12" in str(info.value)


@pytest.mark.parametrize("change, pattern", [
    (lambda d: d["annotations"][0].update(image_id=99), r"annotations\[0\].*image_id 99"),
    (lambda d: d["annotations"][0].update(category_id=42), r"category_id 42"),
    (lambda d: d["annotations"][0].update(id=[1]), r"annotations\[0\].*id must be an integer"),
    (lambda d: d["annotations"][1].update(id=11), "annotation id 11 is used twice"),
    (lambda d: d["images"][0].update(height=0), r"images\[0\].*height must be a positive"),
    (lambda d: d["images"][0].update(width="30"), r"width must be a positive"),
    (lambda d: d["images"][1].update(id=1), "id 1 is used twice"),
    (lambda d: d["images"][0].update(file_name=None), "file_name must be a non-empty string"),
    (lambda d: d["annotations"][0].update(segmentation=[[float("nan"), 1, 2, 3, 4, 5]]),
     "finite numbers"),
])
def test_malformed_entries_name_the_file_and_entry(tmp_path, change, pattern):
    with pytest.raises(COCOFormatError, match=pattern) as info:
        _load_with(tmp_path, change)
    assert "instances.json" in str(info.value)


def test_polygons_far_outside_are_clipped_and_short_ones_warned(tmp_path):
    big = 1e12

    def mutate(data):
        data["annotations"] = [
            {"id": 1, "image_id": 2, "category_id": 3, "iscrowd": 0,
             "segmentation": [[-big, -big, big, -big, big, big, -big, big]]},
            {"id": 2, "image_id": 2, "category_id": 3, "iscrowd": 0,
             "segmentation": [[1, 2, 3, 4], [2, 2, 8, 2, 8, 8]]},
            {"id": 3, "image_id": 2, "category_id": 3, "iscrowd": 0, "segmentation": []},
        ]
    with pytest.warns(COCOWarning) as caught:
        ds, results = _load_with(tmp_path, mutate)
    (masks, class_ids), = results
    assert masks.shape == (H, W, 2) and masks[..., 0].all() and masks[..., 1].any()
    messages = [str(w.message) for w in caught]
    assert any("annotation 2" in m and "polygon 0 has 4 coordinates" in m for m in messages)
    assert any("annotation 3" in m and "empty segmentation" in m for m in messages)
