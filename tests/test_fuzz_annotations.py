"""Fuzzed annotation files (issue 14): valid VIA 1.x / 2.x / project and COCO JSON files, mutated
by hypothesis (wrong types, missing keys, NaN/inf/huge/negative coordinates, empty, 1-2 point and
self-intersecting polygons, unicode and path-like file names, regions as dict/list/null, images
of size 0, points far outside the image), must either load with every mask inside its image and
no region lost without a warning, or raise the library's own error (VIAFormatError /
COCOFormatError; FileNotFoundError for a missing image that has regions) naming the file and,
for an entry's fault, the entry. Any other exception (IndexError, KeyError, TypeError,
ZeroDivisionError, ...) fails.

Examples: ``CI_EXAMPLES`` per layout in the default run (4 layouts), ``SLOW_EXAMPLES`` per layout
with ``-m slow``.
"""

import copy
import json
import os
import shutil
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from mrcnn.datasets.coco import COCODataset, COCOFormatError, COCOWarning
from mrcnn.datasets.via import VIADataset, VIAFormatError, VIAWarning

CI_EXAMPLES = 400
SLOW_EXAMPLES = 3000
IMAGES = {"a.png": (30, 40), "b.png": (24, 24)}  # name: (height, width)
JSON_NAME = "via_region_data.json"

# ------------------------------------------------------------------------------ valid files


def _poly(xs, ys):
    return {"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
            "region_attributes": {"kind": "mask"}}


def _regions():
    return {
        "a.png": [_poly([2, 20, 20, 2], [3, 3, 15, 15]),
                  {"shape_attributes": {"name": "rect", "x": 25, "y": 5, "width": 10,
                                        "height": 8}, "region_attributes": {}},
                  {"shape_attributes": {"name": "circle", "cx": 10, "cy": 22, "r": 5},
                   "region_attributes": {}},
                  {"shape_attributes": {"name": "ellipse", "cx": 30, "cy": 22, "rx": 6,
                                        "ry": 3, "theta": 0.5}, "region_attributes": {}}],
        "b.png": [_poly([1, 12, 6], [1, 2, 11])],
    }


def via2():
    return {f"{name}{i}": {"filename": name, "size": 100 + i, "regions": regions,
                           "file_attributes": {}}
            for i, (name, regions) in enumerate(_regions().items())}


def via1():
    return {f"{name}{i}": {"fileref": "", "filename": name, "size": 100 + i,
                           "base64_img_data": "", "file_attributes": {},
                           "regions": {str(j): r for j, r in enumerate(regions)}}
            for i, (name, regions) in enumerate(_regions().items())}


def via_project():
    return {"_via_settings": {"ui": {}, "core": {}, "project": {"name": "p"}},
            "_via_img_metadata": via2(), "_via_attributes": {"region": {}, "file": {}}}


def _rle_string(height, width):
    from pycocotools import mask as mask_utils
    m = np.zeros((height, width), np.uint8, order="F")
    m[2:9, 3:12] = 1
    return mask_utils.encode(m)["counts"].decode("ascii")


def coco():
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 30, "width": 40},
                   {"id": 2, "file_name": "b.png", "height": 24, "width": 24}],
        "categories": [{"id": 1, "name": "mask"}, {"id": 4, "name": "face"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [[2, 3, 20, 3, 20, 15, 2, 15]], "area": 216, "bbox": [2, 3, 18, 12]},
            {"id": 11, "image_id": 1, "category_id": 4, "iscrowd": 1,
             "segmentation": {"size": [30, 40], "counts": [5, 10, 1185]}, "area": 10,
             "bbox": [0, 5, 1, 10]},
            {"id": 12, "image_id": 2, "category_id": 1, "iscrowd": 0,
             "segmentation": {"size": [24, 24], "counts": _rle_string(24, 24)}, "area": 63,
             "bbox": [3, 2, 9, 7]},
            {"id": 13, "image_id": 2, "category_id": 4, "iscrowd": 0,
             "segmentation": [[1, 1, 12, 2, 6, 11], [14, 14, 20, 14, 20, 20]], "area": 60,
             "bbox": [1, 1, 19, 19]},
        ],
    }


LAYOUTS = {"via1": via1, "via2": via2, "via_project": via_project, "coco": coco}

# ------------------------------------------------------------------------------ mutations

NAMES = st.sampled_from(["a.png", "b.png", "missing.png", "zero.png", JSON_NAME, "../a.png",
                         "/etc/passwd", "sub/dir/a.png", "ü ñ 画像.png", "a\x00.png", "",
                         "C:\\images\\a.png", "a.png/", "."])
NUMBERS = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1e308, -1e308, 1e12, 0.5, 2**63]))
COORDS = st.lists(st.one_of(st.integers(-60, 100), st.floats(-1e6, 1e6),
                            st.sampled_from([1e308, -1e308, 1e12, -5000])), max_size=9)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=6), NAMES)
