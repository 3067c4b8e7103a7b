"""Data sets annotated with the VGG Image Annotator (VIA).

Three JSON layouts are read:

* VIA 1.x exports: ``{key: {"filename", "size", "regions": {"0": region, ...}, "file_attributes"}}``
* VIA 2.x exports: the same, with ``"regions"`` a list of regions;
* VIA 2.x project files: ``{"_via_settings": ..., "_via_img_metadata": {<as a 2.x export>},
  "_via_attributes": ...}``.

A region is ``{"shape_attributes": {"name": <shape>, ...}, "region_attributes": {...}}``.

Coordinate convention
---------------------
VIA stores canvas coordinates in image pixels: x to the right, y down, and pixel ``(row, col)``
covers the unit square ``[col, col + 1) x [row, row + 1)``. A pixel belongs to a region when its
*centre* ``(col + 0.5, row + 0.5)`` lies inside the shape. With this convention a rectangle with
integer corners ``x..x+w, y..y+h`` covers exactly ``w * h`` pixels, a polygon's pixel count tracks
its shoelace area, and the box returned by ``extract_bboxes`` for that mask is
``[y, x, y + h, x + w]`` (Matterport's "one past the last pixel" convention). Points outside the
image are clipped to it.

Shapes
------
``polygon`` (``all_points_x``/``all_points_y``), ``rect`` (``x, y, width, height``), ``circle``
(``cx, cy, r``), ``ellipse`` (``cx, cy, rx, ry`` and optional ``theta`` in radians, clockwise on
screen as VIA draws it), ``polyline`` (rasterised as the *closed* polygon through its points, i.e.
the area it encloses, since an open line has no area to learn a mask from) and ``point`` (skipped
with a warning: it has no area).
"""

import json
import logging
import math
import os
import warnings

import numpy as np
import skimage.draw

from mrcnn.dataset import Dataset

logger = logging.getLogger(__name__)

__all__ = [
    "VIADataset",
    "VIAFormatError",
    "VIAWarning",
    "clip_polygon",
    "parse_shape_attributes",
    "shape_pixels",
    "shape_mask",
    "read_via_json",
]


class VIAFormatError(ValueError):
    """A VIA JSON file is malformed. The message names the file and, where known, the image and
    region."""


class VIAWarning(UserWarning):
    """A region or image was skipped while reading a VIA file (degenerate shape, point, ...)."""


# Top-level keys of a VIA 3.x project; recognised only to give a clear error.
_VIA3_KEYS = {"project", "config", "attribute", "file", "metadata", "view"}


def _where(json_path, filename=None, region=None):
    """Location prefix for messages: ``file.json: image 'a.jpg' region 2``."""
    text = str(json_path)
    if filename is not None:
        text += f": image {filename!r}"
    if region is not None:
        text += f" region {region}"
    return text


