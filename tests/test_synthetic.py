"""Synthetic generators: shapes images, the on-the-fly shapes data set, VIA data set writer."""

import json
import os

import numpy as np
import pytest

from mrcnn.datasets import (FACEMASK_CLASSES, SHAPE_CLASSES, SyntheticShapesDataset, VIADataset,
                            make_shapes_image, write_via_dataset)


def reference_region_mask(attrs, height, width):
    """Pixel-centre rasterisation in plain NumPy and the distance-to-boundary of each centre
    (mismatches are allowed only for centres on the boundary)."""
    px = np.arange(width)[None, :] + 0.5
    py = np.arange(height)[:, None] + 0.5
    if attrs["name"] == "circle":
        d = np.hypot(px - attrs["cx"], py - attrs["cy"])
        return d < attrs["r"], np.abs(d - attrs["r"])
    if attrs["name"] == "rect":
        xs = [attrs["x"], attrs["x"] + attrs["width"], attrs["x"] + attrs["width"], attrs["x"]]
        ys = [attrs["y"], attrs["y"], attrs["y"] + attrs["height"], attrs["y"] + attrs["height"]]
    else:
        assert attrs["name"] == "polygon"
        xs, ys = attrs["all_points_x"], attrs["all_points_y"]
    inside = np.zeros((height, width), bool)
    dist = np.full((height, width), np.inf)
    n = len(xs)
    for i in range(n):
        x0, y0, x1, y1 = xs[i], ys[i], xs[(i + 1) % n], ys[(i + 1) % n]
        straddles = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= straddles & (px < x_cross)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        dist = np.minimum(dist, np.hypot(px - (x0 + t * dx), py - (y0 + t * dy)))
    return inside, dist


# ------------------------------------------------------------------------- make_shapes_image

@pytest.mark.parametrize("seed", range(6))
def test_make_shapes_image_is_consistent(seed):
    image, masks, class_ids, names = make_shapes_image(64, 80, np.random.default_rng(seed))
    assert names == ("square", "circle", "triangle")
    assert image.dtype == np.uint8 and image.shape == (64, 80, 3)
    assert masks.dtype == bool and masks.shape[:2] == (64, 80)
    assert class_ids.dtype == np.int32 and class_ids.shape == (masks.shape[-1],)
    assert 1 <= masks.shape[-1] <= 4
    assert set(class_ids.tolist()) <= {1, 2, 3}
    assert masks.any(axis=(0, 1)).all()
    assert masks.sum(axis=-1).max() <= 1  # disjoint
    background = ~masks.any(axis=-1)
    bg_colors = np.unique(image[background], axis=0)
    assert len(bg_colors) == 1
    for k in range(masks.shape[-1]):
        colors = np.unique(image[masks[..., k]], axis=0)
        assert len(colors) == 1 and not np.array_equal(colors[0], bg_colors[0])
        rows, cols = np.nonzero(masks[..., k])
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        if class_ids[k] == 1:  # squares fill their box exactly
            assert h == w and masks[..., k].sum() == h * w
        elif class_ids[k] == 2:  # disks: pi r^2 with r = h / 2
            assert h == w and abs(masks[..., k].sum() - np.pi * h * h / 4) <= 0.12 * h * h
        else:  # triangles: about half their box
            assert abs(masks[..., k].sum() - h * w / 2) <= 0.15 * h * w


def test_make_shapes_image_determinism_and_limits():
    a = make_shapes_image(48, 48, 7)
    b = make_shapes_image(48, 48, np.random.default_rng(7))
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    c = make_shapes_image(48, 48, 8)
    assert not np.array_equal(a[0], c[0])
    for seed in range(5):
        assert make_shapes_image(32, 32, seed, max_shapes=1)[1].shape[-1] == 1
    with pytest.raises(ValueError, match="16x16"):
        make_shapes_image(8, 64, 0)
    with pytest.raises(ValueError, match="max_shapes"):
        make_shapes_image(32, 32, 0, max_shapes=0)


# ------------------------------------------------------------------------- SyntheticShapesDataset

def test_synthetic_shapes_dataset():
    ds = SyntheticShapesDataset()
    ds.load_shapes(5, 48, 64, seed=3)
    ds.prepare()
    assert ds.num_images == 5
    assert ds.class_names == ["BG", "square", "circle", "triangle"]
    for image_id in ds.image_ids:
        image = ds.load_image(image_id)
        np.testing.assert_array_equal(image, ds.load_image(image_id))
        masks, class_ids = ds.load_mask(image_id)
        assert image.shape == (48, 64, 3) and masks.shape[:2] == (48, 64)
        assert [ds.class_names[c] for c in class_ids] == \
            [SHAPE_CLASSES[c - 1] for c in class_ids]
        for k in range(masks.shape[-1]):
            assert len(np.unique(image[masks[..., k]], axis=0)) == 1
    other = SyntheticShapesDataset()
    other.load_shapes(5, 48, 64, seed=3)
    other.prepare()
    np.testing.assert_array_equal(ds.load_image(4), other.load_image(4))
    third = SyntheticShapesDataset()
    third.load_shapes(5, 48, 64, seed=4)
    third.prepare()
    assert not np.array_equal(ds.load_image(0), third.load_image(0))
    assert ds.image_reference(2) == "shapes seed=3 index=2"


