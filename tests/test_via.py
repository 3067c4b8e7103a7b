"""VIA loader: layouts, shapes and their rasterisation, classes, errors."""

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mrcnn.datasets.via import (VIADataset, VIAFormatError, VIAWarning, parse_shape_attributes,
                                shape_mask)


# ------------------------------------------------------------------------- helpers

def write_image(folder, name, height, width, color=(90, 120, 150)):
    folder.mkdir(parents=True, exist_ok=True)
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = color
    Image.fromarray(image).save(folder / name)
    return folder / name


def polygon(xs, ys, **attrs):
    return {"shape_attributes": {"name": "polygon", "all_points_x": list(xs),
                                 "all_points_y": list(ys)},
            "region_attributes": dict(attrs)}


def region(shape, **attrs):
    return {"shape_attributes": shape, "region_attributes": dict(attrs)}


def via2(images):
    """VIA 2.x export: {filename+size: {filename, size, regions: [..], file_attributes}}."""
    return {f"{name}123": {"filename": name, "size": 123, "regions": list(regions),
                           "file_attributes": {}}
            for name, regions in images.items()}


def via1(images):
    """VIA 1.x export: regions as {"0": region, ...}."""
    return {f"{name}123": {"fileref": "", "size": 123, "filename": name, "base64_img_data": "",
                           "file_attributes": {},
                           "regions": {str(i): r for i, r in enumerate(regions)}}
            for name, regions in images.items()}


def via_project(images):
    return {"_via_settings": {"ui": {}, "core": {}, "project": {"name": "p"}},
            "_via_img_metadata": via2(images),
            "_via_attributes": {"region": {}, "file": {}},
            "_via_data_format_version": "2.0.10"}


def write_json(folder, content, name="via_region_data.json"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def load(folder, **kwargs):
    ds = VIADataset()
    ds.load_via(str(folder), **kwargs)
    ds.prepare()
    return ds


def reference_polygon_mask(xs, ys, height, width):
    """Even-odd rule on pixel centres (col + 0.5, row + 0.5) and distance of each centre to
    the nearest edge, in plain NumPy."""
    px = np.arange(width)[None, :] + 0.5
    py = np.arange(height)[:, None] + 0.5
    inside = np.zeros((height, width), bool)
    dist = np.full((height, width), np.inf)
    n = len(xs)
    for i in range(n):
        x0, y0, x1, y1 = xs[i], ys[i], xs[(i + 1) % n], ys[(i + 1) % n]
        straddles = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= straddles & (px < x_cross)
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0, 1) if length2 else 0.0
        dist = np.minimum(dist, np.hypot(px - (x0 + t * dx), py - (y0 + t * dy)))
    return inside, dist


def shoelace(xs, ys):
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


# ------------------------------------------------------------------------- rasterisation

def test_rectangle_polygon_area_is_exact(tmp_path):
    write_image(tmp_path, "a.png", 40, 50)
    write_json(tmp_path, via2({"a.png": [polygon([10, 30, 30, 10], [5, 5, 20, 20])]}))
    ds = load(tmp_path)
    masks, class_ids = ds.load_mask(0)
    assert masks.dtype == bool and masks.shape == (40, 50, 1)
    assert class_ids.dtype == np.int32 and class_ids.tolist() == [1]
    expected = np.zeros((40, 50), bool)
    expected[5:20, 10:30] = True  # pixels whose centres lie in [10, 30] x [5, 20]
    np.testing.assert_array_equal(masks[..., 0], expected)
    assert masks.sum() == 20 * 15


def test_rect_shape_equals_rectangle_polygon():
    rect = shape_mask({"name": "rect", "x": 3, "y": 4, "width": 7, "height": 2}, 12, 15)
    expected = np.zeros((12, 15), bool)
    expected[4:6, 3:10] = True
    np.testing.assert_array_equal(rect, expected)