def _number(value, name, where):
    """A finite float from a JSON number; bools and strings are rejected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise VIAFormatError(f"{where}: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise VIAFormatError(f"{where}: {name} must be finite, got {value!r}")
    return value


def _number_list(values, name, where):
    if not isinstance(values, (list, tuple)):
        raise VIAFormatError(f"{where}: {name} must be a list of numbers, got {values!r}")
    return [_number(v, f"{name}[{i}]", where) for i, v in enumerate(values)]


def parse_shape_attributes(shape_attributes, where="shape_attributes"):
    """Validate a VIA ``shape_attributes`` dict and return a normalised shape.

    Args:
        shape_attributes: the dict stored by VIA, e.g. ``{"name": "polygon", "all_points_x": [...],
            "all_points_y": [...]}``.
        where: prefix naming the file/image/region for error messages.

    Returns:
        ``None`` for a ``point`` (it has no area), otherwise a dict with ``"type"`` one of
        ``"polygon"`` (keys ``x``, ``y``: lists of float vertex coordinates in pixels) or
        ``"ellipse"`` (keys ``cx, cy, rx, ry, theta``; ``theta`` in radians, clockwise on screen)
        and ``"name"`` the VIA shape name. Rectangles become 4-vertex polygons, circles ellipses
        with ``rx == ry`` and polylines closed polygons.

    Raises:
        VIAFormatError: missing or non-numeric attributes, unknown shape name.
    """
    if not isinstance(shape_attributes, dict):
        raise VIAFormatError(f"{where}: shape_attributes must be an object, "
                             f"got {shape_attributes!r}")
    name = shape_attributes.get("name")
    if not isinstance(name, str):
        raise VIAFormatError(f"{where}: shape_attributes has no shape 'name'")

    def need(key):
        if key not in shape_attributes:
            raise VIAFormatError(f"{where}: {name} shape lacks {key!r}")
        return _number(shape_attributes[key], key, where)

    if name in ("polygon", "polyline"):
        for key in ("all_points_x", "all_points_y"):
            if key not in shape_attributes:
                raise VIAFormatError(f"{where}: {name} shape lacks {key!r}")
        xs = _number_list(shape_attributes["all_points_x"], "all_points_x", where)
        ys = _number_list(shape_attributes["all_points_y"], "all_points_y", where)
        if len(xs) != len(ys):
            raise VIAFormatError(
                f"{where}: all_points_x has {len(xs)} values but all_points_y has {len(ys)}")
        return {"type": "polygon", "name": name, "x": xs, "y": ys}
    if name == "rect":
        x, y, w, h = need("x"), need("y"), need("width"), need("height")
        return {"type": "polygon", "name": name,
                "x": [x, x + w, x + w, x], "y": [y, y, y + h, y + h]}
    if name == "circle":
        cx, cy, r = need("cx"), need("cy"), need("r")
        return {"type": "ellipse", "name": name, "cx": cx, "cy": cy, "rx": r, "ry": r, "theta": 0.0}
    if name == "ellipse":
        theta = need("theta") if "theta" in shape_attributes else 0.0
        return {"type": "ellipse", "name": name, "cx": need("cx"), "cy": need("cy"),
                "rx": need("rx"), "ry": need("ry"), "theta": theta}
    if name == "point":
        need("cx"), need("cy")
        return None
    raise VIAFormatError(f"{where}: unknown shape name {name!r} (expected polygon, rect, circle, "
                         "ellipse, polyline or point)")


# Coordinates beyond this many pixels are clamped to it before rasterising: no image is that
# large, and it keeps the arithmetic of absurd (1e308) values finite.
_FAR = 1e12


def clip_polygon(xs, ys, x0, y0, x1, y1):
    """Sutherland-Hodgman clip of a polygon (any, also self-intersecting) to the rectangle
    ``[x0, x1] x [y0, y1]``. Returns ``(xs, ys)`` lists, possibly empty."""
    pts = [(min(max(float(x), -_FAR), _FAR), min(max(float(y), -_FAR), _FAR))
           for x, y in zip(xs, ys)]
    for axis, bound, low in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if not pts:
            break

        def inside(p):
            return p[axis] >= bound if low else p[axis] <= bound

        def cut(a, b):
            t = (bound - a[axis]) / (b[axis] - a[axis])
            other = 1 - axis
            point = [0.0, 0.0]
            point[axis] = bound
            point[other] = a[other] + t * (b[other] - a[other])
            return tuple(point)

        out = []
        prev = pts[-1]
        for cur in pts:
            if inside(cur):
                if not inside(prev):
                    out.append(cut(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cut(prev, cur))
            prev = cur
        pts = out
    return [p[0] for p in pts], [p[1] for p in pts]


def _collinear(xs, ys):
    """True when all vertices lie on one line (or coincide): the polygon encloses nothing."""
    x = np.clip(np.asarray(xs, np.float64), -_FAR, _FAR)
    y = np.clip(np.asarray(ys, np.float64), -_FAR, _FAR)
    dx, dy = x - x[0], y - y[0]
    cross = dx[:, None] * dy[None, :] - dy[:, None] * dx[None, :]
    scale = max(float(np.abs(dx).max()), float(np.abs(dy).max()), 1.0)
    return float(np.abs(cross).max()) <= 1e-12 * scale * scale


def _polygon_area(xs, ys):
    """Shoelace area of a closed polygon (absolute value)."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def shape_degeneracy(shape):
    """Why a normalised shape cannot have area, or ``None`` when it can (before clipping)."""
    if shape["type"] == "polygon":
        if len(shape["x"]) < 3:
            return f"{shape['name']} has {len(shape['x'])} point(s), at least 3 are needed"
        # Not the shoelace area: a self-intersecting polygon (a bow tie) can have lobes that
        # cancel there yet still cover pixels.
        if _collinear(shape["x"], shape["y"]):
            return f"{shape['name']} has zero area (all points on one line)"
        return None
    if shape["rx"] <= 0 or shape["ry"] <= 0:
        return f"{shape['name']} has a non-positive radius"
    return None