def test_synthetic_shapes_dataset_appends_new_images():
    ds = SyntheticShapesDataset()
    ds.load_shapes(2, 32, 32, seed=0)
    ds.load_shapes(2, 32, 32, seed=0)
    ds.prepare()
    assert ds.num_images == 4 and len(ds.class_info) == 4
    assert len({info["id"] for info in ds.image_info}) == 4


# ------------------------------------------------------------------------- write_via_dataset

@pytest.mark.parametrize("version, scene", [(1, "facemask"), (2, "facemask"),
                                            ("project", "facemask"), (2, "shapes")])
def test_written_dataset_loads_back(tmp_path, version, scene):
    summary = write_via_dataset(tmp_path, n_train=4, n_val=2, image_size=(64, 96),
                                version=version, scene=scene, seed=1)
    attribute = "mask_type" if scene == "facemask" else "shape"
    assert summary["class_attribute"] == attribute
    classes = FACEMASK_CLASSES if scene == "facemask" else SHAPE_CLASSES
    assert summary["class_names"] == sorted(classes)
    for subset, count in (("train", 4), ("val", 2)):
        json_path = os.path.join(tmp_path, subset, "via_region_data.json")
        assert summary["subsets"][subset]["annotation_file"] == json_path
        with open(json_path) as f:
            content = json.load(f)
        if version == "project":
            assert set(content) >= {"_via_settings", "_via_img_metadata", "_via_attributes"}
            content = content["_via_img_metadata"]
        entries = list(content.values())
        regions_type = dict if version == 1 else list
        assert all(isinstance(e["regions"], regions_type) for e in entries)

        ds = VIADataset()
        ds.load_via(str(tmp_path), subset, class_attribute=attribute,
                    class_names=summary["class_names"])
        ds.prepare()
        assert ds.num_images == count == len(entries)
        n_regions = 0
        for image_id, entry in zip(ds.image_ids, entries):
            regions = entry["regions"]
            regions = list(regions.values()) if isinstance(regions, dict) else regions
            image = ds.load_image(image_id)
            masks, class_ids = ds.load_mask(image_id)
            assert image.shape == (64, 96, 3)
            assert masks.shape == (64, 96, len(regions)) and len(regions) >= 1
            n_regions += len(regions)
            for k, r in enumerate(regions):
                value = r["region_attributes"][attribute]
                assert value in classes
                assert ds.class_names[class_ids[k]] == value
                if scene == "facemask":
                    assert r["region_attributes"]["label"] == "mask"
                    assert r["shape_attributes"]["name"] == "polygon"
                expected, dist = reference_region_mask(r["shape_attributes"], 64, 96)
                differ = masks[..., k] != expected
                assert np.all(dist[differ] < 1e-6)
                assert masks[..., k].sum() > 20
        assert n_regions == summary["subsets"][subset]["regions"]


def test_writer_options(tmp_path):
    summary = write_via_dataset(tmp_path / "a", n_train=2, n_val=0, image_size=(40, 48),
                                image_format="png", annotation_file="ann.json", seed=5)
    assert set(summary["subsets"]) == {"train"}
    assert not (tmp_path / "a" / "val").exists()
    names = sorted(os.listdir(tmp_path / "a" / "train"))
    assert names == ["ann.json", "facemask_train_0000.png", "facemask_train_0001.png"]
    again = write_via_dataset(tmp_path / "b", n_train=2, n_val=0, image_size=(40, 48),
                              image_format="png", annotation_file="ann.json", seed=5)
    for name in names:
        assert (tmp_path / "a" / "train" / name).read_bytes() == \
            (tmp_path / "b" / "train" / name).read_bytes()
    assert again["subsets"]["train"]["regions"] == summary["subsets"]["train"]["regions"]
    with pytest.raises(ValueError, match="version"):
        write_via_dataset(tmp_path / "c", version=3)
    with pytest.raises(ValueError, match="scene"):
        write_via_dataset(tmp_path / "c", scene="cats")
    with pytest.raises(ValueError, match="image_format"):
        write_via_dataset(tmp_path / "c", image_format="gif")
    with pytest.raises(ValueError, match="image_size"):
        write_via_dataset(tmp_path / "c", image_size=(16, 16))