def test_triangle_area_close_to_shoelace():
    xs, ys = [10, 50, 10], [10, 10, 40]
    mask = shape_mask({"name": "polygon", "all_points_x": xs, "all_points_y": ys}, 60, 60)
    area = shoelace(xs, ys)
    assert area == 600
    assert abs(mask.sum() - area) <= 0.03 * area


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-15, 65, allow_nan=False), st.floats(-15, 55, allow_nan=False)),
                min_size=3, max_size=3))
def test_triangle_matches_pixel_centre_reference(points):
    """Any triangle, also partly outside the 40x50 image: the mask is the set of pixel centres
    inside it, except possibly for centres lying on an edge."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    height, width = 40, 50
    mask = shape_mask({"name": "polygon", "all_points_x": xs, "all_points_y": ys}, height, width)
    assert mask.shape == (height, width)
    if shoelace(xs, ys) == 0:
        assert not mask.any()
        return
    inside, dist = reference_polygon_mask(xs, ys, height, width)
    differ = mask != inside
    assert np.all(dist[differ] < 1e-6)


def test_nonconvex_polygon_matches_reference():
    # An L shape: area 20*10 + 10*10 = 300 with integer corners -> exact.
    xs, ys = [2, 22, 22, 12, 12, 2], [3, 3, 13, 13, 23, 23]
    mask = shape_mask({"name": "polygon", "all_points_x": xs, "all_points_y": ys}, 30, 30)
    inside, _ = reference_polygon_mask(xs, ys, 30, 30)
    np.testing.assert_array_equal(mask, inside)
    assert mask.sum() == 300 == shoelace(xs, ys)


def test_polygon_is_clipped_to_the_image():
    xs, ys = [-10, 20, 20, -10], [-5, -5, 10, 10]
    mask = shape_mask({"name": "polygon", "all_points_x": xs, "all_points_y": ys}, 30, 40)
    expected = np.zeros((30, 40), bool)
    expected[0:10, 0:20] = True
    np.testing.assert_array_equal(mask, expected)
    # A polygon far outside gives no pixel and no error.
    far = shape_mask({"name": "polygon", "all_points_x": [100, 200, 150],
                      "all_points_y": [100, 100, 300]}, 30, 40)
    assert not far.any()


def test_circle_area_and_clipping():
    mask = shape_mask({"name": "circle", "cx": 30, "cy": 25, "r": 12}, 50, 60)
    assert abs(mask.sum() - math.pi * 144) <= 0.03 * math.pi * 144
    # Centre of the disk, and pixel just inside/outside along the x axis.
    assert mask[24, 29] and mask[24, 40] and not mask[24, 43]
    half = shape_mask({"name": "circle", "cx": 0, "cy": 25, "r": 12}, 50, 60)
    assert abs(half.sum() - math.pi * 144 / 2) <= 0.05 * math.pi * 144 / 2


def test_ellipse_rotation_is_clockwise_on_screen():
    # rx along x, rotated by +45 degrees: VIA (canvas) turns x towards +y (down-right).
    attrs = {"name": "ellipse", "cx": 50, "cy": 50, "rx": 25, "ry": 4, "theta": math.pi / 4}
    mask = shape_mask(attrs, 100, 100)
    assert mask[50 + 12, 50 + 12] and mask[50 - 12, 50 - 12]
    assert not mask[50 - 12, 50 + 12] and not mask[50 + 12, 50 - 12]
    assert abs(mask.sum() - math.pi * 25 * 4) <= 0.05 * math.pi * 100
    no_theta = shape_mask({"name": "ellipse", "cx": 50, "cy": 50, "rx": 25, "ry": 4}, 100, 100)
    assert no_theta[49, 49 + 20] and not no_theta[49 + 10, 49]


def test_polyline_is_rasterised_as_closed_polygon():
    attrs = {"name": "polyline", "all_points_x": [5, 25, 25, 5], "all_points_y": [5, 5, 15, 15]}
    expected = np.zeros((20, 30), bool)
    expected[5:15, 5:25] = True
    np.testing.assert_array_equal(shape_mask(attrs, 20, 30), expected)


def test_point_has_no_mask():
    assert parse_shape_attributes({"name": "point", "cx": 3, "cy": 4}) is None


# ------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("layout", [via1, via2, via_project])
def test_all_layouts_give_the_same_masks(tmp_path, layout):
    write_image(tmp_path / "train", "a.jpg", 30, 40)
    write_image(tmp_path / "train", "b.jpg", 20, 25)
    write_json(tmp_path / "train", layout({
        "a.jpg": [polygon([1, 11, 11, 1], [2, 2, 8, 8]),
                  region({"name": "rect", "x": 20, "y": 10, "width": 5, "height": 4})],
        "b.jpg": [region({"name": "circle", "cx": 12, "cy": 10, "r": 3})],
    }))
    ds = load(tmp_path, subset="train")
    assert ds.num_images == 2
    assert ds.class_names == ["BG", "object"]
    info = ds.image_info[0]
    assert (info["height"], info["width"]) == (30, 40)
    assert (ds.image_info[1]["height"], ds.image_info[1]["width"]) == (20, 25)
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (30, 40, 2)
    assert masks[..., 0].sum() == 60 and masks[2:8, 1:11, 0].all()
    assert masks[..., 1].sum() == 20 and masks[10:14, 20:25, 1].all()
    assert class_ids.tolist() == [1, 1]
    masks_b, _ = ds.load_mask(1)
    assert masks_b.shape == (20, 25, 1)
    assert ds.image_reference(0) == str(tmp_path / "train" / "a.jpg")
    assert ds.load_image(1).shape == (20, 25, 3)


def test_size_comes_from_the_image_header_not_the_json(tmp_path):
    write_image(tmp_path, "odd.png", 37, 53)
    content = via2({"odd.png": [polygon([0, 10, 10], [0, 0, 10])]})
    content["odd.png123"]["file_attributes"] = {"width": 999, "height": 999}
    write_json(tmp_path, content)
    ds = load(tmp_path)
    assert (ds.image_info[0]["height"], ds.image_info[0]["width"]) == (37, 53)
    assert ds.load_mask(0)[0].shape == (37, 53, 1)


# ------------------------------------------------------------------------- skipping

def test_degenerate_regions_are_skipped_with_warnings(tmp_path):
    write_image(tmp_path, "a.png", 30, 30)
    write_json(tmp_path, via2({"a.png": [
        polygon([1, 5], [1, 5]),                                 # 0: two points
        polygon([1, 5, 9], [1, 5, 9]),                           # 1: collinear, zero area
        region({"name": "point", "cx": 3, "cy": 3}),             # 2: point
        polygon([40, 50, 50, 40], [40, 40, 50, 50]),             # 3: outside the image
        region({"name": "rect", "x": 2, "y": 2, "width": 0, "height": 5}),  # 4: zero width
        polygon([2, 12, 12, 2], [2, 2, 12, 12]),                 # 5: fine
    ]}))
    with pytest.warns(VIAWarning) as record:
        ds = load(tmp_path)
    messages = [str(w.message) for w in record]
    for index in (0, 1, 2, 3, 4):
        assert any(f"region {index}" in m and "a.png" in m and "via_region_data.json" in m
                   for m in messages), (index, messages)
    assert not any("region 5" in m for m in messages)
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (30, 30, 1) and masks.sum() == 100
    assert class_ids.tolist() == [1]


def test_images_without_regions_are_skipped_or_kept(tmp_path, caplog):
    write_image(tmp_path, "a.png", 16, 16)
    write_image(tmp_path, "empty.png", 16, 24)
    write_json(tmp_path, via2({"a.png": [polygon([1, 9, 9, 1], [1, 1, 9, 9])],
                               "empty.png": []}))
    with caplog.at_level("INFO", logger="mrcnn.datasets.via"):
        ds = load(tmp_path)
    assert ds.num_images == 1 and ds.image_info[0]["id"] == "a.png"
    assert sum("no usable region" in r.getMessage() for r in caplog.records) == 1

    ds = load(tmp_path, keep_negatives=True)
    assert ds.num_images == 2
    masks, class_ids = ds.load_mask(1)
    assert masks.shape == (16, 24, 0) and masks.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32


def test_missing_image_raises_or_is_skipped(tmp_path):
    write_image(tmp_path, "a.png", 16, 16)
    write_json(tmp_path, via2({"a.png": [polygon([1, 9, 9, 1], [1, 1, 9, 9])],
                               "gone.png": [polygon([1, 9, 9, 1], [1, 1, 9, 9])]}))
    with pytest.raises(FileNotFoundError, match=r"via_region_data\.json.*gone\.png"):
        load(tmp_path)
    with pytest.warns(VIAWarning, match="gone.png"):
        ds = load(tmp_path, skip_missing=True)
    assert [info["id"] for info in ds.image_info] == ["a.png"]


@pytest.mark.parametrize("regions", [[], {}], ids=["via2", "via1"])
@pytest.mark.parametrize("keep_negatives", [False, True])
def test_missing_image_without_regions_warns_once_and_loading_goes_on(tmp_path, regions,
                                                                       keep_negatives):
    write_image(tmp_path, "a.png", 16, 16)
    content = via2({"a.png": [polygon([1, 9, 9, 1], [1, 1, 9, 9])]})
    content["gone.png0"] = {"filename": "gone.png", "size": 0, "regions": regions,
                            "file_attributes": {}}
    content["gone2.png0"] = {"filename": "gone2.png", "size": 0, "regions": regions,
                             "file_attributes": {}}
    write_json(tmp_path, content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(tmp_path, keep_negatives=keep_negatives)
    assert [info["id"] for info in ds.image_info] == ["a.png"]
    messages = [str(w.message) for w in caught if issubclass(w.category, VIAWarning)]
    assert len(messages) == 1, messages
    assert "'gone.png'" in messages[0] and "'gone2.png'" in messages[0]
    assert "via_region_data.json" in messages[0]


def test_missing_image_with_regions_still_raises_naming_it(tmp_path):
    write_image(tmp_path, "a.png", 16, 16)
    content = via2({"a.png": [], "gone.png": [polygon([1, 9, 9, 1], [1, 1, 9, 9])]})
    content["empty.png0"] = {"filename": "empty.png", "size": 0, "regions": [],
                             "file_attributes": {}}
    write_json(tmp_path, content)
    with pytest.raises(FileNotFoundError, match=r"via_region_data\.json: image 'gone\.png'"):
        load(tmp_path)


def test_missing_json_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        load(tmp_path, annotation_file="nothere.json")


# ------------------------------------------------------------------------- classes

def test_classes_from_string_and_checkbox_attributes(tmp_path):
    write_image(tmp_path, "a.png", 30, 30)
    write_json(tmp_path, via2({"a.png": [
        polygon([1, 5, 5, 1], [1, 1, 5, 5], mask_type="surgical"),
        polygon([10, 15, 15, 10], [10, 10, 15, 15], mask_type={"N95": True, "cloth": False}),
        polygon([20, 25, 25, 20], [20, 20, 25, 25], mask_type="cloth"),
    ]}))
    ds = VIADataset()
    names = ds.load_via(str(tmp_path), class_attribute="mask_type")
    ds.prepare()
    assert names == ["N95", "cloth", "surgical"]
    assert ds.class_names == ["BG", "N95", "cloth", "surgical"]
    _, class_ids = ds.load_mask(0)
    assert class_ids.tolist() == [3, 1, 2]

    ds = load(tmp_path, class_attribute="mask_type", class_names=["surgical", "cloth", "N95"])
    assert ds.class_names == ["BG", "surgical", "cloth", "N95"]
    assert ds.load_mask(0)[1].tolist() == [1, 3, 2]


def test_unknown_class_value_names_file_region_and_value(tmp_path):
    write_image(tmp_path, "a.png", 30, 30)
    write_json(tmp_path, via2({"a.png": [
        polygon([1, 5, 5, 1], [1, 1, 5, 5], mask_type="surgical"),
        polygon([10, 15, 15, 10], [10, 10, 15, 15], mask_type="bandana"),
    ]}))
    with pytest.raises(VIAFormatError, match=r"via_region_data\.json.*a\.png.*region 1.*bandana"):
        load(tmp_path, class_attribute="mask_type", class_names=["surgical", "N95"])


@pytest.mark.parametrize("value", [None, "", {"a": True, "b": True}, {"a": False}, 3])
def test_bad_class_attribute_values(tmp_path, value):
    write_image(tmp_path, "a.png", 30, 30)
    attrs = {} if value is None else {"mask_type": value}
    write_json(tmp_path, via2({"a.png": [polygon([1, 5, 5, 1], [1, 1, 5, 5], **attrs)]}))
    with pytest.raises(VIAFormatError, match=r"a\.png.*region 0.*mask_type"):
        load(tmp_path, class_attribute="mask_type")


def test_class_names_without_attribute_is_an_error(tmp_path):
    write_image(tmp_path, "a.png", 30, 30)
    write_json(tmp_path, via2({"a.png": [polygon([1, 5, 5, 1], [1, 1, 5, 5])]}))
    with pytest.raises(ValueError, match="class_attribute"):
        load(tmp_path, class_names=["x"])


def test_default_class_name_and_source(tmp_path):
    write_image(tmp_path, "a.png", 30, 30)
    write_json(tmp_path, via2({"a.png": [polygon([1, 5, 5, 1], [1, 1, 5, 5])]}))
    ds = load(tmp_path, default_class="balloon", source="balloon")
    assert ds.class_names == ["BG", "balloon"]
    assert ds.image_info[0]["source"] == "balloon"
    assert ds.map_source_class_id("balloon.1") == 1


# ------------------------------------------------------------------------- format errors

@pytest.mark.parametrize("content, pattern", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "top level must be a JSON object"),
    (json.dumps({"k": {"filename": "a.png", "size": 1}}), r"a\.png.*no 'regions'"),
    (json.dumps({"k": {"filename": "a.png", "regions": [{"region_attributes": {}}]}}),
     r"a\.png.*region 0.*shape_attributes"),
    (json.dumps({"k": {"filename": "a.png", "regions": {"0": {"shape_attributes": {
        "name": "polygon", "all_points_x": [1, "x", 3], "all_points_y": [1, 2, 3]}}}}}),
     r"a\.png.*region 0.*all_points_x\[1\].*number"),
    (json.dumps({"k": {"filename": "a.png", "regions": [{"shape_attributes": {
        "name": "polygon", "all_points_x": [1, 2, 3], "all_points_y": [1, 2]}}]}}),
     r"a\.png.*region 0.*all_points_y has 2"),
    (json.dumps({"k": {"filename": "a.png", "regions": [{"shape_attributes": {
        "name": "circle", "cx": 1, "cy": 2}}]}}), r"a\.png.*region 0.*circle.*'r'"),
    (json.dumps({"k": {"filename": "a.png", "regions": [{"shape_attributes": {
        "name": "hexagon"}}]}}), r"a\.png.*region 0.*unknown shape name 'hexagon'"),
    (json.dumps({"k": [1]}), "entry 'k' must be an object"),
    (json.dumps({"k": {"regions": []}}), "entry 'k' has no 'filename'"),
    (json.dumps({"_via_settings": {}, "_via_img_metadata": []}), "_via_img_metadata"),
    (json.dumps({"project": {}, "config": {}, "attribute": {}, "file": {}, "metadata": {},
                 "view": {}}), "VIA 3"),
])
def test_corrupt_json_raises_via_format_error(tmp_path, content, pattern):
    write_image(tmp_path, "a.png", 8, 8)
    write_json(tmp_path, content)
    with pytest.raises(VIAFormatError, match=pattern) as info:
        load(tmp_path)
    assert "via_region_data.json" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_duplicate_filenames_are_an_error(tmp_path):
    write_image(tmp_path, "a.png", 8, 8)
    entry = {"filename": "a.png", "regions": []}
    write_json(tmp_path, {"a.png1": entry, "a.png2": entry})
    with pytest.raises(VIAFormatError, match="appears twice"):
        load(tmp_path)


def test_no_warning_for_a_clean_file(tmp_path):
    write_image(tmp_path, "a.png", 20, 20)
    write_json(tmp_path, via1({"a.png": [polygon([1, 9, 9, 1], [1, 1, 9, 9])]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load(tmp_path)
    assert ds.num_images == 1


# ------------------------------------------------------------------------- hostile input
# (tests/test_fuzz_annotations.py throws random mutations at the loader; these are the cases
# it found or that need an exact answer.)

def test_bow_tie_polygon_has_pixels_although_its_shoelace_area_is_zero(tmp_path):
    write_image(tmp_path, "a.png", 24, 24)
    write_json(tmp_path, via2({"a.png": [polygon([2, 20, 2, 20], [2, 20, 20, 2])]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", VIAWarning)
        ds = load(tmp_path)
    masks, _ = ds.load_mask(0)
    assert masks.shape == (24, 24, 1) and 100 < masks.sum() < 24 * 24


def test_collinear_polygon_is_skipped_with_a_warning(tmp_path):
    write_image(tmp_path, "a.png", 16, 16)
    write_json(tmp_path, via2({"a.png": [polygon([1, 5, 9], [1, 5, 9]),
                                         polygon([1, 9, 9, 1], [1, 1, 9, 9])]}))
    with pytest.warns(VIAWarning, match=r"'a\.png' region 0: polygon has zero area"):
        ds = load(tmp_path)
    assert ds.load_mask(0)[0].shape == (16, 16, 1)


@pytest.mark.parametrize("big", [1e9, 1e12, 1e300])
def test_points_far_outside_the_image_are_clipped(tmp_path, big):
    write_image(tmp_path, "a.png", 10, 12)
    write_json(tmp_path, via2({"a.png": [
        polygon([-big, big, big, -big], [-big, -big, big, big]),
        region({"name": "circle", "cx": 5, "cy": 5, "r": big})]}))
    ds = load(tmp_path)
    masks, _ = ds.load_mask(0)
    assert masks.shape == (10, 12, 2) and masks.all()


def test_duplicate_json_keys_are_an_error_naming_the_key(tmp_path):
    write_image(tmp_path, "a.png", 16, 16)
    entry = json.dumps({"filename": "a.png", "size": 1, "regions": [
        polygon([1, 9, 9, 1], [1, 1, 9, 9])]})
    write_json(tmp_path, '{"a.png1": %s, "a.png1": %s}' % (entry, entry))
    with pytest.raises(VIAFormatError, match=r"via_region_data\.json: key 'a\.png1' appears twice"):
        load(tmp_path)
    # In VIA 1.x regions (an object) too: one of the two regions would vanish.
    r = json.dumps(polygon([1, 9, 9, 1], [1, 1, 9, 9]))
    write_json(tmp_path, '{"k": {"filename": "a.png", "regions": {"0": %s, "0": %s}}}' % (r, r))
    with pytest.raises(VIAFormatError, match="key '0' appears twice"):
        load(tmp_path)


def test_nul_in_filename_and_unreadable_or_empty_images_are_format_errors(tmp_path):
    write_image(tmp_path, "a.png", 16, 16)
    write_json(tmp_path, via2({"a\x00.png": [polygon([1, 9, 9, 1], [1, 1, 9, 9])]}))
    with pytest.raises(VIAFormatError, match="NUL"):
        load(tmp_path)
    (tmp_path / "zero.png").write_bytes(b"")
    write_json(tmp_path, via2({"zero.png": [polygon([1, 9, 9, 1], [1, 1, 9, 9])]}))
    with pytest.raises(VIAFormatError, match=r"image 'zero\.png': cannot read the size"):
        load(tmp_path)
