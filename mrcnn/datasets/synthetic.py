"""Synthetic images and annotations for tests and demos (no network, deterministic by seed).

* `make_shapes_image`: an image of squares, circles and triangles with its instance masks.
* `SyntheticShapesDataset`: a ``Dataset`` generating such images on the fly (Matterport's
  "shapes" sample).
* `write_via_dataset`: writes ``root/train`` and ``root/val`` with images and a VIA JSON file,
  either cartoon faces wearing face masks (``scene="facemask"``; the face masks are annotated as
  polygons with the region attribute ``mask_type``) or shapes (``scene="shapes"``; rect, circle and
  polygon regions with the attribute ``shape``).

Every shape is drawn from the same VIA shape attributes that are annotated, rasterised by
`mrcnn.datasets.via.shape_pixels`, so the pixels of an annotated object and its mask agree
exactly.
"""

import json
import math
import os

import numpy as np

from mrcnn.dataset import Dataset
from mrcnn.datasets.via import parse_shape_attributes, shape_pixels

__all__ = [
    "SHAPE_CLASSES",
    "FACEMASK_CLASSES",
    "make_shapes_image",
    "write_via_dataset",
    "SyntheticShapesDataset",
]

SHAPE_CLASSES = ("square", "circle", "triangle")
FACEMASK_CLASSES = ("N95", "cloth", "surgical")

_SKIN_TONES = np.array([(255, 224, 189), (241, 194, 125), (224, 172, 105), (198, 134, 66),
                        (141, 85, 36)], dtype=np.float64)


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _pixels(shape_attributes, height, width):
    return shape_pixels(parse_shape_attributes(shape_attributes), height, width)


def _color_far_from(rng, other, min_distance=80):
    """A random RGB colour whose L1 distance to ``other`` is at least ``min_distance``."""
    for _ in range(100):
        color = rng.integers(0, 256, size=3)
        if np.abs(color - np.asarray(other)).sum() >= min_distance:
            return color.astype(np.uint8)
    return (255 - np.asarray(other)).astype(np.uint8)


def _random_shapes(height, width, rng, max_shapes):
    """``[(class_name, shape_attributes)]`` with integer coordinates and disjoint bounding boxes."""
    if height < 16 or width < 16:
        raise ValueError(f"synthetic shapes need an image of at least 16x16, got {height}x{width}")
    if int(max_shapes) < 1:
        raise ValueError(f"max_shapes must be at least 1, got {max_shapes}")
    smallest = min(height, width)
    s_min, s_max = max(3, smallest // 16), max(4, smallest // 5)
    boxes, shapes = [], []
    count = int(rng.integers(1, int(max_shapes) + 1))
    for _ in range(count):
        for _attempt in range(30):
            name = SHAPE_CLASSES[int(rng.integers(0, len(SHAPE_CLASSES)))]
            s = int(rng.integers(s_min, s_max + 1))
            # A triangle of height 2s with 60-degree base angles is 2s / sin(60) wide.
            half_w = int(math.ceil(s / math.sin(math.pi / 3))) if name == "triangle" else s
            if 2 * half_w + 2 > width or 2 * s + 2 > height:
                continue
            cx = int(rng.integers(half_w + 1, width - half_w))
            cy = int(rng.integers(s + 1, height - s))
            box = (cy - s - 1, cx - half_w - 1, cy + s + 1, cx + half_w + 1)
            if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                   for b in boxes):
                continue
            if name == "square":
                attrs = {"name": "rect", "x": cx - s, "y": cy - s, "width": 2 * s, "height": 2 * s}
            elif name == "circle":
                attrs = {"name": "circle", "cx": cx, "cy": cy, "r": s}
            else:
                attrs = {"name": "polygon", "all_points_x": [cx, cx - half_w, cx + half_w],
                         "all_points_y": [cy - s, cy + s, cy + s]}
            boxes.append(box)
            shapes.append((name, attrs))
            break
    return shapes