VALUES = st.one_of(SCALARS, COORDS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.text(max_size=4), SCALARS, max_size=3),
                   st.just({}), st.just([]))
SHAPES = st.sampled_from([
    {"name": "polygon", "all_points_x": [], "all_points_y": []},
    {"name": "polygon", "all_points_x": [5], "all_points_y": [5]},
    {"name": "polygon", "all_points_x": [5, 9], "all_points_y": [5, 9]},
    {"name": "polygon", "all_points_x": [2, 20, 2, 20], "all_points_y": [2, 20, 20, 2]},  # bow tie
    {"name": "polygon", "all_points_x": [-1e9, 1e9, 1e9, -1e9],
     "all_points_y": [-1e9, -1e9, 1e9, 1e9]},  # far outside, covering the image
    {"name": "polygon", "all_points_x": [500, 600, 550], "all_points_y": [500, 500, 600]},
    {"name": "polygon", "all_points_x": [1, 5, 9], "all_points_y": [1, 5, 9]},  # collinear
    {"name": "rect", "x": 5, "y": 5, "width": -4, "height": 6},
    {"name": "rect", "x": 5, "y": 5, "width": 0, "height": 6},
    {"name": "circle", "cx": 10, "cy": 10, "r": 1e300},
    {"name": "circle", "cx": 10, "cy": 10, "r": 0.2},
    {"name": "ellipse", "cx": -50, "cy": -50, "rx": 3, "ry": 3},
    {"name": "point", "cx": 3, "cy": 3},
    {"name": "polyline", "all_points_x": [1, 9, 9], "all_points_y": [1, 1, 9]},
    {"name": "banana"},
])
COCO_SEGMENTATIONS = st.sampled_from([
    [], [[]], [[1, 2]], [[1, 2, 3, 4]], [[1, 2, 3, 4, 5]], [[2, 2, 20, 20, 2, 20, 20, 2]],
    [[-1e9, -1e9, 1e9, -1e9, 1e9, 1e9, -1e9, 1e9]], [[500, 500, 600, 500, 550, 600]],
    [[float("nan"), 1, 2, 3, 4, 5]], [[1e308, 1, 2, 3, 4, 5]],
    {"size": [30, 40], "counts": [1200]}, {"size": [30, 40], "counts": [5, 10]},
    {"size": [30, 40], "counts": [-5, 1205]}, {"size": [30, 40], "counts": "0d0"},
    {"size": [30, 40], "counts": "zzzz"}, {"size": [30, 40], "counts": "PP"},
    {"size": [0, 40], "counts": []}, {"size": [24, 24], "counts": [0, 576]},
    {"size": "x", "counts": [1]}, {"counts": [1]}, {"size": [30, 40], "counts": None},
])


def _nodes(tree, path=()):
    """Every (container, key) in a JSON tree."""
    out = []
    if isinstance(tree, dict):
        for k in list(tree):
            out.append((tree, k))
            out.extend(_nodes(tree[k]))
    elif isinstance(tree, list):
        for i in range(len(tree)):
            out.append((tree, i))
            out.extend(_nodes(tree[i]))
    return out


def mutate(doc, data, coco_layout):
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        nodes = _nodes(doc)
        if not nodes:
            break
        parent, key = nodes[data.draw(st.integers(0, len(nodes) - 1), label="node")]
        # Geometry mutations twice as likely: they keep the file loadable more often, which
        # exercises the "masks inside the image, nothing lost silently" half of the property.
        op = data.draw(st.sampled_from(["value", "delete", "coords", "coords", "shape", "shape",
                                        "name", "container", "rename"]), label="op")
        if op == "delete":
            del parent[key]
        elif op == "coords":
            parent[key] = data.draw(COORDS)
        elif op == "shape":
            parent[key] = copy.deepcopy(data.draw(COCO_SEGMENTATIONS if coco_layout else SHAPES))
        elif op == "name":
            parent[key] = data.draw(NAMES)
        elif op == "container":  # regions (or anything) as dict / list / null
            value = parent[key]
            if isinstance(value, list):
                parent[key] = {str(i): v for i, v in enumerate(value)}
            elif isinstance(value, dict):
                parent[key] = list(value.values())
            else:
                parent[key] = None
        elif op == "rename" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6), label="new key")] = parent.pop(key)
        else:
            parent[key] = copy.deepcopy(data.draw(VALUES, label="value"))
    return doc


# ------------------------------------------------------------------------------ checks


def _folder():
    folder = tempfile.mkdtemp(prefix="mrcnn_fuzz_")
    for name, (h, w) in IMAGES.items():
        Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(os.path.join(folder, name))
    open(os.path.join(folder, "zero.png"), "wb").close()  # an image file of size 0
    os.mkdir(os.path.join(folder, "sub"))
    return folder


