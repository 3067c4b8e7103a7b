import logging

import numpy as np
import pytest
from PIL import Image

from mrcnn.dataset import Dataset, ImageLoadError


class ShapesDataset(Dataset):
    def load_mask(self, image_id):
        info = self.image_info[image_id]
        mask = np.zeros((info["height"], info["width"], 1), bool)
        mask[1:3, 1:3, 0] = True
        return mask, np.array([self.map_source_class_id("shapes.2")], np.int32)


def make_dataset():
    ds = ShapesDataset()
    ds.add_class("shapes", 1, "square")
    ds.add_class("shapes", 2, "circle, round thing")
    ds.add_class("shapes", 1, "duplicate ignored")
    ds.add_class("coco", 1, "person")
    ds.add_image("shapes", image_id="a", path="/nowhere/a.png", width=4, height=5)
    ds.add_image("shapes", image_id="b", path="/nowhere/b.png", width=6, height=7)
    ds.add_image("coco", image_id=42, path="/nowhere/c.jpg", width=6, height=7)
    return ds


def test_background_preregistered():
    ds = Dataset()
    assert ds.class_info == [{"source": "", "id": 0, "name": "BG"}]
    assert list(ds.image_ids) == []


def test_prepare_builds_tables():
    ds = make_dataset()
    ds.prepare()
    assert ds.num_classes == 4
    np.testing.assert_array_equal(ds.class_ids, [0, 1, 2, 3])
    assert ds.class_names == ["BG", "square", "circle", "person"]
    assert ds.num_images == 3
    np.testing.assert_array_equal(ds.image_ids, [0, 1, 2])
    assert ds.class_from_source_map == {".0": 0, "shapes.1": 1, "shapes.2": 2, "coco.1": 3}
    assert ds.image_from_source_map == {"shapes.a": 0, "shapes.b": 1, "coco.42": 2}
    assert sorted(ds.sources) == ["", "coco", "shapes"]
    assert ds.source_class_ids["shapes"] == [0, 1, 2]
    assert ds.source_class_ids["coco"] == [0, 3]
    assert ds.source_class_ids[""] == [0]
    assert ds.map_source_class_id("coco.1") == 3
    assert ds.get_source_class_id(2, "shapes") == 2
    assert ds.source_image_link(2) == "/nowhere/c.jpg"
    assert ds.image_info[1]["width"] == 6 and ds.image_info[1]["id"] == "b"
    assert ds.image_reference(0) == ""
    mask, class_ids = ds.load_mask(0)
    assert mask.shape == (5, 4, 1) and list(class_ids) == [2]


def test_lookup_errors_are_explained():
    ds = make_dataset()
    with pytest.raises(AttributeError, match="prepare"):
        ds.num_classes
    ds.prepare()
    with pytest.raises(KeyError, match="shapes.9"):
        ds.map_source_class_id("shapes.9")
    with pytest.raises(ValueError, match="coco"):
        ds.get_source_class_id(1, "coco")
    with pytest.raises(ValueError, match="dot"):
        ds.add_class("a.b", 1, "x")


def test_default_load_mask_is_empty_and_warns(caplog):
    ds = Dataset()
    with caplog.at_level(logging.WARNING):
        mask, class_ids = ds.load_mask(0)
    assert mask.shape == (0, 0, 0) and mask.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert "load_mask" in caplog.text


def _dataset_with(path):
    ds = Dataset()
    ds.add_image("files", image_id=7, path=str(path))
    ds.prepare()
    return ds


RGB = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["rgb", "gray", "rgba", "gray16", "palette", "float", "cmyk",
                                  "bilevel"])
def test_load_image_converts_to_rgb_uint8(tmp_path, kind):
    gray = RGB[..., 0]
    if kind == "rgb":
        path, expected = tmp_path / "x.png", RGB
        Image.fromarray(RGB).save(path)
    elif kind == "gray":
        path, expected = tmp_path / "x.png", np.repeat(gray[..., None], 3, 2)
        Image.fromarray(gray).save(path)
    elif kind == "rgba":
        rgba = np.concatenate([RGB, np.full((6, 5, 1), 10, np.uint8)], axis=2)
        path, expected = tmp_path / "x.png", RGB
        Image.fromarray(rgba).save(path)
    elif kind == "gray16":
        # 8-bit values stretched to 16 bits (v * 257) come back exactly.
        path, expected = tmp_path / "x.png", np.repeat(gray[..., None], 3, 2)
        Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    elif kind == "palette":
        path, expected = tmp_path / "x.png", np.zeros((6, 5, 3), np.uint8)
        expected[..., 0] = 255  # every pixel is palette entry 0 = red
        im = Image.new("P", (5, 6), 0)
        im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
        im.save(path)
    elif kind == "float":
        path, expected = tmp_path / "x.tif", np.repeat(gray[..., None], 3, 2)
        Image.fromarray(gray.astype(np.float32)).save(path)   # values in [0, 255]
    elif kind == "cmyk":
        path, expected = tmp_path / "x.jpg", None
        Image.fromarray(RGB).convert("CMYK").save(path)
    else:
        bits = gray > 127
        path, expected = tmp_path / "x.png", np.repeat(bits[..., None], 3, 2) * np.uint8(255)
        Image.fromarray(bits).save(path)
    image = _dataset_with(path).load_image(0)
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8
    if expected is not None:
        np.testing.assert_array_equal(image, expected)


def test_missing_file_names_path_and_id(tmp_path):
    path = tmp_path / "missing.jpg"
    with pytest.raises(FileNotFoundError) as info:
        _dataset_with(path).load_image(0)
    assert str(path) in str(info.value) and "image id 0" in str(info.value)


@pytest.mark.parametrize("content", [b"this is not an image", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_unreadable_file_names_path(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError) as info:
        _dataset_with(path).load_image(0)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, IOError)


def test_truncated_jpeg_names_path(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageLoadError, match="cut.jpg"):
        _dataset_with(path).load_image(0)