def shape_pixels(shape, height, width):
    """Pixels inside a normalised shape, clipped to an image of ``height x width``.

    Args:
        shape: a dict from `parse_shape_attributes` (not ``None``).
        height, width: image size in pixels.

    Returns:
        ``(rr, cc)``: int arrays of row and column indices, all inside the image (possibly empty).
        A pixel is inside when its centre ``(row + 0.5, col + 0.5)`` is (see the module docstring).
    """
    if shape_degeneracy(shape) is not None:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    # skimage samples at integer coordinates; moving the shape by -0.5 samples pixel centres.
    if height <= 0 or width <= 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    if shape["type"] == "polygon":
        # Clipped to the image plus a pixel, so vertices far outside cost nothing.
        xs, ys = clip_polygon(shape["x"], shape["y"], -1.0, -1.0, width + 1.0, height + 1.0)
        if len(xs) < 3:
            return np.zeros(0, np.intp), np.zeros(0, np.intp)
        rows = np.asarray(ys, np.float64) - 0.5
        cols = np.asarray(xs, np.float64) - 0.5
        # Skip the raster scan for polygons wholly outside the image.
        if rows.max() < 0 or cols.max() < 0 or rows.min() > height - 1 or cols.min() > width - 1:
            return np.zeros(0, np.intp), np.zeros(0, np.intp)
        # shape= limits skimage's scan to the image, which clips the polygon exactly.
        rr, cc = skimage.draw.polygon(rows, cols, shape=(height, width))
    else:
        cy = min(max(shape["cy"], -_FAR), _FAR) - 0.5
        cx = min(max(shape["cx"], -_FAR), _FAR) - 0.5
        ry, rx = min(shape["ry"], _FAR), min(shape["rx"], _FAR)
        reach = rx + ry  # bounds the extent at any rotation
        if cy + reach < 0 or cx + reach < 0 or cy - reach > height or cx - reach > width:
            return np.zeros(0, np.intp), np.zeros(0, np.intp)
        # skimage rotates counter-clockwise on screen, VIA (canvas) clockwise.
        rr, cc = skimage.draw.ellipse(cy, cx, ry, rx, shape=(height, width),
                                      rotation=-shape["theta"])
    return rr, cc


def shape_mask(shape_attributes, height, width):
    """Bool mask ``[height, width]`` of one VIA ``shape_attributes`` dict (all False for points)."""
    shape = parse_shape_attributes(shape_attributes)
    mask = np.zeros((height, width), dtype=bool)
    if shape is not None:
        rr, cc = shape_pixels(shape, height, width)
        mask[rr, cc] = True
    return mask