def _tokens(doc):
    """Strings an error about one entry would name: entry keys, file names, ids."""
    out = set()
    entries = doc.get("_via_img_metadata", doc) if isinstance(doc, dict) else {}
    if isinstance(entries, dict):
        for key, entry in entries.items():
            out.add(repr(key))
            if isinstance(entry, dict) and isinstance(entry.get("filename"), str):
                out.add(repr(entry["filename"]))
    for section in ("images", "annotations", "categories"):
        if isinstance(doc, dict) and isinstance(doc.get(section), list):
            out.add(section + "[")
            for item in doc[section]:
                if isinstance(item, dict) and "id" in item:
                    out.add(f"{section[:-1]} {item['id']!r}")
                if isinstance(item, dict) and isinstance(item.get("file_name"), str):
                    out.add(item["file_name"])
    return out


FILE_LEVEL = ("invalid JSON", "top level", "must be a list", "appears twice in one JSON",
              "_via_img_metadata", "COCO JSON", "VIA 3.x", "project file")


def _assert_names_file_and_entry(message, json_path, doc):
    assert json_path in message, message
    assert any(t in message for t in _tokens(doc)) or any(k in message for k in FILE_LEVEL), \
        message


def _mask_checks(masks, class_ids, height, width):
    assert masks.dtype == bool and masks.shape[:2] == (height, width)
    assert class_ids.shape == (masks.shape[2],)
    if masks.shape[2]:
        assert masks.reshape(-1, masks.shape[2]).any(axis=0).all(), "an empty mask"


def check_via(doc):
    folder = _folder()
    json_path = os.path.join(folder, JSON_NAME)
    try:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = VIADataset()
            try:
                ds.load_via(folder)
            except VIAFormatError as e:
                _assert_names_file_and_entry(str(e), json_path, doc)
                return "error"
            except FileNotFoundError as e:
                assert json_path in str(e) and "not found" in str(e), str(e)
                return "error"
            ds.prepare()
            loaded = {}
            for image_id in ds.image_ids:
                info = ds.image_info[image_id]
                masks, class_ids = ds.load_mask(image_id)
                height, width = IMAGES[os.path.basename(info["path"])]
                _mask_checks(masks, class_ids, height, width)
                loaded[info["id"]] = masks.shape[2]
        messages = [str(w.message) for w in caught if issubclass(w.category, VIAWarning)]
        entries = doc.get("_via_img_metadata", doc)
        for entry in entries.values():
            regions = entry["regions"]
            filename = entry["filename"]
            warned = sum(f"image {filename!r} region" in m for m in messages)
            # Every region became a mask or was warned about: nothing lost silently.
            assert loaded.get(filename, 0) + warned == len(regions), (filename, messages)
        return "loaded"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_coco(doc, keep_negatives):
    folder = _folder()
    json_path = os.path.join(folder, "instances.json")
    try:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = COCODataset()
            try:
                ds.load_coco_json(json_path, folder, keep_negatives=keep_negatives)
                ds.prepare()
                results = {}
                for image_id in ds.image_ids:
                    info = ds.image_info[image_id]
                    masks, class_ids = ds.load_mask(image_id)
                    results[info["id"]] = (masks, class_ids, info)
            except COCOFormatError as e:
                _assert_names_file_and_entry(str(e), json_path, doc)
                return "error"
            except FileNotFoundError as e:
                assert json_path in str(e), str(e)
                return "error"
        messages = [str(w.message) for w in caught if issubclass(w.category, COCOWarning)]
        for masks, class_ids, info in results.values():
            # Sizes come from the JSON; the mask must have the image's size as the JSON says.
            _mask_checks(masks, class_ids, info["height"], info["width"])
            anns = info["annotations"]
            warned = {a["id"] for a in anns if any(f"annotation {a['id']!r}" in m
                                                   for m in messages)}
            assert masks.shape[2] + len(warned) >= len(anns), (info["id"], messages)
        return "loaded"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(layout, data):
    doc = mutate(LAYOUTS[layout](), data, layout == "coco")
    if layout == "coco":
        outcome = check_coco(doc, data.draw(st.booleans(), label="keep_negatives"))
    else:
        outcome = check_via(doc)
    event(outcome)  # --hypothesis-show-statistics shows how many loaded / raised


FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                           HealthCheck.filter_too_much])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_unmutated_files_load_every_region(layout):
    doc = LAYOUTS[layout]()
    assert (check_coco(doc, False) if layout == "coco" else check_via(doc)) == "loaded"


@pytest.mark.parametrize("layout", list(LAYOUTS))
@settings(max_examples=CI_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_fuzzed_annotation_files(layout, data):
    _run(layout, data)


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
@settings(max_examples=SLOW_EXAMPLES, **FUZZ_SETTINGS)
@given(data=st.data())
def test_fuzzed_annotation_files_slow(layout, data):
    _run(layout, data)