def make_shapes_image(height, width, rng, max_shapes=4):
    """Random squares, circles and triangles on a plain background.

    Args:
        height, width: image size (at least 16 each).
        rng: ``numpy.random.Generator`` or a seed.
        max_shapes: at most this many shapes (at least one); their bounding boxes do not overlap.

    Returns:
        image: uint8 ``[H, W, 3]`` RGB.
        masks: bool ``[H, W, N]``, non-empty and disjoint.
        class_ids: int32 ``[N]`` in 1..3, indices into ``class_names`` plus one.
        class_names: ``("square", "circle", "triangle")``.
    """
    rng = _rng(rng)
    bg = rng.integers(0, 256, size=3).astype(np.uint8)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = bg
    shapes = _random_shapes(height, width, rng, max_shapes)
    masks = np.zeros((height, width, len(shapes)), dtype=bool)
    class_ids = np.zeros(len(shapes), dtype=np.int32)
    for i, (name, attrs) in enumerate(shapes):
        rr, cc = _pixels(attrs, height, width)
        masks[rr, cc, i] = True
        image[rr, cc] = _color_far_from(rng, bg)
        class_ids[i] = SHAPE_CLASSES.index(name) + 1
    return image, masks, class_ids, SHAPE_CLASSES


class SyntheticShapesDataset(Dataset):
    """Shapes generated on the fly; image ``i`` is the same every time it is loaded.

    ``load_image`` returns uint8 ``[H, W, 3]`` and ``load_mask`` bool ``[H, W, N]`` with internal
    class ids (needs ``prepare()``); class names are ``square``, ``circle``, ``triangle``.
    """

    def load_shapes(self, count, height, width, seed=0, max_shapes=4):
        """Add ``count`` images of ``height x width`` drawn from ``(seed, index)``."""
        if int(count) < 0:
            raise ValueError(f"load_shapes: count must be >= 0, got {count}")
        for i, name in enumerate(SHAPE_CLASSES):
            self.add_class("shapes", i + 1, name)
        first = sum(1 for info in self.image_info if info["source"] == "shapes")
        for i in range(first, first + int(count)):
            self.add_image("shapes", image_id=i, path=None, height=int(height), width=int(width),
                           shapes_seed=(int(seed), i), max_shapes=int(max_shapes))

    def _generate(self, image_id):
        info = self.image_info[image_id]
        rng = np.random.default_rng(list(info["shapes_seed"]))
        return make_shapes_image(info["height"], info["width"], rng, info["max_shapes"])

    def load_image(self, image_id):
        info = self.image_info[image_id]
        if "shapes_seed" not in info:
            return super().load_image(image_id)
        return self._generate(image_id)[0]

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        if "shapes_seed" not in info:
            return super().load_mask(image_id)
        _, masks, ids, _ = self._generate(image_id)
        class_ids = np.array([self.map_source_class_id(f"shapes.{c}") for c in ids], np.int32)
        return masks, class_ids

    def image_reference(self, image_id):
        info = self.image_info[image_id]
        if "shapes_seed" in info:
            seed, index = info["shapes_seed"]
            return f"shapes seed={seed} index={index}"
        return super().image_reference(image_id)


# ---------------------------------------------------------------------------------------------
# Face-mask scene


def _ellipse_points(cx, cy, rx, ry, start, stop, n):
    """Integer points on an ellipse arc, angles in radians measured clockwise on screen."""
    t = np.linspace(start, stop, n)
    return (np.rint(cx + rx * np.cos(t)).astype(int).tolist(),
            np.rint(cy + ry * np.sin(t)).astype(int).tolist())


def _mask_polygon(kind, cx, cy, rx, ry):
    """VIA polygon attributes of a face mask covering the lower face of an ellipse face."""
    top = cy + 0.05 * ry
    if kind == "surgical":
        # Pleated rectangle, slightly narrower at the chin.
        xs = [cx - 0.98 * rx, cx + 0.98 * rx, cx + 0.85 * rx, cx + 0.4 * rx, cx - 0.4 * rx,
              cx - 0.85 * rx]
        ys = [top, top, cy + 0.6 * ry, cy + 0.82 * ry, cy + 0.82 * ry, cy + 0.6 * ry]
        xs, ys = np.rint(xs).astype(int).tolist(), np.rint(ys).astype(int).tolist()
    elif kind == "N95":
        # Cup: a closed ellipse centred on the mouth.
        xs, ys = _ellipse_points(cx, cy + 0.42 * ry, 0.72 * rx, 0.45 * ry, 0.0, 2 * np.pi, 24)
        xs, ys = xs[:-1], ys[:-1]
    else:
        # Cloth: straight top edge over the lower half of the face outline.
        xs, ys = _ellipse_points(cx, cy, 0.97 * rx, 0.9 * ry, 0.15, np.pi - 0.15, 16)
        xs = xs + [int(round(cx - 0.95 * rx)), int(round(cx + 0.95 * rx))]
        ys = ys + [int(round(top)), int(round(top))]
    return {"name": "polygon", "all_points_x": xs, "all_points_y": ys}