class _DuplicateKey(Exception):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_via_json(json_path):
    """Read a VIA 1.x/2.x export or a VIA 2.x project file.

    Returns:
        list of ``(key, entry)`` in file order, one per image, where ``entry`` is the per-image
        dict (``filename``, ``regions``, ...).

    Raises:
        FileNotFoundError: the file does not exist.
        VIAFormatError: invalid JSON or a layout that is not VIA 1.x/2.x.
    """
    json_path = str(json_path)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"VIA annotation file not found: {json_path}")
    try:
        with open(json_path, "r", encoding="utf-8") as f:
            data = json.load(f, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as e:
        raise VIAFormatError(f"{json_path}: key {e.key!r} appears twice in one JSON object "
                             "(a hand edit?); only one could be kept, so nothing is") from None
    except json.JSONDecodeError as e:
        raise VIAFormatError(f"{json_path}: invalid JSON ({e})") from e
    except UnicodeDecodeError as e:
        raise VIAFormatError(f"{json_path}: not UTF-8 text ({e})") from e
    if not isinstance(data, dict):
        raise VIAFormatError(
            f"{json_path}: top level must be a JSON object mapping image keys to image entries, "
            f"got {type(data).__name__}")
    if "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
        if not isinstance(data, dict):
            raise VIAFormatError(f"{json_path}: _via_img_metadata must be an object, "
                                 f"got {type(data).__name__}")
    elif "_via_settings" in data:
        raise VIAFormatError(f"{json_path}: VIA project file without _via_img_metadata")
    elif _VIA3_KEYS <= set(data):
        raise VIAFormatError(f"{json_path}: this is a VIA 3.x project, which is not supported; "
                             "export the annotations as VIA 2.x JSON")
    elif {"images", "annotations"} <= set(data):
        raise VIAFormatError(f"{json_path}: this looks like COCO JSON; use COCODataset")
    entries = []
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise VIAFormatError(f"{json_path}: entry {key!r} must be an object, "
                                 f"got {type(entry).__name__}")
        filename = entry.get("filename")
        if not isinstance(filename, str) or not filename:
            raise VIAFormatError(f"{json_path}: entry {key!r} has no 'filename'")
        if "\x00" in filename:
            raise VIAFormatError(f"{json_path}: entry {key!r} has a filename with a NUL "
                                 "character")
        entries.append((key, entry))
    return entries


def _regions(entry, json_path, filename):
    """``[(index, region)]`` from a VIA 1.x dict or VIA 2.x list of regions."""
    if "regions" not in entry:
        raise VIAFormatError(f"{_where(json_path, filename)}: entry has no 'regions'")
    regions = entry["regions"]
    if isinstance(regions, dict):
        items = list(regions.items())
    elif isinstance(regions, list):
        items = list(enumerate(regions))
    else:
        raise VIAFormatError(f"{_where(json_path, filename)}: 'regions' must be an object or a "
                             f"list, got {type(regions).__name__}")
    for index, region in items:
        if not isinstance(region, dict):
            raise VIAFormatError(f"{_where(json_path, filename, index)}: region must be an object")
        if "shape_attributes" not in region:
            raise VIAFormatError(f"{_where(json_path, filename, index)}: region has no "
                                 "'shape_attributes'")
    return items


def _region_label(region, class_attribute, where):
    """Class name of a region from its ``region_attributes[class_attribute]``."""
    attrs = region.get("region_attributes", {})
    if not isinstance(attrs, dict):
        raise VIAFormatError(f"{where}: region_attributes must be an object")
    if class_attribute not in attrs:
        raise VIAFormatError(f"{where}: region attribute {class_attribute!r} is missing")
    value = attrs[class_attribute]
    if isinstance(value, dict):
        # VIA checkbox attributes store {option: true/false}.
        chosen = [k for k, v in value.items() if v]
        if len(chosen) != 1:
            raise VIAFormatError(f"{where}: region attribute {class_attribute!r} must have exactly "
                                 f"one option selected, got {value!r}")
        value = chosen[0]
    if not isinstance(value, str) or not value.strip():
        raise VIAFormatError(f"{where}: region attribute {class_attribute!r} must be a non-empty "
                             f"string or a checkbox object, got {value!r}")
    return value.strip()


class VIADataset(Dataset):
    """Instance-segmentation data set read from VIA annotations (see the module docstring).

    Each image's ``image_info`` holds ``path``, ``width``, ``height`` (read from the image header at
    load time), ``annotation_file`` and ``via_regions``: a list of normalised shapes, each with the
    source class id under ``"class_id"``.
    """

    def load_via(self, dataset_dir, subset=None, annotation_file="via_region_data.json",
                 source="via", class_attribute=None, class_names=None, default_class="object",
                 keep_negatives=False, skip_missing=False):
        """Add the images and regions of one VIA JSON file.

        Args:
            dataset_dir: root folder of the data set.
            subset: optional sub-folder (``"train"``, ``"val"``); images and the JSON live in
                ``dataset_dir/subset``.
            annotation_file: JSON file name inside that folder (or an absolute path).
            source: source name used for ``add_class``/``add_image``.
            class_attribute: name of the region attribute holding each region's class (a string,
                or a VIA checkbox dict with exactly one option true). ``None``: every region is
                ``default_class``.
            class_names: with ``class_attribute``, the class names in class-id order (ids 1..K).
                Values not listed raise `VIAFormatError`. ``None``: the distinct values
                found in the file, sorted. Pass it to keep ids equal across subsets.
            default_class: the single class name used without ``class_attribute``.
            keep_negatives: keep images with no usable region (``load_mask`` then returns an
                empty ``[H, W, 0]`` mask); by default they are skipped.
            skip_missing: skip (with a warning) images whose file is missing instead of raising.
                An image listed without regions whose file is missing is always skipped, with
                one warning for the file naming such images: it has nothing to lose.

        Returns:
            list of the class names, in source class-id order (id ``i + 1`` for entry ``i``).

        Raises:
            FileNotFoundError: the JSON file, or (unless ``skip_missing``) an image with regions
                that it names, is missing.
            VIAFormatError: malformed JSON or regions, unknown class values.
        """
        image_dir = os.path.join(str(dataset_dir), subset) if subset else str(dataset_dir)
        json_path = os.path.join(image_dir, str(annotation_file))
        entries = read_via_json(json_path)
        if class_names is not None:
            if class_attribute is None:
                raise ValueError("load_via: class_names needs class_attribute (the region "
                                 "attribute that holds the class)")
            class_names = [str(n) for n in class_names]
            if not class_names or len(set(class_names)) != len(class_names):
                raise ValueError(f"load_via: class_names must be non-empty and unique, "
                                 f"got {class_names!r}")

        # Pass 1: validate the JSON and label every region, before touching any image file.
        parsed = []
        seen = {}
        for key, entry in entries:
            filename = entry["filename"]
            if filename in seen:
                raise VIAFormatError(f"{json_path}: image {filename!r} appears twice (entries "
                                     f"{seen[filename]!r} and {key!r})")
            seen[filename] = key
            shapes = []
            for index, region in _regions(entry, json_path, filename):
                where = _where(json_path, filename, index)
                shape = parse_shape_attributes(region["shape_attributes"], where)
                if shape is None:
                    warnings.warn(f"{where}: point regions have no area; skipped", VIAWarning,
                                  stacklevel=2)
                    continue
                if class_attribute is None:
                    label = default_class
                else:
                    label = _region_label(region, class_attribute, where)
                    if class_names is not None and label not in class_names:
                        raise VIAFormatError(f"{where}: class {label!r} of attribute "
                                             f"{class_attribute!r} is not in class_names "
                                             f"{class_names!r}")
                shape["label"] = label
                shape["index"] = index
                shapes.append(shape)
            parsed.append((key, filename, shapes))

        if class_attribute is None:
            names = [str(default_class)]
        elif class_names is not None:
            names = list(class_names)
        else:
            names = sorted({s["label"] for _, _, shapes in parsed for s in shapes})
        ids = {name: i + 1 for i, name in enumerate(names)}
        for name, class_id in ids.items():
            self.add_class(source, class_id, name)

        # Pass 2: image sizes from the headers, then drop regions without pixels.
        n_negative = n_missing = 0
        missing_empty = []  # listed without regions and absent: nothing to lose, one warning
        for key, filename, shapes in parsed:
            path = os.path.join(image_dir, filename)
            if not os.path.isfile(path):
                if not shapes:
                    missing_empty.append(filename)
                    continue
                message = f"{json_path}: image {filename!r} not found at {path}"
                if skip_missing:
                    warnings.warn(message + "; skipped", VIAWarning, stacklevel=2)
                    n_missing += 1
                    continue
                raise FileNotFoundError(message)
            height, width = _image_size(path, _where(json_path, filename))
            regions = []
            for shape in shapes:
                reason = shape_degeneracy(shape)
                if reason is None and len(shape_pixels(shape, height, width)[0]) == 0:
                    reason = f"{shape['name']} covers no pixel inside the {width}x{height} image"
                if reason is not None:
                    warnings.warn(f"{_where(json_path, filename, shape['index'])}: {reason}; "
                                  "skipped", VIAWarning, stacklevel=2)
                    continue
                shape = dict(shape)
                shape["class_id"] = ids[shape.pop("label")]
                regions.append(shape)
            if not regions:
                n_negative += 1
                if not keep_negatives:
                    continue
            self.add_image(source, image_id=filename, path=path, width=width, height=height,
                           via_regions=regions, annotation_file=json_path, via_key=key)
        if missing_empty:
            shown = ", ".join(repr(f) for f in missing_empty[:5])
            more = f" and {len(missing_empty) - 5} more" if len(missing_empty) > 5 else ""
            warnings.warn(f"{json_path}: {len(missing_empty)} image(s) listed without regions are "
                          f"missing from {image_dir}: {shown}{more}; skipped (they carry no "
                          "annotation)", VIAWarning, stacklevel=2)
        if n_negative:
            logger.info("%s: %d of %d images have no usable region; %s", json_path, n_negative,
                        len(parsed), "kept as negatives" if keep_negatives else "skipped")
        if n_missing:
            logger.info("%s: %d missing images skipped", json_path, n_missing)
        return names

    def load_mask(self, image_id):
        """Instance masks of an image.

        Returns:
            masks: bool ``[H, W, N]``, one channel per region (``N`` may be 0 for negatives).
            class_ids: int32 ``[N]``, internal class ids (needs ``prepare()``).
        """
        info = self.image_info[image_id]
        if "via_regions" not in info:
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        regions = info["via_regions"]
        masks = np.zeros((height, width, len(regions)), dtype=bool)
        class_ids = np.zeros(len(regions), dtype=np.int32)
        for i, shape in enumerate(regions):
            rr, cc = shape_pixels(shape, height, width)
            masks[rr, cc, i] = True
            class_ids[i] = self.map_source_class_id(f"{info['source']}.{shape['class_id']}")
        return masks, class_ids

    def image_reference(self, image_id):
        """Path of the image file."""
        info = self.image_info[image_id]
        if "via_regions" in info:
            return info["path"]
        return super().image_reference(image_id)


def _image_size(path, json_path):
    """``(height, width)`` from the image header; PIL decodes no pixels for ``.size``.
    ``json_path``: the message prefix (the JSON file and the entry's image)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception as e:  # PIL raises several types for unreadable files
        raise VIAFormatError(f"{json_path}: cannot read the size of the image file {path} "
                             f"({e})") from e
    if height <= 0 or width <= 0:
        raise VIAFormatError(f"{json_path}: the image file {path} is empty ({width}x{height})")
    return int(height), int(width)