def _paint(image, attrs, color):
    h, w = image.shape[:2]
    rr, cc = _pixels(attrs, h, w)
    image[rr, cc] = color
    return rr, cc


def _facemask_image(height, width, rng):
    """A cartoon scene of 1-2 faces; returns (image, [(class_name, shape_attributes)])."""
    bg_top, bg_bottom = rng.integers(60, 230, size=3), rng.integers(30, 200, size=3)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (bg_top * (1 - ramp) + bg_bottom * ramp) * np.ones((1, width, 1))
    image = image.astype(np.uint8)
    n_faces = int(rng.integers(1, 3))
    regions = []
    slot = width / n_faces
    for k in range(n_faces):
        ry = rng.uniform(0.28, 0.4) * height
        rx = min(ry * rng.uniform(0.7, 0.8), 0.42 * slot)
        cx = slot * (k + 0.5) + rng.uniform(-0.05, 0.05) * slot
        cy = height * 0.5 + rng.uniform(-0.08, 0.08) * height
        hair = (rng.integers(10, 90, size=3)).astype(np.uint8)
        _paint(image, {"name": "ellipse", "cx": cx, "cy": cy - 0.12 * ry, "rx": 1.08 * rx,
                       "ry": 0.98 * ry}, hair)
        skin = _SKIN_TONES[int(rng.integers(0, len(_SKIN_TONES)))] + rng.normal(0, 6, size=3)
        skin = np.clip(skin, 0, 255).astype(np.uint8)
        _paint(image, {"name": "ellipse", "cx": cx, "cy": cy, "rx": rx, "ry": ry}, skin)
        for side in (-1, 1):
            ex, ey = cx + side * 0.38 * rx, cy - 0.22 * ry
            _paint(image, {"name": "ellipse", "cx": ex, "cy": ey, "rx": 0.18 * rx,
                           "ry": 0.1 * ry}, (250, 250, 250))
            _paint(image, {"name": "circle", "cx": ex, "cy": ey, "r": 0.08 * rx}, (40, 30, 20))
        # The first face always wears a mask so every image has an annotation.
        if k > 0 and rng.random() < 0.25:
            _paint(image, {"name": "ellipse", "cx": cx, "cy": cy + 0.5 * ry, "rx": 0.3 * rx,
                           "ry": 0.07 * ry}, (150, 40, 50))
            continue
        kind = FACEMASK_CLASSES[int(rng.integers(0, len(FACEMASK_CLASSES)))]
        attrs = _mask_polygon(kind, cx, cy, rx, ry)
        if kind == "surgical":
            color = np.array([150, 200, 230]) + rng.integers(-15, 15, size=3)
        elif kind == "N95":
            color = np.array([238, 238, 230]) + rng.integers(-10, 10, size=3)
        else:
            color = rng.integers(0, 256, size=3)
        rr, cc = _paint(image, attrs, np.clip(color, 0, 255).astype(np.uint8))
        # Texture inside the annotated polygon only, so the annotation stays exact.
        if len(rr):
            if kind == "surgical":
                stripe = (rr - rr.min()) % max(3, int(ry * 0.12)) == 0
            elif kind == "cloth":
                stripe = (cc - cc.min()) % max(4, int(rx * 0.25)) < max(1, int(rx * 0.06))
            else:
                stripe = (rr - int(cy + 0.42 * ry)) ** 2 + (cc - int(cx)) ** 2 <= (0.12 * rx) ** 2
            image[rr[stripe], cc[stripe]] = (image[rr[stripe], cc[stripe]] * 0.7).astype(np.uint8)
        regions.append((kind, attrs))
    noise = rng.normal(0, 4, size=image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, regions


def write_via_dataset(root, n_train=8, n_val=2, image_size=(128, 128), version=2,
                      scene="facemask", seed=0, annotation_file="via_region_data.json",
                      image_format="jpg"):
    """Write a small VIA-annotated data set to ``root/train`` and ``root/val``.

    Args:
        root: output folder (created).
        n_train, n_val: number of images per subset (a subset with 0 images is not written).
        image_size: ``(height, width)`` of every image.
        version: ``1`` (VIA 1.x export, regions as ``{"0": ...}``), ``2`` (VIA 2.x export,
            regions as a list) or ``"project"`` (VIA 2.x project file with ``_via_settings``,
            ``_via_img_metadata`` and ``_via_attributes``).
        scene: ``"facemask"``: faces wearing N95/cloth/surgical masks, one polygon region per
            worn mask with ``region_attributes = {"label": "mask", "mask_type": <class>}``.
            ``"shapes"``: squares (``rect``), circles (``circle``) and triangles (``polygon``)
            with ``region_attributes = {"shape": <class>}``.
        seed: seed of the whole data set.
        annotation_file: JSON file name in each subset folder.
        image_format: ``"jpg"`` or ``"png"``.

    Returns:
        dict with ``root``, ``class_attribute`` (``"mask_type"`` or ``"shape"``), ``class_names``
        (sorted), and ``subsets``: ``{subset: {"annotation_file": path, "images": n,
        "regions": n}}``.
    """
    from PIL import Image

    if version not in (1, 2, "project"):
        raise ValueError(f"write_via_dataset: version must be 1, 2 or 'project', got {version!r}")
    if scene not in ("facemask", "shapes"):
        raise ValueError(f"write_via_dataset: scene must be 'facemask' or 'shapes', got {scene!r}")
    ext = {"jpg": "jpg", "jpeg": "jpg", "png": "png"}.get(str(image_format).lower())
    if ext is None:
        raise ValueError(f"write_via_dataset: image_format must be 'jpg' or 'png', "
                         f"got {image_format!r}")
    height, width = (int(v) for v in image_size)
    if height < 32 or width < 32:
        raise ValueError(f"write_via_dataset: image_size must be at least (32, 32), "
                         f"got {image_size!r}")
    attribute = "mask_type" if scene == "facemask" else "shape"
    names = FACEMASK_CLASSES if scene == "facemask" else SHAPE_CLASSES
    rng = np.random.default_rng(seed)
    summary = {"root": str(root), "class_attribute": attribute, "class_names": sorted(names),
               "subsets": {}}
    for subset, count in (("train", int(n_train)), ("val", int(n_val))):
        if count <= 0:
            continue
        folder = os.path.join(str(root), subset)
        os.makedirs(folder, exist_ok=True)
        metadata = {}
        n_regions = 0
        for i in range(count):
            if scene == "facemask":
                image, regions = _facemask_image(height, width, rng)
                region_list = [{"shape_attributes": attrs,
                                "region_attributes": {"label": "mask", attribute: kind}}
                               for kind, attrs in regions]
            else:
                bg = rng.integers(0, 256, size=3).astype(np.uint8)
                image = np.empty((height, width, 3), dtype=np.uint8)
                image[:] = bg
                region_list = []
                for name, attrs in _random_shapes(height, width, rng, 4):
                    _paint(image, attrs, _color_far_from(rng, bg))
                    region_list.append({"shape_attributes": attrs,
                                        "region_attributes": {attribute: name}})
            filename = f"{scene}_{subset}_{i:04d}.{ext}"
            path = os.path.join(folder, filename)
            if ext == "jpg":
                Image.fromarray(image).save(path, quality=95)
            else:
                Image.fromarray(image).save(path)
            size = os.path.getsize(path)
            entry = {"filename": filename, "size": size}
            if version == 1:
                entry.update({"fileref": "", "base64_img_data": "", "file_attributes": {},
                              "regions": {str(j): r for j, r in enumerate(region_list)}})
            else:
                entry.update({"regions": region_list, "file_attributes": {}})
            metadata[f"{filename}{size}"] = entry
            n_regions += len(region_list)
        if version == "project":
            options = {n: n for n in names}
            content = {
                "_via_settings": {"ui": {}, "core": {"buffer_size": 18, "filepath": {},
                                                     "default_filepath": ""},
                                  "project": {"name": f"synthetic_{scene}_{subset}"}},
                "_via_img_metadata": metadata,
                "_via_attributes": {"region": {attribute: {"type": "radio", "description": "",
                                                           "options": options,
                                                           "default_options": {}}},
                                    "file": {}},
                "_via_data_format_version": "2.0.10",
                "_via_image_id_list": list(metadata),
            }
        else:
            content = metadata
        json_path = os.path.join(folder, annotation_file)
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(content, f)
        summary["subsets"][subset] = {"annotation_file": json_path, "images": count,
                                      "regions": n_regions}
    return summary
